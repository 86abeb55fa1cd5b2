"""Password digests (SHA-1 and NTLM) and the hex <-> bytes conversions the rest of credcheck uses."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
import xxhash
from Crypto.Hash import MD4

from ._frames import entry_point
from .errors import InputError

__all__ = ["DIGEST_SIZES", "FILTER_SCHEMES", "SCHEMES", "SchemeInfo", "digest", "hex_to_digest", "ntlm_hex", "sha1_hex"]


class SchemeInfo(NamedTuple):
    """One hash scheme: its name, the bytes of its digest, and the code artefact headers store for it."""

    name: str
    digest_size: int
    code: int


#: The one registry of schemes: the password hashes credcheck computes (name -> digest size -> file code).
SCHEMES: Final = MappingProxyType({"sha1": SchemeInfo("sha1", 20, 1), "ntlm": SchemeInfo("ntlm", 16, 2)})
#: What a Bloom filter may hold: the password schemes, and ``xxh3`` for arbitrary keys hashed to 16 bytes.
FILTER_SCHEMES: Final = MappingProxyType({**SCHEMES, "xxh3": SchemeInfo("xxh3", 16, 3)})
#: Bytes per digest for each password scheme (a view of :data:`SCHEMES`).
DIGEST_SIZES: Final = MappingProxyType({s.name: s.digest_size for s in SCHEMES.values()})


def check_scheme(scheme: str) -> int:
    """Return the digest size of ``scheme``; raise ``ValueError`` for an unknown one."""
    try:
        return SCHEMES[scheme].digest_size
    except (KeyError, TypeError):
        raise ValueError(f"unknown hash scheme {scheme!r}; expected 'sha1' or 'ntlm'") from None


def scheme_by_code(code: int, registry: Mapping[str, SchemeInfo] = SCHEMES) -> SchemeInfo | None:
    """The scheme an artefact header's ``code`` names in ``registry``, or None for a code it does not know."""
    for info in registry.values():
        if info.code == code:
            return info
    return None


# A Python str may hold a lone surrogate ("\ud800", from JSON or a form decoded with surrogateescape): it is
# not Unicode text, yet it must hash, never raise (the codec's error would carry the whole password). It is
# encoded code point by code point ("surrogatepass"): for NTLM that is exactly what Windows hashes (its
# passwords are UTF-16 strings, lone surrogates included); for SHA-1, the generalised UTF-8 bytes
# (ED A0 80) that WTF-8 and Java's encoders write. See docs/SECURITY.md.
_SURROGATES: Final = "surrogatepass"


def _password_bytes(password: str | bytes) -> bytes:
    if isinstance(password, str):
        return password.encode("utf-8", _SURROGATES)
    if isinstance(password, bytes | bytearray | memoryview):
        return bytes(password)
    raise TypeError(f"a password must be str or bytes, not {type(password).__name__}")


@entry_point
def digest(password: str | bytes, scheme: str = "sha1") -> bytes:
    """Return the raw digest of ``password`` under ``scheme`` ('sha1' or 'ntlm')."""
    check_scheme(scheme)
    if scheme == "sha1":
        return hashlib.sha1(_password_bytes(password)).digest()
    # NTLM is MD4 over the UTF-16LE encoding of the password's text.
    text: str | None = password if isinstance(password, str) else None
    if text is None:
        # The codec's own error quotes the password's bytes: suppressed, and ours raised outside its handler.
        with contextlib.suppress(UnicodeDecodeError):
            text = _password_bytes(password).decode("utf-8", _SURROGATES)
        if text is None:
            raise InputError("an NTLM password given as bytes must be UTF-8")
    return MD4.new(text.encode("utf-16-le", _SURROGATES)).digest()


@entry_point
def sha1_hex(password: str | bytes) -> str:
    """Return the upper-case hex SHA-1 of ``password`` (UTF-8), as Pwned Passwords writes it."""
    return digest(password, "sha1").hex().upper()


@entry_point
def ntlm_hex(password: str | bytes) -> str:
    """Return the upper-case hex NTLM hash (MD4 of UTF-16LE) of ``password``."""
    return digest(password, "ntlm").hex().upper()


@entry_point
def hex_to_digest(hex_digest: str, scheme: str = "sha1") -> bytes:
    """Decode a full hex digest of ``scheme``; raise ``ValueError`` (without echoing it) if malformed."""
    size = check_scheme(scheme)
    if not isinstance(hex_digest, str):
        raise TypeError(f"a hex digest must be str, not {type(hex_digest).__name__}")
    if len(hex_digest) != 2 * size:
        raise ValueError(f"a {scheme} digest has {2 * size} hex characters, got {len(hex_digest)}")
    try:
        raw = bytes.fromhex(hex_digest)
    except ValueError:
        raw = b""
    if len(raw) != size:  # fromhex skips whitespace: count what it decoded
        raise ValueError(f"a {scheme} digest must be {2 * size} hex digits")
    return raw


_BUFFERS: Final = (bytes, bytearray, memoryview)


def filter_key(key: object, scheme: str) -> bytes:
    """The bytes a filter of ``scheme`` keeps for one key: for sha1 and ntlm a digest, as raw bytes or in hex
    (checked, never echoed); for xxh3 the xxh3-128 of any str (UTF-8) or bytes."""
    if scheme == "xxh3":
        if isinstance(key, str):
            key = key.encode("utf-8")
        if not isinstance(key, _BUFFERS):
            raise TypeError(f"keys must be str or bytes, not {type(key).__name__}")
        return xxhash.xxh3_128_digest(key)
    if isinstance(key, str):
        return hex_to_digest(key, scheme)
    if isinstance(key, _BUFFERS):
        raw = bytes(key)
        size = FILTER_SCHEMES[scheme].digest_size
        if len(raw) != size:
            raise ValueError(f"a {scheme} key has {size} bytes, got {len(raw)}")
        return raw
    raise TypeError(f"keys must be bytes, hex str or a numpy array, not {type(key).__name__}")


def filter_rows(keys: Any, scheme: str) -> npt.NDArray[np.uint8]:
    """Many keys of a filter of ``scheme`` (an n x size uint8 array, or an iterable of keys, or one key) as a
    contiguous n x size uint8 array (:func:`filter_key` for each key)."""
    size = FILTER_SCHEMES[scheme].digest_size
    if isinstance(keys, np.ndarray):
        if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != size:
            raise ValueError(
                f"a {scheme} filter takes an n x {size} uint8 array, got {keys.dtype} with shape {keys.shape}"
            )
        return np.ascontiguousarray(keys)
    if isinstance(keys, (*_BUFFERS, str)):
        keys = (keys,)
    return np.frombuffer(b"".join(filter_key(key, scheme) for key in keys), dtype=np.uint8).reshape(-1, size)
