"""credcheck: has this password already leaked?

Compact Bloom filters and exact range stores built from leaked hash sets, a k-anonymity range API
byte-compatible with Have I Been Pwned's, and one checker over all of them that never lets more than
a 5-character hash prefix leave the process.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # the pair tier is imported on first use (it is an extra): see __getattr__
    from .pairs.checker import PairChecker, PairExposure, PairStatus
    from .pairs.keys import KeyPair

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
    "PairChecker",
    "PairExposure",
    "PairStatus",
    "RangeStore",
    "RemoteError",
    "RemoteErrorCode",
    "StorageError",
    "__version__",
    "build",
    "ntlm_hex",
    "open",
    "open_pairs",
    "sha1_hex",
]

__version__ = "0.1.0"


def __dir__() -> list[str]:
    # Only the public names: not the submodules (still importable and reachable as attributes) nor helpers.
    return sorted(__all__)


_PAIR_NAMES = frozenset({"PairChecker", "PairExposure", "PairStatus"})


def open_pairs(
    source: str | os.PathLike[str], *, key: KeyPair | str | os.PathLike[str], verify: bool = True
) -> PairChecker:
    """Return a pair checker over a local pair store, with the key file (or KeyPair) it was built with.

    ``check(username, password)``, ``check_hash(username, sha1_hex)`` and ``check_many(pairs)`` answer
    with a :class:`PairExposure`. Needs the ``pairs`` extra (pysodium and the system libsodium).
    """
    from .pairs.checker import open_pairs as open_local  # lazily: keeps `import credcheck` light

    return open_local(source, key=key, verify=verify)


def __getattr__(name: str) -> Any:
    if name in _PAIR_NAMES:
        from .pairs import checker

        return getattr(checker, name)
    raise AttributeError(f"module 'credcheck' has no attribute {name!r}")
