"""The httpx driver of the sans-I/O flows: async range and pair checkers for asyncio (and trio) applications.

Every decision — the request, the deadline, retries, backoff and ``Retry-After``, redirects, the cache,
how a body is proven whole and parsed, the pair exchange and its proof — is the flows' own
(``credcheck._protocol``, ``credcheck.pairs._wire``), the same code :class:`~credcheck.client.RangeClient`
runs over requests. This module only sends their requests over an ``httpx.AsyncClient`` and tells them what
came back: :class:`AsyncFlowDriver` is the async twin of :class:`~credcheck.client.FlowDriver`, and the
checkers on top mirror :class:`~credcheck.checker.RemoteChecker` and
:class:`~credcheck.pair_client.RemotePairChecker`::

    async with credcheck.aio.open_async("https://api.pwnedpasswords.com") as checker:
        exposure = await checker.check(password)

Each exchange runs under a cancel scope set to the flow's overall deadline, so a server that drips bytes
(inside every read timeout) is cut off at the deadline and answers :data:`~credcheck._protocol.DEADLINE_PASSED`,
never a shorter range. Bodies are read raw (``aiter_raw``: de-chunked, not decoded) and proven whole by the
protocol's :class:`~credcheck._protocol.BodyReader`. httpx follows no redirect here: the flow decides.
"""

from __future__ import annotations

import http.cookiejar
import os
import ssl
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, Final, TypeVar

import anyio
import httpx

from . import _args
from ._frames import async_entry_point
from ._inflight import Gate, in_thread
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
    range_protocol,
    redacted,
)
from .checker import Exposure, distinct_prefixes, hex_rows, range_answers, range_hexes
from .errors import RemoteErrorCode
from .hashing import check_scheme, chosen_scheme, digest, hex_to_digest
from .pairs._wire import DEFAULT_MAX_STRETCH_MEMORY, PairConfig, pair_protocol
from .pairs.checker import STATUS_BY_CODE, PairExposure, PairStatus, password_sha1
from .pairs.entry import Status
from .pairs.names import canon

__all__ = [
    "AsyncFlowDriver",
    "AsyncRangeClient",
    "AsyncRemoteChecker",
    "AsyncRemotePairChecker",
    "open_async",
    "open_async_pairs",
]

_T = TypeVar("_T")
_CHUNK_BYTES: Final = 64 * 1024


def _new_client(pool_size: int) -> httpx.AsyncClient:
    """An AsyncClient with no retries and no redirects of its own, and a cookie jar that stores nothing."""
    # Cookies a range server sets are never sent back: they would link one client's requests.
    jar = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
    return httpx.AsyncClient(follow_redirects=False, cookies=jar, limits=limits)


def _advance(flow: Generator[Request | Wait, Reply, _T], reply: Reply) -> tuple[bool, Any]:
    """One step of a flow: (False, its next event) or (True, its value). StopIteration never crosses a thread."""
    try:
        return False, flow.send(reply)
    except StopIteration as done:
        return True, done.value


class AsyncFlowDriver:
    """The httpx driver of the sans-I/O flows: the async twin of :class:`~credcheck.client.FlowDriver`.

    It holds the ``httpx.AsyncClient`` (its own, or one passed in: used as it is and left open by
    :meth:`aclose`) and the clock, sends each :class:`Request` under a cancel scope set to the time the flow
    has left, streams a 200's raw body through a :class:`BodyReader`, and classifies httpx's errors as
    :class:`Failure` kinds exactly as the requests driver does. ``offload`` runs the flow's own steps in a
    worker thread (the pair flow stretches and does elliptic-curve work there, which must not stall the loop).
    """

    def __init__(self, session: httpx.AsyncClient | None, pool_size: int, *, offload: bool = False) -> None:
        if session is not None and not isinstance(session, httpx.AsyncClient):
            raise TypeError(f"session must be an httpx.AsyncClient, not {type(session).__name__}")
        _args.positive_int("pool_size", pool_size)
        self._owns_session = session is None
        self.session = _new_client(pool_size) if session is None else session
        self.offload = offload
        self._clock: Callable[[], float] = time.monotonic

    async def _step(self, flow: Generator[Request | Wait, Reply, _T], reply: Reply) -> tuple[bool, Any]:
        if self.offload:  # a cancellation waits for the step: the thread holds the flow and what it was given
            return await in_thread(_advance, flow, reply)
        return _advance(flow, reply)

    async def _drive(self, flow: Generator[Request | Wait, Reply, _T]) -> _T:
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

    async def _exchange(self, request: Request) -> Reply:
        """Send one request, bounded by the flow's deadline as a whole; what came back, as the protocol's value."""
        remaining = request.deadline - self._clock()
        if remaining <= 0:
            return DEADLINE_PASSED
        reply: Reply = DEADLINE_PASSED
        with anyio.move_on_after(remaining):
            reply = await self._send(request)
        return reply

    async def _send(self, request: Request) -> Reply:
        connect, read = request.timeout
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
                if self._clock() > deadline:
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

    async def aclose(self) -> None:
        """Close the connection pool if this driver created its client (a client passed in stays open)."""
        if self._owns_session:
            await self.session.aclose()


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


class AsyncRangeClient(AsyncFlowDriver):
    """Fetches ranges from a HIBP-compatible API over httpx: :class:`~credcheck.client.RangeClient`, async.

    The options are RangeClient's, checked by the same code, and mean the same; ``session`` is an
    ``httpx.AsyncClient`` (used as it is; its own redirect setting is overridden, the flow follows redirects).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        session: httpx.AsyncClient | None = None,
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
        super().__init__(session, pool_size)

    @async_entry_point  # a caller may pass a full hash by mistake: its error must not keep it
    async def get_range(self, prefix: str, scheme: str = "sha1") -> dict[str, int]:
        """``{SUFFIX: count}`` for the 5-hex ``prefix``, padding dropped; a RemoteError, never an empty range,
        when the API gives no usable answer within the deadline."""
        return await self._drive(self._protocol.get_range(prefix, scheme, self._clock))

    async def __aenter__(self) -> AsyncRangeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        cache = self._protocol.cache.size if self._protocol.cache is not None else False
        return f"<AsyncRangeClient {redacted(self.base_url)!r} padding={self.padding} cache={cache}>"


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


def open_async(
    url: str,
    *,
    scheme: str | None = None,
    hash: str | None = None,
    min_count: int = 1,
    timeout: float | tuple[float, float] = (3.0, 3.0),
    deadline: float = 5.0,
    padding: bool = True,
    session: httpx.AsyncClient | None = None,
    retries: int = 3,
    cache: bool | int = False,
    max_workers: int = 8,
    user_agent: str | None = None,
) -> AsyncRemoteChecker:
    """An :class:`AsyncRemoteChecker` on the range API at ``url``: :func:`credcheck.open`'s remote options, the
    same names, defaults and checks (``session`` is an ``httpx.AsyncClient``). Local filters and stores answer
    in microseconds without I/O: open them with :func:`credcheck.open`."""
    chosen = chosen_scheme(scheme, hash)
    # The checker's own checks first, so a bad option never leaves a client behind to be closed.
    _args.positive_int("min_count", min_count)
    _args.positive_int("max_workers", max_workers)
    client = AsyncRangeClient(
        url,
        session=session,
        timeout=timeout,
        deadline=deadline,
        retries=retries,
        padding=padding,
        user_agent=user_agent,
        cache=cache,
        pool_size=max_workers,  # checked above
    )
    return AsyncRemoteChecker(client, scheme=chosen, min_count=min_count, max_workers=max_workers)


class AsyncRemotePairChecker:
    """Checks username/password pairs against a pair service from async code: the async twin of
    :class:`~credcheck.pair_client.RemotePairChecker`, the same options and the same flow.

    The flow's steps (the scrypt stretch, blinding, the proof check) run in a worker thread, so a check never
    stalls the event loop for the stretch's ten-odd milliseconds; a cancelled check waits for the step in its
    thread (tens of milliseconds at most), so once the CancelledError reaches the caller no thread still holds
    the username or the password, and its frames are cleared. :meth:`aclose` waits for the checks in flight;
    a check after it raises :class:`~credcheck.errors.ClosedError`. Needs the pair tier (``credcheck[pairs]``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        public_key: bytes | str | None = None,
        session: httpx.AsyncClient | None = None,
        timeout: float | tuple[float, float] = (3.0, 3.0),
        deadline: float = 5.0,
        retries: int = 3,
        backoff_factor: float = 0.2,
        user_agent: str | None = None,
        pool_size: int = 10,
        max_stretch_memory: int = DEFAULT_MAX_STRETCH_MEMORY,
    ) -> None:
        self._protocol = pair_protocol(
            base_url,
            public_key=public_key,
            timeout=timeout,
            deadline=deadline,
            retries=retries,
            backoff_factor=backoff_factor,
            user_agent=user_agent,
            max_stretch_memory=max_stretch_memory,
        )
        self.base_url = self._protocol.base_url
        self.driver = AsyncFlowDriver(session, pool_size, offload=True)
        self._gate = Gate(type(self).__name__)

    async def get_config(self) -> PairConfig:
        """The server's config (fetched now if no check has fetched it yet)."""
        with self._gate:
            return await self.driver._drive(self._protocol.get_config(self.driver._clock))

    @async_entry_point
    async def check_canonical(self, canonical: bytes, sha1: bytes) -> PairExposure:
        """Like :meth:`check`, from a canonical username and the password's raw 20-byte SHA-1."""
        with self._gate:
            found: Status | None = await self.driver._drive(self._protocol.check(canonical, sha1, self.driver._clock))
        return PairExposure(PairStatus.NOT_FOUND if found is None else STATUS_BY_CODE[found])

    @async_entry_point
    async def check(self, username: str | bytes, password: str | bytes) -> PairExposure:
        """Whether this username with this password (or one close to it) is in the service's store."""
        return await self.check_canonical(canon(username), password_sha1(password))

    @async_entry_point
    async def check_hash(self, username: str | bytes, sha1_hex: str) -> PairExposure:
        """Like :meth:`check`, with the password's SHA-1 as 40 hex digits (either case)."""
        return await self.check_canonical(canon(username), hex_to_digest(sha1_hex, "sha1"))

    @async_entry_point
    async def check_many(self, pairs: Iterable[tuple[str | bytes, str | bytes]]) -> list[PairExposure]:
        """Check many (username, password) pairs, one query each; answers in input order."""
        return [await self.check(username, password) for username, password in pairs]

    async def aclose(self) -> None:
        """Close the connection pool (if this checker created its client) once the checks in flight are done;
        idempotent, and a check after it raises :class:`~credcheck.errors.ClosedError`."""
        if await self._gate.aclose():
            await self.driver.aclose()

    async def __aenter__(self) -> AsyncRemotePairChecker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        config = self._protocol.config
        key = f" key_id={config.key_id.hex()}" if config is not None else ""
        return f"<AsyncRemotePairChecker {redacted(self.base_url)!r}{key}>"


def open_async_pairs(url: str | os.PathLike[str], **options: Any) -> AsyncRemotePairChecker:
    """An :class:`AsyncRemotePairChecker` on the pair service at ``url`` (the options of RemotePairChecker)."""
    return AsyncRemotePairChecker(os.fspath(url), **options)
