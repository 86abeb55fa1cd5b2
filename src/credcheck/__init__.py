"""credcheck: has this password already leaked?

Compact Bloom filters and exact range stores built from leaked hash sets, a k-anonymity range API
byte-compatible with Have I Been Pwned's, and one checker over all of them that never lets more than
a 5-character hash prefix leave the process.
"""

from __future__ import annotations

import builtins
import os
from typing import TYPE_CHECKING, Any

from . import bloom as _bloom
from . import store as _store
from .bloom import BloomFilter
from .build import BuildReport, build
from .checker import Checker, Exposure, FilterChecker
from .errors import (
    ArtifactError,
    CapacityError,
    CredcheckError,
    InputError,
    RemoteError,
    RemoteErrorCode,
    StorageError,
)
from .hashing import ntlm_hex, sha1_hex
from .store import RangeStore, StoreChecker

if TYPE_CHECKING:  # the pair tier is imported on first use (it is an extra): see __getattr__
    from .pairs.checker import PairChecker, PairExposure, PairStatus
    from .pairs.keys import KeyPair

__all__ = [
    "ArtifactError",
    "BloomFilter",
    "BuildReport",
    "CapacityError",
    "Checker",
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


def open(source: str | os.PathLike[str], **options: Any) -> Checker:
    """Return a checker over ``source``: a filter file, a store path, or an ``http(s)://`` range API base URL.

    Options: ``min_count`` (every source), ``verify`` (files: check the checksum, default True), and for a
    range API those of :func:`credcheck.client.open_remote` (``hash``, ``timeout``, ``padding``, ...).
    """
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        from .client import open_remote  # lazily: keeps `import credcheck` light

        return open_remote(source, **options)
    path = os.fspath(source)
    try:
        with builtins.open(path, "rb") as fh:
            magic = fh.read(8)
    except OSError as exc:
        raise StorageError(f"cannot open {path}: {exc.strerror or exc}") from exc
    min_count = options.pop("min_count", 1)
    verify = options.pop("verify", True)
    if options:
        raise TypeError(f"unknown option(s) for a local source: {', '.join(sorted(options))}")
    if magic == _bloom.MAGIC:
        bloom = BloomFilter.open(path, verify=verify)
        try:
            if bloom.scheme == "xxh3":
                raise ArtifactError(
                    f"{path}: an xxh3 filter holds arbitrary keys, not password hashes; open it with BloomFilter.open"
                )
            return FilterChecker(bloom, min_count=min_count)
        except BaseException:
            bloom.close()
            raise
    if magic == _store.MAGIC:
        return StoreChecker(RangeStore(path, verify=verify), min_count=min_count)
    raise ArtifactError(f"{path}: neither a credcheck filter nor a credcheck store (unknown magic)")


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
