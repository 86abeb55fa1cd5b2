"""Picks the hot-loop kernels: the C extension when it was built, else its numpy twin.

Every kernel user reads ``_native.kernels`` at call time (never a copy bound at import), so :func:`use` can
switch the implementation in one place: the test suite runs the kernel-dependent tests on both.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from . import _kernels_py
from ._kernels_py import (
    ACCOUNT_AUTO,
    ACCOUNT_BARE,
    ACCOUNT_LM,
    ACCOUNT_PWDUMP,
    ACCOUNT_USER,
    FUSE_ENTRY_DTYPE,
    FUSE_MAX_WIDTH,
    RENDER_HASH,
    RENDER_JSON,
    SHAPE_NUL,
    SHAPE_PLUS,
    SHAPE_QUOTED_COUNT,
    SHAPE_QUOTED_HEX,
    AccountFault,
    fuse_region_bytes,
)

if TYPE_CHECKING:
    import numpy.typing as npt
    from typing_extensions import Buffer as _Buffer

    # numpy's own stubs do not (yet) declare the buffer protocol on ndarray, so arrays are named as well
    Buffer: TypeAlias = _Buffer | npt.NDArray[Any]

__all__ = [
    "ACCOUNT_AUTO",
    "ACCOUNT_BARE",
    "ACCOUNT_LM",
    "ACCOUNT_PWDUMP",
    "ACCOUNT_USER",
    "AVAILABLE",
    "FUSE_ENTRY_DTYPE",
    "FUSE_MAX_WIDTH",
    "NAME",
    "RENDER_HASH",
    "RENDER_JSON",
    "SHAPE_NUL",
    "SHAPE_PLUS",
    "SHAPE_QUOTED_COUNT",
    "SHAPE_QUOTED_HEX",
    "AccountFault",
    "describe",
    "fuse_region_bytes",
    "kernels",
    "use",
]


class Kernels(Protocol):
    """What both kernel modules provide: the C extension built from _kernels.c and its numpy twin, _kernels_py.py.

    Buffers are anything with the buffer protocol: numpy arrays, bytes, bytearray, memoryview, mmap. Writable ones
    (the filter's bits in add(), every ``*_out``) must be writable C-contiguous buffers.
    """

    def add(self, bits: Buffer, m: int, k: int, keys: Buffer, stride: int, /) -> int:
        """Set the bits of every key; return how many keys set a new bit."""

    def contains_many(self, bits: Buffer, m: int, k: int, keys: Buffer, stride: int, out: Buffer, /) -> int:
        """Test every key; write 1/0 per key; return hits."""

    def contains(self, bits: Buffer, m: int, k: int, key: Buffer, /) -> bool:
        """Test one key."""

    def parse_lines(
        self,
        buf: Buffer,
        with_counts: int,
        hexlen: int,
        digests_out: Buffer,
        counts_out: Buffer,
        bad_out: Buffer,
        shape: int = 0,
        /,
    ) -> tuple[int, int, int, int]:
        """Parse hash or HEX:COUNT lines (or the other shapes ``shape`` names): (lines, good, bad, overflow line or
        -1)."""

    def render_lines(self, rows: Buffer, width: int, counts: Buffer, out: Buffer, /) -> int:
        """Render rows as HIBP range lines (hex without the first digit, ':', the count, CRLF); return bytes
        written."""

    def parse_accounts(
        self,
        buf: Buffer,
        fmt: int,
        hexlen: int,
        max_line: int,
        rows_out: Buffer,
        spans_out: Buffer,
        codes_out: Buffer,
        flags_out: Buffer,
        /,
    ) -> tuple[int, int]:
        """Parse an audit's lines (bare digests, account:digest or pwdump lines, as ``fmt`` says): for every line
        its fault code, the spans of its account and digest and its LM flag, and each good line's digest;
        (lines, good)."""

    def render_accounts(
        self, buf: Buffer, spans: Buffer, which: Buffer, texts: Buffer, offsets: Buffer, flags: int, out: Buffer, /
    ) -> int:
        """Render one line per account: its entry's head, the account, (the digest,) the entry's tail; return bytes
        written."""

    def fuse_build(self, words: Buffer, seed: int, sl: int, scl: int, width: int, out: Buffer, /) -> bool:
        """Fill one fuse filter shard's region from its distinct uint64 keys; False when peeling stopped."""

    def fuse_contains_many(
        self, body: Buffer, directory: Buffer, shard_bits: int, width: int, keys: Buffer, stride: int, out: Buffer, /
    ) -> int:
        """Test every key in a sharded binary fuse filter; write 1/0 per key; return hits."""

    def fuse_contains(self, body: Buffer, directory: Buffer, shard_bits: int, width: int, key: Buffer, /) -> bool:
        """Test one key in a sharded binary fuse filter."""


KernelName = Literal["c", "numpy"]
_c: ModuleType | None
try:
    _c = importlib.import_module("._kernels", __package__)  # the C extension (typed by Kernels above)
except ImportError:  # no compiler at install time
    _c = None

#: The implementations this installation has, by name.
AVAILABLE: dict[KernelName, Kernels] = {"numpy": _kernels_py} if _c is None else {"c": _c, "numpy": _kernels_py}
#: The kernels in use: the C ones when built.
NAME: KernelName = "numpy" if _c is None else "c"
kernels: Kernels = AVAILABLE[NAME]


@contextlib.contextmanager
def use(name: KernelName) -> Iterator[Kernels]:
    """Run the block on the ``name`` kernels ('c' or 'numpy'); a KeyError if that one is not built."""
    global kernels, NAME
    chosen = AVAILABLE[name]
    saved = kernels, NAME
    kernels, NAME = chosen, name
    try:
        yield chosen
    finally:
        kernels, NAME = saved


def describe() -> str:
    """Which kernels run, as ``--version`` and the demo say it."""
    if NAME == "c":
        return "C kernels"
    return "numpy kernels: the C extension was not built (no compiler at install); lookups run about 3.7x slower"
