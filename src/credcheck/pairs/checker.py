"""Pair checks: the contract every pair checker keeps, and the checkers — over a local pair store, or a pair service.

:class:`PairChecker` is what every pair checker answers (``check``, ``check_hash``, ``check_many``,
``check_canonical``; ``close`` behind the one :class:`~credcheck._inflight.Gate`; a context manager), and
:class:`AsyncPairChecker` its async twin. The checkers implement only the lookup of a canonical username and a
password's SHA-1:

- :class:`StorePairChecker` — the corpus owner's audit of its own users against a pair store, with the store's
  key: it derives what a client and server would together (the bucket, the stretch, the OPRF output evaluated
  directly with the secret key, the tag) and looks the tag up in the bucket;
- :class:`RemotePairChecker` and :class:`AsyncRemotePairChecker` — a pair service asked through a client
  (:class:`PairSource`, :class:`AsyncPairSource`: what ``credcheck.pair_client.PairClient`` and
  ``credcheck.aio.AsyncPairClient`` are), so this core module imports no client and no HTTP library.

The answer is EXACT, SIMILAR, or (with username entries) USERNAME, else NOT_FOUND. Usernames and passwords never
reach a repr or a message.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import hashlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, TypeVar

from .._frames import async_entry_point, entry_point
from .._inflight import Gate
from ..errors import ArtifactError, InputError
from ..hashing import hex_to_digest
from . import _oprf
from ._entry import Status, mask, tag
from ._names import bucket_of, canon
from .keys import KeyPair, load_key
from .store import PairStore, find_entry
from .stretch import pair_input, username_input

if TYPE_CHECKING:
    from ._wire import PairConfig

__all__ = [
    "AsyncPairChecker",
    "AsyncPairSource",
    "AsyncRemotePairChecker",
    "PairChecker",
    "PairExposure",
    "PairSource",
    "PairStatus",
    "RemotePairChecker",
    "StorePairChecker",
]

_P = TypeVar("_P", bound="PairChecker")
_A = TypeVar("_A", bound="AsyncPairChecker")


class PairStatus(enum.Enum):
    """What a pair store knows of a username and password."""

    NOT_FOUND = "not_found"
    EXACT = "exact"
    SIMILAR = "similar"
    USERNAME = "username"


STATUS_BY_CODE = {
    Status.EXACT: PairStatus.EXACT,
    Status.SIMILAR: PairStatus.SIMILAR,
    Status.USERNAME: PairStatus.USERNAME,
}


@dataclasses.dataclass(frozen=True, slots=True)
class PairExposure:
    """The answer for one username and password: ``compromised`` for an exact or a similar leaked pair."""

    status: PairStatus

    @property
    def compromised(self) -> bool:
        """True when this pair, or a password close to it, leaked with this username."""
        return self.status in (PairStatus.EXACT, PairStatus.SIMILAR)

    def __bool__(self) -> bool:
        return self.compromised


def exposure(found: Status | None) -> PairExposure:
    """The answer for what a lookup found: a status, or None (not found)."""
    return PairExposure(PairStatus.NOT_FOUND if found is None else STATUS_BY_CODE[found])


def password_sha1(password: str | bytes) -> bytes:
    """The raw SHA-1 of a password (UTF-8 for a str); an InputError for a lone surrogate."""
    if isinstance(password, str):
        try:
            encoded: bytes | None = password.encode("utf-8")
        except UnicodeEncodeError:
            encoded = None  # dropped before raising: the codec's error holds the whole password as its object
        if encoded is None:
            raise InputError("a password holds a lone surrogate (not a Unicode string)")
        return hashlib.sha1(encoded).digest()
    if isinstance(password, bytes | bytearray | memoryview):
        return hashlib.sha1(bytes(password)).digest()
    raise TypeError(f"a password must be str or bytes, not {type(password).__name__}")


class PairChecker(abc.ABC):
    """Answers "has this username leaked with this password?" from one source, as a :class:`PairExposure`.

    A pair checker may be shared by threads and closed while they use it: :meth:`close` waits for the checks
    in flight, and a check after it raises :class:`~credcheck.errors.ClosedError`. A source implements only
    :meth:`_check_canonical` (and :meth:`_release`).
    """

    def __init__(self) -> None:
        self._gate = Gate(type(self).__name__)

    @entry_point
    def check(self, username: str | bytes, password: str | bytes) -> PairExposure:
        """Whether this username with this password (or one close to it) is in the source."""
        return self.check_canonical(canon(username), password_sha1(password))

    @entry_point
    def check_hash(self, username: str | bytes, sha1_hex: str) -> PairExposure:
        """Like :meth:`check`, with the password's SHA-1 as 40 hex digits (either case)."""
        return self.check_canonical(canon(username), hex_to_digest(sha1_hex, "sha1"))

    @entry_point
    def check_many(self, pairs: Iterable[tuple[str | bytes, str | bytes]]) -> list[PairExposure]:
        """Check many (username, password) pairs; answers in input order."""
        return [self.check(username, password) for username, password in pairs]

    @entry_point
    def check_canonical(self, canonical: bytes, sha1: bytes) -> PairExposure:
        """Like :meth:`check`, from a username already canonical (:func:`~credcheck.pairs._names.canon`) and
        the password's raw 20-byte SHA-1 (what a combo reader yields)."""
        with self._gate:
            return self._check_canonical(canonical, sha1)

    @abc.abstractmethod
    def _check_canonical(self, canonical: bytes, sha1: bytes) -> PairExposure:
        """The lookup itself, inside the gate."""

    def corpus_version(self) -> str | None:
        """The version of the pair corpus this checker answers from (a pair store's header digest; a pair
        service's ``/v1/corpus``), or None where the source does not say."""
        with self._gate:
            return self._corpus_version()

    def _corpus_version(self) -> str | None:
        return None

    def close(self) -> None:
        """Release the source (a store's map, a client's connections) once the checks in flight are done.

        Idempotent; any check after it raises :class:`~credcheck.errors.ClosedError`.
        """
        if self._gate.close():
            self._release()

    @abc.abstractmethod
    def _release(self) -> None:
        """Release what the source holds; runs once, with no check in flight."""

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncPairChecker(abc.ABC):
    """:class:`PairChecker` for async code: the same checks as coroutines, :meth:`aclose` behind the same gate."""

    def __init__(self) -> None:
        self._gate = Gate(type(self).__name__)

    @async_entry_point
    async def check(self, username: str | bytes, password: str | bytes) -> PairExposure:
        """Whether this username with this password (or one close to it) is in the source."""
        return await self.check_canonical(canon(username), password_sha1(password))

    @async_entry_point
    async def check_hash(self, username: str | bytes, sha1_hex: str) -> PairExposure:
        """Like :meth:`check`, with the password's SHA-1 as 40 hex digits (either case)."""
        return await self.check_canonical(canon(username), hex_to_digest(sha1_hex, "sha1"))

    @async_entry_point
    async def check_many(self, pairs: Iterable[tuple[str | bytes, str | bytes]]) -> list[PairExposure]:
        """Check many (username, password) pairs, one after the other; answers in input order."""
        return [await self.check(username, password) for username, password in pairs]

    @async_entry_point
    async def check_canonical(self, canonical: bytes, sha1: bytes) -> PairExposure:
        """Like :meth:`check`, from a canonical username and the password's raw 20-byte SHA-1."""
        with self._gate:
            return await self._check_canonical(canonical, sha1)

    @abc.abstractmethod
    async def _check_canonical(self, canonical: bytes, sha1: bytes) -> PairExposure:
        """The lookup itself, inside the gate."""

    async def corpus_version(self) -> str | None:
        """:meth:`PairChecker.corpus_version`, async."""
        with self._gate:
            return await self._corpus_version()

    async def _corpus_version(self) -> str | None:
        return None

    async def aclose(self) -> None:
        """Release the source once the checks in flight are done; idempotent, and a check after it raises
        :class:`~credcheck.errors.ClosedError`."""
        if await self._gate.aclose():
            await self._release()

    @abc.abstractmethod
    async def _release(self) -> None:
        """Release what the source holds; runs once, with no check in flight."""

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class StorePairChecker(PairChecker):
    """Checks username/password pairs against a local pair store, with the key the store was built with."""

    @entry_point
    def __init__(
        self, store: PairStore | str | os.PathLike[str], key: KeyPair | str | os.PathLike[str], *, verify: bool = True
    ) -> None:
        keypair = key if isinstance(key, KeyPair) else load_key(key)
        self.store = store if isinstance(store, PairStore) else PairStore(store, verify=verify)
        if keypair.key_id != self.store.key_id:
            path = self.store.path
            self.store.close()
            raise ArtifactError(
                f"{path} was built with key id {self.store.key_id.hex()}, not with this key ({keypair.key_id.hex()})"
            )
        self._key = keypair
        super().__init__()

    @property
    def key_id(self) -> bytes:
        """The id of the key the store was built with (8 bytes)."""
        return self._key.key_id

    def _lookup(self, entries: bytes, data: bytes) -> Status | None:
        y = _oprf.evaluate(self._key.sk, self.store.stretch(data))
        masked = find_entry(entries, tag(y))
        if masked is None:
            return None
        status = masked ^ mask(y)
        if status not in STATUS_BY_CODE:
            raise ArtifactError(f"{self.store.path}: an entry's status does not unmask to 1, 2 or 3: corrupt")
        return Status(status)

    def _check_canonical(self, canonical: bytes, sha1: bytes) -> PairExposure:
        entries = self.store.bucket(bucket_of(canonical, self.store.bucket_bits))
        status = self._lookup(entries, pair_input(canonical, sha1))
        if status is None and self.store.username_entries:
            status = self._lookup(entries, username_input(canonical))
        return exposure(status)

    def _corpus_version(self) -> str | None:
        return self.store.version

    def _release(self) -> None:
        self.store.close()

    def __repr__(self) -> str:
        return f"<StorePairChecker {self.store.path!r} key_id={self._key.key_id.hex()}>"


class PairSource(Protocol):
    """What a remote pair checker needs of a pair client (``credcheck.pair_client.PairClient`` is one)."""

    def config(self) -> PairConfig:
        """The service's config, fetched on first use and kept."""
        ...

    def query(self, canonical: bytes, sha1: bytes) -> Status | None:
        """The status the service's bucket holds for the pair, or None; a RemoteError if it cannot be verified."""
        ...

    def close(self) -> None:
        """Release the connections."""
        ...

    # Optional: ``corpus_version() -> str | None`` (what PairClient has), read by RemotePairChecker when present.


class RemotePairChecker(PairChecker):
    """Checks username/password pairs against a pair service, through ``client`` (``credcheck.open_pairs`` with
    an ``http(s)://`` URL makes both). What leaves the process per check is the bucket of the canonical username
    and freshly blinded elements; every answer is verified before it is read, and anything that cannot be is a
    :class:`~credcheck.errors.RemoteError`, never NOT_FOUND."""

    def __init__(self, client: PairSource) -> None:
        self.client = client
        super().__init__()

    @property
    def config(self) -> PairConfig:
        """The service's config (fetched now if no check has fetched it yet)."""
        with self._gate:
            return self.client.config()

    @property
    def key_id(self) -> bytes:
        """The id of the service's (pinned) key: 8 bytes."""
        return self.config.key_id

    def _check_canonical(self, canonical: bytes, sha1: bytes) -> PairExposure:
        return exposure(self.client.query(canonical, sha1))

    def _corpus_version(self) -> str | None:
        version = getattr(self.client, "corpus_version", None)
        return None if version is None else version()

    def _release(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"<RemotePairChecker {self.client!r}>"


class AsyncPairSource(Protocol):
    """What an async remote pair checker needs of a pair client (``credcheck.aio.AsyncPairClient`` is one)."""

    async def config(self) -> PairConfig:
        """The service's config, fetched on first use and kept."""
        ...

    async def query(self, canonical: bytes, sha1: bytes) -> Status | None:
        """The status the service's bucket holds for the pair, or None; a RemoteError if it cannot be verified."""
        ...

    async def aclose(self) -> None:
        """Release the connections."""
        ...


class AsyncRemotePairChecker(AsyncPairChecker):
    """:class:`RemotePairChecker` for async code, through an async ``client``
    (``credcheck.open_async_pairs`` makes both)."""

    def __init__(self, client: AsyncPairSource) -> None:
        self.client = client
        super().__init__()

    async def get_config(self) -> PairConfig:
        """The service's config (fetched now if no check has fetched it yet)."""
        with self._gate:
            return await self.client.config()

    async def _check_canonical(self, canonical: bytes, sha1: bytes) -> PairExposure:
        return exposure(await self.client.query(canonical, sha1))

    async def _corpus_version(self) -> str | None:
        version = getattr(self.client, "corpus_version", None)
        return None if version is None else await version()

    async def _release(self) -> None:
        await self.client.aclose()

    def __repr__(self) -> str:
        return f"<AsyncRemotePairChecker {self.client!r}>"
