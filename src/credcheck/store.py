"""RangeStore: every leaked digest with its count, partitioned by its 5-hex (20-bit) prefix.

One file: a header, an index of 2^20 + 1 row numbers (a prefix's rows are ``index[p] .. index[p+1]``), the
rows' digest bytes from byte 2 on (sorted), and their counts (uint32). Opening memory-maps it read-only
and verifies it; a range costs one index read and one slice. Layout: docs/FORMAT.md.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from typing import Any, BinaryIO, Final

import numpy as np
import numpy.typing as npt
import xxhash

from . import _atomic, _native
from . import _sortmerge as sm
from ._artifact import Description, Mapped, created_at, read_header
from ._corpus import Chunk
from ._wire import SUFFIX_LENGTHS
from .errors import ArtifactError, StorageError
from .hashing import DIGEST_SIZES, SCHEMES, scheme_by_code

__all__ = ["MAX_COUNT", "RangeStore"]

MAGIC: Final = b"CCSTORE\x00"
VERSION: Final = 1
HEADER_SIZE: Final = 128
PREFIX_BITS: Final = 20
PREFIXES: Final = 1 << PREFIX_BITS
SKIP: Final = 2  # bytes of the digest not stored per row; the 5th hex digit of the prefix is kept
INDEX_SIZE: Final = (PREFIXES + 1) * 8
# magic, version, scheme, prefix bits, digest size, rows, min count, created (unix s),
# index checksum, suffix checksum, counts checksum
_HEADER = struct.Struct("<8sHBBIQQQQQQ")
_CHECKSUM_AT: Final = HEADER_SIZE - 8
#: The largest count a store holds per hash (counts are little-endian uint32).
MAX_COUNT: Final = 0xFFFFFFFF
#: The latest build time a header may hold: the last second of the year 9999 (HTTP dates end there).
MAX_CREATED: Final = 253402300799
_VERIFY_ROWS: Final = 1 << 18  # rows checked per block: about 5 MiB of a SHA-1 store, in the cache


def prefix_of(digests: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """The 20-bit prefix (first five hex digits) of each digest row."""
    d = digests[:, :3].astype(np.int64)  # only the bytes the prefix is made of
    return (d[:, 0] << 12) | (d[:, 1] << 4) | (d[:, 2] >> 4)


def _layout(rows: int, size: int) -> tuple[int, int, int]:
    """Offsets of the suffixes and the counts, and the file size."""
    suffixes = HEADER_SIZE + INDEX_SIZE
    counts = suffixes + rows * (size - SKIP)
    counts += -counts % 8  # align the counts to 8 bytes
    return suffixes, counts, counts + rows * 4


def _sign(head: bytes) -> bytes:
    head = head.ljust(_CHECKSUM_AT, b"\x00")
    return head + struct.pack("<Q", xxhash.xxh3_64_intdigest(head))


class StoreWriter:
    """Writes a store from digests that arrive sorted and merged, given each prefix's row count up front."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        scheme: str,
        prefix_counts: npt.NDArray[np.int64],
        min_count: int = 1,
    ) -> None:
        self.path = os.fspath(path)
        self.scheme, self.size, self.min_count = scheme, DIGEST_SIZES[scheme], min_count
        index = np.zeros(PREFIXES + 1, dtype="<u8")
        np.cumsum(prefix_counts, out=index[1:])
        self.index = index
        self.rows = int(index[-1])
        self._suffix_at, self._counts_at, self._end = _layout(self.rows, self.size)
        self._written = 0
        self._suffix_hash, self._counts_hash = xxhash.xxh3_64(), xxhash.xxh3_64()
        self._tmp = _atomic.temp_path_beside(self.path)
        self._file: BinaryIO = open(self._tmp, "r+b")  # noqa: SIM115 - closed in finish/abort
        try:
            self._file.truncate(self._end)
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def add(self, digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64]) -> None:
        """Append the next sorted rows."""
        n = len(counts)
        if self._written + n > self.rows:
            raise ArtifactError("more rows arrived than the store was sized for (the input changed mid-build)")
        suffixes = np.ascontiguousarray(digests[:, SKIP:])
        small = counts.astype("<u4")
        try:
            _atomic.pwrite_all(self._file.fileno(), suffixes.data, self._suffix_at + self._written * (self.size - SKIP))
            _atomic.pwrite_all(self._file.fileno(), small.data, self._counts_at + self._written * 4)
        except OSError as exc:
            raise StorageError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self._suffix_hash.update(suffixes.data)
        self._counts_hash.update(small.data)
        self._written += n

    def finish(self) -> None:
        """Write the index and header and fsync; :meth:`commit` then renames the file into place."""
        try:
            if self._written != self.rows:
                raise ArtifactError(
                    f"store expected {self.rows} rows but got {self._written} (the input changed mid-build)"
                )
            head = _HEADER.pack(
                MAGIC,
                VERSION,
                SCHEMES[self.scheme].code,
                PREFIX_BITS,
                self.size,
                self.rows,
                self.min_count,
                int(time.time()),
                xxhash.xxh3_64_intdigest(self.index.data),
                self._suffix_hash.intdigest(),
                self._counts_hash.intdigest(),
            )
            #: The finished store's 128-byte header (what a derived file records of it: ``source_digest``).
            self.header = _sign(head)
            try:
                _atomic.pwrite_all(self._file.fileno(), self.header, 0)
                _atomic.pwrite_all(self._file.fileno(), self.index.data, HEADER_SIZE)
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
            except OSError as exc:
                raise StorageError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        except BaseException:
            self.abort()
            raise

    def commit(self) -> None:
        """Put the finished store in place of the previous one."""
        _atomic.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the temporary file; the previous store at the path stays as it was."""
        self._file.close()
        _atomic.remove_quietly(self._tmp)


class RangeStore(Mapped):
    """A read-only, memory-mapped store: the rows of any 5-hex prefix in one seek, and exact counts."""

    kind = "store"
    _views = ("index", "suffixes", "counts", "_keys")

    def __init__(self, path: str | os.PathLike[str], *, verify: bool = True) -> None:
        fields = self._open(path, HEADER_SIZE, _parse_header)
        try:
            self.scheme: str = fields["scheme"]
            self.digest_size: int = DIGEST_SIZES[self.scheme]
            self.rows: int = fields["rows"]
            self.min_count: int = fields["min_count"]
            self.created: int = fields["created"]
            suffix_at, counts_at, end = _layout(self.rows, self.digest_size)
            mapped = self._map_file(end)
        except BaseException:
            self.close()
            raise
        width = self.digest_size - SKIP
        self.index = np.frombuffer(mapped, dtype="<u8", count=PREFIXES + 1, offset=HEADER_SIZE)
        raw = np.frombuffer(mapped, dtype=np.uint8, count=self.rows * width, offset=suffix_at)
        self.suffixes = raw.reshape(self.rows, width)
        self._keys = raw.view(f"S{width}") if self.rows else np.empty(0, dtype=f"S{width}")
        self.counts = np.frombuffer(mapped, dtype="<u4", count=self.rows, offset=counts_at)
        try:
            self._check_index(fields["index_checksum"] if verify else None)
            if verify:
                self._verify_rows(raw, suffix_at, fields["suffix_checksum"], fields["counts_checksum"])
                # a file written to while it was read may have passed with a mix of old and new bytes
                self.ensure_unchanged()
        except BaseException:
            del raw
            self.close()
            raise

    def _check_index(self, checksum: int | None) -> None:
        """The index's checksum (unless None), then its shape: starts at 0, never falls, ends at the row count."""
        if checksum is not None and xxhash.xxh3_64_intdigest(self.index.data) != checksum:
            raise ArtifactError(f"{self.path}: store index section checksum mismatch: the file is corrupt")
        if self.index[0] != 0 or self.index[-1] != self.rows or bool(np.any(self.index[1:] < self.index[:-1])):
            raise ArtifactError(f"{self.path}: store index is inconsistent: the file is corrupt")

    def _verify_rows(self, raw: npt.NDArray[np.uint8], suffix_at: int, suffix_sum: int, counts_sum: int) -> None:
        """Checksum the rows and check their structure in one pass over the map, a block of rows at a time.

        A file can carry valid checksums and still be wrong (a buggy writer, a hand edit): binary search then
        gives wrong answers. So each row must sort strictly after the one before it within its group of 16
        prefixes (the two bytes not stored are the same there; no duplicates), and hold a count of at least
        the store's ``min_count``; every prefix's first and last rows must carry its fifth hex digit, which,
        the rows being ascending, puts every row of the prefix under it.
        """
        name, width, rows = self.path, self.digest_size - SKIP, self.rows
        suffix_hash, counts_hash = xxhash.xxh3_64(), xxhash.xxh3_64()
        # the rows where a new group of 16 prefixes starts: the suffix order begins afresh there
        group_starts = self.index[:PREFIXES:16].astype(np.int64)
        problem: str | None = None
        for lo in range(0, rows, _VERIFY_ROWS):
            hi = min(rows, lo + _VERIFY_ROWS)
            suffix_hash.update(raw[lo * width : hi * width].data)
            counts = self.counts[lo:hi]
            counts_hash.update(counts.data)
            if problem is not None:
                continue
            if int(counts.min()) < max(self.min_count, 1):
                at = lo + int(np.argmax(counts < max(self.min_count, 1)))
                problem = f"row {at} has count {int(self.counts[at])}, below the store's min_count {self.min_count}"
                continue
            start = max(lo - 1, 0)  # compare the block's first row with the row before it too
            # The first 8 bytes of each row as a big-endian number decide almost every comparison; the
            # whole rows are compared only where those are equal.
            lead = np.ndarray((hi - start,), ">u8", buffer=raw, offset=start * width, strides=(width,))
            lead = lead.astype(np.uint64)
            after, before = lead[1:], lead[:-1]
            falls = after < before
            ties = np.flatnonzero(after == before)
            if len(ties):
                keys = self._keys[start:hi]
                falls[ties[keys[ties + 1] <= keys[ties]]] = True
            wrong = np.flatnonzero(falls) + start + 1  # rows not above the one before them
            if len(wrong):
                at_group = group_starts[np.minimum(np.searchsorted(group_starts, wrong), len(group_starts) - 1)]
                misplaced = wrong[at_group != wrong]
                if len(misplaced):
                    problem = f"row {int(misplaced[0])} is not above the row before it (rows out of order or repeated)"
        if suffix_hash.intdigest() != suffix_sum:
            raise ArtifactError(f"{name}: store hash section checksum mismatch: the file is corrupt")
        if counts_hash.intdigest() != counts_sum:
            raise ArtifactError(f"{name}: store count section checksum mismatch: the file is corrupt")
        if problem is None:
            first, last = self.index[:-1].astype(np.int64), self.index[1:].astype(np.int64) - 1
            filled = np.flatnonzero(last >= first)
            digit = filled & 15
            for edge in (first[filled], last[filled]):
                off = np.flatnonzero((self.suffixes[edge, 0] >> 4) != digit)
                if len(off):
                    prefix = int(filled[off[0]])
                    problem = f"row {int(edge[off[0]])} is filed under prefix {prefix:05X} but is not one of its rows"
                    break
        if problem is not None:
            raise ArtifactError(f"{name}: store rows are inconsistent ({problem}): the file is corrupt")

    @property
    def suffix_length(self) -> int:
        """Hex characters of a suffix in a range response: 35 for SHA-1, 27 for NTLM."""
        return SUFFIX_LENGTHS[self.scheme]

    def rows_of(self, prefix: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint32]]:
        """The suffix rows (digest bytes 2..) and counts of one 20-bit prefix: views, no copy."""
        if not 0 <= prefix < PREFIXES:
            raise ValueError(f"a prefix is a 20-bit number, got {prefix}")
        lo, hi = int(self.index[prefix]), int(self.index[prefix + 1])
        return self.suffixes[lo:hi], self.counts[lo:hi]

    def range_lines(self, prefix: int) -> list[bytes]:
        """One prefix's range as HIBP lines ``SUFFIX:COUNT`` (upper-case hex, sorted), without line ends."""
        body = self.range_body(prefix)
        return body.split(b"\r\n") if body else []

    def range_body(self, prefix: int) -> bytes:
        """One prefix's range exactly as the HIBP API sends it: lines joined by CRLF, none after the last."""
        rows, counts = self.rows_of(prefix)
        return render_rows(rows, counts, body=True)

    def lookup_many(self, digests: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
        """The count of each digest row (0 where absent), by a vectorised binary search inside its prefix."""
        if digests.ndim != 2 or digests.shape[1] != self.digest_size:
            raise ValueError(f"expected an n x {self.digest_size} uint8 array of {self.scheme} digests")
        self.ensure_unchanged()
        prefixes = prefix_of(digests)
        lo = self.index[prefixes].astype(np.int64)
        hi = self.index[prefixes + 1].astype(np.int64)
        want = np.ascontiguousarray(digests[:, SKIP:]).view(f"S{self.digest_size - SKIP}").ravel()
        # lower bound of `want` in rows lo..hi, all queries at once
        while True:
            active = lo < hi
            if not active.any():
                break
            mid = (lo + hi) // 2
            idx = np.flatnonzero(active)
            below = self._keys[mid[idx]] < want[idx]
            lo[idx[below]] = mid[idx[below]] + 1
            hi[idx[~below]] = mid[idx[~below]]
        out = np.zeros(len(digests), dtype=np.uint32)
        end = self.index[prefixes + 1].astype(np.int64)
        inside = np.flatnonzero(lo < end)
        found = inside[self._keys[lo[inside]] == want[inside]]
        out[found] = self.counts[lo[found]]
        return out

    def lookup(self, digest: bytes) -> int:
        """The count of one raw digest (0 where absent)."""
        row = np.frombuffer(digest, dtype=np.uint8).reshape(1, -1)
        return int(self.lookup_many(row)[0])

    def __enter__(self) -> RangeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RangeStore {self.scheme} rows={self.rows} min_count={self.min_count} path={self.path!r}>"


def store_rows(store: RangeStore) -> Iterator[Chunk]:
    """An existing store's rows as full digests with counts, in order (a sorted stream for the build to merge into)."""
    bounds = store.index
    block = sm.MERGE_BLOCK
    for start in range(0, store.rows, block):
        end = min(start + block, store.rows)
        # the prefix of each row: the last p with index[p] <= row
        first = int(np.searchsorted(bounds, start, side="right")) - 1
        last = int(np.searchsorted(bounds, end - 1, side="right")) - 1
        prefixes = np.repeat(
            np.arange(first, last + 1, dtype=np.int64),
            np.diff(np.clip(bounds[first : last + 2].astype(np.int64), start, end)).astype(np.int64),
        )
        digests = np.empty((end - start, store.digest_size), dtype=np.uint8)
        digests[:, 0] = prefixes >> 12
        digests[:, 1] = (prefixes >> 4) & 0xFF
        digests[:, 2:] = store.suffixes[start:end]
        yield Chunk(digests, store.counts[start:end].astype(np.uint64))


def render_rows(rows: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint32], *, body: bool = False) -> bytes:
    """Rows (digest bytes from byte 2 on) and their counts as HIBP range lines, each ending in CRLF; with
    ``body``, as a range body (no CRLF after the last line)."""
    if not len(counts):
        return b""
    out = bytearray(len(counts) * (2 * rows.shape[1] + 12))
    size = _native.kernels.render_lines(np.ascontiguousarray(rows), rows.shape[1], np.ascontiguousarray(counts), out)
    return bytes(memoryview(out)[: size - 2 if body else size])


def describe(info: Description) -> None:
    """Fill ``info`` for the range store at its path: what its header records, then whether it opens verified."""
    info.kind, info.version = "range store", VERSION
    fields = _parse_header(read_header(info.path, HEADER_SIZE, "store"), info.path)
    info.facts.update(
        scheme=fields["scheme"],
        rows=fields["rows"],
        min_count=fields["min_count"],
        created=created_at(fields["created"]),
    )
    info.check(lambda: RangeStore(info.path).close())


def _parse_header(head: bytes, name: str) -> dict[str, Any]:
    if len(head) < HEADER_SIZE:
        raise ArtifactError(f"{name}: too short to be a credcheck store ({len(head)} bytes)")
    if head[:8] != MAGIC:
        raise ArtifactError(f"{name}: not a credcheck store (wrong magic)")
    (stored,) = struct.unpack_from("<Q", head, _CHECKSUM_AT)
    if xxhash.xxh3_64_intdigest(head[:_CHECKSUM_AT]) != stored:
        raise ArtifactError(f"{name}: store header checksum mismatch: the file is corrupt")
    (_, version, code, bits, size, rows, min_count, created, index_sum, suffix_sum, counts_sum) = _HEADER.unpack_from(
        head
    )
    if version != VERSION:
        raise ArtifactError(f"{name}: store format version {version} is not supported (this credcheck reads {VERSION})")
    info = scheme_by_code(code)
    if info is None or info.digest_size != size or bits != PREFIX_BITS:
        raise ArtifactError(
            f"{name}: unknown store parameters (scheme code {code}, digest size {size}, prefix bits {bits})"
        )
    if min_count < 1:
        raise ArtifactError(f"{name}: impossible store parameter min_count={min_count}")
    if created > MAX_CREATED:
        raise ArtifactError(f"{name}: impossible store build time {created} (after the year 9999)")
    return {
        "scheme": info.name,
        "rows": rows,
        "min_count": min_count,
        "created": created,
        "index_checksum": index_sum,
        "suffix_checksum": suffix_sum,
        "counts_checksum": counts_sum,
    }
