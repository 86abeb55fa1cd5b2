"""FuseFilter: fingerprint widths, no false negatives, measured false positives, files refused when wrong,
the fuse layout in build() (fresh, --update rebuilding only changed shards), open() and the command line."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import credcheck
from credcheck import ArtifactError, InputError, StorageError, build, fuse
from credcheck.checker import FilterChecker
from credcheck.cli import main
from credcheck.errors import ClosedError
from credcheck.fuse import HEADER_SIZE, FuseFilter, FuseWriter, fingerprint_width, shard_bits_for

from .conftest import LEAKED, sha1_upper

KEY_SIZE = {"sha1": 20, "ntlm": 16}
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=40)


def random_digests(n: int, size: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size), dtype=np.uint8)


def sorted_rows(rows: np.ndarray) -> np.ndarray:
    """Rows sorted and distinct, as the build engine hands them to a sink."""
    keys = np.ascontiguousarray(rows).view(f"S{rows.shape[1]}").ravel()
    _, first = np.unique(keys, return_index=True)
    return rows[first]


@pytest.fixture
def small_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shards of 32-64 keys, so that a test's few hundred keys make several shards."""
    monkeypatch.setattr(fuse, "SHARD_ITEMS", 32)


def dump(path: Path, digests: np.ndarray) -> Path:
    """A sorted HIBP-format dump of the digest rows (count 1 each)."""
    lines = sorted(f"{bytes(row).hex().upper()}:1" for row in digests)
    path.write_text("\r\n".join(lines))
    return path


class TestWidths:
    @pytest.mark.parametrize(
        ("fp_rate", "width"), [(1e-6, 20), (2**-20, 20), (1e-3, 10), (0.5, 1), (0.3, 2), (2**-32, 32)]
    )
    def test_width_from_rate(self, fp_rate: float, width: int) -> None:
        """The fingerprint is ceil(log2(1/fp_rate)) bits: 1e-6 takes 20, not 32."""
        assert fingerprint_width(fp_rate) == width

    def test_rate_below_the_widest_print_is_refused(self) -> None:
        """A rate the layout cannot give (below 2^-32) is a ValueError that names the bloom layout."""
        with pytest.raises(ValueError, match="bloom layout"):
            fingerprint_width(1e-10)

    @pytest.mark.parametrize(
        ("items", "bits"), [(0, 0), (4_194_303, 0), (4_194_304, 1), (10**7, 2), (1_900_000_000, 9)]
    )
    def test_shard_bits(self, items: int, bits: int) -> None:
        """Shards hold 2-4 M keys on average: 1 shard below 4 M keys, 512 for 1.9 billion."""
        assert shard_bits_for(items) == bits


@pytest.mark.usefixtures("kernels")
class TestMembership:
    @fixture_ok
    @given(st.sampled_from(["sha1", "ntlm"]), st.lists(st.binary(min_size=20, max_size=20), max_size=200), st.data())
    def test_no_false_negatives(self, tmp_path: Path, scheme: str, keys: list[bytes], data: st.DataObject) -> None:
        """Every key a filter was built from is found, by ``in`` and ``contains_many``, repeats and all."""
        size = KEY_SIZE[scheme]
        rows = np.frombuffer(b"".join(k[:size] for k in keys), dtype=np.uint8).reshape(-1, size)
        rows = np.concatenate([rows, rows[: data.draw(st.integers(0, len(rows)))]])  # some twice
        with FuseFilter.build(tmp_path / "f.fuse", rows, fp_rate=data.draw(st.sampled_from([0.3, 1e-3, 1e-6])),
                              scheme=scheme) as f:  # fmt: skip
            assert f.contains_many(rows).all()
            assert all(bytes(row) in f for row in rows)

    @pytest.mark.usefixtures("small_shards")
    def test_sharded_stream_equals_whole_array_build(self, tmp_path: Path) -> None:
        """A filter written shard by shard from a sorted stream, in chunks of any size, is byte for byte the
        filter built from the same keys as one unsorted array (it depends only on the set of keys)."""
        rows = random_digests(700, seed=3)
        whole = FuseFilter.build(tmp_path / "whole.fuse", rows[::-1])
        assert whole.shard_bits == shard_bits_for(700) > 2
        writer = FuseWriter(tmp_path / "stream.fuse", items=700)
        ordered = sorted_rows(rows)
        for lo, hi in ((0, 1), (1, 150), (150, 151), (151, 700)):
            writer.add(ordered[lo:hi], np.ones(hi - lo, dtype=np.uint64))
        writer.finish()
        writer.commit()
        assert (tmp_path / "stream.fuse").read_bytes() == (tmp_path / "whole.fuse").read_bytes()
        whole.close()

    def test_rows_out_of_shard_order_are_refused(self, tmp_path: Path, small_shards: None) -> None:
        """A stream that goes back to an earlier shard (input changed mid-build) is an ArtifactError."""
        rows = sorted_rows(random_digests(300, seed=4))
        writer = FuseWriter(tmp_path / "f.fuse", items=300)
        writer.add(rows[200:])
        with pytest.raises(ArtifactError, match="out of shard order"):
            writer.add(rows[:10])
        writer.abort()
        assert [p.name for p in tmp_path.iterdir()] == [".f.fuse.fuse-partial"]  # its finished shards, kept

    def test_digests_sharing_their_word_are_one_key(self, tmp_path: Path) -> None:
        """Two digests equal in bytes 8-15 (the word slots and print come from) are one key to a shard: the build
        removes the duplicate word instead of failing, and both digests are found."""
        rows = random_digests(100, seed=41)
        rows[1, 8:16] = rows[0, 8:16]
        rows[1, :8] = rows[0, :8] ^ 0x01  # same shard (one shard here), another digest
        with FuseFilter.build(tmp_path / "f.fuse", rows) as f:
            assert f.items == 99 and f.contains_many(rows).all()

    def test_a_set_no_seed_can_build_is_refused(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """When no seed peels a shard (a set crafted against the layout), the build stops with an InputError
        naming the shard and the way out, and leaves no filter."""
        monkeypatch.setattr(fuse._native.kernels, "fuse_build", lambda *args: False)
        with pytest.raises(InputError, match=r"shard 0: no construction succeeded with 64 seeds.*--layout bloom"):
            FuseFilter.build(tmp_path / "f.fuse", random_digests(10, seed=42))
        assert list(tmp_path.iterdir()) == []  # no filter, no partial file

    def test_false_positive_rate(self, tmp_path: Path) -> None:
        """Measured over 400,000 non-members, the rate is within twice the target (2^-10 at 1e-3)."""
        with FuseFilter.build(tmp_path / "f.fuse", random_digests(20_000, seed=5), fp_rate=1e-3) as f:
            assert f.width == 10
            hits = int(f.contains_many(random_digests(400_000, seed=6)).sum())
        assert hits / 400_000 <= 2e-3
        assert hits > 0  # the prints are 10 bits, not more: a rate near 1e-3, not 0

    def test_size_near_the_bound(self, tmp_path: Path) -> None:
        """At 1e-6 a filter of 200,000 keys takes about 1.16 x 20 bits a key (the size factor of 200k keys)."""
        with FuseFilter.build(tmp_path / "f.fuse", random_digests(200_000, seed=7)) as f:
            assert f.width == 20 and f.items == 200_000
            assert 20 * 1.13 < f.bits_per_item < 20 * 1.2

    def test_keys_as_hex_and_wrong_sizes(self, tmp_path: Path) -> None:
        """``in`` takes raw digests or their hex; a wrong size or type is a clear error."""
        rows = random_digests(50, seed=8)
        with FuseFilter.build(tmp_path / "f.fuse", rows) as f:
            assert bytes(rows[0]).hex() in f and bytes(rows[0]).hex().upper() in f
            assert f.contains_many([bytes(rows[1]), bytes(rows[2]).hex()]).all()
            with pytest.raises(ValueError, match="20 bytes"):
                _ = b"x" * 16 in f
            with pytest.raises(TypeError):
                _ = 42 in f
            with pytest.raises(ValueError, match="n x 20 uint8"):
                f.contains_many(np.zeros((2, 16), dtype=np.uint8))

    def test_closed_filter(self, tmp_path: Path) -> None:
        """A closed filter answers nothing: a ClosedError, never False."""
        f = FuseFilter.build(tmp_path / "f.fuse", random_digests(10))
        f.close()
        with pytest.raises(ClosedError, match="closed"):
            f.contains_many(random_digests(1))
        with pytest.raises(ClosedError, match="closed"):
            _ = bytes(20) in f


def built_file(tmp_path: Path, n: int = 300) -> tuple[Path, np.ndarray]:
    rows = random_digests(n, seed=9)
    FuseFilter.build(tmp_path / "f.fuse", rows).close()
    return tmp_path / "f.fuse", rows


def resigned(data: bytearray) -> bytearray:
    """Recompute the directory checksum and the header checksum after an edit of the directory."""
    shard_bits = data[17]
    directory = bytes(data[HEADER_SIZE : HEADER_SIZE + (48 << shard_bits)])
    struct.pack_into("<Q", data, 44, xxhash.xxh3_64_intdigest(directory))
    data[120:128] = struct.pack("<Q", xxhash.xxh3_64_intdigest(bytes(data[:120])))
    return data


@pytest.mark.usefixtures("small_shards")
class TestFiles:
    def test_round_trip_and_header(self, tmp_path: Path) -> None:
        """The header says what docs/FORMAT.md says it does; an opened filter reads its parameters back."""
        path, rows = built_file(tmp_path)
        data = path.read_bytes()
        magic, version, code, arity, key_size, width, shard_bits = struct.unpack_from("<8sHBBIBB", data)
        assert (magic, version, code, arity, key_size, width) == (b"CCFUSE\x00\x00", 1, 1, 3, 20, 20)
        items, fp_rate, min_count, _, body_len = struct.unpack_from("<QdQQQ", data, 20)
        assert (items, fp_rate, min_count) == (300, 1e-6, 1)
        assert len(data) == HEADER_SIZE + (48 << shard_bits) + body_len
        with FuseFilter(path) as f:
            assert (f.scheme, f.width, f.shard_bits, f.items, f.min_count) == ("sha1", 20, shard_bits, 300, 1)
            assert f.contains_many(rows).all()

    @pytest.mark.parametrize("where", ["header", "directory", "body", "last byte"])
    def test_flipped_byte_refused(self, tmp_path: Path, where: str) -> None:
        """A byte flipped anywhere in the file is an ArtifactError on open."""
        path, _ = built_file(tmp_path)
        data = bytearray(path.read_bytes())
        at = {"header": 30, "directory": HEADER_SIZE + 50, "body": len(data) // 2, "last byte": len(data) - 1}[where]
        data[at] ^= 0x10
        path.write_bytes(data)
        with pytest.raises(ArtifactError):
            FuseFilter(path)

    @pytest.mark.parametrize("keep", [0, 7, HEADER_SIZE - 1, HEADER_SIZE + 10, -1])
    def test_truncated_refused(self, tmp_path: Path, keep: int) -> None:
        """A truncated file is an ArtifactError, whatever is left of it."""
        path, _ = built_file(tmp_path)
        data = path.read_bytes()
        path.write_bytes(data[:keep])
        with pytest.raises(ArtifactError):
            FuseFilter(path)

    def test_padded_refused(self, tmp_path: Path) -> None:
        """Bytes after the last shard are an ArtifactError (the size is exact), even without the checksums."""
        path, _ = built_file(tmp_path)
        path.write_bytes(path.read_bytes() + b"\x00")
        with pytest.raises(ArtifactError, match="truncated or padded"):
            FuseFilter(path, verify=False)

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.binary(max_size=600), st.booleans())
    def test_random_bytes_refused(self, tmp_path: Path, junk: bytes, with_magic: bool) -> None:
        """Random bytes, with or without the magic in front, are an ArtifactError."""
        path = tmp_path / "junk.fuse"
        path.write_bytes((fuse.MAGIC if with_magic else b"") + junk)
        with pytest.raises(ArtifactError):
            FuseFilter(path)

    @pytest.mark.parametrize(
        ("field", "value", "problem"),
        [
            ("offset", 8, "regions do not follow"),
            ("al", 5, "slot counts do not fit"),
            ("sl", 6, "segment length"),
            ("items", 10**6, "more keys than slots"),
            ("reserved", 1, "reserved"),
        ],
    )
    def test_impossible_directory_with_valid_checksums_refused(
        self, tmp_path: Path, field: str, value: int, problem: str
    ) -> None:
        """A directory whose checksums were recomputed but whose structure is impossible (a region pointing
        elsewhere, slots that do not fit the segments) is refused before any lookup, verify=False too."""
        path, _ = built_file(tmp_path)
        data = bytearray(path.read_bytes())
        entries = np.frombuffer(data, dtype=fuse.FUSE_ENTRY_DTYPE, count=1 << data[17], offset=HEADER_SIZE).copy()
        entries[1][field] = value
        data[HEADER_SIZE : HEADER_SIZE + entries.nbytes] = entries.tobytes()
        path.write_bytes(resigned(data))
        with pytest.raises(ArtifactError, match=problem):
            FuseFilter(path, verify=False)

    @pytest.mark.parametrize("width", [19, 21, 1])
    def test_width_that_does_not_give_the_rate_refused(self, tmp_path: Path, width: int) -> None:
        """A header whose fingerprints are not the width its rate needs (checksum recomputed) is refused: narrower
        prints would answer "leaked" far more often than the header says."""
        path, _ = built_file(tmp_path)
        data = bytearray(path.read_bytes())
        data[16] = width
        path.write_bytes(resigned(data))
        with pytest.raises(ArtifactError, match="cannot give the false-positive rate"):
            FuseFilter(path, verify=False)

    def test_bits_past_the_last_slot_refused(self, tmp_path: Path) -> None:
        """A region with bits set past its last slot (its checksum recomputed) is refused: a writer leaves them 0."""
        path, _ = built_file(tmp_path)
        data = bytearray(path.read_bytes())
        shard_bits = data[17]
        body_at = HEADER_SIZE + (48 << shard_bits)
        entries = np.frombuffer(data, dtype=fuse.FUSE_ENTRY_DTYPE, count=1 << shard_bits, offset=HEADER_SIZE).copy()
        end = body_at + int(entries[0]["offset"]) + fuse.fuse_region_bytes(int(entries[0]["al"]), 20)
        data[end - 1] = 1
        entries[0]["checksum"] = xxhash.xxh3_64_intdigest(bytes(data[body_at + int(entries[0]["offset"]) : end]))
        data[HEADER_SIZE : HEADER_SIZE + entries.nbytes] = entries.tobytes()
        path.write_bytes(resigned(data))
        with pytest.raises(ArtifactError, match="bits past its last slot"):
            FuseFilter(path)

    def test_changed_after_open_refused(self, tmp_path: Path) -> None:
        """A filter written to in place after it was opened answers nothing more: an ArtifactError."""
        path, rows = built_file(tmp_path)
        with FuseFilter(path) as f:
            with open(path, "r+b") as fh:
                fh.seek(200)
                fh.write(b"\xff")
            with pytest.raises(ArtifactError, match="changed on disk"):
                f.contains_many(rows)

    def test_written_atomically_under_the_lock(self, tmp_path: Path) -> None:
        """Building leaves only the filter: no temporary file, no lock file."""
        built_file(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["f.fuse"]


@pytest.mark.usefixtures("kernels")
class TestBuildLayout:
    def test_build_and_open(self, hibp_file: Path, tmp_path: Path) -> None:
        """build(layout='fuse') writes a fuse filter that open() checks with: no counts, no false negatives."""
        report = build([hibp_file], filter=tmp_path / "f.fuse", layout="fuse")
        assert (report.filter_layout, report.shards_built, report.shards_reused) == ("fuse", 1, 0)
        with credcheck.open(tmp_path / "f.fuse") as checker:
            assert isinstance(checker, FilterChecker) and isinstance(checker.filter, FuseFilter)
            answers = checker.check_many(LEAKED)
            assert all(a.compromised and a.count is None for a in answers)
            assert checker.check_hash(sha1_upper("password")).compromised
            assert not checker.check("not leaked, 93!x").compromised

    def test_open_checks_scheme_and_threshold(self, hibp_file: Path, tmp_path: Path) -> None:
        """open() refuses a scheme the fuse filter does not hold and a threshold it was not built with."""
        build([hibp_file], filter=tmp_path / "f.fuse", layout="fuse", min_count=2)
        with pytest.raises(ArtifactError, match="holds sha1 hashes, not ntlm"):
            credcheck.open(tmp_path / "f.fuse", scheme="ntlm")
        with pytest.raises(ValueError, match="min_count=2"):
            credcheck.open(tmp_path / "f.fuse", min_count=1)
        with credcheck.open(tmp_path / "f.fuse") as checker:
            assert not checker.check("password").compromised  # seen once: below the threshold
            assert checker.check(LEAKED[-1]).compromised

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.text(min_size=1, max_size=12).filter(lambda s: "\n" not in s and "\r" not in s),
                    min_size=1, max_size=60, unique=True), st.sampled_from(["bloom", "fuse"]))  # fmt: skip
    def test_no_false_negatives_either_layout(self, tmp_path: Path, passwords: list[str], layout: str) -> None:
        """Whatever the passwords and the layout, every one of them checks as compromised."""
        source = tmp_path / "plain.txt"
        source.write_bytes("\n".join(passwords).encode() + b"\n")
        target = tmp_path / f"f.{layout}"
        build([source], filter=target, layout=layout, input_format="password")
        with credcheck.open(target) as checker:
            assert all(a.compromised for a in checker.check_many(passwords))

    def test_fuse_asks_what_bloom_asks_not(self, hibp_file: Path, tmp_path: Path) -> None:
        """--capacity and a rate below 2^-32 are refused for a fuse filter before anything is read."""
        with pytest.raises(InputError, match="capacity"):
            build([hibp_file], filter=tmp_path / "f.fuse", layout="fuse", capacity=100)
        with pytest.raises(ValueError, match="bloom layout"):
            build([hibp_file], filter=tmp_path / "f.fuse", layout="fuse", fp_rate=1e-12)
        with pytest.raises(ValueError, match="unknown layout"):
            build([hibp_file], filter=tmp_path / "f.fuse", layout="cuckoo")
        assert not (tmp_path / "f.fuse").exists()


@pytest.mark.usefixtures("kernels", "small_shards")
class TestUpdate:
    def test_only_changed_shards_rebuilt_and_result_as_fresh(self, tmp_path: Path) -> None:
        """An update with the store rebuilds only the shard that gained a hash, copies the rest, and writes the
        very file a fresh build of the merged set writes."""
        rows = random_digests(400, seed=11)
        first = dump(tmp_path / "first.txt", rows)
        build([first], filter=tmp_path / "f.fuse", store=tmp_path / "s.store", layout="fuse")
        extra = random_digests(1, seed=12)
        more = dump(tmp_path / "more.txt", extra)
        report = build([more], filter=tmp_path / "f.fuse", store=tmp_path / "s.store", update=True)
        shards = 1 << shard_bits_for(401)
        assert (report.filter_layout, report.shards_built, report.shards_reused) == ("fuse", 1, shards - 1)
        fresh = dump(tmp_path / "all.txt", np.concatenate([rows, extra]))
        build([fresh], filter=tmp_path / "fresh.fuse", layout="fuse")
        assert (tmp_path / "f.fuse").read_bytes() == (tmp_path / "fresh.fuse").read_bytes()

    def test_unchanged_update_copies_every_shard(self, tmp_path: Path) -> None:
        """An update that adds nothing new copies every shard and leaves the filter's bytes as they were."""
        rows = random_digests(300, seed=13)
        first = dump(tmp_path / "first.txt", rows)
        build([first], filter=tmp_path / "f.fuse", store=tmp_path / "s.store", layout="fuse")
        before = (tmp_path / "f.fuse").read_bytes()
        report = build([dump(tmp_path / "again.txt", rows[:5])], filter=tmp_path / "f.fuse",
                       store=tmp_path / "s.store", update=True)  # fmt: skip
        assert report.shards_built == 0 and report.shards_reused == 1 << shard_bits_for(300)
        assert (tmp_path / "f.fuse").read_bytes() == before

    def test_a_shard_holding_other_keys_is_rebuilt(self, tmp_path: Path) -> None:
        """A base shard with as many keys as the new one but not the same keys is rebuilt, not copied: every
        new key is found (the copy is taken only when each of the shard's keys is found in it)."""
        rows = sorted_rows(random_digests(300, seed=14))
        with FuseFilter.build(tmp_path / "base.fuse", rows) as base:
            changed = rows.copy()
            changed[0, 8:] ^= 0x5A  # same shard (leading bytes kept), another key
            writer = FuseWriter(tmp_path / "new.fuse", items=300, base=base)
            writer.add(sorted_rows(changed))
            writer.finish()
            writer.commit()
            assert (writer.built, writer.reused) == (1, base.entries.size - 1)
        with FuseFilter(tmp_path / "new.fuse") as new:
            assert new.contains_many(changed).all()

    def test_fuse_filter_alone_cannot_be_updated(self, tmp_path: Path) -> None:
        """Without its store, an update of a fuse filter is an InputError saying what to do; nothing changes."""
        first = dump(tmp_path / "first.txt", random_digests(50, seed=15))
        build([first], filter=tmp_path / "f.fuse", layout="fuse")
        before = (tmp_path / "f.fuse").read_bytes()
        with pytest.raises(InputError, match="together with the --store"):
            build([dump(tmp_path / "more.txt", random_digests(2, seed=16))], filter=tmp_path / "f.fuse", update=True)
        assert (tmp_path / "f.fuse").read_bytes() == before

    def test_capacity_refused_for_the_fuse_filter_an_update_keeps(self, tmp_path: Path) -> None:
        """--capacity with an update of a fuse filter (its layout kept, not asked) is refused, not ignored."""
        first = dump(tmp_path / "first.txt", random_digests(50, seed=19))
        build([first], filter=tmp_path / "f.fuse", store=tmp_path / "s.store", layout="fuse")
        with pytest.raises(InputError, match="capacity"):
            build([first], filter=tmp_path / "f.fuse", store=tmp_path / "s.store", update=True, capacity=500)

    def test_layout_changes_only_with_the_store(self, tmp_path: Path) -> None:
        """A Bloom filter becomes a fuse filter on an update with its store (every hash is there), not alone, and
        keeps its false-positive rate as an update does."""
        rows = random_digests(60, seed=17)
        first = dump(tmp_path / "first.txt", rows)
        build([first], filter=tmp_path / "f", store=tmp_path / "s.store", fp_rate=1e-3)
        more = dump(tmp_path / "more.txt", random_digests(1, seed=18))
        with pytest.raises(InputError, match="turning it into a fuse filter needs every hash"):
            build([more], filter=tmp_path / "f", update=True, layout="fuse")
        build([more], filter=tmp_path / "f", store=tmp_path / "s.store", update=True, layout="fuse")
        with FuseFilter(tmp_path / "f") as f:
            assert f.items == 61 and f.contains_many(rows).all() and (f.fp_rate, f.width) == (1e-3, 10)
        build([more], filter=tmp_path / "f", store=tmp_path / "s.store", update=True, layout="bloom")
        assert credcheck.BloomFilter.open(tmp_path / "f").contains_many(rows).all()


class TestCommandLine:
    def test_build_and_check(
        self, hibp_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """credcheck build --layout fuse, then check --filter: leaked and not leaked, exit 1."""
        target = tmp_path / "leaked.fuse"
        assert main(["build", str(hibp_file), "--filter", str(target), "--layout", "fuse"]) == 0
        assert "fuse filter: 1 shard(s) built" in capsys.readouterr().out
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"password\nnot-leaked-93!x\n")))
        assert main(["check", "--filter", str(target)]) == 1
        assert capsys.readouterr().out.split() == ["compromised", "not", "found"]

    def test_resume_on_the_command_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """build --layout fuse stopped by Ctrl-C says where its finished shards are kept; --resume takes them and
        says so; --resume with a Bloom filter is refused (exit 2)."""
        monkeypatch.setattr(fuse, "SHARD_ITEMS", 32)
        source = dump(tmp_path / "first.txt", random_digests(400, seed=27))
        target = tmp_path / "f.fuse"
        interrupt_at(monkeypatch, 2, KeyboardInterrupt)  # Ctrl-C: the command's runner ends it with status 2
        assert main(["build", str(source), "--filter", str(target), "--layout", "fuse", "-q"]) == 2
        assert capsys.readouterr().err == (
            "credcheck: interrupted; nothing was replaced and temporary files were removed; the finished shards are "
            f"kept in {fuse.partial_path(target)}: add --resume to the same command to go on from them\n"
        )
        monkeypatch.setattr(fuse, "build_shard", fuse.__dict__["build_shard"].__wrapped__)
        assert main(["build", str(source), "--filter", str(target), "--layout", "fuse", "--resume"]) == 0
        assert "2 taken from the interrupted build" in capsys.readouterr().out
        assert main(["build", str(source), "--filter", str(tmp_path / "f.bloom"), "--resume"]) == 2
        assert "--resume takes up an interrupted pair build or fuse filter build" in capsys.readouterr().err

    def test_fuse_given_as_store(
        self, hibp_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check --store some.fuse is refused, naming the fuse filter and --filter."""
        target = tmp_path / "leaked.fuse"
        assert main(["build", str(hibp_file), "--filter", str(target), "--layout", "fuse", "-q"]) == 0
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"x\n")))
        assert main(["check", "--store", str(target)]) == 2
        assert "is a fuse filter; give it with --filter" in capsys.readouterr().err


class Interrupted(BaseException):
    """What stops a build in these tests (a BaseException, as KeyboardInterrupt is)."""


def interrupt_at(monkeypatch: pytest.MonkeyPatch, shard: int, stop: type[BaseException] = Interrupted) -> None:
    """Make a fuse build stop (raise ``stop``) as it starts to build ``shard``."""
    real = fuse.build_shard

    def build_shard(words: np.ndarray, at: int, width: int) -> tuple:
        if at == shard:
            raise stop
        return real(words, at, width)

    build_shard.__wrapped__ = real  # type: ignore[attr-defined]
    monkeypatch.setattr(fuse, "build_shard", build_shard)


@pytest.mark.usefixtures("kernels", "small_shards")
class TestResume:
    def interrupted(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: np.ndarray, at: int = 3) -> Path:
        source = dump(tmp_path / "first.txt", rows)
        interrupt_at(monkeypatch, at)
        with pytest.raises(Interrupted):
            build([source], filter=tmp_path / "f.fuse", layout="fuse")
        monkeypatch.undo()
        monkeypatch.setattr(fuse, "SHARD_ITEMS", 32)
        assert not (tmp_path / "f.fuse").exists() and Path(fuse.partial_path(tmp_path / "f.fuse")).exists()
        return source

    def test_resumed_build_takes_the_finished_shards(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A build stopped at its fourth shard, run again with resume, takes the three it finished and writes the
        very file an uninterrupted build writes; the partial file is gone then."""
        rows = random_digests(400, seed=21)
        source = self.interrupted(tmp_path, monkeypatch, rows)
        report = build([source], filter=tmp_path / "f.fuse", layout="fuse", resume=True)
        assert (report.shards_resumed, report.shards_built) == (3, (1 << shard_bits_for(400)) - 3)
        assert "3 taken from the interrupted build" in report.summary()
        build([source], filter=tmp_path / "fresh.fuse", layout="fuse")
        assert (tmp_path / "f.fuse").read_bytes() == (tmp_path / "fresh.fuse").read_bytes()
        assert not Path(fuse.partial_path(tmp_path / "f.fuse")).exists()

    def test_changed_input_takes_only_unchanged_shards(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Resumed on an input whose second shard changed (one hash replaced by another of that shard), only the
        first shard is taken; every hash of the new input is found."""
        rows = sorted_rows(random_digests(400, seed=22))
        self.interrupted(tmp_path, monkeypatch, rows)
        changed = rows.copy()
        second = np.flatnonzero(fuse._shards_of(rows, shard_bits_for(400)) == 1)[0]
        changed[second, 8:] ^= 0x33
        source = dump(tmp_path / "changed.txt", changed)
        report = build([source], filter=tmp_path / "f.fuse", layout="fuse", resume=True)
        assert report.shards_resumed == 1
        with FuseFilter(tmp_path / "f.fuse") as f:
            assert f.contains_many(changed).all()

    @pytest.mark.parametrize("checksum", ["left", "recomputed"])
    def test_edited_partial_is_not_taken(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checksum: str) -> None:
        """A finished shard edited in the partial file is rebuilt, its checksum recomputed or not: no hash of the
        input is missed (a shard is taken only if each of its hashes is found in it)."""
        rows = random_digests(400, seed=23)
        source = self.interrupted(tmp_path, monkeypatch, rows)
        partial = Path(fuse.partial_path(tmp_path / "f.fuse"))
        data = bytearray(partial.read_bytes())
        shards = 1 << shard_bits_for(400)
        body_at = HEADER_SIZE + 48 * shards
        entries = np.frombuffer(data, dtype=fuse.FUSE_ENTRY_DTYPE, count=shards, offset=HEADER_SIZE).copy()
        size = fuse.fuse_region_bytes(int(entries[0]["al"]), 20)
        data[body_at : body_at + size - 8] = np.random.default_rng(0).integers(0, 256, size - 8, np.uint8).tobytes()
        if checksum == "recomputed":
            entries[0]["checksum"] = xxhash.xxh3_64_intdigest(bytes(data[body_at : body_at + size]))
            data[HEADER_SIZE : HEADER_SIZE + entries.nbytes] = entries.tobytes()
        partial.write_bytes(data)
        report = build([source], filter=tmp_path / "f.fuse", layout="fuse", resume=True)
        assert report.shards_resumed == 0
        with FuseFilter(tmp_path / "f.fuse") as f:
            assert f.contains_many(rows).all()

    def test_edited_entry_cannot_make_it_read_much(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An entry edited to claim a huge shard (4 billion slots) is not read: a shard is read only when it is
        sized as one of the keys it must hold would be."""
        rows = random_digests(400, seed=26)
        source = self.interrupted(tmp_path, monkeypatch, rows)
        partial = Path(fuse.partial_path(tmp_path / "f.fuse"))
        data = bytearray(partial.read_bytes())
        entries = np.frombuffer(data, dtype=fuse.FUSE_ENTRY_DTYPE, count=1 << shard_bits_for(400), offset=HEADER_SIZE)
        entries = entries.copy()
        entries[0]["sl"], entries[0]["scl"], entries[0]["al"] = 1 << 18, (1 << 32) - (1 << 20), (1 << 32) - (1 << 19)
        data[HEADER_SIZE : HEADER_SIZE + entries.nbytes] = entries.tobytes()
        partial.write_bytes(data)
        reads: list[int] = []
        real_pread = os.pread
        monkeypatch.setattr(os, "pread", lambda fd, n, at: reads.append(n) or real_pread(fd, n, at))
        report = build([source], filter=tmp_path / "f.fuse", layout="fuse", resume=True)
        assert report.shards_resumed == 0 and max(reads) < 1 << 20

    def test_without_resume_the_partial_is_not_taken(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A build without resume starts afresh over an interrupted one's partial file."""
        source = self.interrupted(tmp_path, monkeypatch, random_digests(400, seed=24))
        report = build([source], filter=tmp_path / "f.fuse", layout="fuse")
        assert report.shards_resumed == 0 and report.shards_built == 1 << shard_bits_for(400)

    def test_killed_build_resumes(self, tmp_path: Path) -> None:
        """A build killed outright (SIGKILL) as it builds its fourth shard leaves the three finished ones on disk,
        and the lock free: a resumed build takes them."""
        rows = random_digests(400, seed=25)
        source = dump(tmp_path / "first.txt", rows)
        script = f"""
import os, signal
from credcheck import build, fuse
fuse.SHARD_ITEMS = 32
real = fuse.build_shard
def build_shard(words, at, width):
    if at == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(words, at, width)
fuse.build_shard = build_shard
build([{str(source)!r}], filter={str(tmp_path / "f.fuse")!r}, layout="fuse")
"""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        done = subprocess.run([sys.executable, "-c", script], env=env, timeout=120, capture_output=True)
        assert done.returncode == -9, done.stderr
        report = build([source], filter=tmp_path / "f.fuse", layout="fuse", resume=True)
        assert report.shards_resumed == 3
        with FuseFilter(tmp_path / "f.fuse") as f:
            assert f.contains_many(rows).all()

    def test_resume_of_a_bloom_build_is_refused(self, hibp_file: Path, tmp_path: Path) -> None:
        """resume applies to fuse filter builds (and pair builds): with a Bloom filter it is an InputError."""
        with pytest.raises(InputError, match="resume"):
            build([hibp_file], filter=tmp_path / "f.bloom", resume=True)

    @pytest.mark.parametrize("plant", ["symlink", "hard link"])
    def test_planted_partial_is_not_written_through(self, tmp_path: Path, hibp_file: Path, plant: str) -> None:
        """A symlink or a hard link planted where the partial file goes is refused, never written through."""
        victim = tmp_path / "victim"
        victim.write_bytes(b"keep me")
        partial = Path(fuse.partial_path(tmp_path / "f.fuse"))
        (partial.symlink_to if plant == "symlink" else partial.hardlink_to)(victim)
        with pytest.raises(StorageError):
            build([hibp_file], filter=tmp_path / "f.fuse", layout="fuse")
        assert victim.read_bytes() == b"keep me"


FORMAT_MD = Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md"


class TestDocumentedReader:
    def reader(self) -> dict:
        """The reference reader of docs/FORMAT.md's fuse filter section, executed."""
        section = FORMAT_MD.read_text(encoding="utf-8").split("## Fuse filter", 1)[1].split("\n## ", 1)[0]
        code = section.split("```python\n", 1)[1].split("```", 1)[0]
        namespace: dict = {}
        exec(compile(code, str(FORMAT_MD), "exec"), namespace)
        return namespace

    @pytest.mark.usefixtures("small_shards")
    @pytest.mark.parametrize(("scheme", "fp_rate"), [("sha1", 1e-6), ("ntlm", 0.01), ("sha1", 2**-32)])
    def test_reader_agrees_with_fusefilter(self, tmp_path: Path, scheme: str, fp_rate: float) -> None:
        """The documented reader loads a filter the library wrote and answers as FuseFilter does, keys and not."""
        ns = self.reader()
        size = KEY_SIZE[scheme]
        keys, probes = random_digests(300, size, seed=31), random_digests(3000, size, seed=32)
        with FuseFilter.build(tmp_path / "f.fuse", keys, scheme=scheme, fp_rate=fp_rate) as f:
            assert f.shard_bits > 0
            expected = f.contains_many(np.concatenate([keys, probes])).tolist()
        loaded = ns["read_fuse"](str(tmp_path / "f.fuse"))
        answers = [ns["contains"](loaded, bytes(row)) for row in np.concatenate([keys, probes])]
        assert answers == expected and all(answers[:300])

    def test_reader_refuses_a_flipped_region(self, tmp_path: Path) -> None:
        """The documented reader refuses a file whose shard was changed, as the library does."""
        path, _ = built_file(tmp_path)
        data = bytearray(path.read_bytes())
        data[-20] ^= 1
        path.write_bytes(data)
        with pytest.raises(ValueError, match="checksum"):
            self.reader()["read_fuse"](str(path))
