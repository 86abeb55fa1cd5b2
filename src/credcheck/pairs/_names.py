"""Canonical usernames, the length prefix ``lp`` and bucket ids of ``credcheck-pairs-v1`` (docs/PROTOCOL.md).

A username is personal data: nothing here puts one, or any part of one, into a message.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Final

from ..errors import InputError

__all__ = [
    "MAX_BUCKET_BITS",
    "MIN_DEFAULT_BUCKET_BITS",
    "PROTOCOL",
    "bucket_hash",
    "bucket_of",
    "canon",
    "default_bucket_bits",
    "lp",
]

PROTOCOL: Final = "credcheck-pairs-v1"
LABEL_BUCKET: Final = b"credcheck-pairs-v1 bucket"
#: The widest bucket id a store may use (2^24 buckets: an index of 128 MiB).
MAX_BUCKET_BITS: Final = 24
MIN_DEFAULT_BUCKET_BITS: Final = 8
#: About this many distinct breached usernames share a bucket when the build picks ``B``.
USERNAMES_PER_BUCKET: Final = 32
_LP_MAX: Final = 0xFFFF


def lp(data: bytes) -> bytes:
    """``data`` after its length as 2 big-endian bytes; longer than 65535 bytes is an error, never a wrap-around."""
    if len(data) > _LP_MAX:
        raise InputError(f"a length-prefixed field holds at most {_LP_MAX} bytes, got {len(data)}")
    return len(data).to_bytes(2, "big") + data


def canon(username: str | bytes) -> bytes:
    """The canonical form of a username as UTF-8: NFKC, surrounding whitespace stripped, ``casefold()``.

    Bytes are read as UTF-8. An empty result, bytes that are not UTF-8 or a lone surrogate raise
    :class:`~credcheck.errors.InputError` (without quoting the username).
    """
    # The Unicode errors are caught and dropped before InputError is raised: raised inside the handler, it would
    # keep them as its context, and their ``object`` is the username itself.
    if isinstance(username, bytes | bytearray | memoryview):
        try:
            decoded: str | None = bytes(username).decode("utf-8")
        except UnicodeDecodeError:
            decoded = None
        if decoded is None:
            raise InputError("a username given as bytes must be UTF-8")
        username = decoded
    if not isinstance(username, str):
        raise TypeError(f"a username must be str or bytes, not {type(username).__name__}")
    text = unicodedata.normalize("NFKC", username).strip().casefold()
    if not text:
        raise InputError("a username is empty once canonicalised")
    try:
        data: bytes | None = text.encode("utf-8")
    except UnicodeEncodeError:
        data = None
    if data is None:
        raise InputError("a username holds a lone surrogate (not a Unicode string)")
    if len(data) > _LP_MAX:
        raise InputError(f"a canonical username holds at most {_LP_MAX} UTF-8 bytes, got {len(data)}")
    return data


def bucket_hash(canonical: bytes) -> bytes:
    """SHA-256(lp(label) || lp(canonical)): a bucket id is its top bits."""
    return hashlib.sha256(_LP_LABEL_BUCKET + lp(canonical)).digest()


def bucket_of(canonical: bytes, bits: int) -> int:
    """The bucket of a canonical username: the top ``bits`` bits of SHA-256(lp(label) || lp(canonical))."""
    if not 0 <= bits <= MAX_BUCKET_BITS:
        raise ValueError(f"bucket bits must be between 0 and {MAX_BUCKET_BITS}, got {bits!r}")
    return int.from_bytes(bucket_hash(canonical)[:4], "big") >> (32 - bits)


def default_bucket_bits(usernames: int) -> int:
    """``clamp(floor(log2(U / 32)), 8, 24)`` for ``U`` distinct usernames: about 32 share a bucket."""
    if usernames < 1:
        return MIN_DEFAULT_BUCKET_BITS
    # floor(log2(U/32)) == floor(log2(floor(U/32))) for U >= 32, exact in integers (floats misround for huge U)
    bits = (usernames // USERNAMES_PER_BUCKET).bit_length() - 1 if usernames >= USERNAMES_PER_BUCKET else -1
    return max(MIN_DEFAULT_BUCKET_BITS, min(MAX_BUCKET_BITS, bits))


_LP_LABEL_BUCKET: Final = lp(LABEL_BUCKET)
