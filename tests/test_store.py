"""RangeStore: build, exact lookups, HIBP-format ranges, verification of the file."""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import credcheck
from credcheck import ArtifactError, RangeStore, build
from credcheck.checker import StoreChecker
from credcheck.hashing import ntlm_hex
from credcheck.store import HEADER_SIZE, INDEX_SIZE

from .conftest import LEAKED, sha1_upper


@pytest.fixture
def store_path(hibp_file: Path, tmp_path: Path) -> Path:
    path = tmp_path / "pwned.store"
    build([hibp_file], store=path)
    return path


class TestRanges:
    def test_range_is_hibp_text(self, store_path: Path) -> None:
        """A range is SUFFIX:COUNT lines, upper case, sorted, CRLF between, none after the last."""
        full = sha1_upper("password")
        with RangeStore(store_path) as store:
            body = store.range_body(int(full[:5], 16))
        assert body == f"{full[5:]}:1".encode()
        assert not body.endswith(b"\r\n")

    def test_shared_prefix_lines_sorted_and_crlf_joined(self, tmp_path: Path) -> None:
        """Several hashes under one prefix come back sorted and CRLF-joined, counts exact."""
        suffixes = sorted(f"{random.Random(i).getrandbits(140):035X}" for i in range(5))
        src = tmp_path / "one-prefix.txt"
        src.write_text("\n".join(f"ABCDE{s}:{i + 1}" for i, s in enumerate(reversed(suffixes))))
        build([src], store=tmp_path / "s.store")
        with RangeStore(tmp_path / "s.store") as store:
            body = store.range_body(0xABCDE)
        assert body.split(b"\r\n") == [f"{s}:{5 - i}".encode() for i, s in enumerate(suffixes)]

    def test_empty_prefix(self, store_path: Path) -> None:
        """A prefix no hash has gives an empty body."""
        with RangeStore(store_path) as store:
            assert store.range_body(0) == b"" and store.range_lines(0) == []

    def test_prefix_out_of_range(self, store_path: Path) -> None:
        """A prefix beyond 20 bits is a ValueError."""
        with RangeStore(store_path) as store, pytest.raises(ValueError):
            store.rows_of(1 << 20)

    def test_ntlm_suffixes_are_27_hex(self, ntlm_hibp_file: Path, tmp_path: Path) -> None:
        """An NTLM store records its scheme and serves 27-character suffixes."""
        build([ntlm_hibp_file], store=tmp_path / "n.store", scheme="ntlm")
        full = ntlm_hex("Passw0rd!")
        with RangeStore(tmp_path / "n.store") as store:
            assert store.scheme == "ntlm" and store.suffix_length == 27
            line = store.range_body(int(full[:5], 16))
        assert line == f"{full[5:]}:{LEAKED.index('Passw0rd!') + 1}".encode()


class TestLookups:
    def test_counts_are_exact(self, store_path: Path) -> None:
        """Every leaked password is found with its exact count through credcheck.open()."""
        with credcheck.open(store_path) as checker:
            assert isinstance(checker, StoreChecker)
            assert [e.count for e in checker.check_many(LEAKED)] == list(range(1, len(LEAKED) + 1))
            assert checker.check("not leaked 4 sure").count == 0

    def test_min_count_threshold(self, store_path: Path) -> None:
        """min_count makes only hashes seen at least that often count as compromised, counts still shown."""
        with credcheck.open(store_path, min_count=3) as checker:
            results = checker.check_many(LEAKED[:4])
        assert [(e.compromised, e.count) for e in results] == [(False, 1), (False, 2), (True, 3), (True, 4)]

    def test_wrong_shape_is_refused(self, store_path: Path) -> None:
        """lookup_many takes n x digest-size uint8 rows only."""
        with RangeStore(store_path) as store, pytest.raises(ValueError):
            store.lookup_many(np.zeros((2, 16), dtype=np.uint8))

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        entries=st.dictionaries(
            st.binary(min_size=20, max_size=20), st.integers(1, 2**32 - 1), min_size=1, max_size=200
        ),
        probes=st.lists(st.binary(min_size=20, max_size=20), max_size=50),
        shared=st.binary(min_size=3, max_size=3),
    )
    def test_lookup_matches_a_dict(
        self, tmp_path: Path, entries: dict[bytes, int], probes: list[bytes], shared: bytes
    ) -> None:
        """Build -> open -> lookup_many returns each stored count and 0 for everything else."""
        # put some digests under one prefix so the in-prefix binary search has work to do
        entries = {(shared + d[3:] if i % 3 == 0 else d): c for i, (d, c) in enumerate(entries.items())}
        src = tmp_path / "set.txt"
        src.write_text("\n".join(f"{d.hex()}:{c}" for d, c in entries.items()))
        build([src], store=tmp_path / "s.store")
        queries = [*entries, *probes]
        with RangeStore(tmp_path / "s.store") as store:
            got: np.ndarray | list[int] = (
                store.lookup_many(np.frombuffer(b"".join(queries), np.uint8).reshape(-1, 20)) if queries else []
            )
            assert [int(c) for c in got] == [entries.get(q, 0) for q in queries]
            assert store.rows == len(entries)


class TestFile:
    @pytest.mark.parametrize(
        "offset", [12, HEADER_SIZE + 8, HEADER_SIZE + INDEX_SIZE + 3, -1], ids=["header", "index", "hashes", "counts"]
    )
    def test_flipped_byte_is_refused(self, store_path: Path, offset: int) -> None:
        """A flipped byte anywhere is an ArtifactError naming the file."""
        data = bytearray(store_path.read_bytes())
        data[offset] ^= 0x20
        store_path.write_bytes(bytes(data))
        with pytest.raises(ArtifactError, match="corrupt"):
            RangeStore(store_path)

    @pytest.mark.parametrize("size", [0, 50, HEADER_SIZE, HEADER_SIZE + 100, -1])
    def test_truncated_is_refused_even_unverified(self, store_path: Path, size: int) -> None:
        """A truncated store is refused, with or without checksum verification."""
        data = store_path.read_bytes()
        store_path.write_bytes(data[:size])
        for verify in (True, False):
            with pytest.raises(ArtifactError):
                RangeStore(store_path, verify=verify)

    def test_random_bytes_are_refused(self, tmp_path: Path) -> None:
        """Random bytes named as a store are refused by credcheck.open()."""
        path = tmp_path / "junk.store"
        path.write_bytes(random.Random(5).randbytes(HEADER_SIZE + INDEX_SIZE + 64))
        with pytest.raises(ArtifactError):
            credcheck.open(path)

    def test_verify_false_skips_only_body_checksums(self, store_path: Path) -> None:
        """verify=False opens a store whose hash bytes were altered (size and header still checked)."""
        data = bytearray(store_path.read_bytes())
        data[HEADER_SIZE + INDEX_SIZE] ^= 0x01
        store_path.write_bytes(bytes(data))
        with RangeStore(store_path, verify=False) as store:
            assert store.rows == len(LEAKED)

    def test_failed_build_leaves_previous_store(self, store_path: Path, tmp_path: Path) -> None:
        """A build that fails half-way leaves the previous store byte-identical and no temporary file."""
        before = store_path.read_bytes()
        bad = tmp_path / "bad.txt"
        bad.write_text(f"{sha1_upper('a')}:4294967295\n{sha1_upper('a')}:5\n")
        with pytest.raises(credcheck.InputError):
            build([bad], store=store_path)
        assert store_path.read_bytes() == before
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    def test_filter_and_store_from_one_build(self, hibp_file: Path, tmp_path: Path) -> None:
        """One build writes both artefacts from the same merged stream."""
        report = build([hibp_file], filter=tmp_path / "f.bloom", store=tmp_path / "s.store")
        with credcheck.open(tmp_path / "f.bloom") as f, credcheck.open(tmp_path / "s.store") as s:
            assert all(e.compromised for e in f.check_many(LEAKED))
            assert all(e.compromised for e in s.check_many(LEAKED))
        assert report.store_path and report.filter_path

    def test_repr_has_no_key_material(self, store_path: Path) -> None:
        """The store's repr names the file and size, never a hash."""
        with RangeStore(store_path) as store:
            assert hashlib.sha1(b"password").hexdigest().upper()[:10] not in repr(store)


def _resign(path: Path, edit: Callable[[np.ndarray, np.ndarray, np.ndarray], None]) -> None:
    """Edit a store's index, rows and counts in place, then give it valid checksums again (a buggy writer)."""
    data = bytearray(path.read_bytes())
    rows, size = struct.unpack_from("<Q", data, 16)[0], struct.unpack_from("<I", data, 12)[0]
    width = size - 2
    suffix_at = HEADER_SIZE + INDEX_SIZE
    counts_at = suffix_at + rows * width + (-(suffix_at + rows * width) % 8)
    index = np.frombuffer(data, dtype="<u8", count=(INDEX_SIZE // 8), offset=HEADER_SIZE)
    suffixes = np.frombuffer(data, dtype=np.uint8, count=rows * width, offset=suffix_at).reshape(rows, width)
    counts = np.frombuffer(data, dtype="<u4", count=rows, offset=counts_at)
    edit(index, suffixes, counts)
    for at, part in ((40, index), (48, suffixes), (56, counts)):
        struct.pack_into("<Q", data, at, xxhash.xxh3_64_intdigest(part.tobytes()))
    struct.pack_into("<Q", data, 120, xxhash.xxh3_64_intdigest(bytes(data[:120])))
    del index, suffixes, counts
    path.write_bytes(bytes(data))


@pytest.fixture
def crowded_store(tmp_path: Path) -> Path:
    """A store where prefix 00000 holds three rows (and 00001 one), so rows can be moved within a prefix."""
    digests = [f"00000{c}{'0' * 34}" for c in "37B"] + [f"00001{'F' * 35}", sha1_upper("password")]
    source = tmp_path / "crowded.txt"
    source.write_text("".join(f"{d}:{n}\n" for n, d in enumerate(digests, start=2)))
    path = tmp_path / "crowded.store"
    build([source], store=path)
    return path


def _swap_first_rows(index: np.ndarray, suffixes: np.ndarray, counts: np.ndarray) -> None:
    suffixes[[0, 1]] = suffixes[[1, 0]]


def _duplicate_row(index: np.ndarray, suffixes: np.ndarray, counts: np.ndarray) -> None:
    suffixes[1] = suffixes[0]


def _zero_count(index: np.ndarray, suffixes: np.ndarray, counts: np.ndarray) -> None:
    counts[2] = 0


def _row_under_next_prefix(index: np.ndarray, suffixes: np.ndarray, counts: np.ndarray) -> None:
    index[1] = 2  # prefix 00000 gives its last row to 00001: that row's fifth hex digit is 0, not 1


def _row_under_previous_prefix(index: np.ndarray, suffixes: np.ndarray, counts: np.ndarray) -> None:
    index[1] = 4  # prefix 00000 takes 00001's row


class TestStructure:
    @pytest.mark.parametrize(
        "edit",
        [_swap_first_rows, _duplicate_row, _zero_count, _row_under_next_prefix, _row_under_previous_prefix],
        ids=["rows-out-of-order", "duplicate-row", "count-zero", "row-under-next-prefix", "row-under-previous"],
    )
    def test_inconsistent_rows_with_valid_checksums_are_refused(
        self, crowded_store: Path, edit: Callable[[np.ndarray, np.ndarray, np.ndarray], None]
    ) -> None:
        """A store whose checksums are valid but whose rows break the format's order is an ArtifactError."""
        _resign(crowded_store, edit)
        with pytest.raises(ArtifactError, match="rows are inconsistent"):
            RangeStore(crowded_store)

    def test_resigned_unchanged_store_opens(self, crowded_store: Path) -> None:
        """Re-signing without an edit leaves a store that opens and answers (the helper itself is sound)."""
        _resign(crowded_store, lambda index, suffixes, counts: None)
        with RangeStore(crowded_store) as store:
            assert store.lookup(bytes.fromhex(f"000007{'0' * 34}")) == 3

    def test_verify_false_skips_the_row_checks(self, crowded_store: Path) -> None:
        """verify=False still opens such a file (the opt-out skips the pass over the rows, not the header)."""
        _resign(crowded_store, _swap_first_rows)
        with RangeStore(crowded_store, verify=False) as store:
            assert store.rows == 5

    @settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        head=st.binary(min_size=2, max_size=2),
        tails=st.sets(st.binary(min_size=18, max_size=18), min_size=2, max_size=300),
        data=st.data(),
    )
    def test_any_swap_of_two_rows_of_16_prefixes_is_refused(
        self, tmp_path: Path, head: bytes, tails: set[bytes], data: st.DataObject
    ) -> None:
        """Swapping two rows among the 16 prefixes that share a digest's first two bytes (re-signed) never opens."""
        digests = {head + tail for tail in tails}  # one group of 16 prefixes: the stored bytes order them all
        source = tmp_path / "h.txt"
        source.write_text("".join(f"{d.hex().upper()}:1\n" for d in digests))
        path = tmp_path / "h.store"
        build([source], store=path)
        i = data.draw(st.integers(0, len(digests) - 1))
        j = data.draw(st.integers(0, len(digests) - 1).filter(lambda j: j != i))

        def swap(index: np.ndarray, suffixes: np.ndarray, counts: np.ndarray) -> None:
            suffixes[[i, j]] = suffixes[[j, i]]

        _resign(path, swap)
        with pytest.raises(ArtifactError, match="rows are inconsistent"):
            RangeStore(path)
