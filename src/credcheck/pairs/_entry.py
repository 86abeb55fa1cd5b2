"""Entries of ``credcheck-pairs-v1``: 17 bytes, a 16-byte tag and a masked status, both derived from the OPRF output.

``entry = SHA-512(lp("credcheck-pairs-v1 tag") || y)[:16] || (status XOR SHA-512(lp("credcheck-pairs-v1
status") || y)[0])``. Without ``y`` (which needs the server's key) a tag is a random string and the status
byte a random byte; a dummy entry is 17 random bytes.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Final

from ._names import lp

__all__ = ["ENTRY_SIZE", "TAG_SIZE", "Status", "entry", "mask", "tag"]

TAG_SIZE: Final = 16
ENTRY_SIZE: Final = TAG_SIZE + 1
_TAG_PREFIX: Final = lp(b"credcheck-pairs-v1 tag")
_STATUS_PREFIX: Final = lp(b"credcheck-pairs-v1 status")


class Status(enum.IntEnum):
    """The status byte of an entry (before masking). Lower is stronger when a bucket is deduplicated."""

    DUMMY = 0
    EXACT = 1
    SIMILAR = 2
    USERNAME = 3


def tag(y: bytes) -> bytes:
    """The 16-byte tag of OPRF output ``y``."""
    return hashlib.sha512(_TAG_PREFIX + y).digest()[:TAG_SIZE]


def mask(y: bytes) -> int:
    """The byte a status is XORed with under OPRF output ``y``."""
    return hashlib.sha512(_STATUS_PREFIX + y).digest()[0]


def entry(y: bytes, status: int) -> bytes:
    """The 17-byte entry for OPRF output ``y`` with ``status`` (1 exact, 2 similar, 3 username only)."""
    if status not in (Status.EXACT, Status.SIMILAR, Status.USERNAME):
        raise ValueError(f"an entry's status is 1, 2 or 3, got {status!r}")
    return tag(y) + bytes((status ^ mask(y),))
