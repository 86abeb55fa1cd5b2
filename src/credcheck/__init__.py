"""credcheck: has this password already leaked?

Compact Bloom filters and exact range stores built from leaked hash sets, a k-anonymity range API
byte-compatible with Have I Been Pwned's, and one checker over all of them that never lets more than
a 5-character hash prefix leave the process.
"""

from __future__ import annotations

from ._sources import open
from .bloom import BloomFilter
from .build import BuildReport, build
from .checker import Checker, Exposure
from .errors import (
    ArtifactError,
    CapacityError,
    ClosedError,
    CredcheckError,
    InputError,
    RemoteError,
    RemoteErrorCode,
    StorageError,
)
from .hashing import ntlm_hex, sha1_hex
from .store import RangeStore

__all__ = [
    "ArtifactError",
    "BloomFilter",
    "BuildReport",
    "CapacityError",
    "Checker",
    "ClosedError",
    "CredcheckError",
    "Exposure",
    "InputError",
    "RangeStore",
    "RemoteError",
    "RemoteErrorCode",
    "StorageError",
    "__version__",
    "build",
    "ntlm_hex",
    "open",
    "sha1_hex",
]

__version__ = "0.1.0"


def __dir__() -> list[str]:
    # Only the public names: not the submodules (still importable and reachable as attributes) nor helpers.
    return sorted(__all__)
