"""The requests driver of the range protocol: :class:`RangeClient` fetches ranges from HIBP-compatible APIs.

Only the first five hex characters of a hash ever leave the process: a range API (the public Pwned
Passwords service, ``credcheck serve``, or a static export behind any web server) answers with every hash
suffix that shares that prefix, and the checker (:class:`credcheck.checker.RemoteChecker`) looks the rest of
the digest up locally. Every decision — the request, retries, the deadline, redirects, the cache, how a
body is proven whole and parsed — is the sans-I/O protocol's (``credcheck._protocol``); this module sends
its requests over requests/urllib3 and tells it what came back, classifying transport errors.

Failures are loud: a timeout, a dropped connection, a wrong status or a body that is not ``SUFFIX:COUNT``
lines raises :class:`~credcheck.errors.RemoteError` with a machine-readable code, never "not found".
The caller decides the failure policy (reject, fall back to a local filter, or let the password through).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Final, TypeVar

import requests
import urllib3.exceptions
import urllib3.response

from . import _args
from ._frames import entry_point
from ._protocol import (
    DEADLINE_PASSED,
    DEFAULT_BASE_URL,
    BodyReader,
    Failure,
    Reply,
    Request,
    Response,
    Wait,
    bad_response,
    check_base_url,
    check_timing,
    parse_range_body,
    range_protocol,
    redacted,
)
from ._transport import Watchdog, armed, new_session
from .errors import RemoteErrorCode

__all__ = ["DEFAULT_BASE_URL", "FlowDriver", "RangeClient", "check_base_url", "check_timing", "parse_range_body"]

_T = TypeVar("_T")

_CHUNK_BYTES: Final = 64 * 1024


def __getattr__(name: str) -> object:
    # RemoteChecker and open_remote live with the other checkers and with open(); they are still found here.
    if name == "RemoteChecker":
        from .checker import RemoteChecker

        return RemoteChecker
    if name == "open_remote":
        from ._sources import open_remote

        return open_remote
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class FlowDriver:
    """The requests driver of the sans-I/O flows (``credcheck._protocol``, ``credcheck.pairs._wire``).

    It holds the session (its own, whose connections answer to the deadline watchdog, or one passed in) and
    the clock, sends each :class:`Request` under a watchdog armed for the time the flow has left, streams a
    200's body through a :class:`BodyReader`, and classifies transport errors as :class:`Failure`. The range
    client and the pair client are this driver with their flows; neither has a copy of it.
    """

    def __init__(self, session: requests.Session | None, pool_size: int) -> None:
        self._owns_session = session is None
        self.session = new_session(pool_size) if session is None else session
        self._clock: Callable[[], float] = time.monotonic

    def _drive(self, flow: Generator[Request | Wait, Reply, _T]) -> _T:
        """Run a flow to its end: sleep its Waits, answer its Requests; return its value or raise its error."""
        try:
            event = next(flow)
            while True:
                if isinstance(event, Wait):
                    time.sleep(event.seconds)
                    event = flow.send(None)
                else:
                    event = flow.send(self._exchange(event))
        except StopIteration as done:
            value: _T = done.value
            return value

    def _exchange(self, request: Request) -> Reply:
        """Send one request under a watchdog armed for the time left; what came back, as the protocol's value."""
        with armed(request.remaining) as watchdog:
            try:
                response = self.session.request(
                    request.method,
                    request.url,
                    headers=dict(request.headers),
                    data=request.body,
                    timeout=request.timeout,
                    allow_redirects=False,
                    stream=True,
                )
            except requests.RequestException as exc:
                return DEADLINE_PASSED if watchdog.fired else _transport_failure(exc)
            with response:
                if watchdog.fired:  # the socket was shut while the head was read: the head itself may be cut
                    return DEADLINE_PASSED
                if response.status_code != 200:
                    return Response(response.status_code, response.headers)
                body = self._read_body(response, request.deadline, watchdog)
                return Response(200, response.headers, body) if isinstance(body, bytes) else body

    def _read_body(self, response: requests.Response, deadline: float, watchdog: Watchdog) -> bytes | Reply:
        """The raw body streamed through the protocol's BodyReader, under the deadline."""
        raw = response.raw
        if getattr(response, "_content_consumed", False) or not isinstance(raw, urllib3.response.HTTPResponse):
            return bad_response("the body was read before the client could check it (a response hook?)")
        reader = BodyReader.start(response.headers, chunked=bool(raw.chunked))
        if isinstance(reader, Failure):
            return reader
        try:
            for chunk in raw.stream(_CHUNK_BYTES, decode_content=False):
                if self._clock() > deadline:
                    return DEADLINE_PASSED
                failure = reader.feed(chunk)
                if failure is not None:
                    return failure
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if watchdog.fired:
                return DEADLINE_PASSED
            if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
                return Failure(RemoteErrorCode.TIMEOUT, "timed out", retryable=True, cause=exc)
            return Failure(RemoteErrorCode.CONNECTION, "connection dropped during the body", retryable=True, cause=exc)
        return DEADLINE_PASSED if watchdog.fired else reader.finish()


class RangeClient(FlowDriver):
    """Fetches ranges (every known hash suffix for one 5-hex prefix) from a HIBP-compatible API.

    ``base_url`` is the API root: ``GET {base_url}/range/{PREFIX}`` (``?mode=ntlm`` for NTLM) must answer.
    ``timeout`` bounds each connect and each read (one number or a ``(connect, read)`` pair); ``deadline``
    bounds a whole :meth:`get_range` call, retries and waits included. Connection errors, timeouts, 5xx and
    429 are retried up to ``retries`` times with exponential backoff (``backoff_factor * 2**n`` seconds) or
    after the ``Retry-After`` the server asks for, unless that wait would pass the deadline. ``padding``
    sends ``Add-Padding: true`` so the response size does not reveal the prefix's popularity. ``cache`` keeps
    up to 128 parsed ranges (or the given number) in memory, honouring ``Cache-Control`` and revalidating with
    ``ETag``/``Last-Modified``. A ``session`` passed in is used as it is and left open by :meth:`close`;
    otherwise the client builds one whose connection pool holds ``pool_size`` connections.

    Redirects are followed only within the same origin (scheme, host and port); anything else is an error.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (3.0, 3.0),
        deadline: float = 5.0,
        retries: int = 3,
        backoff_factor: float = 0.2,
        padding: bool = True,
        user_agent: str | None = None,
        cache: bool | int = False,
        pool_size: int = 10,
    ) -> None:
        self._protocol = protocol = range_protocol(
            base_url,
            timeout=timeout,
            deadline=deadline,
            retries=retries,
            backoff_factor=backoff_factor,
            padding=padding,
            user_agent=user_agent,
            cache=cache,
        )
        self.base_url = protocol.base_url
        self.timeout = protocol.timeout
        self.deadline = protocol.deadline
        self.retries = protocol.retries
        self.backoff_factor = protocol.backoff_factor
        self.padding = protocol.padding
        self.user_agent = protocol.user_agent
        _args.positive_int("pool_size", pool_size)
        super().__init__(session, pool_size)

    @entry_point  # a caller may pass a full hash by mistake: its error must not keep it
    def get_range(self, prefix: str, scheme: str = "sha1") -> dict[str, int]:
        """Return ``{SUFFIX: count}`` for the 5-hex ``prefix`` (``scheme`` 'sha1' or 'ntlm'), padding dropped.

        Raises :class:`RemoteError` (code TIMEOUT, CONNECTION, HTTP_STATUS or BAD_RESPONSE) when the API gives
        no usable answer within the deadline; an error is never turned into an empty range.
        """
        return self._drive(self._protocol.get_range(prefix, scheme, self._clock))

    def close(self) -> None:
        """Close the connection pool if this client created its session (a session passed in stays open)."""
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> RangeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        cache = self._protocol.cache.size if self._protocol.cache is not None else False
        return f"<RangeClient {redacted(self.base_url)!r} padding={self.padding} cache={cache}>"


def _transport_failure(exc: requests.RequestException) -> Failure:
    """What a requests exception means for the protocol (the message is ours: requests' repeat the URL)."""
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return Failure(RemoteErrorCode.BAD_RESPONSE, "undecodable content encoding", retryable=False, cause=exc)
    timed_out = isinstance(exc, requests.Timeout) or (
        isinstance(exc, requests.ConnectionError)
        and bool(exc.args)
        and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError)
    )
    if timed_out:
        return Failure(RemoteErrorCode.TIMEOUT, "timed out", retryable=True, cause=exc)
    if isinstance(exc, requests.exceptions.SSLError):
        # A certificate that fails now fails on the next attempt too.
        return Failure(RemoteErrorCode.CONNECTION, "TLS failure", retryable=False, cause=exc)
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return Failure(RemoteErrorCode.CONNECTION, "connection failed or dropped", retryable=True, cause=exc)
    return Failure(RemoteErrorCode.CONNECTION, f"request failed ({type(exc).__name__})", retryable=False, cause=exc)
