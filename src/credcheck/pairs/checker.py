"""Local pair checks: the corpus owner's audit of its own users against a pair store, with the store's key.

``PairChecker(store, key).check(username, password)`` derives what a client and server would together —
the bucket, the stretch, the OPRF output (evaluated directly with the secret key), the tag — and looks the
tag up in the bucket: EXACT, SIMILAR, or (with username entries) USERNAME, else NOT_FOUND. Usernames and
passwords never reach a repr or a message.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
from collections.abc import Iterable
from typing import Any

from .._frames import entry_point
from .._inflight import Gate
from ..errors import ArtifactError, InputError
from ..hashing import hex_to_digest
from . import _oprf
from .entry import Status, mask, tag
from .keys import KeyPair, load_key
from .names import bucket_of, canon
from .store import PairStore, find_entry
from .stretch import pair_input, username_input

__all__ = ["PairChecker", "PairExposure", "PairStatus", "open_pairs"]


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


def password_sha1(password: str | bytes) -> bytes:
    """The raw SHA-1 of a password (UTF-8 for a str); an InputError for a lone surrogate."""
    if isinstance(password, str):
        try:
            return hashlib.sha1(password.encode("utf-8")).digest()
        except UnicodeEncodeError:
            raise InputError("a password holds a lone surrogate (not a Unicode string)") from None
    if isinstance(password, bytes | bytearray | memoryview):
        return hashlib.sha1(bytes(password)).digest()
    raise TypeError(f"a password must be str or bytes, not {type(password).__name__}")


class PairChecker:
    """Checks username/password pairs against a local pair store, with the key the store was built with.

    Like every checker it may be shared by threads and closed while they use it: :meth:`close` waits for the
    checks in flight, and a check after it raises :class:`~credcheck.errors.ClosedError`.
    """

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
        self._gate = Gate(type(self).__name__)

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

    @entry_point
    def check_canonical(self, canonical: bytes, sha1: bytes) -> PairExposure:
        """Like :meth:`check`, from a username already canonical (:func:`~credcheck.pairs.names.canon`) and
        the password's raw 20-byte SHA-1 (what a combo reader yields)."""
        with self._gate:
            return self._check_canonical(canonical, sha1)

    def _check_canonical(self, canonical: bytes, sha1: bytes) -> PairExposure:
        """The lookup itself, inside the gate (the remote checker asks its service here instead)."""
        entries = self.store.bucket(bucket_of(canonical, self.store.bucket_bits))
        status = self._lookup(entries, pair_input(canonical, sha1))
        if status is None and self.store.username_entries:
            status = self._lookup(entries, username_input(canonical))
        return PairExposure(PairStatus.NOT_FOUND if status is None else STATUS_BY_CODE[status])

    @entry_point
    def check(self, username: str | bytes, password: str | bytes) -> PairExposure:
        """Whether this username with this password (or one close to it) is in the store."""
        return self.check_canonical(canon(username), password_sha1(password))

    @entry_point
    def check_hash(self, username: str | bytes, sha1_hex: str) -> PairExposure:
        """Like :meth:`check`, with the password's SHA-1 as 40 hex digits (either case)."""
        return self.check_canonical(canon(username), hex_to_digest(sha1_hex, "sha1"))

    @entry_point
    def check_many(self, pairs: Iterable[tuple[str | bytes, str | bytes]]) -> list[PairExposure]:
        """Check many (username, password) pairs; answers in input order."""
        return [self.check(username, password) for username, password in pairs]

    def close(self) -> None:
        """Release the source (unmap the store) once the checks in flight are done.

        Idempotent; any check after it raises :class:`~credcheck.errors.ClosedError`.
        """
        if self._gate.close():
            self._release()

    def _release(self) -> None:
        """Release what the source holds; runs once, with no check in flight."""
        self.store.close()

    def __enter__(self) -> PairChecker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PairChecker {self.store.path!r} key_id={self._key.key_id.hex()}>"


def open_pairs(
    source: str | os.PathLike[str], *, key: KeyPair | str | os.PathLike[str] | None = None, **options: Any
) -> PairChecker:
    """A pair checker: over a local pair store (``key``: the key file or KeyPair it was built with; option
    ``verify``), or over the pair service at an ``http(s)://`` base URL (no key; the options of
    :class:`~credcheck.pair_client.RemotePairChecker`: ``public_key``, ``timeout``, ``deadline``, ...)."""
    if isinstance(source, str) and source.lower().startswith(("http://", "https://")):
        if key is not None:
            raise TypeError("a pair service holds its own key: give public_key= to pin it, not key=")
        from ..pair_client import RemotePairChecker  # lazily: requests is imported only for a pair service

        return RemotePairChecker(source, **options)
    if key is None:
        raise TypeError("a local pair store needs key= (the key file or KeyPair it was built with)")
    unknown = set(options) - {"verify"}
    if unknown:
        raise TypeError(f"unknown option(s) for a local pair store: {', '.join(sorted(unknown))}")
    return _open_local(source, key, bool(options.get("verify", True)))


@entry_point
def _open_local(source: str | os.PathLike[str], key: KeyPair | str | os.PathLike[str], verify: bool) -> PairChecker:
    return PairChecker(source, key, verify=verify)
