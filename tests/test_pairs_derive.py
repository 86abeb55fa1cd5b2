"""credcheck-pairs-v1 derivations: canonical usernames, lp, buckets, the stretch, variants and entries."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credcheck._frames import clear_frames
from credcheck.errors import InputError
from credcheck.pairs import _entry as entries
from credcheck.pairs._names import bucket_of, canon, default_bucket_bits, lp
from credcheck.pairs._variants import MAX_VARIANTS, variants
from credcheck.pairs.checker import password_sha1
from credcheck.pairs.stretch import (
    INTERACTIVE,
    STRONG,
    Stretch,
    pair_input,
    split_inputs,
    stretch_chunk,
    username_input,
)

from .helpers import secrets_in_frames

TINY = Stretch(16, 1, 1)


def kept_once_cleared(error: BaseException, secrets: list[str | bytes]) -> list[str]:
    """What still holds a secret once a public entry point cleared the frames (the chained errors' own data)."""
    clear_frames(error)
    return secrets_in_frames(error, secrets)


class TestCanon:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("Alice@Example.COM", "alice@example.com"),
            ("  bob \t\n", "bob"),
            ("\uff41\uff4c\uff49\uff43\uff45", "alice"),  # full-width letters: NFKC
            ("Stra\u00dfe", "strasse"),  # casefold, not lower
            ("\u212bngstr\u00f6m", "\u00e5ngstr\u00f6m"),  # the Angstrom sign is NFKC-folded to A-ring
            ("\u00a0carol\u3000", "carol"),  # Unicode spaces are stripped too
        ],
    )
    def test_canonical_form(self, raw: str, expected: str) -> None:
        """NFKC, then surrounding whitespace stripped, then casefold, as UTF-8."""
        assert canon(raw) == expected.encode()

    def test_bytes_are_read_as_utf8(self) -> None:
        """A username given as UTF-8 bytes has the same canonical form as the string."""
        assert canon("Émile".encode()) == canon("Émile")

    @pytest.mark.parametrize("raw", ["", "   ", "\u3000\t"])
    def test_empty_refused(self, raw: str) -> None:
        """A username that is empty once canonicalised is an InputError."""
        with pytest.raises(InputError, match="empty"):
            canon(raw)

    def test_surrogate_refused_without_quoting(self) -> None:
        """A lone surrogate is an InputError that quotes the username nowhere: not in its message, nor in the
        codec error it would otherwise chain to (whose ``object`` is the username)."""
        with pytest.raises(InputError) as info:
            canon("secret-user\ud800")
        assert "secret" not in str(info.value)
        assert kept_once_cleared(info.value, ["secret-user"]) == []

    def test_undecodable_bytes_refused_without_quoting(self) -> None:
        """Bytes that are not UTF-8 are an InputError whose message does not quote them."""
        with pytest.raises(InputError) as info:
            canon(b"secret-user\xff")
        assert "secret" not in str(info.value)
        assert kept_once_cleared(info.value, [b"secret-user"]) == []

    def test_a_password_with_a_lone_surrogate_is_refused_without_keeping_it(self) -> None:
        with pytest.raises(InputError) as info:
            password_sha1("secret-password\ud800")
        assert kept_once_cleared(info.value, ["secret-password"]) == []


class TestLengthPrefix:
    def test_two_bytes_big_endian(self) -> None:
        """lp(x) is len(x) as 2 big-endian bytes, then x."""
        assert lp(b"abc") == b"\x00\x03abc"
        assert lp(b"x" * 300) == b"\x01\x2c" + b"x" * 300

    def test_too_long_refused(self) -> None:
        """A field over 65535 bytes is an InputError, never a wrapped length (MIGP's bug)."""
        assert lp(b"x" * 0xFFFF)[:2] == b"\xff\xff"
        with pytest.raises(InputError):
            lp(b"x" * 0x10000)


class TestBucket:
    def test_top_bits_of_sha256(self) -> None:
        """The bucket is the top B bits of SHA-256(lp(label) || lp(canon))."""
        digest = hashlib.sha256(b"\x00\x19credcheck-pairs-v1 bucket\x00\x05alice").digest()
        assert bucket_of(b"alice", 20) == int.from_bytes(digest, "big") >> (256 - 20)

    @given(st.binary(min_size=1, max_size=64), st.integers(0, 24))
    def test_prefix_of_the_widest(self, name: bytes, bits: int) -> None:
        """A B-bit bucket is the top B bits of the 24-bit one (and 0 bits is one bucket)."""
        assert bucket_of(name, bits) == bucket_of(name, 24) >> (24 - bits)
        assert 0 <= bucket_of(name, bits) < 1 << bits

    @pytest.mark.parametrize("bits", [-1, 25, 32])
    def test_bits_out_of_range(self, bits: int) -> None:
        """Bucket bits outside 0..24 are a ValueError."""
        with pytest.raises(ValueError):
            bucket_of(b"alice", bits)

    @pytest.mark.parametrize(
        ("usernames", "bits"), [(0, 8), (1, 8), (8191, 8), (8192, 8), (16384, 9), (16383, 8), (10**12, 24)]
    )
    def test_default_bits(self, usernames: int, bits: int) -> None:
        """The default is clamp(floor(log2(U/32)), 8, 24)."""
        assert default_bucket_bits(usernames) == bits

    @given(st.integers(0, 2**40))
    def test_default_bits_formula(self, usernames: int) -> None:
        """B = floor(log2(U/32)) whenever that lies within 8..24, i.e. 32 * 2^B <= U < 32 * 2^(B+1)."""
        bits = default_bucket_bits(usernames)
        assert 8 <= bits <= 24
        if bits > 8:
            assert usernames >= 32 << bits
        if bits < 24:
            assert usernames < 32 << (bits + 1)


class TestStretch:
    def test_profiles(self) -> None:
        """interactive is N=2^12 r=8 p=1, strong N=2^14 r=8 p=1, and both parse by name."""
        assert (INTERACTIVE.n, INTERACTIVE.r, INTERACTIVE.p) == (4096, 8, 1)
        assert (STRONG.n, STRONG.r, STRONG.p) == (16384, 8, 1)
        assert Stretch.parse("interactive") is INTERACTIVE and Stretch.parse("strong") is STRONG
        assert Stretch.parse("scrypt:4096:8:1").name == "interactive"
        assert Stretch.parse("scrypt:16:1:1") == TINY and TINY.name == "scrypt:16:1:1"

    @pytest.mark.parametrize(
        "spec", ["fast", "scrypt:15:1:1", "scrypt:1:1:1", "scrypt:16:0:1", "scrypt:16:1", "scrypt:-16:1:1",
                 "scrypt:16:1:1:1", "scrypt:1048576:256:1", "scrypt:16777216:8:1", " scrypt:16:1:1"],
    )  # fmt: skip
    def test_bad_spec_refused(self, spec: str) -> None:
        """A spec that is no profile, N not a power of two above 1, r or p out of range, or too much memory."""
        with pytest.raises(ValueError):
            Stretch.parse(spec)

    def test_inputs_layout(self) -> None:
        """A pair input is 0x01 || lp(canon) || SHA-1; a username-only input 0x02 || lp(canon) || 20 zeros."""
        sha1 = hashlib.sha1(b"hunter2").digest()
        assert pair_input(b"bob", sha1) == b"\x01\x00\x03bob" + sha1
        assert username_input(b"bob") == b"\x02\x00\x03bob" + bytes(20)

    def test_scrypt_parameters(self) -> None:
        """The stretch is scrypt with salt "credcheck-pairs-v1" and a 32-byte output."""
        data = pair_input(b"bob", bytes(20))
        expected = hashlib.scrypt(data, salt=b"credcheck-pairs-v1", n=16, r=1, p=1, dklen=32)
        assert TINY(data) == expected

    @given(st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=40), st.binary(min_size=20, max_size=20))))
    def test_chunk_round_trip(self, items: list[tuple[bool, bytes, bytes]]) -> None:
        """A chunk of inputs splits back into them, and its stretch is each input's stretch in order."""
        inputs = [pair_input(name, sha1) if pair else username_input(name) for pair, name, sha1 in items]
        blob = b"".join(inputs)
        assert split_inputs(blob) == inputs
        assert stretch_chunk(16, 1, 1, blob) == b"".join(TINY(data) for data in inputs)

    @pytest.mark.parametrize("blob", [b"\x01\x00", b"\x01\x00\x05bob" + bytes(20), b"\x03\x00\x00" + bytes(20)])
    def test_malformed_chunk_refused(self, blob: bytes) -> None:
        """A chunk that ends inside an input or holds an unknown kind is a ValueError."""
        with pytest.raises(ValueError):
            split_inputs(blob)


class TestVariants:
    def test_nine_rules_in_order(self) -> None:
        """MIGP's first nine rules, in their order."""
        assert variants("Password1") == [
            "password1", "Password", "Passwor", "Passwo", "Password10", "1Password1", "Password1a",
            "Password1q", "0Password1",
        ]  # fmt: skip

    def test_first_n(self) -> None:
        """--variants N applies the first N rules only."""
        assert variants("summer", 3) == ["Summer", "summe", "summ"]

    def test_no_empty_no_identity_no_repeats(self) -> None:
        """Rules that give nothing new (an empty string, the password, an earlier variant) are skipped."""
        assert variants("7", 4) == []
        assert variants("ab") == ["Ab", "a", "ab0", "1ab", "aba", "abq", "0ab"]

    @pytest.mark.parametrize("count", [-1, 10, True, 2.0])
    def test_count_checked(self, count: object) -> None:
        """A variant count outside 0..9 is a ValueError."""
        with pytest.raises(ValueError):
            variants("x", count)  # type: ignore[arg-type]

    @given(st.text(), st.integers(0, MAX_VARIANTS))
    def test_distinct_nonempty_others(self, password: str, count: int) -> None:
        """Every variant is non-empty, differs from the password and from the others; at most N of them."""
        out = variants(password, count)
        assert len(out) <= count
        assert len(set(out)) == len(out)
        assert all(v and v != password for v in out)


class TestEntry:
    @given(st.binary(min_size=64, max_size=64), st.sampled_from([1, 2, 3]))
    def test_layout_and_unmask(self, y: bytes, status: int) -> None:
        """An entry is the 16-byte tag then status XOR the mask byte, both from SHA-512 of y."""
        out = entries.entry(y, status)
        assert len(out) == entries.ENTRY_SIZE == 17
        assert out[:16] == hashlib.sha512(b"\x00\x16credcheck-pairs-v1 tag" + y).digest()[:16]
        mask = hashlib.sha512(b"\x00\x19credcheck-pairs-v1 status" + y).digest()[0]
        assert out[16] ^ mask == status

    @pytest.mark.parametrize("status", [0, 4, -1])
    def test_status_checked(self, status: int) -> None:
        """Only statuses 1, 2 and 3 make an entry (a dummy is random bytes, not an entry of status 0)."""
        with pytest.raises(ValueError):
            entries.entry(bytes(64), status)
