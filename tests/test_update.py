"""A new breach arrives: merging it into an existing store and filter without the original sources."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import credcheck
from credcheck import BloomFilter, CapacityError, InputError, RangeStore, build
from credcheck.cli import main
from credcheck.store import store_rows

from .conftest import LEAKED, sha1_upper

NEW = ["hunter2", "trustno1", "password"]  # 'password' is in the first breach too


@pytest.fixture
def second_breach(tmp_path: Path) -> Path:
    """A second breach: two new passwords and 'password' again with count 10."""
    path = tmp_path / "breach2.txt"
    path.write_text("\n".join(f"{sha1_upper(p)}:{c}" for p, c in zip(NEW, [3, 4, 10], strict=True)))
    return path


@pytest.fixture
def first(hibp_file: Path, tmp_path: Path) -> tuple[Path, Path]:
    store, bloom = tmp_path / "s.store", tmp_path / "f.bloom"
    build([hibp_file], store=store, filter=bloom, capacity=100)
    return store, bloom


class TestStoreAndFilter:
    def test_counts_summed_and_nothing_lost(self, first: tuple[Path, Path], second_breach: Path) -> None:
        """After an update both breaches are found; shared hashes have summed counts; old ones are kept."""
        store, bloom = first
        report = build([second_breach], store=store, filter=bloom, update=True)
        with credcheck.open(store) as checker:
            counts = {p: e.count for p, e in zip([*LEAKED, *NEW], checker.check_many([*LEAKED, *NEW]), strict=True)}
        assert counts["password"] == 1 + 10
        assert counts["hunter2"] == 3 and counts["trustno1"] == 4
        assert all(counts[p] == i + 1 for i, p in enumerate(LEAKED) if p != "password")
        with credcheck.open(bloom) as checker:
            assert all(e.compromised for e in checker.check_many([*LEAKED, *NEW]))
        assert (report.carried, report.added, report.raised) == (len(LEAKED), 2, 1)
        assert report.reconciles()
        assert "2 new hashes, 1 already known" in report.summary()

    def test_unsorted_new_breach(self, first: tuple[Path, Path], tmp_path: Path) -> None:
        """A plaintext list (unsorted, through sorted runs) merges into the store the same way."""
        store, _ = first
        plain = tmp_path / "plain.txt"
        plain.write_text("zebra-horse-9\nqwerty\nzebra-horse-9\n")
        report = build([plain], store=store, update=True, run_rows=1)
        with RangeStore(store) as s:
            assert s.lookup(bytes.fromhex(sha1_upper("zebra-horse-9"))) == 2
            assert s.lookup(bytes.fromhex(sha1_upper("qwerty"))) == LEAKED.index("qwerty") + 1 + 1
            assert s.rows == len(LEAKED) + 1
        assert report.reconciles() and not report.sorted_input

    def test_filter_keeps_its_size(self, first: tuple[Path, Path], second_breach: Path) -> None:
        """The rebuilt filter has the old one's capacity, size and fp rate."""
        store, bloom = first
        before = BloomFilter.open(bloom)
        m, capacity, fp = before.m, before.capacity, before.fp_rate
        before.close()
        build([second_breach], store=store, filter=bloom, update=True)
        with BloomFilter.open(bloom) as after:
            assert (after.m, after.capacity, after.fp_rate) == (m, capacity, fp)

    def test_outgrowing_the_filter_rebuilds_it_larger_from_the_store(
        self, hibp_file: Path, tmp_path: Path, second_breach: Path
    ) -> None:
        """With its store, a filter the merged set outgrows is rebuilt at a fitting size, same fp rate."""
        store, bloom = tmp_path / "s.store", tmp_path / "f.bloom"
        build([hibp_file], store=store, filter=bloom)  # capacity = exactly the first breach
        report = build([second_breach], store=store, filter=bloom, update=True)
        with BloomFilter.open(bloom) as after:
            assert (after.capacity, after.fp_rate, after.approx_items) == (len(LEAKED) + 2, 1e-6, len(LEAKED) + 2)
        assert f"capacity {len(LEAKED)} -> {len(LEAKED) + 2} hashes" in report.summary()
        report = build([second_breach], store=store, filter=bloom, update=True, capacity=1000)
        with BloomFilter.open(bloom) as after:
            assert after.capacity == 1000 and report.kept == len(LEAKED) + 2

    def test_readme_update_example_works_as_written(
        self, hibp_file: Path, tmp_path: Path, second_breach: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The README's two build commands, as written (no --capacity), run one after the other with exit 0."""
        store, bloom = str(tmp_path / "pwned.store"), str(tmp_path / "pwned.bloom")
        assert main(["build", str(hibp_file), "--filter", bloom, "--store", store]) == 0
        assert main(["build", str(second_breach), "--store", store, "--filter", bloom, "--update"]) == 0
        with credcheck.open(bloom) as checker:
            assert all(e.compromised for e in checker.check_many([*LEAKED, *NEW]))

    def test_min_count_is_kept(self, hibp_file: Path, tmp_path: Path, second_breach: Path) -> None:
        """An update keeps the artefacts' min_count; asking for another one is an InputError."""
        store = tmp_path / "s.store"
        build([hibp_file], store=store, min_count=2)
        with pytest.raises(InputError, match="min_count=2"):
            build([second_breach], store=store, update=True, min_count=1)
        build([second_breach], store=store, update=True)
        with RangeStore(store) as s:
            assert s.min_count == 2
            # the first build dropped 'password' (count 1): a store keeps no memory of what it dropped
            assert s.lookup(bytes.fromhex(sha1_upper("password"))) == 10
            assert s.lookup(bytes.fromhex(sha1_upper("hunter2"))) == 3

    def test_scheme_must_match(self, first: tuple[Path, Path], tmp_path: Path) -> None:
        """Updating a SHA-1 store with NTLM hashes is refused."""
        store, _ = first
        with pytest.raises(InputError, match="sha1"):
            build([tmp_path / "x"], store=store, update=True, scheme="ntlm")

    def test_update_of_missing_artefact_is_a_fresh_build(self, second_breach: Path, tmp_path: Path) -> None:
        """--update with no existing store simply builds one."""
        report = build([second_breach], store=tmp_path / "new.store", update=True)
        assert report.kept == len(NEW) and report.carried == 0


class TestFilterOnly:
    def test_adds_to_the_filter(self, hibp_file: Path, tmp_path: Path, second_breach: Path) -> None:
        """Without a store, the new hashes are added to a copy of the filter, which then replaces it."""
        bloom = tmp_path / "f.bloom"
        build([hibp_file], filter=bloom, capacity=50)
        report = build([second_breach], filter=bloom, update=True)
        with credcheck.open(bloom) as checker:
            assert all(e.compromised for e in checker.check_many([*LEAKED, *NEW]))
        assert (report.added, report.raised) == (2, 1)

    def test_over_capacity_refused(self, tmp_path: Path) -> None:
        """A filter-only update that would pass the filter's room is refused, says why, and leaves it untouched."""
        rng = np.random.default_rng(7)
        first, second = tmp_path / "one.txt", tmp_path / "two.txt"
        first.write_text("\n".join(bytes(row).hex() for row in rng.integers(0, 256, (2000, 20), dtype=np.uint8)))
        second.write_text("\n".join(bytes(row).hex() for row in rng.integers(0, 256, (400, 20), dtype=np.uint8)))
        bloom = tmp_path / "f.bloom"
        build([first], filter=bloom, fp_rate=1e-3)
        room = BloomFilter.open(bloom).room
        assert 2000 <= room < 2400  # a filter sized by the optimum: room for about its capacity
        before = bloom.read_bytes()
        with pytest.raises(CapacityError, match=rf"but it has room for {room:,} .* from 0.001 to about 0.00"):
            build([second], filter=bloom, update=True)
        assert bloom.read_bytes() == before

    def test_small_filter_takes_what_fits(self, hibp_file: Path, tmp_path: Path, second_breach: Path) -> None:
        """A small filter's bits have a floor far above its capacity: two more hashes fit, and are found."""
        bloom = tmp_path / "f.bloom"
        build([hibp_file], filter=bloom)  # 8 hashes at 1e-6: room for about 69,000
        report = build([second_breach], filter=bloom, update=True)
        assert report.added == 2
        with credcheck.open(bloom) as checker:
            assert all(e.compromised for e in checker.check_many([*LEAKED, *NEW]))

    def test_thresholded_filter_needs_its_store(self, hibp_file: Path, tmp_path: Path, second_breach: Path) -> None:
        """A filter built with min_count > 1 cannot be updated alone (counts must be summed)."""
        bloom = tmp_path / "f.bloom"
        build([hibp_file], filter=bloom, min_count=2, capacity=50)
        with pytest.raises(InputError, match="--store"):
            build([second_breach], filter=bloom, update=True)


def test_store_stream_round_trips(hibp_file: Path, tmp_path: Path) -> None:
    """Reading a store back as full digests gives exactly the digests and counts it was built from."""
    rng = np.random.default_rng(4)
    rows = rng.integers(0, 256, (5000, 20), dtype=np.uint8)
    rows[:300, :3] = 0x5B  # a crowded prefix
    src = tmp_path / "h.txt"
    src.write_text("\n".join(f"{bytes(r).hex()}:{i + 1}" for i, r in enumerate(rows)))
    build([src], store=tmp_path / "s.store")
    with RangeStore(tmp_path / "s.store") as store:
        chunks = list(store_rows(store))
    digests = np.concatenate([c.digests for c in chunks])
    counts = np.concatenate([c.counts for c in chunks])
    expected = {bytes(r): i + 1 for i, r in enumerate(rows)}
    assert {bytes(d): int(c) for d, c in zip(digests, counts, strict=True)} == expected
    assert [bytes(d) for d in digests] == sorted(expected)


def test_cli_update(first: tuple[Path, Path], second_breach: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """credcheck build --update merges and reports what changed."""
    store, bloom = first
    assert main(["build", str(second_breach), "--store", str(store), "--filter", str(bloom), "--update"]) == 0
    assert "2 new hashes, 1 already known" in capsys.readouterr().out


class TestConcurrentUpdates:
    def test_second_update_of_a_store_fails_while_the_first_runs(
        self, first: tuple[Path, Path], second_breach: Path, tmp_path: Path
    ) -> None:
        """While one `build --update` process holds the store, a second fails at once naming it; the first wins."""
        store, _ = first
        fifo = tmp_path / "incoming"
        os.mkfifo(fifo)
        holder = subprocess.Popen(
            [sys.executable, "-m", "credcheck", "build", str(fifo), "--store", str(store), "--update", "-q"],
            stderr=subprocess.PIPE,
        )
        try:
            lock = tmp_path / ".s.store.lock"
            deadline = time.monotonic() + 60
            while not (lock.exists() and lock.read_text().strip() == str(holder.pid)):
                assert time.monotonic() < deadline and holder.poll() is None, "the first build never took the lock"
                time.sleep(0.02)
            second = subprocess.run(
                [sys.executable, "-m", "credcheck", "build", str(second_breach), "--store", str(store), "--update"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert second.returncode == 2
            assert f"another credcheck build (pid {holder.pid}) is writing it" in second.stderr
            with open(fifo, "w") as feed:
                feed.write(f"{sha1_upper('hunter2')}:5\n")
        finally:
            holder.wait(timeout=60)
        assert holder.returncode == 0, holder.stderr.read() if holder.stderr else ""
        with RangeStore(store) as merged:
            assert merged.rows == len(LEAKED) + 1
        assert not lock.exists()

    def test_lock_is_released_when_the_holder_is_killed(self, first: tuple[Path, Path], tmp_path: Path) -> None:
        """A build killed with SIGKILL while holding the lock does not block the next one."""
        store, _ = first
        fifo = tmp_path / "incoming"
        os.mkfifo(fifo)
        holder = subprocess.Popen(
            [sys.executable, "-m", "credcheck", "build", str(fifo), "--store", str(store), "--update", "-q"]
        )
        lock = tmp_path / ".s.store.lock"
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().strip() == str(holder.pid)):
            assert time.monotonic() < deadline, "the first build never took the lock"
            time.sleep(0.02)
        holder.kill()
        holder.wait(timeout=60)
        extra = tmp_path / "extra.txt"
        extra.write_text(f"{sha1_upper('hunter2')}:5\n")
        assert build([extra], store=store, update=True).kept == len(LEAKED) + 1


def test_a_symlink_to_a_locked_store_shares_its_lock(first: tuple[Path, Path], tmp_path: Path) -> None:
    """A build through a symlink to a store another build holds is refused: the lock goes by real path."""
    from credcheck import StorageError, _atomic

    store, _ = first
    alias = tmp_path / "alias.store"
    alias.symlink_to(store)
    with _atomic.lock_beside([store]), pytest.raises(StorageError, match="another credcheck build"):
        build([tmp_path / "unused.txt"], store=alias, update=True)
