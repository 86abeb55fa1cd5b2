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
    from .pairs.build import PairBuildReport
    from .pairs.checker import PairChecker, PairExposure, PairStatus

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
    "build_pairs",
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


def build_pairs(*args: Any, **options: Any) -> PairBuildReport:
    """Build a pair store from combo lists: :func:`credcheck.pairs.build.build_pairs` (``sources, out, key``,
    ``stretch=``, ``variants=``, ...). Needs the ``pairs`` extra (pysodium and the system libsodium)."""
    from .pairs.build import build_pairs as build_any  # lazily: keeps `import credcheck` light

    return build_any(*args, **options)


def open_pairs(source: str | os.PathLike[str], **options: Any) -> PairChecker:
    """Return a pair checker over a local pair store or a pair service's ``http(s)://`` base URL.

    A local store needs ``key=`` (the key file or KeyPair it was built with; the corpus owner auditing its
    own users); a pair service takes ``public_key=`` to pin its key, and ``timeout``, ``deadline``,
    ``retries``, ``session``. ``check(username, password)``, ``check_hash(username, sha1_hex)`` and
    ``check_many(pairs)`` answer with a :class:`PairExposure`; a service that cannot be verified raises
    :class:`RemoteError`. Needs the ``pairs`` extra (pysodium and the system libsodium).
    """
    from .pairs.checker import open_pairs as open_any  # lazily: keeps `import credcheck` light

    return open_any(source, **options)


def __getattr__(name: str) -> Any:
    if name in _PAIR_NAMES:
        from .pairs import checker

        return getattr(checker, name)
    raise AttributeError(f"module 'credcheck' has no attribute {name!r}")
