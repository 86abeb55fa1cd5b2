"""The stretch of ``credcheck-pairs-v1``: scrypt over ``kind || lp(canon(u)) || SHA-1(password)``.

It is what an attacker pays per guess if both the key and the data leak, and nearly the whole cost of a
pair build, so :func:`stretch_chunk` is the one function a build ships to its workers: it takes only
stretch inputs and parameters (never the OPRF key) and imports nothing but :mod:`hashlib`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Final

from .. import _args
from ._names import lp

__all__ = ["INTERACTIVE", "PROFILES", "STRONG", "Stretch"]

SALT: Final = b"credcheck-pairs-v1"
OUTPUT_SIZE: Final = 32
_KIND_PAIR: Final = 0x01
_KIND_USERNAME: Final = 0x02
SHA1_SIZE: Final = 20
_NO_PASSWORD: Final = bytes(SHA1_SIZE)
MAX_MEMORY: Final = 1 << 30  # scrypt's 128*r*(N+p) bytes; beyond 1 GiB a worker is more likely killed than slow
_SPEC = re.compile(r"scrypt:([0-9]+):([0-9]+):([0-9]+)")


@dataclasses.dataclass(frozen=True, slots=True)
class Stretch:
    """scrypt parameters: ``n`` (a power of two > 1), ``r`` and ``p``; the output is always 32 bytes."""

    n: int
    r: int
    p: int

    def __post_init__(self) -> None:
        for field in ("n", "r", "p"):
            _args.positive_int(f"scrypt {field}", getattr(self, field))
        if self.n < 2 or self.n & (self.n - 1):
            raise ValueError(f"scrypt N must be a power of two above 1, got {self.n}")
        if self.r > 255 or self.p > 255:
            raise ValueError(f"scrypt r and p are at most 255 here, got r={self.r} p={self.p}")
        if self.memory > MAX_MEMORY:
            raise ValueError(f"scrypt:{self.n}:{self.r}:{self.p} needs {self.memory:,} bytes; at most {MAX_MEMORY:,}")

    @classmethod
    def parse(cls, spec: str | Stretch) -> Stretch:
        """A profile name (``interactive``, ``strong``) or ``scrypt:N:r:p``."""
        if isinstance(spec, Stretch):
            return spec
        if not isinstance(spec, str):
            raise TypeError(f"a stretch is a profile name or 'scrypt:N:r:p', not {type(spec).__name__}")
        if spec in PROFILES:
            return PROFILES[spec]
        match = _SPEC.fullmatch(spec)
        if match is None:
            raise ValueError(f"unknown stretch {spec!r}; expected interactive, strong or scrypt:N:r:p")
        n, r, p = (int(group) for group in match.groups())
        return cls(n, r, p)

    @property
    def memory(self) -> int:
        """Bytes scrypt needs for one input."""
        return 128 * self.r * (self.n + self.p)

    @property
    def spec(self) -> str:
        """``scrypt:N:r:p``."""
        return f"scrypt:{self.n}:{self.r}:{self.p}"

    @property
    def name(self) -> str:
        """The profile's name, or its ``scrypt:N:r:p`` spec when it is none of them."""
        for name, profile in PROFILES.items():
            if profile == self:
                return name
        return self.spec

    def __call__(self, data: bytes) -> bytes:
        """The 32-byte stretch of one input."""
        return hashlib.scrypt(
            data, salt=SALT, n=self.n, r=self.r, p=self.p, maxmem=self.memory + (1 << 20), dklen=OUTPUT_SIZE
        )


INTERACTIVE: Final = Stretch(1 << 12, 8, 1)
STRONG: Final = Stretch(1 << 14, 8, 1)
PROFILES: Final[dict[str, Stretch]] = {"interactive": INTERACTIVE, "strong": STRONG}


def pair_input(canonical: bytes, sha1: bytes) -> bytes:
    """The stretch input of a pair: ``0x01 || lp(canonical username) || SHA-1(password)`` (20 raw bytes)."""
    if len(sha1) != SHA1_SIZE:
        raise ValueError(f"a SHA-1 digest is {SHA1_SIZE} bytes, got {len(sha1)}")
    return bytes((_KIND_PAIR,)) + lp(canonical) + sha1


def username_input(canonical: bytes) -> bytes:
    """The stretch input of a username-only entry: ``0x02 || lp(canonical username) || 20 zero bytes``."""
    return bytes((_KIND_USERNAME,)) + lp(canonical) + _NO_PASSWORD


#: The bytes of an input that say how long it is: its kind and the length of its username.
HEAD_SIZE: Final = 3


def input_length(head: bytes) -> int:
    """The length of the stretch input whose first :data:`HEAD_SIZE` bytes are ``head`` (kind, lp's length)."""
    return HEAD_SIZE + int.from_bytes(head[1:HEAD_SIZE], "big") + SHA1_SIZE


def split_inputs(blob: bytes) -> list[bytes]:
    """Cut a concatenation of stretch inputs (each self-delimiting: kind, lp(name), 20 bytes) apart."""
    inputs, at = [], 0
    while at < len(blob):
        if len(blob) - at < HEAD_SIZE + SHA1_SIZE:
            raise ValueError("a chunk of stretch inputs ends inside an input")
        end = at + input_length(blob[at : at + HEAD_SIZE])
        if end > len(blob) or blob[at] not in (_KIND_PAIR, _KIND_USERNAME):
            raise ValueError("a chunk of stretch inputs is malformed")
        inputs.append(blob[at:end])
        at = end
    return inputs


def stretch_chunk(n: int, r: int, p: int, blob: bytes) -> bytes:
    """Stretch every input of a chunk; return their 32-byte outputs, concatenated in order (the worker task)."""
    stretch = Stretch(n, r, p)
    return b"".join(stretch(data) for data in split_inputs(blob))
