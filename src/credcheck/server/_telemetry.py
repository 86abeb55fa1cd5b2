"""What a serving process records of its requests and stores: the access log (:mod:`.logs`) and the metrics
(:mod:`.metrics`), set by one options object, :class:`Telemetry`, and recorded by one :class:`Recorder` an app.

A request's record holds the route's template, the method (one of a fixed few), the status, the bytes sent, the
time in the app and the worker's pid; the client's address only with ``client_address``. The size of a range's
body, or of a pair query's answer, follows from its prefix or bucket (at HIBP's density a body's exact length
narrows its prefix to a few hundred of the 2^20), so on those routes the record holds the size rounded up to a
power of two instead. The metrics count the same requests by route template and status.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from ..pairs._service import client_address, trusted
from ._logs import ACCESS_LOGGER, access_record
from ._metrics import Metrics, process_id

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["Recorder", "Telemetry"]

logger = logging.getLogger("credcheck.server")

_METHODS: Final = frozenset({"GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "PATCH"})
#: The pair query's route template: its outcomes are counted on their own too.
PAIR_QUERY: Final = "/v1/pairs/query"
_PAIR_RESULTS: Final = {"200": "answered", "429": "rate_limited", "400": "refused", "503": "unavailable"}


@dataclasses.dataclass(frozen=True, slots=True)
class Telemetry:
    """What a serving process records: an access record a request (``access_log``), with the client's address
    (``client_address``: the peer's, or behind one of ``trusted_proxies`` the address it forwards), and the
    metrics behind ``/metrics`` (``metrics``)."""

    access_log: bool = True
    client_address: bool = False
    metrics: bool = False
    trusted_proxies: frozenset[str] = frozenset()
    #: Where every worker's metric values are added up (:func:`.metrics.multiprocess_directory`), or None: the
    #: metrics of this process alone.
    metrics_directory: str | None = None

    @classmethod
    def of(
        cls,
        *,
        access_log: bool = True,
        client_address: bool = False,
        metrics: bool = False,
        trusted_proxies: Iterable[str] = (),
        metrics_directory: str | None = None,
    ) -> Telemetry:
        """The options, the proxies' addresses checked (``ValueError`` for one that is not an IP address)."""
        return cls(bool(access_log), bool(client_address), bool(metrics), trusted(trusted_proxies), metrics_directory)

    def to_json(self) -> str:
        """These options for a worker process started from scratch (:meth:`from_json`)."""
        fields = dataclasses.asdict(self)
        fields["trusted_proxies"] = sorted(self.trusted_proxies)
        return json.dumps(fields)

    @classmethod
    def from_json(cls, text: str) -> Telemetry:
        fields: dict[str, Any] = json.loads(text)
        return cls.of(**fields)


def _rounded(size: int) -> int:
    """``size`` rounded up to a power of two (0 stays 0)."""
    return 1 << (size - 1).bit_length() if size > 0 else 0


class Recorder:
    """Records an app's requests and its stores' states as its :class:`Telemetry` says (one a process's app)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        #: The metrics counted, or None when ``/metrics`` is off.
        self.metrics = Metrics(telemetry.metrics_directory) if telemetry.metrics else None
        self._access = logging.getLogger(ACCESS_LOGGER)
        self._pid = 0
        self._metrics_failed = False
        process_id.watch_forks()
        #: Called with this recorder at a process's first request (and by :meth:`started`): it sets the store gauges.
        self.on_new_process: Callable[[Recorder], None] | None = None

    def started(self) -> None:
        """Say this process serves (a worker started), and set its gauges."""
        self._pid = process_id()
        logger.info("worker started", extra={"event": "worker_start"})
        if self.on_new_process is not None:
            self.on_new_process(self)

    def request(
        self, environ: WSGIEnvironment, route: str, status: str, size: int, seconds: float, coarse: bool
    ) -> None:
        """Record one request: ``route`` its template, ``status`` the status line, ``size`` the bytes of the body
        sent, ``seconds`` in the app; ``coarse`` when the size of its body follows from its key."""
        if self._pid != process_id():  # this process's first request: a worker forked, or the only process
            self._pid = process_id()
            if self.on_new_process is not None:
                self.on_new_process(self)
        code = status[:3]
        metrics = self.metrics
        if metrics is not None:
            try:
                metrics.request(route, code, seconds)
                if route == PAIR_QUERY and environ.get("REQUEST_METHOD") == "POST":
                    metrics.pair_queries.labels(_PAIR_RESULTS.get(code, "error")).inc()
            except Exception as exc:
                self._failed(exc)
        access = self._access
        if not access.isEnabledFor(logging.INFO):
            return
        method = environ.get("REQUEST_METHOD", "")
        method = method if method in _METHODS else "other"
        fields: dict[str, object] = {
            "event": "request",
            "route": route,
            "method": method,
            "status": int(code),
            "bytes": _rounded(size) if coarse else size,
            "duration_ms": round(seconds * 1000, 3),
        }
        if self.telemetry.client_address:
            fields["client"] = client_address(environ, self.telemetry.trusted_proxies) or str(
                environ.get("REMOTE_ADDR") or ""
            )
        access.handle(access_record(fields, method, route, code, process_id()))

    def body(self, source: str) -> None:
        """Count a range body sent from ``source``: side_file, cache or rendered."""
        if self.metrics is not None:
            try:
                self.metrics.body(source)
            except Exception as exc:
                self._failed(exc)

    def store(self, role: str, verified: bool, generation: int) -> None:
        """Set this process's gauges of the store of ``role``."""
        if self.metrics is not None and self._pid == process_id():
            try:
                self.metrics.store(role, verified, generation)
            except Exception as exc:
                self._failed(exc)

    def store_event(self, role: str, event: str) -> None:
        """Count a new file found at a store's path: ``event`` is ``reloaded`` or ``refused``."""
        if self.metrics is not None and event in ("reloaded", "refused"):
            try:
                self.metrics.reloads.labels(role, "served" if event == "reloaded" else "refused").inc()
            except Exception as exc:
                self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        """A metric could not be counted (its file could not grow: /dev/shm full): the request is answered all the
        same, and this process says so once."""
        if not self._metrics_failed:
            self._metrics_failed = True
            logger.error(
                "a metric could not be counted (%s: %s); the counts of this worker are short from now on",
                type(exc).__name__,
                exc,
                extra={"event": "metrics_error"},
            )
