"""Shared fixtures: small leaked sets written in every input format."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from credcheck.hashing import ntlm_hex

LEAKED = ["password", "123456", "qwerty", "Passw0rd!", "letmein", "dragon", "monkey", "iloveyou"]


def sha1_upper(password: str) -> str:
    return hashlib.sha1(password.encode()).hexdigest().upper()


@pytest.fixture
def hibp_file(tmp_path: Path) -> Path:
    """A sorted HIBP-format SHA-1 dump of LEAKED, with count i+1 for the i-th password, CRLF endings."""
    lines = sorted(f"{sha1_upper(p)}:{i + 1}" for i, p in enumerate(LEAKED))
    path = tmp_path / "pwned.txt"
    path.write_bytes("\r\n".join(lines).encode())
    return path


@pytest.fixture
def ntlm_hibp_file(tmp_path: Path) -> Path:
    """A HIBP-format NTLM dump of LEAKED."""
    lines = sorted(f"{ntlm_hex(p)}:{i + 1}" for i, p in enumerate(LEAKED))
    path = tmp_path / "pwned-ntlm.txt"
    path.write_bytes("\n".join(lines).encode() + b"\n")
    return path


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    """A plaintext list of LEAKED with 'password' repeated and one undecodable line."""
    path = tmp_path / "plain.txt"
    path.write_bytes("\n".join([*LEAKED, "password"]).encode() + b"\n\xff\xfe\n")
    return path
