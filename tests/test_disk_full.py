"""A full disk, for real: a small tmpfs. Every write path ends in a StorageError and the old artefacts survive."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import credcheck
from credcheck import BloomFilter, StorageError, build
from credcheck.export import export
from credcheck.store import HEADER_SIZE, INDEX_SIZE

from .conftest import LEAKED


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 12 MiB tmpfs (room for one 8.4 MB store, not two); skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _dump(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.write_text("\n".join(sorted(f"{rng.getrandbits(160):040X}:{rng.randint(1, 9)}" for _ in range(n))))
    return path


def _leftovers(disk: Path) -> list[str]:
    return sorted(p.name for p in disk.iterdir() if p.name.startswith("."))


def test_store_on_a_full_disk(small_disk: Path, hibp_file: Path, tmp_path: Path) -> None:
    """A store that does not fit raises StorageError ('No space left'); the old store is intact and usable."""
    store = small_disk / "s.store"
    build([hibp_file], store=store)
    before = store.read_bytes()
    assert len(before) > HEADER_SIZE + INDEX_SIZE
    with pytest.raises(StorageError, match="No space left"):
        build([_dump(tmp_path / "big.txt", 20000, 1)], store=store)
    assert store.read_bytes() == before and _leftovers(small_disk) == []
    with credcheck.open(store) as checker:
        assert all(e.compromised for e in checker.check_many(LEAKED))


def test_filter_on_a_full_disk(small_disk: Path, hibp_file: Path) -> None:
    """A filter larger than the free space raises StorageError; the old filter is intact."""
    target = small_disk / "f.bloom"
    build([hibp_file], filter=target)
    before = target.read_bytes()
    with pytest.raises(StorageError, match="No space left"):
        build([hibp_file], filter=target, capacity=5_000_000)  # ~18 MB of bits
    assert target.read_bytes() == before and _leftovers(small_disk) == []
    assert BloomFilter.open(target).approx_items == len(LEAKED)


def test_pair_build_spilling_on_a_full_disk(small_disk: Path, tmp_path: Path) -> None:
    """A pair build whose sorted runs do not fit beside the target raises StorageError before any stretch; the old
    pair store is intact and nothing of the spill (usernames, password hashes) is left."""
    from credcheck.pairs.build import build_pairs

    from .helpers import KEY, TINY, SerialExecutor, write_combo

    store = small_disk / "p"
    build_pairs(write_combo(tmp_path / "few.txt", ["bob:hunter2"]), store, KEY, stretch=TINY, executor=SerialExecutor())
    before = store.read_bytes()
    combo = write_combo(tmp_path / "many.txt", [f"user{i}@example.com:password{i}" for i in range(30_000)])
    worker = SerialExecutor()
    with pytest.raises(StorageError, match="No space left"):
        build_pairs(combo, store, KEY, stretch=TINY, variants=9, executor=worker, max_memory="64KiB")
    assert store.read_bytes() == before and _leftovers(small_disk) == [] and worker.calls == []


def test_update_on_a_full_disk(small_disk: Path, hibp_file: Path, tmp_path: Path) -> None:
    """A merge that runs out of space leaves both the store and the filter as they were."""
    store, bloom = small_disk / "s.store", small_disk / "f.bloom"
    build([hibp_file], store=store, filter=bloom, capacity=100_000)
    before = (store.read_bytes(), bloom.read_bytes())
    with pytest.raises(StorageError):
        build([_dump(tmp_path / "new.txt", 50, 2)], store=store, filter=bloom, update=True)
    assert (store.read_bytes(), bloom.read_bytes()) == before and _leftovers(small_disk) == []


def test_export_on_a_full_disk(small_disk: Path, hibp_file: Path, tmp_path: Path) -> None:
    """An export that does not fit raises StorageError and leaves no partial directory behind."""
    store = tmp_path / "s.store"
    build([hibp_file], store=store)
    with pytest.raises(StorageError):
        export([store], small_disk / "out", pad_to=20000, prefixes=range(64))  # ~1 MB per range
    assert sorted(p.name for p in small_disk.iterdir()) == []


def test_cli_reports_a_full_disk_in_one_line(
    small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line says 'No space left' in one line, exit 2."""
    from credcheck.cli import main

    src = _dump(tmp_path / "big.txt", 20000, 3)
    assert main(["build", str(src), "--store", str(small_disk / "a.store"), "-q"]) == 0
    assert main(["build", str(src), "--store", str(small_disk / "b.store"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "No space left" in err and err.count("\n") == 1


def _mount(path: Path, options: str) -> None:
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs: a directory nothing can be written to, even by root (who ignores file modes)."""
    disk = tmp_path / "ro"
    _mount(disk, "ro,size=1m")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.fixture
def few_inodes(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs whose inodes are all used but one: the lock file fits, nothing else does."""
    disk = tmp_path / "inodes"
    _mount(disk, "size=4m,nr_inodes=64")
    try:
        names = (disk / f"f{i}" for i in range(10_000))
        taken = []
        for name in names:
            try:
                name.touch()
            except OSError:
                break
            taken.append(name)
        taken[-1].unlink()
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.parametrize("kind", ["store", "filter"])
def test_unwritable_directory_is_a_storage_error(read_only_disk: Path, hibp_file: Path, kind: str) -> None:
    """A store or a filter in a directory that cannot be written raises StorageError naming it, alike."""
    target = read_only_disk / f"x.{kind}"
    with pytest.raises(StorageError, match=r"cannot write .*x\."):
        output: dict[str, Any] = {kind: target}
        build([hibp_file], **output)


def test_temporary_file_in_an_unwritable_directory_is_a_storage_error(read_only_disk: Path) -> None:
    """The shared temporary-file helper turns a refusal to create (EROFS, EACCES) into StorageError."""
    from credcheck import _atomic

    with pytest.raises(StorageError, match="cannot write"):
        _atomic.temp_path_beside(read_only_disk / "s.store")


def test_no_inode_left_for_sorted_runs_is_a_storage_error(few_inodes: Path, tmp_path: Path) -> None:
    """With no inode left for the directory of sorted runs, an unsorted build raises StorageError, no OSError."""
    src = _dump(tmp_path / "big.txt", 3000, 4)
    shuffled = src.read_text().split("\n")
    random.Random(5).shuffle(shuffled)
    src.write_text("\n".join(shuffled))
    with pytest.raises(StorageError, match="sorted runs"):
        build([src], store=few_inodes / "s.store", run_rows=100)
    assert _leftovers(few_inodes) == []


def test_export_with_no_inode_left_is_a_storage_error(few_inodes: Path, hibp_file: Path, tmp_path: Path) -> None:
    """An export whose working directory cannot be made raises StorageError."""
    store = tmp_path / "s.store"
    build([hibp_file], store=store)
    (few_inodes / "spare").touch()  # the last inode
    with pytest.raises(StorageError, match="cannot write the export"):
        export([store], few_inodes / "out", prefixes=[0])
