"""The bodies side file (``STORE.bodies``): every range of a store rendered and gzip-compressed once, mapped.

At HIBP's density a range is about 1,430 lines (60 KB): rendering it from the store and compressing it costs
far more than sending it, and a per-process LRU of 64 MiB holds only a few hundred of them. So every body, in
both encodings, is written once into a file beside the store, and a request is a lookup in its index and a
copy of a slice. Padding stays per request (:meth:`.bodies.Body.gzip_padded` continues the stored deflate
stream). The layout is in docs/FORMAT.md ("Bodies side file").

The file names the store it was made from (its size and a digest of its 128-byte header, which holds the
store's section checksums) and the zlib that compressed it; it is refused, never half-used, when it does not
match, is truncated, or fails its checksums. It is written atomically (a temporary file beside it, fsync,
rename) under a lock, so two workers never build it twice at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import queue
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable
from typing import Final

import numpy as np
import xxhash

from .. import _atomic
from ..errors import ArtifactError, CredcheckError, StorageError
from ..store import PREFIXES, FileIdentity, RangeStore
from .bodies import Body

__all__ = ["BodyFile", "BodyFiles", "bodies_path", "build_bodies", "ensure_bodies"]

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
_SCHEMES: Final = {"sha1": 1, "ntlm": 2}
_BLOCK: Final = 8 << 20  # bytes checksummed at a time when verifying


def bodies_path(store_path: str | os.PathLike[str]) -> str:
    """Where the side file of the store at ``store_path`` lives: beside it, with ``.bodies`` appended."""
    return os.fspath(store_path) + ".bodies"


def _zlib_version() -> bytes:
    return zlib.ZLIB_RUNTIME_VERSION.encode("ascii")[:16]


def _store_digest(store: RangeStore) -> int:
    return xxhash.xxh3_64_intdigest(store.header)


def build_bodies(
    store: RangeStore,
    path: str | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    announce: bool = False,
) -> str:
    """Write the side file of ``store`` (default: beside it) atomically, and return its path.

    Every body is made by :class:`.bodies.Body` exactly as a request without the side file would make it,
    so both ways give the same bytes (and the same ETags). Holds the side file's lock while writing: a
    second builder gets a :class:`StorageError` at once. ``announce`` says on stderr when it starts and ends.
    """
    target = os.path.abspath(path or bodies_path(store.path))
    with _atomic.lock_beside([target]):
        started = time.monotonic()
        if announce:
            print(
                f"credcheck: rendering every range of {store.path} into {target} (once) ...",
                file=sys.stderr,
                flush=True,
            )
        tmp = _atomic.temp_path_beside(target)
        try:
            with open(tmp, "r+b") as out:
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
                    _SCHEMES[store.scheme],
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
            # the store must still be the one read: a body file of a store changed meanwhile would lie
            store.ensure_unchanged()
        except OSError as exc:
            _atomic.remove_quietly(tmp)
            raise StorageError(f"cannot write the bodies file {target}: {exc.strerror or exc}") from exc
        except BaseException:
            _atomic.remove_quietly(tmp)
            raise
        _atomic.replace(tmp, target)
        if announce:
            print(f"credcheck: wrote {target} in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return target


class BodyFile:
    """A verified, mapped side file of one open store: :meth:`body` of any prefix, as stored."""

    def __init__(self, store: RangeStore, path: str | None = None, *, verify: bool = True) -> None:
        name = self.path = os.path.abspath(path or bodies_path(store.path))
        fh = _atomic.open_for_reading(name, "bodies")
        try:
            self.identity = FileIdentity.of(fh.fileno())
            head = fh.read(HEADER_SIZE)
            if len(head) < HEADER_SIZE or head[:8] != MAGIC:
                raise ArtifactError(f"{name}: not a credcheck bodies file")
            if struct.unpack_from("<Q", head, _CHECKSUM_AT)[0] != xxhash.xxh3_64_intdigest(head[:_CHECKSUM_AT]):
                raise ArtifactError(f"{name}: bodies file header checksum mismatch: the file is corrupt")
            _, version, scheme, _, record, store_size, store_digest, data_size, index_sum, data_sum, zv = (
                _HEADER.unpack_from(head)
            )
            if version != VERSION or record != RECORD.itemsize:
                raise ArtifactError(f"{name}: bodies file version {version} is not supported (expected {VERSION})")
            if (
                scheme != _SCHEMES[store.scheme]
                or store_size != store.identity.size
                or store_digest != _store_digest(store)
            ):
                raise ArtifactError(f"{name}: the bodies file was made from another store than {store.path}")
            if zv.rstrip(b"\0") != _zlib_version():
                raise ArtifactError(
                    f"{name}: the bodies file was compressed by zlib {zv.rstrip(bytes(1)).decode('ascii', 'replace')}, "
                    f"this process runs {zlib.ZLIB_RUNTIME_VERSION}: make it again"
                )
            if self.identity.size != DATA_AT + data_size:
                raise ArtifactError(
                    f"{name}: bodies file is {self.identity.size} bytes, its header says {DATA_AT + data_size}: "
                    "truncated or padded"
                )
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except BaseException:
            fh.close()
            raise
        self._file, self.store_identity = fh, store.identity
        self.fileno = fh.fileno()
        self.index = np.frombuffer(self._map, dtype=RECORD, count=PREFIXES, offset=HEADER_SIZE)
        try:
            if xxhash.xxh3_64_intdigest(self._map[HEADER_SIZE:DATA_AT]) != index_sum:
                raise ArtifactError(f"{name}: bodies file index checksum mismatch: the file is corrupt")
            self._check_layout(store)
            if verify:
                digest = xxhash.xxh3_64()
                view = memoryview(self._map)
                for lo in range(DATA_AT, self.identity.size, _BLOCK):
                    digest.update(view[lo : min(lo + _BLOCK, self.identity.size)])
                view.release()
                if digest.intdigest() != data_sum:
                    raise ArtifactError(f"{name}: bodies file data checksum mismatch: the file is corrupt")
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

    def changed(self) -> str | None:
        """Why the open file is no longer the one verified (written to, truncated), or None: one fstat (size,
        modification and change times)."""
        if getattr(self, "_map", None) is None:
            return "it is closed"
        try:
            now = FileIdentity.of(self._file.fileno())
        except (OSError, ValueError):
            return "it can no longer be read"
        if now.size != self.identity.size:
            return f"its size changed from {self.identity.size} to {now.size} bytes"
        # the change time too: a program can set the mtime back after writing (rsync --inplace -t, touch -r),
        # never the ctime
        if now.mtime_ns != self.identity.mtime_ns or now.ctime_ns != self.identity.ctime_ns:
            return "it was written to"
        return None

    def plain(self, prefix: int) -> bytes:
        """The stored plain body of ``prefix`` (a copy of its slice)."""
        if not 0 <= prefix < PREFIXES:
            raise ValueError(f"a prefix is a 20-bit number, got {prefix}")
        at, _, length, _ = _SPAN.unpack_from(self._map, HEADER_SIZE + prefix * RECORD.itemsize)
        return self._map[at : at + length]

    def gzipped(self, prefix: int) -> bytes:
        """The stored gzip member of ``prefix`` (a copy of its slice)."""
        if not 0 <= prefix < PREFIXES:
            raise ValueError(f"a prefix is a 20-bit number, got {prefix}")
        _, at, _, length = _SPAN.unpack_from(self._map, HEADER_SIZE + prefix * RECORD.itemsize)
        return self._map[at : at + length]

    def body(self, prefix: int) -> Body:
        """The stored body of ``prefix`` (both encodings, copied out of the map)."""
        plain_at, gzip_at, plain_len, gzip_len, crc, deflated = self.index[prefix].tolist()
        raw = self._map[plain_at : plain_at + plain_len]
        return Body(raw, self._map[gzip_at : gzip_at + gzip_len], crc, deflated)

    def close(self) -> None:
        self.fileno = -1  # never fstat a descriptor number another file may get next
        if hasattr(self, "index"):
            del self.index
        if getattr(self, "_map", None) is not None:
            with contextlib.suppress(BufferError):  # a caller still holds a view; the map goes when it does
                self._map.close()
            self._map = None  # type: ignore[assignment]
        self._file.close()


def _lock_held(target: str) -> bool:
    """Whether another process holds the lock of ``target`` (is making it) right now."""
    try:
        fd = os.open(_atomic.lock_path(target), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases a lock taken here
    return False


_warned: set[str] = set()  # what this process has said already (a waiting worker retries every few seconds)


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning("%s", message)


def ensure_bodies(store: RangeStore) -> str | None:
    """Make the side file of ``store`` unless a matching one is there; its path, or None if it cannot be made
    now (another process is making it, or the store was replaced at its path, or the disk refused)."""
    target = bodies_path(store.path)
    try:
        BodyFile(store, target, verify=True).close()
        return target
    except (CredcheckError, OSError) as exc:
        if not isinstance(exc, FileNotFoundError):
            _warn_once(f"{target} is not used ({exc}): making it again")
    try:
        if FileIdentity.at(store.path) != store.identity:
            # the path names a newer store now: its side file is for that one, not to be overwritten for this
            _warn_once(f"{store.path} was replaced: not making a side file for the previous store")
            return None
    except OSError:
        return None
    try:
        build_bodies(store, target, announce=True)
        return target
    except (CredcheckError, OSError) as exc:
        if _lock_held(target):
            logger.debug("%s is being made by another process", target)
        else:
            _warn_once(f"{target} could not be made ({exc}): ranges are rendered per request")
        return None


class BodyFiles:
    """The side file of each served store, by store tag: opened and verified in a background thread.

    :meth:`get` never waits: it answers None (the caller renders the body from the store) until the side
    file of the store being served is verified, and when that file is missing, stale or fails its checks.
    A store replaced under the server gets a new tag, so its bodies are never taken from the old file; the
    side file is looked for again at most every ``retry`` seconds (``build`` makes it when it is missing
    or stale, one process at a time).
    """

    def __init__(self, *, build: bool = False, retry: float = 5.0) -> None:
        self.build, self.retry = build, retry
        self._files: dict[str, BodyFile | None] = {}
        self._next_try: dict[str, float] = {}
        self._loading: set[str] = set()
        self._lock = threading.Lock()
        # One thread per process, started here rather than from a request: a thread started from a granian
        # worker's request thread kept that worker from stopping (tests/test_server.py, TestServeLifecycle).
        # A process forked from this one (gunicorn's workers) starts its own on its first request.
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._todo: queue.SimpleQueue[tuple[str, RangeStore] | None] = queue.SimpleQueue()
        self._loading = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._run, args=(self._todo,), name="credcheck-bodies", daemon=True).start()

    def _run(self, todo: queue.SimpleQueue[tuple[str, RangeStore] | None]) -> None:
        while (job := todo.get()) is not None:
            self._open(*job)

    def get(self, tag: str, store: RangeStore) -> BodyFile | None:
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
                "%s changed on disk while used (%s): rendering ranges until it is made again", found.path, why
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
            self._next_try[tag] = now + self.retry
            # forget the side file of a store of this scheme no longer served (not closed: a request in another
            # thread may still be copying from it; it is unmapped when the last reference goes)
            for old in [t for t in self._files if t != tag and t.split("-")[0] == tag.split("-")[0]]:
                del self._files[old]
        self._todo.put((tag, store))
        return None

    def _open(self, tag: str, store: RangeStore) -> None:
        try:
            if self.build:
                path = ensure_bodies(store)
                opened = None if path is None else BodyFile(store, path)
            else:
                opened = BodyFile(store)
        except FileNotFoundError:
            opened = None
        except (CredcheckError, OSError) as exc:
            logger.warning("%s: its bodies file is not used (%s)", store.path, exc)
            opened = None
        except Exception as exc:  # e.g. the store closed under this thread as the app stops
            logger.warning("%s: its bodies file is not used (%s)", store.path, type(exc).__name__)
            opened = None
        if opened is not None:
            self._files[tag] = opened
        self._loading.discard(tag)

    def close(self) -> None:
        self._todo.put(None)
        for found in self._files.values():
            if found is not None:
                found.close()
        self._files.clear()
