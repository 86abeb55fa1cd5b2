"""The sort-merge engine: layouts (sums, keep-first), spilled runs merged a few at a time, in bounded memory."""

from __future__ import annotations

import os
import stat
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credcheck import _sortmerge as sm
from credcheck._corpus import Chunk
from credcheck.errors import StorageError

# A pair-build-like layout: 3 key bytes, rows equal in the first 2 keep the first (the smallest third byte), and
# each carries a 4-byte payload.
FIRST = sm.Layout(3, 2, np.dtype("<u4"), summed=False)


def chunks_of(rows: list[tuple[bytes, int]], layout: sm.Layout, size: int = 5) -> list[Chunk]:
    """``(key, value)`` rows as chunks of ``size`` rows each."""
    out = []
    for start in range(0, len(rows), size):
        part = rows[start : start + size]
        digests = np.frombuffer(b"".join(k for k, _ in part), dtype=np.uint8).reshape(len(part), layout.width)
        out.append(Chunk(digests.copy(), np.array([v for _, v in part], dtype=layout.value)))
    return out


def rows_of(chunks: list[Chunk]) -> list[tuple[bytes, int]]:
    return [(bytes(d), int(c)) for chunk in chunks for d, c in zip(chunk.digests, chunk.counts, strict=True)]


def run(rows: list[tuple[bytes, int]], layout: sm.Layout, tmp_path: Path, run_rows: int, fan_in: int) -> sm.Runs:
    runs = sm.Runs(layout, sm.WorkDir(str(tmp_path / "target")), run_rows, fan_in=fan_in)
    for chunk in chunks_of(rows, layout):
        runs.add(chunk)
    runs.finish()
    return runs


def keep_first(rows: list[tuple[bytes, int]], layout: sm.Layout) -> list[tuple[bytes, int]]:
    """The reference: sort stably by the whole key, keep the first of rows equal in their leading bytes."""
    out: list[tuple[bytes, int]] = []
    for key, value in sorted(rows, key=lambda row: row[0]):
        if out and out[-1][0][: layout.same] == key[: layout.same]:
            continue
        out.append((key, value))
    return out


class TestLayout:
    def test_digests_sum_their_counts(self, tmp_path: Path) -> None:
        """The password build's layout: equal digests become one, counts summed, across runs."""
        layout = sm.Layout.digests(2)
        rows = [(bytes([i % 7, 1]), 1) for i in range(60)]
        merged = rows_of(list(run(rows, layout, tmp_path, run_rows=8, fan_in=3).merged()))
        assert merged == [(bytes([k, 1]), len(range(k, 60, 7))) for k in range(7)]

    def test_keep_first_across_runs(self, tmp_path: Path) -> None:
        """Rows equal in the leading bytes keep the one whose key sorts first, and its own value."""
        rows = [(b"ab\x03", 1), (b"zz\x00", 2), (b"ab\x01", 3), (b"ab\x02", 4)] * 10
        merged = rows_of(list(run(rows, FIRST, tmp_path, run_rows=3, fan_in=2).merged()))
        assert merged == [(b"ab\x01", 3), (b"zz\x00", 2)]

    def test_leading_bytes_meet_across_runs(self, tmp_path: Path) -> None:
        """Rows equal in their leading bytes but in different runs, on either side of a merge step's bound, still
        become one (the bound compares the leading bytes only)."""
        runs = sm.Runs(FIRST, sm.WorkDir(str(tmp_path / "target")), 2)
        for chunk in chunks_of([(b"aa\x00", 1), (b"ab\x01", 2), (b"ab\x02", 3), (b"zz\x00", 4)], FIRST, size=2):
            runs.add(chunk)  # two runs: aa ab1 | ab2 zz, read back a row at a time
        runs.finish()
        assert rows_of(list(runs.merged())) == [(b"aa\x00", 1), (b"ab\x01", 2), (b"zz\x00", 4)]

    def test_equal_keys_keep_the_earliest_added(self, tmp_path: Path) -> None:
        """Rows equal in the whole key keep the value of the one added first, however the rows were cut into runs."""
        rows = [(b"kk\x05", value) for value in range(40)] + [(b"aa\x00", 99)]
        for run_rows, fan_in in [(1000, 32), (64, 32), (64, 2)]:
            merged = rows_of(list(run(rows, FIRST, tmp_path / str(run_rows * fan_in), run_rows, fan_in).merged()))
            assert merged == [(b"aa\x00", 99), (b"kk\x05", 0)]

    @pytest.mark.parametrize(("width", "same"), [(3, 0), (3, 4)])
    def test_bad_width(self, width: int, same: int) -> None:
        """The compared bytes are 1 to the key's width."""
        with pytest.raises(ValueError):
            sm.Layout(width, same, np.dtype(np.uint8), summed=False)

    def test_payloads_are_not_summed(self) -> None:
        """Only integer values can be summed."""
        with pytest.raises(ValueError):
            sm.Layout(3, 3, np.dtype("V4"), summed=True)

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(st.tuples(st.binary(min_size=3, max_size=3), st.integers(0, 2**32 - 1)), max_size=300),
        st.sampled_from([(64, 2), (64, 3), (100_000, 32)]),
    )
    def test_merged_equals_reference(self, rows: list[tuple[bytes, int]], sizes: tuple[int, int]) -> None:
        """Whatever the runs and the fan-in, the merge equals a stable sort keeping the first of equal rows."""
        with tempfile.TemporaryDirectory() as folder:
            runs = run(rows, FIRST, Path(folder), *sizes)
            assert rows_of(list(runs.merged())) == keep_first(rows, FIRST)
            assert rows_of(list(runs.merged())) == keep_first(rows, FIRST)  # as often as asked
            runs.discard()
            assert not any(files for _, _, files in os.walk(folder))


class TestSpilledRuns:
    def test_at_most_fan_in_runs_merged_at_once(self, tmp_path: Path) -> None:
        """Past the fan-in, runs are first merged into fewer: the final merge reads at most fan_in of them."""
        rows = [(os.urandom(3), i) for i in range(2000)]
        runs = run(rows, FIRST, tmp_path, run_rows=64, fan_in=4)
        assert 1 < len(runs.streams()) <= 4  # (runs kept in memory are one stream)
        assert rows_of(list(runs.merged())) == keep_first(rows, FIRST)

    def test_runs_are_read_not_mapped(self, tmp_path: Path) -> None:
        """A merge reads spilled runs into memory block by block: no run file is mapped (its pages would count in
        the build's resident memory, up to the whole spill)."""
        maps = Path("/proc/self/maps")
        if not maps.exists():
            pytest.skip("needs /proc")
        rows = [(os.urandom(3), i) for i in range(5000)]
        runs = run(rows, FIRST, tmp_path, run_rows=500, fan_in=32)
        merged = runs.merged()
        next(merged)
        assert str(tmp_path) not in maps.read_text()
        merged.close()

    def test_merge_memory_follows_run_rows(self, tmp_path: Path) -> None:
        """Merging many spilled runs holds about a run's worth of rows, not a block of every run."""
        layout = sm.Layout.digests(20)
        runs = sm.Runs(layout, sm.WorkDir(str(tmp_path / "target")), 2000)
        generator = np.random.default_rng(1)
        for _ in range(40):
            runs.add(Chunk(generator.integers(0, 256, (2000, 20), dtype=np.uint8), np.ones(2000, dtype=np.uint64)))
        runs.finish()
        tracemalloc.start()
        try:
            rows = sum(len(chunk.counts) for chunk in runs.merged())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert rows == 80_000
        assert peak < 20 * 2000 * layout.row_bytes  # 40 runs' blocks at once would be 80,000 rows

    def test_discard_removes_the_files(self, tmp_path: Path) -> None:
        """Discarded runs leave no file behind."""
        workdir = sm.WorkDir(str(tmp_path / "target"))
        runs = sm.Runs(FIRST, workdir, 64)
        for chunk in chunks_of([(os.urandom(3), i) for i in range(500)], FIRST):
            runs.add(chunk)
        runs.finish()
        assert os.listdir(workdir())
        runs.discard()
        assert os.listdir(workdir()) == []
        workdir.remove()

    @pytest.mark.parametrize("suffix", [".keys", ".values"])
    @pytest.mark.parametrize("at", [0, 1000, -1])
    def test_run_changed_on_disk_is_an_error(self, tmp_path: Path, suffix: str, at: int) -> None:
        """A byte of a spilled run changed after it was written (the disk, another process) is a StorageError when
        the run is read back, never rows read as other rows: a changed key could reorder or drop rows, a changed
        value carry another count or payload."""
        workdir = sm.WorkDir(str(tmp_path / "target"))
        runs = sm.Runs(FIRST, workdir, 400)
        rows = [(os.urandom(3), i) for i in range(2000)]
        for chunk in chunks_of(rows, FIRST):
            runs.add(chunk)
        runs.finish()
        assert rows_of(list(runs.merged())) == keep_first(rows, FIRST)
        changed = sorted(Path(workdir()).glob(f"*{suffix}"))[2]
        data = bytearray(changed.read_bytes())
        data[at] ^= 0x01
        changed.write_bytes(data)
        with pytest.raises(StorageError, match="a sorted run beside the target changed after the build wrote it"):
            list(runs.merged())
        workdir.remove()

    def test_run_files_are_private(self, tmp_path: Path) -> None:
        """A run's files are readable by their owner only (0600), whatever the umask: the directory's mode is not
        all that keeps a pair build's usernames and password hashes from other users."""
        workdir = sm.WorkDir(str(tmp_path / "target"))
        runs = sm.Runs(FIRST, workdir, 64)
        old = os.umask(0)
        try:
            for chunk in chunks_of([(os.urandom(3), i) for i in range(500)], FIRST):
                runs.add(chunk)
            runs.finish()
        finally:
            os.umask(old)
        files = list(Path(workdir()).iterdir())
        assert files and {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
        workdir.remove()

    def test_out_of_space_is_a_storage_error(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A disk that fills while a run is written is a StorageError, even when closing the run's other file fails
        too (its buffered rows cannot be written either): never a bare OSError from the clean-up."""
        if not os.path.exists("/dev/full"):
            pytest.skip("needs /dev/full")
        monkeypatch.setattr(sm, "_private", lambda path: open("/dev/full", "wb"))  # noqa: SIM115
        layout = sm.Layout(2, 2, np.dtype("<u8"), summed=False)  # keys buffered (4 kB), values written at once (16)
        runs = sm.Runs(layout, sm.WorkDir(str(tmp_path / "target")), 1000)
        keys = np.arange(2000, dtype=">u2").view(np.uint8).reshape(2000, 2)
        with pytest.raises(StorageError, match="No space left"):
            runs.add(Chunk(keys, np.arange(2000, dtype="<u8")))
