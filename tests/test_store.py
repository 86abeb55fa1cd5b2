"""RangeStore: build, exact lookups, HIBP-format ranges, verification of the file."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import credcheck
from credcheck import ArtifactError, RangeStore, build
from credcheck.hashing import ntlm_hex
from credcheck.store import HEADER_SIZE, INDEX_SIZE, StoreChecker

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
        build([ntlm_hibp_file], store=tmp_path / "n.store", hash="ntlm")
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
            got = store.lookup_many(np.frombuffer(b"".join(queries), np.uint8).reshape(-1, 20)) if queries else []
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
