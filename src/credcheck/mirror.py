"""A local copy of any HIBP-compatible range API: every 5-hex range fetched, validated, and written as a store.

:func:`mirror` asks ``GET {url}/range/{PREFIX}`` (``?mode=ntlm`` for NTLM) for each of the 16^5 prefixes over a
few pooled keep-alive connections, validates every body with the range client's strict parser, appends each
range to a journal beside the store as it arrives, and at the end writes the store (and a filter sized from
what was fetched) atomically, in prefix order. It works the same against the public Pwned Passwords API,
``credcheck serve``, or a static ``credcheck export`` behind any web server.

- A killed mirror continues from its journal (``resume=True``) and asks for no range the journal holds.
- ``update=True`` sends each range's stored ETag (kept in a sidecar beside the store) as ``If-None-Match``, so
  an unchanged range costs a 304; the report says what changed. A server without ETags still works: every
  range is then fetched in full, and the report says so.
- A range that stays truncated, malformed or not a range at all after the retries fails the whole mirror
  with a :class:`~credcheck.errors.RemoteError` naming its prefix; the previous store is left as it was.

The files beside ``STORE``: ``STORE.mirror-journal`` (while a mirror runs or after one was interrupted),
``STORE.etags`` (the ETags of the ranges in the store) and ``STORE.lock`` (held while a mirror runs, so two
mirrors of one store cannot interleave). ``_mirrorfiles`` reads and writes the first two; their layouts are in
docs/MIRROR.md.

The HTTP side is the standard library's ``http.client``, one keep-alive connection per worker thread: against
a local server it spent a third of the CPU per range of threads over urllib3's pools and a fifth or less of
requests' or httpx's (sync or async), and the protocol needed here (GET, gzip, conditional
requests, Retry-After) is small enough to own. docs/MIRROR.md says where the client's CPU goes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import http.client
import os
import random
import socket
import ssl
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Collection, Iterator
from typing import Any, Final, TextIO

import numpy as np
import numpy.typing as npt
import xxhash

from . import __version__, _args, _atomic, _native
from ._mirrorfiles import BODY, MAX_ETAG, NOT_MODIFIED, ETags, Journal, Range, store_identity
from ._protocol import DEFAULT_BASE_URL, parse_range_body
from ._wire import mode_query
from .bloom import BloomFilter
from .errors import InputError, RemoteError, RemoteErrorCode, StorageError
from .hashing import check_scheme
from .store import MAX_COUNT, PREFIXES, SKIP, RangeStore, StoreWriter

__all__ = ["DEFAULT_BASE_URL", "MirrorProgress", "MirrorReport", "mirror", "progress_printer"]

DEFAULT_WORKERS: Final = 8  # polite towards a public API, and past the point of diminishing returns locally
MAX_WORKERS: Final = 256
DEFAULT_RETRIES: Final = 5
DEFAULT_TIMEOUT: Final = 30.0  # each connect and each read
DEFAULT_DEADLINE: Final = 120.0  # a whole attempt: a server that drips bytes cannot hold a worker longer
BACKOFF: Final = 0.5  # seconds before the first retry, doubled each time (with jitter) ...
MAX_BACKOFF: Final = 30.0  # ... up to this
MAX_RETRY_AFTER: Final = 600.0  # a longer Retry-After is cut to this
MAX_BODY_BYTES: Final = 16 << 20  # decoded; a Pwned Passwords range is about 40 KB

JOURNAL_SUFFIX: Final = ".mirror-journal"
ETAGS_SUFFIX: Final = ".etags"
LOCK_SUFFIX: Final = ".lock"

_SYNC_SECONDS: Final = 1.0  # the journal is fsynced at least this often while records arrive
_WRITE_ROWS: Final = 1 << 18  # rows handed to the store writer at once

#: progress(ranges done, ranges in all, bytes received)
MirrorProgress = Callable[[int, int, int], None]


@dataclasses.dataclass(slots=True)
class MirrorReport:
    """What a mirror asked for, what came back, and what changed in the store.

    The numbers add up: ``ranges == fetched + not_modified + resumed``, every range with a body is either
    ``ranges_changed`` or ``ranges_same``, and ``hashes == hashes_before + hashes_added - hashes_removed``.
    """

    url: str
    scheme: str
    ranges: int = 0  # prefixes asked for in this mirror
    fetched: int = 0  # answered 200 in this run
    not_modified: int = 0  # answered 304 in this run: kept from the store
    resumed: int = 0  # taken from the journal of an interrupted run
    requests: int = 0  # HTTP requests sent in this run, retries included
    retries: int = 0
    bytes_received: int = 0  # response bodies as they came over the wire (compressed)
    updated: bool = False
    etags_sent: int = 0  # conditional requests (If-None-Match) among the ranges of this run
    without_etag: int = 0  # ranges the server answered without an ETag (a later update fetches them again)
    ranges_changed: int = 0  # ranges with a body that differs from the store's
    ranges_same: int = 0  # ranges with a body equal to the store's (fetched again nonetheless)
    hashes: int = 0  # hashes in the new store
    hashes_before: int = 0
    hashes_added: int = 0
    hashes_removed: int = 0
    counts_changed: int = 0  # hashes in both, with another count
    store_path: str = ""
    store_kept: bool = False  # an update that changed no range leaves the store file as it was
    filter_path: str | None = None
    seconds: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)

    def reconciles(self) -> bool:
        """True when every range and every hash is accounted for exactly once."""
        return (
            self.ranges == self.fetched + self.not_modified + self.resumed
            and self.ranges_changed + self.ranges_same + self.not_modified <= self.ranges
            and self.hashes == self.hashes_before + self.hashes_added - self.hashes_removed
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """A short human-readable account of the mirror."""
        rate = (self.fetched + self.not_modified) / self.seconds if self.seconds else 0.0
        lines = [
            f"mirrored {self.ranges:,} {self.scheme} ranges from {self.url} in {self.seconds:.1f} s "
            f"({rate:,.0f} ranges/s, {self.bytes_received:,} bytes, {self.retries:,} retries)",
            f"  {self.fetched:,} fetched, {self.not_modified:,} not modified (304), "
            f"{self.resumed:,} from the journal of an interrupted run",
            f"  {self.ranges_changed:,} ranges changed: {self.hashes_added:,} hashes added, "
            f"{self.hashes_removed:,} removed, {self.counts_changed:,} counts changed; {self.hashes:,} hashes in "
            f"the store" + (f" (was {self.hashes_before:,})" if self.updated else ""),
        ]
        lines += [f"  note: {note}" for note in self.notes]
        store = f"kept store {self.store_path} as it was" if self.store_kept else f"wrote store {self.store_path}"
        lines.append(f"  {store}" + (f"; wrote filter {self.filter_path}" if self.filter_path else ""))
        return "\n".join(lines)


def progress_printer(stream: TextIO) -> MirrorProgress | None:
    """Progress for a terminal: a tqdm bar (ranges/s, ETA, bytes) if tqdm is installed, else a plain line.

    None when ``stream`` is not a terminal (a log file gets the final report only).
    """
    if not stream.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    started = time.monotonic()
    bar: Any = None
    first: int | None = None  # ranges already done when this run started (a resumed mirror)

    def update(done: int, total: int, received: int) -> None:
        nonlocal bar, first
        if first is None:
            first = done
        if tqdm is not None:
            if bar is None:
                bar = tqdm(total=total, initial=done, desc="mirror", unit=" ranges", file=stream)
            bar.update(done - bar.n)
            bar.set_postfix_str(f"{received / 1e6:,.1f} MB", refresh=False)
            if done >= total:
                bar.close()
            return
        elapsed = time.monotonic() - started
        rate = (done - first) / elapsed if elapsed > 0 else 0.0
        eta = f"{(total - done) / rate:,.0f} s" if rate > 0 else "?"
        end = "\n" if done >= total else ""
        stream.write(f"\rmirror: {done:,}/{total:,} ranges, {rate:,.0f}/s, ETA {eta}, {received / 1e6:,.1f} MB{end}")
        stream.flush()

    return update


# ----------------------------------------------------------------------------------------------------
# One worker's HTTP connection


@dataclasses.dataclass(frozen=True, slots=True)
class _Target:
    """Where the ranges are: scheme, host, port and the path the ``/range/`` URLs hang from."""

    https: bool
    host: str
    port: int
    path: str
    shown: str  # the URL without credentials, for messages and the report

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the mirror URL must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("the mirror URL must not carry a query or a fragment")
        if parts.username is not None or parts.password is not None:
            raise ValueError("the mirror URL must not carry credentials")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise ValueError("the mirror URL has an invalid port") from None
        path = urllib.parse.quote(parts.path.rstrip("/"), safe="/%~!$&'()*+,;=:@")
        return cls(scheme == "https", parts.hostname, port, path, urllib.parse.urlunsplit(parts._replace(path=path)))


class _Failure(Exception):
    """One attempt went wrong: why, the error code, whether to try again, and a wait the server asked for."""

    def __init__(self, reason: str, code: RemoteErrorCode, *, retry: bool = True, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.code, self.retry, self.wait = reason, code, retry, wait


class _Stale(Exception):
    """The server closed the connection before answering this request (an idle keep-alive timed out)."""


class _Connection:
    """One keep-alive connection (reopened after any failure), sending GETs and reading whole bodies."""

    def __init__(self, target: _Target, timeout: float, context: ssl.SSLContext | None) -> None:
        self.target, self.timeout, self.context = target, timeout, context
        self._conn: http.client.HTTPConnection | None = None
        self.started: float | None = None  # when the current attempt began (read by the watchdog)
        self._sock: socket.socket | None = None  # the attempt's socket (http.client lets go of it on HTTP/1.0)
        self.expired = False  # the watchdog shut the socket of this attempt
        self._lock = threading.Lock()

    def expire(self) -> None:
        """Called by the watchdog: shut the socket of the attempt in progress, which wakes its blocked read."""
        with self._lock:
            if self._sock is not None and self.started is not None:
                self.expired = True
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)

    def _open(self) -> http.client.HTTPConnection:
        if self._conn is None:
            t = self.target
            if t.https:
                self._conn = http.client.HTTPSConnection(t.host, t.port, timeout=self.timeout, context=self.context)
            else:
                self._conn = http.client.HTTPConnection(t.host, t.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, http.client.HTTPMessage, bytes]:
        """Status, headers and the body as sent (still encoded); raises _Failure for a transport problem.

        A kept-alive connection that the server closed while idle fails on its next request before any answer
        arrives; that request is sent again at once on a new connection (a GET: safe to repeat).
        """
        self.started, self.expired = time.monotonic(), False
        try:
            for fresh in (self._conn is None, True):
                try:
                    return self._get(path, headers)
                except _Stale:
                    if fresh:
                        break
            raise _Failure("connection failed or dropped (closed before answering)", RemoteErrorCode.CONNECTION)
        except _Failure:
            if self.expired:
                raise _Failure("no complete answer within the deadline", RemoteErrorCode.TIMEOUT) from None
            raise
        finally:
            with self._lock:
                self.started = self._sock = None

    def _get(self, path: str, headers: dict[str, str]) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = self._open()
        try:
            try:
                conn.request("GET", path, headers=headers)
                with self._lock:
                    self._sock = conn.sock
                    if self.expired:  # the deadline passed while connecting or sending
                        raise _Failure("expired", RemoteErrorCode.TIMEOUT)
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if self.expired:
                    raise _Failure("expired", RemoteErrorCode.TIMEOUT) from None
                raise _Stale from None
            chunks, size = [], 0
            while chunk := response.read(1 << 16):
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _Failure(f"response larger than {MAX_BODY_BYTES:,} bytes", RemoteErrorCode.BAD_RESPONSE)
                chunks.append(chunk)
            # A chunked body cut short raises IncompleteRead, but read(n) just stops early when the connection
            # ends before the Content-Length: what is left of it says so (a cut between two lines would parse)
            if response.length:
                raise http.client.IncompleteRead(b"", response.length)
        except (_Failure, _Stale):
            self.close()
            raise
        except http.client.IncompleteRead:
            self.close()
            raise _Failure("truncated response (fewer bytes than announced)", RemoteErrorCode.BAD_RESPONSE) from None
        except TimeoutError:
            self.close()
            raise _Failure("timed out", RemoteErrorCode.TIMEOUT) from None
        except ssl.SSLCertVerificationError:
            self.close()
            raise _Failure("TLS certificate not trusted", RemoteErrorCode.CONNECTION, retry=False) from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise _Failure(f"connection failed or dropped ({type(exc).__name__})", RemoteErrorCode.CONNECTION) from None
        if response.will_close:
            self.close()
        return response.status, response.headers, b"".join(chunks)


def _decoded(body: bytes, encoding: str | None) -> bytes:
    """The body without its Content-Encoding; a gzip stream must be whole (its trailer read and checked)."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding not in ("gzip", "x-gzip"):
        raise _Failure(f"unsupported Content-Encoding {coding[:20]!r}", RemoteErrorCode.BAD_RESPONSE)
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error:
        raise _Failure("corrupt gzip body", RemoteErrorCode.BAD_RESPONSE) from None
    if len(raw) > MAX_BODY_BYTES:
        raise _Failure(f"response larger than {MAX_BODY_BYTES:,} bytes", RemoteErrorCode.BAD_RESPONSE)
    if not inflater.eof:
        raise _Failure("truncated gzip body (no gzip trailer)", RemoteErrorCode.BAD_RESPONSE)
    if inflater.unused_data:
        raise _Failure("bytes after the gzip body", RemoteErrorCode.BAD_RESPONSE)
    return raw


def _retry_after(value: str | None) -> float | None:
    """The delay a 429/503 asks for, in seconds (delta-seconds only), at most MAX_RETRY_AFTER."""
    value = (value or "").strip()
    return min(float(value), MAX_RETRY_AFTER) if value.isascii() and value.isdigit() else None


def _parsed_rows(prefix: int, body: bytes, size: int) -> tuple[bytes, bytes]:
    """A range body as sorted digest tails (the prefix's fifth hex digit + each suffix) and uint32 counts.

    The range client's strict parser decides what a valid body is. Most bodies take a fast path first: the
    compiled line parser of the corpus readers (which releases the GIL, so worker threads parse on every
    core), given each line with the fifth hex digit in front so that it reads whole tails. It accepts a subset
    of what the strict parser accepts (exactly the suffix's hex digits, ':' and 1..10 decimal digits per
    line), and the fast path answers only when every line passed and no suffix repeats; anything else
    -- a bad line, a huge count, a duplicate, a stray line break -- goes to the strict parser, which raises
    naming the line or gives the same rows. tests/test_mirror.py checks the two agree on arbitrary bodies.
    """
    fast = _fast_rows(prefix, body, size)
    if fast is not None:
        return fast
    try:
        counts = parse_range_body(body, 2 * size - 5)
    except RemoteError as exc:
        raise _Failure(str(exc), RemoteErrorCode.BAD_RESPONSE) from None
    return _rows_of(prefix, counts, size)


def _fast_rows(prefix: int, body: bytes, size: int) -> tuple[bytes, bytes] | None:
    """The rows of a body every line of which is well formed, or None (then the strict parser decides)."""
    if not body:
        return b"", b""
    if body.endswith(b"\r\n"):
        body = body[:-2]
    elif body.endswith(b"\n"):
        body = body[:-1]
    if not body or body.endswith((b"\r", b"\n")):  # a blank line, or a lone CR the kernel would drop
        return None
    fifth = b"%X" % (prefix & 0xF)
    lines = fifth + body.replace(b"\n", b"\n" + fifth)
    room = lines.count(b"\n") + 1
    width = size - SKIP
    tails = np.empty(room * width, dtype=np.uint8)
    counts = np.empty(room, dtype=np.uint64)
    bad = np.empty(room, dtype=np.int64)
    seen, good, nbad, overflow = _native.kernels.parse_lines(lines, 1, 2 * size - 4, tails, counts, bad)
    if nbad or overflow >= 0 or good != seen or seen != room:
        return None
    keys = tails[: good * width].view(f"S{width}")
    values = counts[:good]
    real = values > 0  # padding lines
    if not real.all():
        keys, values = keys[real], values[real]
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    if len(keys) > 1 and bool((keys[1:] == keys[:-1]).any()):
        return None  # a repeated suffix: the strict parser's rule (the largest count) applies
    return keys.tobytes(), values[order].astype("<u4").tobytes()


def _rows_of(prefix: int, counts: dict[str, int], size: int) -> tuple[bytes, bytes]:
    """The parsed range as sorted digest tails (the prefix's fifth hex digit + the suffix) and uint32 counts."""
    if not counts:
        return b"", b""
    fifth = f"{prefix & 0xF:X}"
    keys = np.frombuffer(bytes.fromhex(fifth + fifth.join(counts)), dtype=f"S{size - SKIP}")
    values = np.fromiter(counts.values(), dtype=np.uint64, count=len(counts))
    if int(values.max()) > MAX_COUNT:
        raise _Failure(f"a count larger than a store holds ({MAX_COUNT:,})", RemoteErrorCode.BAD_RESPONSE)
    order = np.argsort(keys, kind="stable")
    return keys[order].tobytes(), values[order].astype("<u4").tobytes()


# ----------------------------------------------------------------------------------------------------
# The mirror


def _wire_etag(value: str | None) -> bytes:
    """An ETag worth keeping: ASCII, at most 255 bytes (a longer or odd one is not kept: that range is
    fetched in full next time)."""
    if not value:
        return b""
    try:
        raw = value.strip().encode("ascii")
    except UnicodeEncodeError:
        return b""
    return raw if len(raw) <= MAX_ETAG and b"\r" not in raw and b"\n" not in raw else b""


class _Fetcher:
    """The worker threads: each takes the next prefix, fetches and validates it, and journals it."""

    def __init__(
        self,
        target: _Target,
        scheme: str,
        journal: Journal,
        etags: ETags | None,
        *,
        workers: int,
        retries: int,
        timeout: float,
        deadline: float,
        user_agent: str,
        context: ssl.SSLContext | None,
        size: int,
    ) -> None:
        self.target, self.scheme, self.journal, self.etags = target, scheme, journal, etags
        self.workers, self.retries, self.timeout, self.context, self.size = workers, retries, timeout, context, size
        self.deadline = deadline
        self.connections: list[_Connection] = []
        self.headers = {"User-Agent": user_agent, "Accept-Encoding": "gzip", "Accept": "text/plain"}
        self.query = mode_query(scheme)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.not_before = 0.0  # a 429/503's Retry-After pauses every worker
        self.requests = self.retries_done = self.bytes = self.fetched = self.not_modified = 0
        self.etags_sent = self.without_etag = 0
        self._todo: Iterator[int] = iter(())

    def run(self, todo: list[int], progress: Callable[[], None]) -> None:
        self._todo = iter(todo)
        threads = [
            threading.Thread(target=self._work, name=f"credcheck-mirror-{i}", daemon=True)
            for i in range(min(self.workers, max(len(todo), 1)))
        ]
        for thread in threads:
            thread.start()
        last_sync = time.monotonic()
        try:
            while alive := [thread for thread in threads if thread.is_alive()]:
                alive[0].join(0.25)
                self._watch()
                progress()
                if time.monotonic() - last_sync >= _SYNC_SECONDS:
                    self.journal.sync()
                    last_sync = time.monotonic()
        except BaseException:
            # Ctrl-C: stop handing out prefixes; a worker stuck in a read is a daemon and cannot write after
            # the journal is closed, so waiting for it briefly is enough
            self.stop.set()
            deadline = time.monotonic() + 2.0
            for thread in threads:
                thread.join(max(deadline - time.monotonic(), 0.0))
            raise
        finally:
            self.journal.sync()
        if self.error is not None:
            raise self.error.with_traceback(None)  # the worker's frames hold response bodies: not for reports

    def _watch(self) -> None:
        """Shut the socket of any attempt older than the deadline (a read timeout alone cannot stop a drip)."""
        now = time.monotonic()
        with self.lock:
            connections = list(self.connections)
        for conn in connections:
            started = conn.started
            if started is not None and now - started > self.deadline:
                conn.expire()

    def _next(self) -> int | None:
        with self.lock:
            return next(self._todo, None)

    def _work(self) -> None:
        conn = _Connection(self.target, self.timeout, self.context)
        with self.lock:
            self.connections.append(conn)
        try:
            while not self.stop.is_set():
                prefix = self._next()
                if prefix is None:
                    return
                item = self._fetch(conn, prefix)
                if item is None:
                    return  # stopping
                self.journal.append(item)
                with self.lock:
                    if item.kind == BODY:
                        self.fetched += 1
                    else:
                        self.not_modified += 1
        except BaseException as exc:
            with self.lock:
                if self.error is None:
                    self.error = exc
            self.stop.set()
        finally:
            conn.close()

    def _fetch(self, conn: _Connection, prefix: int) -> Range | None:
        name = f"{prefix:05X}"
        path = f"{self.target.path}/range/{name}{self.query}"
        headers = self.headers
        etag = self.etags.get(prefix) if self.etags is not None else b""
        if etag:
            headers = {**headers, "If-None-Match": etag.decode("ascii")}
            with self.lock:
                self.etags_sent += 1
        attempt = 0
        while True:
            attempt += 1
            self._pause()
            if self.stop.is_set():
                return None
            try:
                with self.lock:
                    self.requests += 1
                status, answer, body = conn.get(path, headers)
                with self.lock:
                    self.bytes += len(body)
                return self._settle(prefix, status, answer, body, etag)
            except _Failure as failure:
                if not failure.retry or attempt > self.retries:
                    tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
                    raise RemoteError(f"range {name}: {failure.reason} (after {tries})", failure.code) from None
                wait = failure.wait
                if wait is None:
                    wait = min(BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF) * (0.5 + random.random() / 2)
                else:
                    with self.lock:
                        self.not_before = max(self.not_before, time.monotonic() + wait)
                with self.lock:
                    self.retries_done += 1
                self.stop.wait(wait)

    def _pause(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                left = self.not_before - time.monotonic()
            if left <= 0:
                return
            self.stop.wait(min(left, 1.0))

    def _settle(self, prefix: int, status: int, answer: http.client.HTTPMessage, body: bytes, sent: bytes) -> Range:
        if status == 200:
            tails, values = _parsed_rows(prefix, _decoded(body, answer.get("Content-Encoding")), self.size)
            etag = _wire_etag(answer.get("ETag"))
            if not etag:
                with self.lock:
                    self.without_etag += 1
            return Range(prefix, BODY, etag, tails, values, len(values) // 4)
        if status == 304 and sent:
            return Range(prefix, NOT_MODIFIED, _wire_etag(answer.get("ETag")) or sent, b"", b"", 0)
        if status == 429 or status == 503:
            raise _Failure(f"HTTP {status}", RemoteErrorCode.HTTP_STATUS, wait=_retry_after(answer.get("Retry-After")))
        if 500 <= status <= 599:
            raise _Failure(f"HTTP {status}", RemoteErrorCode.HTTP_STATUS)
        if 300 <= status <= 399:
            reason = f"HTTP {status} redirect (not followed: give the URL it points to)"
            raise _Failure(reason, RemoteErrorCode.HTTP_STATUS, retry=False)
        raise _Failure(f"HTTP {status}", RemoteErrorCode.HTTP_STATUS, retry=False)


def _prefix_list(prefixes: Collection[int] | None) -> list[int]:
    chosen = list(range(PREFIXES)) if prefixes is None else sorted(set(prefixes))
    if not chosen:
        raise ValueError("no prefixes to mirror")
    if not 0 <= chosen[0] <= chosen[-1] < PREFIXES:
        raise ValueError(f"prefixes must lie in 0..{PREFIXES - 1} (00000..FFFFF)")
    return chosen


@contextlib.contextmanager
def _locked(store: str) -> Iterator[None]:
    """Hold ``STORE.lock`` (an advisory flock, released when the process ends however it ends)."""
    path = store + LOCK_SUFFIX
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot create the lock file {path}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(f"another mirror is writing {store} (it holds {path})") from None
        yield
    finally:
        os.close(fd)


def mirror(
    url: str = DEFAULT_BASE_URL,
    *,
    store: str | os.PathLike[str],
    filter: str | os.PathLike[str] | None = None,
    fp_rate: float = 1e-6,
    scheme: str = "sha1",
    workers: int = DEFAULT_WORKERS,
    prefixes: Collection[int] | None = None,
    resume: bool = False,
    update: bool = False,
    retries: int = DEFAULT_RETRIES,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float = DEFAULT_DEADLINE,
    user_agent: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    progress: MirrorProgress | None = None,
) -> MirrorReport:
    """Mirror the range API at ``url`` into the store at ``store`` (and a filter at ``filter``); return a report.

    ``prefixes`` (20-bit numbers, e.g. ``range(0x00000, 0x01000)``) mirrors only those ranges; with ``update``
    the store's other ranges are kept, otherwise the new store holds only these. ``workers`` connections fetch
    concurrently; ``timeout`` bounds each connect and read, ``deadline`` a whole attempt. Each range is tried
    ``retries`` more times after a failure, with exponential backoff, or after the ``Retry-After`` a 429/503
    asks for (every worker then waits). ``resume`` continues from the
    journal of an interrupted mirror of the same URL, scheme, prefixes and mode; without it an existing journal
    is an error, so an interrupted mirror's work is never thrown away silently.

    Nothing replaces the previous store, its ETags or the filter until every range has been fetched and
    validated: a failure raises :class:`RemoteError` naming the prefix and leaves them as they were (and the
    journal in place for ``resume``). The filter is sized for the hashes fetched, at ``fp_rate``.
    """
    started = time.perf_counter()
    size = check_scheme(scheme)
    _args.int_in_range("workers", workers, 1, MAX_WORKERS)
    _args.non_negative_int("retries", retries)
    timeout = _args.positive_seconds("timeout", timeout)
    deadline = _args.positive_seconds("deadline", deadline)
    fp_rate = _args.probability("fp_rate", fp_rate)
    target = _Target.parse(url)
    chosen = _prefix_list(prefixes)
    store_path = os.path.abspath(os.fspath(store))
    filter_path = None if filter is None else os.path.abspath(os.fspath(filter))
    if filter_path == store_path:
        raise ValueError("the filter and the store must be different files")
    os.makedirs(os.path.dirname(store_path), exist_ok=True)
    report = MirrorReport(url=target.shown, scheme=scheme, ranges=len(chosen), updated=update)
    report.store_path, report.filter_path = store_path, filter_path

    with _locked(store_path):
        base = RangeStore(store_path) if update and os.path.exists(store_path) else None
        try:
            if base is not None and base.scheme != scheme:
                raise InputError(f"{store_path} holds {base.scheme} hashes, not {scheme}")
            identity = store_identity(store_path) if base is not None else 0
            etags: ETags | None = None
            if update and base is None:
                report.notes.append("no store to update yet: every range fetched in full")
            elif base is not None:
                etags, why = ETags.load(store_path + ETAGS_SUFFIX, scheme, identity, target.shown)
                if etags is None:
                    report.notes.append(f"{why}: every range fetched in full")
                elif missing := int(np.count_nonzero(etags.lengths[np.asarray(chosen)] == 0)):
                    report.notes.append(f"{missing:,} ranges have no ETag kept with the store: fetched in full")
            header = {
                "url": target.shown,
                "scheme": scheme,
                "prefixes": xxhash.xxh3_64_hexdigest(np.asarray(chosen, dtype="<u4").tobytes()),
                "update": bool(update),
                "base": identity,
            }
            journal = Journal(store_path + JOURNAL_SUFFIX, header)
            try:
                if os.path.exists(journal.path):
                    if not resume:
                        raise InputError(
                            f"{journal.path} holds an interrupted mirror: continue it with --resume "
                            f"(resume=True), or delete it to start over"
                        )
                    journal.reopen(size)
                else:
                    journal.create()
                report.resumed = journal.records
                todo = [p for p in chosen if journal.offsets[p] < 0]
                fetcher = _Fetcher(
                    target, scheme, journal, etags,
                    workers=workers, retries=retries, timeout=float(timeout), deadline=float(deadline),
                    user_agent=user_agent or f"credcheck/{__version__} (mirror)",
                    context=ssl_context if ssl_context is not None else ssl.create_default_context(),
                    size=size,
                )  # fmt: skip

                def tick() -> None:
                    if progress is not None:
                        progress(journal.records, len(chosen), fetcher.bytes)

                fetcher.run(todo, tick)
                tick()
                report.fetched, report.not_modified = fetcher.fetched, fetcher.not_modified
                report.requests, report.retries, report.bytes_received = (
                    fetcher.requests, fetcher.retries_done, fetcher.bytes
                )  # fmt: skip
                report.etags_sent, report.without_etag = fetcher.etags_sent, fetcher.without_etag
                if report.without_etag:
                    report.notes.append(
                        f"{report.without_etag:,} ranges came without an ETag: the next --update fetches them in full"
                    )
                _write(report, journal, base, etags, chosen, store_path, filter_path, fp_rate, size)
            finally:
                journal.close()
        finally:
            if base is not None:
                base.close()
        _atomic.remove_quietly(journal.path)
    report.seconds = time.perf_counter() - started
    return report


# ----------------------------------------------------------------------------------------------------
# Writing the store, its ETags and the filter


def _compare(old_tails: bytes, old_counts: bytes, new_tails: bytes, new_counts: bytes, width: int) -> tuple[int, ...]:
    """(added, removed, counts changed) between two sorted versions of one range."""
    old_keys = np.frombuffer(old_tails, dtype=f"S{width}")
    new_keys = np.frombuffer(new_tails, dtype=f"S{width}")
    common, old_at, new_at = np.intersect1d(old_keys, new_keys, assume_unique=True, return_indices=True)
    changed = np.count_nonzero(
        np.frombuffer(old_counts, dtype="<u4")[old_at] != np.frombuffer(new_counts, dtype="<u4")[new_at]
    )
    return len(new_keys) - len(common), len(old_keys) - len(common), int(changed)


def _write(
    report: MirrorReport,
    journal: Journal,
    base: RangeStore | None,
    old_etags: ETags | None,
    chosen: list[int],
    store_path: str,
    filter_path: str | None,
    fp_rate: float,
    size: int,
) -> None:
    """Write the store in prefix order from the journal (and the old store), then its ETags and the filter."""
    width = size - SKIP
    fetched = journal.offsets >= 0
    from_journal = fetched & (journal.kinds == BODY)
    old_rows = np.diff(base.index.astype(np.int64)) if base is not None else np.zeros(PREFIXES, dtype=np.int64)
    prefix_counts = np.where(from_journal, journal.rows, old_rows)
    report.hashes_before = base.rows if base is not None else 0
    report.hashes = int(prefix_counts.sum())
    etags: list[bytes] = [b""] * PREFIXES  # ranges carried over from the store keep their ETags
    if old_etags is not None:
        for p in np.flatnonzero(old_etags.lengths).tolist():
            etags[p] = old_etags.get(p)

    # first what changed (and the ETags), so that an update that changed nothing leaves the store alone
    for prefix in np.flatnonzero(fetched).tolist():
        if not from_journal[prefix]:  # 304: the store's rows stand, under the (possibly refreshed) ETag
            etags[prefix] = journal.read(prefix, size, with_rows=False)[0]
            continue
        if base is None:
            report.ranges_changed += bool(journal.rows[prefix])
            report.ranges_same += not journal.rows[prefix]
            report.hashes_added += int(journal.rows[prefix])
            continue
        etags[prefix], tails, counts = journal.read(prefix, size)
        old_t, old_c = base.rows_of(prefix)
        if old_t.tobytes() == tails and old_c.tobytes() == counts:
            report.ranges_same += 1
        else:
            report.ranges_changed += 1
            added, removed, changed = _compare(old_t.tobytes(), old_c.tobytes(), tails, counts, width)
            report.hashes_added += added
            report.hashes_removed += removed
            report.counts_changed += changed
    keep = report.store_kept = base is not None and not report.ranges_changed

    writer = None if keep else StoreWriter(store_path, scheme=report.scheme, prefix_counts=prefix_counts)
    bloom = BloomFilter.create(max(1, report.hashes), fp_rate, scheme=report.scheme) if filter_path else None
    filter_tmp: str | None = None
    try:
        pending_tails: list[npt.NDArray[np.uint8]] = []
        pending_counts: list[npt.NDArray[np.uint32]] = []
        pending_prefixes: list[npt.NDArray[np.int64]] = []
        pending = 0

        def flush() -> None:
            nonlocal pending
            if not pending:
                return
            digests = np.empty((pending, size), dtype=np.uint8)
            p = np.concatenate(pending_prefixes)
            digests[:, 0] = p >> 12
            digests[:, 1] = (p >> 4) & 0xFF
            digests[:, SKIP:] = np.concatenate(pending_tails)
            if writer is not None:
                writer.add(digests, np.concatenate(pending_counts).astype(np.uint64))
            if bloom is not None:
                bloom.update(digests)
            pending_tails.clear()
            pending_counts.clear()
            pending_prefixes.clear()
            pending = 0

        def take(prefix: int, tails: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint32]) -> None:
            nonlocal pending
            if not len(counts):
                return
            pending_tails.append(tails.reshape(-1, width))
            pending_counts.append(counts)
            pending_prefixes.append(np.full(len(counts), prefix, dtype=np.int64))
            pending += len(counts)
            if pending >= _WRITE_ROWS:
                flush()

        if writer is not None or bloom is not None:
            for prefix in np.flatnonzero(from_journal | (old_rows > 0)).tolist():  # the other prefixes are empty
                if from_journal[prefix]:
                    etag, tails, counts = journal.read(prefix, size)
                    etags[prefix] = etag
                    take(prefix, np.frombuffer(tails, dtype=np.uint8), np.frombuffer(counts, dtype="<u4"))
                elif base is not None:
                    old_t, old_c = base.rows_of(prefix)
                    take(prefix, old_t, old_c)
            flush()
        if writer is not None:
            writer.finish()
        if bloom is not None and filter_path is not None:
            filter_tmp = bloom.save_beside(filter_path)
    except BaseException:
        if writer is not None:
            writer.abort()
        if filter_tmp is not None:
            _atomic.remove_quietly(filter_tmp)
        raise
    try:
        with _atomic.uninterrupted():  # a stop in between would leave the store new and its ETags or filter old
            if writer is not None:
                writer.commit()
            etags_tmp = _atomic.write_beside(
                store_path + ETAGS_SUFFIX, ETags.encode(report.scheme, store_identity(store_path), report.url, etags)
            )
            _atomic.replace(etags_tmp, store_path + ETAGS_SUFFIX)
            if filter_tmp is not None and filter_path is not None:
                _atomic.replace(filter_tmp, filter_path)
    except BaseException:
        if filter_tmp is not None:
            _atomic.remove_quietly(filter_tmp)
        raise
