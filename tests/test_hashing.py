"""Digests and hex conversions."""

from __future__ import annotations

import hashlib

import pytest
from Crypto.Hash import MD4
from hypothesis import given
from hypothesis import strategies as st

from credcheck import ntlm_hex, sha1_hex
from credcheck.errors import InputError
from credcheck.hashing import digest, hex_to_digest


class TestVectors:
    @pytest.mark.parametrize(
        ("password", "expected"),
        [
            ("Passw0rd!", "F4A69973E7B0BF9D160F9F60E3C3ACD2494BEB0D"),
            ("password", "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8"),
        ],
    )
    def test_sha1_matches_hibp(self, password: str, expected: str) -> None:
        """sha1_hex gives HIBP's published SHA-1 vectors, upper case."""
        assert sha1_hex(password) == expected

    def test_ntlm_matches_hibp(self) -> None:
        """ntlm_hex gives HIBP's published NTLM vector for Passw0rd!."""
        assert ntlm_hex("Passw0rd!") == "FC525C9683E8FE067095BA2DDC971889"

    def test_bytes_and_str_agree(self) -> None:
        """A password given as UTF-8 bytes hashes like the same text."""
        assert sha1_hex("pässword".encode()) == sha1_hex("pässword")
        assert ntlm_hex("pässword".encode()) == ntlm_hex("pässword")

    def test_ntlm_bytes_must_be_utf8_and_message_hides_them(self) -> None:
        """Non-UTF-8 bytes for NTLM raise ValueError without quoting the bytes."""
        with pytest.raises(ValueError) as info:
            ntlm_hex(b"secret\xff")
        assert "secret" not in str(info.value) and "xff" not in str(info.value)

    @pytest.mark.parametrize("password", ["\ud800", "abc\udfffdef", "\udc80\ud83d"])
    def test_lone_surrogates_hash_code_point_by_code_point(self, password: str) -> None:
        """A str with a lone surrogate hashes (surrogatepass) instead of raising an error that holds the password."""
        assert digest(password, "sha1") == hashlib.sha1(password.encode("utf-8", "surrogatepass")).digest()
        assert digest(password, "ntlm") == MD4.new(password.encode("utf-16-le", "surrogatepass")).digest()

    def test_ntlm_of_a_lone_surrogate_is_what_windows_hashes(self) -> None:
        """NTLM of U+D800 is MD4 of its one UTF-16 code unit, and its surrogatepass UTF-8 bytes agree with it."""
        assert digest("\ud800", "ntlm") == MD4.new(b"\x00\xd8").digest()
        assert digest("\ud800".encode("utf-8", "surrogatepass"), "ntlm") == digest("\ud800", "ntlm")

    def test_ntlm_bytes_error_holds_no_password(self) -> None:
        """The error for non-UTF-8 NTLM bytes is an InputError whose chain holds no codec error (it quotes them)."""
        with pytest.raises(InputError) as info:
            ntlm_hex(b"secret\xff")
        assert info.value.__context__ is None and info.value.__cause__ is None

    def test_unknown_scheme(self) -> None:
        """An unknown scheme is a ValueError."""
        with pytest.raises(ValueError, match="unknown hash scheme"):
            digest("x", "md5")

    def test_wrong_type(self) -> None:
        """A password that is neither str nor bytes is a TypeError."""
        with pytest.raises(TypeError):
            sha1_hex(123)  # type: ignore[arg-type]


class TestHex:
    @given(st.binary(min_size=20, max_size=20))
    def test_round_trip(self, raw: bytes) -> None:
        """hex_to_digest reverses .hex() in either case."""
        assert hex_to_digest(raw.hex().upper()) == raw
        assert hex_to_digest(raw.hex()) == raw

    @pytest.mark.parametrize("bad", ["", "ABC", "Z" * 40, "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD"])
    def test_malformed_is_refused_without_echo(self, bad: str) -> None:
        """A malformed digest raises ValueError and the message does not repeat it."""
        with pytest.raises(ValueError) as info:
            hex_to_digest(bad)
        assert not bad or bad not in str(info.value)


class TestCheckHashes:
    @pytest.mark.parametrize(
        "bad",
        ["5BAA61E4C9B93F3F0682250B6CF8331B7EE68F D8", "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8\nA", "zz", ""],
    )
    def test_batch_refuses_any_malformed_digest(self, tmp_path: object, bad: str) -> None:
        """check_hashes raises ValueError for a digest with whitespace, a newline, or the wrong length."""
        from credcheck import BloomFilter
        from credcheck.checker import FilterChecker

        checker = FilterChecker(BloomFilter.create(10, 1e-3))
        good = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8"
        with pytest.raises(ValueError) as info:
            checker.check_hashes([good, bad])
        assert not bad or bad not in str(info.value)

    def test_batch_matches_single(self) -> None:
        """check_hashes answers like check_hash, any case, in input order."""
        from credcheck import BloomFilter
        from credcheck.checker import FilterChecker

        bloom = BloomFilter.create(10, 1e-3)
        bloom.add(sha1_hex("password"))
        checker = FilterChecker(bloom)
        hexes = [sha1_hex("password").lower(), sha1_hex("other"), sha1_hex("password")]
        assert checker.check_hashes(hexes) == [checker.check_hash(h) for h in hexes]
        assert [e.compromised for e in checker.check_hashes(hexes)] == [True, False, True]
