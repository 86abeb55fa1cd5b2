"""The pair store: every bucket's 17-byte entries, sorted by tag and padded, in one memory-mapped file.

Layout (docs/FORMAT.md, "Pair store"): a 128-byte header (magic, version, bucket bits, flags, the stretch,
the key id, the entry count, checksums), an index of 2^B + 1 entry offsets (bucket ``b`` holds entries
``index[b] .. index[b+1]``), then the entries. Every bucket holds a multiple of 16 entries and at least 16:
real ones deduplicated (exact beats similar beats username-only), random dummies to fill, all sorted by
tag, so neither the file nor a response shows how many entries a user has, or whether a bucket is empty.
Opening memory-maps the file read-only and verifies it: header, size and index always; checksums and the
order of every bucket unless ``verify=False``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Final

import numpy as np
import numpy.typing as npt
import xxhash

from .. import _atomic
from .. import _sortmerge as sm
from .._artifact import Description, Mapped, created_at, read_header
from .._corpus import Chunk
from ..errors import ArtifactError, ClosedError, StorageError
from ._entry import ENTRY_SIZE, TAG_SIZE
from ._names import MAX_BUCKET_BITS
from .keys import KeyPair
from .stretch import Stretch

__all__ = ["PairStore"]

MAGIC: Final = b"CCPAIRS\x00"
VERSION: Final = 1
HEADER_SIZE: Final = 128
#: Every bucket holds a multiple of this many entries, and at least this many.
BUCKET_QUANTUM: Final = 16
FLAG_USERNAME_ENTRIES: Final = 0x01
STRETCH_SCRYPT: Final = 1
# magic, version, bucket bits, flags, stretch kind, variants, reserved, key id, scrypt N, r, p, entries,
# created (unix s), index checksum, entries checksum
_HEADER: Final = struct.Struct("<8sHBBBBH8sQIIQQQQ")
_CHECKSUM_AT: Final = HEADER_SIZE - 8
_VERIFY_WINDOW: Final = 1 << 22  # entries checked for order at once (bounded memory on huge stores)


def _sign(head: bytes) -> bytes:
    head = head.ljust(_CHECKSUM_AT, b"\x00")
    return head + struct.pack("<Q", xxhash.xxh3_64_intdigest(head))


def _tag_words(entries: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """The tags of n x 17 entries as (high, low) big-endian u64 words: their order is the tags' byte order."""
    words = np.ascontiguousarray(entries[:, :TAG_SIZE]).view(">u8").astype(np.uint64)
    return words[:, 0], words[:, 1]


#: The rows a build sorts its entries as (:mod:`credcheck._sortmerge`): the bucket (4 bytes, big-endian), the tag and
#: the unmasked status, carrying the mask; equal tags in a bucket keep the strongest (lowest) status.
ENTRY_ROWS: Final = sm.Layout(4 + TAG_SIZE + 1, 4 + TAG_SIZE, np.dtype(np.uint8), summed=False)
#: Where dummy entries come from (a test fixes it to compare two builds byte for byte).
_random_bytes: Callable[[int], bytes] = os.urandom


def entry_rows(
    buckets: npt.NDArray[np.uint32],
    tags: npt.NDArray[np.uint8],
    statuses: npt.NDArray[np.uint8],
    masks: npt.NDArray[np.uint8],
) -> Chunk:
    """Entries as :data:`ENTRY_ROWS` rows, checked: statuses 1, 2 or 3 (``tags`` is n x 16)."""
    n = len(buckets)
    if not (len(tags) == len(statuses) == len(masks) == n):
        raise ValueError("buckets, tags, statuses and masks must have the same length")
    if n and (int(statuses.min()) < 1 or int(statuses.max()) > 3):
        raise ValueError("an entry's status is 1, 2 or 3")
    rows = np.empty((n, ENTRY_ROWS.width), dtype=np.uint8)
    rows[:, :4] = buckets.astype(">u4").view(np.uint8).reshape(n, 4)
    rows[:, 4 : 4 + TAG_SIZE] = tags
    rows[:, 4 + TAG_SIZE] = statuses
    return Chunk(rows, masks.astype(np.uint8))


def stored_entries(rows: Chunk) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
    """:data:`ENTRY_ROWS` rows (sorted and collapsed) as their buckets and stored entries (the status masked)."""
    buckets = np.ascontiguousarray(rows.digests[:, :4]).view(">u4").ravel().astype(np.uint32)
    entries = rows.digests[:, 4:].copy()
    entries[:, TAG_SIZE] ^= rows.counts
    return buckets, entries


def _pad(
    first: int,
    end: int,
    buckets: npt.NDArray[np.uint32],
    real: npt.NDArray[np.uint8],
    random_bytes: Callable[[int], bytes],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8], int]:
    """Pad buckets ``first`` .. ``end - 1`` with random dummies and sort each by tag: (each bucket's entries, the
    entries, the dummies drawn).

    ``buckets`` and ``real`` (n x 17, masked) are those buckets' real entries. The dummies are drawn in bucket
    order in one call, so that one range or several in a row draw the same bytes from the same source.
    """
    counts = np.bincount(buckets - np.uint32(first), minlength=end - first).astype(np.int64)
    padded = np.maximum(BUCKET_QUANTUM, -(-counts // BUCKET_QUANTUM) * BUCKET_QUANTUM)
    dummy_buckets = np.repeat(np.arange(first, end, dtype=np.uint32), padded - counts)
    dummies = np.frombuffer(random_bytes(len(dummy_buckets) * ENTRY_SIZE), dtype=np.uint8)
    dummies = dummies.reshape(len(dummy_buckets), ENTRY_SIZE).copy()
    while True:
        all_buckets = np.concatenate([buckets, dummy_buckets])
        everything = np.concatenate([real, dummies])
        hi, lo = _tag_words(everything)
        order = np.lexsort((lo, hi, all_buckets))
        all_buckets, everything, hi, lo = all_buckets[order], everything[order], hi[order], lo[order]
        is_dummy = order >= len(real)
        clash = np.zeros(len(everything), dtype=bool)
        if len(everything) > 1:
            clash[1:] = (all_buckets[1:] == all_buckets[:-1]) & (hi[1:] == hi[:-1]) & (lo[1:] == lo[:-1])
        # a dummy whose random tag equals another tag of its bucket (odds 2^-128 a pair) is drawn again
        redo = np.flatnonzero(clash | np.roll(clash, -1))
        redo = order[redo[is_dummy[redo]]] - len(real)
        if not len(redo):
            return padded, everything, len(dummies)
        dummies[redo] = np.frombuffer(random_bytes(len(redo) * ENTRY_SIZE), dtype=np.uint8).reshape(-1, ENTRY_SIZE)


def _joined(
    parts: list[tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]],
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
    """Parts of entries (buckets and entries) as one."""
    if not parts:
        return np.empty(0, dtype=np.uint32), np.empty((0, ENTRY_SIZE), dtype=np.uint8)
    return np.concatenate([b for b, _ in parts]), np.concatenate([e for _, e in parts])


class _Padder:
    """Pads buckets in order as their real entries arrive (sorted by bucket, then tag; each tag once a bucket),
    a bounded group of buckets at a time: yields each group's entries, and each bucket's end in the entries."""

    def __init__(self, bits: int, random_bytes: Callable[[int], bytes] | None, group: int) -> None:
        if not 0 <= bits <= MAX_BUCKET_BITS:
            raise ValueError(f"bucket bits must be between 0 and {MAX_BUCKET_BITS}, got {bits!r}")
        self.bits, self.group = bits, max(1, group)
        self._random = random_bytes if random_bytes is not None else _random_bytes
        self._next = 0  # the first bucket not yet padded
        self._written = 0  # entries yielded so far
        # the real entries of the last bucket seen, not yet padded (kept in parts: a bucket with very many entries
        # arrives in many, and joining them each time would copy it over and over), and the last entry seen
        self._carry: list[tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]] = []
        self._tail = (np.empty(0, dtype=np.uint32), np.empty((0, ENTRY_SIZE), dtype=np.uint8))
        self.real = self.dummies = 0

    def add(
        self, buckets: npt.NDArray[np.uint32], entries: npt.NDArray[np.uint8]
    ) -> Iterator[tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]]:
        """Take the next real entries; pad and yield every bucket before the last one they reach."""
        if not len(buckets):
            return
        self._check(np.concatenate([self._tail[0], buckets]), np.concatenate([self._tail[1], entries]))
        self._tail = (buckets[-1:].copy(), entries[-1:].copy())
        last = int(buckets[-1])
        keep = int(np.searchsorted(buckets, last, side="left"))
        if not keep and self._carry and int(self._carry[0][0][0]) == last:  # the carried bucket goes on
            self._carry.append((buckets.copy(), entries.copy()))
            return
        # (the carried rows copied once: a view would keep the whole chunk they came in alive)
        done, self._carry = (
            [*self._carry, (buckets[:keep], entries[:keep])],
            [(buckets[keep:].copy(), entries[keep:].copy())],
        )
        yield from self._through(last, *_joined(done))

    def finish(self) -> Iterator[tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]]:
        """Pad and yield the buckets left, through the last."""
        carry, self._carry = self._carry, []
        yield from self._through(1 << self.bits, *_joined(carry))

    def _check(self, buckets: npt.NDArray[np.uint32], entries: npt.NDArray[np.uint8]) -> None:
        if int(buckets[0]) < self._next or int(buckets[-1]) >> self.bits:
            raise ValueError(f"a bucket id is out of order or does not fit in {self.bits} bits")
        hi, lo = _tag_words(entries)
        b = buckets.astype(np.int64)
        ascending = (b[1:] > b[:-1]) | (
            (b[1:] == b[:-1]) & ((hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] > lo[:-1])))
        )
        if not bool(np.all(ascending)):
            raise ValueError("entries must arrive sorted by bucket, then tag, each tag once a bucket")

    def _through(
        self, end: int, buckets: npt.NDArray[np.uint32], entries: npt.NDArray[np.uint8]
    ) -> Iterator[tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]]:
        while self._next < end:
            stop = min(end, self._next + self.group)
            cut = int(np.searchsorted(buckets, stop, side="left"))
            padded, body, dummies = _pad(self._next, stop, buckets[:cut], entries[:cut], self._random)
            self.real += cut
            self.dummies += dummies
            ends = np.cumsum(padded, dtype=np.uint64) + np.uint64(self._written)
            self._written += len(body)
            self._next = stop
            buckets, entries = buckets[cut:], entries[cut:]
            yield ends, body


@dataclasses.dataclass(frozen=True, slots=True)
class Assembled:
    """A store's body: the index (2^B + 1 offsets), the entries (n x 17), and what assembling found."""

    index: npt.NDArray[np.uint64]
    entries: npt.NDArray[np.uint8]
    real: int
    merged: int
    dummies: int
    by_status: dict[int, int]


def assemble(
    bits: int,
    buckets: npt.NDArray[np.uint32],
    tags: npt.NDArray[np.uint8],
    statuses: npt.NDArray[np.uint8],
    masks: npt.NDArray[np.uint8],
    *,
    random_bytes: Callable[[int], bytes] | None = None,
) -> Assembled:
    """Deduplicate, mask, pad and sort the entries of every bucket, in memory (a build streams them through a
    :class:`StoreWriter` instead).

    ``tags`` is n x 16; ``statuses`` the unmasked statuses (1 exact, 2 similar, 3 username only) and
    ``masks`` the byte each is XORed with. Equal tags in a bucket keep the strongest (lowest) status.
    """
    rows = entry_rows(buckets, tags, statuses, masks)
    unique = sm.sort_unique(rows.digests, rows.counts, ENTRY_ROWS)
    by_status = {int(s): int(c) for s, c in zip(*np.unique(unique.digests[:, -1], return_counts=True), strict=True)}
    padder = _Padder(bits, random_bytes, 1 << bits)
    parts = [*padder.add(*stored_entries(unique)), *padder.finish()]
    index = np.concatenate([np.zeros(1, dtype=np.uint64), *(ends for ends, _ in parts)])
    entries = np.concatenate([body for _, body in parts])
    return Assembled(index, entries, padder.real, len(rows.counts) - padder.real, padder.dummies, by_status)


def _header(
    *, bits: int, key_id: bytes, stretch: Stretch, username_entries: bool, variants: int, entries: int,
    index_checksum: int, entries_checksum: int,
) -> bytes:  # fmt: skip
    if len(key_id) != 8:
        raise ValueError("a key id is 8 bytes")
    head = _HEADER.pack(
        MAGIC, VERSION, bits, FLAG_USERNAME_ENTRIES if username_entries else 0, STRETCH_SCRYPT, variants, 0, key_id,
        stretch.n, stretch.r, stretch.p, entries, int(time.time()), index_checksum, entries_checksum,
    )  # fmt: skip
    return _sign(head)


class StoreWriter:
    """Writes a pair store beside ``path`` as its real entries arrive, sorted by bucket and then tag (each tag once a
    bucket, the status masked): each group of buckets is padded and written at once, the header last.

    Memory: the entries given at once, one bucket carried over (all of its real entries, however many parts they
    came in: about 125 bytes each while it is padded), and the dummies of at most ``group`` buckets (16 each when
    empty). :meth:`finish` fsyncs the file and returns its name; nothing replaces ``path`` until
    :func:`credcheck._atomic.replace` (or a stage) puts it in place. :meth:`abort` removes it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key_id: bytes,
        bits: int,
        stretch: Stretch,
        username_entries: bool,
        variants: int,
        random_bytes: Callable[[int], bytes] | None = None,
        group: int = 1 << 14,
    ) -> None:
        if len(key_id) != 8:
            raise ValueError("a key id is 8 bytes")
        self._padder = _Padder(bits, random_bytes, group)
        self._settings = {
            "bits": bits, "key_id": key_id, "stretch": stretch, "username_entries": username_entries,
            "variants": variants,
        }  # fmt: skip
        self.path = os.fspath(path)
        self._entries_at = HEADER_SIZE + ((1 << bits) + 1) * 8
        self._index_hash, self._entries_hash = xxhash.xxh3_64(), xxhash.xxh3_64()
        self._buckets = self._entries = 0  # written so far
        self._tmp = _atomic.temp_path_beside(self.path)
        self._file: BinaryIO | None = None
        try:
            self._file = open(self._tmp, "r+b")  # noqa: SIM115 - closed in finish/abort
            self._put(np.empty(0, dtype=np.uint64), np.empty((0, ENTRY_SIZE), dtype=np.uint8), start=True)
        except BaseException:
            self.abort()
            raise

    @property
    def real(self) -> int:
        """Real entries written so far."""
        return self._padder.real

    @property
    def dummies(self) -> int:
        """Dummy entries written so far."""
        return self._padder.dummies

    def add(self, buckets: npt.NDArray[np.uint32], entries: npt.NDArray[np.uint8]) -> None:
        """Take the next real entries (``entries`` n x 17, each bucket's after the buckets before it)."""
        for ends, body in self._padder.add(buckets, entries):
            self._put(ends, body)

    def _put(self, ends: npt.NDArray[np.uint64], body: npt.NDArray[np.uint8], *, start: bool = False) -> None:
        """Write the next buckets: each one's end in the entries, and their entries."""
        assert self._file is not None
        index = np.concatenate([np.zeros(1, dtype="<u8"), ends.astype("<u8")]) if start else ends.astype("<u8")
        body = np.ascontiguousarray(body)
        at = HEADER_SIZE + 8 * (self._buckets + (0 if start else 1))
        try:
            _atomic.pwrite_all(self._file.fileno(), index.data, at)
            _atomic.pwrite_all(self._file.fileno(), body.data, self._entries_at + self._entries * ENTRY_SIZE)
        except OSError as exc:
            raise StorageError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self._index_hash.update(index.data)
        self._entries_hash.update(body.data)
        self._buckets += len(ends)
        self._entries += len(body)

    def finish(self) -> str:
        """Pad the buckets left, write the header, fsync; return the finished file's name (not yet in place)."""
        try:
            for ends, body in self._padder.finish():
                self._put(ends, body)
            self._seal()
        except BaseException:
            self.abort()
            raise
        return self._tmp

    def _seal(self) -> None:
        assert self._file is not None
        if self._buckets != 1 << self._padder.bits:
            raise ValueError(f"a store of {self._padder.bits} bucket bits has {1 << self._padder.bits} buckets")
        head = _header(
            entries=self._entries, index_checksum=self._index_hash.intdigest(),
            entries_checksum=self._entries_hash.intdigest(), **self._settings,  # type: ignore[arg-type]
        )  # fmt: skip
        try:
            _atomic.pwrite_all(self._file.fileno(), head, 0)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as exc:
            raise StorageError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def abort(self) -> None:
        """Close and remove the unfinished file."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        _atomic.remove_quietly(self._tmp)


def write_store(
    path: str | os.PathLike[str],
    body: Assembled,
    *,
    key_id: bytes,
    bits: int,
    stretch: Stretch,
    username_entries: bool,
    variants: int,
) -> str:
    """Write an assembled store beside ``path`` (fsynced, not yet in place) and return the temporary file's name.

    :func:`credcheck._atomic.replace` puts it in place; until then the old store at ``path`` is untouched.
    """
    writer = StoreWriter(
        path, key_id=key_id, bits=bits, stretch=stretch, username_entries=username_entries, variants=variants
    )
    try:
        writer._put(body.index[1:], body.entries)
        writer._seal()
    except BaseException:
        writer.abort()
        raise
    return writer._tmp


def _parse_header(head: bytes, name: str) -> dict[str, Any]:
    if len(head) < HEADER_SIZE or head[:8] != MAGIC:
        raise ArtifactError(f"{name}: not a credcheck pair store (wrong magic or shorter than its header)")
    if struct.unpack_from("<Q", head, _CHECKSUM_AT)[0] != xxhash.xxh3_64_intdigest(head[:_CHECKSUM_AT]):
        raise ArtifactError(f"{name}: pair store header checksum mismatch: the file is corrupt")
    (_, version, bits, flags, kind, variants, _, key_id, n, r, p, entries, created, index_sum, entries_sum) = (
        _HEADER.unpack_from(head)
    )
    if version != VERSION:
        raise ArtifactError(f"{name}: pair store format version {version} is not supported (this reader knows 1)")
    if bits > MAX_BUCKET_BITS:
        raise ArtifactError(f"{name}: pair store header says {bits} bucket bits; at most {MAX_BUCKET_BITS}")
    if flags & ~FLAG_USERNAME_ENTRIES:
        raise ArtifactError(f"{name}: pair store header has unknown flags {flags:#x}")
    if kind != STRETCH_SCRYPT:
        raise ArtifactError(f"{name}: pair store header names an unknown stretch ({kind})")
    if variants > 9:
        raise ArtifactError(f"{name}: pair store header says {variants} variants; at most 9")
    try:
        stretch = Stretch(n, r, p)
    except ValueError as exc:
        raise ArtifactError(f"{name}: pair store header has impossible scrypt parameters: {exc}") from None
    return {
        "bits": bits,
        "username_entries": bool(flags & FLAG_USERNAME_ENTRIES),
        "variants": variants,
        "key_id": key_id,
        "stretch": stretch,
        "entries": entries,
        "created": created,
        "index_checksum": index_sum,
        "entries_checksum": entries_sum,
    }


def describe(info: Description, key: KeyPair | None = None) -> None:
    """Fill ``info`` for the pair store at its path: what its header records (with ``key``, whether the store was
    made with that key), then whether it opens verified."""
    info.kind, info.version = "pair store", VERSION
    fields = _parse_header(read_header(info.path, HEADER_SIZE, "pair store"), info.path)
    info.facts.update(
        entries=fields["entries"],
        buckets=1 << fields["bits"],
        bucket_bits=fields["bits"],
        key_id=fields["key_id"].hex(),
        stretch=fields["stretch"].spec,
        variants=fields["variants"],
        username_entries=fields["username_entries"],
        created=created_at(fields["created"]),
    )
    if key is not None:
        info.facts["made_with_the_key"] = fields["key_id"] == key.key_id
    info.check(lambda: PairStore(info.path).close())


def check_bucket(blob: bytes | memoryview) -> int:
    """Check a bucket's entries (a multiple of 16 entries, at least 16, tags strictly ascending); return the count.

    Raises ValueError (naming what is wrong, never the bytes) otherwise: the check a client makes on a
    bucket it is sent.
    """
    if len(blob) % ENTRY_SIZE:
        raise ValueError(f"a bucket is whole {ENTRY_SIZE}-byte entries; got {len(blob)} bytes")
    count = len(blob) // ENTRY_SIZE
    if count < BUCKET_QUANTUM or count % BUCKET_QUANTUM:
        raise ValueError(f"a bucket holds a positive multiple of {BUCKET_QUANTUM} entries; got {count}")
    hi, lo = _tag_words(np.frombuffer(blob, dtype=np.uint8).reshape(count, ENTRY_SIZE))
    if not bool(np.all((hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] > lo[:-1])))):
        raise ValueError("a bucket's tags are not strictly ascending")
    return count


def find_entry(blob: bytes | memoryview, tag: bytes) -> int | None:
    """The masked status byte of the entry with ``tag`` in a sorted bucket, or None (binary search)."""
    view = memoryview(blob)
    low, high = 0, len(view) // ENTRY_SIZE
    while low < high:
        mid = (low + high) // 2
        at = mid * ENTRY_SIZE
        probe = bytes(view[at : at + TAG_SIZE])
        if probe == tag:
            return view[at + TAG_SIZE]
        if probe < tag:
            low = mid + 1
        else:
            high = mid
    return None


class PairStore(Mapped):
    """A read-only, memory-mapped pair store: any bucket's entries in one slice, from a file it checks is unchanged."""

    kind = "pair store"
    _views = ("index",)

    def __init__(self, path: str | os.PathLike[str], *, verify: bool = True) -> None:
        fields = self._open(path, HEADER_SIZE, _parse_header)
        name = self.path
        try:
            self.bucket_bits: int = fields["bits"]
            self.username_entries: bool = fields["username_entries"]
            self.variants: int = fields["variants"]
            self.key_id: bytes = fields["key_id"]
            self.stretch: Stretch = fields["stretch"]
            self.entries: int = fields["entries"]
            self.created: int = fields["created"]
            self.buckets = 1 << self.bucket_bits
            self._entries_at = HEADER_SIZE + (self.buckets + 1) * 8
            end = self._entries_at + self.entries * ENTRY_SIZE
            mapped = self._map_file(end)
            self.index = np.frombuffer(mapped, dtype="<u8", count=self.buckets + 1, offset=HEADER_SIZE)
            if verify and xxhash.xxh3_64_intdigest(self.index.data) != fields["index_checksum"]:
                raise ArtifactError(f"{name}: pair store index checksum mismatch: the file is corrupt")
            sizes = self.index[1:].astype(np.int64) - self.index[:-1].astype(np.int64)
            if (
                int(self.index[0]) != 0
                or int(self.index[-1]) != self.entries
                or bool(np.any(sizes < BUCKET_QUANTUM))
                or bool(np.any(sizes % BUCKET_QUANTUM))
            ):
                raise ArtifactError(
                    f"{name}: pair store index is inconsistent (every bucket holds a positive multiple of "
                    f"{BUCKET_QUANTUM} entries): the file is corrupt"
                )
            if verify:
                if self._entries_checksum() != fields["entries_checksum"]:
                    raise ArtifactError(f"{name}: pair store entries checksum mismatch: the file is corrupt")
                unsorted = self._unsorted_bucket()
                if unsorted is not None:
                    raise ArtifactError(f"{name}: bucket {unsorted} of the pair store is not sorted by tag")
                # a file written to while it was read may have passed with a mix of old and new bytes
                self.ensure_unchanged()
        except BaseException:
            self.close()
            raise

    # The helpers below hold views of the map only in their own frames, so that an error raised after they
    # return leaves no export behind and close() can unmap.
    def _entries_checksum(self) -> int:
        assert self._map is not None
        with memoryview(self._map) as view:
            return xxhash.xxh3_64_intdigest(view[self._entries_at :])

    def _unsorted_bucket(self) -> int | None:
        """The first bucket whose tags are not strictly ascending, checked a window of entries at a time."""
        assert self._map is not None
        entries = np.frombuffer(self._map, dtype=np.uint8, count=self.entries * ENTRY_SIZE, offset=self._entries_at)
        entries = entries.reshape(self.entries, ENTRY_SIZE)
        for start in range(0, self.entries, _VERIFY_WINDOW):
            stop = min(self.entries, start + _VERIFY_WINDOW + 1)  # one entry of overlap with the next window
            hi, lo = _tag_words(entries[start:stop])
            ascending = (hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] > lo[:-1]))
            first = int(np.searchsorted(self.index, start + 1, side="left"))
            last = int(np.searchsorted(self.index, stop, side="left"))
            ascending[self.index[first:last].astype(np.int64) - start - 1] = True  # a bucket's first entry
            if not bool(np.all(ascending)):
                bad = int(np.flatnonzero(~ascending)[0]) + start + 1
                return int(np.searchsorted(self.index, bad, side="right")) - 1
        return None

    def bucket(self, bucket: int) -> bytes:
        """The entries of ``bucket``, concatenated in their stored order (17 bytes each), as a copy.

        An :class:`~credcheck.errors.ArtifactError` if the file changed on disk since it was opened (a store
        overwritten in place, even with the same size: its entries could be another key's), a
        :class:`~credcheck.errors.ClosedError` once it is closed: never entries from unverified bytes.
        """
        if not 0 <= bucket < self.buckets:
            raise ValueError(f"bucket {bucket} is outside 0..{self.buckets - 1}")
        mapped, index = self._map, self.__dict__.get("index")
        if mapped is None or index is None:
            raise ClosedError(f"{self.path}: the pair store is closed")
        self.ensure_unchanged()
        start, end = int(index[bucket]), int(index[bucket + 1])
        try:  # the index view keeps the map open, unless close() came first
            return mapped[self._entries_at + start * ENTRY_SIZE : self._entries_at + end * ENTRY_SIZE]
        except ValueError:
            raise ClosedError(f"{self.path}: the pair store is closed") from None

    def __enter__(self) -> PairStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<PairStore {self.path!r} bucket_bits={self.bucket_bits} entries={self.entries} "
            f"key_id={self.key_id.hex()} stretch={self.stretch.name}>"
        )
