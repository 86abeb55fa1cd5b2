"""Where a source is opened: :func:`open` (``credcheck.open``) and the one test of local against remote.

The integrations and the command line go through here, so "is this a range API?" is answered in one place:
an ``http://`` or ``https://`` URL is a range API (opened as a :class:`~credcheck.checker.RemoteChecker`),
anything else a path to a filter or a store, told apart by its magic bytes.
"""

from __future__ import annotations

import builtins
import os
import re
from typing import TYPE_CHECKING, Any

from . import bloom as _bloom
from . import fuse as _fuse
from . import store as _store
from ._protocol import redacted
from .bloom import BloomFilter
from .checker import Checker, FilterChecker, RemoteChecker, StoreChecker
from .errors import ArtifactError, StorageError
from .hashing import chosen_scheme
from .store import RangeStore

if TYPE_CHECKING:
    import requests

__all__ = ["is_remote", "open", "open_remote", "source_label"]


def is_remote(source: object) -> bool:
    """Whether ``source`` names a range API (an ``http(s)://`` URL) rather than a file."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def source_label(source: str | os.PathLike[str] | Checker) -> str:
    """How logs and reprs name a source: a URL without credentials, a path, or a checker's repr."""
    if isinstance(source, Checker):
        return repr(source)
    if is_remote(source):
        assert isinstance(source, str)
        return redacted(source)
    return os.fspath(source)


def open(source: str | os.PathLike[str], **options: Any) -> Checker:
    """Return a checker over ``source``: a filter file, a store path, or an ``http(s)://`` range API base URL.

    A filter is either layout (Bloom or binary fuse), told apart by its magic bytes like a store.

    Options: ``min_count`` (every source; a filter answers only the threshold it was built with, which is
    its default), ``hash`` (or ``scheme``: 'sha1' or 'ntlm'; a file must hold that
    scheme, else an :class:`ArtifactError`), ``verify`` (files: check the checksum, default True), and for a
    range API those of :func:`open_remote` (``timeout``, ``padding``, ...).
    """
    if is_remote(source):
        assert isinstance(source, str)
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
    min_count = options.pop("min_count", None)
    verify = options.pop("verify", True)
    scheme, alias = options.pop("scheme", None), options.pop("hash", None)
    if options:
        raise TypeError(f"unknown option(s) for a local source: {', '.join(sorted(options))}")
    wanted = None if scheme is None and alias is None else chosen_scheme(scheme, alias)
    checker = _open_local(path, magic, min_count=min_count, verify=verify)
    if wanted is not None and checker.scheme != wanted:
        checker.close()
        raise ArtifactError(f"{path} holds {checker.scheme} hashes, not {wanted}")
    return checker


def _open_local(path: str, magic: bytes, *, min_count: int | None, verify: bool) -> Checker:
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
    if magic == _fuse.MAGIC:
        fuse = _fuse.FuseFilter(path, verify=verify)
        try:
            return FilterChecker(fuse, min_count=min_count)
        except BaseException:
            fuse.close()
            raise
    if magic == _store.MAGIC:
        return StoreChecker(RangeStore(path, verify=verify), min_count=1 if min_count is None else min_count)
    raise ArtifactError(f"{path}: neither a credcheck filter nor a credcheck store (unknown magic)")


def open_remote(
    url: str,
    *,
    scheme: str | None = None,
    hash: str | None = None,
    min_count: int = 1,
    timeout: float | tuple[float, float] = (3.0, 3.0),
    deadline: float = 5.0,
    padding: bool = True,
    session: requests.Session | None = None,
    retries: int = 3,
    cache: bool | int = False,
    max_workers: int = 8,
    user_agent: str | None = None,
) -> RemoteChecker:
    """Return a :class:`RemoteChecker` on the range API at ``url``; ``credcheck.open("https://…")`` calls it.

    ``scheme`` (or its alias ``hash``) is 'sha1' (default) or 'ntlm'; the other options go to
    :class:`~credcheck.client.RangeClient` and :class:`RemoteChecker`. An unknown option is a ``TypeError``.
    """
    chosen = chosen_scheme(scheme, hash)
    from .client import RangeClient  # lazily: requests is imported only when a range API is asked

    client = RangeClient(
        url,
        session=session,
        timeout=timeout,
        deadline=deadline,
        retries=retries,
        padding=padding,
        user_agent=user_agent,
        cache=cache,
        pool_size=max(max_workers, 1) if isinstance(max_workers, int) else 10,
    )
    try:
        return RemoteChecker(client, scheme=chosen, min_count=min_count, max_workers=max_workers)
    except BaseException:
        client.close()
        raise
