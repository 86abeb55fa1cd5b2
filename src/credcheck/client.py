"""A client for HIBP-compatible k-anonymity range APIs, and the checker that sits on it.

Only the first five hex characters of a hash ever leave the process: :class:`RangeClient` asks a range API
(the public Pwned Passwords service, ``credcheck serve``, or a static export behind any web server) for every
hash suffix that shares that prefix, and :class:`RemoteChecker` looks the rest of the digest up locally.

Failures are loud: a timeout, a dropped connection, a wrong status or a body that is not ``SUFFIX:COUNT``
lines raises :class:`~credcheck.errors.RemoteError` with a machine-readable code, never "not found".
The caller decides the failure policy (reject, fall back to a local filter, or let the password through).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import http.cookiejar
import importlib.metadata
import logging
import re
import socket
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Final

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
import urllib3.response

from .checker import Checker, Exposure
from .errors import RemoteError, RemoteErrorCode
from .hashing import DIGEST_SIZES, check_scheme

__all__ = [
    "DEFAULT_BASE_URL",
    "RangeClient",
    "RemoteChecker",
    "open_remote",
    "parse_range_body",
]

logger = logging.getLogger("credcheck.client")

#: The public Pwned Passwords range API.
DEFAULT_BASE_URL: Final = "https://api.pwnedpasswords.com"

PREFIX_LENGTH: Final = 5

# A count is a plain decimal that fits in 64 bits; longer digit strings are garbage, and refusing them
# up front also keeps int() away from Python's limit on huge decimal strings.
_MAX_COUNT_DIGITS: Final = 19
_HEX_PREFIX = re.compile(r"[0-9A-Fa-f]{5}", re.ASCII)
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS: Final = 3
# A Pwned Passwords range is ~40 KB with padding; a self-hosted corpus of billions stays well under this.
_MAX_BODY_BYTES: Final = 8 * 1024 * 1024
_CHUNK_BYTES: Final = 64 * 1024
_DEFAULT_CACHE_ENTRIES: Final = 128
_NOT_THE_ROOT: Final = " (is the base URL the API's root? GET {base}/range/{PREFIX} must answer)"


# ----------------------------------------------------------------------------------------------------
# The overall deadline
#
# urllib3's timeouts bound each connect and each read, so a server that drips one byte a second (within
# every read timeout) could hold a request open for as long as it likes, even while the status line and
# headers arrive. Each attempt therefore arms a watchdog: the connections of the client's own session
# hand their socket to it before the response is read, and when the deadline passes it shuts the socket
# down, which wakes the blocked read. A session passed in by the caller keeps its own adapters, so there
# the deadline is checked between body chunks only.


class _Watchdog:
    """Shuts down the socket of the current attempt once its deadline passes."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                self._shutdown()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # already closed
                self._sock.shutdown(socket.SHUT_RDWR)

    def disarm(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sock = None


_current = threading.local()


def _attach_current(sock: socket.socket | None) -> None:
    watchdog: _Watchdog | None = getattr(_current, "watchdog", None)
    if watchdog is not None:
        watchdog.attach(sock)


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        _attach_current(self.sock)
        return super().getresponse()


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        _attach_current(self.sock)
        return super().getresponse()


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Stores no cookie and returns none."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False


class _Redirect(Exception):
    """A same-origin redirect to follow within the attempt."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


class _DeadlineAdapter(requests.adapters.HTTPAdapter):
    """An adapter whose connections report their socket to the current attempt's watchdog."""

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


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
    return re.compile(rf"([0-9A-Fa-f]{{{suffix_len}}}):([0-9]{{1,{_MAX_COUNT_DIGITS}}})", re.ASCII)


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
    if isinstance(suffix_len, bool) or not isinstance(suffix_len, int) or suffix_len < 1:
        raise ValueError(f"suffix_len must be a positive integer, got {suffix_len!r}")
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


def _bad(prefix: str, problem: str) -> _AttemptFailed:
    return _AttemptFailed(RemoteError(f"range {prefix}: {problem}", RemoteErrorCode.BAD_RESPONSE), retryable=False)


def _content_length(headers: Mapping[str, str], prefix: str) -> int | None:
    value = headers.get("Content-Length")
    if value is None:
        return None
    value = value.strip()
    # urllib3 refuses most malformed or contradictory values already; stay strict anyway.
    if not (value.isascii() and value.isdigit()):
        raise _bad(prefix, "malformed Content-Length")
    return int(value)


def _decoder(content_encoding: str, prefix: str) -> zlib._Decompress | None:
    """A gzip decoder for the body, or None for identity; any other encoding is refused (only gzip is asked for)."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if codings in (["gzip"], ["x-gzip"]):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    raise _bad(prefix, "unsupported content encoding (only gzip is accepted)")


def _suffix_length(mode: str) -> int:
    if mode not in DIGEST_SIZES:
        raise ValueError(f"unknown range mode {mode!r}; expected 'sha1' or 'ntlm'")
    return 2 * DIGEST_SIZES[mode] - PREFIX_LENGTH


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"a range prefix must be str, not {type(prefix).__name__}")
    # Never echo the argument: a caller who passes a whole hash by mistake must not see it in a traceback.
    if len(prefix) != PREFIX_LENGTH:
        raise ValueError(f"a range prefix is exactly {PREFIX_LENGTH} hex characters, got {len(prefix)}")
    if _HEX_PREFIX.fullmatch(prefix) is None:
        raise ValueError("a range prefix must be hexadecimal")
    return prefix.upper()


# ----------------------------------------------------------------------------------------------------
# HTTP


@functools.cache
def _default_user_agent() -> str:
    try:
        version = importlib.metadata.version("credcheck")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    return f"credcheck/{version} (k-anonymity range client)"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _redacted(url: str) -> str:
    """``url`` without any ``user:password@`` part, for reprs."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """The delay a 429/503 asks for, in seconds (the delta-seconds form only; an HTTP date is ignored)."""
    value = headers.get("Retry-After", "").strip()
    return float(value) if value.isascii() and value.isdigit() else None


def _freshness(headers: Mapping[str, str], default: float) -> float | None:
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
class _CacheEntry:
    counts: dict[str, int]
    expires: float
    lifetime: float
    etag: str | None
    last_modified: str | None


class _RangeCache:
    """A small thread-safe LRU of parsed ranges, keyed by (prefix, mode)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: collections.OrderedDict[tuple[str, str], _CacheEntry] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> _CacheEntry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str], entry: _CacheEntry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def discard(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._entries.pop(key, None)


class _AttemptFailed(Exception):
    """One attempt went wrong; carries the error to raise and whether another attempt may help."""

    def __init__(self, error: RemoteError, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after


@dataclasses.dataclass(slots=True)
class _Answer:
    counts: dict[str, int] | None  # None: 304 Not Modified
    headers: Mapping[str, str]


def _attempts(count: int) -> str:
    return "after 1 attempt" if count == 1 else f"after {count} attempts"


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class RangeClient:
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
        if not isinstance(base_url, str):
            raise TypeError(f"base_url must be str, not {type(base_url).__name__}")
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("base_url must not carry a query or a fragment")
        if parts.path.rstrip("/").lower().endswith("/range"):
            raise ValueError("a range API's URL is its root, without /range (the client asks for ROOT/range/PREFIX)")
        if isinstance(timeout, tuple):
            if len(timeout) != 2:
                raise ValueError("timeout must be a number or a (connect, read) pair")
            connect, read = _positive("timeout", timeout[0]), _positive("timeout", timeout[1])
        else:
            connect = read = _positive("timeout", timeout)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        if isinstance(backoff_factor, bool) or not isinstance(backoff_factor, int | float) or backoff_factor < 0:
            raise ValueError(f"backoff_factor must be a non-negative number, got {backoff_factor!r}")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"pool_size must be a positive integer, got {pool_size!r}")
        if cache is True:
            cache_size = _DEFAULT_CACHE_ENTRIES
        elif cache is False:
            cache_size = 0
        elif isinstance(cache, int) and cache >= 0:
            cache_size = cache
        else:
            raise ValueError(f"cache must be a bool or a non-negative number of entries, got {cache!r}")

        self.base_url = base_url.rstrip("/")
        self.timeout = (connect, read)
        self.deadline = _positive("deadline", deadline)
        self.retries = retries
        self.backoff_factor = float(backoff_factor)
        self.padding = bool(padding)
        self.user_agent = _default_user_agent() if user_agent is None else user_agent
        self._cache = _RangeCache(cache_size) if cache_size else None
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            # Cookies a range server sets are never sent back: they would link one client's requests.
            session.cookies.set_policy(_NoCookies())
            # Retries are ours (deadline-aware), so urllib3's are off.
            adapter = _DeadlineAdapter(pool_maxsize=pool_size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session
        self._clock: Callable[[], float] = time.monotonic

    def get_range(self, prefix: str, mode: str = "sha1") -> dict[str, int]:
        """Return ``{SUFFIX: count}`` for the 5-hex ``prefix`` (``mode`` 'sha1' or 'ntlm'), padding dropped.

        Raises :class:`RemoteError` (code TIMEOUT, CONNECTION, HTTP_STATUS or BAD_RESPONSE) when the API gives
        no usable answer within the deadline; an error is never turned into an empty range.
        """
        prefix = _check_prefix(prefix)
        suffix_len = _suffix_length(mode)
        key = (prefix, mode)
        entry = self._cache.get(key) if self._cache is not None else None
        if entry is not None and self._clock() < entry.expires:
            logger.debug("range %s (%s): fresh in cache", prefix, mode)
            return dict(entry.counts)

        url = f"{self.base_url}/range/{prefix}" + ("?mode=ntlm" if mode == "ntlm" else "")
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "gzip"}
        if self.padding:
            headers["Add-Padding"] = "true"
        if entry is not None:
            if entry.etag is not None:
                headers["If-None-Match"] = entry.etag
            if entry.last_modified is not None:
                headers["If-Modified-Since"] = entry.last_modified

        deadline = self._clock() + self.deadline
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self._attempt(url, headers, prefix, suffix_len, deadline, entry is not None)
            except _AttemptFailed as failure:
                error = failure.error
                if not failure.retryable:
                    raise error from failure.__cause__
                if attempt > self.retries:
                    raise RemoteError(f"{error} ({_attempts(attempt)})", error.code) from failure.__cause__
                if failure.retry_after is not None:
                    wait = failure.retry_after
                else:
                    wait = self.backoff_factor * 2 ** (attempt - 1)
                if self._clock() + wait >= deadline:
                    raise RemoteError(
                        f"{error} ({_attempts(attempt)}; waiting {wait:g} s more would pass "
                        f"the {self.deadline:g} s deadline)",
                        error.code,
                    ) from failure.__cause__
                logger.debug("range %s (%s): %s; retrying in %.2f s", prefix, mode, error.code.value, wait)
                time.sleep(wait)
                continue
            return self._settle(key, answer, entry)

    def _attempt(
        self,
        url: str,
        headers: Mapping[str, str],
        prefix: str,
        suffix_len: int,
        deadline: float,
        conditional: bool,
    ) -> _Answer:
        for _hop in range(_MAX_REDIRECTS + 1):
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise _AttemptFailed(self._timed_out(prefix), retryable=False)
            timeout = (min(self.timeout[0], remaining), min(self.timeout[1], remaining))
            logger.debug("range %s: GET", prefix)
            watchdog = _current.watchdog = _Watchdog(remaining)
            try:
                return self._exchange(url, headers, prefix, suffix_len, deadline, conditional, timeout, watchdog)
            except _Redirect as hop:
                url = hop.target
            finally:
                watchdog.disarm()
                _current.watchdog = None
        raise _AttemptFailed(
            RemoteError(f"range {prefix}: too many redirects", RemoteErrorCode.HTTP_STATUS), retryable=False
        )

    def _exchange(
        self,
        url: str,
        headers: Mapping[str, str],
        prefix: str,
        suffix_len: int,
        deadline: float,
        conditional: bool,
        timeout: tuple[float, float],
        watchdog: _Watchdog,
    ) -> _Answer:
        """One request and its response, under the watchdog; raises _Redirect for a same-origin redirect."""
        try:
            response = self.session.get(url, headers=headers, timeout=timeout, allow_redirects=False, stream=True)
        except requests.RequestException as exc:
            raise self._transport_failure(exc, prefix, watchdog) from exc
        with response:
            status = response.status_code
            logger.debug("range %s: HTTP %d", prefix, status)
            if status == 200:
                body = self._read_body(response, prefix, deadline, watchdog)
                try:
                    counts = parse_range_body(body, suffix_len)
                except RemoteError as exc:
                    raise _AttemptFailed(RemoteError(f"range {prefix}: {exc}", exc.code), retryable=False) from None
                return _Answer(counts, response.headers)
            if status == 304 and conditional:
                return _Answer(None, response.headers)
            if status in _REDIRECTS:
                location = response.headers.get("Location")
                target = urllib.parse.urljoin(url, location) if location else None
                if target is not None and _origin(target) == _origin(url):
                    raise _Redirect(target)
                raise _AttemptFailed(
                    RemoteError(
                        f"range {prefix}: HTTP {status} redirect to another origin, not followed",
                        RemoteErrorCode.HTTP_STATUS,
                    ),
                    retryable=False,
                )
            hint = _NOT_THE_ROOT if status in (400, 404) else ""
            error = RemoteError(f"range {prefix}: HTTP {status}{hint}", RemoteErrorCode.HTTP_STATUS)
            if status == 429 or 500 <= status <= 599:
                raise _AttemptFailed(error, retryable=True, retry_after=_retry_after(response.headers))
            raise _AttemptFailed(error, retryable=False)

    def _read_body(self, response: requests.Response, prefix: str, deadline: float, watchdog: _Watchdog) -> bytes:
        """The whole decoded body, or _AttemptFailed: a body that cannot be proven complete is never parsed.

        Read raw (undecoded) so that framing and encoding are checked here, not trusted to the transport:
        the body must be framed by Content-Length (every byte of it received) or by chunked encoding (up to
        its last chunk); a close-delimited body ends the same way whether it was complete or cut short, so
        it is refused. A gzip body must reach the end of its stream (final block and trailer checked by
        zlib). Streamed so that a slow drip cannot outlast the deadline and a huge body cannot exhaust memory.
        """
        if watchdog.fired:  # the socket was shut while the head was read: the head itself may be cut short
            raise _AttemptFailed(self._timed_out(prefix), retryable=False)
        raw = response.raw
        if getattr(response, "_content_consumed", False) or not isinstance(raw, urllib3.response.HTTPResponse):
            raise _bad(prefix, "the body was read before the client could check it (a response hook?)")
        declared = None if raw.chunked else _content_length(response.headers, prefix)
        if declared is None and not raw.chunked:
            raise _bad(prefix, "a 200 with neither Content-Length nor chunked framing (a cut body would look whole)")
        if declared is not None and declared > _MAX_BODY_BYTES:
            raise _bad(prefix, f"response larger than {_MAX_BODY_BYTES} bytes")
        decoder = _decoder(response.headers.get("Content-Encoding", ""), prefix)
        chunks: list[bytes] = []
        received = size = 0
        try:
            for chunk in raw.stream(_CHUNK_BYTES, decode_content=False):
                received += len(chunk)
                if self._clock() > deadline:
                    raise _AttemptFailed(self._timed_out(prefix), retryable=False)
                if decoder is not None:
                    if decoder.eof:
                        raise _bad(prefix, "data after the end of the gzip stream")
                    chunk = decoder.decompress(chunk, _MAX_BODY_BYTES + 1 - size)
                    if decoder.unconsumed_tail:
                        chunk += b"x"  # more output is waiting: over the limit either way
                size += len(chunk)
                if size > _MAX_BODY_BYTES or received > _MAX_BODY_BYTES:
                    raise _bad(prefix, f"response larger than {_MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
        except zlib.error:
            raise _bad(prefix, "undecodable content encoding") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._body_failure(exc, prefix, watchdog) from exc
        if watchdog.fired:
            raise _AttemptFailed(self._timed_out(prefix), retryable=False)
        if declared is not None and received != declared:
            # urllib3 2 enforces Content-Length itself; this also holds with urllib3 1.
            raise _AttemptFailed(
                RemoteError(f"range {prefix}: body cut short of its Content-Length", RemoteErrorCode.CONNECTION),
                retryable=True,
            )
        if decoder is not None and (not decoder.eof or decoder.unused_data):
            problem = "data after the end of the gzip stream" if decoder.eof else "gzip stream cut short"
            raise _bad(prefix, problem)
        return b"".join(chunks)

    def _body_failure(self, exc: BaseException, prefix: str, watchdog: _Watchdog) -> _AttemptFailed:
        if watchdog.fired:
            return _AttemptFailed(self._timed_out(prefix), retryable=False)
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
            return _AttemptFailed(RemoteError(f"range {prefix}: timed out", RemoteErrorCode.TIMEOUT), retryable=True)
        return _AttemptFailed(
            RemoteError(f"range {prefix}: connection dropped during the body", RemoteErrorCode.CONNECTION),
            retryable=True,
        )

    def _timed_out(self, prefix: str) -> RemoteError:
        return RemoteError(
            f"range {prefix}: no complete answer within the {self.deadline:g} s deadline",
            RemoteErrorCode.TIMEOUT,
        )

    def _transport_failure(self, exc: requests.RequestException, prefix: str, watchdog: _Watchdog) -> _AttemptFailed:
        # The message is ours: requests' own messages repeat the URL and socket details.
        if watchdog.fired:
            return _AttemptFailed(self._timed_out(prefix), retryable=False)
        if isinstance(exc, requests.exceptions.ContentDecodingError):
            return _AttemptFailed(
                RemoteError(f"range {prefix}: undecodable content encoding", RemoteErrorCode.BAD_RESPONSE),
                retryable=False,
            )
        timed_out = isinstance(exc, requests.Timeout) or (
            isinstance(exc, requests.ConnectionError)
            and bool(exc.args)
            and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError)
        )
        if timed_out:
            return _AttemptFailed(RemoteError(f"range {prefix}: timed out", RemoteErrorCode.TIMEOUT), retryable=True)
        if isinstance(exc, requests.exceptions.SSLError):
            # A certificate that fails now fails on the next attempt too.
            return _AttemptFailed(
                RemoteError(f"range {prefix}: TLS failure", RemoteErrorCode.CONNECTION), retryable=False
            )
        if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
            return _AttemptFailed(
                RemoteError(f"range {prefix}: connection failed or dropped", RemoteErrorCode.CONNECTION),
                retryable=True,
            )
        return _AttemptFailed(
            RemoteError(f"range {prefix}: request failed ({type(exc).__name__})", RemoteErrorCode.CONNECTION),
            retryable=False,
        )

    def _settle(self, key: tuple[str, str], answer: _Answer, entry: _CacheEntry | None) -> dict[str, int]:
        """Store or refresh the cache from a 200 or 304, and return a copy the caller may change."""
        if answer.counts is None:
            assert entry is not None and self._cache is not None  # a 304 is accepted only when revalidating
            lifetime = _freshness(answer.headers, entry.lifetime)
            if lifetime is None:
                self._cache.discard(key)
            else:
                entry.lifetime = lifetime
                entry.expires = self._clock() + lifetime
                entry.etag = answer.headers.get("ETag", entry.etag)
                entry.last_modified = answer.headers.get("Last-Modified", entry.last_modified)
            return dict(entry.counts)
        if self._cache is not None:
            lifetime = _freshness(answer.headers, 0.0)
            etag = answer.headers.get("ETag")
            last_modified = answer.headers.get("Last-Modified")
            if lifetime is None or (lifetime == 0 and etag is None and last_modified is None):
                self._cache.discard(key)
            else:
                self._cache.put(
                    key,
                    _CacheEntry(dict(answer.counts), self._clock() + lifetime, lifetime, etag, last_modified),
                )
        return answer.counts

    def close(self) -> None:
        """Close the connection pool if this client created its session (a session passed in stays open)."""
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> RangeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        cache = self._cache.size if self._cache is not None else False
        return f"<RangeClient {_redacted(self.base_url)!r} padding={self.padding} cache={cache}>"


# ----------------------------------------------------------------------------------------------------
# The checker


class RemoteChecker(Checker):
    """Checks passwords against a range API: one request per distinct hash prefix, suffixes matched locally.

    A batch fetches its distinct prefixes concurrently (at most ``max_workers`` at a time). Any failure raises
    :class:`RemoteError`; a password is never reported as safe because the service could not be asked.
    """

    def __init__(self, client: RangeClient, *, scheme: str = "sha1", min_count: int = 1, max_workers: int = 8) -> None:
        super().__init__(scheme=scheme, min_count=min_count)
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be a positive integer, got {max_workers!r}")
        self.client = client
        self.max_workers = max_workers

    def _check_digests(self, digests: Sequence[bytes]) -> list[Exposure]:
        size = DIGEST_SIZES[self.scheme]
        hexes: list[str] = []
        for raw in digests:
            if len(raw) != size:
                raise ValueError(f"a {self.scheme} digest has {size} bytes, got {len(raw)}")
            hexes.append(raw.hex().upper())
        ranges = self._fetch(list(dict.fromkeys(h[:PREFIX_LENGTH] for h in hexes)))
        answers: list[Exposure] = []
        for full in hexes:
            count = ranges[full[:PREFIX_LENGTH]].get(full[PREFIX_LENGTH:])
            answers.append(Exposure(False, 0) if count is None else self._apply_threshold(count))
        return answers

    def _fetch(self, prefixes: list[str]) -> dict[str, dict[str, int]]:
        if len(prefixes) <= 1 or self.max_workers == 1:
            return {prefix: self.client.get_range(prefix, self.scheme) for prefix in prefixes}
        ranges: dict[str, dict[str, int]] = {}
        workers = min(self.max_workers, len(prefixes))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="credcheck-range") as pool:
            futures: dict[Future[dict[str, int]], str] = {
                pool.submit(self.client.get_range, prefix, self.scheme): prefix for prefix in prefixes
            }
            try:
                for future in as_completed(futures):
                    ranges[futures[future]] = future.result()
            except BaseException:
                # One failed prefix fails the batch; don't start requests whose answers will be thrown away.
                for future in futures:
                    future.cancel()
                raise
        return ranges

    def _release(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"<RemoteChecker {self.client!r} scheme={self.scheme!r} min_count={self.min_count}>"


def open_remote(
    url: str,
    *,
    scheme: str | None = None,
    hash: str | None = None,
    min_count: int = 1,
    timeout: float | tuple[float, float] = (3.0, 3.0),
    deadline: float = 5.0,
    padding: bool = True,
    session: requests.Session | None = None,
    retries: int = 3,
    cache: bool | int = False,
    max_workers: int = 8,
    user_agent: str | None = None,
) -> RemoteChecker:
    """Return a :class:`RemoteChecker` on the range API at ``url``; ``credcheck.open("https://…")`` calls it.

    ``scheme`` (or its alias ``hash``) is 'sha1' (default) or 'ntlm'; the other options go to
    :class:`RangeClient` and :class:`RemoteChecker`. An unknown option is a ``TypeError``.
    """
    if scheme is not None and hash is not None and scheme != hash:
        raise TypeError("give the hash scheme once: scheme= or hash=, not both")
    chosen = scheme if scheme is not None else hash if hash is not None else "sha1"
    check_scheme(chosen)
    client = RangeClient(
        url,
        session=session,
        timeout=timeout,
        deadline=deadline,
        retries=retries,
        padding=padding,
        user_agent=user_agent,
        cache=cache,
        pool_size=max(max_workers, 1) if isinstance(max_workers, int) else 10,
    )
    try:
        return RemoteChecker(client, scheme=chosen, min_count=min_count, max_workers=max_workers)
    except BaseException:
        client.close()
        raise
