"""The pair build: report arithmetic, bucket bits, the executor contract, checkpoints, resume, kill, lock."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import fcntl
import hashlib
import io
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
import traceback
import tracemalloc
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import xxhash

from credcheck import _combolist
from credcheck._atomic import lock_path
from credcheck.errors import ArtifactError, InputError, StorageError
from credcheck.pairs import build as pair_build
from credcheck.pairs import store as pair_store
from credcheck.pairs.build import build_pairs, checkpoint_dir
from credcheck.pairs.checker import PairStatus, StorePairChecker
from credcheck.pairs.keys import write_key
from credcheck.pairs.store import PairStore
from credcheck.pairs.stretch import split_inputs

from .helpers import KEY, TINY, SerialExecutor, secrets_in_frames, write_combo
from .pairs_fixtures import OTHER_KEY


def many_pairs(n: int) -> list[str]:
    return [f"user{i}@example.com:password{i}" for i in range(n)]


class TestReport:
    def test_adds_up(self, tmp_path: Path) -> None:
        """Lines read plus generated candidates equal entries kept plus duplicates merged plus bad lines."""
        combo = write_combo(tmp_path / "c.txt", ["a:pw1", "A :pw1", "a:pw2", "b:pw1", "nope", ":x", "a:pw1"])
        report = build_pairs(
            combo, tmp_path / "p", KEY, stretch=TINY, variants=2, username_entries=True, executor=SerialExecutor()
        )
        assert report.reconciles()
        assert (report.pairs_read, report.bad_lines, report.exact, report.distinct_usernames) == (7, 2, 3, 2)
        assert report.usernames_generated == 5 and report.username == 2
        assert report.stretched == report.entries_kept and report.resumed == 0

    def test_variant_equal_to_exact_pair_is_exact(self, tmp_path: Path) -> None:
        """A variant that is also a leaked password of the same user stays exact (exact beats similar)."""
        combo = write_combo(tmp_path / "c.txt", ["a:Secret", "a:secret"])
        report = build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, variants=1, executor=SerialExecutor())
        assert (report.exact, report.similar, report.duplicates_merged) == (2, 0, 2)
        with StorePairChecker(tmp_path / "p", KEY) as checker:
            assert checker.check("a", "secret").status is PairStatus.EXACT

    def test_summary_names_lines_not_content(self, tmp_path: Path) -> None:
        """The summary gives bad line numbers and reasons, never the lines."""
        combo = write_combo(tmp_path / "c.txt", ["secretuser:secretpw", "secretline"])
        report = build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor())
        text = report.summary() + repr(report.as_dict())
        assert "secret" not in text.replace(str(tmp_path), "") and "line 2" in text

    def test_strict(self, tmp_path: Path) -> None:
        """strict=True stops at the first bad line, and nothing is written."""
        combo = write_combo(tmp_path / "c.txt", ["a:1", "bad"])
        with pytest.raises(InputError, match=":2: bad line"):
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, strict=True, executor=SerialExecutor())
        assert not (tmp_path / "p").exists()


class TestBucketBits:
    def test_default_is_8_for_small_sets(self, tmp_path: Path) -> None:
        """Fewer than 2^13 usernames give the floor of 8 bucket bits."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(5))
        report = build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor())
        assert report.bucket_bits == 8
        with PairStore(tmp_path / "p") as store:
            assert store.bucket_bits == 8 and store.buckets == 256

    def test_override(self, tmp_path: Path) -> None:
        """bucket_bits overrides the default, and the store records it."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(5))
        build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, bucket_bits=2, executor=SerialExecutor())
        with PairStore(tmp_path / "p") as store:
            assert store.bucket_bits == 2

    @pytest.mark.parametrize(
        ("option", "value"),
        [("bucket_bits", 25), ("bucket_bits", -1), ("variants", 10), ("stretch", "scrypt:3:1:1"), ("workers", 0),
         ("input_format", "hibp"), ("chunk_size", 0)],
    )  # fmt: skip
    def test_bad_options(self, tmp_path: Path, option: str, value: object) -> None:
        """Out-of-range options are a ValueError before anything is read or written."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(1))
        with pytest.raises(ValueError):
            build_pairs(combo, tmp_path / "p", KEY, **{option: value})  # type: ignore[arg-type]
        assert not (tmp_path / "p").exists()

    @pytest.mark.parametrize("option", ["workers", "chunk_size"])
    def test_bool_is_not_a_count_of_workers_or_inputs(self, tmp_path: Path, option: str) -> None:
        """workers=True or chunk_size=True is a ValueError, not a count of 1."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(1))
        with pytest.raises(ValueError, match=f"{option} must be a positive integer"):
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor(), **{option: True})  # type: ignore[arg-type]
        assert not (tmp_path / "p").exists()


class TestExecutor:
    def test_only_stretch_inputs_travel(self, tmp_path: Path) -> None:
        """What is submitted is stretch_chunk, the scrypt parameters and inputs: never the key."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(10))
        pool = SerialExecutor()
        build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=pool, chunk_size=3)
        assert len(pool.calls) == 4
        for n, r, p, blob in pool.calls:
            assert (n, r, p) == (16, 1, 1)
            assert KEY.sk not in blob and KEY.sk.hex().encode() not in blob

    def test_default_process_pool(self, tmp_path: Path) -> None:
        """Without an executor the stretch runs on a process pool, with the same result as in-process."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(6))
        build_pairs(combo, tmp_path / "pool", KEY, stretch=TINY, workers=2, chunk_size=2)
        build_pairs(combo, tmp_path / "serial", KEY, stretch=TINY, executor=SerialExecutor())
        with StorePairChecker(tmp_path / "pool", KEY) as checker:
            assert all(checker.check(f"user{i}@example.com", f"password{i}").compromised for i in range(6))

    def test_worker_failure_keeps_old_store(self, tmp_path: Path) -> None:
        """A worker that fails fails the build; the previous store stays byte for byte."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(6))
        target = tmp_path / "p"
        target.write_bytes(b"the old store")
        with pytest.raises(OSError, match="went away"):
            build_pairs(combo, target, KEY, stretch=TINY, executor=SerialExecutor(fail_after=1), chunk_size=2)
        assert target.read_bytes() == b"the old store"


class TestCheckpoints:
    def test_private_and_beside_target(self, tmp_path: Path) -> None:
        """Checkpoints live in a 0700 directory beside the target, one 0600 file a finished chunk."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(6))
        with pytest.raises(OSError):
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor(fail_after=2), chunk_size=2)
        ckpt = checkpoint_dir(str(tmp_path / "p"))
        assert os.path.dirname(ckpt) == str(tmp_path)
        assert stat.S_IMODE(os.stat(ckpt).st_mode) == 0o700
        files = os.listdir(ckpt)
        assert len(files) == 2 and all(stat.S_IMODE(os.stat(os.path.join(ckpt, f)).st_mode) == 0o600 for f in files)

    def test_removed_on_success(self, tmp_path: Path) -> None:
        """A build that succeeds leaves no checkpoint behind (a resumed one included)."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(6))
        with pytest.raises(OSError):
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor(fail_after=2), chunk_size=2)
        build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor(), chunk_size=2, resume=True)
        assert not os.path.exists(checkpoint_dir(str(tmp_path / "p")))
        assert sorted(os.listdir(tmp_path)) == ["c.txt", "p"]  # the lock goes with the build

    def test_resume_recomputes_no_finished_chunk(self, tmp_path: Path) -> None:
        """After a failed build, resume=True stretches only the chunks that had not finished."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(10))
        with pytest.raises(OSError):
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor(fail_after=2), chunk_size=3)
        again = SerialExecutor()
        report = build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=again, chunk_size=3, resume=True)
        assert (again.stretched, report.stretched, report.resumed) == (4, 4, 6)
        assert report.reconciles()

    def test_without_resume_starts_over(self, tmp_path: Path) -> None:
        """Without resume, old checkpoints are dropped and everything is stretched again."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(10))
        with pytest.raises(OSError):
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor(fail_after=2), chunk_size=3)
        again = SerialExecutor()
        build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=again, chunk_size=3)
        assert again.stretched == 10

    def test_damaged_checkpoint_recomputed(self, tmp_path: Path) -> None:
        """A checkpoint that does not verify is stretched again, never trusted."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(10))
        with pytest.raises(OSError):
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor(fail_after=2), chunk_size=3)
        ckpt = checkpoint_dir(str(tmp_path / "p"))
        first = sorted(os.listdir(ckpt))[0]
        raw = bytearray((Path(ckpt) / first).read_bytes())
        raw[20] ^= 1
        (Path(ckpt) / first).write_bytes(bytes(raw))
        again = SerialExecutor()
        build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=again, chunk_size=3, resume=True)
        assert again.stretched == 7
        with StorePairChecker(tmp_path / "p", KEY) as checker:
            assert all(checker.check(f"user{i}@example.com", f"password{i}").compromised for i in range(10))

    def test_other_stretch_does_not_reuse(self, tmp_path: Path) -> None:
        """Checkpoints of another stretch are not taken on resume."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(6))
        with pytest.raises(OSError):
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor(fail_after=1), chunk_size=3)
        again = SerialExecutor()
        build_pairs(combo, tmp_path / "p", KEY, stretch="scrypt:32:1:1", executor=again, chunk_size=3, resume=True)
        assert again.stretched == 6


# A combo list with repeated users and passwords, a unicode username and a bad line: ~7,700 candidates, ~7,100
# distinct, so that 64 KiB spills runs at every stage (and merges them in more than one pass).
SPILL_COMBO = [f"user{i % 97}@example.com:Pass{i % 13}word{i % 7}" for i in range(700)] + [
    "Ünïcode@Example.com:pässwörd",
    "no separator here",
    "user1@example.com:Pass1word1",
]
#: SHA-256 of the store that the in-memory build (commit 49f14a1, before the build spilled) wrote from SPILL_COMBO
#: with KEY, TINY, 9 variants and username entries, its dummies drawn from SPILL_DUMMIES and its clock at 1.7e9.
SPILL_GOLDEN = "947bec2381ee515d858ea2fe6e7d3f31e7e24f708da6c4761500d0f6583f7926"
SPILL_DUMMIES = hashlib.shake_256(b"credcheck spill test dummies").digest(1 << 20)


def spill_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any) -> tuple[bytes, Any]:
    """SPILL_COMBO built with fixed dummies and clock: the store's bytes and the report."""
    monkeypatch.setattr(pair_store, "_random_bytes", io.BytesIO(SPILL_DUMMIES).read)
    monkeypatch.setattr(pair_store, "time", types.SimpleNamespace(time=lambda: 1_700_000_000.0))
    tmp_path.mkdir(exist_ok=True)
    combo = write_combo(tmp_path / "c.txt", SPILL_COMBO)
    settings: dict[str, Any] = {"stretch": TINY, "variants": 9, "username_entries": True}
    settings.update(options)
    report = build_pairs(combo, tmp_path / "p", KEY, executor=SerialExecutor(), **settings)
    return (tmp_path / "p").read_bytes(), report


class TestSpill:
    @pytest.mark.parametrize("max_memory", ["64KiB", "1MiB", "1GiB"])
    def test_store_bytes_equal_the_in_memory_build(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_memory: str
    ) -> None:
        """Whatever the memory it is given, the build writes the bytes the in-memory build wrote for the same input,
        key, options and dummies."""
        data, report = spill_build(tmp_path, monkeypatch, max_memory=max_memory)
        assert hashlib.sha256(data).hexdigest() == SPILL_GOLDEN
        assert report.reconciles() and report.entries_kept > 7000

    def test_small_memory_spills_more(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With little memory the sorts go to disk (the inputs file alone is all that 1 GiB keeps there)."""
        _, small = spill_build(tmp_path / "small", monkeypatch, max_memory="64KiB")
        _, large = spill_build(tmp_path / "large", monkeypatch)
        assert small.spill_bytes > 2 * large.spill_bytes > 0
        assert set(small.phase_seconds) >= {"read", "sort", "stretch", "oprf", "assemble"}

    def test_resume_with_another_max_memory_takes_every_finished_chunk(self, tmp_path: Path) -> None:
        """The chunks are the same whatever the memory: a build resumed with another max_memory takes them all."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(40))
        options: dict[str, Any] = {"stretch": TINY, "variants": 9, "chunk_size": 25}
        with pytest.raises(OSError):
            build_pairs(
                combo, tmp_path / "p", KEY, executor=SerialExecutor(fail_after=6), max_memory="64KiB", **options
            )
        again = SerialExecutor()
        report = build_pairs(combo, tmp_path / "p", KEY, executor=again, resume=True, **options)
        assert report.resumed == 6 * 25 and again.stretched == report.entries_kept - 150
        assert report.reconciles()

    def test_spill_is_private_and_removed(self, tmp_path: Path) -> None:
        """While it runs, the build's inputs lie in a 0700 directory beside the target; it goes when the build ends,
        failed or not."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(20))
        seen: list[tuple[str, int, list[str]]] = []

        class Watching(SerialExecutor):
            def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
                for entry in os.scandir(tmp_path):
                    if ".spill-" in entry.name:
                        seen.append((entry.name, stat.S_IMODE(entry.stat().st_mode), os.listdir(entry.path)))
                return super().submit(fn, *args, **kwargs)

        build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=Watching(), max_memory="64KiB")
        assert seen and all(name.startswith(".p.spill-") and mode == 0o700 for name, mode, _ in seen)
        assert "inputs" in seen[0][2]
        assert sorted(os.listdir(tmp_path)) == ["c.txt", "p"]
        with pytest.raises(OSError):
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor(fail_after=0))
        assert sorted(os.listdir(tmp_path)) == [".p.checkpoints", "c.txt", "p"]

    def test_spilled_files_are_private(self, tmp_path: Path) -> None:
        """Every file of the spill (the inputs, the sorted runs) is 0600 whatever the umask, in its 0700 directory:
        a directory swapped for another by someone who can write the target's would still not give them away."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(200))
        modes: set[int] = set()

        class Watching(SerialExecutor):
            def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
                for folder in tmp_path.glob(".p.spill-*"):
                    modes.update(stat.S_IMODE(f.stat().st_mode) for f in folder.iterdir())
                return super().submit(fn, *args, **kwargs)

        old = os.umask(0)
        try:
            build_pairs(
                combo, tmp_path / "p", KEY, stretch=TINY, variants=9, executor=Watching(), max_memory="64KiB",
                chunk_size=200,
            )  # fmt: skip
        finally:
            os.umask(old)
        assert modes == {0o600}

    @pytest.mark.parametrize("at", [0, 2, 40, -1])
    def test_inputs_changed_on_disk_is_an_error(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: int) -> None:
        """A byte of the spilled inputs changed between their writing and their stretch is a StorageError, never
        another input stretched in its place (a pair silently unfindable); nothing is written."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(50))
        reader = pair_build._InputsFile.reader

        def changed(inputs: Any, window: int) -> Any:
            inputs.close()
            data = bytearray(Path(inputs.path).read_bytes())
            data[at] ^= 0x01
            Path(inputs.path).write_bytes(data)
            return reader(inputs, window)

        monkeypatch.setattr(pair_build._InputsFile, "reader", changed)
        with pytest.raises(
            StorageError, match="inputs file beside the target changed after the build wrote it"
        ) as info:
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, variants=2, executor=SerialExecutor())
        assert not (tmp_path / "p").exists()
        assert secrets_in_frames(info.value, [b"@example.com", "@example.com"]) == []

    def test_stale_spill_of_a_killed_build_removed(self, tmp_path: Path) -> None:
        """A spill directory a killed build of the same target left (usernames, password hashes) is removed by the
        next build; another target's is not."""
        mine, other = tmp_path / ".p.spill-abcd1234", tmp_path / ".q.spill-abcd1234"
        for folder in (mine, other):
            folder.mkdir()
            (folder / "inputs").write_bytes(b"user@example.com and a hash")
        combo = write_combo(tmp_path / "c.txt", many_pairs(3))
        build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor())
        assert not mine.exists() and other.exists()

    @pytest.mark.parametrize("value", ["32KiB", "lots", "-1", True, 1.5])
    def test_bad_max_memory(self, tmp_path: Path, value: object) -> None:
        """max_memory is a size of at least 64 KiB: anything else is a ValueError before anything is read."""
        with pytest.raises(ValueError, match="max_memory"):
            build_pairs(tmp_path / "none.txt", tmp_path / "p", KEY, stretch=TINY, max_memory=value)  # type: ignore[arg-type]

    def test_memory_does_not_grow_with_the_pairs(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With max_memory=256KiB, the memory the build allocates at its peak grows by less than that from 300 to
        3,000 pairs with 9 variants (3,000 to 30,000 entries)."""
        # The combo reader's block (1 MiB whatever the input: a fixed cost) made small, so that the peaks compare
        # what the build holds for its entries; a first build pays for the imports.
        monkeypatch.setattr(_combolist, "BLOCK", 16 << 10)
        build_pairs(write_combo(tmp_path / "w.txt", many_pairs(2)), tmp_path / "w", KEY, stretch=TINY, workers=1)
        peaks = []
        for pairs in (300, 3000):
            combo = write_combo(tmp_path / f"c{pairs}.txt", many_pairs(pairs))
            tracemalloc.start()
            try:
                with cf.ThreadPoolExecutor(1) as pool:  # (a SerialExecutor keeps every chunk it was sent)
                    build_pairs(
                        combo, tmp_path / f"p{pairs}", KEY, stretch=TINY, variants=9, executor=pool, workers=1,
                        chunk_size=256, max_memory="256KiB",
                    )  # fmt: skip
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
        assert peaks[1] - peaks[0] < 256 << 10, peaks


KILLED_BUILD = textwrap.dedent(
    """
    import sys
    from credcheck.pairs import _oprf
    from credcheck.pairs.build import build_pairs
    from credcheck.pairs.keys import KeyPair
    sk, _ = _oprf.derive_key_pair(b"credcheck tests".ljust(32, b"\\x00"), b"tests")
    build_pairs(sys.argv[1], sys.argv[2], KeyPair.from_secret(sk), stretch="scrypt:4096:8:1", workers=1,
                chunk_size=4)
    """
)


class TestKill:
    def test_sigkill_leaves_old_store_and_resume_skips_finished(self, tmp_path: Path) -> None:
        """A build killed (SIGKILL) mid-way leaves the old store byte-identical; resume reuses its chunks."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(200))
        target = tmp_path / "p"
        build_pairs(write_combo(tmp_path / "old.txt", ["old:pw"]), target, KEY, stretch=TINY, executor=SerialExecutor())
        old = target.read_bytes()
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_BUILD, str(combo), str(target)], start_new_session=True
        )  # fmt: skip
        ckpt = checkpoint_dir(str(target))
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                if os.path.isdir(ckpt) and len([f for f in os.listdir(ckpt) if f.endswith(".ckpt")]) >= 3:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the build ended before it could be killed"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert target.read_bytes() == old
        finished = len([f for f in os.listdir(ckpt) if f.endswith(".ckpt")])
        again = SerialExecutor()
        report = build_pairs(combo, target, KEY, stretch="interactive", executor=again, chunk_size=4, resume=True)
        assert report.resumed == 4 * finished and again.stretched == 200 - 4 * finished
        assert report.reconciles()

    def test_sigkill_of_the_build_ends_its_workers(self, tmp_path: Path) -> None:
        """The stretch workers of a build killed outright (SIGKILL: the OOM killer) end too, instead of waiting for
        ever for work from a build that is gone."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(200))
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_BUILD, str(combo), str(tmp_path / "p")], start_new_session=True
        )  # fmt: skip
        ckpt = checkpoint_dir(str(tmp_path / "p"))
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                if os.path.isdir(ckpt) and any(f.endswith(".ckpt") for f in os.listdir(ckpt)):
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the build ended before it could be killed"
            workers = children(proc.pid)
            assert workers
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(alive(pid) for pid in workers):
                time.sleep(0.1)
            assert not [pid for pid in workers if alive(pid)]
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat_line = Path(f"/proc/{entry}/stat").read_text()
                if int(stat_line.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class TestLock:
    def test_concurrent_build_refused(self, tmp_path: Path) -> None:
        """While another build holds the target's lock, a build fails at once and writes nothing."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(2))
        target = tmp_path / "p"
        fd = os.open(lock_path(str(target)), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with pytest.raises(StorageError, match="another credcheck build"):
                build_pairs(combo, target, KEY, stretch=TINY, executor=SerialExecutor())
        finally:
            os.close(fd)
        assert not target.exists()
        build_pairs(combo, target, KEY, stretch=TINY, executor=SerialExecutor())

    def test_key_file(self, tmp_path: Path) -> None:
        """The key may be given as a key file."""
        write_key(tmp_path / "k")
        combo = write_combo(tmp_path / "c.txt", many_pairs(2))
        report = build_pairs(combo, tmp_path / "p", tmp_path / "k", stretch=TINY, executor=SerialExecutor())
        with PairStore(tmp_path / "p") as store:
            assert store.key_id.hex() == report.key_id


class LyingExecutor(SerialExecutor):
    """Returns outputs of the right size that are not the stretch of the inputs (a broken or hostile worker)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        self.calls.append(args)
        future.set_result(bytes(32 * len(split_inputs(args[-1]))))
        return future


class OneWrongExecutor(SerialExecutor):
    """Stretches every input right but one, drawn at random in each chunk (a worker wrong now and then)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        outputs = bytearray(future.result())
        wrong = random.randrange(len(outputs) // 32)
        outputs[32 * wrong] ^= 1
        lied: cf.Future[Any] = cf.Future()
        lied.set_result(bytes(outputs))
        return lied


class TestHostile:
    def test_lying_worker_detected(self, tmp_path: Path) -> None:
        """Outputs that are not the stretch of their inputs fail the build (never silently unfindable pairs)."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(4))
        target = tmp_path / "p"
        target.write_bytes(b"old")
        with pytest.raises(ArtifactError, match="recomputation"):
            build_pairs(combo, target, KEY, stretch=TINY, executor=LyingExecutor(), chunk_size=1)
        assert target.read_bytes() == b"old"
        assert os.listdir(checkpoint_dir(str(target))) == []

    @pytest.mark.parametrize("forger", ["checksum", "other key"])
    def test_forged_checkpoint_recomputed(self, tmp_path: Path, forger: str) -> None:
        """A checkpoint edited between a killed build and its resume -- its outputs replaced and its seal made
        again without the build's key (an unkeyed checksum, or a MAC under another key) -- is stretched again."""
        from credcheck import _artifact
        from credcheck.pairs import build as pair_build

        combo = write_combo(tmp_path / "c.txt", many_pairs(4))
        with pytest.raises(OSError):
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor(fail_after=2), chunk_size=1)
        ckpt = Path(checkpoint_dir(str(tmp_path / "p")))
        for path in ckpt.iterdir():
            body = path.read_bytes()[:12] + bytes(32)
            if forger == "checksum":
                seal = xxhash.xxh3_128_digest(body) * 2
            else:
                key = _artifact.seal_key(OTHER_KEY.sk, b"credcheck-pairs-v1 checkpoints")
                seal = _artifact.seal(key, pair_build.CHECKPOINT_MAGIC, path.stem.encode(), bytes(32))
            path.write_bytes(body + seal)
        again = SerialExecutor()
        build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=again, chunk_size=1, resume=True)
        assert again.stretched == 4
        with StorePairChecker(tmp_path / "p", KEY) as checker:
            assert all(checker.check(f"user{i}@example.com", f"password{i}").compromised for i in range(4))

    def test_checkpoints_of_a_build_with_another_key_are_not_taken(self, tmp_path: Path) -> None:
        """The finished chunks of an interrupted build with another key are recomputed, never taken."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(6))
        with pytest.raises(OSError):
            build_pairs(
                combo, tmp_path / "p", OTHER_KEY, stretch=TINY, executor=SerialExecutor(fail_after=2), chunk_size=2
            )
        again = SerialExecutor()
        build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=again, chunk_size=2, resume=True)
        assert again.stretched == 6

    @pytest.mark.parametrize(("pairs", "chunk"), [(100, 10), (500, 50), (1000, 25)])
    def test_worker_wrong_on_one_input_a_chunk_is_caught(self, tmp_path: Path, pairs: int, chunk: int) -> None:
        """A worker whose outputs are right but for one input in every chunk (drawn at random) fails the build:
        ten builds out of ten, whatever the chunks (each passes with odds of e^-14 at most, docs/SECURITY.md)."""
        combo = write_combo(tmp_path / "c.txt", many_pairs(pairs))
        target = tmp_path / "p"
        target.write_bytes(b"old")
        for _ in range(10):
            with pytest.raises(ArtifactError, match="recomputation"):
                build_pairs(combo, target, KEY, stretch=TINY, executor=OneWrongExecutor(), chunk_size=chunk)
        assert target.read_bytes() == b"old"

    def test_no_secret_in_traceback_frames(self, tmp_path: Path) -> None:
        """A strict build's error carries no frame whose locals hold a combo line or a password."""
        combo = write_combo(tmp_path / "c.txt", ["xylouser:xylopassword", "xylobadline"])
        with pytest.raises(InputError) as info:
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, strict=True, executor=SerialExecutor())
        frames = [frame for frame, _ in traceback.walk_tb(info.value.__traceback__)][1:]  # [0] is this test
        assert frames and all("xylo" not in repr(frame.f_locals) for frame in frames)
        assert info.value.__context__ is None and info.value.__cause__ is None

    def test_checkpoint_symlink_refused(self, tmp_path: Path) -> None:
        """A symlink where the checkpoint directory goes is refused, and what it points to is left alone."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "keep").write_text("x")
        os.symlink(elsewhere, checkpoint_dir(str(tmp_path / "p")))
        combo = write_combo(tmp_path / "c.txt", many_pairs(2))
        for resume in (False, True):
            with pytest.raises(StorageError, match="checkpoint"):
                build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor(), resume=resume)
        assert (elsewhere / "keep").read_text() == "x" and stat.S_IMODE(os.stat(elsewhere).st_mode) != 0o700

    @pytest.mark.skipif(os.getuid() != 0, reason="only root can give a directory to another user")
    def test_checkpoint_dir_of_another_user_refused(self, tmp_path: Path) -> None:
        """On resume, a checkpoint directory that another user owns is refused (its chunks could be forged)."""
        ckpt = checkpoint_dir(str(tmp_path / "p"))
        os.mkdir(ckpt, 0o700)
        os.chown(ckpt, 12345, 12345)
        combo = write_combo(tmp_path / "c.txt", many_pairs(2))
        with pytest.raises(StorageError, match="of this user"):
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor(), resume=True)

    def test_lock_symlink_not_followed(self, tmp_path: Path) -> None:
        """A symlink in the lock file's place is not followed (no file is created through it)."""
        os.symlink(tmp_path / "created-through-link", lock_path(str(tmp_path / "p")))
        combo = write_combo(tmp_path / "c.txt", many_pairs(2))
        with pytest.raises(StorageError, match="cannot lock"):
            build_pairs(combo, tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor())
        assert not (tmp_path / "created-through-link").exists()
