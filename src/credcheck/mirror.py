"""A local copy of any HIBP-compatible range API: every 5-hex range fetched, validated, and written as a store.

:func:`mirror` asks ``GET {url}/range/{PREFIX}`` (``?mode=ntlm`` for NTLM) for each of the 16^5 prefixes over a
few keep-alive connections, appends each range to a journal beside the store as it arrives, and at the end
writes the store (and a filter sized from what was fetched) atomically, in prefix order. It works the same
against the public Pwned Passwords API, ``credcheck serve``, or a static ``credcheck export`` behind any web
server.

- Every range is one run of the range protocol's flow (``credcheck._http``: the request, framing and body
  checks, gzip, limits, retries, backoff, ``Retry-After``, deadlines, redirects), driven over ``http.client``
  by ``credcheck._keepalive``, one connection per worker thread; what is left here is turning a validated
  body into store rows, and the mirror's own files.
- A killed mirror continues from its journal (``resume=True``) and asks for no range the journal holds.
- ``update=True`` sends each range's stored ETag (kept in a sidecar beside the store) as ``If-None-Match``, so
  an unchanged range costs a 304; the report says what changed. A server without ETags still works: every
  range is then fetched in full, and the report says so.
- An existing store is replaced or updated only if a mirror wrote it as it is (its ETags file names its
  content): a breach merged into it since is never dropped silently (``replace=True`` allows it).
- A range that stays truncated, malformed or not a range at all after the retries fails the whole mirror
  with a :class:`~credcheck.errors.RemoteError` naming its prefix; the previous store is left as it was.

The files beside ``STORE``: ``STORE.mirror-journal`` (while a mirror runs or after one was interrupted) and
``STORE.etags`` (the ETags of the ranges in the store), which ``_mirrorfiles`` reads and writes (layouts in
docs/MIRROR.md); ``.STORE.lock``, the lock every writer of the store takes (``credcheck build`` too).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import xxhash

from . import _args, _atomic, _native
from ._artifact import source_digest
from ._http.body import parse_range_body
from ._http.events import Wait
from ._http.options import ClientOptions, Timeout
from ._http.ranges import DEFAULT_BASE_URL, RangeProtocol
from ._keepalive import KeepAliveDriver
from ._mirrorfiles import BODY, MAX_ETAG, NOT_MODIFIED, ETags, Journal, Range, store_identity
from ._sinks import LAYOUTS
from .bloom import BloomFilter
from .errors import InputError, RemoteError, RemoteErrorCode, UsageError
from .fuse import FuseWriter, fingerprint_width, partial_path
from .hashing import check_scheme
from .store import MAX_COUNT, PREFIXES, SKIP, RangeStore, StoreWriter

__all__ = ["MIRROR_OPTIONS", "MirrorProgress", "MirrorReport", "mirror"]

DEFAULT_WORKERS: Final = 8  # polite towards a public API, and past the point of diminishing returns locally
MAX_WORKERS: Final = 256

#: The mirror's HTTP settings (``dataclasses.replace(MIRROR_OPTIONS, retries=2)`` to change one): patient
#: where a client checking a password at log-in is quick, as a million requests meet every kind of hiccup.
MIRROR_OPTIONS: Final = ClientOptions(
    timeout=Timeout(30.0),  # each connect and each read
    deadline=None,  # a whole range may take its retries and the server's Retry-After waits ...
    attempt_deadline=120.0,  # ... but a server that drips bytes cannot hold a worker longer than this
    retries=5,
    backoff_factor=0.5,  # seconds before the first retry, doubled each time (with jitter) ...
    max_backoff=30.0,  # ... up to this
    max_retry_after=600.0,  # a longer Retry-After is cut to this
    jitter=True,
    padding=False,  # every range is asked for: its size tells nothing
)

JOURNAL_SUFFIX: Final = ".mirror-journal"
ETAGS_SUFFIX: Final = ".etags"

_SYNC_SECONDS: Final = 1.0  # the journal is fsynced at least this often while records arrive
_WRITE_ROWS: Final = 1 << 18  # rows handed to the store writer at once
_KEPT_ETAG: Final = re.compile(rf"[\x20-\x7e]{{1,{MAX_ETAG}}}", re.ASCII)

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


# ----------------------------------------------------------------------------------------------------
# A range's body as rows


def _parsed_rows(prefix: int, body: bytes, size: int) -> tuple[bytes, bytes]:
    """A validated range body as sorted digest tails (the prefix's fifth hex digit + each suffix) and uint32 counts.

    The body is whole already (the protocol proved its framing and its gzip stream); the range client's strict
    parser decides what a valid body is. Most bodies take a fast path first: the compiled line parser of the
    corpus readers (which releases the GIL, so worker threads parse on every core), given each line with the
    fifth hex digit in front so that it reads whole tails. It accepts a subset of what the strict parser
    accepts (exactly the suffix's hex digits, ':' and 1..10 decimal digits per line), and the fast path answers
    only when every line passed and no suffix repeats; anything else -- a bad line, a huge count, a duplicate,
    a stray line break -- goes to the strict parser, which raises :class:`RemoteError` naming the line or gives
    the same rows. tests/test_mirror.py checks the two agree on arbitrary bodies.
    """
    fast = _fast_rows(prefix, body, size)
    if fast is not None:
        return fast
    return _rows_of(prefix, parse_range_body(body, 2 * size - 5), size)


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
        raise RemoteError(f"a count larger than a store holds ({MAX_COUNT:,})", RemoteErrorCode.BAD_RESPONSE)
    order = np.argsort(keys, kind="stable")
    return keys[order].tobytes(), values[order].astype("<u4").tobytes()


# ----------------------------------------------------------------------------------------------------
# The mirror


def _wire_etag(value: str | None) -> bytes:
    """An ETag worth keeping: printable ASCII, at most 255 bytes (any other is not kept: that range is fetched
    in full next time)."""
    value = (value or "").strip()
    return value.encode("ascii") if _KEPT_ETAG.fullmatch(value) else b""


class _Stopped(Exception):
    """The mirror is stopping (another worker failed, or Ctrl-C): leave the range unfetched."""


class _Fetcher:
    """The worker threads: each takes the next prefix, runs its flow over its own connection, and journals it.

    A wait the server asked for (``Retry-After``) pauses every worker, not just the one that was told.
    """

    def __init__(
        self,
        url: str,
        protocol: RangeProtocol,
        scheme: str,
        journal: Journal,
        etags: ETags | None,
        *,
        workers: int,
        size: int,
    ) -> None:
        self.url, self.protocol, self.scheme, self.journal, self.etags = url, protocol, scheme, journal, etags
        self.workers, self.size = workers, size
        self.drivers: list[KeepAliveDriver] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.not_before = 0.0  # a Retry-After pauses every worker until then
        self.retries_done = self.fetched = self.not_modified = self.etags_sent = self.without_etag = 0
        self._todo: Iterator[int] = iter(())

    @property
    def bytes(self) -> int:
        return sum(driver.received for driver in self.drivers)

    @property
    def requests(self) -> int:
        return sum(driver.requests for driver in self.drivers)

    def run(self, todo: list[int], progress: Callable[[], None]) -> None:
        self._todo = iter(todo)
        count = min(self.workers, max(len(todo), 1))
        self.drivers = [KeepAliveDriver(self.url, self.protocol.options) for _ in range(count)]
        threads = [
            threading.Thread(target=self._work, args=(driver,), name=f"credcheck-mirror-{i}", daemon=True)
            for i, driver in enumerate(self.drivers)
        ]
        for thread in threads:
            thread.start()
        last_sync = time.monotonic()
        try:
            while alive := [thread for thread in threads if thread.is_alive()]:
                alive[0].join(0.25)
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

    def _next(self) -> int | None:
        with self.lock:
            return next(self._todo, None)

    def _work(self, driver: KeepAliveDriver) -> None:
        try:
            while not self.stop.is_set():
                prefix = self._next()
                if prefix is None:
                    return
                item = self._fetch(driver, prefix)
                self.journal.append(item)
                with self.lock:
                    if item.kind == BODY:
                        self.fetched += 1
                    else:
                        self.not_modified += 1
        except _Stopped:
            return
        except BaseException as exc:
            with self.lock:
                if self.error is None:
                    self.error = exc
            self.stop.set()
        finally:
            driver.close()

    def _fetch(self, driver: KeepAliveDriver, prefix: int) -> Range:
        sent = self.etags.get(prefix) if self.etags is not None else b""
        if sent:
            with self.lock:
                self.etags_sent += 1
        self._pause(0.0)
        flow = self.protocol.fetch(
            f"{prefix:05X}",
            self.scheme,
            driver.clock,
            functools.partial(_parsed_rows, prefix, size=self.size),
            etag=sent.decode("ascii") if sent else None,
        )
        fetched = driver.drive(flow, self._wait)
        etag = _wire_etag(fetched.etag)
        if fetched.value is None:
            return Range(prefix, NOT_MODIFIED, etag or sent, b"", b"", 0)
        if not etag:
            with self.lock:
                self.without_etag += 1
        tails, counts = fetched.value
        return Range(prefix, BODY, etag, tails, counts, len(counts) // 4)

    def _wait(self, event: Wait) -> None:
        """A flow's wait before a retry; one the server asked for holds every worker back as long."""
        with self.lock:
            self.retries_done += 1
            if event.asked:
                self.not_before = max(self.not_before, time.monotonic() + event.seconds)
        self._pause(event.seconds)

    def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` and until every worker's pause is over; raise _Stopped if the mirror stops meanwhile."""
        until = time.monotonic() + seconds
        while not self.stop.is_set():
            with self.lock:
                left = max(until, self.not_before) - time.monotonic()
            if left <= 0:
                return
            self.stop.wait(min(left, 1.0))
        raise _Stopped


def _prefix_list(prefixes: Collection[int] | None) -> list[int]:
    chosen = list(range(PREFIXES)) if prefixes is None else sorted(set(prefixes))
    if not chosen:
        raise ValueError("no prefixes to mirror")
    if not 0 <= chosen[0] <= chosen[-1] < PREFIXES:
        raise ValueError(f"prefixes must lie in 0..{PREFIXES - 1} (00000..FFFFF)")
    return chosen


def _not_written_by_a_mirror(path: str, why: str) -> UsageError:
    return UsageError(
        f"{path} is not as a mirror wrote it ({why}): what was merged into it from elsewhere (credcheck build "
        f"--update) would be lost. Mirror into a store (and filter) of its own and merge that into this one with "
        f"credcheck build --update, or pass --replace (replace=True) to let the mirror replace it"
    )


def mirror(
    url: str = DEFAULT_BASE_URL,
    *,
    store: str | os.PathLike[str],
    filter: str | os.PathLike[str] | None = None,
    fp_rate: float = 1e-6,
    layout: str = "bloom",
    scheme: str = "sha1",
    workers: int = DEFAULT_WORKERS,
    prefixes: Collection[int] | None = None,
    resume: bool = False,
    update: bool = False,
    replace: bool = False,
    options: ClientOptions | None = None,
    progress: MirrorProgress | None = None,
) -> MirrorReport:
    """Mirror the range API at ``url`` into the store at ``store`` (and a filter at ``filter``); return a report.

    ``prefixes`` (20-bit numbers, e.g. ``range(0x00000, 0x01000)``) mirrors only those ranges; with ``update``
    the store's other ranges are kept, otherwise the new store holds only these. ``workers`` connections fetch
    concurrently. ``options`` are the HTTP settings (None: :data:`MIRROR_OPTIONS`, each connect and read
    bounded by 30 s, each attempt by 120 s; a range tried 5 more times after a failure that may pass — a dropped
    connection, a timeout, a 5xx or 429 — with jittered exponential backoff, or after the ``Retry-After`` a 429
    or 5xx asks for, every worker then waiting; ``tls`` the context that verifies the server).
    ``resume`` continues from the journal of an interrupted mirror of the same URL, scheme, prefixes, mode and
    store; without it an existing journal is an error, so an interrupted mirror's work is never thrown away
    silently.

    An existing store is replaced (``update``: refreshed) only if a mirror wrote it as it is now -- its ETags
    file names its content -- so that a breach merged into it since (``credcheck build --update``) is never
    dropped; otherwise :class:`UsageError` says what to do, and ``replace=True`` lets the mirror replace it.

    Nothing replaces the previous store, its ETags or the filter until every range has been fetched and
    validated: a failure raises :class:`RemoteError` naming the prefix and leaves them as they were (and the
    journal in place for ``resume``). The filter is sized for the hashes fetched, at ``fp_rate``; ``layout`` is
    'bloom' or 'fuse' (a sharded binary fuse filter, as ``credcheck build --layout fuse`` writes).
    """
    started = time.perf_counter()
    size = check_scheme(scheme)
    _args.int_in_range("workers", workers, 1, MAX_WORKERS)
    fp_rate = _args.probability("fp_rate", fp_rate)
    if options is None:
        options = MIRROR_OPTIONS
    if not isinstance(options, ClientOptions):
        raise TypeError(f"options must be a ClientOptions, not {type(options).__name__}")
    # fetch() keeps no cache; the lock is for the one get_range() would keep, as the workers are threads.
    protocol = RangeProtocol(url, options, lock=threading.Lock(), agent="mirror")
    KeepAliveDriver(url, options)  # refuses what this client cannot send to, before anything is written
    _args.choice("layout", layout, LAYOUTS)
    if layout == "fuse":
        fingerprint_width(fp_rate)  # a rate the layout cannot give, refused before anything is fetched
    shown = protocol.base_url
    chosen = _prefix_list(prefixes)
    store_path = os.path.abspath(os.fspath(store))
    filter_path = None if filter is None else os.path.abspath(os.fspath(filter))
    if filter_path is not None and _atomic.same_file(filter_path, store_path):
        raise ValueError("the filter and the store must be different files")
    os.makedirs(os.path.dirname(store_path), exist_ok=True)
    report = MirrorReport(url=shown, scheme=scheme, ranges=len(chosen), updated=update)
    report.store_path, report.filter_path = store_path, filter_path

    # the lock every writer of these files takes (credcheck build too), held until the last rename
    with _atomic.lock_beside([store_path] if filter_path is None else [store_path, filter_path]):
        exists = os.path.exists(store_path)
        identity = store_identity(store_path) if exists else 0
        etags: ETags | None = None
        loaded = ETags.load(store_path + ETAGS_SUFFIX, scheme, identity, shown) if exists else None
        # a filter is replaced whole too: only one the mirror wrote with this store, as it is now
        if (
            filter_path is not None
            and os.path.exists(filter_path)
            and (loaded is None or not loaded.bound or loaded.filter != store_identity(filter_path))
        ):
            why = "it was not written with the store by a mirror, or was changed since"
            if not replace:
                raise _not_written_by_a_mirror(filter_path, why)
            report.notes.append(f"replaced a filter no mirror wrote as it was ({why})")
        if loaded is not None:
            if not loaded.bound:
                if not replace:
                    raise _not_written_by_a_mirror(store_path, loaded.why)
                report.notes.append(f"replaced a store no mirror wrote as it was ({loaded.why})")
            elif update and loaded.etags is None:
                report.notes.append(f"{loaded.why}: every range fetched in full")
            if update:
                etags = loaded.etags
                if etags is not None and (missing := int(np.count_nonzero(etags.lengths[np.asarray(chosen)] == 0))):
                    report.notes.append(f"{missing:,} ranges have no ETag kept with the store: fetched in full")
        elif update:
            report.notes.append("no store to update yet: every range fetched in full")
        base = RangeStore(store_path) if update and exists else None
        try:
            if base is not None and base.scheme != scheme:
                raise InputError(f"{store_path} holds {base.scheme} hashes, not {scheme}")
            header = {
                "url": shown,
                "scheme": scheme,
                "prefixes": xxhash.xxh3_64_hexdigest(np.asarray(chosen, dtype="<u4").tobytes()),
                "update": bool(update),
                "base": identity,  # the store as it was when the mirror started (0: none)
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
                fetcher = _Fetcher(shown, protocol, scheme, journal, etags, workers=workers, size=size)

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
                _write(report, journal, base, etags, chosen, fp_rate, size, layout)
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
    fp_rate: float,
    size: int,
    layout: str = "bloom",
) -> None:
    """Write the store in prefix order from the journal (and the old store), then its ETags and the filter
    (at the report's paths)."""
    store_path, filter_path = report.store_path, report.filter_path
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
    bloom: BloomFilter | FuseWriter | None = None
    filter_tmp: str | None = None
    try:  # the filter is made in the try that drops the store's temporary file if it cannot be
        if filter_path is not None and layout == "fuse":  # fed in prefix order: each shard written as it completes
            bloom = FuseWriter(filter_path, items=report.hashes, scheme=report.scheme, fp_rate=fp_rate)
        elif filter_path is not None:
            bloom = BloomFilter.create(max(1, report.hashes), fp_rate, scheme=report.scheme)
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
            if isinstance(bloom, FuseWriter):
                bloom.add(digests)
            elif bloom is not None:
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
        if isinstance(bloom, FuseWriter):
            bloom.finish()
            filter_tmp = partial_path(bloom.path)
        elif bloom is not None and filter_path is not None:
            filter_tmp = bloom.save_beside(filter_path)
    except BaseException:
        if writer is not None:
            writer.abort()
        if isinstance(bloom, FuseWriter):
            bloom.abort()
            filter_tmp = partial_path(bloom.path)  # the mirror resumes from its journal, not from shards
        if filter_tmp is not None:
            _atomic.remove_quietly(filter_tmp)
        raise
    # the store, its ETags (which name the new store and filter) and the filter: renamed all together, or none
    with _atomic.Stage() as stage:
        if writer is not None:
            stage.add(writer)
        if filter_tmp is not None and filter_path is not None:
            stage.add(_atomic.StagedFile(filter_tmp, filter_path))
        made_store = source_digest(writer.header) if writer is not None else store_identity(store_path)
        made_filter = store_identity(filter_tmp) if filter_tmp is not None else 0
        etags_tmp = _atomic.write_beside(
            store_path + ETAGS_SUFFIX, ETags.encode(report.scheme, made_store, report.url, etags, made_filter)
        )
        stage.add(_atomic.StagedFile(etags_tmp, store_path + ETAGS_SUFFIX))
        stage.commit()
