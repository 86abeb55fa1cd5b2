"""Running the range app: under granian, gunicorn or wsgiref (:func:`serve`), or in a thread of this process
(:func:`serve_in_background`), with each server set up against idle and slow clients (docs/DEPLOY.md).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib
import json
import logging
import logging.config
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .. import _args
from ..errors import ArtifactError, CredcheckError, DependencyError, ServiceError
from ..pairs._ratelimit import DEFAULT_BURST, DEFAULT_RATE
from ..pairs._service import PairService, UnavailablePairs, make_pair_service
from ..pairs.keys import load_key
from ..pairs.store import PairStore
from ..store import RangeStore
from ._app import RangeApp, make_app
from ._bodies import DEFAULT_CACHE_SIZE
from ._live import open_as_verified, verified_identities, verified_identity
from ._logs import logging_config
from ._metrics import multiprocess_directory, worker_exited
from ._telemetry import Telemetry

__all__ = ["SERVERS", "WORKERS_PER_CORE", "default_workers", "serve", "serve_in_background"]

logger = logging.getLogger("credcheck.server")


def _cores() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(cores, 1)


#: Worker processes a server starts unless told otherwise, a usable CPU core each (wsgiref runs one process).
WORKERS_PER_CORE: Final = {"granian": 1, "gunicorn": 2}


def default_workers(kind: str) -> int:
    """The worker processes ``kind`` (granian or gunicorn) starts on this machine unless told otherwise."""
    return WORKERS_PER_CORE[kind] * _cores()


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


SERVERS: Final = ("auto", "granian", "gunicorn", "wsgiref")
BODIES: Final = ("background", "wait", "off")
#: Seconds a client has to send a request's headers (granian; wsgiref: per read) before it is disconnected.
HEADER_TIMEOUT: Final = 5.0
#: Connections one granian worker holds at once (idle ones included): well above what a few thousand idle
#: sockets take from a worker, at some 16 KiB of memory each only while they are held.
GRANIAN_CONNECTIONS: Final = 4096
#: wsgiref runs a thread per connection: at most this many connections in all, and per client address.
WSGIREF_CONNECTIONS: Final = 512
WSGIREF_PER_ADDRESS: Final = 64
#: Seconds a granian or gunicorn worker has to finish its requests after a stop before it is killed.
STOP_TIMEOUT: Final = 5


def _raise_open_files_limit() -> None:
    """Let this process (and the workers it starts) hold as many sockets as the hard limit allows."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


Stores = Sequence[RangeStore | str | os.PathLike[str]] | RangeStore | str | os.PathLike[str]


_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


class _WorkerForks(threading.local):
    """While a granian or gunicorn master runs, a worker it forks does not keep the master's stop handlers.

    The master catches SIGINT and SIGTERM (to stop its workers) before it forks them, and a fork inherits
    the handlers: a worker asked to stop before it installs its own (while it maps the stores and builds
    the app, or before it is even scheduled on a loaded machine) ran the master's handler on its own copy
    of the master and went on serving, and the master waited for it for ever. So the two signals are
    blocked across the fork, and the new process takes back their default action (a worker not serving yet
    has nothing to finish) before it unblocks them: one sent at any moment ends it, none is lost.
    """

    masters = 0  # masters running in this thread (serve() may be called again)
    pid = 0  # the process they run in: a worker's own forks are left alone
    mask: set[int | signal.Signals] | None = None  # this thread's signal mask, while it forks

    def before(self) -> None:
        if self.masters and self.pid == os.getpid():
            self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)

    def after_in_parent(self) -> None:
        mask, self.mask = self.mask, None
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def after_in_child(self) -> None:
        mask, self.mask = self.mask, None
        if mask is not None:
            for signum in _STOP_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)


_worker_forks: Final = _WorkerForks()
_fork_hooks_lock: Final = threading.Lock()
_fork_hooks_set = False


@contextlib.contextmanager
def _forking_workers() -> Iterator[None]:
    """Processes this thread forks in the block start with the default action for SIGINT and SIGTERM."""
    global _fork_hooks_set
    if not (hasattr(os, "register_at_fork") and hasattr(signal, "pthread_sigmask")):  # not on POSIX
        yield
        return
    with _fork_hooks_lock:
        if not _fork_hooks_set:
            os.register_at_fork(
                before=_worker_forks.before,
                after_in_parent=_worker_forks.after_in_parent,
                after_in_child=_worker_forks.after_in_child,
            )
            _fork_hooks_set = True
    pid, masters = _worker_forks.pid, _worker_forks.masters
    _worker_forks.pid, _worker_forks.masters = os.getpid(), masters + 1 if pid == os.getpid() else 1
    try:
        yield
    finally:
        _worker_forks.pid, _worker_forks.masters = pid, masters


def serve(
    stores: Stores,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int | None = None,
    threads: int = 4,
    cache_size: int = DEFAULT_CACHE_SIZE,
    server: str = "auto",
    pairs: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    rate: float = DEFAULT_RATE,
    burst: float = DEFAULT_BURST,
    trust_forwarded_for: Sequence[str] = (),
    bodies: str = "background",
    access_log: bool = True,
    log_client_address: bool = False,
    metrics: bool = False,
) -> None:
    """Serve ``stores`` (and, with ``pairs`` and its ``key`` file, the pair service) over HTTP until SIGINT
    or SIGTERM, then return.

    The pair service limits each client address to ``rate`` queries a second on average, ``burst`` at once
    (``rate=0``: no limit), in one table shared by every worker process (:mod:`credcheck.pairs._ratelimit`);
    ``trust_forwarded_for`` names the reverse proxies whose ``X-Forwarded-For`` gives the client's address.

    ``bodies`` says when the bodies side file beside each store is made (docs/DEPLOY.md): ``"background"``
    (serve at once, rendering ranges per request, while one worker makes it; then every worker uses it),
    ``"wait"`` (make it before serving) or ``"off"`` (never make one; one already there is still used).

    ``server`` picks the HTTP server; ``"auto"`` takes the first installed of granian, gunicorn, wsgiref.
    The stores are opened and verified once, in this process, before any worker starts.

    - granian (Rust, the fastest here): ``workers`` processes (default: the usable cores), each with one
      Python thread; the workers map the already verified stores read-only (one copy in the page cache).
    - gunicorn: ``workers`` processes (default 2 x the usable cores) of ``threads`` threads, forked after
      the stores are opened, so they share the maps.
    - wsgiref (standard library, with a one-line notice under "auto"): one process, a thread per connection.

    Each worker keeps its own body cache. The listening URL is printed once the server accepts connections
    (port 0 picks a free port and prints the real one). A port already in use raises ``OSError`` at once.

    Logs (docs/DEPLOY.md): this process's records, its workers' and the HTTP server's own go to standard error as
    JSON lines (:mod:`.logs`): an access record a request (``access_log``; with ``log_client_address`` it holds the
    client's address, behind ``trust_forwarded_for`` the forwarded one) and an event record for start-up, store
    verification and reloads, the bodies side file and the rate limit. ``metrics`` answers ``/metrics`` with the
    counts of every worker added up (:mod:`.metrics`: a private directory made here and removed on return).
    """
    _args.int_in_range("port", port, 0, 65535)
    if server not in SERVERS:
        raise ValueError(f"server must be one of {', '.join(SERVERS)}, got {server!r}")
    if bodies not in BODIES:
        raise ValueError(f"bodies must be one of {', '.join(BODIES)}, got {bodies!r}")
    workers = None if workers is None else _args.positive_int("workers", workers)
    threads = _args.positive_int("threads", threads)
    telemetry = Telemetry.of(
        access_log=access_log, client_address=log_client_address, metrics=metrics, trusted_proxies=trust_forwarded_for
    )
    if port:
        _check_bindable(host, port)
    _raise_open_files_limit()
    log_config = logging_config(access_log=access_log)
    logging.config.dictConfig(log_config)
    logging.captureWarnings(True)  # a library's warning is a JSON line too, not a line of its own format
    with contextlib.ExitStack() as stack:
        if metrics:  # a private directory for every worker's values, removed when the server stops
            telemetry = dataclasses.replace(telemetry, metrics_directory=stack.enter_context(multiprocess_directory()))
        service = None
        if pairs is not None:
            if key is None:
                raise ValueError("serving a pair store needs its key file")
            service = make_pair_service(pairs, key, rate=rate, burst=burst, trusted_proxies=trust_forwarded_for)
            stack.callback(service.close)
            _verified(service.watched.role, service.path, f"{service.status().get('entries', 0):,} entries")
        app = make_app(stores, cache_size=cache_size, pairs=service, build_bodies=bodies != "off", telemetry=telemetry)
        stack.callback(app.close)
        for scheme, store in app.stores.items():
            _verified(scheme, store.path, f"{store.rows:,} rows")
        if bodies == "wait":
            app.prepare_bodies()  # once, before any worker starts (docs/DEPLOY.md)
        kind, module = _pick_server(server)
        if kind == "granian":
            _serve_granian(module, app, host, port, workers or default_workers(kind), cache_size, log_config)
        elif kind == "gunicorn":
            _serve_gunicorn(module, app, host, port, workers or default_workers(kind), threads, log_config)
        else:
            _serve_wsgiref(app, host, port)


def _verified(role: str, path: str, size: str) -> None:
    logger.info(
        "%s store verified: %s (%s)", role, path, size, extra={"event": "store_verified", "store": role, "path": path}
    )


def _serving(app: RangeApp, kind: str, url: str, workers: int, threads: int = 1) -> None:
    """Say the server accepts connections: one human line on standard output (the banner) and an event."""
    how = {"granian": f"{workers} workers", "gunicorn": f"{workers} workers x {threads} threads"}.get(kind, "threaded")
    print(f"credcheck: serving {_what(app)} on {url} ({kind}, {how})", flush=True)
    recorder = app.recorder
    telemetry = recorder.telemetry if recorder is not None else None
    logger.info(
        "serving on %s (%s, %s)",
        url,
        kind,
        how,
        extra={
            "event": "start",
            "url": url,
            "server": kind,
            "workers": workers,
            "threads": threads,
            "stores": sorted(app.stores) + (["pairs"] if app.pairs is not None else []),
            "access_log": telemetry is not None and telemetry.access_log,
            "client_address": telemetry is not None and telemetry.client_address,
            "metrics": telemetry is not None and telemetry.metrics,
        },
    )


def _pick_server(server: str) -> tuple[str, Any]:
    """The server to run and its module (None for wsgiref); "auto" says so when it falls back to wsgiref."""
    modules = {"granian": "granian", "gunicorn": "gunicorn.app.base"}
    for kind in ("granian", "gunicorn") if server == "auto" else (server,):
        if kind == "wsgiref":
            return kind, None
        try:
            return kind, importlib.import_module(modules[kind])
        except ImportError:
            if server != "auto":
                raise DependencyError(f"{kind} is not installed (pip install 'credcheck[serve]')") from None
    logger.warning(
        "neither granian nor gunicorn is installed; serving from one process with the threaded wsgiref server "
        "(pip install 'credcheck[serve]' for a production server)",
        extra={"event": "fallback", "server": "wsgiref"},
    )
    return "wsgiref", None


# What the serving process hands its granian workers. The leading underscore keeps these apart from the
# command's own options, CREDCHECK_SERVE_<OPTION> (cli._config): CREDCHECK_SERVE_PAIRS is --pairs there.
_STORES_ENV: Final = "_CREDCHECK_WORKER_STORES"
_CACHE_ENV: Final = "_CREDCHECK_WORKER_CACHE"
_BODIES_ENV: Final = "_CREDCHECK_WORKER_BODIES"
_PAIRS_ENV: Final = "_CREDCHECK_WORKER_PAIRS"
_TELEMETRY_ENV: Final = "_CREDCHECK_WORKER_TELEMETRY"


def _pairs_identity(service: PairService) -> str:
    """What a spawned granian worker needs to take up the pair service: the store served (its proof: the file
    verified, not whatever the path holds now), the key file and the key's public id, never the key itself."""
    if service.key_path is None:
        raise ValueError("granian workers load the pair key from its file: give serve() a key file, not a KeyPair")
    store = service.store
    if store is None:
        raise ArtifactError(f"{service.path} changed on disk after it was verified; start the service again")
    return json.dumps(
        {
            "store": verified_identity(store),
            "key": service.key_path,
            "key_id": service.key_id.hex(),
            "limiter": None if service.limiter is None else service.limiter.path,
            "trusted": sorted(service.trusted_proxies),
        }
    )


#: The pair service the serving process verified, and that process's id: a worker forked from it takes this very
#: object (the key already in memory, the store already verified), whatever became of the files since.
_verified_pairs: tuple[int, PairService] | None = None


def _granian_pairs() -> PairService | UnavailablePairs | None:
    """The pair service of a granian worker: the parent's own if the worker was forked from it; else (a spawned
    worker) the parent's store (fully verified again if it is not the same file), its key file (which must
    still hold the key the parent served), and the parent's rate-limit table (shared). A worker that cannot
    take it up answers 503 for pair queries (:class:`UnavailablePairs`), as for a range store: never an error
    that has the worker respawned in a loop."""
    spec = os.environ.get(_PAIRS_ENV)
    if not spec:
        return None
    if _verified_pairs is not None and _verified_pairs[0] != os.getpid():
        return _verified_pairs[1]
    entry = json.loads(spec)
    path = entry["store"]["path"]
    try:
        key = load_key(entry["key"])
        if key.key_id.hex() != entry["key_id"]:
            return UnavailablePairs(
                path,
                f"the key file {entry['key']} holds another key now (key id {key.key_id.hex()}, the service "
                f"started with {entry['key_id']}): restart the service to serve with it",
            )
        store = open_as_verified(entry["store"], PairStore)
        try:
            service = make_pair_service(
                store,
                key,
                limiter=entry["limiter"],
                rate=0 if entry["limiter"] is None else None,
                trusted_proxies=entry["trusted"],
            )
        except BaseException:
            store.close()
            raise
    except (CredcheckError, OSError) as exc:
        return UnavailablePairs(path, str(exc))
    service.key_path = entry["key"]
    return service


def _granian_app() -> RangeApp:
    """The app each granian worker loads: the stores the parent verified, proven to be the same files.

    A store that is no longer the verified file and fails verification is not served: its scheme answers 503
    (and its path is watched) rather than the worker failing and being respawned in a loop.
    """
    stores: list[RangeStore] = []
    pending: list[tuple[str, str]] = []
    for entry in json.loads(os.environ[_STORES_ENV]):
        try:
            stores.append(open_as_verified(entry))
        except (CredcheckError, OSError) as exc:
            logger.error(
                "%s is not served by this worker: %s",
                entry["path"],
                exc,
                extra={"event": "store_unavailable", "store": entry["scheme"], "path": entry["path"]},
            )
            pending.append((entry["scheme"], entry["path"]))
    telemetry = os.environ.get(_TELEMETRY_ENV)
    app = RangeApp(
        stores,
        cache_size=int(os.environ[_CACHE_ENV]),
        owned=stores,
        pending=pending,
        pairs=_granian_pairs(),
        build_bodies=os.environ.get(_BODIES_ENV) == "1",
        telemetry=None if telemetry is None else Telemetry.from_json(telemetry),
    )
    app.worker_started()
    return app


def granian_settings(host: str, port: int, workers: int) -> dict[str, Any]:
    """How ``credcheck serve`` runs granian: the keyword arguments of ``granian.Granian`` after the target
    (benchmarks/range_density.py runs its floor app with the same)."""
    from granian.constants import HTTPModes, Interfaces, RuntimeModes
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    return dict(
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        # one Python thread per worker, a single-threaded Rust runtime and HTTP/1 only: on two cores this
        # measured 44k requests/s against 21k with granian's defaults (benchmarks/range_server.py)
        blocking_threads=1,
        runtime_mode=RuntimeModes.st,
        http=HTTPModes.http1,
        websockets=False,
        log_level=LogLevels.warning,
        respawn_failed_workers=True,
        # A worker still busy this long after a stop is killed (granian's default waits for ever).
        workers_kill_timeout=STOP_TIMEOUT,
        # Slowloris: granian's backpressure is the number of connections a worker holds at once (not only
        # requests); its default, backlog / workers = 512 on two cores, let ~1,000 idle half-open sockets
        # stop the service. Idle connections cost a Rust task and a buffer each, so allow thousands, and
        # close any that has not sent its headers within a few seconds (idle keep-alive ones too).
        backpressure=GRANIAN_CONNECTIONS,
        http1_settings=HTTP1Settings(header_read_timeout=int(HEADER_TIMEOUT * 1000)),
    )


def _serve_granian(
    granian: Any, app: RangeApp, host: str, port: int, workers: int, cache_size: int, log_config: dict[str, Any]
) -> None:
    if port == 0:
        with socket.create_server((host, 0), family=socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            port = probe.getsockname()[1]
    # JSON, not a path list: a path may hold any character, os.pathsep included
    os.environ[_STORES_ENV] = verified_identities(app.stores.values())
    os.environ[_CACHE_ENV] = str(cache_size)
    os.environ[_BODIES_ENV] = "1" if app.builds_bodies else "0"
    if app.recorder is not None:
        os.environ[_TELEMETRY_ENV] = app.recorder.telemetry.to_json()
    else:
        os.environ.pop(_TELEMETRY_ENV, None)
    global _verified_pairs
    if isinstance(app.pairs, PairService):
        os.environ[_PAIRS_ENV] = _pairs_identity(app.pairs)
        _verified_pairs = (os.getpid(), app.pairs)
    # every worker logs as this process does (granian configures its workers' logging from this)
    settings = {**granian_settings(host, port, workers), "log_dictconfig": log_config}
    runner = granian.Granian(f"{__name__}:_granian_app", **settings)
    announcer = threading.Thread(
        target=_announce_when_listening, args=(host, port, lambda: _serving(app, "granian", _url(host, port), workers))
    )
    announcer.daemon = True
    announcer.start()
    with _forking_workers():
        runner.serve()


def _what(app: RangeApp) -> str:
    """What the banner says is served: "sha1, ntlm ranges", "credential pairs", or both."""
    parts = [f"{', '.join(app.stores)} ranges"] if app.stores else []
    if app.pairs is not None:
        parts.append("credential pairs")
    return " and ".join(parts)


def _announce_when_listening(host: str, port: int, announce: Callable[[], None], timeout: float = 60.0) -> None:
    """Announce the server once the port accepts connections (granian binds in its own time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                announce()
                return
        except OSError:
            time.sleep(0.05)


def _check_bindable(host: str, port: int) -> None:
    """Fail at once on an address in use (gunicorn would retry for five seconds, then exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        probe = socket.create_server((host, port), family=family)  # SO_REUSEADDR, as both servers set it
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {_url(host, port)}: {exc.strerror or exc}") from None
    probe.close()


def _serve_gunicorn(
    base: Any, app: RangeApp, host: str, port: int, workers: int, threads: int, log_config: dict[str, Any]
) -> None:
    def when_ready(arbiter: Any) -> None:
        bound_host, bound_port = arbiter.LISTENERS[0].sock.getsockname()[:2]
        _serving(app, "gunicorn", _url(bound_host, bound_port), workers, threads)

    def post_fork(arbiter: Any, worker: Any) -> None:
        app.worker_started()

    def child_exit(arbiter: Any, worker: Any) -> None:
        # the master learns of a worker's exit here: its gauges go (its counts stay)
        recorder = app.recorder
        directory = None if recorder is None else recorder.telemetry.metrics_directory
        if directory is not None:
            worker_exited(directory, worker.pid)
        logger.info("worker %d exited", worker.pid, extra={"event": "worker_exit", "worker": worker.pid})

    options: dict[str, Any] = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "preload_app": True,  # stores opened once in the master; workers inherit the maps
        "accesslog": None,  # the app's own access log names routes, not paths (docs/DEPLOY.md)
        "errorlog": "-",
        "loglevel": "warning",
        "logconfig_dict": log_config,  # gunicorn's records as JSON lines too
        "post_fork": post_fork,
        "child_exit": child_exit,
        "proc_name": "credcheck",
        "graceful_timeout": STOP_TIMEOUT,
        "keepalive": 5,
        "when_ready": when_ready,
        "control_socket_disable": True,  # gunicorn >= 25 would otherwise create ~/.gunicorn/gunicorn.ctl
    }
    if os.path.isdir("/dev/shm"):
        options["worker_tmp_dir"] = "/dev/shm"  # heartbeat files off the disk

    class _Gunicorn(base.BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in options.items():
                if name in self.cfg.settings:  # skip settings an older gunicorn does not know
                    self.cfg.set(name, value)
            _quiet_gunicorn_requests()

        def load(self) -> RangeApp:
            return app

    master = os.getpid()
    try:
        with _forking_workers():
            _Gunicorn().run()
    except SystemExit as exc:
        # The arbiter ends with sys.exit() even on a clean stop: turn that into a return, in the master only.
        # A forked worker also unwinds through here when it ends, and must go on exiting.
        if os.getpid() != master:
            raise
        if exc.code not in (0, None):
            raise ServiceError(f"gunicorn stopped with exit status {exc.code} (its log above says why)") from None


class _NoRequestData(logging.Filter):
    """Takes what a client sent out of gunicorn's log lines: the address ("Invalid request from ip=…"), the
    request line or header it quotes ("Invalid HTTP request line: 'GET /range/ABCDE …'") and the URI of a
    request whose handling failed ("Error handling request GET /range/ABCDE?…"): none is recorded."""

    _ADDRESS = re.compile(r" from ip=\S+?(?=: |$)|\bip=\S+")
    _QUOTED = re.compile(r"['\"].*", re.DOTALL)  # from the first quote on: what gunicorn quotes of the request

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Error handling request"):
            record.msg, record.args = "Error handling request", None
            return True
        message = record.getMessage()
        cleaned = self._QUOTED.sub("'…'", self._ADDRESS.sub("", message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _quiet_gunicorn_requests() -> None:
    error_log = logging.getLogger("gunicorn.error")
    if not any(isinstance(f, _NoRequestData) for f in error_log.filters):
        error_log.addFilter(_NoRequestData())


class _QuietHandler(WSGIRequestHandler):
    timeout = HEADER_TIMEOUT  # on every read and write of the connection: an idle client is let go

    def log_message(self, format: str, *args: Any) -> None:
        """Keep no access log: client addresses and request lines are not recorded."""


_BUSY: Final = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 5\r\n\r\n"


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref with a thread per connection, bounded: in all, and per client address (slowloris).

    Each connection's reads and writes time out (``_QuietHandler.timeout``); a connection over a limit gets
    a 503 and is closed at once, so that one address holding many idle sockets leaves room for the others.
    """

    daemon_threads = True
    request_queue_size = 1024  # socketserver's default of 5 drops bursts of clients (and probes amid an attack)
    max_connections = WSGIREF_CONNECTIONS
    max_per_address = WSGIREF_PER_ADDRESS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._by_address: collections.Counter[str] = collections.Counter()
        self._counted: dict[Any, str] = {}
        self._limit_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        address = str(client_address[0]) if isinstance(client_address, tuple) else ""
        with self._limit_lock:
            if len(self._counted) < self.max_connections and self._by_address[address] < self.max_per_address:
                self._by_address[address] += 1
                self._counted[request] = address
                return True
        with contextlib.suppress(OSError):
            request.setblocking(False)
            request.send(_BUSY)
        return False

    def shutdown_request(self, request: Any) -> None:
        with self._limit_lock:
            address = self._counted.pop(request, None)
            if address is not None:
                self._by_address[address] -= 1
                if not self._by_address[address]:
                    del self._by_address[address]
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed (timed out, reset): no traceback, and no client address, on stderr."""
        kind = sys.exc_info()[0]
        logger.debug("a connection ended with %s", "an error" if kind is None else kind.__name__)


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _Stop(BaseException):
    """Raised by the SIGTERM handler to leave ``serve_forever``.

    Not an ``Exception``, as KeyboardInterrupt is not: ``socketserver`` catches ``Exception`` around
    ``process_request`` (and hands it to ``handle_error``), so a SIGTERM arriving while the main thread
    started a connection's thread was swallowed and the server went on serving.
    """


@contextlib.contextmanager
def serve_in_background(
    stores: Stores = (),
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    pairs: PairService | None = None,
    telemetry: Telemetry | None = None,
) -> Iterator[str]:
    """Serve ``stores`` (and the pair service ``pairs``) from a background thread of this process and yield
    the base URL; stop on exit.

    A threaded wsgiref server, for demos, tests and embedding; use :func:`serve` for production. With
    ``telemetry`` the app records its requests (on this process's logging, as configured) and metrics.
    """
    app = make_app(stores, pairs=pairs, telemetry=telemetry)
    server_class = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer
    try:
        with make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler) as httpd:
            thread = threading.Thread(target=httpd.serve_forever, name="credcheck-range-server", daemon=True)
            thread.start()
            try:
                yield _url(host, httpd.server_port)
            finally:
                httpd.shutdown()
                thread.join()
    finally:
        app.close()


def _serve_wsgiref(app: RangeApp, host: str, port: int) -> None:
    server_class = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer
    with make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler) as httpd:

        def stop(signum: int, frame: FrameType | None) -> None:
            raise _Stop

        # Signal handlers can only be set from the main thread; elsewhere the caller owns the stopping.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None
        try:
            if main:
                signal.signal(signal.SIGTERM, stop)
            _serving(app, "wsgiref", _url(host, httpd.server_port), 1)
            app.worker_started()
            httpd.serve_forever()
        except (KeyboardInterrupt, _Stop):
            pass
        finally:
            if main and previous is not None:
                signal.signal(signal.SIGTERM, previous)
