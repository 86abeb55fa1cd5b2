"""Padding for a range: random ``SUFFIX:0`` lines of a prefix, never equal to a real hash of the store.

HIBP's clients ignore count 0 lines, so padding hides how many hashes a prefix really has. The server adds
10 to 209 lines per request (as HIBP does); a static export pads every range to one size. Both use
:func:`padding`, so a padding line is made, checked and written in one place.
"""

from __future__ import annotations

import secrets
from typing import Final

import numpy as np
import numpy.typing as npt

from .store import PREFIXES, RangeStore

__all__ = ["padding"]

_LINE_END: Final = np.frombuffer(b":0", dtype=np.uint8)
_CRLF: Final = np.frombuffer(b"\r\n", dtype=np.uint8)


def padding(store: RangeStore, prefix: int, count: int, *, after_lines: bool) -> bytes:
    """``count`` random ``SUFFIX:0`` lines of ``prefix``, each led by CRLF, in the HIBP text of ``store``.

    No line equals a real hash of the store or another padding line. With ``after_lines`` false (the range
    has no real lines) the first CRLF is left out, so that a body never starts with a blank line: append the
    result to the real body as it is. ``count`` 0 gives ``b""``.
    """
    if not 0 <= prefix < PREFIXES:
        raise ValueError(f"a prefix is a 20-bit number, got {prefix}")
    if count <= 0:
        return b""
    size = store.digest_size
    digests = _draw(count, size, prefix)
    real, _ = store.rows_of(prefix)  # sorted rows of digest bytes [SKIP:], this prefix only
    width = size - 2
    keys = np.ascontiguousarray(real).view(f"S{width}").ravel() if len(real) else None
    # A random suffix equal to a real one (or to another padding line) is astronomically unlikely, but a
    # padding line must never be one: draw those again.
    while True:
        mine = np.ascontiguousarray(digests[:, size - width :]).view(f"S{width}").ravel()
        clash = np.zeros(count, dtype=bool)
        if keys is not None:
            at = np.minimum(np.searchsorted(keys, mine), len(keys) - 1)
            clash |= keys[at] == mine
        _, first = np.unique(mine, return_index=True)
        repeated = np.ones(count, dtype=bool)
        repeated[first] = False
        clash |= repeated
        redo = np.flatnonzero(clash)
        if not len(redo):
            break
        digests[redo] = _draw(len(redo), size, prefix)
    hexes = np.frombuffer(digests.tobytes().hex().upper().encode("ascii"), dtype=np.uint8).reshape(count, 2 * size)
    suffix_length = 2 * size - 5
    out = np.empty((count, suffix_length + 4), dtype=np.uint8)
    out[:, :2] = _CRLF
    out[:, 2 : 2 + suffix_length] = hexes[:, 5:]
    out[:, 2 + suffix_length :] = _LINE_END
    data = out.tobytes()
    return data if after_lines else data[2:]


def _draw(count: int, size: int, prefix: int) -> npt.NDArray[np.uint8]:
    """``count`` random digests that start with ``prefix``'s five hex digits."""
    digests = np.frombuffer(bytearray(secrets.token_bytes(count * size)), dtype=np.uint8).reshape(count, size)
    digests[:, 0] = prefix >> 12
    digests[:, 1] = (prefix >> 4) & 0xFF
    digests[:, 2] = (digests[:, 2] & 0x0F) | ((prefix & 0x0F) << 4)
    return digests
