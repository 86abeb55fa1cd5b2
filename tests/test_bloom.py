"""BloomFilter: sizing, no false negatives, measured false positives, keys, union, files, failures."""

from __future__ import annotations

import builtins
import errno
import math
import os
import re
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credcheck import _atomic, _native
from credcheck.bloom import BloomFilter, Key, optimal_parameters
from credcheck.errors import ArtifactError, CapacityError, ClosedError, CredcheckError

KEY_SIZE = {"sha1": 20, "ntlm": 16}
PASSWORD_SHA1 = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8"  # sha1("password")
PASSWORD_NTLM = "8846F7EAEE8FB117AD06BDD830B7586C"  # ntlm("password")
FORMAT_MD = Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md"

digest_schemes = pytest.mark.parametrize("scheme", ["sha1", "ntlm"])
# A fixture that is the same for every Hypothesis example (monkeypatch sets one constant) is safe to share.
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


def random_digests(n: int, size: int = 20, seed: int = 0) -> np.ndarray:
    """n random digests as an n x size uint8 array (leaked hashes are uniformly random)."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, size), dtype=np.uint8)


def digests(scheme: str, **kwargs: Any) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=KEY_SIZE[scheme], max_size=KEY_SIZE[scheme], **kwargs)


def saved_filter(tmp_path: Path, scheme: str = "sha1", n: int = 500) -> tuple[Path, np.ndarray]:
    """Save a small filter holding n random keys; return its path and the keys."""
    keys = random_digests(n, 16 if scheme == "ntlm" else 20, seed=1)
    bf = BloomFilter.create(1000, 1e-3, scheme=scheme)
    bf.update(keys)
    path = tmp_path / "filter.bloom"
    bf.save(path)
    return path, keys


def resign(data: bytearray) -> bytearray:
    """Recompute the header checksum (xxh3_64 of bytes 0..119, stored at 120) after editing the header."""
    data[120:128] = struct.pack("<Q", xxhash.xxh3_64_intdigest(bytes(data[:120])))
    return data


class TestOptimalParameters:
    @pytest.mark.parametrize("fp_rate", [1e-3, 1e-6])
    @pytest.mark.parametrize("capacity", [100_000, 1_000_000, 10_000_000])
    def test_bits_per_item_near_optimum(self, capacity: int, fp_rate: float) -> None:
        """m / capacity is within 5% of the Bloom optimum 1.44 * log2(1/eps) (above the small-filter floor)."""
        m, _ = optimal_parameters(capacity, fp_rate)
        optimum = 1.44 * math.log2(1 / fp_rate)
        assert abs(m / capacity - optimum) <= 0.05 * optimum

    @pytest.mark.parametrize(("capacity", "fp_rate"), [(1, 1e-6), (20, 1e-5), (100, 1e-6), (400, 1e-3)])
    def test_small_filters_keep_their_false_positive_rate(self, capacity: int, fp_rate: float) -> None:
        """A small filter is floored in size, so double hashing's degenerate steps keep within the rate asked."""
        bf = BloomFilter.create(capacity, fp_rate)
        rng = np.random.default_rng(7)
        bf.update(rng.integers(0, 256, (capacity, 20), dtype=np.uint8))
        probes = 1_000_000
        hits = int(bf.contains_many(rng.integers(0, 256, (probes, 20), dtype=np.uint8)).sum())
        assert hits <= max(3, 3 * fp_rate * probes)

    @pytest.mark.parametrize(("fp_rate", "k"), [(1e-6, 20), (1e-4, 13), (1e-3, 10)])
    def test_k(self, fp_rate: float, k: int) -> None:
        """k is the optimum round(m/n * ln 2): 20 positions at 1e-6."""
        assert optimal_parameters(1_000_000, fp_rate)[1] == k

    @settings(max_examples=200)
    @given(st.integers(1, 10**12), st.floats(1e-12, 0.99))
    def test_m_is_a_multiple_of_64_and_k_in_range(self, capacity: int, fp_rate: float) -> None:
        """m is a positive multiple of 64 (whole 8-byte words) and 1 <= k <= 64."""
        m, k = optimal_parameters(capacity, fp_rate)
        assert m >= 64 and m % 64 == 0
        assert 1 <= k <= 64

    @pytest.mark.parametrize(
        ("capacity", "fp_rate"),
        [
            (0, 1e-3),
            (-5, 1e-3),
            (1.5, 1e-3),
            ("10", 1e-3),
            (None, 1e-3),
            (100, 0.0),
            (100, 1.0),
            (100, -0.1),
            (100, 1.5),
            (100, float("nan")),
        ],
    )
    def test_bad_arguments(self, capacity: object, fp_rate: float) -> None:
        """A capacity that is not a positive int, or an fp rate outside (0, 1), raises ValueError."""
        with pytest.raises(ValueError):
            optimal_parameters(capacity, fp_rate)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            BloomFilter.create(capacity, fp_rate)  # type: ignore[arg-type]

    def test_unknown_scheme(self) -> None:
        """An unknown hash scheme raises ValueError naming the known ones."""
        with pytest.raises(ValueError, match="sha1"):
            BloomFilter.create(100, 1e-3, scheme="md5")


class TestNoFalseNegatives:
    @digest_schemes
    @fixture_ok
    @given(data=st.data())
    def test_every_added_digest_is_found(self, kernels: _native.Kernels, scheme: str, data: st.DataObject) -> None:
        """Every added digest answers True, through `in` and through contains_many, however it was added."""
        keys = data.draw(st.lists(digests(scheme), max_size=300))
        fp_rate = data.draw(st.sampled_from([0.5, 1e-2, 1e-6]))
        bf = BloomFilter.create(max(1, len(keys)), fp_rate, scheme=scheme)
        half = len(keys) // 2
        for key in keys[:half]:
            bf.add(key)
        bf.update(keys[half:])
        assert all(key in bf for key in keys)
        assert bf.contains_many(keys).all()
        array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, KEY_SIZE[scheme])
        assert bf.contains_many(array).all()

    def test_a_filled_filter_finds_a_million_members(self, kernels: _native.Kernels) -> None:
        """At full capacity every one of 1,000,000 members is found."""
        keys = random_digests(1_000_000, seed=7)
        bf = BloomFilter.create(1_000_000, 1e-6)
        bf.update(keys)
        assert bf.contains_many(keys).all()
        assert bf.approx_items == pytest.approx(1_000_000, abs=5)

    @digest_schemes
    def test_empty_filter_finds_nothing(self, scheme: str) -> None:
        """A fresh filter answers False for every key."""
        bf = BloomFilter.create(1000, 1e-3, scheme=scheme)
        keys = random_digests(1000, KEY_SIZE[scheme])
        assert not bf.contains_many(keys).any()
        assert bytes(keys[0]) not in bf


class TestFalsePositiveRate:
    @pytest.mark.parametrize("fp_rate", [1e-3, 1e-4])
    def test_measured_rate_at_capacity(self, kernels: _native.Kernels, fp_rate: float) -> None:
        """1,000,000 random non-members of a full 100,000-item filter hit at most twice the target rate."""
        bf = BloomFilter.create(100_000, fp_rate)
        bf.update(random_digests(100_000, seed=11))
        probes = random_digests(1_000_000, seed=12)  # distinct from the members with certainty (2^-160)
        rate = bf.contains_many(probes).mean()
        assert rate <= 2 * fp_rate
        assert bf.expected_fp_rate() <= 2 * fp_rate


class TestRoom:
    @settings(max_examples=300)
    @given(capacity=st.integers(1, 10**9), fp_rate=st.floats(1e-12, 0.5))
    def test_room_is_where_the_rate_is_reached(self, capacity: int, fp_rate: float) -> None:
        """A filter has room for its capacity, and for more only while its expected rate stays within fp_rate."""
        from credcheck.bloom import items_within  # here: the module's other tests run without it

        m, k = optimal_parameters(capacity, fp_rate)
        room = BloomFilter(m=m, k=k, capacity=capacity, fp_rate=fp_rate, bits=np.zeros(8, np.uint8)).room
        assert room >= capacity
        if room > capacity:
            assert room == items_within(m, k, fp_rate)
            assert (-math.expm1(-k * room / m)) ** k <= fp_rate * (1 + 1e-9)
            assert (-math.expm1(-k * (room + 1) / m)) ** k > fp_rate * (1 - 1e-9)

    def test_a_small_filter_has_room_beyond_its_capacity(self, tmp_path: Path) -> None:
        """A filter made for 3 keys at 1e-6 has the floor's 2 million bits: 5 keys (or 60,000) are well within
        its rate, so it saves; it is refused only past its room."""
        bf = BloomFilter.create(3, 1e-6)
        bf.update(random_digests(5, seed=3))
        bf.save(tmp_path / "f.bloom")
        assert BloomFilter.open(tmp_path / "f.bloom").room > 60_000
        bf.update(random_digests(bf.room, seed=4))
        assert bf.over_capacity
        with pytest.raises(CapacityError, match=f"has room for {bf.room} "):
            bf.save(tmp_path / "g.bloom")

    def test_a_filter_at_the_optimum_has_room_for_its_capacity(self, tmp_path: Path) -> None:
        """At the optimum the room is the capacity, give or take k's rounding; past it, saving is refused."""
        bf = BloomFilter.create(10_000, 1e-3)
        assert 10_000 <= bf.room < 10_100
        bf.update(random_digests(bf.room + 10, seed=5))
        with pytest.raises(CapacityError, match="has room for"):
            bf.save(tmp_path / "f.bloom")


class TestKeys:
    @pytest.mark.parametrize(
        "form",
        [
            bytes,
            bytearray,
            memoryview,
            lambda d: d.hex().upper(),
            lambda d: d.hex(),
            lambda d: "".join(c.upper() if i % 2 else c for i, c in enumerate(d.hex())),
        ],
        ids=["bytes", "bytearray", "memoryview", "hex-upper", "hex-lower", "hex-mixed"],
    )
    @digest_schemes
    def test_single_key_forms_agree(self, scheme: str, form: Callable[[bytes], Key]) -> None:
        """A digest as bytes, bytearray, memoryview or hex in any case is the same key, for add and `in`."""
        digest = bytes.fromhex(PASSWORD_SHA1 if scheme == "sha1" else PASSWORD_NTLM)
        added = BloomFilter.create(100, 1e-6, scheme=scheme)
        added.add(form(digest))
        assert digest in added
        reference = BloomFilter.create(100, 1e-6, scheme=scheme)
        reference.add(digest)
        assert added == reference
        assert form(digest) in reference

    @digest_schemes
    def test_many_key_forms(self, scheme: str) -> None:
        """update and contains_many take an n x key_size uint8 array (any layout) or a list of mixed forms."""
        keys = random_digests(50, KEY_SIZE[scheme], seed=3)
        mixed: list[Key] = [bytes(keys[0]), bytearray(keys[1]), memoryview(bytes(keys[2])), bytes(keys[3]).hex()]
        mixed += [bytes(row).hex().upper() for row in keys[4:]]
        by_list, by_array = (
            BloomFilter.create(100, 1e-6, scheme=scheme),
            BloomFilter.create(100, 1e-6, scheme=scheme),
        )
        by_list.update(mixed)
        by_array.update(np.asfortranarray(keys))
        assert by_list == by_array
        assert by_list.contains_many(mixed).all()
        assert by_list.contains_many(np.repeat(keys, 2, axis=0)[::2]).all()  # a strided view
        assert by_list.contains_many([]).shape == (0,)

    @pytest.mark.parametrize(
        ("key", "error"),
        [
            (b"\x00" * 19, ValueError),
            (b"\x00" * 21, ValueError),
            (b"", ValueError),
            (bytearray(16), ValueError),
            ("AB" * 19, ValueError),
            ("AB" * 21, ValueError),
            ("ZZ" * 20, ValueError),
            ("0x" + "AB" * 19, ValueError),
            ("é" * 40, ValueError),
            (1234, TypeError),
            (None, TypeError),
            (np.zeros(20, dtype=np.uint8), TypeError),
        ],
        ids=[
            "19-bytes",
            "21-bytes",
            "empty",
            "ntlm-sized",
            "38-hex",
            "42-hex",
            "non-hex",
            "0x-prefix",
            "non-ascii",
            "int",
            "none",
            "1-d-array",
        ],
    )
    def test_bad_single_keys(self, key: object, error: type[Exception]) -> None:
        """A key of the wrong length, non-hex text or an unsupported type is refused by add, in and update."""
        bf = BloomFilter.create(100, 1e-3)
        with pytest.raises(error):
            bf.add(key)  # type: ignore[arg-type]
        with pytest.raises(error):
            key in bf  # noqa: B015 - the lookup itself must raise
        with pytest.raises((ValueError, TypeError)):
            bf.update([key])  # type: ignore[list-item]
        assert bf.approx_items == 0

    @pytest.mark.parametrize(
        "key", ["5B AA61E4C9B93F3F0682250B6CF8331B7EE68F ", "5BAA61E4C9B93F3F0682250B6CF8331B7EE68F\n\t"]
    )
    def test_hex_with_whitespace_is_refused(self, key: str) -> None:
        """A 40-character hex key padded or split by whitespace is non-hex and raises ValueError."""
        bf = BloomFilter.create(100, 1e-3)
        for call in (lambda: key in bf, lambda: bf.contains_many([key] * 20), lambda: bf.update([key] * 20)):
            try:
                call()
            except ValueError:
                continue
            pytest.fail("a whitespace-padded hex key was accepted")

    def test_memoryview_measured_in_bytes(self) -> None:
        """A memoryview of 160 bytes (20 uint64 items) is not a 20-byte digest and raises ValueError."""
        bf = BloomFilter.create(100, 1e-3)
        try:
            np.zeros(20, dtype=np.uint64).data in bf  # noqa: B015
        except ValueError:
            return
        pytest.fail("a 160-byte memoryview was accepted as a 20-byte digest")

    @pytest.mark.parametrize(
        "array",
        [
            np.zeros((3, 20), dtype=np.uint16),
            np.zeros((3, 20), dtype=np.int8),
            np.zeros((3, 16), dtype=np.uint8),
            np.zeros((3, 21), dtype=np.uint8),
            np.zeros(20, dtype=np.uint8),
            np.zeros((3, 20, 1), dtype=np.uint8),
        ],
        ids=["uint16", "int8", "n-x-16", "n-x-21", "1-d", "3-d"],
    )
    def test_bad_arrays(self, array: np.ndarray) -> None:
        """An array of the wrong dtype or shape is refused by update and contains_many with ValueError."""
        bf = BloomFilter.create(100, 1e-3)
        with pytest.raises(ValueError):
            bf.update(array)
        with pytest.raises(ValueError):
            bf.contains_many(array)

    def test_ntlm_refuses_sha1_sized_keys(self) -> None:
        """An NTLM filter takes 16-byte digests only; a 20-byte SHA-1 digest raises ValueError."""
        bf = BloomFilter.create(100, 1e-3, scheme="ntlm")
        with pytest.raises(ValueError):
            bf.add(bytes.fromhex(PASSWORD_SHA1))
        with pytest.raises(ValueError):
            bf.update(np.zeros((2, 20), dtype=np.uint8))


class TestXxh3Scheme:
    @fixture_ok
    @given(
        keys=st.lists(st.one_of(st.text(), st.binary()), max_size=100),
        probes=st.lists(st.text(), max_size=20),
    )
    def test_arbitrary_keys_no_false_negatives(
        self, kernels: _native.Kernels, keys: list[str | bytes], probes: list[str]
    ) -> None:
        """An xxh3 filter takes any str or bytes, of any length, and finds every one it was given."""
        bf = BloomFilter.create(max(1, len(keys)), 1e-6, scheme="xxh3")
        bf.update(keys)
        assert all(key in bf for key in keys)
        assert bf.contains_many(keys).all()
        assert len(bf.contains_many(probes)) == len(probes)

    def test_str_is_its_utf8_bytes(self) -> None:
        """A str key is the same key as its UTF-8 encoding."""
        bf = BloomFilter.create(10, 1e-6, scheme="xxh3")
        bf.add("pässwörd")
        assert "pässwörd".encode() in bf
        assert bytearray("pässwörd".encode()) in bf

    def test_keys_are_xxh3_128_digests(self, tmp_path: Path) -> None:
        """An xxh3 key sets the bits its xxh3_128 digest (big-endian bytes) sets in a 16-byte digest filter."""
        words = ["password", "123456", "", "correct horse battery staple"]
        hashed = BloomFilter.create(100, 1e-6, scheme="xxh3")
        hashed.update(words)
        digested = BloomFilter.create(100, 1e-6, scheme="ntlm")
        digested.update([xxhash.xxh3_128_intdigest(w.encode()).to_bytes(16, "big") for w in words])
        hashed.save(tmp_path / "hashed")
        digested.save(tmp_path / "digested")
        assert (tmp_path / "hashed").read_bytes()[128:] == (tmp_path / "digested").read_bytes()[128:]

    @pytest.mark.parametrize("key", [1, None, 1.5, ["a"]])
    def test_refuses_non_text_keys(self, key: object) -> None:
        """A key that is neither str nor bytes raises TypeError."""
        bf = BloomFilter.create(10, 1e-3, scheme="xxh3")
        with pytest.raises(TypeError):
            bf.add(key)  # type: ignore[arg-type]


class TestUnion:
    def halves(self) -> tuple[BloomFilter, BloomFilter, np.ndarray]:
        a, b = BloomFilter.create(20_000, 1e-4), BloomFilter.create(20_000, 1e-4)
        keys = random_digests(15_000, seed=5)
        a.update(keys[:10_000])
        b.update(keys[5_000:])
        return a, b, keys

    def test_or_contains_both_sides(self) -> None:
        """a | b finds every key of a and of b, and leaves a and b unchanged."""
        a, b, keys = self.halves()
        before_a, before_b = a.copy(), b.copy()
        union = a | b
        assert union.contains_many(keys).all()
        assert a == before_a and b == before_b

    def test_ior_contains_both_sides(self) -> None:
        """a |= b makes a find every key of b too."""
        a, b, keys = self.halves()
        a |= b
        assert a.contains_many(keys).all()

    def test_union_equals_building_from_both(self) -> None:
        """The union's bits are those of one filter built from both key sets; its item count is estimated."""
        a, b, keys = self.halves()
        both = BloomFilter.create(20_000, 1e-4)
        both.update(keys)
        assert a | b == both
        assert (a | b).approx_items == pytest.approx(15_000, rel=0.03)

    @pytest.mark.parametrize(
        "other",
        [
            BloomFilter.create(40_000, 1e-4),
            BloomFilter.create(20_000, 1e-4, scheme="xxh3"),
            BloomFilter(m=BloomFilter.create(20_000, 1e-4).m, k=5, capacity=20_000, fp_rate=1e-4),
        ],
        ids=["other-size", "other-scheme", "other-k"],
    )
    def test_incompatible(self, other: BloomFilter) -> None:
        """Filters that differ in m, k or scheme cannot be combined: ValueError, and nothing changes."""
        a, _, _ = self.halves()
        before = a.copy()
        with pytest.raises(ValueError):
            a | other
        with pytest.raises(ValueError):
            a |= other
        assert a == before

    def test_not_a_filter(self) -> None:
        """Combining with something that is not a BloomFilter raises TypeError."""
        a, _, _ = self.halves()
        with pytest.raises(TypeError):
            a | {b"\x00" * 20}  # type: ignore[operator]


class TestCopyAndEquality:
    def test_copy_is_equal_and_independent(self) -> None:
        """A copy equals its original, and adding to the copy leaves the original unchanged."""
        bf = BloomFilter.create(1000, 1e-3)
        bf.update(random_digests(100))
        twin = bf.copy()
        assert twin == bf and twin is not bf
        twin.add(PASSWORD_SHA1)
        assert twin != bf
        assert PASSWORD_SHA1 not in bf
        assert (twin.capacity, twin.fp_rate, twin.scheme, twin.approx_items) == (1000, 1e-3, "sha1", 101)

    def test_equality_is_by_bits_and_layout(self) -> None:
        """Filters are equal when m, k, scheme and bits agree; not equal to other types; not hashable."""
        a, b = BloomFilter.create(1000, 1e-3), BloomFilter.create(1000, 1e-3)
        assert a == b
        a.add(PASSWORD_SHA1)
        assert a != b
        assert BloomFilter.create(1000, 1e-3, scheme="ntlm") != BloomFilter.create(1000, 1e-3, scheme="xxh3")
        assert a != "not a filter"
        with pytest.raises(TypeError):
            hash(a)


class TestSaveOpen:
    @pytest.mark.parametrize("scheme", ["sha1", "ntlm", "xxh3"])
    @fixture_ok
    @given(data=st.data())
    def test_round_trip(self, tmp_path: Path, scheme: str, data: st.DataObject) -> None:
        """build -> save -> open gives an equal filter with the same parameters and the same answers."""
        one_key: st.SearchStrategy[Key] = st.text() if scheme == "xxh3" else digests(scheme)
        keys = data.draw(st.lists(one_key, max_size=200))
        probes = data.draw(st.lists(one_key, max_size=50))
        capacity = data.draw(st.integers(max(1, len(keys)), 10_000))
        fp_rate = data.draw(st.sampled_from([0.1, 1e-3, 1e-6]))
        bf = BloomFilter.create(capacity, fp_rate, scheme=scheme, min_count=data.draw(st.integers(1, 100)))
        bf.update(keys)
        path = tmp_path / "filter.bloom"
        bf.save(path)
        with BloomFilter.open(path) as opened:
            assert opened == bf
            params = ("m", "k", "capacity", "fp_rate", "scheme", "min_count", "approx_items", "key_size")
            assert {p: getattr(opened, p) for p in params} == {p: getattr(bf, p) for p in params}
            assert opened.contains_many(keys + probes).tolist() == bf.contains_many(keys + probes).tolist()
            assert all(key in opened for key in keys)
            assert opened.path == str(path)

    def test_file_size_and_layout(self, tmp_path: Path) -> None:
        """The file is a 128-byte header (fields at the offsets docs/FORMAT.md gives) then exactly m/8 bytes."""
        bf = BloomFilter.create(1000, 1e-3, scheme="ntlm", min_count=3)
        bf.update(random_digests(700, 16))
        bf.save(tmp_path / "f")
        data = (tmp_path / "f").read_bytes()
        assert len(data) == 128 + bf.m // 8
        assert data[:8] == b"CCBLOOM\x00"
        fields = struct.unpack_from("<HBBIQQQdQQQ", data, 8)
        body = data[128:]
        assert fields == (
            1,
            2,
            bf.k,
            16,
            bf.m,
            1000,
            bf.approx_items,
            1e-3,
            3,
            bf.m // 8,
            xxhash.xxh3_64_intdigest(body),
        )
        assert data[72:120] == bytes(48)
        assert struct.unpack_from("<Q", data, 120)[0] == xxhash.xxh3_64_intdigest(data[:120])

    def test_opened_filter_is_read_only(self, tmp_path: Path) -> None:
        """An opened filter refuses add, update and |= with ArtifactError (a CredcheckError); a copy is writable."""
        path, keys = saved_filter(tmp_path)
        with BloomFilter.open(path) as opened:
            changes: list[Callable[[], None]] = [lambda: opened.add(PASSWORD_SHA1), lambda: opened.update(keys[:2])]
            for change in changes:
                with pytest.raises(ArtifactError, match="read-only") as caught:
                    change()
                assert isinstance(caught.value, CredcheckError)
            with pytest.raises(ArtifactError):
                opened |= opened.copy()
            twin = opened.copy()
            twin.add(PASSWORD_SHA1)
            assert PASSWORD_SHA1 in twin and PASSWORD_SHA1 not in opened
            assert (opened | twin) == twin

    def test_save_over_existing_file(self, tmp_path: Path) -> None:
        """Saving over an existing file replaces it and leaves no temporary file behind."""
        path, _ = saved_filter(tmp_path)
        bf = BloomFilter.create(10, 1e-3)
        bf.add(PASSWORD_SHA1)
        bf.save(path)
        assert os.listdir(tmp_path) == ["filter.bloom"]
        with BloomFilter.open(path) as opened:
            assert opened == bf

    def test_resave_an_opened_filter(self, tmp_path: Path) -> None:
        """An opened (memory-mapped) filter can be saved over its own file."""
        path, _ = saved_filter(tmp_path)
        before = path.read_bytes()
        with BloomFilter.open(path) as opened:
            opened.save(path)
        assert path.read_bytes() == before

    def test_save_over_capacity_raises(self, tmp_path: Path) -> None:
        """Saving a filter holding more items than its capacity raises CapacityError and writes nothing."""
        bf = BloomFilter.create(1000, 1e-3)
        bf.update(random_digests(2000))
        assert bf.over_capacity
        with pytest.raises(CapacityError, match="capacity") as caught:
            bf.save(tmp_path / "f")
        assert isinstance(caught.value, CredcheckError)
        assert os.listdir(tmp_path) == []

    def test_repr_holds_no_key_material(self, tmp_path: Path) -> None:
        """repr() of a filter, fresh or opened, shows its parameters and never a key."""
        bf = BloomFilter.create(10, 1e-3)
        bf.add(PASSWORD_SHA1)
        bf.save(tmp_path / "f")
        with BloomFilter.open(tmp_path / "f") as opened:
            for text in (repr(bf), str(bf), repr(opened)):
                assert "scheme=sha1" in text and "items=1" in text
                assert not re.search("[0-9a-fA-F]{10}", text.replace(str(tmp_path), ""))
                assert PASSWORD_SHA1[:5] not in text.upper()


class TestOpenRefuses:
    @pytest.mark.parametrize("where", ["first", "middle", "last"])
    def test_flipped_body_byte(self, tmp_path: Path, where: str) -> None:
        """A single flipped bit anywhere in the body fails the body checksum."""
        path, _ = saved_filter(tmp_path)
        data = bytearray(path.read_bytes())
        at = {"first": 128, "middle": (128 + len(data)) // 2, "last": len(data) - 1}[where]
        data[at] ^= 0x10
        path.write_bytes(data)
        with pytest.raises(ArtifactError, match="checksum"):
            BloomFilter.open(path)

    @pytest.mark.parametrize("offset", [0, 7, 8, 10, 11, 12, 16, 24, 32, 40, 48, 56, 64, 72, 119, 120, 127])
    def test_flipped_header_byte(self, tmp_path: Path, offset: int) -> None:
        """A flipped byte anywhere in the 128-byte header (magic, fields, reserved, checksum) is refused."""
        path, _ = saved_filter(tmp_path)
        data = bytearray(path.read_bytes())
        data[offset] ^= 0x01
        path.write_bytes(data)
        with pytest.raises(ArtifactError):
            BloomFilter.open(path, verify=False)
        with pytest.raises(ArtifactError):
            BloomFilter.open(path)

    @pytest.mark.parametrize(
        "cut",
        [
            lambda d: d[:-1],
            lambda d: d[:-8],
            lambda d: d[:129],
            lambda d: d[:128],
            lambda d: d[:127],
            lambda d: d[:8],
            lambda d: d + b"\x00",
            lambda d: d + d[128:],
        ],
        ids=[
            "minus-1",
            "minus-8",
            "header+1",
            "header-only",
            "short-header",
            "magic-only",
            "plus-1",
            "body-twice",
        ],
    )
    def test_wrong_size(self, tmp_path: Path, cut: Callable[[bytes], bytes]) -> None:
        """A truncated file, or one with extra bytes, is refused even without the body checksum."""
        path, _ = saved_filter(tmp_path)
        path.write_bytes(cut(path.read_bytes()))
        for verify in (True, False):
            with pytest.raises(ArtifactError):
                BloomFilter.open(path, verify=verify)

    @settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=100)
    @given(junk=st.binary(max_size=400), with_magic=st.booleans())
    def test_random_bytes(self, tmp_path: Path, junk: bytes, with_magic: bool) -> None:
        """Random bytes, even behind the right magic, are refused with ArtifactError."""
        path = tmp_path / "junk.bloom"
        path.write_bytes((b"CCBLOOM\x00" if with_magic else b"") + junk)
        with pytest.raises(ArtifactError):
            BloomFilter.open(path)

    def test_empty_file(self, tmp_path: Path) -> None:
        """An empty file is refused with ArtifactError."""
        (tmp_path / "empty").write_bytes(b"")
        with pytest.raises(ArtifactError, match="too short"):
            BloomFilter.open(tmp_path / "empty")

    def test_wrong_magic(self, tmp_path: Path) -> None:
        """A file with a well-formed header but another magic is not a credcheck filter."""
        path, _ = saved_filter(tmp_path)
        path.write_bytes(resign(bytearray(b"XXBLOOM\x00") + bytearray(path.read_bytes()[8:])))
        with pytest.raises(ArtifactError, match="magic"):
            BloomFilter.open(path)

    @pytest.mark.parametrize("version", [0, 2, 65535])
    def test_unknown_version(self, tmp_path: Path, version: int) -> None:
        """A correctly signed header of another format version is refused, naming the version."""
        path, _ = saved_filter(tmp_path)
        data = bytearray(path.read_bytes())
        struct.pack_into("<H", data, 8, version)
        path.write_bytes(resign(data))
        with pytest.raises(ArtifactError, match=f"version {version}"):
            BloomFilter.open(path)

    @pytest.mark.parametrize(
        ("offset", "fmt", "value"),
        [
            (10, "<B", 0),
            (10, "<B", 9),
            (12, "<I", 20),
            (11, "<B", 0),
            (11, "<B", 65),
            (16, "<Q", 100),
            (56, "<Q", 1),
        ],
        ids=[
            "scheme-0",
            "scheme-9",
            "key-size-mismatch",
            "k-0",
            "k-65",
            "m-not-64-multiple",
            "body-len-mismatch",
        ],
    )
    def test_inconsistent_signed_header(self, tmp_path: Path, offset: int, fmt: str, value: int) -> None:
        """A correctly signed header with an unknown scheme or inconsistent m, k or body length is refused."""
        path, _ = saved_filter(tmp_path, scheme="ntlm")
        data = bytearray(path.read_bytes())
        struct.pack_into(fmt, data, offset, value)
        path.write_bytes(resign(data))
        with pytest.raises(ArtifactError):
            BloomFilter.open(path)

    def test_errors_are_credcheck_errors(self, tmp_path: Path) -> None:
        """Refusals are ArtifactError, a CredcheckError and a ValueError, and name the file."""
        (tmp_path / "bad").write_bytes(b"nope")
        with pytest.raises(CredcheckError, match="bad") as caught:
            BloomFilter.open(tmp_path / "bad")
        assert isinstance(caught.value, ArtifactError) and isinstance(caught.value, ValueError)


class TestVerifyFalse:
    def test_skips_only_the_body_checksum(self, tmp_path: Path) -> None:
        """verify=False opens a file with a corrupted body (and answers from it); verify=True refuses it."""
        path, keys = saved_filter(tmp_path)
        data = bytearray(path.read_bytes())
        data[128:] = bytes(len(data) - 128)  # wipe the body: every lookup now misses
        path.write_bytes(data)
        with pytest.raises(ArtifactError):
            BloomFilter.open(path)
        with BloomFilter.open(path, verify=False) as opened:
            assert not opened.contains_many(keys).any()

    def test_still_checks_size_and_header(self, tmp_path: Path) -> None:
        """verify=False still refuses a truncated file and a corrupt header."""
        path, _ = saved_filter(tmp_path)
        data = path.read_bytes()
        path.write_bytes(data[:-1])
        with pytest.raises(ArtifactError):
            BloomFilter.open(path, verify=False)
        path.write_bytes(data[:30] + bytes([data[30] ^ 1]) + data[31:])
        with pytest.raises(ArtifactError):
            BloomFilter.open(path, verify=False)


class _FailingFile:
    """A binary file whose writes after the first raise ``exc``, as a full disk would midway through."""

    def __init__(self, path: str | os.PathLike[str], mode: str, exc: BaseException) -> None:
        self._file = builtins.open(path, mode)  # noqa: SIM115 - closed by __exit__
        self._exc = exc
        self.writes = 0
        self.failed = False

    def write(self, data: bytes) -> int:
        self.writes += 1
        if self.writes > 1:
            self.failed = True
            raise self._exc
        return self._file.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> _FailingFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()


class TestAtomicSave:
    def new_filter(self) -> BloomFilter:
        bf = BloomFilter.create(1000, 1e-3)
        bf.update(random_digests(300, seed=9))
        return bf

    @pytest.mark.parametrize(
        ("exc", "raised"),
        [
            (OSError(errno.ENOSPC, "No space left on device"), CredcheckError),
            (RuntimeError("interrupted"), RuntimeError),
        ],
        ids=["disk-full", "other-exception"],
    )
    def test_failed_write_keeps_old_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException, raised: type[BaseException]
    ) -> None:
        """If a write fails midway the previous file is unchanged and no temporary file is left."""
        path, _ = saved_filter(tmp_path)
        before = path.read_bytes()
        opened_files: list[_FailingFile] = []

        def failing_open(name: str, mode: str = "r", *args: Any, **kwargs: Any) -> _FailingFile:
            opened_files.append(_FailingFile(name, mode, exc))
            return opened_files[-1]

        monkeypatch.setattr(_atomic, "open", failing_open, raising=False)
        with pytest.raises(raised):
            self.new_filter().save(path)
        assert opened_files and opened_files[0].failed  # the failure really happened after a first write
        assert path.read_bytes() == before
        assert os.listdir(tmp_path) == ["filter.bloom"]

    @pytest.mark.parametrize("step", ["fsync", "replace"])
    def test_failed_sync_or_rename_keeps_old_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
    ) -> None:
        """If the fsync or the final rename fails, the old file is unchanged and no temporary file is left."""
        path, _ = saved_filter(tmp_path)
        before = path.read_bytes()

        def boom(*args: Any, **kwargs: Any) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, step, boom)
        with pytest.raises(CredcheckError, match="cannot write"):
            self.new_filter().save(path)
        monkeypatch.undo()
        assert path.read_bytes() == before
        assert os.listdir(tmp_path) == ["filter.bloom"]

    def test_failed_first_save_leaves_nothing(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """If the first save to a new path fails, neither the target nor a temporary file exists."""
        monkeypatch.setattr(
            _atomic,
            "open",
            lambda name, mode="r": _FailingFile(name, mode, OSError(errno.ENOSPC, "full")),
            raising=False,
        )
        with pytest.raises(CredcheckError):
            self.new_filter().save(tmp_path / "new.bloom")
        assert os.listdir(tmp_path) == []

    def test_missing_directory(self, tmp_path: Path) -> None:
        """Saving into a directory that does not exist raises CredcheckError naming the path."""
        with pytest.raises(CredcheckError, match="nowhere"):
            self.new_filter().save(tmp_path / "nowhere" / "f.bloom")


class TestReferenceReader:
    def reader(self) -> dict[str, Any]:
        """The reference reader from docs/FORMAT.md, executed as written."""
        text = FORMAT_MD.read_text(encoding="utf-8")
        bloom_section = text.split("## Bloom filter", 1)[1].split("\n## ", 1)[0]
        code = re.search(r"```python\n(.*?)```", bloom_section, re.S)
        assert code, "docs/FORMAT.md has no python reference reader in its Bloom filter section"
        namespace: dict[str, Any] = {}
        exec(compile(code.group(1), str(FORMAT_MD), "exec"), namespace)
        return namespace

    @pytest.mark.parametrize("scheme", ["sha1", "ntlm", "xxh3"])
    def test_reader_agrees_with_bloomfilter(self, tmp_path: Path, scheme: str) -> None:
        """The documented reader loads a saved filter and gives the same answers as BloomFilter."""
        ns = self.reader()
        if scheme == "xxh3":
            keys = [f"user{i}:pw{i}".encode() for i in range(300)]
            probes = [f"other{i}".encode() for i in range(300)]
        else:
            size = KEY_SIZE[scheme]
            keys = [bytes(r) for r in random_digests(300, size, seed=2)]
            probes = [bytes(r) for r in random_digests(300, size, seed=3)]
        bf = BloomFilter.create(300, 0.05, scheme=scheme)
        bf.update(keys)
        bf.save(tmp_path / "f")
        loaded = ns["read_filter"](str(tmp_path / "f"))
        answers = [ns["contains"](loaded, key) for key in keys + probes]
        assert answers == bf.contains_many(keys + probes).tolist()
        assert all(answers[:300]) and not all(answers[300:])


class TestLifecycle:
    def test_saved_file_gets_the_umask_mode(self, tmp_path: Path) -> None:
        """A saved filter is readable like any new file (0644 under umask 022), not private to the builder."""
        old = os.umask(0o022)
        try:
            BloomFilter.create(10, 1e-3).save(tmp_path / "f.bloom")
        finally:
            os.umask(old)
        assert (tmp_path / "f.bloom").stat().st_mode & 0o777 == 0o644

    def test_replacing_keeps_the_old_mode(self, tmp_path: Path) -> None:
        """Saving over an existing filter keeps that file's permissions."""
        path = tmp_path / "f.bloom"
        BloomFilter.create(10, 1e-3).save(path)
        path.chmod(0o640)
        BloomFilter.create(10, 1e-3).save(path)
        assert path.stat().st_mode & 0o777 == 0o640

    def test_closed_filter_raises_credcheck_error(self, tmp_path: Path) -> None:
        """Looking up in a closed filter is a ClosedError, not a silent answer."""
        BloomFilter.create(10, 1e-3).save(tmp_path / "f.bloom")
        bf = BloomFilter.open(tmp_path / "f.bloom")
        bf.close()
        with pytest.raises(ClosedError, match="closed"):
            b"\x00" * 20 in bf  # noqa: B015
        with pytest.raises(ClosedError, match="closed"):
            bf.contains_many(np.zeros((1, 20), np.uint8))


class _HeldKernels:
    """The kernels, with contains_many held (in whatever thread calls it) until released."""

    def __init__(self, real: _native.Kernels) -> None:
        self.real, self.entered, self.release = real, threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def contains_many(self, *args: Any) -> int:
        self.entered.set()
        self.release.wait(10)
        return self.real.contains_many(*args)


class TestCloseWhileInUse:
    @pytest.fixture
    def opened(self, tmp_path: Path) -> Iterator[BloomFilter]:
        bf = BloomFilter.create(50_000, 1e-4)
        bf.update(random_digests(25_000, seed=21))
        bf.save(tmp_path / "f.bloom")
        with BloomFilter.open(tmp_path / "f.bloom") as opened:
            yield opened

    def test_close_during_contains_many(self, opened: BloomFilter, monkeypatch: pytest.MonkeyPatch) -> None:
        """close() while contains_many is in its kernel: no BufferError; the lookup answers in full from the map
        it holds; every lookup after close() is a ClosedError."""
        probes = random_digests(2_000, seed=22)
        expected = opened.contains_many(probes)
        held = _HeldKernels(_native.kernels)
        monkeypatch.setattr(_native, "kernels", held)
        answers = []
        lookup = threading.Thread(target=lambda: answers.append(opened.contains_many(probes)))
        lookup.start()
        held.entered.wait(10)
        opened.close()
        opened.close()
        with pytest.raises(ClosedError):
            opened.contains_many(probes)
        with pytest.raises(ClosedError):
            bytes(probes[0]) in opened  # noqa: B015
        held.release.set()
        lookup.join()
        np.testing.assert_array_equal(answers[0], expected)

    @pytest.mark.usefixtures("kernels")
    def test_sixteen_threads_racing_close(self, opened: BloomFilter) -> None:
        """16 threads look up batches while another closes: each answers in full or raises ClosedError."""
        probes = random_digests(100_000, seed=23)
        expected = opened.contains_many(probes)
        outcomes: list[np.ndarray | BaseException] = []
        start = threading.Barrier(17)

        def worker() -> None:
            start.wait()
            while True:
                try:
                    outcomes.append(opened.contains_many(probes))
                except BaseException as exc:  # every error is an outcome: only ClosedError is right
                    outcomes.append(exc)
                    return

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for thread in threads:
            thread.start()
        start.wait()
        while len(outcomes) < 4:
            threading.Event().wait(0.001)
        opened.close()
        for thread in threads:
            thread.join()
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert [type(e).__name__ for e in errors] == ["ClosedError"] * 16
        assert all(np.array_equal(o, expected) for o in outcomes if not isinstance(o, BaseException))


class TestFuzzFindings:
    def test_xxh3_filter_is_not_a_password_source(self, tmp_path: Path) -> None:
        """credcheck.open() refuses an xxh3 filter with an ArtifactError (it holds arbitrary keys, not hashes)."""
        import credcheck

        bf = BloomFilter.create(10, 1e-3, scheme="xxh3")
        bf.add("a")
        bf.save(tmp_path / "x.bloom")
        with pytest.raises(ArtifactError, match="xxh3"):
            credcheck.open(tmp_path / "x.bloom")

    @pytest.mark.parametrize(
        ("field", "value"), [("fp_rate", 0.0), ("fp_rate", float("nan")), ("capacity", 0), ("min_count", 0)]
    )
    def test_impossible_parameters_are_refused(self, tmp_path: Path, field: str, value: float) -> None:
        """A re-signed header with an impossible fp_rate, capacity or min_count is an ArtifactError."""
        bf = BloomFilter.create(10, 1e-3)
        setattr(bf, field, value)
        bf.save(tmp_path / "f.bloom")
        with pytest.raises(ArtifactError, match="impossible"):
            BloomFilter.open(tmp_path / "f.bloom")
