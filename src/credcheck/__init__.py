"""credcheck: has this password already leaked?

Compact Bloom filters and exact range stores built from leaked hash sets, a k-anonymity range API
byte-compatible with Have I Been Pwned's, and one checker over all of them that never lets more than
a 5-character hash prefix leave the process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._http.options import ClientOptions, Timeout
from ._sources import open, open_async, open_async_pairs, open_pairs
from ._version import __version__
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

if TYPE_CHECKING:  # the pair tier is imported on first use (it is an extra): see _LAZY
    from ._combined import CombinedReport, build_combined
    from .pairs.build import build_pairs
    from .pairs.checker import PairChecker, PairExposure, PairStatus

__all__ = [
    "ArtifactError",
    "BloomFilter",
    "BuildReport",
    "CapacityError",
    "Checker",
    "ClientOptions",
    "ClosedError",
    "CombinedReport",
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
    "Timeout",
    "__version__",
    "build",
    "build_combined",
    "build_pairs",
    "ntlm_hex",
    "open",
    "open_async",
    "open_async_pairs",
    "open_pairs",
    "sha1_hex",
]


def __dir__() -> list[str]:
    # Only the public names: not the submodules (still importable and reachable as attributes) nor helpers.
    return sorted(__all__)


# The names that need the pair tier (an extra: pysodium), each with its module, imported when first asked for
# so that `import credcheck` stays light.
_LAZY = {
    "build_pairs": "credcheck.pairs.build",
    "PairChecker": "credcheck.pairs.checker",
    "PairExposure": "credcheck.pairs.checker",
    "PairStatus": "credcheck.pairs.checker",
    "CombinedReport": "credcheck._combined",
    "build_combined": "credcheck._combined",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'credcheck' has no attribute {name!r}")
