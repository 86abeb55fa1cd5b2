"""The pair tier's OPRF key file: written once by ``credcheck pairs keygen`` (0600, never overwritten), loaded strictly.

The format (docs/PROTOCOL.md, "Key file") is three ASCII lines, each ending in LF::

    credcheck-pairs-v1 secret key ristretto255-SHA512
    <64 hex: the secret scalar, RFC 9497 SerializeScalar (32 bytes little-endian, below the group order)>
    key-id <16 hex: the first 8 bytes of SHA-256 of the public key>

The key id line lets a person see which key a file holds without loading it, and lets :func:`load_key` detect a
damaged secret (a flipped hex digit is still a valid scalar, but not the same key id).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from dataclasses import dataclass, field

from .. import _atomic
from .._artifact import Description
from .._frames import entry_point
from ..errors import ArtifactError, CryptoError, StorageError
from . import _oprf

__all__ = ["KeyPair", "load_key", "write_key"]

HEADER = b"credcheck-pairs-v1 secret key ristretto255-SHA512"
_KEY_ID_TAG = b"key-id "
FILE_SIZE = len(HEADER) + 1 + 2 * _oprf.SCALAR_SIZE + 1 + len(_KEY_ID_TAG) + 16 + 1
_HEX = frozenset(b"0123456789abcdefABCDEF")


@dataclass(frozen=True)
class KeyPair:
    """An OPRF key: ``sk`` (the secret scalar, never shown in a repr), ``pk`` and ``key_id`` (8 bytes)."""

    sk: bytes = field(repr=False)
    pk: bytes
    key_id: bytes

    @classmethod
    def from_secret(cls, sk: bytes) -> KeyPair:
        """The key pair of a secret scalar (CryptoError unless it is 32 bytes, canonical and non-zero)."""
        pk = _oprf.public_key(sk)
        return cls(sk, pk, _oprf.key_id(pk))

    def __repr__(self) -> str:
        return f"KeyPair(key_id={self.key_id.hex()!r}, pk={self.pk.hex()!r})"


def _serialize(key: KeyPair) -> bytes:
    return HEADER + b"\n" + key.sk.hex().encode() + b"\n" + _KEY_ID_TAG + key.key_id.hex().encode() + b"\n"


def _write_new(path: str, data: bytes) -> None:
    """Create ``path`` (O_EXCL, 0600) holding ``data``, fsynced; on any failure nothing is left behind."""
    fd = _atomic.create_private(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


@entry_point
def write_key(path: str | os.PathLike[str]) -> KeyPair:
    """Create a key file holding a new random key and return the key; never overwrites anything.

    The key is written to a private temporary file beside ``path``, fsynced, then hard-linked into place, which
    fails if anything (even a dangling symlink) is already there; so the file appears whole or not at all, and
    two keygens racing for one path cannot both win. On a file system without hard links it falls back to
    creating ``path`` itself with O_EXCL (still never overwriting). StorageError says what went wrong.
    """
    target = os.path.abspath(os.fspath(path))
    key = KeyPair.from_secret(_oprf.generate_key_pair()[0])
    if os.path.lexists(target):
        raise StorageError(f"{target} already exists; keygen never overwrites a key (choose another path)")
    tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{secrets.token_hex(8)}.tmp")
    try:
        _write_new(tmp, _serialize(key))
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise StorageError(f"{target} already exists; keygen never overwrites a key") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            _write_new(target, _serialize(key))  # no hard links here: O_EXCL still refuses to overwrite
    except StorageError:
        raise
    except FileExistsError:
        raise StorageError(f"{target} already exists; keygen never overwrites a key") from None
    except OSError as exc:
        raise StorageError(f"cannot write the key file {target}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _atomic.fsync_dir(os.path.dirname(target))
    return key


def _parse(data: bytes, where: str) -> KeyPair:
    lines = data.split(b"\n")
    if len(lines) != 4 or lines[0] != HEADER or lines[3] != b"":
        raise ArtifactError(f"{where} is not a credcheck pair key file (it must start with {HEADER.decode()!r})")
    secret, id_line = lines[1], lines[2]
    if len(secret) != 2 * _oprf.SCALAR_SIZE or not _HEX.issuperset(secret):
        raise ArtifactError(f"{where}, line 2: the secret must be {2 * _oprf.SCALAR_SIZE} hex digits")
    if not id_line.startswith(_KEY_ID_TAG) or len(id_line) != len(_KEY_ID_TAG) + 16:
        raise ArtifactError(f"{where}, line 3: expected 'key-id' and 16 hex digits")
    try:
        key = KeyPair.from_secret(bytes.fromhex(secret.decode("ascii")))
        recorded = bytes.fromhex(id_line[len(_KEY_ID_TAG) :].decode("ascii"))
    except (CryptoError, ValueError):
        raise ArtifactError(f"{where}: the secret or key id is not valid (the file is damaged)") from None
    if recorded != key.key_id:
        raise ArtifactError(f"{where}: the secret does not match its key id {recorded.hex()} (the file is damaged)")
    return key


@entry_point
def load_key(path: str | os.PathLike[str]) -> KeyPair:
    """Load a key file written by :func:`write_key`.

    Refuses (StorageError) a file that group or others may read or write, or that is not a regular file, and
    (ArtifactError) one that is not exactly the format above; every message names the path. The permission check
    is POSIX only (Windows has no mode bits to check).
    """
    where = os.fspath(path)
    try:
        # O_NONBLOCK: a FIFO put in the key's place must not hang the server at start-up
        fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise StorageError(f"cannot read the key file {where}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StorageError(f"the key file {where} is not a regular file")
        if os.name == "posix" and info.st_mode & 0o077:
            raise StorageError(
                f"the key file {where} is accessible to group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"run: chmod 600 {where}"
            )
        if info.st_size != FILE_SIZE:
            raise ArtifactError(f"{where} is not a credcheck pair key file ({info.st_size} bytes, not {FILE_SIZE})")
        data = os.read(fd, FILE_SIZE + 1)
    except OSError as exc:
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"cannot read the key file {where}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return _parse(data, where)


@entry_point
def describe(info: Description) -> None:
    """Fill ``info`` for the key file at its path: loaded as :func:`load_key` loads it (mode, size, format, the secret
    against its key id), its key id and public key, which are no secret; the secret key is never shown."""
    info.kind, info.version = "pair key file", 1

    def loads() -> None:
        key = load_key(info.path)
        info.facts.update(key_id=key.key_id.hex(), public_key=key.pk.hex())

    info.check(loads)
