"""Helpers the test modules share: the server corpus, a WSGI client, a served subprocess, the pair-tier fixtures.

Test modules import these from here (never from one another); pytest fixtures live in conftest.py.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import io
import os
import queue
import re
import signal
import socketserver
import subprocess
import sys
import threading
import time
import traceback
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import WSGIWarning, validator

import numpy as np

import credcheck
from credcheck.cli import main
from credcheck.pairs import _oprf
from credcheck.pairs.keys import KeyPair
from credcheck.pairs.stretch import split_inputs

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse

# ----------------------------------------------------------------------------------------------------
# The server tests' corpus: real passwords with counts, plus hand-made hashes that crowd one prefix.

LEAKED = {"password": 3_861_493, "123456": 37_359_195, "Passw0rd!": 2_024, "letmein": 7, "dragon": 1}
#: Never in the corpus; the first shares its SHA-1 and NTLM prefixes with a corpus hash (a NEIGHBOUR).
CLEAN = ["credcheck: never leaked, but a neighbour did", "credcheck: never leaked, alone in its range"]
CROWDED = "ABCDE"  # a prefix with several lines, given to the builder unsorted and in lower case
CROWDED_SUFFIXES = {
    "f" * 35: 5,
    "0" * 35: 12,
    "00000000000000000000000000000000001": 1,
    "7a3b" + "9" * 31: 4_294_967_295,
    "a" * 35: 2,
}


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest().upper()


def neighbour(full: str) -> str:
    """A different hash with the same 5-hex prefix."""
    return full[:5] + ("0" if full[5] != "0" else "1") + full[6:]


def corpus(scheme: str) -> dict[str, int]:
    """Every full upper-case hash of the test corpus with its count."""
    digest = sha1 if scheme == "sha1" else credcheck.ntlm_hex
    hashes = {digest(password): count for password, count in LEAKED.items()}
    hashes[neighbour(digest(CLEAN[0]))] = 3
    if scheme == "sha1":
        hashes.update({CROWDED + suffix.upper(): count for suffix, count in CROWDED_SUFFIXES.items()})
    return hashes


# ----------------------------------------------------------------------------------------------------
# A tiny WSGI client: every call also goes through wsgiref's validator (PEP 3333 conformance).


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def lines(self) -> list[bytes]:
        return self.body.split(b"\r\n") if self.body else []


def recording(started: list[tuple[str, list[tuple[str, str]]]]) -> StartResponse:
    """A WSGI start_response that appends each status and header list to ``started``; what is written is dropped."""

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: object = None, /
    ) -> Callable[[bytes], object]:
        started.append((status, headers))
        return lambda data: None

    return start_response


def call(
    wsgi_app: Callable[..., Any],
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    query: str = "",
) -> Reply:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    started: list[tuple[str, list[tuple[str, str]]]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WSGIWarning)  # "unknown REQUEST_METHOD": we send some on purpose
        result = validator(wsgi_app)(environ, recording(started))
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):  # PEP 3333: the server closes what the app returned, if it can be closed
                result.close()
    status, response_headers = started[0]
    names = [name.lower() for name, _ in response_headers]
    assert len(names) == len(set(names)), f"duplicate headers: {names}"
    return Reply(int(status.split()[0]), {name.lower(): value for name, value in response_headers}, body)


# ----------------------------------------------------------------------------------------------------
# The real thing: serve() in a subprocess, on a free port of 127.0.0.1

SERVE_SCRIPT = """
import sys
kind = sys.argv[1]
if kind == "wsgiref":
    sys.modules["granian"] = sys.modules["gunicorn"] = None  # as if neither were installed
from credcheck.server import serve
serve(sys.argv[2:], "127.0.0.1", 0, workers=2, threads=4, server="auto" if kind == "wsgiref" else kind)
print("test: serve() returned", flush=True)
"""
_URL = re.compile(r"http://127\.0\.0\.1:\d+")


def _kill_group(process: subprocess.Popen[str]) -> None:
    """Kill the server and every worker it started (they share its process group), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclasses.dataclass
class RunningServer:
    kind: str
    process: subprocess.Popen[str]
    url: str
    banner: str
    stdout: list[str]
    stderr: list[str]
    pumps: list[threading.Thread]
    lines: queue.Queue[str | None]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send ``signum``, wait for the exit and return the exit status (killing all after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.process)
                raise
        for pump in self.pumps:
            pump.join(5)  # all output read
        return self.process.returncode

    def wait_for_line(self, text: str, timeout: float = 30) -> None:
        """Wait until the server prints a line holding ``text`` on standard output."""
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise RuntimeError(f"the {self.kind} server exited before printing {text!r}")
            if text in line:
                return


@contextlib.contextmanager
def running_server(
    kind: str,
    paths: Sequence[str | Path],
    timeout: float = 30,
    *,
    script: str = SERVE_SCRIPT,
    wait_for: str | None = None,
) -> Iterator[RunningServer]:
    """Run ``serve()`` with granian, gunicorn or the wsgiref fallback in a subprocess; stop it on exit.

    The server runs in a process group of its own, killed as a whole if it does not stop: no worker is left
    running after a test. Without ``wait_for`` it is yielded once it prints its URL, else once it prints
    a line holding ``wait_for``. ``script`` replaces the one that runs ``serve()``: it is run with ``kind``
    and ``paths`` (any arguments) as its arguments.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", script, kind, *map(str, paths)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    stdout: list[str] = []
    stderr: list[str] = []

    def pump_stdout() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stdout.append(line)
            lines.put(line)
        lines.put(None)

    def pump_stderr() -> None:
        assert process.stderr is not None
        stderr.extend(process.stderr)

    pumps = [threading.Thread(target=f, daemon=True) for f in (pump_stdout, pump_stderr)]
    for pump in pumps:
        pump.start()
    server = None
    try:
        while server is None:
            line = lines.get(timeout=timeout)
            if line is None:
                process.wait(5)
                pumps[1].join(5)
                raise RuntimeError(f"the {kind} server exited early: {''.join(stderr)[-2000:]}")
            found = _URL.search(line) if wait_for is None else (line if wait_for in line else None)
            if found:
                url = found.group(0) if isinstance(found, re.Match) else ""
                server = RunningServer(kind, process, url, line, stdout, stderr, pumps, lines)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # gunicorn's quick stop; SIGTERM lingers on kept-alive connections
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                _kill_group(process)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # a worker the server left behind


# ----------------------------------------------------------------------------------------------------
# The pair tier: a tiny stretch, a fixed key, an executor that runs in this process, combo files.

TINY = "scrypt:16:1:1"


def fixed_key(seed: bytes = b"credcheck tests") -> KeyPair:
    """A fixed key (DeriveKeyPair of a seed), so tests are reproducible."""
    sk, _ = _oprf.derive_key_pair(seed.ljust(32, b"\x00"), b"tests")
    return KeyPair.from_secret(sk)


KEY = fixed_key()


class SerialExecutor(cf.Executor):
    """Runs each task at once in this process, recording what was submitted (and optionally failing)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_after = fail_after

    @property
    def stretched(self) -> int:
        """How many inputs were stretched."""
        return sum(len(split_inputs(args[-1])) for args in self.calls)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            future.set_exception(OSError("a worker went away"))
            return future
        self.calls.append(args)
        future.set_result(fn(*args, **kwargs))
        return future


def write_combo(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------------
# Secrets in the frames attached to an exception (what capture_locals, pytest -l and error trackers show)

_TESTS = str(Path(__file__).parent)


def _holds_secret(value: object, secrets: Sequence[str | bytes], depth: int = 0) -> bool:
    if isinstance(value, str):
        return any(isinstance(secret, str) and secret in value for secret in secrets)
    if isinstance(value, bytes | bytearray | memoryview):
        return any(isinstance(secret, bytes) and secret in bytes(value) for secret in secrets)
    if isinstance(value, np.ndarray):
        return _holds_secret(value.tobytes(), secrets)
    if depth < 3 and isinstance(value, dict):
        return any(
            _holds_secret(k, secrets, depth + 1) or _holds_secret(v, secrets, depth + 1) for k, v in value.items()
        )
    if depth < 3 and isinstance(value, list | tuple | set | frozenset):
        return any(_holds_secret(item, secrets, depth + 1) for item in value)
    return False


_SUSPENDED = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
_FRAMED = (BaseException, types.TracebackType, types.FrameType, *_SUSPENDED)


def _reachable(value: object, depth: int = 0) -> Iterator[object]:
    """What a local value leads to that may hold frames: exceptions, tracebacks, frames, generators, coroutines."""
    if isinstance(value, _FRAMED):
        yield value
    elif depth < 3 and isinstance(value, dict):
        for item in value.values():
            yield from _reachable(item, depth + 1)
    elif depth < 3 and isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _reachable(item, depth + 1)


def _secrets_reachable(roots: list[object], secrets: Sequence[str | bytes]) -> list[str]:
    found: list[str] = []
    pending = roots
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, BaseException):
            for name, value in [("args", item.args), *vars(item).items(), ("object", getattr(item, "object", None))]:
                if _holds_secret(value, secrets):
                    found.append(f"{type(item).__name__}.{name}")
            pending += (item.__traceback__, item.__cause__, item.__context__)
        elif isinstance(item, types.TracebackType):
            pending += (item.tb_frame, item.tb_next)
        elif isinstance(item, types.FrameType):
            code = item.f_code
            if code.co_filename.startswith(_TESTS):
                continue
            for name, value in item.f_locals.items():
                if _holds_secret(value, secrets):
                    found.append(f"{code.co_name} ({code.co_filename}) local {name!r}")
                pending.extend(_reachable(value))
        elif isinstance(item, _SUSPENDED):
            for name in ("gi_frame", "cr_frame", "ag_frame", "gi_yieldfrom", "cr_await"):
                pending.append(getattr(item, name, None))
    return found


def secrets_in_frames(error: BaseException, secrets: Sequence[str | bytes]) -> list[str]:
    """Every place reachable from ``error`` that holds one of ``secrets`` (str ones are looked for in text, bytes
    ones in bytes): its args and attributes and those of the exceptions it chains to; the locals of every frame
    of their tracebacks (the tests' own frames aside); and, through those locals, the frames of suspended
    generators and coroutines (a flow, an awaited call), of other tracebacks and of other exceptions."""
    found = _secrets_reachable([error], secrets)
    summaries: list[traceback.TracebackException | None] = [
        traceback.TracebackException.from_exception(error, capture_locals=True)
    ]
    while summaries:  # what capture_locals (pytest -l, error trackers) would print
        summary = summaries.pop()
        if summary is None:
            continue
        for frame in summary.stack:
            if not frame.filename.startswith(_TESTS) and _holds_secret(str(frame.locals), secrets):
                found.append(f"capture_locals shows a secret in {frame.name} ({frame.filename})")
        summaries += (summary.__cause__, summary.__context__)
    return found


def editor_lines(text: bytes) -> list[bytes]:
    """The lines of a text as an editor shows them (and the readers count them): each ends at LF, CRLF or a lone CR."""
    lines = re.split(rb"\r\n|\r|\n", text)
    return lines[:-1] if lines[-1] == b"" else lines


# ----------------------------------------------------------------------------------------------------
# Dumps as they come in the wild (docs/DATA.md, "The shapes hash lines come in"): each writes rows of
# (hex digest, count) in one shape; CANONICAL writes them as HIBP's downloader does.


def _dump(line: Callable[[str, int], str], *, header: str = "", ending: str = "\n", bom: bool = False) -> Any:
    def write(rows: Sequence[tuple[str, int]]) -> bytes:
        text = header + "".join(line(digest, count) + ending for digest, count in rows)
        return (b"\xef\xbb\xbf" if bom else b"") + text.encode()

    return write


CANONICAL = _dump(lambda h, c: f"{h}:{c}")
DUMP_SHAPES: dict[str, Callable[[Sequence[tuple[str, int]]], bytes]] = {
    "tab": _dump(lambda h, c: f"{h}\t{c}"),
    "tab-lowercase-crlf": _dump(lambda h, c: f"{h.lower()}\t{c}", ending="\r\n"),
    "comma": _dump(lambda h, c: f"{h},{c}"),
    "csv-quoted": _dump(lambda h, c: f'"{h}",{c}'),
    "csv-quoted-both": _dump(lambda h, c: f'"{h}","{c}"'),
    "csv-header": _dump(lambda h, c: f'"{h}",{c}', header='"hash","count"\n'),
    "csv-bom-header-crlf": _dump(lambda h, c: f"{h},{c}", header="Hash,Count\r\n", ending="\r\n", bom=True),
    "plus": _dump(lambda h, c: f"{h}:+{c}"),
    "nul": _dump(lambda h, c: f"{h}:{c}\x00"),
    "nul-crlf": _dump(lambda h, c: f"{h}:{c}\x00", ending="\r\n"),
    "cr": _dump(lambda h, c: f"{h}:{c}", ending="\r"),
    "tab-cr": _dump(lambda h, c: f"{h}\t{c}", ending="\r"),
}
#: The shapes whose first line is a column header (read as a bad line, not a fault under --strict).
WITH_HEADER = frozenset({"csv-header", "csv-bom-header-crlf"})


def secrets_in_threads(secrets: Sequence[str | bytes]) -> list[str]:
    """Every frame of every other thread, and what its locals lead to (as for :func:`secrets_in_frames`), that
    holds one of ``secrets``: what a check left running after its caller was given its error."""
    roots: list[object] = []
    for ident, frame in sys._current_frames().items():
        if ident != threading.get_ident():
            roots.append(frame)
            while frame.f_back is not None:
                frame = frame.f_back
                roots.append(frame)
    return _secrets_reachable(roots, secrets)


# ----------------------------------------------------------------------------------------------------
# Races: a step held in its thread, a shared check closed in a loop, a pair store read slowly


def hold_in_thread(monkeypatch: Any, owner: object, name: str) -> tuple[threading.Event, ...]:
    """Make ``owner.name`` wait for a release before it runs; (entered, release, done): entered when a call
    begins, release to let it go on, done once it has returned (or raised)."""
    real = getattr(owner, name)
    entered, release, done = threading.Event(), threading.Event(), threading.Event()

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(10)
        try:
            return real(*args, **kwargs)
        finally:
            done.set()

    monkeypatch.setattr(owner, name, held)
    return entered, release, done


def slow_pair_reads(monkeypatch: Any) -> None:
    """Every pair store bucket read takes half a millisecond longer: a close() racing a check lands inside it."""
    from credcheck.pairs.store import PairStore

    real = PairStore.bucket

    def slow(self: PairStore, bucket: int) -> bytes:
        time.sleep(0.0005)
        return real(self, bucket)

    monkeypatch.setattr(PairStore, "bucket", slow)


@contextlib.contextmanager
def closing_shared_checks() -> Iterator[list[BaseException]]:
    """``close_shared()`` in a loop in another thread for the duration; yields the errors it raised (none, or
    the test fails)."""
    from credcheck.contrib import _policy

    stop, errors = threading.Event(), []

    def loop() -> None:
        while not stop.is_set():
            try:
                _policy.close_shared()
            except BaseException as exc:  # reported to the test
                errors.append(exc)
                return

    thread = threading.Thread(target=loop, name="close_shared loop", daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        stop.set()
        thread.join()


# ----------------------------------------------------------------------------------------------------
# The credcheck command: in this process, in a process of its own (stopped by signals: the CLI runner's tests),
# and the small WSGI server its checks are pointed at


def run_main(argv: Sequence[str], stdin: bytes = b"", monkeypatch: Any = None) -> int:
    """Run ``credcheck ARGV`` in this process with ``stdin`` as its standard input; return its exit status (a
    usage error's too: the parser exits with it)."""
    assert monkeypatch is not None
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    try:
        return main(list(argv))
    except SystemExit as exit_:
        assert isinstance(exit_.code, int)
        return exit_.code


def check_command(argv: Sequence[str], stdin: bytes) -> tuple[int, list[str], str]:
    """``credcheck check ARGV`` in a process of its own: exit status, output lines, standard error."""
    done = subprocess.run([sys.executable, "-m", "credcheck", "check", *argv], input=stdin, capture_output=True)
    return done.returncode, done.stdout.decode().splitlines(), done.stderr.decode()


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client that went away mid-answer
        pass


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def wsgi_in_thread(app: Callable[..., Any]) -> Iterator[tuple[str, WSGIServer]]:
    """Serve the WSGI ``app`` on 127.0.0.1 from a thread; yield its URL and the server (to stop it early)."""
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def failing_range(app: Callable[..., Any], prefix: str) -> Callable[..., Any]:
    """``app``, except that the range ``prefix`` answers a body that is not a range (no retry can help)."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ["PATH_INFO"].upper() == f"/RANGE/{prefix}":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"this is not a range line"]
        return app(environ, start_response)

    return wrapped


_CLI_SCRIPT = """
import sys
{patch}
from credcheck.cli import main
sys.exit(main(sys.argv[1:]))
"""


def credcheck_process(
    argv: Sequence[str], *, patch: str = "", stdin: int | None = subprocess.DEVNULL, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``credcheck ARGV`` (after the Python lines ``patch``) in a session of its own, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-c", _CLI_SCRIPT.format(patch=patch), *argv],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        start_new_session=True,
    )


def wait_until(done: Callable[[], object], process: subprocess.Popen[bytes], what: str, timeout: float = 120) -> None:
    """Poll ``done()`` until it is true; fail (never hang) if ``process`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not done():
        if process.poll() is not None:
            assert process.stderr is not None
            raise AssertionError(f"credcheck exited ({process.returncode}) before {what}: {process.stderr.read()!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"credcheck never got to {what}")
        time.sleep(0.01)


def survivors(session: int, timeout: float = 10) -> list[str]:
    """The processes of ``session`` (a process started with start_new_session=True and what it started) still
    alive ``timeout`` seconds after it ended, as ``ps`` lists them (zombies, which are dead, aside)."""
    deadline = time.monotonic() + timeout
    while True:
        listing = subprocess.run(
            ["ps", "-o", "pid=,stat=,args=", "-s", str(session)], capture_output=True, text=True, check=False
        ).stdout
        alive = [line.strip() for line in listing.splitlines() if not line.split()[1].startswith("Z")]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def kill_session(session: int) -> None:
    """Kill whatever a failed test left running in ``session``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(session, signal.SIGKILL)
