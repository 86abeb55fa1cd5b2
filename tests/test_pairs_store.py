"""The pair store: deduplicated, masked, padded, sorted buckets; the file written atomically and verified on open."""

from __future__ import annotations

import io
import os
import struct
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from credcheck import _atomic
from credcheck.errors import ArtifactError, StorageError
from credcheck.pairs import store as pair_store
from credcheck.pairs.store import (
    HEADER_SIZE,
    MAGIC,
    Assembled,
    PairStore,
    StoreWriter,
    assemble,
    check_bucket,
    find_entry,
    write_store,
)
from credcheck.pairs.stretch import Stretch

TINY = Stretch(16, 1, 1)
KEY_ID = bytes.fromhex("0123456789abcdef")


def arrays(rows: list[tuple[int, bytes, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bucket, tag, status, mask) rows as the four arrays assemble takes."""
    buckets = np.array([r[0] for r in rows], dtype=np.uint32)
    tags = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8).reshape(len(rows), 16)
    statuses = np.array([r[2] for r in rows], dtype=np.uint8)
    masks = np.array([r[3] for r in rows], dtype=np.uint8)
    return buckets, tags, statuses, masks


def buckets_of(body: Assembled) -> list[bytes]:
    return [body.entries[body.index[b] : body.index[b + 1]].tobytes() for b in range(len(body.index) - 1)]


def save(path: Path, body: Assembled, bits: int, **options: object) -> None:
    settings: dict[str, Any] = {"key_id": KEY_ID, "stretch": TINY, "username_entries": False, "variants": 0}
    settings.update(options)
    _atomic.replace(write_store(path, body, bits=bits, **settings), str(path))


class TestAssemble:
    def test_strongest_status_kept(self) -> None:
        """Equal tags in one bucket merge into one entry with the strongest status (exact > similar > username)."""
        tag = bytes(range(16))
        body = assemble(2, *arrays([(1, tag, 3, 0x55), (1, tag, 1, 0x55), (1, tag, 2, 0x55)]))
        assert find_entry(buckets_of(body)[1], tag) == 1 ^ 0x55
        assert (body.real, body.merged, body.by_status) == (1, 2, {1: 1})

    def test_same_tag_other_bucket_kept(self) -> None:
        """The same tag in two buckets is two entries."""
        tag = b"\x07" * 16
        body = assemble(1, *arrays([(0, tag, 1, 0), (1, tag, 1, 0)]))
        assert body.real == 2 and body.merged == 0

    def test_status_masked(self) -> None:
        """The stored status byte is the status XOR its mask."""
        tag = b"\x01" * 16
        body = assemble(0, *arrays([(0, tag, 2, 0xF0)]))
        assert find_entry(buckets_of(body)[0], tag) == 2 ^ 0xF0

    def test_empty_buckets_padded_to_16(self) -> None:
        """Every bucket, an empty one included, holds at least 16 entries: occupancy is hidden."""
        body = assemble(3, *arrays([]))
        assert [len(b) // 17 for b in buckets_of(body)] == [16] * 8
        assert body.dummies == 128 and body.real == 0

    def test_padded_to_a_multiple_of_16(self) -> None:
        """17 real entries in a bucket are padded to 32."""
        rows = [(0, os.urandom(16), 1, 0) for _ in range(17)]
        body = assemble(0, *arrays(rows))
        assert len(body.entries) == 32 and body.dummies == 15

    def test_clashing_dummy_drawn_again(self) -> None:
        """A dummy whose random tag equals another tag of its bucket is replaced (no equal tags in a bucket)."""
        calls: list[int] = []

        def weak_random(n: int) -> bytes:
            calls.append(n)
            return bytes(n) if len(calls) <= 2 else os.urandom(n)  # all-zero dummies: clash with the real tag

        body = assemble(0, *arrays([(0, bytes(16), 1, 0)]), random_bytes=weak_random)
        check_bucket(buckets_of(body)[0])
        assert len(calls) >= 2

    @pytest.mark.parametrize("status", [0, 4])
    def test_bad_status_refused(self, status: int) -> None:
        """Statuses other than 1, 2, 3 are a ValueError."""
        with pytest.raises(ValueError):
            assemble(0, *arrays([(0, bytes(16), status, 0)]))

    def test_bucket_out_of_range_refused(self) -> None:
        """A bucket id wider than the bucket bits is a ValueError."""
        with pytest.raises(ValueError):
            assemble(2, *arrays([(4, bytes(16), 1, 0)]))

    @given(
        st.integers(0, 4),
        st.lists(st.tuples(st.integers(0, 15), st.binary(min_size=1, max_size=2), st.integers(1, 3)), max_size=60),
    )
    def test_invariants(self, bits: int, raw: list[tuple[int, bytes, int]]) -> None:
        """Buckets are sorted, whole multiples of 16 (at least 16), and hold each tag once with its strongest status."""
        rows = [(b % (1 << bits), t.ljust(16, b"\x00"), s, 0) for b, t, s in raw]
        body = assemble(bits, *arrays(rows))
        expected: dict[tuple[int, bytes], int] = {}
        for bucket, tag, status, _ in rows:
            expected[bucket, tag] = min(status, expected.get((bucket, tag), 9))
        assert body.real == len(expected) and body.real + body.merged == len(rows)
        for bucket, blob in enumerate(buckets_of(body)):
            check_bucket(blob)
            for (b, tag), status in expected.items():
                if b == bucket:
                    assert find_entry(blob, tag) == status


class TestCheckBucket:
    def test_good_bucket(self) -> None:
        """16 entries with ascending tags pass and are counted."""
        blob = b"".join(bytes([i]) * 17 for i in range(16))
        assert check_bucket(blob) == 16

    @pytest.mark.parametrize(
        "blob",
        [
            b"",
            bytes(17 * 16 + 1),
            b"".join(bytes([i]) * 17 for i in range(15)),
            b"".join(bytes([i]) * 17 for i in range(17)),
            b"".join(bytes([i]) * 17 for i in reversed(range(16))),
            b"".join(bytes([min(i, 14)]) * 17 for i in range(16)),
        ],
        ids=["empty", "partial entry", "15", "17", "descending", "repeated tag"],
    )
    def test_bad_bucket(self, blob: bytes) -> None:
        """Empty, a partial entry, not a multiple of 16, unsorted or a repeated tag: ValueError."""
        with pytest.raises(ValueError):
            check_bucket(blob)


class TestFile:
    @pytest.fixture
    def body(self) -> Assembled:
        rows = [(b, os.urandom(16), 1 + i % 3, i) for i, b in enumerate([0, 0, 1, 3, 3, 3])]
        return assemble(2, *arrays(rows))

    def test_round_trip(self, tmp_path: Path, body: Assembled) -> None:
        """What is written opens with its parameters and the same buckets."""
        path = tmp_path / "pairs.store"
        save(path, body, 2, username_entries=True, variants=9, stretch=Stretch(4096, 8, 1))
        with PairStore(path) as store:
            assert (store.bucket_bits, store.buckets, store.key_id, store.variants) == (2, 4, KEY_ID, 9)
            assert store.username_entries and store.stretch.name == "interactive"
            assert store.entries == len(body.entries)
            assert [store.bucket(b) for b in range(4)] == buckets_of(body)
            assert "pairs.store" in repr(store) and KEY_ID.hex() in repr(store)
        assert os.path.getsize(path) == HEADER_SIZE + 5 * 8 + len(body.entries) * 17

    def test_magic_at_start(self, tmp_path: Path, body: Assembled) -> None:
        """The file starts with CCPAIRS NUL."""
        path = tmp_path / "pairs.store"
        save(path, body, 2)
        assert path.read_bytes()[:8] == MAGIC == b"CCPAIRS\x00"

    def test_write_is_beside_until_replaced(self, tmp_path: Path, body: Assembled) -> None:
        """write_store leaves the old file untouched: the new one is a temporary file beside it."""
        path = tmp_path / "pairs.store"
        path.write_bytes(b"old")
        tmp = write_store(path, body, key_id=KEY_ID, bits=2, stretch=TINY, username_entries=False, variants=0)
        assert path.read_bytes() == b"old" and os.path.dirname(tmp) == str(tmp_path)
        _atomic.replace(tmp, str(path))
        PairStore(path).close()

    def test_bucket_out_of_range(self, tmp_path: Path, body: Assembled) -> None:
        """Asking for a bucket beyond 2^B is a ValueError."""
        path = tmp_path / "pairs.store"
        save(path, body, 2)
        with PairStore(path) as store, pytest.raises(ValueError):
            store.bucket(4)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a StorageError naming it."""
        with pytest.raises(StorageError, match="nope"):
            PairStore(tmp_path / "nope")


class TestVerify:
    @pytest.fixture
    def path(self, tmp_path: Path) -> Path:
        rows = [(b, os.urandom(16), 1, 0) for b in [0, 1, 1, 2, 3]]
        path = tmp_path / "pairs.store"
        save(path, assemble(2, *arrays(rows)), 2)
        return path

    def rewrite(self, path: Path, at: int, data: bytes, *, resign: bool = False) -> None:
        raw = bytearray(path.read_bytes())
        raw[at : at + len(data)] = data
        if resign:
            raw[120:128] = struct.pack("<Q", xxhash.xxh3_64_intdigest(bytes(raw[:120])))
        path.write_bytes(bytes(raw))

    @pytest.mark.parametrize(
        ("at", "data", "resign", "message"),
        [
            (0, b"CCSTORE\x00", False, "not a credcheck pair store"),
            (20, b"\x01", False, "header checksum"),
            (8, b"\x02\x00", True, "version 2"),
            (10, b"\x19", True, "25 bucket bits"),
            (11, b"\x02", True, "unknown flags"),
            (12, b"\x02", True, "unknown stretch"),
            (13, b"\x0a", True, "10 variants"),
            (24, struct.pack("<Q", 15), True, "impossible scrypt"),
            (HEADER_SIZE + 5 * 8 + 3, b"\xff\xfe", False, "entries checksum"),
            (HEADER_SIZE + 8, b"\x01", False, "index checksum"),
        ],
    )
    def test_refused(self, path: Path, at: int, data: bytes, resign: bool, message: str) -> None:
        """A wrong magic, a corrupt header, unknown parameters or a corrupt body: ArtifactError saying which."""
        self.rewrite(path, at, data, resign=resign)
        with pytest.raises(ArtifactError, match=message):
            PairStore(path)

    @pytest.mark.parametrize("cut", [1, 17, 100])
    def test_truncated(self, path: Path, cut: int) -> None:
        """A truncated file is refused, even with verify=False."""
        path.write_bytes(path.read_bytes()[:-cut])
        with pytest.raises(ArtifactError, match="truncated"):
            PairStore(path, verify=False)

    def test_appended(self, path: Path) -> None:
        """Bytes after the last entry are refused."""
        path.write_bytes(path.read_bytes() + b"\x00")
        with pytest.raises(ArtifactError, match="appended"):
            PairStore(path)

    def test_short_file(self, tmp_path: Path) -> None:
        """A file shorter than the header is refused."""
        (tmp_path / "short").write_bytes(MAGIC)
        with pytest.raises(ArtifactError, match="shorter"):
            PairStore(tmp_path / "short")

    def test_verify_false_skips_checksums_only(self, path: Path) -> None:
        """verify=False opens a file whose entries checksum fails, but never one whose index is inconsistent."""
        self.rewrite(path, HEADER_SIZE + 5 * 8 + 3, b"\xff\xfe")
        PairStore(path, verify=False).close()

    def test_bucket_not_multiple_of_16(self, tmp_path: Path) -> None:
        """An index whose bucket is not a multiple of 16 entries is refused (checksums recomputed to match)."""
        entries = np.frombuffer(b"".join(bytes([i]) * 17 for i in range(32)), dtype=np.uint8).reshape(32, 17)
        forged = Assembled(np.array([0, 8, 32], dtype=np.uint64), entries, 0, 0, 32, {})
        save(tmp_path / "forged", forged, 1)
        with pytest.raises(ArtifactError, match="multiple of 16"):
            PairStore(tmp_path / "forged", verify=False)

    def test_unsorted_bucket(self, tmp_path: Path) -> None:
        """A bucket whose tags are out of order is refused (checksums recomputed to match)."""
        tags = [bytes([i]) * 17 for i in range(32)]
        tags[20], tags[21] = tags[21], tags[20]
        entries = np.frombuffer(b"".join(tags), dtype=np.uint8).reshape(32, 17)
        save(tmp_path / "forged", Assembled(np.array([0, 16, 32], dtype=np.uint64), entries, 0, 0, 32, {}), 1)
        with pytest.raises(ArtifactError, match=r"bucket 1 .* not sorted"):
            PairStore(tmp_path / "forged")

    def test_order_across_buckets_is_free(self, tmp_path: Path) -> None:
        """Each bucket is sorted on its own: a smaller tag at the start of the next bucket is fine."""
        tags = [bytes([i % 16]) * 17 for i in range(32)]
        entries = np.frombuffer(b"".join(tags), dtype=np.uint8).reshape(32, 17)
        save(tmp_path / "ok", Assembled(np.array([0, 16, 32], dtype=np.uint64), entries, 0, 0, 32, {}), 1)
        PairStore(tmp_path / "ok").close()


def _entries(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` entries (17 bytes) with distinct random tags, sorted by tag."""
    entries = rng.integers(0, 256, (n, 17), dtype=np.uint8)
    order = np.lexsort(entries[:, 15::-1].T)
    return entries[order]


class TestStoreWriter:
    def test_a_bucket_of_many_entries_is_joined_once(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A bucket whose entries arrive in many parts (a username with thousands of passwords, merged in small
        steps) is put together once, not copied again with every part (quadratic: minutes for a million entries
        at --max-memory 64MiB); the file is the one its entries given at once make."""
        entries = _entries(np.random.default_rng(7), 20_000)
        buckets = np.full(len(entries), 3, dtype=np.uint32)
        dummies = os.urandom(1 << 16)
        monkeypatch.setattr(pair_store, "time", types.SimpleNamespace(time=lambda: 1_700_000_000.0))

        def write(name: str, step: int) -> bytes:
            writer = StoreWriter(
                tmp_path / name, key_id=KEY_ID, bits=2, stretch=TINY, username_entries=False, variants=0,
                random_bytes=io.BytesIO(dummies).read,
            )  # fmt: skip
            for start in range(0, len(entries), step):
                writer.add(buckets[start : start + step], entries[start : start + step])
            return Path(writer.finish()).read_bytes()

        whole = write("whole", len(entries))
        concatenate, joined = np.concatenate, [0]

        def counting(arrays: Any, *args: Any, **kwargs: Any) -> Any:
            arrays = list(arrays)
            joined[0] += sum(len(a) for a in arrays)
            return concatenate(arrays, *args, **kwargs)

        monkeypatch.setattr(np, "concatenate", counting)
        assert write("parts", 50) == whole
        assert joined[0] < 10 * len(entries), joined  # 400 parts joined again each time: 400 * 20,000 / 2 rows

    def test_entries_out_of_order_across_parts_refused(self, tmp_path: Path) -> None:
        """An entry smaller than the last of the part before it is refused, as within one part."""
        entries = _entries(np.random.default_rng(8), 10)
        writer = StoreWriter(tmp_path / "p", key_id=KEY_ID, bits=2, stretch=TINY, username_entries=False, variants=0)
        writer.add(np.full(5, 1, dtype=np.uint32), entries[5:])
        with pytest.raises(ValueError, match="entries must arrive sorted"):
            writer.add(np.full(5, 1, dtype=np.uint32), entries[:5])
        writer.abort()
