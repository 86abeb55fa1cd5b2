"""Password digests (SHA-1 and NTLM) and the hex <-> bytes conversions the rest of credcheck uses."""

from __future__ import annotations

import hashlib
from typing import Final, Literal

from Crypto.Hash import MD4

__all__ = ["DIGEST_SIZES", "Scheme", "digest", "hex_to_digest", "ntlm_hex", "sha1_hex"]

Scheme = Literal["sha1", "ntlm"]

#: Bytes per digest for each supported hash scheme.
DIGEST_SIZES: Final[dict[str, int]] = {"sha1": 20, "ntlm": 16}


def check_scheme(scheme: str) -> int:
    """Return the digest size of ``scheme``; raise ``ValueError`` for an unknown one."""
    try:
        return DIGEST_SIZES[scheme]
    except (KeyError, TypeError):
        raise ValueError(f"unknown hash scheme {scheme!r}; expected 'sha1' or 'ntlm'") from None


def _password_bytes(password: str | bytes) -> bytes:
    if isinstance(password, str):
        return password.encode("utf-8")
    if isinstance(password, bytes | bytearray | memoryview):
        return bytes(password)
    raise TypeError(f"a password must be str or bytes, not {type(password).__name__}")


def digest(password: str | bytes, scheme: str = "sha1") -> bytes:
    """Return the raw digest of ``password`` under ``scheme`` ('sha1' or 'ntlm')."""
    check_scheme(scheme)
    if scheme == "sha1":
        return hashlib.sha1(_password_bytes(password)).digest()
    # NTLM is MD4 over the UTF-16LE encoding of the password's text.
    if isinstance(password, str):
        text = password
    else:
        try:
            text = _password_bytes(password).decode("utf-8")
        except UnicodeDecodeError:
            # The codec's own message quotes a byte of the password: keep it out.
            raise ValueError("an NTLM password given as bytes must be UTF-8") from None
    return MD4.new(text.encode("utf-16-le")).digest()


def sha1_hex(password: str | bytes) -> str:
    """Return the upper-case hex SHA-1 of ``password`` (UTF-8), as Pwned Passwords writes it."""
    return digest(password, "sha1").hex().upper()


def ntlm_hex(password: str | bytes) -> str:
    """Return the upper-case hex NTLM hash (MD4 of UTF-16LE) of ``password``."""
    return digest(password, "ntlm").hex().upper()


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
