"""Where every source is opened: :func:`open`, :func:`open_pairs` and their async twins, and the one test of
"is this a service?".

The integrations and the command line go through here, so what a source is gets decided in one place: an
``http://`` or ``https://`` URL (:func:`is_remote`) is a service — a range API for :func:`open`, a pair service
for :func:`open_pairs` — and anything else a path: a filter or a range store told apart by its magic bytes, or
a pair store. The clients (requests, httpx) and the pair tier are imported when a source needs them, so
``import credcheck`` stays light and the extras stay optional.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import TYPE_CHECKING, Any, Final

from . import _args
from . import store as _store
from ._artifact import kind_of
from ._http.options import ClientOptions
from ._http.urls import redacted
from ._sinks import FILTER_OPENERS
from .checker import Checker, FilterChecker, RemoteChecker, StoreChecker
from .errors import ArtifactError, StorageError
from .hashing import check_scheme
from .store import RangeStore

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._http.options import RangeKeywords
    from .aio import AsyncRemoteChecker
    from .pairs.checker import AsyncRemotePairChecker, PairChecker
    from .pairs.keys import KeyPair

#: The local files :func:`open` takes, by their magic: a filter of either layout, or a range store.
_LOCAL_KINDS: Final = {magic: magic for magic in (*FILTER_OPENERS, _store.MAGIC)}

__all__ = ["is_remote", "open", "open_async", "open_async_pairs", "open_pairs", "source_label"]


def is_remote(source: object) -> bool:
    """Whether ``source`` names a service (an ``http(s)://`` URL) rather than a file."""
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
    its default), ``scheme`` ('sha1' or 'ntlm'; a file must hold that scheme, else an :class:`ArtifactError`;
    a range API is asked for it, 'sha1' by default), ``verify`` (files: check the checksum, default True), and
    for a range API ``max_workers`` (the prefixes of a batch fetched at once, 8), ``session`` (a requests.Session),
    ``options`` (a :class:`~credcheck.ClientOptions`) and any of its fields as a keyword (``timeout``,
    ``deadline``, ``retries``, ``padding``, ``cache``...). An unknown option is a ``TypeError``.
    """
    if is_remote(source):
        assert isinstance(source, str)
        return _open_remote(source, **options)
    path = os.fspath(source)
    try:
        magic = kind_of(path, _LOCAL_KINDS, "filter or store")
    except StorageError as exc:
        if not (isinstance(source, str) and ("://" in source or re.fullmatch(r"[\w.-]+:\d+(/.*)?", source))):
            raise
        raise StorageError(f"{exc.strerror or exc} (a range API is given by its http:// or https:// URL)") from None
    min_count = options.pop("min_count", None)
    verify = options.pop("verify", True)
    wanted = options.pop("scheme", None)
    if options:
        raise TypeError(f"unknown option(s) for a local source: {', '.join(sorted(options))}")
    if wanted is not None:
        check_scheme(wanted)
    checker = _open_local(path, magic, min_count=min_count, verify=verify)
    if wanted is not None and checker.scheme != wanted:
        checker.close()
        raise ArtifactError(f"{path} holds {checker.scheme} hashes, not {wanted}")
    return checker


def _open_local(path: str, magic: bytes, *, min_count: int | None, verify: bool) -> Checker:
    if magic == _store.MAGIC:
        return StoreChecker(RangeStore(path, verify=verify), min_count=1 if min_count is None else min_count)
    opened = FILTER_OPENERS[magic](path, verify=verify)
    try:
        if opened.scheme == "xxh3":
            raise ArtifactError(
                f"{path}: an xxh3 filter holds arbitrary keys, not password hashes; open it with BloomFilter.open"
            )
        return FilterChecker(opened, min_count=min_count)
    except BaseException:
        opened.close()
        raise


@dataclasses.dataclass(frozen=True, slots=True)
class _Remote:
    """What a remote checker on a range API is opened with, every part checked before a client exists."""

    scheme: str
    min_count: int
    max_workers: int
    options: ClientOptions
    session: Any


def _remote(
    options: ClientOptions | None = None,
    *,
    scheme: str = "sha1",
    min_count: int = 1,
    max_workers: int = 8,
    session: Any = None,
    **keywords: Unpack[RangeKeywords],
) -> _Remote:
    """The remote options of :func:`open` and :func:`open_async`, checked. The connection pool holds as many
    connections as a batch fetches prefixes at once, unless told otherwise."""
    check_scheme(scheme)
    _args.positive_int("min_count", min_count)
    _args.positive_int("max_workers", max_workers)
    given = dict(keywords)
    if options is None:
        given.setdefault("pool_size", max_workers)
    return _Remote(scheme, min_count, max_workers, ClientOptions.of(options, given), session)


def _open_remote(url: str, **options: Any) -> RemoteChecker:
    """A :class:`RemoteChecker` on the range API at ``url`` over requests (``open("https://…")``)."""
    remote = _remote(**options)
    from .client import RangeClient  # requests is imported only when a range API is asked

    client = RangeClient(url, remote.options, session=remote.session)
    return RemoteChecker(client, scheme=remote.scheme, min_count=remote.min_count, max_workers=remote.max_workers)


def open_async(url: str, **options: Any) -> AsyncRemoteChecker:
    """Return an async checker on the range API at ``url``: :func:`open`'s remote options, the same names,
    defaults and checks (``session`` is an ``httpx.AsyncClient``), answered with ``await checker.check(...)``.

    Local filters and stores answer in microseconds without I/O: open them with :func:`open`. Needs httpx
    (``credcheck[async]``).
    """
    remote = _remote(**options)
    from .aio import AsyncRangeClient, AsyncRemoteChecker  # httpx is an extra

    client = AsyncRangeClient(url, remote.options, session=remote.session)
    return AsyncRemoteChecker(client, scheme=remote.scheme, min_count=remote.min_count, max_workers=remote.max_workers)


def open_pairs(
    source: str | os.PathLike[str], *, key: KeyPair | str | os.PathLike[str] | None = None, **options: Any
) -> PairChecker:
    """Return a pair checker over a local pair store or a pair service's ``http(s)://`` base URL.

    A local store needs ``key=`` (the key file or KeyPair it was built with; the corpus owner auditing its
    own users) and takes ``verify``; a pair service takes ``public_key=`` to pin its key, ``session``,
    ``max_stretch_memory``, ``options`` (a :class:`~credcheck.ClientOptions`) and its fields as keywords
    (``timeout``, ``deadline``, ``retries``...). ``check(username, password)``, ``check_hash(username,
    sha1_hex)`` and ``check_many(pairs)`` answer with a :class:`~credcheck.PairExposure`; a service that cannot
    be verified raises :class:`~credcheck.RemoteError`. Needs the ``pairs`` extra (pysodium and libsodium).
    """
    from .pairs.checker import RemotePairChecker, StorePairChecker  # the pair tier is an extra

    if is_remote(source):
        assert isinstance(source, str)
        if key is not None:
            raise TypeError("a pair service holds its own key: give public_key= to pin it, not key=")
        from .pair_client import PairClient

        return RemotePairChecker(PairClient(source, **options))
    if key is None:
        raise TypeError("a local pair store needs key= (the key file or KeyPair it was built with)")
    unknown = set(options) - {"verify"}
    if unknown:
        raise TypeError(f"unknown option(s) for a local pair store: {', '.join(sorted(unknown))}")
    return StorePairChecker(source, key, verify=bool(options.get("verify", True)))


def open_async_pairs(url: str | os.PathLike[str], **options: Any) -> AsyncRemotePairChecker:
    """Return an async pair checker on the pair service at ``url``: :func:`open_pairs`'s options for a service
    (``session`` is an ``httpx.AsyncClient``). Needs httpx and the pair tier."""
    from .aio import AsyncPairClient
    from .pairs.checker import AsyncRemotePairChecker

    return AsyncRemotePairChecker(AsyncPairClient(os.fspath(url), **options))
