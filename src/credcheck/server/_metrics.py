"""The server's Prometheus metrics (``/metrics`` with ``serve --metrics``), counted in every worker process and
added up across them by prometheus_client's multiprocess mode (docs/DEPLOY.md, "Metrics").

Each worker writes its values into memory-mapped files of its own in one directory (``PROMETHEUS_MULTIPROC_DIR``);
the worker that answers ``/metrics`` reads them all. :func:`multiprocess_directory` makes that directory, private
and fresh at each start (on ``/dev/shm`` where there is one), for the serving process and the workers it starts,
and removes it when the server stops. Counters and histograms of a worker that died stay counted (they
happened); its gauges are dropped (:func:`prometheus_client.multiprocess.mark_process_dead`) when gunicorn reports
the exit, and under any server when a scrape finds its process gone.

No label carries a prefix, a bucket, a path or anything a client chose: routes are templates from the app's
route table, statuses the app's own, stores their role (sha1, ntlm, pairs).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values

__all__ = [
    "CONTENT_TYPE",
    "ENV",
    "Metrics",
    "forget_dead_workers",
    "multiprocess_directory",
    "process_id",
    "worker_exited",
]

#: Where prometheus_client's multiprocess mode keeps every process's values.
ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: Prometheus's text exposition format, as :func:`prometheus_client.generate_latest` writes it.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: A range request takes tens of microseconds to a few milliseconds, a pair query about a millisecond.
LATENCY_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
_PREFIX: Final = "credcheck-metrics-"
_DB = re.compile(r"gauge_live\w+_(\d+)\.db")


class _Pid:
    """This process's id, kept: read on every request (by every metric value written, and by the access log),
    where ``os.getpid()`` is a system call each time; a forked child takes its own before fork() returns."""

    def __init__(self) -> None:
        self.value = os.getpid()
        self._hooked = False

    def watch_forks(self) -> None:
        if not self._hooked and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forked)
            self._hooked = True

    def _forked(self) -> None:
        self.value = os.getpid()

    def __call__(self) -> int:
        return self.value


#: This process's id (:class:`_Pid`): ``process_id()``.
process_id: Final = _Pid()


class Metrics:
    """The server's metrics: in ``directory`` (multiprocess mode, every worker's values added up), or with
    ``directory=None`` in this process alone (a registry of its own: ``serve_in_background``, ``make_app``)."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory
        # In multiprocess mode the values live in the directory's files, and a collector reads them all: the
        # metrics themselves join no registry (the default one would count them in this process only).
        self._registry = None if directory is not None else CollectorRegistry(auto_describe=True)
        registry = self._registry
        self.requests = Counter(
            "credcheck_http_requests",
            "Requests answered, by route template and status",
            ["route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "credcheck_http_request_duration_seconds",
            "Time in the app per request (to the response's last byte handed to the server), by route template "
            "and status",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.bodies = Counter(
            "credcheck_range_bodies",
            "Range bodies sent (200s), by where they came from: side_file, cache (a body-cache hit), or rendered "
            "(a body-cache miss: rendered from the store)",
            ["source"],
            registry=registry,
        )
        self.verified = Gauge(
            "credcheck_store_verified",
            "1 if every worker serves a verified store of this role, 0 if one cannot (changed in place, refused)",
            ["store"],
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.generation = Gauge(
            "credcheck_store_generation",
            "Files served at the store's path since the start (0: the one verified at start), in the worker "
            "furthest behind",
            ["store"],
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.reloads = Counter(
            "credcheck_store_reloads",
            "New files found at a store's path, by worker and outcome: served, or refused (failed verification)",
            ["store", "result"],
            registry=registry,
        )
        self.pair_queries = Counter(
            "credcheck_pair_queries",
            "Pair queries (POST /v1/pairs/query) by outcome: answered, rate_limited, refused (a bad query), "
            "unavailable, error",
            ["result"],
            registry=registry,
        )
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._sources: dict[str, Counter] = {}

    def request(self, route: str, status: str, seconds: float) -> None:
        """Count one request of ``route`` (a template) answered with ``status`` (its three digits)."""
        children = self._children.get((route, status))
        if children is None:  # the few (route, status) pairs a server meets, each looked up once
            children = self._children[(route, status)] = (
                self.requests.labels(route, status),
                self.latency.labels(route, status),
            )
        children[0].inc()
        children[1].observe(seconds)

    def body(self, source: str) -> None:
        """Count a range body sent from ``source``."""
        child = self._sources.get(source)
        if child is None:
            child = self._sources[source] = self.bodies.labels(source)
        child.inc()

    def store(self, role: str, verified: bool, generation: int) -> None:
        """Set this process's view of the store of ``role``."""
        self.verified.labels(role).set(1 if verified else 0)
        self.generation.labels(role).set(generation)

    def render(self) -> bytes:
        """Every metric in Prometheus's text format, all workers added up (:data:`CONTENT_TYPE`)."""
        if self._registry is not None:
            return generate_latest(self._registry)
        assert self.directory is not None
        forget_dead_workers(self.directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def forget_dead_workers(directory: str) -> None:
    """Drop the gauges of every process that wrote some in ``directory`` and is no longer running."""
    pids = {int(m.group(1)) for path in os.listdir(directory) if (m := _DB.fullmatch(path))}
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def worker_exited(directory: str, pid: int) -> None:
    """Drop the gauges of the worker ``pid``, which has exited (its counts stay)."""
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _base() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _remove_stale(base: str) -> None:
    """Remove the directories of servers of this user that were killed before they could (their pid is gone)."""
    for path in glob.glob(os.path.join(glob.escape(base), f"{_PREFIX}*-*")):
        pid = os.path.basename(path)[len(_PREFIX) :].split("-", 1)[0]
        try:
            mine = os.lstat(path).st_uid == os.getuid()
        except OSError:
            continue
        if mine and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def multiprocess_directory() -> Iterator[str]:
    """A fresh private directory (0700) for the metric values of this process and of every worker it starts
    (``PROMETHEUS_MULTIPROC_DIR`` in their environment), removed on exit by this process only."""
    base = _base()
    _remove_stale(base or tempfile.gettempdir())
    path = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=base)
    owner = os.getpid()
    previous_env, previous_class = os.environ.get(ENV), values.ValueClass
    os.environ[ENV] = path
    # prometheus_client picks multiprocess values when it is imported, from the environment: this process may
    # have imported it before the directory existed, so its values (and those of the workers it forks) are
    # switched here, to a class of this run's own.
    process_id.watch_forks()
    values.ValueClass = values.MultiProcessValue(process_id)  # type: ignore[no-untyped-call]
    try:
        yield path
    finally:
        if os.getpid() == owner:  # a forked worker that unwinds through here leaves it to the server
            close = getattr(values.ValueClass, "close_all_files", None)  # its maps of the removed files
            if close is not None:
                close()
            values.ValueClass = previous_class
            if previous_env is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = previous_env
            shutil.rmtree(path, ignore_errors=True)
