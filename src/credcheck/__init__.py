"""credcheck: has this password already leaked?

Compact Bloom filters and exact range stores built from leaked hash sets, a k-anonymity range API
byte-compatible with Have I Been Pwned's, and one checker over all of them that never lets more than
a 5-character hash prefix leave the process.
"""

from __future__ import annotations

import builtins
import os
import re
from typing import Any

from . import bloom as _bloom
from . import store as _store
from .bloom import BloomFilter
from .build import BuildReport, build
from .checker import Checker, Exposure, FilterChecker
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
from .hashing import check_scheme, ntlm_hex, sha1_hex
from .store import RangeStore, StoreChecker

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


def open(source: str | os.PathLike[str], **options: Any) -> Checker:
    """Return a checker over ``source``: a filter file, a store path, or an ``http(s)://`` range API base URL.

    Options: ``min_count`` (every source), ``hash`` (or ``scheme``: 'sha1' or 'ntlm'; a file must hold that
    scheme, else an :class:`ArtifactError`), ``verify`` (files: check the checksum, default True), and for a
    range API those of :func:`credcheck.client.open_remote` (``timeout``, ``padding``, ...).
    """
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        from .client import open_remote  # lazily: keeps `import credcheck` light

        return open_remote(source, **options)
    path = os.fspath(source)
    try:
        with builtins.open(path, "rb") as fh:
            magic = fh.read(8)
    except OSError as exc:
        hint = ""
        if isinstance(source, str) and ("://" in source or re.fullmatch(r"[\w.-]+:\d+(/.*)?", source)):
            hint = " (a range API is given by its http:// or https:// URL)"
        raise StorageError(f"cannot open {path}: {exc.strerror or exc}{hint}") from exc
    min_count = options.pop("min_count", 1)
    verify = options.pop("verify", True)
    scheme, alias = options.pop("scheme", None), options.pop("hash", None)
    if options:
        raise TypeError(f"unknown option(s) for a local source: {', '.join(sorted(options))}")
    if scheme is not None and alias is not None and scheme != alias:
        raise TypeError("give the hash scheme once: scheme= or hash=, not both")
    wanted = scheme if scheme is not None else alias
    if wanted is not None:
        check_scheme(wanted)
    checker = _open_local(path, magic, min_count=min_count, verify=verify)
    if wanted is not None and checker.scheme != wanted:
        checker.close()
        raise ArtifactError(f"{path} holds {checker.scheme} hashes, not {wanted}")
    return checker


def _open_local(path: str, magic: bytes, *, min_count: int, verify: bool) -> Checker:
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
