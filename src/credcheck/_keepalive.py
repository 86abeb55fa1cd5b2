"""The http.client driver of the sans-I/O flows: one keep-alive connection to one origin, for one thread.

Every decision — the request, how a body is proven whole, gzip, the limits, retries, backoff, ``Retry-After``,
the deadlines, redirects — is the flow's (``credcheck._http``), as under the requests and httpx drivers
(:class:`~credcheck.client.FlowDriver`, :class:`~credcheck.aio.AsyncFlowDriver`). :class:`KeepAliveDriver`
sends each :class:`~credcheck._http.events.Request` over the standard library's ``http.client``, reads a 200's
raw body (de-chunked by http.client, not decoded) into a :class:`~credcheck._http.body.BodyReader` under the
shared deadline watchdog (``credcheck._watchdog``), and classifies http.client's errors as the other drivers
classify theirs. The mirror runs one per worker thread: against a local server it spends a third of the CPU
per range of urllib3's pools and a fifth or less of requests' or httpx's (docs/MIRROR.md).

What it does on its own is transport: a kept-alive connection that the server closed while idle fails on its
next request before any byte of an answer arrives; that request is sent once more, at once, on a new
connection (urllib3 checks a pooled connection before reusing it for the same reason). It is never done for a
connection opened for the request, and it is not a retry of the flow.
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.parse
from collections.abc import Callable, Generator, Mapping
from typing import Final, TypeVar, cast

from ._http.body import BodyReader
from ._http.events import DEADLINE_PASSED, Failure, Reply, Request, Response, Wait, run
from ._http.options import ClientOptions
from ._http.urls import check_base_url, origin
from ._watchdog import Watchdog, arm
from .errors import RemoteErrorCode

__all__ = ["KeepAliveDriver"]

_T = TypeVar("_T")
_CHUNK_BYTES: Final = 64 * 1024
_DISCARD_BYTES: Final = 64 * 1024  # the body of a non-200 read (to keep the connection) if no longer than this
_PATH_SAFE: Final = "/%~!$&'()*+,;=:@?"


class _Stale(Exception):
    """The server closed a kept-alive connection before answering this request (it had timed out while idle)."""


def _sleep(event: Wait) -> None:
    time.sleep(event.seconds)


class KeepAliveDriver:
    """The http.client driver of the flows: one keep-alive connection to ``base_url``'s origin, for one thread.

    ``options.tls`` verifies TLS (the system's trust store by default); ``clock`` is the clock the flows run
    on. ``requests`` counts the requests sent and ``received`` the bytes of 200 bodies as they came over the
    wire (compressed).
    """

    def __init__(self, base_url: str, options: ClientOptions) -> None:
        parts = check_base_url(base_url)
        if parts.username is not None or parts.password is not None:
            raise ValueError("base_url must not carry credentials (this client sends none)")
        self._https = parts.scheme.lower() == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._origin = origin(base_url)
        self._context = options.tls
        self._conn: http.client.HTTPConnection | None = None
        self.clock: Callable[[], float] = time.monotonic
        self.requests = 0
        self.received = 0

    def drive(self, flow: Generator[Request | Wait, Reply, _T], wait: Callable[[Wait], None] = _sleep) -> _T:
        """Run a flow to its end: ``wait`` out its Waits (sleeping, by default), answer its Requests; return its
        value or raise its error (or whatever ``wait`` raises to stop)."""
        try:
            return run(flow, self.exchange, wait)
        finally:
            flow.close()

    def exchange(self, request: Request) -> Reply:
        """Send one request under a watchdog armed for the time left; what came back, as the protocol's value."""
        path = self._path(request.url)
        if isinstance(path, Failure):
            return path
        watchdog = arm(request.remaining)
        try:
            reused = self._conn is not None
            try:
                return self._send(request, path, watchdog)
            except _Stale:
                if not reused:
                    return Failure(RemoteErrorCode.CONNECTION, "connection closed before answering", retryable=True)
            try:
                return self._send(request, path, watchdog)  # on a new connection
            except _Stale:
                return Failure(RemoteErrorCode.CONNECTION, "connection closed before answering", retryable=True)
        finally:
            watchdog.disarm()

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _path(self, url: str) -> str | Failure:
        """The request target of ``url``, which must lie on this driver's origin (the flow follows only those)."""
        if origin(url) != self._origin:
            return Failure(RemoteErrorCode.CONNECTION, "a request to another origin than the base URL's", False)
        parts = urllib.parse.urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return urllib.parse.quote(target, safe=_PATH_SAFE)

    def _open(self, connect_timeout: float) -> http.client.HTTPConnection:
        if self._https:
            context = self._context if self._context is not None else ssl.create_default_context()
            self._context = context
            return http.client.HTTPSConnection(self._host, self._port, timeout=connect_timeout, context=context)
        return http.client.HTTPConnection(self._host, self._port, timeout=connect_timeout)

    def _send(self, request: Request, path: str, watchdog: Watchdog) -> Reply:
        connect, read = request.timeout.connect, request.timeout.read
        conn = self._conn
        if conn is None:
            conn = self._conn = self._open(connect)
        self.requests += 1
        try:
            try:
                conn.request(request.method, path, body=request.body, headers=dict(request.headers))
                sock = conn.sock
                watchdog.attach(sock)
                if sock.gettimeout() != read:
                    sock.settimeout(read)
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if watchdog.fired:
                    return DEADLINE_PASSED
                raise _Stale from None
            headers = cast(Mapping[str, str], response.msg)  # an email.message.Message: get() ignores case
            if response.status != 200:
                self._discard(response)
                return DEADLINE_PASSED if watchdog.fired else Response(response.status, headers)
            return self._read_body(response, headers, watchdog)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return DEADLINE_PASSED if watchdog.fired else _failure(exc)

    def _read_body(self, response: http.client.HTTPResponse, headers: Mapping[str, str], watchdog: Watchdog) -> Reply:
        """The raw body read into the protocol's BodyReader; the connection is closed unless it is reusable."""
        reader = BodyReader.start(headers, chunked=response.chunked)
        if isinstance(reader, Failure):
            self.close()
            return reader
        while chunk := response.read(_CHUNK_BYTES):
            self.received += len(chunk)
            failure = reader.feed(chunk)
            if failure is not None:
                self.close()
                return failure
        if watchdog.fired:  # the socket was shut: what was read ended early
            self.close()
            return DEADLINE_PASSED
        body = reader.finish()
        if not isinstance(body, bytes) or response.will_close:
            self.close()
        return Response(200, headers, body) if isinstance(body, bytes) else body

    def _discard(self, response: http.client.HTTPResponse) -> None:
        """Read a short framed body off the connection so that it can carry the next request; else close it."""
        if response.chunked or (response.length is not None and response.length <= _DISCARD_BYTES):
            response.read(_DISCARD_BYTES + 1)
            if response.isclosed() and not response.will_close:
                return
        self.close()


def _failure(exc: OSError | http.client.HTTPException) -> Failure:
    """What an http.client or socket error means for the protocol: the same kinds as the other drivers'."""
    if isinstance(exc, TimeoutError):
        return Failure(RemoteErrorCode.TIMEOUT, "timed out", retryable=True, cause=exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        # A certificate that fails now fails on the next attempt too.
        return Failure(RemoteErrorCode.CONNECTION, "TLS failure", retryable=False, cause=exc)
    if isinstance(exc, http.client.IncompleteRead):
        return Failure(RemoteErrorCode.CONNECTION, "connection dropped during the body", retryable=True, cause=exc)
    return Failure(RemoteErrorCode.CONNECTION, "connection failed or dropped", retryable=True, cause=exc)
