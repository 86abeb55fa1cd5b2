"""The bodies side file (``STORE.bodies``): every range of a store rendered and gzip-compressed once, mapped.

At HIBP's density a range is about 1,430 lines (60 KB): rendering it from the store and compressing it costs
far more than sending it, and a per-process LRU of 64 MiB holds only a few hundred of them. So every body, in
both encodings, is written once into a file beside the store, and a request is a lookup in its index and a
copy of a slice. Padding stays per request (:meth:`._bodies.Body.gzip_padded` continues the stored deflate
stream). The layout is in docs/FORMAT.md ("Bodies side file").

The file names the store it was made from (its size and a digest of its 128-byte header, which holds the
store's section checksums) and the zlib that compressed it; it is refused when it does not match, is truncated,
fails its checksums, or belongs to someone who could rewrite it under the map (:func:`~credcheck._artifact.
owned_safely`). Naming the store is not trusting it: a file planted beside a store can name it with valid
checksums and leave a line out of a body. So every body is checked against the store's own rows before it is
served (:meth:`BodyFile.verify`: the plain body rendered again from the rows, byte for byte; the gzip member
inflated once and compared, with its sync point, CRC and length), range by range in the background; until a
range is checked, its body is rendered from the store. A file this process has just written is known good
(the same inode, untouched since: its change time cannot be set back). It is written atomically (a temporary
file beside it, fsync, rename) under a lock, so two workers never build it twice at once; a build is not
started without room on the disk for it, and one that fails is tried again later and later.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Callable
from typing import BinaryIO, Final, NoReturn

import numpy as np
import xxhash

from .. import _atomic
from .._artifact import Description, FileIdentity, Mapped, read_header, source_digest
from .._progress import Reporter
from ..errors import ArtifactError, CredcheckError
from ..hashing import SCHEMES, scheme_by_code
from ..store import PREFIXES, SKIP, RangeStore, render_rows
from ._bodies import Body

__all__ = ["BodyFile", "BodyFiles", "bodies_path", "build_bodies", "describe", "ensure_bodies"]

logger = logging.getLogger("credcheck.server")

MAGIC: Final = b"CCBODIES"
VERSION: Final = 1
HEADER_SIZE: Final = 128
RECORD: Final = np.dtype(
    [
        ("plain_at", "<u8"),
        ("gzip_at", "<u8"),
        ("plain_len", "<u4"),
        ("gzip_len", "<u4"),
        ("crc", "<u4"),
        ("deflated", "<u4"),
    ]
)
#: A record's first four fields, read per request without numpy (a structured element costs ten times more).
_SPAN: Final = struct.Struct("<QQII")
INDEX_SIZE: Final = PREFIXES * RECORD.itemsize
DATA_AT: Final = HEADER_SIZE + INDEX_SIZE
_HEADER = struct.Struct("<8sHBBIQQQQQ16s")  # 72 bytes; then reserved zeros to 120, then the header checksum
_CHECKSUM_AT: Final = HEADER_SIZE - 8
SUFFIX: Final = ".bodies"
_VERIFY_ROWS: Final = 1 << 18  # rows rendered at once when verifying (about 12 MB of text)
#: Seconds before a side file that could not be made is tried again; doubled after each failure, up to an hour.
RETRY: Final = 5.0
#: Seconds between two log lines saying how far a render is.
MAX_RETRY: Final = 3600.0


def bodies_path(store_path: str | os.PathLike[str]) -> str:
    """Where the side file of the store at ``store_path`` lives: beside it, with ``.bodies`` appended."""
    return os.fspath(store_path) + SUFFIX


def _zlib_version() -> bytes:
    return zlib.ZLIB_RUNTIME_VERSION.encode("ascii")[:16]


def _store_digest(store: RangeStore) -> int:
    return source_digest(store.header)


def _needed_bytes(store: RangeStore) -> int:
    """About what the side file of ``store`` takes on disk: every body's text (about 2 x width + 6 bytes a row,
    the counts' digits included) plus its gzip member (a little over half of it), and a header and index."""
    text = store.rows * (2 * (store.digest_size - SKIP) + 6)
    return DATA_AT + text + text * 2 // 3 + PREFIXES * 20


def build_bodies(
    store: RangeStore,
    path: str | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    announce: bool = False,
) -> str:
    """Write the side file of ``store`` (default: beside it) atomically, and return its path.

    Every body is made by :class:`._bodies.Body` exactly as a request without the side file would make it,
    so both ways give the same bytes (and the same ETags). Holds the side file's lock while writing: a
    second builder gets a :class:`StorageError` at once. ``announce`` logs when it starts, how far it is
    (every half minute) and when it ends (``credcheck.server`` events ``side_file``).
    """
    target = os.path.abspath(path or bodies_path(store.path))
    _write_bodies(store, target, progress=progress, announce=announce)
    return target


def _write_bodies(
    store: RangeStore,
    target: str,
    *,
    progress: Callable[[int, int], None] | None = None,
    announce: bool = False,
) -> FileIdentity:
    """Write the side file (see :func:`build_bodies`); the identity of the very file put in place."""
    with _atomic.lock_beside([target]):
        started = time.monotonic()
        if announce:
            logger.info(
                "rendering every range of %s into %s (once) ...",
                store.path,
                target,
                extra=_state("rendering", target, store),
            )
        tmp = _atomic.temp_path_beside(target)
        what = f"the bodies file {target}"
        with _atomic.writing(tmp, target, what):
            out = open(tmp, "r+b")  # noqa: SIM115 - kept open until the rename, closed below
        try:
            with _atomic.writing(tmp, target, what):
                _write_body_data(store, out, progress)
                # the store must still be the one read: a body file of a store changed meanwhile would lie
                store.ensure_unchanged()
            _atomic.replace(tmp, target)
            # the inode just put in place, as it is now: the same identity later means this very file, untouched
            written = FileIdentity.of(out.fileno())
        finally:
            out.close()
        if announce:
            seconds = time.monotonic() - started
            logger.info(
                "wrote %s in %.0f s", target, seconds, extra={**_state("written", target, store), "seconds": seconds}
            )
    return written


def _state(state: str, target: str, store: RangeStore) -> dict[str, object]:
    """The fields of a side-file event: its state, its path and the role of the store it is made from."""
    return {"event": "side_file", "state": state, "path": target, "store": store.scheme}


def _write_body_data(store: RangeStore, out: BinaryIO, progress: Callable[[int, int], None] | None) -> None:
    """Every body and its gzip member, back to back in prefix order, then the index and the header; fsynced."""
    fd = out.fileno()
    index = np.zeros(PREFIXES, dtype=RECORD)
    data_hash = xxhash.xxh3_64()
    at = DATA_AT
    out.seek(DATA_AT)
    empty = Body(b"")
    empty_gz = empty.gzip()
    rows = np.diff(store.index.astype(np.int64))
    filled = np.flatnonzero(rows).tolist()
    done = 0
    for prefix in [*filled, PREFIXES]:
        if prefix > done:  # a run of empty ranges: the same gzip member each
            run = prefix - done
            starts = at + len(empty_gz) * np.arange(run, dtype=np.uint64)
            block = index[done:prefix]
            block["plain_at"], block["gzip_at"], block["gzip_len"] = starts, starts, len(empty_gz)
            block["crc"], block["deflated"] = empty.crc, empty.deflated
            chunk = empty_gz * run
            out.write(chunk)
            data_hash.update(chunk)
            at += len(chunk)
        if prefix == PREFIXES:
            break
        body = Body(store.range_body(prefix))
        gz = body.gzip()
        index[prefix] = (at, at + len(body.raw), len(body.raw), len(gz), body.crc, body.deflated)
        out.write(body.raw)
        out.write(gz)
        data_hash.update(body.raw)
        data_hash.update(gz)
        at += len(body.raw) + len(gz)
        done = prefix + 1
        if progress is not None:
            progress(done, PREFIXES)
    out.flush()
    _atomic.pwrite_all(fd, memoryview(index.tobytes()), HEADER_SIZE)
    head = _HEADER.pack(
        MAGIC,
        VERSION,
        SCHEMES[store.scheme].code,
        0,
        RECORD.itemsize,
        store.identity.size,
        _store_digest(store),
        at - DATA_AT,
        xxhash.xxh3_64_intdigest(index.tobytes()),
        data_hash.intdigest(),
        _zlib_version().ljust(16, b"\0"),
    ).ljust(_CHECKSUM_AT, b"\0")
    head += struct.pack("<Q", xxhash.xxh3_64_intdigest(head))
    _atomic.pwrite_all(fd, head, 0)
    os.fsync(fd)


class BodyFile(Mapped):
    """A mapped side file of one open store: :meth:`body` of any prefix, as stored, once :meth:`verify` has
    checked it against the store's rows (``ready[prefix]``).

    Opening checks the header (the store it names, the zlib that made it), the size, the index and the layout,
    and who owns the file. ``verify=True`` (the default) then checks every body against the store before
    returning; ``verify=False`` leaves that to :meth:`verify` (the server runs it in the background and uses the
    ranges already checked). ``trusted`` is the identity of a file this process wrote itself: if the file is
    still that very file, untouched, every range is ready at once.
    """

    kind = "bodies file"
    _views = ("index",)

    def __init__(
        self, store: RangeStore, path: str | None = None, *, verify: bool = True, trusted: FileIdentity | None = None
    ) -> None:
        # the file must be this user's or the store's owner's: one planted by someone else could be cut short
        # under the map (a SIGBUS)
        fields = self._open(
            os.path.abspath(path or bodies_path(store.path)), HEADER_SIZE, _parse_header, trusted_owners=(store.owner,)
        )
        name = self.path
        try:
            if (
                fields.scheme != store.scheme
                or fields.store_size != store.identity.size
                or fields.store_digest != _store_digest(store)
            ):
                raise ArtifactError(f"{name}: the bodies file was made from another store than {store.path}")
            if fields.zlib != _zlib_version().decode("ascii"):
                raise ArtifactError(
                    f"{name}: the bodies file was compressed by zlib {fields.zlib}, "
                    f"this process runs {zlib.ZLIB_RUNTIME_VERSION}: make it again"
                )
            index_sum = fields.index_checksum
            mapped = self._map_file(DATA_AT + fields.data_size)
            self.fileno = self._file.fileno() if self._file is not None else -1
            self.index = np.frombuffer(mapped, dtype=RECORD, count=PREFIXES, offset=HEADER_SIZE)
            if xxhash.xxh3_64_intdigest(mapped[HEADER_SIZE:DATA_AT]) != index_sum:
                raise ArtifactError(f"{name}: bodies file index checksum mismatch: the file is corrupt")
            self._check_layout(store)
            #: Whether each prefix's bodies were checked against the store's rows (1) or not yet (0).
            self.ready = bytearray(PREFIXES)
            #: Whether every range is ready.
            self.complete = False
            if trusted is not None and trusted == self.identity:
                self.ready = bytearray(b"\x01") * PREFIXES  # the file this process wrote, untouched since
                self.complete = True
            elif verify:
                self.verify(store)
            if self.changed() is not None:
                raise ArtifactError(f"{name}: the bodies file changed on disk while it was read; open it again")
        except BaseException:
            self.close()
            raise

    def _check_layout(self, store: RangeStore) -> None:
        """Bodies back to back in prefix order, each gzip member right after its plain body, ending at EOF;
        an empty range exactly where the store has no rows."""
        index = self.index.copy()  # a copy: a frame kept by a traceback must not pin the map
        plain_at, gzip_at = index["plain_at"].astype(np.int64), index["gzip_at"].astype(np.int64)
        plain_len, gzip_len = index["plain_len"].astype(np.int64), index["gzip_len"].astype(np.int64)
        ends = gzip_at + gzip_len
        starts = np.concatenate(([DATA_AT], ends[:-1]))
        rows = np.diff(store.index.astype(np.int64))
        if (
            bool(np.any(plain_at != starts))
            or bool(np.any(gzip_at != plain_at + plain_len))
            or int(ends[-1]) != self.identity.size
            or bool(np.any((plain_len == 0) != (rows == 0)))
            or bool(np.any(gzip_len < 20))
        ):
            raise ArtifactError(f"{self.path}: bodies file index is inconsistent: the file is corrupt")

    def verify(self, store: RangeStore, *, stop: threading.Event | None = None) -> bool:
        """Check every body against the rows of ``store``, marking each range ready as it passes.

        A range's plain body must be the store's rows rendered again, byte for byte, and its gzip member must
        be our gzip header, a deflate stream that gives exactly that body up to its sync point (``deflated``)
        and nothing after it, and a trailer with its CRC-32 and length (:meth:`._bodies.Body.holds`). The first
        range that differs raises :class:`ArtifactError` naming it (its prefix is no secret). Ranges are
        checked in blocks of rows rendered at once (the C kernels; the GIL is let go while they run). Returns
        False if ``stop`` was set before the end.
        """
        if self.complete:
            return True
        width = store.digest_size - SKIP
        bounds = store.index.astype(np.int64)
        records = self.index.copy()
        plain_at, gzip_at = records["plain_at"].astype(np.int64), records["gzip_at"].astype(np.int64)
        plain_len, gzip_len = records["plain_len"].astype(np.int64), records["gzip_len"].astype(np.int64)
        crcs, deflated = records["crc"].astype(np.int64), records["deflated"].astype(np.int64)
        ready = np.frombuffer(self.ready, dtype=np.uint8)
        filled = np.flatnonzero(bounds[1:] > bounds[:-1])
        # The empty ranges at once: each one's member is the empty body's (the layout check put them in place).
        empty = Body(b"")
        member = np.frombuffer(empty.gzip(), dtype=np.uint8)
        data = np.frombuffer(self._map if self._map is not None else b"", dtype=np.uint8)
        wrong = np.flatnonzero((bounds[1:] == bounds[:-1]) & ((crcs != empty.crc) | (deflated != empty.deflated)))
        if len(wrong):
            self._refuse(int(wrong[0]))
        empties = np.flatnonzero(bounds[1:] == bounds[:-1])
        for start in range(0, len(empties), 1 << 16):
            block = empties[start : start + (1 << 16)]
            at = gzip_at[block][:, None] + np.arange(len(member))
            differs = np.flatnonzero((gzip_len[block] != len(member)) | np.any(data[at] != member, axis=1))
            if len(differs):
                self._refuse(int(block[differs[0]]))
            ready[block] = 1
        del data
        view = memoryview(self._map) if self._map is not None else memoryview(b"")
        try:
            done = 0  # filled ranges checked so far
            while done < len(filled):
                if stop is not None and stop.is_set():
                    return False
                # as many filled ranges as make about _VERIFY_ROWS rows (at least one), rendered at once
                first = int(filled[done])
                last = int(np.searchsorted(bounds, bounds[first] + _VERIFY_ROWS, side="right")) - 1
                last = min(max(last, first + 1), PREFIXES)
                lo, hi = int(bounds[first]), int(bounds[last])
                counts = store.counts[lo:hi]
                text = render_rows(store.suffixes[lo:hi], counts)
                # where each row's line ends in the text: 2 x width hex digits less one, ':', the digits, CRLF
                digits = np.ones(len(counts), dtype=np.int64)
                for power in range(1, 10):
                    digits += counts >= 10**power
                ends = np.cumsum(digits + (2 * width + 2))
                block = filled[done : int(np.searchsorted(filled, last))]
                for p in block.tolist():
                    first_row, end_row = int(bounds[p]) - lo, int(bounds[p + 1]) - lo
                    want = text[int(ends[first_row - 1]) if first_row else 0 : int(ends[end_row - 1]) - 2]
                    stored = view[plain_at[p] : plain_at[p] + plain_len[p]]
                    zipped = view[gzip_at[p] : gzip_at[p] + gzip_len[p]]
                    if stored != want or not Body.holds(want, zipped, int(crcs[p]), int(deflated[p])):
                        self._refuse(p)
                    ready[p] = 1
                done += len(block)
        finally:
            view.release()
        self.complete = True
        return True

    def _refuse(self, prefix: int) -> NoReturn:
        raise ArtifactError(
            f"{self.path}: the bodies of range {prefix:05X} are not the ones the store's rows give: "
            "the side file is not used"
        )

    def changed(self) -> str | None:
        """Why the open file is no longer the one verified (written to, truncated), or None: one fstat (size,
        modification and change times: a rewrite with its mtime set back is seen too)."""
        why = super().changed()
        if why is None and self._file is not None:
            try:
                if os.fstat(self._file.fileno()).st_ctime_ns != self.identity.ctime_ns:
                    return "it was written to"
            except (OSError, ValueError):
                return "it can no longer be read"
        return why

    def plain(self, prefix: int) -> bytes:
        """The stored plain body of ``prefix`` (a copy of its slice)."""
        if not 0 <= prefix < PREFIXES:
            raise ValueError(f"a prefix is a 20-bit number, got {prefix}")
        at, _, length, _ = _SPAN.unpack_from(self._map, HEADER_SIZE + prefix * RECORD.itemsize)  # type: ignore[arg-type]
        return self._map[at : at + length]  # type: ignore[index]

    def gzipped(self, prefix: int) -> bytes:
        """The stored gzip member of ``prefix`` (a copy of its slice)."""
        if not 0 <= prefix < PREFIXES:
            raise ValueError(f"a prefix is a 20-bit number, got {prefix}")
        _, at, _, length = _SPAN.unpack_from(self._map, HEADER_SIZE + prefix * RECORD.itemsize)  # type: ignore[arg-type]
        return self._map[at : at + length]  # type: ignore[index]

    def body(self, prefix: int) -> Body:
        """The stored body of ``prefix`` (both encodings, copied out of the map)."""
        plain_at, gzip_at, plain_len, gzip_len, crc, deflated = self.index[prefix].tolist()
        raw = self._map[plain_at : plain_at + plain_len]  # type: ignore[index]
        return Body(raw, self._map[gzip_at : gzip_at + gzip_len], crc, deflated)  # type: ignore[index]

    def close(self) -> None:
        self.fileno = -1  # never fstat a descriptor number another file may get next
        super().close()


@dataclasses.dataclass(frozen=True, slots=True)
class _Header:
    """What a bodies file's header records."""

    scheme: str
    store_size: int  # the size and digest of the store it was rendered from
    store_digest: int
    data_size: int  # the bodies and their index
    index_checksum: int
    zlib: str  # the zlib version that compressed it


def _parse_header(head: bytes, name: str) -> _Header:
    """Check a bodies file's header and return its fields; raise ArtifactError naming what is wrong."""
    if len(head) < HEADER_SIZE or head[:8] != MAGIC:
        raise ArtifactError(f"{name}: not a credcheck bodies file")
    if struct.unpack_from("<Q", head, _CHECKSUM_AT)[0] != xxhash.xxh3_64_intdigest(head[:_CHECKSUM_AT]):
        raise ArtifactError(f"{name}: bodies file header checksum mismatch: the file is corrupt")
    _, version, code, _, record, store_size, store_digest, data_size, index_sum, _, zv = _HEADER.unpack_from(head)
    if version != VERSION or record != RECORD.itemsize:
        raise ArtifactError(f"{name}: bodies file version {version} is not supported (expected {VERSION})")
    info = scheme_by_code(code)
    if info is None:
        raise ArtifactError(f"{name}: bodies file of an unknown hash scheme code {code}")
    zlib_version = zv.rstrip(b"\0").decode("ascii", "replace")
    return _Header(info.name, store_size, store_digest, data_size, index_sum, zlib_version)


def describe(info: Description) -> None:
    """Fill ``info`` for the bodies side file at its path: what its header records, then whether it verifies
    against the store beside it (``STORE`` for ``STORE.bodies``), body by body, as a server checks it."""
    info.kind, info.version = "bodies file", VERSION
    fields = _parse_header(read_header(info.path, HEADER_SIZE, "bodies"), info.path)
    store_path = info.path[: -len(SUFFIX)] if info.path.endswith(SUFFIX) else None
    info.facts.update(
        scheme=fields.scheme, store=store_path, store_size=fields.store_size, data_size=fields.data_size,
        zlib=fields.zlib,
    )  # fmt: skip
    if store_path is None or not os.path.exists(store_path):
        info.unchecked(f"a bodies file is checked against its store's rows, and {store_path or 'STORE'} is not there")
        return

    def against_its_store() -> None:
        with RangeStore(store_path) as store:
            BodyFile(store, info.path).close()

    info.check(against_its_store)


_warned: set[str] = set()  # what this process has said already (a waiting worker retries every few seconds)


def _warn_once(message: str, state: str, target: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning("%s", message, extra={"event": "side_file", "state": state, "path": target})


def ensure_bodies(store: RangeStore) -> str | None:
    """Make the side file of ``store`` unless a matching one is there (every body checked against the store's
    rows); its path, or None if it cannot be made now (another process is making it, the store was replaced at
    its path, the disk is too full or refused)."""
    target = bodies_path(store.path)
    try:
        BodyFile(store, target, verify=True).close()
        return target
    except (CredcheckError, OSError) as exc:
        if not isinstance(exc, FileNotFoundError):
            _warn_once(f"{target} is not used ({exc}): making it again", "refused", target)
    return target if _make(store, target) is not None else None


def _make(store: RangeStore, target: str) -> FileIdentity | None:
    """Write the side file of ``store`` at ``target`` unless that cannot be done now (and say why, once): the
    identity of the file written, or None."""
    try:
        if FileIdentity.at(store.path) != store.identity:
            # the path names a newer store now: its side file is for that one, not to be overwritten for this
            _warn_once(f"{store.path} was replaced: not making a side file for the previous store", "skipped", target)
            return None
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(target))).free
    except OSError:
        return None
    needed = _needed_bytes(store)
    if free < needed:
        _warn_once(
            f"{target} is not made: it needs about {needed / 1e9:,.1f} GB and the disk has {free / 1e9:,.1f} GB free; "
            "ranges are rendered per request (it is tried again later)",
            "no_room",
            target,
        )
        return None
    # lines, never a bar: a server's standard error is its log, shared by its workers, whatever it is attached to
    progress = Reporter("bodies", lambda phase, total: "ranges", bars=False)
    try:
        return _write_bodies(store, target, announce=True, progress=lambda done, total: progress("render", done, total))
    except (CredcheckError, OSError) as exc:
        if _atomic.lock_held(target):
            logger.debug("%s is being made by another process", target)
        else:
            _warn_once(f"{target} could not be made ({exc}): ranges are rendered per request", "failed", target)
        return None
    finally:
        progress.close()


class BodyFiles:
    """The side file of each served store, by store tag: opened, and checked against the store's rows, in a
    background thread.

    :meth:`get` never waits: it answers None (the caller renders the body from the store) until the side
    file of the store being served is open, and when that file is missing, stale or fails its checks; the
    caller then uses it only for the ranges already checked (``ready``). A store replaced under the server gets
    a new tag, so its bodies are never taken from the old file. A side file that is missing, stale, or whose
    bodies are not the store's is looked for (and with ``build`` made, one process at a time) again after
    ``retry`` seconds, twice as long after each failure, up to an hour.
    """

    def __init__(self, *, build: bool = False, retry: float = RETRY) -> None:
        self.build, self.retry = build, retry
        self._files: dict[str, BodyFile | None] = {}
        self._next_try: dict[str, float] = {}
        self._delay: dict[str, float] = {}  # the wait after the next failure, per tag
        self._written: dict[str, FileIdentity] = {}  # side files this process wrote: known good while untouched
        self._refused: dict[str, FileIdentity] = {}  # side files whose bodies were not the store's
        self._stop = threading.Event()
        # One thread per process, started here rather than from a request: a thread started from a granian
        # worker's request thread kept that worker from stopping (tests/test_server.py, TestServeLifecycle).
        # A process forked from this one (gunicorn's workers) starts its own on its first request.
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._todo: queue.SimpleQueue[tuple[str, RangeStore] | None] = queue.SimpleQueue()
        self._loading: set[str] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._run, args=(self._todo,), name="credcheck-bodies", daemon=True).start()

    def _run(self, todo: queue.SimpleQueue[tuple[str, RangeStore] | None]) -> None:
        while (job := todo.get()) is not None:
            tag, store = job
            try:
                ok = self._open(tag, store)
            except Exception as exc:  # e.g. the store closed under this thread as the app stops
                logger.warning("%s: its bodies file is not used (%s)", store.path, type(exc).__name__)
                ok = False
            with self._lock:
                self._loading.discard(tag)
                if ok:
                    self._delay.pop(tag, None)
                else:  # tried again later, and later after each failure
                    delay = self._delay.get(tag, self.retry)
                    self._next_try[tag] = time.monotonic() + delay
                    self._delay[tag] = min(2 * delay, MAX_RETRY)

    def get(self, tag: str, store: RangeStore) -> BodyFile | None:
        """The side file to take ``store``'s bodies from (for the ranges it has ``ready``), or None for now."""
        found = self._files.get(tag)
        if found is not None:
            try:  # the cheap part of changed(), on every request: one fstat
                st = os.fstat(found.fileno)
                known = found.identity
                if (st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (known.size, known.mtime_ns, known.ctime_ns):
                    return found
            except (OSError, ValueError):
                pass
            why = found.changed() or "it can no longer be read"
            logger.warning(
                "%s changed on disk while used (%s): rendering ranges until it is made again",
                found.path,
                why,
                extra={"event": "side_file", "state": "changed", "path": found.path},
            )
            self._files[tag] = None
        if self._pid != os.getpid():  # forked: the parent's thread is not in this process
            self._start()
        now = time.monotonic()
        if now < self._next_try.get(tag, 0.0) or tag in self._loading:
            return None
        with self._lock:
            if tag in self._loading:
                return None
            self._loading.add(tag)
            self._next_try[tag] = float("inf")  # until this attempt ends
            # forget the side file of a store of this scheme no longer served (not closed: a request in another
            # thread may still be copying from it; it is unmapped when the last reference goes)
            for old in [t for t in self._files if t != tag and t.split("-")[0] == tag.split("-")[0]]:
                del self._files[old]
        self._todo.put((tag, store))
        return None

    def _open(self, tag: str, store: RangeStore) -> bool:
        """Open (or make) the side file of ``store`` and check it against the store; whether it is in use."""
        target = os.path.abspath(bodies_path(store.path))
        opened = self._open_existing(tag, store, target)
        if opened is None and self.build:
            written = _make(store, target)
            if written is None:
                return False
            self._written[target] = written
            opened = self._open_existing(tag, store, target)
        if opened is None:
            return False
        self._files[tag] = opened  # requests use each range as soon as it is checked
        try:
            if not opened.verify(store, stop=self._stop):
                return True  # stopping
        except ArtifactError as exc:
            logger.warning("%s", exc, extra={"event": "side_file", "state": "refused", "path": opened.path})
            self._refused[tag] = opened.identity
            self._files[tag] = None  # not closed: a request in another thread may still be copying from it
            return False
        logger.info(
            "%s verified: every range is served from it",
            opened.path,
            extra=_state("verified", opened.path, store),
        )
        return True

    def _open_existing(self, tag: str, store: RangeStore, target: str) -> BodyFile | None:
        """The side file at ``target`` if it is there and matches ``store`` (its bodies not checked yet, unless it
        is the one this process wrote), else None; one whose bodies failed before is not taken again."""
        try:
            opened = BodyFile(store, target, verify=False, trusted=self._written.get(target))
        except FileNotFoundError:
            return None
        except (CredcheckError, OSError) as exc:
            logger.warning(
                "%s: its bodies file is not used (%s)", store.path, exc, extra=_state("refused", target, store)
            )
            return None
        if self._refused.get(tag) == opened.identity:
            opened.close()
            return None
        return opened

    def close(self) -> None:
        self._stop.set()
        self._todo.put(None)
        for found in self._files.values():
            if found is not None:
                found.close()
        self._files.clear()
