"""BloomFilter: a space-optimal Bloom filter over leaked digests, with batch operations and a file format.

Bit positions come from the digest's own bits (leaked hashes are uniformly random already): the first
16 bytes of a key give two 64-bit words h1, h2 and ``pos_i = high64((h1 + i*(h2|1)) * m)``. Filters of
scheme ``"xxh3"`` accept arbitrary keys and hash each into 16 bytes with xxh3-128 first. The layout and
the file are documented byte by byte in docs/FORMAT.md.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import xxhash

from . import _atomic, _native
from ._args import choice, machine_memory, positive_int, probability
from ._artifact import Description, Mapped, read_header
from ._frames import entry_point
from ._native import NAME as KERNELS
from .errors import ArtifactError, CapacityError, ClosedError
from .hashing import FILTER_SCHEMES, filter_key, filter_rows, scheme_by_code

__all__ = ["KERNELS", "BloomFilter", "describe"]

MAGIC: Final = b"CCBLOOM\x00"
VERSION: Final = 1
HEADER_SIZE: Final = 128
# magic, version, scheme, k, key size, m, capacity, items, fp rate, min count, body length, body checksum
_HEADER = struct.Struct("<8sHBBIQQQdQQQ")
#: What a filter is made of besides its bits and item count: the header's fields a copy or an opened file passes on
_PARAMETERS: Final = ("m", "k", "capacity", "fp_rate", "scheme", "min_count")
_HEADER_CHECKSUM = struct.Struct("<Q")
_CHECKSUM_AT: Final = HEADER_SIZE - _HEADER_CHECKSUM.size


Key = bytes | bytearray | memoryview | str
_BUFFERS: Final = (bytes, bytearray, memoryview)  # a tuple: isinstance() with a union builds it per call


def optimal_parameters(capacity: int, fp_rate: float) -> tuple[int, int]:
    """Return ``(m, k)``: the bit count (a multiple of 64) and the number of positions per item."""
    positive_int("capacity", capacity)
    probability("fp_rate", fp_rate)
    m = math.ceil(-capacity * math.log(fp_rate) / math.log(2) ** 2)
    k = max(1, min(64, round(m / capacity * math.log(2))))
    # The k positions are an arithmetic progression (double hashing). In a small filter a key's step is
    # close to a multiple of m about once in k*m/3 keys, and then its positions fall on a few bits only:
    # that adds about 3/(k*m) to the false-positive rate (measured: 8 items at 1e-6 gave 8.7e-4, 100 items
    # 5.5e-5). A floor of 40/(k*fp_rate) bits keeps the excess under a tenth of the rate asked for; it
    # binds only below about 2/(k*fp_rate*log2(1/fp_rate)) items (about 75,000 at 1e-6, 400 at 1e-3).
    m = max(m, math.ceil(40 / (k * fp_rate)), 64)
    return (m + 63) // 64 * 64, k


def items_within(m: int, k: int, fp_rate: float) -> int:
    """The most items ``m`` bits and ``k`` positions hold before the expected false-positive rate
    ``(1 - e^(-k*n/m))^k`` passes ``fp_rate`` (0 for a rate that is not a probability: a header that
    open() refuses)."""
    if not 0.0 < fp_rate < 1.0:
        return 0
    return math.floor(-m / k * math.log1p(-(fp_rate ** (1 / k))))


def check_size(capacity: int, fp_rate: float) -> tuple[int, int]:
    """``optimal_parameters``, refusing with CapacityError a filter larger than this machine's memory.

    A filter is filled in memory, so one that cannot fit would fail only after the whole input was read
    (or with a MemoryError, or the kernel's OOM killer): this is checked before anything is read.
    """
    m, k = optimal_parameters(capacity, fp_rate)
    memory = machine_memory()
    if memory is not None and m // 8 > memory:
        raise CapacityError(
            f"a filter for {capacity:,} items at false-positive rate {fp_rate:g} needs {m / 8 / 2**30:,.1f} GiB, "
            f"more than this machine's {memory / 2**30:,.1f} GiB of memory; ask for a smaller capacity or a "
            f"higher false-positive rate"
        )
    return m, k


class BloomFilter:
    """A set-like Bloom filter of digests: ``add``, ``update``, ``in``, ``contains_many``, ``|``, ``save``/``open``.

    Never gives a false negative; gives a false positive with about the ``fp_rate`` it was created for,
    as long as it holds no more than :attr:`room` items (``capacity``, or more for a small filter).
    """

    layout: Final = "bloom"  # the filter layout (credcheck.fuse.FuseFilter is the other)

    __slots__ = (
        "_bits",
        "_digest_len",
        "_items",
        "_source",
        "capacity",
        "fp_rate",
        "k",
        "m",
        "min_count",
        "path",
        "scheme",
    )

    def __init__(
        self,
        *,
        m: int,
        k: int,
        capacity: int,
        fp_rate: float,
        scheme: str = "sha1",
        min_count: int = 1,
        items: int = 0,
        bits: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        choice("scheme", scheme, FILTER_SCHEMES)
        if m < 64 or m % 64:
            raise ValueError(f"m must be a positive multiple of 64, got {m}")
        if not 1 <= k <= 64:
            raise ValueError(f"k must be between 1 and 64, got {k}")
        self.m, self.k, self.capacity, self.fp_rate = m, k, capacity, fp_rate
        self.scheme, self.min_count, self._items = scheme, min_count, items
        # the raw keys the `in` fast path takes
        self._digest_len = -1 if scheme == "xxh3" else FILTER_SCHEMES[scheme].digest_size
        self._bits = np.zeros(m // 8, dtype=np.uint8) if bits is None else bits
        self._source: _FilterFile | None = None  # the file an opened filter maps
        self.path: str | None = None

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def create(cls, capacity: int, fp_rate: float = 1e-6, *, scheme: str = "sha1", min_count: int = 1) -> BloomFilter:
        """Return an empty filter sized for ``capacity`` items at false-positive rate ``fp_rate``.

        A filter that would not fit in this machine's memory is a :class:`CapacityError`, raised before
        anything is allocated.
        """
        m, k = check_size(capacity, fp_rate)
        try:
            bits = np.zeros(m // 8, dtype=np.uint8)
        except MemoryError:
            raise CapacityError(
                f"not enough memory for a filter of {m // 8:,} bytes ({capacity:,} items at {fp_rate:g})"
            ) from None
        return cls(m=m, k=k, capacity=capacity, fp_rate=fp_rate, scheme=scheme, min_count=min_count, bits=bits)

    @property
    def key_size(self) -> int:
        """Bytes per key: 20 for SHA-1 digests, 16 for NTLM digests and xxh3 keys."""
        return FILTER_SCHEMES[self.scheme].digest_size

    @property
    def size_in_bits(self) -> int:
        """Number of bits in the filter."""
        return self.m

    @property
    def approx_items(self) -> int:
        """Items added so far (each add that set a new bit; exact for distinct digests up to false positives)."""
        return self._items

    @property
    def room(self) -> int:
        """How many items the filter holds within its false-positive rate: at least ``capacity``, and more where
        its bits were rounded up (a small filter gets a floor of bits, see :func:`optimal_parameters`)."""
        return max(self.capacity, items_within(self.m, self.k, self.fp_rate))

    @property
    def over_capacity(self) -> bool:
        """True when the filter holds more items than it has :attr:`room` for (its false-positive rate drifts)."""
        return self._items > self.room

    @property
    def version(self) -> str | None:
        """The corpus version of an opened filter file (its header's digest, as a store's), or None for a filter
        made in memory: it has no file to be a version of."""
        source = self._source
        return None if source is None else source.version

    def expected_fp_rate(self) -> float:
        """The false-positive rate the current fill gives: (fraction of set bits) ** k."""
        ones = (
            int(np.bitwise_count(self._bits).sum())
            if hasattr(np, "bitwise_count")
            else int(np.unpackbits(self._bits).sum())
        )
        return float((ones / self.m) ** self.k)

    def __repr__(self) -> str:
        where = f", path={self.path!r}" if self.path else ""
        return (
            f"<BloomFilter scheme={self.scheme} items={self._items} capacity={self.capacity} "
            f"fp_rate={self.fp_rate:g} m={self.m} k={self.k}{where}>"
        )

    # -- keys ---------------------------------------------------------------------------------------

    def _key(self, key: Any) -> bytes:
        return filter_key(key, self.scheme)

    def _keys(self, keys: Any) -> npt.NDArray[np.uint8]:
        """Normalise many keys to a contiguous n x key_size uint8 array."""
        return filter_rows(keys, self.scheme)

    # -- set operations -----------------------------------------------------------------------------

    def _writable(self) -> None:
        if not self._bits.flags.writeable:
            raise ArtifactError(f"filter {self.path!r} is opened read-only; copy() it to change it")

    @entry_point  # keys are digests, or (xxh3) passwords and other secrets
    def add(self, key: Key) -> None:
        """Add one key: a digest (bytes or hex) for sha1/ntlm filters, any str/bytes for xxh3 filters."""
        self._writable()
        self._items += _native.kernels.add(self._bits, self.m, self.k, self._key(key), self.key_size)

    @entry_point
    def update(self, keys: npt.NDArray[np.uint8] | Iterable[Key] | Key) -> None:
        """Add many keys: an n x key_size uint8 array, or an iterable of keys."""
        self._writable()
        arr = self._keys(keys)
        self._items += _native.kernels.add(self._bits, self.m, self.k, arr, self.key_size)

    def __contains__(self, key: object) -> bool:
        if type(key) is bytes and len(key) == self._digest_len:  # the common case, without _key()'s checks
            try:  # not contextlib.suppress: it would cost more than the lookup
                return _native.kernels.contains(self._bits, self.m, self.k, key)
            except ValueError:  # a closed filter's empty bits: said by _contains, below
                pass
        try:
            return self._contains(key)
        except BaseException:
            del key  # this frame goes with the error too: it must not keep the key
            raise

    @entry_point  # what the fast path above does not answer, under the frame clearing it leaves out for speed
    def _contains(self, key: object) -> bool:
        bits = self._bits  # held for the call: a close() meanwhile leaves the map to this reference
        self._check_open(bits)
        return bool(_native.kernels.contains(bits, self.m, self.k, self._key(key)))

    def _check_open(self, bits: npt.NDArray[np.uint8]) -> None:
        if not len(bits):
            raise ClosedError(f"filter {self.path!r} is closed")

    def changed(self) -> str | None:
        """For an opened filter, why its file is no longer the one opened (written to, resized), else None.

        One ``fstat`` and a 128-byte compare; the size is checked before the map is touched, so a shortened
        file is reported here rather than as a SIGBUS. :meth:`contains_many` checks it on every call; the
        single-key ``in`` does not (it costs more than the lookup): replace filters atomically (docs/DEPLOY.md).
        """
        source = self._source  # close() may run meanwhile
        return None if source is None else source.changed()

    @entry_point
    def contains_many(self, keys: npt.NDArray[np.uint8] | Iterable[Key]) -> npt.NDArray[np.bool_]:
        """Return a bool array: for each key, whether it may be in the filter (False is certain).

        A :class:`~credcheck.errors.ClosedError` once the filter is closed; a call already running when
        :meth:`close` is called answers in full (see :meth:`close`).
        """
        bits = self._bits  # held for the call: a close() meanwhile leaves the map to this reference
        self._check_open(bits)
        why = self.changed()
        if why is not None:
            self._check_open(self._bits)  # closed while it looked: say so, not "changed on disk"
            raise ArtifactError(f"{self.path}: the filter changed on disk after it was opened ({why}); open it again")
        arr = self._keys(keys)
        out = np.empty(len(arr), dtype=np.bool_)
        _native.kernels.contains_many(bits, self.m, self.k, arr, self.key_size, out.view(np.uint8))
        return out

    def _check_compatible(self, other: object) -> BloomFilter:
        if not isinstance(other, BloomFilter):
            raise TypeError(f"cannot combine a BloomFilter with {type(other).__name__}")
        if (self.m, self.k, self.scheme) != (other.m, other.k, other.scheme):
            raise ValueError(
                "filters differ in size, k or scheme: "
                f"({self.m}, {self.k}, {self.scheme}) vs ({other.m}, {other.k}, {other.scheme})"
            )
        return other

    def copy(self) -> BloomFilter:
        """Return an independent, writable in-memory copy."""
        parameters = {field: getattr(self, field) for field in _PARAMETERS}
        return BloomFilter(**parameters, items=self._items, bits=self._bits.copy())

    def __or__(self, other: BloomFilter) -> BloomFilter:
        result = self.copy()
        result |= other
        return result

    def __ior__(self, other: BloomFilter) -> BloomFilter:
        other = self._check_compatible(other)
        self._writable()
        np.bitwise_or(self._bits, other._bits, out=self._bits)
        self._items = self._estimate_items()
        self.min_count = max(self.min_count, other.min_count)
        return self

    def _estimate_items(self) -> int:
        """Estimate the distinct items held from the fill (Swamidass & Baldi)."""
        ones = int(np.unpackbits(self._bits).sum())
        if ones >= self.m:
            return self.capacity * 64
        return round(-self.m / self.k * math.log1p(-ones / self.m))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BloomFilter):
            return NotImplemented
        return (self.m, self.k, self.scheme) == (other.m, other.k, other.scheme) and bool(
            np.array_equal(self._bits, other._bits)
        )

    __hash__ = None  # type: ignore[assignment]

    # -- files --------------------------------------------------------------------------------------

    def _header(self, checksum: int) -> bytes:
        code = FILTER_SCHEMES[self.scheme].code
        head = _HEADER.pack(
            MAGIC,
            VERSION,
            code,
            self.k,
            self.key_size,
            self.m,
            self.capacity,
            self._items,
            self.fp_rate,
            self.min_count,
            len(self._bits),
            checksum,
        ).ljust(_CHECKSUM_AT, b"\x00")
        return head + _HEADER_CHECKSUM.pack(xxhash.xxh3_64_intdigest(head))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the filter to ``path`` atomically (temporary file, fsync, rename), under the lock beside it (a
        build of the same file at the same time fails at once instead of interleaving)."""
        target = os.path.abspath(os.fspath(path))
        with _atomic.lock_beside([target]):
            _atomic.replace(self.save_beside(target), target)

    def save_beside(self, path: str | os.PathLike[str]) -> str:
        """Write the filter to a temporary file beside ``path`` (fsynced) and return its name, replacing nothing."""
        if self.over_capacity:
            raise CapacityError(
                f"the filter holds {self._items} items but has room for {self.room} (designed for "
                f"{self.capacity}); its false-positive rate is now about {self.expected_fp_rate():.2g} instead of "
                f"{self.fp_rate:g}. Rebuild it with a larger capacity."
            )
        checksum = xxhash.xxh3_64_intdigest(self._bits.data)
        return _atomic.write_beside(path, [self._header(checksum), self._bits.data])

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, verify: bool = True) -> BloomFilter:
        """Memory-map a saved filter read-only, checking header, size and (unless ``verify=False``) checksum."""
        source = _FilterFile(path)
        head, name = source.header, source.path
        try:
            params = _parse_header(head, name)
            body_len, checksum = params["body_len"], params["checksum"]
            mapped = source._map_file(HEADER_SIZE + body_len)
            bits = np.frombuffer(mapped, dtype=np.uint8, offset=HEADER_SIZE, count=body_len)
            if verify and xxhash.xxh3_64_intdigest(bits.data) != checksum:
                raise ArtifactError(f"{name}: filter body checksum mismatch: the file is corrupt")
        except BaseException:
            source.close()
            raise
        bf = cls(**{field: params[field] for field in _PARAMETERS}, items=params["items"], bits=bits)
        bf._source, bf.path = source, name
        if verify:
            why = bf.changed()  # written to while it was read: the checksum may have passed on a mix
            if why is not None:
                bf.close()
                raise ArtifactError(f"{name}: the filter changed on disk while it was being opened ({why})")
        return bf

    def close(self) -> None:
        """Release the file mapping of an opened filter; idempotent. A lookup after it raises ClosedError.

        It does not wait: a lookup already running in another thread keeps the map until it returns and
        answers in full, and the map is released then (a lookup never sees a half-released filter).
        """
        source, self._source = self._source, None
        if source is not None:
            self._bits = np.zeros(0, dtype=np.uint8)
            source.close()  # a lookup in flight holds the map: it is released when that returns

    def __enter__(self) -> BloomFilter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _FilterFile(Mapped):
    """The file an opened filter maps (the artefact lifecycle's :class:`~credcheck._artifact.Mapped`)."""

    kind = "filter"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._open(path, HEADER_SIZE)


def describe(info: Description) -> None:
    """Fill ``info`` for the Bloom filter at its path: what its header records, then whether it opens verified."""
    info.kind, info.version = "bloom filter", VERSION
    fields = _parse_header(read_header(info.path, HEADER_SIZE, "filter"), info.path)
    m, capacity = fields["m"], fields["capacity"]
    info.facts.update(
        scheme=fields["scheme"],
        items=fields["items"],
        capacity=capacity,
        fp_rate=fields["fp_rate"],
        bits_per_hash=round(m / capacity, 2),  # as sized: the bits for each hash of its capacity
        k=fields["k"],
        bits=m,
        min_count=fields["min_count"],
    )
    info.check(lambda: BloomFilter.open(info.path).close())


def _parse_header(head: bytes, name: str) -> dict[str, Any]:
    """Check a filter header and return its fields; raise ArtifactError naming what is wrong."""
    if len(head) < HEADER_SIZE:
        raise ArtifactError(f"{name}: too short to be a credcheck filter ({len(head)} bytes)")
    if head[:8] != MAGIC:
        raise ArtifactError(f"{name}: not a credcheck filter (wrong magic)")
    (stored,) = _HEADER_CHECKSUM.unpack_from(head, _CHECKSUM_AT)
    if xxhash.xxh3_64_intdigest(head[:_CHECKSUM_AT]) != stored:
        raise ArtifactError(f"{name}: filter header checksum mismatch: the file is corrupt")
    (_, version, code, k, key_size, m, capacity, items, fp_rate, min_count, body_len, checksum) = _HEADER.unpack_from(
        head
    )
    if version != VERSION:
        raise ArtifactError(
            f"{name}: filter format version {version} is not supported (this credcheck reads {VERSION})"
        )
    info = scheme_by_code(code, FILTER_SCHEMES)
    if info is None or info.digest_size != key_size:
        raise ArtifactError(f"{name}: unknown hash scheme code {code} / key size {key_size}")
    if not 1 <= k <= 64 or m < 64 or m % 64 or body_len != m // 8:
        raise ArtifactError(f"{name}: inconsistent filter parameters (m={m}, k={k}, body={body_len})")
    if not (0.0 < fp_rate < 1.0 and capacity >= 1 and min_count >= 1):  # (NaN fails the first test too)
        raise ArtifactError(
            f"{name}: impossible filter parameters (fp_rate={fp_rate!r}, capacity={capacity}, min_count={min_count})"
        )
    return {
        "scheme": info.name,
        "k": k,
        "m": m,
        "capacity": capacity,
        "items": items,
        "fp_rate": fp_rate,
        "min_count": min_count,
        "body_len": body_len,
        "checksum": checksum,
    }
