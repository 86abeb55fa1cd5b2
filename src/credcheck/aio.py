"""The httpx driver of the sans-I/O flows: async range and pair clients for asyncio (and trio) applications.

Every decision — the request, the deadline, retries, backoff and ``Retry-After``, redirects, the cache,
how a body is proven whole and parsed, the pair exchange and its proof — is the flows' own
(``credcheck._http``, ``credcheck.pairs._wire``), the same code :class:`~credcheck.client.RangeClient`
runs over requests. This module only sends their requests over an ``httpx.AsyncClient`` and tells them what
came back: :class:`AsyncFlowDriver` is the async twin of :class:`~credcheck.client.FlowDriver`;
:class:`AsyncRangeClient` and :class:`AsyncPairClient` are the range and pair clients on it (their shared
parts are the sync clients', ``credcheck._clients``), and :class:`AsyncRemoteChecker` answers as
:class:`~credcheck.checker.RemoteChecker` does. ``credcheck.open_async`` and ``credcheck.open_async_pairs``
make the checkers::

    async with credcheck.open_async("https://api.pwnedpasswords.com") as checker:
        exposure = await checker.check(password)

Each exchange runs under a cancel scope set to the flow's overall deadline, so a server that drips bytes
(inside every read timeout) is cut off at the deadline and answers
:data:`~credcheck._http.events.DEADLINE_PASSED`, never a shorter range. Bodies are read raw (``aiter_raw``:
de-chunked, not decoded) and proven whole by :class:`~credcheck._http.body.BodyReader`. httpx follows no
redirect here: the flow decides.
"""

from __future__ import annotations

import functools
import http.cookiejar
import ssl
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import httpx

from . import _args
from ._clients import PairClientBase, RangeClientBase
from ._frames import async_entry_point
from ._http.body import BodyReader
from ._http.events import DEADLINE_PASSED, Failure, Reply, Request, Response, Wait, bad_response
from ._http.options import ClientOptions
from ._http.ranges import DEFAULT_BASE_URL
from ._inflight import Gate, in_thread
from .checker import Exposure, distinct_prefixes, hex_rows, range_answers, range_hexes
from .errors import RemoteErrorCode
from .hashing import check_scheme, digest
from .pairs._wire import PairConfig

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._http.options import RangeKeywords
    from .pairs._entry import Status
    from .pairs._wire import PairKeywords

__all__ = ["AsyncPairClient", "AsyncRangeClient", "AsyncRemoteChecker"]

_T = TypeVar("_T")
_CHUNK_BYTES: Final = 64 * 1024


def _new_client(options: ClientOptions) -> httpx.AsyncClient:
    """An AsyncClient with no retries and no redirects of its own, and a cookie jar that stores nothing."""
    # Cookies a range server sets are never sent back: they would link one client's requests.
    jar = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    size = options.pool_size
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    verify: ssl.SSLContext | bool = True if options.tls is None else options.tls
    return httpx.AsyncClient(follow_redirects=False, cookies=jar, limits=limits, verify=verify)


def _advance(flow: Generator[Request | Wait, Reply, _T], reply: Reply) -> tuple[bool, Any]:
    """One step of a flow: (False, its next event) or (True, its value). StopIteration never crosses a thread."""
    try:
        return False, flow.send(reply)
    except StopIteration as done:
        return True, done.value


class AsyncFlowDriver:
    """The httpx driver of the sans-I/O flows: the async twin of :class:`~credcheck.client.FlowDriver`.

    It holds the ``httpx.AsyncClient`` (its own, built from the options — pool size, TLS context — or one
    passed in: used as it is and left open by :meth:`aclose`) and the ``clock`` the flows run on; :meth:`drive`
    runs a flow, sending each :class:`Request` under a cancel scope set to the time the flow has left,
    streaming a 200's raw body through a :class:`BodyReader` and classifying httpx's errors as
    :class:`Failure` kinds exactly as the requests driver does. ``offload`` runs the flow's own steps in a
    worker thread (the pair flow stretches and does elliptic-curve work there, which must not stall the loop).
    """

    def __init__(
        self, options: ClientOptions, session: httpx.AsyncClient | None = None, *, offload: bool = False
    ) -> None:
        if session is not None and not isinstance(session, httpx.AsyncClient):
            raise TypeError(f"session must be an httpx.AsyncClient, not {type(session).__name__}")
        if session is not None and options.tls is not None:
            raise ValueError("tls= applies to the client the driver builds; configure the client given instead")
        self._owns_session = session is None
        self.session = _new_client(options) if session is None else session
        self.offload = offload
        self.clock: Callable[[], float] = time.monotonic

    async def _step(self, flow: Generator[Request | Wait, Reply, _T], reply: Reply) -> tuple[bool, Any]:
        if self.offload:  # a cancellation waits for the step: the thread holds the flow and what it was given
            return await in_thread(_advance, flow, reply)
        return _advance(flow, reply)

    async def drive(self, flow: Generator[Request | Wait, Reply, _T]) -> _T:
        """Run a flow to its end: sleep its Waits, answer its Requests; return its value or raise its error."""
        done, event = await self._step(flow, None)
        while not done:
            if isinstance(event, Wait):
                await anyio.sleep(event.seconds)
                reply: Reply = None
            else:
                reply = await self._exchange(event)
            done, event = await self._step(flow, reply)
        value: _T = event
        return value

    async def aclose(self) -> None:
        """Close the connection pool if this driver built its client (a client passed in stays open)."""
        if self._owns_session:
            await self.session.aclose()

    async def _exchange(self, request: Request) -> Reply:
        """Send one request, bounded by the flow's deadline as a whole; what came back, as the protocol's value."""
        remaining = request.deadline - self.clock()
        if remaining <= 0:
            return DEADLINE_PASSED
        reply: Reply = DEADLINE_PASSED
        with anyio.move_on_after(remaining):
            reply = await self._send(request)
        return reply

    async def _send(self, request: Request) -> Reply:
        connect, read = request.timeout.connect, request.timeout.read
        outgoing = self.session.build_request(
            request.method,
            request.url,
            headers=dict(request.headers),
            content=request.body,
            timeout=httpx.Timeout(connect=connect, read=read, write=read, pool=connect),
        )
        try:
            response = await self.session.send(outgoing, stream=True, follow_redirects=False)
        except httpx.HTTPError as exc:
            return _transport_failure(exc)
        try:
            if response.status_code != 200:
                return Response(response.status_code, response.headers)
            return await self._read_body(response, request.deadline)
        finally:
            await response.aclose()

    async def _read_body(self, response: httpx.Response, deadline: float) -> Reply:
        """The raw body streamed through the protocol's BodyReader, under the deadline."""
        if response.is_stream_consumed:
            # An event hook, or a test double built with content=, read it (and decoded it) already.
            return bad_response("the body was read before the client could check it (an event hook? a mock: stream=)")
        # HTTP/1.1 chunked framing and HTTP/2 streams both end in a marker the transport checks (h11 and h2
        # raise when the connection ends before it), so either proves the end as Content-Length does.
        framed = "chunked" in response.headers.get("Transfer-Encoding", "").lower() or response.http_version.startswith(
            "HTTP/2"
        )
        reader = BodyReader.start(response.headers, chunked=framed)
        if isinstance(reader, Failure):
            return reader
        try:
            async for chunk in response.aiter_raw(_CHUNK_BYTES):
                if self.clock() > deadline:
                    return DEADLINE_PASSED
                failure = reader.feed(chunk)
                if failure is not None:
                    return failure
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TimeoutException):
                return Failure(RemoteErrorCode.TIMEOUT, "timed out", retryable=True, cause=exc)
            return Failure(RemoteErrorCode.CONNECTION, "connection dropped during the body", retryable=True, cause=exc)
        body = reader.finish()
        return Response(200, response.headers, body) if isinstance(body, bytes) else body


def _transport_failure(exc: httpx.HTTPError) -> Failure:
    """What an httpx exception means for the protocol: the same kinds as the requests driver's (our message)."""
    if isinstance(exc, httpx.DecodingError):
        return Failure(RemoteErrorCode.BAD_RESPONSE, "undecodable content encoding", retryable=False, cause=exc)
    if isinstance(exc, httpx.TimeoutException):
        return Failure(RemoteErrorCode.TIMEOUT, "timed out", retryable=True, cause=exc)
    if isinstance(exc, httpx.ConnectError) and _tls_failure(exc):
        # A certificate that fails now fails on the next attempt too.
        return Failure(RemoteErrorCode.CONNECTION, "TLS failure", retryable=False, cause=exc)
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return Failure(RemoteErrorCode.CONNECTION, "connection failed or dropped", retryable=True, cause=exc)
    return Failure(RemoteErrorCode.CONNECTION, f"request failed ({type(exc).__name__})", retryable=False, cause=exc)


def _tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class AsyncRangeClient(RangeClientBase[AsyncFlowDriver]):
    """Fetches ranges from a HIBP-compatible API over httpx: :class:`~credcheck.client.RangeClient`, async.

    The options are RangeClient's, checked by the same code, and mean the same; ``session`` is an
    ``httpx.AsyncClient`` (used as it is; its own redirect setting is overridden, the flow follows redirects).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        options: ClientOptions | None = None,
        *,
        session: httpx.AsyncClient | None = None,
        **keywords: Unpack[RangeKeywords],
    ) -> None:
        super().__init__(base_url, options, keywords, functools.partial(AsyncFlowDriver, session=session))

    @async_entry_point  # a caller may pass a full hash by mistake: its error must not keep it
    async def get_range(self, prefix: str, scheme: str = "sha1") -> dict[str, int]:
        """``{SUFFIX: count}`` for the 5-hex ``prefix``, padding dropped; a RemoteError, never an empty range,
        when the API gives no usable answer within the deadline."""
        driver = self.driver
        return await driver.drive(self.protocol.get_range(prefix, scheme, driver.clock))

    async def corpus_version(self, scheme: str = "sha1") -> str | None:
        """:meth:`~credcheck.client.RangeClient.corpus_version`, async."""
        driver = self.driver
        versions = await driver.drive(self.protocol.corpus(driver.clock))
        return None if versions is None else versions.ranges.get(scheme)

    async def aclose(self) -> None:
        """Close the connection pool if this client built its httpx client (one passed in stays open)."""
        await self.driver.aclose()

    async def __aenter__(self) -> AsyncRangeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncRemoteChecker:
    """Checks passwords against a range API from async code: :class:`~credcheck.checker.RemoteChecker`'s
    answers (the same functions turn ranges into Exposures), one request per distinct prefix.

    A batch fetches its distinct prefixes concurrently (at most ``max_workers`` at a time); the first failure
    cancels the others and is raised, so there are no partial answers. :meth:`aclose` waits for the checks in
    flight; a check after it raises :class:`~credcheck.errors.ClosedError`.
    """

    def __init__(
        self, client: AsyncRangeClient, *, scheme: str = "sha1", min_count: int = 1, max_workers: int = 8
    ) -> None:
        check_scheme(scheme)
        _args.positive_int("min_count", min_count)
        _args.positive_int("max_workers", max_workers)
        self.client = client
        self.scheme = scheme
        self.min_count = min_count
        self.max_workers = max_workers
        self._gate = Gate(type(self).__name__)

    @async_entry_point
    async def check(self, password: str | bytes) -> Exposure:
        """Whether ``password`` appears in the range API's corpus."""
        return (await self._check_digests([digest(password, self.scheme)]))[0]

    @async_entry_point
    async def check_hash(self, hex_digest: str) -> Exposure:
        """Whether the full hex digest (of this checker's scheme) appears."""
        return (await self.check_hashes([hex_digest]))[0]

    @async_entry_point
    async def check_hashes(self, hex_digests: Iterable[str]) -> list[Exposure]:
        """Many full hex digests at once; a ValueError names the position of the first that is not one."""
        rows = hex_rows(list(hex_digests), self.scheme)
        return await self._check_digests([bytes(row) for row in rows])

    @async_entry_point
    async def check_many(self, passwords: Iterable[str | bytes]) -> list[Exposure]:
        """Many passwords at once, one request per distinct prefix; answers in input order."""
        return await self._check_digests([digest(password, self.scheme) for password in passwords])

    async def _check_digests(self, digests: Sequence[bytes]) -> list[Exposure]:
        with self._gate:
            hexes = range_hexes(digests, self.scheme)
            return range_answers(hexes, await self._fetch(distinct_prefixes(hexes)), self.min_count)

    async def _fetch(self, prefixes: list[str]) -> dict[str, dict[str, int]]:
        if len(prefixes) <= 1 or self.max_workers == 1:
            return {prefix: await self.client.get_range(prefix, self.scheme) for prefix in prefixes}
        ranges: dict[str, dict[str, int]] = {}
        failed: list[Exception] = []
        limiter = anyio.CapacityLimiter(min(self.max_workers, len(prefixes)))

        async def fetch(prefix: str) -> None:
            async with limiter:
                try:
                    ranges[prefix] = await self.client.get_range(prefix, self.scheme)
                except Exception as exc:
                    # One failed prefix fails the batch: stop the requests whose answers would be thrown away,
                    # and raise this error itself (no exception group for the caller to unwrap).
                    failed.append(exc)
                    group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            for prefix in prefixes:
                group.start_soon(fetch, prefix)
        if failed:
            raise failed[0]
        return ranges

    async def corpus_version(self) -> str | None:
        """:meth:`credcheck.Checker.corpus_version`, async: what the range API says at ``/v1/corpus``."""
        with self._gate:
            return await self.client.corpus_version(self.scheme)

    async def aclose(self) -> None:
        """Close the client once the checks in flight are done; idempotent, and a check after it raises
        :class:`~credcheck.errors.ClosedError`."""
        if await self._gate.aclose():
            await self.client.aclose()

    async def __aenter__(self) -> AsyncRemoteChecker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncRemoteChecker {self.client!r} scheme={self.scheme!r} min_count={self.min_count}>"


class AsyncPairClient(PairClientBase[AsyncFlowDriver]):
    """Asks a pair service over httpx: :class:`~credcheck.pair_client.PairClient`, async (the same options).

    The flow's steps (the scrypt stretch, blinding, the proof check) run in a worker thread, so a check never
    stalls the event loop for the stretch's ten-odd milliseconds; a cancelled check waits for the step in its
    thread (tens of milliseconds at most), so once the CancelledError reaches the caller no thread still holds
    the username or the password. Needs the pair tier (``credcheck[pairs]``).
    """

    def __init__(
        self,
        base_url: str,
        options: ClientOptions | None = None,
        *,
        session: httpx.AsyncClient | None = None,
        **keywords: Unpack[PairKeywords],
    ) -> None:
        super().__init__(base_url, options, keywords, functools.partial(AsyncFlowDriver, session=session, offload=True))

    async def config(self) -> PairConfig:
        """The service's config: fetched on first use, then kept (a later one naming another key is refused)."""
        driver = self.driver
        return await driver.drive(self.protocol.get_config(driver.clock))

    @async_entry_point  # the flow holds the canonical username and the password's hash
    async def query(self, canonical: bytes, sha1: bytes) -> Status | None:
        """The status the service holds for a canonical username and a password's raw SHA-1, or None."""
        driver = self.driver
        return await driver.drive(self.protocol.check(canonical, sha1, driver.clock))

    async def corpus_version(self) -> str | None:
        """:meth:`~credcheck.pair_client.PairClient.corpus_version`, async."""
        driver = self.driver
        versions = await driver.drive(self.protocol.corpus(driver.clock))
        return None if versions is None else versions.pairs

    async def aclose(self) -> None:
        """Close the connection pool if this client built its httpx client (one passed in stays open)."""
        await self.driver.aclose()

    async def __aenter__(self) -> AsyncPairClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
