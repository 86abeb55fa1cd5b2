"""Picks the hot-loop kernels: the C extension when it was built, else its numpy twin.

Every kernel user reads ``_native.kernels`` at call time (never a copy bound at import), so :func:`use` can
switch the implementation in one place: the test suite runs the kernel-dependent tests on both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Literal, Protocol

from . import _kernels_py
from ._kernels_py import (
    FUSE_ENTRY_DTYPE,
    FUSE_MAX_WIDTH,
    SHAPE_NUL,
    SHAPE_PLUS,
    SHAPE_QUOTED_COUNT,
    SHAPE_QUOTED_HEX,
    fuse_region_bytes,
)

if TYPE_CHECKING:
    from ._kernels import Buffer

__all__ = [
    "AVAILABLE",
    "FUSE_ENTRY_DTYPE",
    "FUSE_MAX_WIDTH",
    "NAME",
    "SHAPE_NUL",
    "SHAPE_PLUS",
    "SHAPE_QUOTED_COUNT",
    "SHAPE_QUOTED_HEX",
    "describe",
    "fuse_region_bytes",
    "kernels",
    "use",
]


class Kernels(Protocol):
    """What both kernel modules provide (typed by _kernels.pyi and _kernels_py.py)."""

    def add(self, bits: Buffer, m: int, k: int, keys: Buffer, stride: int, /) -> int: ...
    def contains_many(self, bits: Buffer, m: int, k: int, keys: Buffer, stride: int, out: Buffer, /) -> int: ...
    def contains(self, bits: Buffer, m: int, k: int, key: Buffer, /) -> bool: ...
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
    ) -> tuple[int, int, int, int]: ...
    def render_lines(self, rows: Buffer, width: int, counts: Buffer, out: Buffer, /) -> int: ...
    def fuse_build(self, words: Buffer, seed: int, sl: int, scl: int, width: int, out: Buffer, /) -> bool: ...
    def fuse_contains_many(
        self, body: Buffer, directory: Buffer, shard_bits: int, width: int, keys: Buffer, stride: int, out: Buffer, /
    ) -> int: ...
    def fuse_contains(self, body: Buffer, directory: Buffer, shard_bits: int, width: int, key: Buffer, /) -> bool: ...


KernelName = Literal["c", "numpy"]
_c: ModuleType | None
try:
    from . import _kernels as _c
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
