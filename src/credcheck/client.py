"""The requests driver of the range protocol: :class:`RangeClient` fetches ranges from HIBP-compatible APIs.

Only the first five hex characters of a hash ever leave the process: a range API (the public Pwned
Passwords service, ``credcheck serve``, or a static export behind any web server) answers with every hash
suffix that shares that prefix, and the checker (:class:`credcheck.checker.RemoteChecker`) looks the rest of
the digest up locally. Every decision — the request, retries, the deadline, redirects, the cache, how a
body is proven whole and parsed — is the sans-I/O protocol's (``credcheck._http``); this module sends
its requests over requests/urllib3 and tells it what came back, classifying transport errors.

Failures are loud: a timeout, a dropped connection, a wrong status or a body that is not ``SUFFIX:COUNT``
lines raises :class:`~credcheck.errors.RemoteError` with a machine-readable code, never "not found".
The caller decides the failure policy (reject, fall back to a local filter, or let the password through).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Final, TypeVar

import requests
import urllib3.exceptions
import urllib3.response

from ._clients import RangeClientBase
from ._frames import entry_point
from ._http.body import BodyReader
from ._http.events import DEADLINE_PASSED, Failure, Reply, Request, Response, Wait, bad_response, run
from ._http.options import ClientOptions
from ._http.ranges import DEFAULT_BASE_URL
from ._transport import Watchdog, armed, new_session
from .errors import RemoteErrorCode

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._http.options import RangeKeywords

__all__ = ["DEFAULT_BASE_URL", "RangeClient"]

_T = TypeVar("_T")

_CHUNK_BYTES: Final = 64 * 1024


def _sleep(event: Wait) -> None:
    time.sleep(event.seconds)


class FlowDriver:
    """The requests driver of the sans-I/O flows (``credcheck._http``, ``credcheck.pairs._wire``).

    It holds the session (its own, built from the options — pool size, TLS context — whose connections answer
    to the deadline watchdog, or one passed in) and the ``clock`` the flows run on; :meth:`drive` runs a flow,
    sending each :class:`Request` under a watchdog armed for the time the flow has left, streaming a 200's body
    through a :class:`BodyReader` and classifying transport errors as :class:`Failure`. The range client and
    the pair client are this driver with their flows; neither has a copy of it.
    """

    def __init__(self, options: ClientOptions, session: requests.Session | None = None) -> None:
        if session is not None and options.tls is not None:
            raise ValueError("tls= applies to the session a client builds; configure the session given instead")
        self._owns_session = session is None
        self.session = new_session(options.pool_size, options.tls) if session is None else session
        self.clock: Callable[[], float] = time.monotonic

    def drive(self, flow: Generator[Request | Wait, Reply, _T]) -> _T:
        """Run a flow to its end: sleep its Waits, answer its Requests; return its value or raise its error."""
        return run(flow, self._exchange, _sleep)

    def close(self) -> None:
        """Close the connection pool if this driver built its session (a session passed in stays open)."""
        if self._owns_session:
            self.session.close()

    def _exchange(self, request: Request) -> Reply:
        """Send one request under a watchdog armed for the time left; what came back, as the protocol's value."""
        with armed(request.remaining) as watchdog:
            try:
                response = self.session.request(
                    request.method,
                    request.url,
                    headers=dict(request.headers),
                    data=request.body,
                    timeout=(request.timeout.connect, request.timeout.read),
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
                if self.clock() > deadline:
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


class RangeClient(RangeClientBase[FlowDriver]):
    """Fetches ranges (every known hash suffix for one 5-hex prefix) from a HIBP-compatible API.

    ``base_url`` is the API root: ``GET {base_url}/range/{PREFIX}`` (``?mode=ntlm`` for NTLM) must answer.
    The settings are ``options`` (a :class:`~credcheck.ClientOptions`: timeouts, deadline, retries, padding,
    cache, User-Agent, TLS, pool size), with any keyword of its fields on top (``RangeClient(timeout=1.5)``).
    Connection errors, timeouts, 5xx and 429 are retried with exponential backoff or after the ``Retry-After``
    the server asks for, unless that wait would pass the deadline. Padding (on by default) sends
    ``Add-Padding: true`` so the response size does not reveal the prefix's popularity; the cache honours
    ``Cache-Control`` and revalidates with ``ETag``/``Last-Modified``. A ``session`` passed in is used as it is
    (its own adapters, TLS and pool) and left open by :meth:`close`.

    Redirects are followed only within the same origin (scheme, host and port); anything else is an error.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        options: ClientOptions | None = None,
        *,
        session: requests.Session | None = None,
        **keywords: Unpack[RangeKeywords],
    ) -> None:
        super().__init__(base_url, options, keywords, functools.partial(FlowDriver, session=session))

    @entry_point  # a caller may pass a full hash by mistake: its error must not keep it
    def get_range(self, prefix: str, scheme: str = "sha1") -> dict[str, int]:
        """Return ``{SUFFIX: count}`` for the 5-hex ``prefix`` (``scheme`` 'sha1' or 'ntlm'), padding dropped.

        Raises :class:`RemoteError` (code TIMEOUT, CONNECTION, HTTP_STATUS or BAD_RESPONSE) when the API gives
        no usable answer within the deadline; an error is never turned into an empty range.
        """
        driver = self.driver
        return driver.drive(self.protocol.get_range(prefix, scheme, driver.clock))

    def corpus_version(self, scheme: str = "sha1") -> str | None:
        """The version of the corpus the API serves for ``scheme`` now (``GET /v1/corpus``), or None when it keeps
        none (HIBP's API, a static export) or serves no store of that scheme; a RemoteError if it cannot say."""
        driver = self.driver
        versions = driver.drive(self.protocol.corpus(driver.clock))
        return None if versions is None else versions.ranges.get(scheme)

    def close(self) -> None:
        """Close the connection pool if this client built its session (a session passed in stays open)."""
        self.driver.close()

    def __enter__(self) -> RangeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
