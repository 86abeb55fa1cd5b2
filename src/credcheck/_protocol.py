"""The k-anonymity range protocol without I/O: what to send, how to read what comes back, when to try again.

As h11 is for HTTP/1.1, and as one ``Auth.auth_flow`` generator serves both of httpx's clients, this module
holds every decision of a range lookup and no socket: :meth:`RangeProtocol.get_range` is a generator that
yields what the driver must do — :class:`Request` (send this GET) or :class:`Wait` (sleep this long) — and
is sent what happened: a :class:`Response`, a :class:`Failure` (the transport went wrong, classified) or
:data:`DEADLINE_PASSED`. It returns the range ``{SUFFIX: count}`` or raises :class:`RemoteError`. The clock
is passed in, so retries, backoff, ``Retry-After``, the overall deadline and cache freshness are decided on
the driver's clock (or a test's). Redirects and failed attempts are values inside the flow, never exceptions.
:meth:`RangeProtocol.fetch` is the same flow for a copy kept elsewhere (the mirror): conditional on a stored
ETag, no cache, the body handed to the caller's parser. Its retry settings (a deadline per attempt, capped
and jittered backoff, a capped ``Retry-After``) are options of the one :class:`Retrying`.

Three drivers run the flows, each holding only sending, reading raw bytes under the deadline watchdog and
classifying its library's errors: ``credcheck.client.FlowDriver`` (requests), ``credcheck.aio.AsyncFlowDriver``
(httpx) and ``credcheck._keepalive.KeepAliveDriver`` (http.client, the mirror's). Each runs it so::

    flow = protocol.get_range(prefix, scheme, clock)
    try:
        event = next(flow)
        while True:
            if isinstance(event, Wait):
                sleep(event.seconds); event = flow.send(None)
            else:
                event = flow.send(exchange(event))   # a Response, a Failure or DEADLINE_PASSED
    except StopIteration as done:
        return done.value

``exchange`` sends ``event.url`` with ``event.headers``, bounded by ``event.timeout`` and ``event.deadline``,
follows no redirect itself, and for a 200 reads the body through a :class:`BodyReader` (the raw bytes as
they came, de-chunked but not decoded): a body that cannot be proven whole is a :class:`Failure`, never a
shorter range.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import importlib.metadata
import logging
import math
import re
import threading
import urllib.parse
import zlib
from collections.abc import Callable, Generator, Mapping
from typing import Final, Generic, TypeVar

from . import _args
from ._wire import MAX_COUNT_DIGITS, PREFIX_LENGTH, SUFFIX_LENGTHS, mode_query
from .errors import RemoteError, RemoteErrorCode
from .hashing import check_scheme

__all__ = [
    "DEADLINE_PASSED",
    "DEFAULT_BASE_URL",
    "MAX_BODY_BYTES",
    "PREFIX_LENGTH",
    "BodyReader",
    "Failed",
    "Failure",
    "Fetched",
    "RangeFlow",
    "RangeProtocol",
    "Reply",
    "Request",
    "Response",
    "Retrying",
    "Wait",
    "bad_response",
    "check_base_url",
    "check_prefix",
    "check_timing",
    "default_user_agent",
    "origin",
    "parse_range_body",
    "range_protocol",
    "redacted",
    "suffix_length",
]

logger = logging.getLogger("credcheck.client")

#: The public Pwned Passwords range API.
DEFAULT_BASE_URL: Final = "https://api.pwnedpasswords.com"
# A Pwned Passwords range is ~40 KB with padding; a self-hosted corpus of billions stays well under this.
MAX_BODY_BYTES: Final = 8 * 1024 * 1024
DEFAULT_CACHE_ENTRIES: Final = 128
MAX_REDIRECTS: Final = 3
REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})

_HEX_PREFIX = re.compile(r"[0-9A-Fa-f]{5}", re.ASCII)
_UNFRAMED: Final = "a 200 with neither Content-Length nor chunked framing (a cut body would look whole)"
_T = TypeVar("_T")
_R = TypeVar("_R")
_NOT_THE_ROOT: Final = " (is the base URL the API's root? GET {base}/range/{PREFIX} must answer)"


# ----------------------------------------------------------------------------------------------------
# What the flow and its driver tell each other


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """Send ``method url`` with ``headers`` (and ``body``, for a POST): ``timeout`` (connect, read) per operation,
    and give up at ``deadline`` (on the flow's clock; ``remaining`` seconds from when it was yielded), following
    no redirect."""

    url: str
    headers: Mapping[str, str]
    timeout: tuple[float, float]
    deadline: float
    remaining: float
    method: str = "GET"
    body: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """Sleep this many seconds, then send ``None``.

    ``asked`` is true when the server asked for the wait (a 429 or 5xx with ``Retry-After``): it then holds
    for every request to that server, so a driver that runs many flows against it at once pauses them all.
    """

    seconds: float
    asked: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """What came back: the status, the headers and, for a 200 only, the whole decoded body."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """The exchange went wrong before a usable response: ``detail`` says how (never with the URL), ``code`` and
    ``retryable`` classify it, ``cause`` is the driver's exception (chained to the error raised)."""

    code: RemoteErrorCode
    detail: str
    retryable: bool
    cause: BaseException | None = None


class _DeadlinePassed:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DEADLINE_PASSED"


#: The overall deadline passed during the exchange (the driver shut the socket): whatever arrived is not whole.
DEADLINE_PASSED: Final = _DeadlinePassed()

Reply = Response | Failure | _DeadlinePassed | None
#: The generator type of :meth:`RangeProtocol.get_range`.
RangeFlow = Generator[Request | Wait, Reply, dict[str, int]]


def bad_response(detail: str) -> Failure:
    """The Failure of a body or response that cannot be used (not retried)."""
    return Failure(RemoteErrorCode.BAD_RESPONSE, detail, retryable=False)


# ----------------------------------------------------------------------------------------------------
# The wire format


def _malformed(line_number: int, suffix_len: int) -> RemoteError:
    # Never quote the line: an attacker-controlled body must not end up verbatim in logs and error pages.
    return RemoteError(
        f"range response line {line_number} is not SUFFIX:COUNT "
        f"(a {suffix_len}-character hex suffix, a colon and a decimal count)",
        RemoteErrorCode.BAD_RESPONSE,
    )


@functools.lru_cache(maxsize=8)
def _line_pattern(suffix_len: int) -> re.Pattern[str]:
    return re.compile(rf"([0-9A-Fa-f]{{{suffix_len}}}):([0-9]{{1,{MAX_COUNT_DIGITS}}})", re.ASCII)


def parse_range_body(body: str | bytes, suffix_len: int) -> dict[str, int]:
    """Parse a range response body into ``{SUFFIX: count}``, raising :class:`RemoteError` on any bad line.

    Every line must be ``SUFFIX:COUNT``: exactly ``suffix_len`` hex characters (35 for SHA-1, 27 for NTLM;
    any case, returned upper-case), a colon and a plain decimal count. Lines may end in CRLF or LF and the
    body may end with one line break; an empty body is an empty range. Padding lines (count 0) are dropped
    wherever they appear. If a suffix appears more than once the largest count wins, so the answer never
    depends on line order and never exceeds a count the server actually sent.

    Anything else — HTML, a blank line, a wrong length, a non-hex character, a missing or negative count,
    bytes that are not ASCII — raises ``RemoteError`` with code ``BAD_RESPONSE`` naming the line number (never
    its content): a body the client cannot read must never pass for "not found".
    """
    _args.positive_int("suffix_len", suffix_len)
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise _malformed(raw.count(b"\n", 0, exc.start) + 1, suffix_len) from None
    elif isinstance(body, str):
        text = body
    else:
        raise TypeError(f"a range body must be str or bytes, not {type(body).__name__}")
    if not text:
        return {}

    lines = text.split("\n")
    terminated = len(lines) - 1  # lines followed by "\n", whose "\r" (if any) belongs to the line break
    if lines[-1] == "":
        lines.pop()  # the one optional line break at the very end
    pattern = _line_pattern(suffix_len)
    counts: dict[str, int] = {}
    for index, line in enumerate(lines):
        if index < terminated and line.endswith("\r"):
            line = line[:-1]
        match = pattern.fullmatch(line)
        if match is None:
            raise _malformed(index + 1, suffix_len)
        count = int(match[2])
        if count:
            suffix = match[1].upper()
            if count > counts.get(suffix, 0):
                counts[suffix] = count
    return counts


def suffix_length(scheme: str) -> int:
    """Hex characters of a suffix in a range of ``scheme`` ('sha1' or 'ntlm')."""
    check_scheme(scheme)
    return SUFFIX_LENGTHS[scheme]


def check_prefix(prefix: str) -> str:
    """The 5-hex ``prefix`` upper-cased; a ValueError (never echoing it: it may be a whole hash) otherwise."""
    if not isinstance(prefix, str):
        raise TypeError(f"a range prefix must be str, not {type(prefix).__name__}")
    if len(prefix) != PREFIX_LENGTH:
        raise ValueError(f"a range prefix is exactly {PREFIX_LENGTH} hex characters, got {len(prefix)}")
    if _HEX_PREFIX.fullmatch(prefix) is None:
        raise ValueError("a range prefix must be hexadecimal")
    return prefix.upper()


class BodyReader:
    """Reads a 200's body from the raw bytes (de-chunked, not decoded) and proves it whole, or says why not.

    The body must be framed by Content-Length (every byte of it received) or by chunked encoding (the
    driver's transport checks the terminating chunk); a close-delimited body ends the same way whether it
    was complete or cut short, so it is refused. A gzip body must reach the end of its stream (final block
    and trailer, checked by zlib) with nothing after it; any other content encoding is refused (only gzip is
    asked for). Decoded or not, a body over :data:`MAX_BODY_BYTES` is refused before it fills memory.
    Use :meth:`start`, then :meth:`feed` each raw piece and :meth:`finish`; each returns a :class:`Failure`
    when the body cannot be used.
    """

    def __init__(self, declared: int | None, decoder: zlib._Decompress | None) -> None:
        self._declared = declared
        self._decoder = decoder
        self._pieces: list[bytes] = []
        self._received = 0
        self._size = 0

    @classmethod
    def start(cls, headers: Mapping[str, str], *, chunked: bool) -> BodyReader | Failure:
        """A reader for a body with these headers, or the Failure its framing or encoding already is."""
        declared = None
        if not chunked:
            value = headers.get("Content-Length")
            if value is None:
                return bad_response(
                    "a 200 with neither Content-Length nor chunked framing (a cut body would look whole)"
                )
            value = value.strip()
            if not (value.isascii() and value.isdigit()):
                return bad_response("malformed Content-Length")
            declared = int(value)
            if declared > MAX_BODY_BYTES:
                return bad_response(f"response larger than {MAX_BODY_BYTES} bytes")
        codings = [c.strip().lower() for c in headers.get("Content-Encoding", "").split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if not codings:
            return cls(declared, None)
        if codings in (["gzip"], ["x-gzip"]):
            return cls(declared, zlib.decompressobj(16 + zlib.MAX_WBITS))
        return bad_response("unsupported content encoding (only gzip is accepted)")

    def feed(self, raw: bytes) -> Failure | None:
        self._received += len(raw)
        decoder = self._decoder
        if decoder is not None:
            if decoder.eof:
                return bad_response("data after the end of the gzip stream")
            try:
                raw = decoder.decompress(raw, MAX_BODY_BYTES + 1 - self._size)
            except zlib.error:
                return bad_response("undecodable content encoding")
            if decoder.unconsumed_tail:
                raw += b"x"  # more output is waiting: over the limit either way
        self._size += len(raw)
        if self._size > MAX_BODY_BYTES or self._received > MAX_BODY_BYTES:
            return bad_response(f"response larger than {MAX_BODY_BYTES} bytes")
        self._pieces.append(raw)
        return None

    def finish(self) -> bytes | Failure:
        if self._declared is not None and self._received != self._declared:
            # urllib3 2 enforces Content-Length itself; this holds for any transport.
            return Failure(RemoteErrorCode.CONNECTION, "body cut short of its Content-Length", retryable=True)
        decoder = self._decoder
        if decoder is not None and (not decoder.eof or decoder.unused_data):
            return bad_response("data after the end of the gzip stream" if decoder.eof else "gzip stream cut short")
        return b"".join(self._pieces)


# ----------------------------------------------------------------------------------------------------
# The options every client checks


@functools.cache
def default_user_agent(what: str = "k-anonymity range client") -> str:
    try:
        version = importlib.metadata.version("credcheck")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    return f"credcheck/{version} ({what})"


def check_base_url(base_url: object) -> urllib.parse.SplitResult:
    """The parts of an http(s):// base URL with a host and no query or fragment; TypeError/ValueError otherwise."""
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be str, not {type(base_url).__name__}")
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("base_url must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not carry a query or a fragment")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise ValueError("base_url has an invalid port") from None
    return parts


def check_timing(
    timeout: float | tuple[float, float], retries: int, backoff_factor: float
) -> tuple[float, float, int, float]:
    """``(connect, read, retries, backoff_factor)`` checked: a ValueError for anything unusable."""
    if isinstance(timeout, tuple):
        if len(timeout) != 2:
            raise ValueError("timeout must be a number or a (connect, read) pair")
        connect, read = _args.positive_seconds("timeout", timeout[0]), _args.positive_seconds("timeout", timeout[1])
    else:
        connect = read = _args.positive_seconds("timeout", timeout)
    retries = _args.non_negative_int("retries", retries)
    return connect, read, retries, _args.non_negative_number("backoff_factor", backoff_factor)


def range_protocol(
    base_url: str,
    *,
    timeout: float | tuple[float, float],
    deadline: float | None,
    retries: int,
    backoff_factor: float,
    padding: bool,
    user_agent: str | None,
    cache: bool | int,
    attempt_deadline: float | None = None,
    max_backoff: float | None = None,
    max_retry_after: float | None = None,
    jitter: Callable[[], float] | None = None,
) -> RangeProtocol:
    """The protocol of a range client with these options, each checked (the requests and httpx clients share it,
    and the mirror, which adds its retry settings).

    ``cache`` is a bool (128 entries or none) or a number of entries; ``user_agent`` None means the default one.
    ``deadline`` bounds a whole call (None: no bound, then ``attempt_deadline`` is required); the rest are
    :class:`Retrying`'s options (None: no cap).
    """
    parts = check_base_url(base_url)
    if parts.path.rstrip("/").lower().endswith("/range"):
        raise ValueError("a range API's URL is its root, without /range (the client asks for ROOT/range/PREFIX)")
    connect, read, retries, backoff_factor = check_timing(timeout, retries, backoff_factor)
    if cache is True:
        cache_size = DEFAULT_CACHE_ENTRIES
    elif cache is False:
        cache_size = 0
    elif isinstance(cache, int) and cache >= 0:
        cache_size = cache
    else:
        raise ValueError(f"cache must be a bool or a non-negative number of entries, got {cache!r}")
    if deadline is None and attempt_deadline is None:
        raise ValueError("without a deadline for a whole call, each attempt needs one (attempt_deadline)")
    call_deadline = math.inf if deadline is None else _args.positive_seconds("deadline", deadline)
    retrying = Retrying(
        timeout=(connect, read),
        deadline=call_deadline,
        retries=retries,
        backoff_factor=float(backoff_factor),
        attempt_deadline=None if attempt_deadline is None else _args.positive_seconds("deadline", attempt_deadline),
        max_backoff=math.inf if max_backoff is None else _args.non_negative_number("max_backoff", max_backoff),
        max_retry_after=math.inf
        if max_retry_after is None
        else _args.non_negative_number("max_retry_after", max_retry_after),
        jitter=jitter,
    )
    return RangeProtocol(
        base_url,
        user_agent=default_user_agent() if user_agent is None else user_agent,
        padding=bool(padding),
        timeout=(connect, read),
        deadline=call_deadline,
        retries=retries,
        backoff_factor=float(backoff_factor),
        cache_size=cache_size,
        retrying=retrying,
    )


# ----------------------------------------------------------------------------------------------------
# HTTP semantics


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``: a redirect is followed only within one origin."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def redacted(url: str) -> str:
    """``url`` without any ``user:password@`` part, for reprs and logs."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The delay a 429/503 asks for, in seconds (the delta-seconds form only; an HTTP date is ignored)."""
    value = headers.get("Retry-After", "").strip()
    return float(value) if value.isascii() and value.isdigit() else None


def freshness(headers: Mapping[str, str], default: float) -> float | None:
    """Seconds a response stays fresh in a private cache, or ``None`` if it must not be stored."""
    header = headers.get("Cache-Control")
    if header is None:
        return default
    lifetime = 0.0
    for directive in header.split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name == "no-store":
            return None
        if name == "no-cache":
            return 0.0
        if name == "max-age":
            value = value.strip().strip('"')
            lifetime = float(value) if value.isascii() and value.isdigit() else 0.0
    age = headers.get("Age", "").strip()
    if age.isascii() and age.isdigit():
        lifetime -= float(age)
    return max(lifetime, 0.0)


@dataclasses.dataclass(slots=True)
class CacheEntry:
    counts: dict[str, int]
    expires: float
    lifetime: float
    etag: str | None
    last_modified: str | None


class RangeCache:
    """A small thread-safe LRU of parsed ranges, keyed by (prefix, scheme)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: collections.OrderedDict[tuple[str, str], CacheEntry] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> CacheEntry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str], entry: CacheEntry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def discard(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._entries.pop(key, None)


# ----------------------------------------------------------------------------------------------------
# The flow


@dataclasses.dataclass(frozen=True, slots=True)
class _Answer(Generic[_R]):
    value: _R | None  # None: 304 Not Modified
    headers: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Fetched(Generic[_R]):
    """What :meth:`RangeProtocol.fetch` returns: the range as its ``parse`` made it and the ETag it came with;
    ``value`` None when the server answered 304 (the stored copy for ``etag`` stands)."""

    value: _R | None
    etag: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Failed:
    """One attempt's outcome when it gave no answer: the error, whether to try again, and after how long.

    ``expired``: the attempt ran out of time (the driver answered DEADLINE_PASSED); it is retried only when
    that was a per-attempt deadline and the call's own deadline is still ahead.
    """

    error: RemoteError
    retryable: bool
    retry_after: float | None = None
    cause: BaseException | None = None
    expired: bool = False


_Failed = Failed


def _attempts(count: int) -> str:
    return "after 1 attempt" if count == 1 else f"after {count} attempts"


class Retrying:
    """What every flow shares: per-operation timeouts, the deadlines, retries and their backoff.

    :meth:`run` repeats an attempt (a sub-flow that returns an answer or a :class:`Failed`) while the failure
    is retryable, there are retries left and the wait ends before the deadline; :meth:`send` is one request
    of an attempt, with its failures classified. ``label`` names what is asked in messages and debug logs
    ("range ABCDE", "pair query"), never a secret.

    The wait before a retry is the server's ``Retry-After`` (cut to ``max_retry_after``), else
    ``backoff_factor * 2**n`` (at most ``max_backoff``; with ``jitter``, a source of uniform numbers in
    [0, 1), scaled by a random factor from 0.5 to 1 so that many clients do not retry in step). ``deadline``
    bounds a whole call, waits included (``math.inf``: no bound); ``attempt_deadline``, if given, bounds each
    attempt as well, and an attempt that runs out of it is retried like a timeout.
    """

    def __init__(
        self,
        *,
        timeout: tuple[float, float],
        deadline: float,
        retries: int,
        backoff_factor: float,
        attempt_deadline: float | None = None,
        max_backoff: float = math.inf,
        max_retry_after: float = math.inf,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self.retries = retries
        self.backoff_factor = backoff_factor
        self.attempt_deadline = attempt_deadline
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.jitter = jitter

    def run(
        self, attempt: Callable[[float], Generator[Request, Reply, _T | Failed]], clock: Callable[[], float], label: str
    ) -> Generator[Request | Wait, Reply, _T]:
        """Run ``attempt(deadline)`` until it answers; raise its RemoteError when no retry is left."""
        deadline = clock() + self.deadline
        count = 0
        while True:
            count += 1
            bound = deadline if self.attempt_deadline is None else min(deadline, clock() + self.attempt_deadline)
            outcome = yield from attempt(bound)
            if not isinstance(outcome, Failed):
                return outcome
            error, retryable = outcome.error, outcome.retryable
            if outcome.expired and bound < deadline:
                assert self.attempt_deadline is not None
                error = RemoteError(
                    f"{label}: no complete answer within the {self.attempt_deadline:g} s deadline of an attempt",
                    RemoteErrorCode.TIMEOUT,
                )
                retryable = True
            if not retryable:
                raise error from outcome.cause
            if count > self.retries:
                raise RemoteError(f"{error} ({_attempts(count)})", error.code) from outcome.cause
            asked = outcome.retry_after is not None
            if outcome.retry_after is not None:
                wait = min(outcome.retry_after, self.max_retry_after)
            else:
                wait = min(self.backoff_factor * 2 ** (count - 1), self.max_backoff)
                if self.jitter is not None:
                    wait *= 0.5 + self.jitter() / 2
            if clock() + wait >= deadline:
                raise RemoteError(
                    f"{error} ({_attempts(count)}; waiting {wait:g} s more would pass "
                    f"the {self.deadline:g} s deadline)",
                    error.code,
                ) from outcome.cause
            logger.debug("%s: %s; retrying in %.2f s", label, error.code.value, wait)
            yield Wait(wait, asked)

    def send(
        self,
        url: str,
        headers: Mapping[str, str],
        deadline: float,
        clock: Callable[[], float],
        label: str,
        *,
        method: str = "GET",
        body: bytes | None = None,
    ) -> Generator[Request, Reply, Response | Failed]:
        """Yield one request bounded by what is left of ``deadline``; return its Response or the Failed it was."""
        remaining = deadline - clock()
        if remaining <= 0:
            return Failed(self.timed_out(label), retryable=False, expired=True)
        timeout = (min(self.timeout[0], remaining), min(self.timeout[1], remaining))
        logger.debug("%s: %s", label, method)
        reply = yield Request(url, headers, timeout, deadline, remaining, method, body)
        if isinstance(reply, _DeadlinePassed):
            return Failed(self.timed_out(label), retryable=False, expired=True)
        if isinstance(reply, Failure):
            return Failed(RemoteError(f"{label}: {reply.detail}", reply.code), reply.retryable, cause=reply.cause)
        if not isinstance(reply, Response):
            raise TypeError(f"a flow is sent a Response, a Failure or DEADLINE_PASSED, not {reply!r}")
        logger.debug("%s: HTTP %d", label, reply.status)
        return reply

    @staticmethod
    def status_failure(response: Response, label: str, hint: str = "") -> Failed:
        """The Failed of a status that is no answer: 429 and 5xx are retried (after any Retry-After)."""
        status = response.status
        error = RemoteError(f"{label}: HTTP {status}{hint}", RemoteErrorCode.HTTP_STATUS)
        if status == 429 or 500 <= status <= 599:
            return Failed(error, retryable=True, retry_after=retry_after(response.headers))
        return Failed(error, retryable=False)

    def timed_out(self, label: str) -> RemoteError:
        return RemoteError(
            f"{label}: no complete answer within the {self.deadline:g} s deadline", RemoteErrorCode.TIMEOUT
        )


class RangeProtocol:
    """Every decision of a range lookup against one API, for any driver (see the module docs).

    The settings are :class:`~credcheck.client.RangeClient`'s (or the mirror's), already validated; the cache
    (``cache_size`` entries, 0 for none) lives here, shared by every flow of this protocol. ``retrying``
    replaces the retry policy the timing settings would give (the mirror's: per-attempt deadlines, capped
    and jittered backoff, a capped ``Retry-After``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        user_agent: str,
        padding: bool,
        timeout: tuple[float, float],
        deadline: float,
        retries: int,
        backoff_factor: float,
        cache_size: int,
        retrying: Retrying | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user_agent = user_agent
        self.padding = padding
        self.timeout = timeout
        self.deadline = deadline
        self.retries = retries
        self.backoff_factor = backoff_factor
        if retrying is None:
            retrying = Retrying(timeout=timeout, deadline=deadline, retries=retries, backoff_factor=backoff_factor)
        self.retrying = retrying
        self.cache = RangeCache(cache_size) if cache_size else None

    def _request(self, prefix: str, scheme: str) -> tuple[str, dict[str, str]]:
        """The URL and headers of a request for a range (``prefix`` already checked)."""
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "gzip"}
        if self.padding:
            headers["Add-Padding"] = "true"
        return f"{self.base_url}/range/{prefix}{mode_query(scheme)}", headers

    def get_range(self, prefix: str, scheme: str, clock: Callable[[], float]) -> RangeFlow:
        """The flow of one lookup: yields Requests and Waits, returns ``{SUFFIX: count}`` or raises RemoteError.

        ``prefix`` and ``scheme`` are checked before the first yield (a ValueError or TypeError, never echoing
        the prefix). A range fresh in the cache returns without any request.
        """
        prefix = check_prefix(prefix)
        suffix_len = suffix_length(scheme)
        key = (prefix, scheme)
        entry = self.cache.get(key) if self.cache is not None else None
        if entry is not None and clock() < entry.expires:
            logger.debug("range %s (%s): fresh in cache", prefix, scheme)
            return dict(entry.counts)

        url, headers = self._request(prefix, scheme)
        if entry is not None:
            if entry.etag is not None:
                headers["If-None-Match"] = entry.etag
            if entry.last_modified is not None:
                headers["If-Modified-Since"] = entry.last_modified

        def parse(body: bytes) -> dict[str, int]:
            return parse_range_body(body, suffix_len)

        def attempt(deadline: float) -> Generator[Request, Reply, _Answer[dict[str, int]] | Failed]:
            return self._attempt(url, headers, prefix, parse, deadline, entry is not None, clock)

        answer = yield from self.retrying.run(attempt, clock, f"range {prefix} ({scheme})")
        return self._settle(key, answer, entry, clock())

    def fetch(
        self,
        prefix: str,
        scheme: str,
        clock: Callable[[], float],
        parse: Callable[[bytes], _R],
        *,
        etag: str | None = None,
    ) -> Generator[Request | Wait, Reply, Fetched[_R]]:
        """The flow of one range for a copy kept elsewhere (the mirror): no cache; ``If-None-Match: etag`` when
        given. Returns the validated body as ``parse`` makes it (``parse`` raises RemoteError for a body it
        refuses: not retried, as a malformed body) with its ETag, or, for a 304, a value of None.
        """
        prefix = check_prefix(prefix)
        check_scheme(scheme)
        url, headers = self._request(prefix, scheme)
        if etag is not None:
            headers["If-None-Match"] = etag

        def attempt(deadline: float) -> Generator[Request, Reply, _Answer[_R] | Failed]:
            return self._attempt(url, headers, prefix, parse, deadline, etag is not None, clock)

        answer = yield from self.retrying.run(attempt, clock, f"range {prefix} ({scheme})")
        if answer.value is None:
            assert etag is not None  # a 304 is accepted only for a conditional request
            return Fetched(None, answer.headers.get("ETag") or etag)
        return Fetched(answer.value, answer.headers.get("ETag"))

    def _attempt(
        self,
        url: str,
        headers: Mapping[str, str],
        prefix: str,
        parse: Callable[[bytes], _R],
        deadline: float,
        conditional: bool,
        clock: Callable[[], float],
    ) -> Generator[Request, Reply, _Answer[_R] | _Failed]:
        """One attempt: the request and the same-origin redirects it leads to."""
        label = f"range {prefix}"
        for _hop in range(MAX_REDIRECTS + 1):
            reply = yield from self.retrying.send(url, headers, deadline, clock, label)
            if isinstance(reply, Failed):
                return reply
            outcome = self._judge(reply, url, prefix, parse, conditional)
            if not isinstance(outcome, str):
                return outcome
            url = outcome  # a same-origin redirect: the next hop
        return _Failed(RemoteError(f"range {prefix}: too many redirects", RemoteErrorCode.HTTP_STATUS), retryable=False)

    @staticmethod
    def _judge(
        response: Response, url: str, prefix: str, parse: Callable[[bytes], _R], conditional: bool
    ) -> _Answer[_R] | _Failed | str:
        """What a response means: an answer, a failed attempt, or the URL of a redirect to follow."""
        status = response.status
        if status == 200:
            try:
                return _Answer(parse(response.body), response.headers)
            except RemoteError as exc:
                return _Failed(RemoteError(f"range {prefix}: {exc}", exc.code), retryable=False)
        if status == 304 and conditional:
            return _Answer(None, response.headers)
        if status in REDIRECTS:
            location = response.headers.get("Location")
            target = urllib.parse.urljoin(url, location) if location else None
            if target is not None and origin(target) == origin(url):
                return target
            return _Failed(
                RemoteError(
                    f"range {prefix}: HTTP {status} redirect to another origin, not followed",
                    RemoteErrorCode.HTTP_STATUS,
                ),
                retryable=False,
            )
        hint = _NOT_THE_ROOT if status in (400, 404) else ""
        return Retrying.status_failure(response, f"range {prefix}", hint)

    def _settle(
        self, key: tuple[str, str], answer: _Answer[dict[str, int]], entry: CacheEntry | None, now: float
    ) -> dict[str, int]:
        """Store or refresh the cache from a 200 or 304, and return a copy the caller may change."""
        if answer.value is None:
            assert entry is not None and self.cache is not None  # a 304 is accepted only when revalidating
            lifetime = freshness(answer.headers, entry.lifetime)
            if lifetime is None:
                self.cache.discard(key)
            else:
                entry.lifetime = lifetime
                entry.expires = now + lifetime
                entry.etag = answer.headers.get("ETag", entry.etag)
                entry.last_modified = answer.headers.get("Last-Modified", entry.last_modified)
            return dict(entry.counts)
        if self.cache is not None:
            lifetime = freshness(answer.headers, 0.0)
            etag = answer.headers.get("ETag")
            last_modified = answer.headers.get("Last-Modified")
            if lifetime is None or (lifetime == 0 and etag is None and last_modified is None):
                self.cache.discard(key)
            else:
                self.cache.put(key, CacheEntry(dict(answer.value), now + lifetime, lifetime, etag, last_modified))
        return answer.value
