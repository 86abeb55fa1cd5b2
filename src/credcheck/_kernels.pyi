# Types of the C extension built from _kernels.c (its numpy twin, _kernels_py.py, has the same signatures).
# Buffers are anything with the buffer protocol: numpy arrays, bytes, bytearray, memoryview, mmap.
# Writable ones (the filter's bits in add(), every *_out) must be writable C-contiguous buffers.

from typing import Any, TypeAlias

import numpy.typing as npt
from typing_extensions import Buffer as _Buffer

# numpy's own stubs do not (yet) declare the buffer protocol on ndarray, so arrays are named as well
Buffer: TypeAlias = _Buffer | npt.NDArray[Any]

def add(bits: Buffer, m: int, k: int, keys: Buffer, stride: int, /) -> int:
    """Set the bits of every key; return how many keys set a new bit."""

def contains_many(bits: Buffer, m: int, k: int, keys: Buffer, stride: int, out: Buffer, /) -> int:
    """Test every key; write 1/0 per key; return hits."""

def contains(bits: Buffer, m: int, k: int, key: Buffer, /) -> bool:
    """Test one key."""

def parse_lines(
    buf: Buffer,
    with_counts: int,
    hexlen: int,
    digests_out: Buffer,
    counts_out: Buffer,
    bad_out: Buffer,
    shape: int = 0,
    /,
) -> tuple[int, int, int, int]:
    """Parse hash or HEX:COUNT lines (or the other shapes ``shape`` names): (lines, good, bad, overflow line or -1)."""

def render_lines(rows: Buffer, width: int, counts: Buffer, out: Buffer, /) -> int:
    """Render rows as HIBP range lines (hex without the first digit, ':', the count, CRLF); return bytes written."""

def fuse_build(words: Buffer, seed: int, sl: int, scl: int, width: int, out: Buffer, /) -> bool:
    """Fill one fuse filter shard's region from its distinct uint64 keys; False when peeling stopped."""

def fuse_contains_many(
    body: Buffer, directory: Buffer, shard_bits: int, width: int, keys: Buffer, stride: int, out: Buffer, /
) -> int:
    """Test every key in a sharded binary fuse filter; write 1/0 per key; return hits."""

def fuse_contains(body: Buffer, directory: Buffer, shard_bits: int, width: int, key: Buffer, /) -> bool:
    """Test one key in a sharded binary fuse filter."""
