"""FuseFilter: a sharded binary fuse filter of leaked digests, near the information-theoretic size.

A binary fuse filter (Graf & Lemire, "Binary Fuse Filters: Fast and Smaller Than Xor Filters", 2022) holds a
static set in about 1.125 x log2(1/fp_rate) bits a key -- 22.5 at fp 1e-6, where a Bloom filter needs 28.8 --
and answers every lookup, member or not, from three slots. It cannot be added to: a change rebuilds it.

So the filter is cut into 2^shard_bits shards by the digest's leading bits. A sorted stream of digests (what
the build engine gives) meets the shards one after the other, so each shard is built and written as soon as
its last key has gone by: a build holds one shard's keys and working arrays (about 50 bytes a key, shards of
2-4 million keys) whatever the whole set's size, and the output goes straight to disk. An update rebuilds only
the shards whose keys changed (:class:`FuseWriter` with a ``base``), and a resumed build only those its
interrupted run did not finish (``resume``). Slots and fingerprints come from the
digest's own bits (leaked hashes are uniformly random already); fingerprints are ``width`` bits, packed, with
``width = ceil(log2(1/fp_rate))``, so 1e-6 takes 20-bit prints, not 32. The layout is in docs/FORMAT.md.
"""

from __future__ import annotations

import math
import os
import struct
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import xxhash

from . import _atomic, _native
from ._args import choice, positive_int, probability
from ._artifact import Description, Mapped, read_header
from ._native import FUSE_ENTRY_DTYPE, FUSE_MAX_WIDTH, fuse_region_bytes
from .errors import ArtifactError, InputError, StorageError
from .hashing import DIGEST_SIZES, SCHEMES, filter_key, filter_rows, scheme_by_code

__all__ = ["FuseFilter"]

MAGIC: Final = b"CCFUSE\x00\x00"
#: The magic of a filter still being written (``.NAME.fuse-partial``): never opened as a filter.
PARTIAL_MAGIC: Final = b"CCFUSEP\x00"
VERSION: Final = 1
HEADER_SIZE: Final = 128
ARITY: Final = 3
ENTRY_SIZE: Final = FUSE_ENTRY_DTYPE.itemsize  # 48
#: Shards hold 2-4 M keys on average (fewer only when the whole set is smaller): large enough for the
#: construction's 1.125 size factor, small enough that one shard's build takes about 200 MB at most.
SHARD_ITEMS: Final = 1 << 21
MAX_SHARD_BITS: Final = 16
MAX_SEGMENT_LENGTH: Final = 1 << 18
#: Seeds tried per shard before giving up. A random shard fails with odds of 1-2% a seed (measured: 22 of 1,000
#: shards of 1,000 keys, 3 of 300 of 100,000, none of 20 of 2.5 M), so 64 failures mean a crafted set.
MAX_ATTEMPTS: Final = 64
# magic, version, scheme, arity, key size, width, shard bits, reserved, items, fp rate, min count,
# directory checksum, body length
_HEADER = struct.Struct("<8sHBBIBBHQdQQQ")
_CHECKSUM_AT: Final = HEADER_SIZE - 8
_M64: Final = (1 << 64) - 1


def fingerprint_width(fp_rate: float) -> int:
    """Bits a fingerprint needs for a false-positive rate of at most ``fp_rate`` (2^-width): 20 for 1e-6."""
    probability("fp_rate", fp_rate)
    width = max(1, math.ceil(-math.log2(fp_rate) - 1e-9))
    if width > FUSE_MAX_WIDTH:
        raise ValueError(
            f"the fuse layout holds fingerprints of at most {FUSE_MAX_WIDTH} bits (fp_rate >= 2^-{FUSE_MAX_WIDTH}, "
            f"about {2.0**-FUSE_MAX_WIDTH:.2g}); got fp_rate={fp_rate:g}: use the bloom layout"
        )
    return width


def shard_bits_for(items: int) -> int:
    """How many leading bits pick a shard for a set of ``items`` keys: shards of 2-4 M keys on average."""
    if items < 2 * SHARD_ITEMS:
        return 0
    return min(MAX_SHARD_BITS, (items // SHARD_ITEMS).bit_length() - 1)


def shard_params(items: int) -> tuple[int, int]:
    """A shard's segment length SL and SL x segment count (SCL) for ``items`` keys, as Graf & Lemire size them.

    Its slots are AL = SCL + 2 SL: about 1.125 x items for a million keys or more, more for fewer.
    """
    size = max(items, 2)
    sl = min(1 << math.floor(math.log(size) / math.log(3.33) + 2.25), MAX_SEGMENT_LENGTH)
    factor = max(1.125, 0.875 + 0.25 * math.log(1e6) / math.log(size))
    capacity = round(items * factor)
    segments = max(1, -(-capacity // sl) - (ARITY - 1))
    return sl, segments * sl


def shard_seed(shard: int, attempt: int) -> int:
    """The seed of a shard's ``attempt``-th construction (splitmix64 of both): reproducible, never the same twice."""
    z = (((shard << 32) | attempt) + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def build_shard(words: npt.NDArray[np.uint64], shard: int, width: int) -> tuple[npt.NDArray[np.uint8], Any]:
    """Build one shard from its keys' words (digest bytes 8-15); return its region and directory entry.

    The entry's offset and checksum are left for the writer. Two keys with the same word are one key to the
    filter (same slots, same fingerprint): when peeling stops the words are deduplicated (a duplicate always
    stops it) and the seeds start again, so the shard depends only on the set of words.
    """
    words = np.ascontiguousarray(words, dtype="<u8")
    deduplicated = False
    attempt = 0
    while True:
        sl, scl = shard_params(len(words))
        al = scl + 2 * sl
        region = np.empty(fuse_region_bytes(al, width), dtype=np.uint8)
        seed = shard_seed(shard, attempt)
        if _native.kernels.fuse_build(words, seed, sl, scl, width, region):
            entry = np.zeros((), dtype=FUSE_ENTRY_DTYPE)
            entry["seed"], entry["items"], entry["al"], entry["sl"], entry["scl"] = seed, len(words), al, sl, scl
            return region, entry
        if not deduplicated:
            deduplicated = True
            unique = np.unique(words)
            if len(unique) != len(words):
                words, attempt = unique, 0
                continue
        attempt += 1
        if attempt >= MAX_ATTEMPTS:
            raise InputError(
                f"fuse filter shard {shard}: no construction succeeded with {MAX_ATTEMPTS} seeds; the set looks "
                "crafted against this layout: build it with --layout bloom"
            )


def _shards_of(digests: npt.NDArray[np.uint8], shard_bits: int) -> npt.NDArray[np.int64]:
    """The shard of each digest row: its leading ``shard_bits`` bits."""
    if not shard_bits:
        return np.zeros(len(digests), dtype=np.int64)
    lead = np.ascontiguousarray(digests[:, :4]).view(">u4").ravel().astype(np.int64)
    shards: npt.NDArray[np.int64] = lead >> (32 - shard_bits)
    return shards


def _words(digests: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    words: npt.NDArray[np.uint64] = np.ascontiguousarray(digests[:, 8:16]).view("<u8").ravel()
    return words


def _sign(head: bytes) -> bytes:
    head = head.ljust(_CHECKSUM_AT, b"\x00")
    return head + struct.pack("<Q", xxhash.xxh3_64_intdigest(head))


def partial_path(target: str | os.PathLike[str]) -> str:
    """Where a fuse build of ``target`` writes until it is finished: ``.NAME.fuse-partial`` beside it."""
    path = os.path.abspath(os.fspath(target))
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.fuse-partial")


class FuseWriter:
    """Writes a fuse filter from digests that arrive in shard order (a sorted stream is), one shard at a time.

    A :class:`~credcheck._sinks.Sink`: ``add`` the rows, ``finish`` writes the directory and header and fsyncs,
    ``commit`` renames the file into place, ``abort`` leaves it for a resumed build. Memory: the current
    shard's keys (8 bytes each) and its construction (about 40 bytes more a key), never the whole set.

    The file is written in place at :func:`partial_path` (magic ``CCFUSEP``), each shard's directory entry right
    after its region, so a build that is stopped, even killed, leaves its finished shards described on disk.
    With ``resume``, those finished shards are taken instead of rebuilt; with ``base`` (the filter an update
    starts from, opened and verified), its shards are. Either way a shard is taken only if it holds exactly as
    many keys as the shard being built and every one of them is found in it (its checksum verified first), so a
    changed input or an edited file can cost a rebuild, never a false negative.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        items: int,
        scheme: str = "sha1",
        fp_rate: float = 1e-6,
        min_count: int = 1,
        base: FuseFilter | None = None,
        resume: bool = False,
    ) -> None:
        choice("scheme", scheme, tuple(DIGEST_SIZES))
        self.path = os.fspath(path)
        self.scheme, self.key_size, self.fp_rate, self.min_count = scheme, DIGEST_SIZES[scheme], fp_rate, min_count
        self.width = fingerprint_width(fp_rate)
        self.shard_bits = shard_bits_for(items)
        same_prints = base is not None and (base.scheme, base.width) == (scheme, self.width)
        if base is not None and same_prints and abs(base.shard_bits - self.shard_bits) <= 1:
            # keep the base's sharding while its shards stay within twice their size: they can then be reused
            self.shard_bits = base.shard_bits
        self._base = base if same_prints and base is not None and base.shard_bits == self.shard_bits else None
        self.shards = 1 << self.shard_bits
        self.entries = np.zeros(self.shards, dtype=FUSE_ENTRY_DTYPE)
        self.items = 0
        self.reused = self.built = self.resumed = 0
        self._body_at = HEADER_SIZE + ENTRY_SIZE * self.shards
        self._written = 0  # bytes of the body written so far
        self._current = 0  # the shard whose words are being gathered
        self._pending: list[npt.NDArray[np.uint64]] = []
        self._partial = partial_path(self.path)
        self._fd = _atomic.open_beside(self._partial, self.path)
        try:
            self._finished = self._finished_shards() if resume else np.zeros(0, dtype=FUSE_ENTRY_DTYPE)
            if not len(self._finished):
                os.ftruncate(self._fd, 0)
                _atomic.pwrite_all(self._fd, self._header(PARTIAL_MAGIC, 0, 0, 0), 0)
                os.ftruncate(self._fd, self._body_at)
            else:  # whatever the directory holds after the finished shards is from an older run
                done = len(self._finished)
                _atomic.pwrite_all(self._fd, bytes(ENTRY_SIZE * (self.shards - done)), HEADER_SIZE + ENTRY_SIZE * done)
        except OSError as exc:
            self._close()
            raise StorageError(f"cannot write {self._partial}: {exc.strerror or exc}") from exc
        except BaseException:
            self._close()
            raise

    def _header(self, magic: bytes, items: int, directory_checksum: int, body_len: int) -> bytes:
        code = SCHEMES[self.scheme].code
        fields = (self.key_size, self.width, self.shard_bits, 0, items, self.fp_rate, self.min_count)
        return _sign(_HEADER.pack(magic, VERSION, code, ARITY, *fields, directory_checksum, body_len))

    def _finished_shards(self) -> npt.NDArray[Any]:
        """The directory entries of the shards an interrupted build of the same kind finished, in order (the
        first shard it did not finish ends them); none when the partial file is not one of this build's kind."""
        none = np.zeros(0, dtype=FUSE_ENTRY_DTYPE)
        head = os.pread(self._fd, HEADER_SIZE, 0)
        if len(head) < HEADER_SIZE or head != self._header(PARTIAL_MAGIC, 0, 0, 0):
            return none  # another scheme, width, rate, sharding or threshold: nothing to take
        raw = os.pread(self._fd, ENTRY_SIZE * self.shards, HEADER_SIZE)
        if len(raw) != ENTRY_SIZE * self.shards:
            return none
        entries = np.frombuffer(raw, dtype=FUSE_ENTRY_DTYPE)
        return entries[: _finished_run(entries, self.width)].copy()

    def add(self, digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64] | None = None) -> None:
        """Take the next rows: digests in shard order (each shard's rows after the previous shard's)."""
        if len(digests):
            self._add_words(_shards_of(digests, self.shard_bits), _words(digests))

    def _add_words(self, shards: npt.NDArray[Any], words: npt.NDArray[np.uint64]) -> None:
        """Take the next keys as their shards (nondecreasing) and words (digest bytes 8-15)."""
        if int(shards[0]) < self._current or bool(np.any(shards[1:] < shards[:-1])):
            raise ArtifactError("digests arrived out of shard order (the input changed mid-build)")
        cuts = np.flatnonzero(shards[1:] != shards[:-1]) + 1
        for lo, hi in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(shards)])), strict=True):
            shard = int(shards[lo])
            while self._current < shard:
                self._flush()
            self._pending.append(words[lo:hi].copy())

    def _flush(self) -> None:
        """Take, copy or build the current shard; write its region and then its entry; move to the next shard."""
        shard = self._current
        words = np.concatenate(self._pending) if self._pending else np.empty(0, dtype=np.uint64)
        self._pending = []
        try:
            if self._resumed(shard, words):
                return
            region, entry = self._from_base(shard, words)
            if region is None:
                region, entry = build_shard(words, shard, self.width)
                self.built += 1
            else:
                self.reused += 1
            entry["offset"] = self._written
            entry["checksum"] = xxhash.xxh3_64_intdigest(region.data)
            _atomic.pwrite_all(self._fd, memoryview(region), self._body_at + self._written)
            _atomic.pwrite_all(self._fd, entry.tobytes(), HEADER_SIZE + ENTRY_SIZE * shard)
        except OSError as exc:
            raise StorageError(f"cannot write {self._partial}: {exc.strerror or exc}") from exc
        self._took(shard, entry, len(region))

    def _took(self, shard: int, entry: Any, size: int) -> None:
        self.entries[shard] = entry
        self.items += int(entry["items"])
        self._written += size
        self._current += 1

    def _resumed(self, shard: int, words: npt.NDArray[np.uint64]) -> bool:
        """Whether the interrupted build's region of this shard, already in place, holds exactly these keys."""
        if shard >= len(self._finished):
            return False
        entry = self._finished[shard]
        items = int(entry["items"])
        # sized as a shard of these keys would be (so an edited entry cannot make us read gigabytes), then checked
        if items == len(words) and (int(entry["sl"]), int(entry["scl"])) == shard_params(items):
            size = fuse_region_bytes(int(entry["al"]), self.width)
            region = np.frombuffer(os.pread(self._fd, size, self._body_at + self._written), dtype=np.uint8)
            intact = len(region) == size and xxhash.xxh3_64_intdigest(region.data) == int(entry["checksum"])
        else:
            intact = False
        if intact and _holds_exactly(region, entry, words, self.width):
            self.resumed += 1
            self._took(shard, entry, size)
            return True
        # from here on every shard is written afresh: forget what the interrupted build finished after this one
        _atomic.pwrite_all(self._fd, bytes(ENTRY_SIZE * (self.shards - shard)), HEADER_SIZE + ENTRY_SIZE * shard)
        self._finished = self._finished[:0]
        return False

    def _from_base(self, shard: int, words: npt.NDArray[np.uint64]) -> tuple[Any, Any]:
        """The base's region and entry for this shard if it holds exactly these keys, else (None, None)."""
        if self._base is None:
            return None, None
        entry = self._base.entries[shard].copy()
        start = int(entry["offset"])
        region = self._base.body[start : start + fuse_region_bytes(int(entry["al"]), self.width)]
        if not _holds_exactly(region, entry, words, self.width):
            return None, None
        return region, entry

    def finish(self) -> None:
        """Build the remaining shards, write the directory and the header, and fsync."""
        try:
            while self._current < self.shards:
                self._flush()
            directory = self.entries.tobytes()
            head = self._header(MAGIC, self.items, xxhash.xxh3_64_intdigest(directory), self._written)
            try:
                os.ftruncate(self._fd, self._body_at + self._written)
                _atomic.pwrite_all(self._fd, directory, HEADER_SIZE)
                _atomic.pwrite_all(self._fd, head, 0)
                os.fsync(self._fd)
            except OSError as exc:
                raise StorageError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        except BaseException:
            self.abort()
            raise
        self._close()

    def commit(self) -> None:
        """Put the finished filter in place of the previous one."""
        _atomic.replace(self._partial, self.path)

    def abort(self) -> None:
        """Stop writing; the previous filter at the path stays as it was. The partial file stays for a resumed
        build when it holds a finished shard, and goes when it holds none."""
        self._close()
        if self._current == 0:
            _atomic.remove_quietly(self._partial)

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _finished_run(entries: npt.NDArray[Any], width: int) -> int:
    """How many shards a partial file's directory says were finished: its entries in order, each written (slots
    set) with its region where the one before ends; the first that is not ends them."""
    done = offset = 0
    for entry in entries:
        if int(entry["al"]) == 0 or int(entry["offset"]) != offset:
            break
        offset += fuse_region_bytes(int(entry["al"]), width)
        done += 1
    return done


def _holds_exactly(region: npt.NDArray[np.uint8], entry: Any, words: npt.NDArray[np.uint64], width: int) -> bool:
    """Whether a shard's region holds exactly these keys: as many as its entry says, every one found in it."""
    if int(entry["items"]) != len(words):
        return False
    directory = entry.copy()
    directory["offset"] = 0
    probe = np.zeros((len(words), 16), dtype=np.uint8)  # a key's shard bits do not matter in a one-shard lookup
    probe[:, 8:16] = words.astype("<u8").view(np.uint8).reshape(-1, 8)
    found = np.empty(len(words), dtype=np.uint8)
    try:
        hits = _native.kernels.fuse_contains_many(region, directory.tobytes(), 0, width, probe, 16, found)
    except ValueError:  # an entry that does not fit its region (an edited partial file): not taken
        return False
    return hits == len(words)


class FuseFilter(Mapped):
    """A read-only, memory-mapped sharded binary fuse filter: ``in``, ``contains_many``, no false negatives.

    Opening verifies the header, the exact size, the directory (checksum and structure: every shard's
    parameters possible, its region where the previous one ends) and, unless ``verify=False``, every shard's
    checksum. False positives come at a rate of 2^-width (``expected_fp_rate``), at most the ``fp_rate`` asked.
    """

    kind = "fuse filter"
    layout: Final = "fuse"  # the filter layout (credcheck.bloom.BloomFilter is the other)
    _views = ("body", "directory", "entries", "_body_view", "_directory_view")

    def __init__(self, path: str | os.PathLike[str], *, verify: bool = True) -> None:
        fields = self._open(path, HEADER_SIZE, _parse_header)
        name = self.path
        try:
            self.scheme: str = fields["scheme"]
            self.key_size: int = DIGEST_SIZES[self.scheme]
            self.width: int = fields["width"]
            self.shard_bits: int = fields["shard_bits"]
            self.items: int = fields["items"]
            self.fp_rate: float = fields["fp_rate"]
            self.min_count: int = fields["min_count"]
            body_at = HEADER_SIZE + (ENTRY_SIZE << self.shard_bits)
            body_len = fields["body_len"]
            mapped = self._map_file(body_at + body_len)
            self.directory = np.frombuffer(mapped, dtype=np.uint8, count=body_at - HEADER_SIZE, offset=HEADER_SIZE)
            self.entries = self.directory.view(FUSE_ENTRY_DTYPE)
            self.body = np.frombuffer(mapped, dtype=np.uint8, count=body_len, offset=body_at)
            # what the kernels are handed: a memoryview's buffer is quicker to take than an array's
            self._body_view, self._directory_view = memoryview(self.body.data), memoryview(self.directory.data)
            if xxhash.xxh3_64_intdigest(self.directory.data) != fields["directory_checksum"]:
                raise ArtifactError(f"{name}: fuse filter directory checksum mismatch: the file is corrupt")
            problem = self._structure_problem(body_len)
            if problem is not None:
                raise ArtifactError(f"{name}: fuse filter is inconsistent ({problem}): the file is corrupt")
            if verify:
                self._verify_regions()
                self.ensure_unchanged()  # written to while it was read: the checksums may have passed on a mix
        except BaseException:
            self.close()
            raise

    def _structure_problem(self, body_len: int) -> str | None:
        """What is impossible in the directory, or None: lookups then stay inside each shard's region."""
        e = self.entries
        sl, scl, al = (e[f].astype(np.int64) for f in ("sl", "scl", "al"))
        if bool(np.any(e["reserved"])):
            return "a reserved field is not zero"
        if bool(np.any((sl < 4) | (sl > MAX_SEGMENT_LENGTH) | ((sl & (sl - 1)) != 0))):
            return "a segment length is not a power of two between 4 and 2^18"
        if bool(np.any((scl < sl) | (scl % sl != 0) | (al != scl + 2 * sl))):
            return "a shard's slot counts do not fit its segments"
        if bool(np.any(e["items"].astype(np.int64) > al)):
            return "a shard holds more keys than slots"
        if int(e["items"].astype(np.uint64).sum()) != self.items:
            return "the shards' keys do not add up to the header's"
        sizes = 8 * ((al * self.width + 63) // 64) + 8
        ends = np.cumsum(sizes)
        if bool(np.any(e["offset"].astype(np.int64) != ends - sizes)) or int(ends[-1]) != body_len:
            return "the shards' regions do not follow one another to the end of the body"
        return None

    def _verify_regions(self) -> None:
        """Each shard's checksum, and the bits past its last slot zero (a writer leaves them so)."""
        for shard, e in enumerate(self.entries):
            start = int(e["offset"])
            end = start + fuse_region_bytes(int(e["al"]), self.width)
            region = self.body[start:end]
            if xxhash.xxh3_64_intdigest(region.data) != int(e["checksum"]):
                raise ArtifactError(f"{self.path}: fuse filter shard {shard} checksum mismatch: the file is corrupt")
            used = int(e["al"]) * self.width
            tail = region[used // 8 :]
            if int(tail[0]) >> (used % 8) or bool(tail[1:].any()):
                raise ArtifactError(f"{self.path}: fuse filter shard {shard} has bits past its last slot")

    # -- lookups --------------------------------------------------------------------------------------

    def _rows(self, keys: Any) -> npt.NDArray[np.uint8]:
        return filter_rows(keys, self.scheme)

    def _closed(self) -> ArtifactError:
        return ArtifactError(f"fuse filter {self.path!r} is closed")

    def contains_many(self, keys: Any) -> npt.NDArray[np.bool_]:
        """Return a bool array: for each key, whether it may be in the filter (False is certain)."""
        rows = self._rows(keys)
        try:
            body, directory = self._body_view, self._directory_view
        except AttributeError:
            raise self._closed() from None
        self.ensure_unchanged()
        out = np.empty(len(rows), dtype=np.bool_)
        found = out.view(np.uint8)
        _native.kernels.fuse_contains_many(body, directory, self.shard_bits, self.width, rows, self.key_size, found)
        return out

    def __contains__(self, key: object) -> bool:
        try:
            body, directory = self._body_view, self._directory_view
        except AttributeError:
            raise self._closed() from None
        raw = key if type(key) is bytes and len(key) == self.key_size else filter_key(key, self.scheme)
        return _native.kernels.fuse_contains(body, directory, self.shard_bits, self.width, raw)

    # -- what it is -----------------------------------------------------------------------------------

    @property
    def approx_items(self) -> int:
        """Keys the filter holds (exact: a fuse filter is built from its whole set)."""
        return self.items

    @property
    def size_in_bits(self) -> int:
        """Bits of the file: header, directory and shards."""
        return self.identity.size * 8

    @property
    def bits_per_item(self) -> float:
        """Bits of the file per key held."""
        return self.size_in_bits / max(self.items, 1)

    def expected_fp_rate(self) -> float:
        """The false-positive rate of the layout: 2^-width."""
        return 2.0**-self.width

    @classmethod
    def build(
        cls,
        path: str | os.PathLike[str],
        digests: npt.NDArray[np.uint8],
        *,
        fp_rate: float = 1e-6,
        scheme: str = "sha1",
        min_count: int = 1,
    ) -> FuseFilter:
        """Write a filter of an n x digest-size array of digests to ``path`` atomically, and open it.

        The rows need not be sorted or distinct. The whole-file lock beside ``path`` is held while writing.
        """
        size = DIGEST_SIZES[choice("scheme", scheme, tuple(DIGEST_SIZES))]
        positive_int("min_count", min_count)
        rows = np.ascontiguousarray(digests)
        if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != size:
            raise ValueError(f"a {scheme} filter is built from an n x {size} uint8 array, got shape {rows.shape}")
        target = os.path.abspath(os.fspath(path))
        with _atomic.lock_beside([target]):
            writer = FuseWriter(target, items=len(rows), scheme=scheme, fp_rate=fp_rate, min_count=min_count)
            try:
                if len(rows):  # grouped by shard (a radix sort of 16-bit shard numbers), words only: 8 bytes a key
                    shards = _shards_of(rows, writer.shard_bits).astype(np.uint16)
                    order = np.argsort(shards, kind="stable")
                    writer._add_words(shards[order], _words(rows)[order])
                writer.finish()
            except BaseException:
                writer.abort()
                raise
            writer.commit()
        return cls(target)

    def __enter__(self) -> FuseFilter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<FuseFilter scheme={self.scheme} items={self.items} fp_rate={self.fp_rate:g} width={self.width} "
            f"shards={1 << self.shard_bits} path={self.path!r}>"
        )


def describe(info: Description) -> None:
    """Fill ``info`` for the fuse filter at its path: what its header records, then whether it opens verified."""
    info.kind, info.version = "fuse filter", VERSION
    fields = _parse_header(read_header(info.path, HEADER_SIZE, "filter"), info.path)
    items = fields["items"]
    info.facts.update(
        scheme=fields["scheme"],
        items=items,
        fp_rate=fields["fp_rate"],
        bits_per_hash=round(8 * info.size / items, 2) if info.size and items else None,  # the whole file's
        fingerprint_bits=fields["width"],
        shards=1 << fields["shard_bits"],
        min_count=fields["min_count"],
    )
    info.check(lambda: FuseFilter(info.path).close())


def describe_partial(info: Description) -> None:
    """Fill ``info`` for a fuse build's partial file (``.NAME.fuse-partial``): the filter it is building and the
    shards it finished, each of which verifies if its region passes its checksum (what a resume takes)."""
    info.kind, info.version = "fuse filter build in progress", VERSION
    fields = _parse_header(read_header(info.path, HEADER_SIZE, "partial fuse filter"), info.path, PARTIAL_MAGIC)
    shards, width = 1 << fields["shard_bits"], fields["width"]
    info.facts.update(
        scheme=fields["scheme"], fp_rate=fields["fp_rate"], fingerprint_bits=width, shards=shards,
        min_count=fields["min_count"],
    )  # fmt: skip
    with _atomic.open_for_reading(info.path, "partial fuse filter") as fh:
        raw = os.pread(fh.fileno(), ENTRY_SIZE * shards, HEADER_SIZE)
    entries = np.frombuffer(raw[: len(raw) // ENTRY_SIZE * ENTRY_SIZE], dtype=FUSE_ENTRY_DTYPE)
    done = _finished_run(entries, width)
    info.facts.update(shards_finished=done, items_finished=int(entries[:done]["items"].astype(np.uint64).sum()))

    def finished_shards_intact() -> None:
        body_at = HEADER_SIZE + ENTRY_SIZE * shards
        with _atomic.open_for_reading(info.path, "partial fuse filter") as fh:
            for shard, entry in enumerate(entries[:done]):
                size = fuse_region_bytes(int(entry["al"]), width)
                region = os.pread(fh.fileno(), size, body_at + int(entry["offset"]))
                if len(region) != size or xxhash.xxh3_64_intdigest(region) != int(entry["checksum"]):
                    why = "fails its checksum" if len(region) == size else "is cut short"
                    raise ArtifactError(f"{info.path}: finished shard {shard} {why}: a resume builds it again")

    info.check(finished_shards_intact)


def _parse_header(head: bytes, name: str, magic: bytes = MAGIC) -> dict[str, Any]:
    """Check a fuse filter header (``magic``: the partial file's, for a build in progress) and return its fields;
    raise ArtifactError naming what is wrong."""
    if len(head) < HEADER_SIZE:
        raise ArtifactError(f"{name}: too short to be a credcheck fuse filter ({len(head)} bytes)")
    if head[:8] != magic:
        raise ArtifactError(f"{name}: not a credcheck fuse filter (wrong magic)")
    (stored,) = struct.unpack_from("<Q", head, _CHECKSUM_AT)
    if xxhash.xxh3_64_intdigest(head[:_CHECKSUM_AT]) != stored:
        raise ArtifactError(f"{name}: fuse filter header checksum mismatch: the file is corrupt")
    (_, version, code, arity, key_size, width, shard_bits, reserved, items, fp_rate, min_count, dir_sum, body_len) = (
        _HEADER.unpack_from(head)
    )
    if version != VERSION:
        raise ArtifactError(
            f"{name}: fuse filter format version {version} is not supported (this credcheck reads {VERSION})"
        )
    info = scheme_by_code(code)
    if info is None or info.digest_size != key_size:
        raise ArtifactError(f"{name}: unknown hash scheme code {code} / key size {key_size}")
    if arity != ARITY or not 1 <= width <= FUSE_MAX_WIDTH or shard_bits > MAX_SHARD_BITS or reserved:
        raise ArtifactError(
            f"{name}: impossible fuse filter parameters (arity {arity}, width {width}, shard bits {shard_bits})"
        )
    if not (0.0 < fp_rate < 1.0 and min_count >= 1):  # (NaN fails the first test too)
        raise ArtifactError(f"{name}: impossible fuse filter parameters (fp_rate={fp_rate!r}, min_count={min_count})")
    if fp_rate < 2.0**-FUSE_MAX_WIDTH or width != fingerprint_width(fp_rate):
        # narrower prints than the rate needs would answer "leaked" far more often than the header says
        raise ArtifactError(f"{name}: {width}-bit fingerprints cannot give the false-positive rate {fp_rate:g}")
    return {
        "scheme": info.name,
        "width": width,
        "shard_bits": shard_bits,
        "items": items,
        "fp_rate": fp_rate,
        "min_count": min_count,
        "directory_checksum": dir_sum,
        "body_len": body_len,
    }
