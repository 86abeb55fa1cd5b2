"""build(): sorted and unsorted input, duplicates, thresholds, reports that add up, atomic artefacts."""

from __future__ import annotations

import errno
import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import credcheck
from credcheck import BloomFilter, CapacityError, InputError, build
from credcheck.checker import StoreChecker

from .conftest import LEAKED, sha1_upper
from .helpers import DUMP_SHAPES, WITH_HEADER, secrets_in_frames


@pytest.mark.usefixtures("kernels")
class TestReport:
    def test_sorted_dump_reads_once_per_pass_without_sorting(self, hibp_file: Path, tmp_path: Path) -> None:
        """A sorted HIBP dump is recognised as sorted and every hash is kept."""
        report = build([hibp_file], filter=tmp_path / "f.bloom")
        assert report.sorted_input
        assert (report.lines_read, report.kept, report.duplicates_merged, report.bad_lines) == (
            len(LEAKED),
            len(LEAKED),
            0,
            0,
        )
        assert report.reconciles()

    def test_unsorted_input_with_duplicates_and_bad_lines(self, password_file: Path, tmp_path: Path) -> None:
        """A plaintext list with a repeated password and a bad line reconciles: 8 kept, 1 merged, 1 bad."""
        report = build([password_file], filter=tmp_path / "f.bloom")
        assert not report.sorted_input
        assert (report.lines_read, report.kept, report.duplicates_merged, report.bad_lines) == (10, 8, 1, 1)
        assert report.reconciles()
        assert "1 bad line " in report.summary() and "line 10" in report.summary()

    def test_count_too_large_is_a_bad_line_of_a_lenient_build(self, hibp_file: Path, tmp_path: Path) -> None:
        """A filter-only lenient build counts a line whose count overflows as a bad line and builds the rest."""
        dump = tmp_path / "dump.txt"
        dump.write_bytes(hibp_file.read_bytes() + f"\r\n{'F' * 40}:99999999999".encode())
        report = build([dump], filter=tmp_path / "f.bloom")
        assert (report.kept, report.bad_lines, report.sources[0].bad_line_numbers) == (len(LEAKED), 1, [9])
        assert report.reconciles()

    def test_summary_names_the_format_it_read(self, tmp_path: Path, hibp_file: Path) -> None:
        """The human report says which format each source was read as, and that line 1 was a header."""
        dump = tmp_path / "with-header.txt"
        dump.write_bytes(b"\xef\xbb\xbfSHA1:COUNT\r\n" + hibp_file.read_bytes())
        report = build([dump], store=tmp_path / "s.store", strict=True)
        assert f"{dump}: read as hibp (sha1); line 1 is a column header" in report.summary()
        assert report.kept == len(LEAKED)

    def test_min_count_sums_duplicates_across_sources(self, hibp_file: Path, tmp_path: Path) -> None:
        """Counts of the same hash in two sources add up before the threshold applies."""
        extra = tmp_path / "extra.txt"
        extra.write_text(f"{sha1_upper('password')}:7\n")  # 'password' has count 1 in hibp_file
        report = build([hibp_file, extra], filter=tmp_path / "f.bloom", min_count=8)
        checker = credcheck.open(tmp_path / "f.bloom", min_count=8)
        assert checker.check("password").compromised  # 1 + 7 = 8
        assert checker.check(LEAKED[-1]).compromised  # count 8 in hibp_file
        assert not checker.check(LEAKED[1]).compromised  # count 2
        assert report.kept == 2 and report.below_min_count == len(LEAKED) - 2 and report.duplicates_merged == 1
        assert report.reconciles()

    @pytest.mark.parametrize("update", [False, True])
    def test_min_count_with_blocks_wholly_below_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, update: bool
    ) -> None:
        """A store built (or updated) with min_count where whole merge blocks fall below it keeps the rest."""
        monkeypatch.setattr("credcheck._sortmerge.MERGE_BLOCK", 4)
        rare = [f"{sha1_upper(str(i))}:1" for i in range(40)]
        common = [f"{sha1_upper(p)}:5" for p in LEAKED]
        dump = tmp_path / "dump.txt"
        dump.write_text("\n".join(random.Random(5).sample(rare + common, len(rare) + len(common))))
        store = tmp_path / "s.store"
        if update:
            (tmp_path / "first.txt").write_text(common[0])
            build([tmp_path / "first.txt"], store=store, min_count=2)
        report = build([dump], store=store, min_count=None if update else 2, update=update)
        assert (report.kept, report.below_min_count) == (len(LEAKED), len(rare))
        with credcheck.open(store) as checker:
            assert all(e.compromised for e in checker.check_many(LEAKED))

    def test_summed_count_overflow_is_an_error(self, tmp_path: Path) -> None:
        """Two counts whose sum exceeds 2^32-1 raise InputError instead of wrapping."""
        src = tmp_path / "dump.txt"
        src.write_text(f"{sha1_upper('a')}:4294967295\n{sha1_upper('a')}:1\n")
        with pytest.raises(InputError, match="summed count"):
            build([src], filter=tmp_path / "f.bloom")
        assert not (tmp_path / "f.bloom").exists()

    @pytest.mark.parametrize(
        "kwargs",
        [
            {},
            {"filter": "x", "min_count": 0},
            {"filter": "x", "scheme": "md5"},
            {"filter": "x", "fp_rate": 2.0},
            {"filter": "x", "input_format": "csv"},
        ],
    )
    def test_bad_arguments(self, hibp_file: Path, kwargs: dict[str, Any]) -> None:
        """Missing outputs and out-of-range options raise ValueError before anything is read."""
        with pytest.raises(ValueError):
            build([hibp_file], **kwargs)

    def test_capacity_below_kept_is_refused(self, hibp_file: Path, tmp_path: Path) -> None:
        """An explicit capacity smaller than the kept set raises CapacityError."""
        with pytest.raises(CapacityError):
            build([hibp_file], filter=tmp_path / "f.bloom", capacity=2)


def _lines(rng: random.Random, n: int) -> list[str]:
    return [f"{rng.getrandbits(160):040X}:{rng.randint(1, 9)}" for _ in range(n)]


@pytest.mark.usefixtures("kernels")
class TestOrderIndependence:
    def test_sorted_unsorted_and_spilled_builds_are_identical(self, tmp_path: Path) -> None:
        """Sorted input, shuffled input and shuffled input merged from many spilled runs give the same filter."""
        rng = random.Random(7)
        lines = _lines(rng, 3000)
        lines += [line.split(":")[0] + ":1" for line in lines[:300]]  # duplicates, counts to add up
        ordered, shuffled = tmp_path / "sorted.txt", tmp_path / "shuffled.txt"
        ordered.write_text("\n".join(sorted(lines)))
        rng.shuffle(lines)
        shuffled.write_text("\n".join(lines))
        reports = [
            build([ordered], filter=tmp_path / "a.bloom", min_count=3),
            build([shuffled], filter=tmp_path / "b.bloom", min_count=3),
            build([shuffled], filter=tmp_path / "c.bloom", min_count=3, run_rows=256),
        ]
        assert [r.sorted_input for r in reports] == [True, False, False]
        assert len({(r.kept, r.duplicates_merged, r.below_min_count) for r in reports}) == 1
        a, b, c = (BloomFilter.open(tmp_path / f"{x}.bloom") for x in "abc")
        assert a == b == c

    def test_stdin_source(self, hibp_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """'-' builds from standard input (through sorted runs, since stdin cannot be read twice)."""
        import io

        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(hibp_file.read_bytes())))
        report = build(["-"], filter=tmp_path / "f.bloom")
        assert report.kept == len(LEAKED) and not report.sorted_input
        assert BloomFilter.open(tmp_path / "f.bloom") == BloomFilter.open(self._ref(hibp_file, tmp_path))

    @staticmethod
    def _ref(src: Path, tmp_path: Path) -> Path:
        build([src], filter=tmp_path / "ref.bloom")
        return tmp_path / "ref.bloom"


@pytest.mark.usefixtures("kernels")
class TestNoFalseNegatives:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        passwords=st.lists(
            # NUL-heavy lists are taken as UTF-16 and refused (corpus.looks_utf16), so no NULs here
            st.text(min_size=1, max_size=12).filter(lambda s: not {"\n", "\r", "\x00"} & set(s)),
            max_size=60,
        ),
        junk=st.lists(st.sampled_from(["", "\udcff"]), max_size=5),
    )
    def test_every_good_line_is_found_and_report_reconciles(
        self, tmp_path: Path, passwords: list[str], junk: list[str]
    ) -> None:
        """Whatever the plaintext list, each password is found afterwards and the numbers add up."""
        path = tmp_path / "list.txt"
        lines = [p.encode("utf-8") for p in passwords] + [j.encode("utf-8", "surrogateescape") for j in junk]
        random.Random(len(lines)).shuffle(lines)
        path.write_bytes(b"\n".join(lines) + (b"\n" if lines else b""))
        if not passwords:  # nothing to keep: refused rather than an empty filter
            with pytest.raises(InputError, match="nothing to build"):
                build([path], filter=tmp_path / "f.bloom", input_format="password")
            return
        report = build([path], filter=tmp_path / "f.bloom", input_format="password")
        assert report.reconciles()
        assert report.bad_lines == len(junk)
        checker = credcheck.open(tmp_path / "f.bloom")
        assert all(e.compromised for e in checker.check_many(passwords))
        checker.close()


class TestAtomicity:
    def test_strict_failure_leaves_previous_artefact(self, hibp_file: Path, tmp_path: Path) -> None:
        """A strict build that meets a bad line leaves the old filter byte-identical and no temp files."""
        target = tmp_path / "f.bloom"
        build([hibp_file], filter=target)
        before = target.read_bytes()
        dirty = tmp_path / "dirty.txt"
        dirty.write_text(f"{sha1_upper('zzz')}:1\nnot a hash\n")
        with pytest.raises(InputError, match=r"dirty\.txt:2"):
            build([dirty], filter=target, strict=True, input_format="hibp")
        assert target.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["dirty.txt", "f.bloom", hibp_file.name])

    def test_failed_write_leaves_previous_artefact(
        self, hibp_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A disk error while the new filter is written (ENOSPC) is a CredcheckError; the old file survives."""
        target = tmp_path / "f.bloom"
        build([hibp_file], filter=target)
        before = target.read_bytes()
        real_fsync = os.fsync

        def full_disk(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", full_disk)
        with pytest.raises(credcheck.CredcheckError, match="No space left"):
            build([hibp_file], filter=target, fp_rate=1e-3)
        monkeypatch.setattr(os, "fsync", real_fsync)
        assert target.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    @pytest.mark.parametrize("update", [False, True], ids=["build", "update"])
    def test_killed_build_leaves_previous_artefact(self, tmp_path: Path, update: bool) -> None:
        """SIGKILL in the middle of a build or a merge (input still arriving) leaves the previous artefacts intact."""
        target, store = tmp_path / "f.bloom", tmp_path / "s.store"
        first = tmp_path / "first.txt"
        first.write_text("\n".join(sorted(_lines(random.Random(1), 500))))
        build([first], filter=target, store=store, capacity=50_000)
        before = (target.read_bytes(), store.read_bytes())
        fifo = tmp_path / "incoming"
        os.mkfifo(fifo)
        argv = ["build", str(fifo), "--filter", str(target), "--store", str(store), "-q", *(["--update"] * update)]
        proc = subprocess.Popen([sys.executable, "-m", "credcheck", *argv], stderr=subprocess.PIPE)
        with _feed(fifo, proc) as feed:
            feed.write("\n".join(_lines(random.Random(2), 20000)) + "\n")
            feed.flush()
            time.sleep(0.5)  # let the builder read part of it; it now waits for more input
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert (target.read_bytes(), store.read_bytes()) == before
        assert BloomFilter.open(target).approx_items == 500
        with credcheck.open(store) as checker:
            assert isinstance(checker, StoreChecker)
            assert checker.store.rows == 500

    def test_source_changed_between_passes_is_refused(self, hibp_file: Path, tmp_path: Path) -> None:
        """A sorted source rewritten in place between the two passes (same lines, still sorted) is an
        InputError naming it, and the previous artefacts stay as they were."""
        target, store = tmp_path / "f.bloom", tmp_path / "s.store"
        build([hibp_file], filter=target, store=store)
        before = (target.read_bytes(), store.read_bytes())
        original = hibp_file.read_bytes()
        head, _, last = original.rpartition(b"\r\n")
        changed = head + b"\r\n" + b"F" * 40 + last[40:]  # the same length, still sorted, another hash

        def rewrite(phase: str, done: int, total: int | None, lines: int) -> None:
            if phase == "scan":  # the counting pass has read the whole file: change it under the build
                with open(hibp_file, "r+b") as fh:
                    fh.write(changed)

        with pytest.raises(InputError, match=rf"{hibp_file.name} changed while it was being built from"):
            build([hibp_file], filter=target, store=store, progress=rewrite)
        assert (target.read_bytes(), store.read_bytes()) == before
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _feed(fifo: Path, proc: subprocess.Popen[Any], timeout: float = 60) -> IO[str]:
    """Open ``fifo`` for writing once ``proc`` has opened it to read; fail (never hang) if it dies first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        assert proc.poll() is None, f"the build exited before reading its input: {proc.stderr and proc.stderr.read()}"
        assert time.monotonic() < deadline, "the build never opened its input"
        time.sleep(0.02)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "w")


_SMALL_RUNS = (  # the real command, with sorted runs spilled to disk every 100 rows
    "import sys; m = sys.modules; import credcheck.build; "
    "m['credcheck.build'].build.__wrapped__.__kwdefaults__['run_rows'] = 100; "
    "from credcheck.cli import main; sys.exit(main(sys.argv[1:]))"
)


class TestSignals:
    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
    def test_signal_mid_build_removes_temporary_files(self, tmp_path: Path, signum: int) -> None:
        """SIGTERM or SIGINT while runs are spilled beside the target: exit 2, nothing left but the inputs."""
        fifo, store = tmp_path / "incoming", tmp_path / "s.store"
        os.mkfifo(fifo)
        argv = [sys.executable, "-c", _SMALL_RUNS, "build", str(fifo), "--store", str(store), "-q"]
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        with _feed(fifo, proc) as feed:
            feed.write("\n".join(_lines(random.Random(3), 250_000)) + "\n")  # more than one 8 MiB read
            feed.flush()
            deadline = time.monotonic() + 60
            while not any(p.name.startswith(".s.store.spill-") and any(p.iterdir()) for p in tmp_path.iterdir()):
                assert time.monotonic() < deadline and proc.poll() is None, "the build never spilled a run"
                time.sleep(0.02)
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2
        assert ("terminated" if signum == signal.SIGTERM else "interrupted") in err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["incoming"]

    def test_sorted_runs_of_a_killed_build_removed_by_the_next(self, hibp_file: Path, tmp_path: Path) -> None:
        """The sorted runs a build killed outright left beside its target are removed by the next build of that
        target, under its lock (as a pair build's are); another target's are left alone."""
        mine, other = tmp_path / ".s.store.spill-abcd1234", tmp_path / ".t.store.spill-abcd1234"
        for folder in (mine, other):
            folder.mkdir()
            (folder / "1.keys").write_bytes(b"digests")
        build([hibp_file], store=tmp_path / "s.store")
        assert not mine.exists() and other.exists()


class TestTargets:
    def test_filter_and_store_the_same_file(self, hibp_file: Path, tmp_path: Path) -> None:
        """--filter X --store X is refused before anything is written."""
        with pytest.raises(InputError, match="the same file"):
            build([hibp_file], filter=tmp_path / "x", store=tmp_path / "x")
        assert not (tmp_path / "x").exists()

    @pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
    def test_target_that_is_a_source_is_refused(self, hibp_file: Path, tmp_path: Path, link: str) -> None:
        """A target that names a source (itself, through a symlink or a hard link) is refused; the input survives."""
        before = hibp_file.read_bytes()
        target = tmp_path / "alias"
        if link == "same":
            target = hibp_file
        elif link == "symlink":
            target.symlink_to(hibp_file)
        else:
            os.link(hibp_file, target)
        with pytest.raises(InputError, match="also a source"):
            build([hibp_file], filter=target)
        assert hibp_file.read_bytes() == before

    @pytest.mark.parametrize("update", [False, True])
    def test_directory_target_is_refused(self, hibp_file: Path, tmp_path: Path, update: bool) -> None:
        """A target that is a directory is an InputError naming it (also with update)."""
        folder = tmp_path / "folder"
        folder.mkdir()
        with pytest.raises(InputError, match="is a directory"):
            build([hibp_file], store=folder, update=update)


@pytest.mark.usefixtures("kernels")
class TestNtlm:
    def test_ntlm_dump(self, ntlm_hibp_file: Path, tmp_path: Path) -> None:
        """An NTLM dump builds an NTLM filter whose checker hashes passwords with NTLM."""
        build([ntlm_hibp_file], filter=tmp_path / "n.bloom", scheme="ntlm")
        checker = credcheck.open(tmp_path / "n.bloom")
        assert checker.scheme == "ntlm"
        assert checker.check("Passw0rd!").compromised
        assert checker.check_hash("FC525C9683E8FE067095BA2DDC971889").compromised
        assert not checker.check("not leaked at all 9!").compromised


def test_fp_rate_of_built_filter_is_near_target(tmp_path: Path) -> None:
    """A filter built at fp 1e-3 from 20,000 hashes shows at most 2e-3 false positives on 1,000,000 probes."""
    rng = np.random.default_rng(11)
    rows = rng.integers(0, 256, (20000, 20), dtype=np.uint8)
    src = tmp_path / "hashes.txt"
    src.write_text("\n".join(bytes(r).hex() for r in rows))
    build([src], filter=tmp_path / "f.bloom", fp_rate=1e-3)
    bloom = BloomFilter.open(tmp_path / "f.bloom")
    assert bloom.contains_many(rows).all()
    probes = rng.integers(0, 256, (1_000_000, 20), dtype=np.uint8)
    assert bloom.contains_many(probes).mean() <= 2e-3


class TestHugeCapacity:
    def test_capacity_beyond_memory_is_refused_before_reading(self, tmp_path: Path) -> None:
        """--capacity 10^14 is a CapacityError naming the memory it needs, raised before any source is read."""
        with pytest.raises(CapacityError, match="GiB of memory"):
            build([tmp_path / "not-read.txt"], filter=tmp_path / "f.bloom", capacity=100_000_000_000_000)

    def test_create_beyond_memory_is_a_capacity_error(self) -> None:
        """BloomFilter.create refuses a filter larger than the machine's memory instead of a MemoryError."""
        with pytest.raises(CapacityError, match="GiB"):
            BloomFilter.create(100_000_000_000_000, 1e-6)

    def test_cli_huge_capacity_is_one_line(
        self, hibp_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The command line reports a huge --capacity in one line, exit 2, no traceback."""
        from credcheck.cli import main

        argv = ["build", str(hibp_file), "--filter", str(tmp_path / "f.bloom"), "--capacity", "100000000000000"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "GiB of memory" in err and err.count("\n") == 1


class TestEmptyCorpus:
    @pytest.mark.parametrize(
        ("content", "kwargs", "why"),
        [
            (b"", {}, "the sources hold no lines"),
            (b"not a hash\nnor this\n", {"input_format": "hibp"}, "every one of the 2 lines is a bad line"),
            (f"{sha1_upper('a')}:1\n".encode(), {"min_count": 2}, "every hash was seen fewer than min_count=2"),
        ],
        ids=["empty", "all-bad", "all-below-min-count"],
    )
    def test_fresh_build_that_keeps_nothing_is_refused(
        self, tmp_path: Path, content: bytes, kwargs: dict[str, Any], why: str
    ) -> None:
        """A new store that would hold no hash is an InputError saying why; nothing is written."""
        source = tmp_path / "dump.txt"
        source.write_bytes(content)
        with pytest.raises(InputError, match=f"nothing to build: {why}"):
            build([source], store=tmp_path / "s.store", **kwargs)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.txt"]

    def test_update_with_an_empty_source_warns(self, hibp_file: Path, tmp_path: Path) -> None:
        """An update from an empty file leaves the store as it was and says so in a warning."""
        store = tmp_path / "s.store"
        build([hibp_file], store=store)
        empty = tmp_path / "empty.txt"
        empty.write_bytes(b"")
        report = build([empty], store=store, update=True)
        assert report.kept == len(LEAKED)
        assert f"warning: {empty} is empty" in report.summary()
        assert "warning: the update adds nothing" in report.summary()

    def test_empty_source_among_others_warns(self, hibp_file: Path, tmp_path: Path) -> None:
        """One empty source beside a good one builds, with a warning naming the empty one."""
        empty = tmp_path / "empty.txt"
        empty.write_bytes(b"")
        report = build([hibp_file, empty], store=tmp_path / "s.store")
        assert report.warnings == [f"{empty} is empty: it holds no lines"]

    def test_cli_quiet_still_prints_warnings(
        self, hibp_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`build -q` prints warnings on standard error even though it prints no report."""
        from credcheck.cli import main

        empty = tmp_path / "empty.txt"
        empty.write_bytes(b"")
        assert main(["build", str(hibp_file), str(empty), "--store", str(tmp_path / "s.store"), "-q"]) == 0
        assert capsys.readouterr().err == f"credcheck: warning: {empty} is empty: it holds no lines\n"


SHAPE_ROWS = sorted((sha1_upper(p), 1000 * i + 7) for i, p in enumerate(LEAKED))
PASSWORD_COUNT = dict(SHAPE_ROWS)[sha1_upper("password")]


@pytest.mark.usefixtures("kernels")
class TestShapes:
    """Dumps in the shapes they come in build artefacts that find "password", with build() and with the CLI."""

    @pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
    @pytest.mark.parametrize("shape", sorted(DUMP_SHAPES))
    def test_build_finds_password(self, tmp_path: Path, shape: str, strict: bool) -> None:
        """build() of each shape keeps every hash with its count: "password" is compromised, seen as often."""
        dump = tmp_path / "dump.txt"
        dump.write_bytes(DUMP_SHAPES[shape](SHAPE_ROWS))
        report = build([dump], filter=tmp_path / "f.bloom", store=tmp_path / "s.store", strict=strict)
        assert (report.kept, report.bad_lines, report.reconciles()) == (len(LEAKED), int(shape in WITH_HEADER), True)
        with credcheck.open(tmp_path / "s.store") as store, credcheck.open(tmp_path / "f.bloom") as bloom:
            found = store.check("password")
            assert (found.compromised, found.count) == (True, PASSWORD_COUNT)
            assert bloom.check("password").compromised

    @pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
    @pytest.mark.parametrize("shape", sorted(DUMP_SHAPES))
    def test_cli_build_then_check(
        self, tmp_path: Path, shape: str, strict: bool, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:  # fmt: skip
        """`credcheck build` of each shape, then `credcheck check` of "password": compromised, exit 1."""
        from credcheck.cli import main

        dump = tmp_path / "dump.txt"
        dump.write_bytes(DUMP_SHAPES[shape](SHAPE_ROWS))
        argv = ["build", str(dump), "--store", str(tmp_path / "s.store"), "-q", *(["--strict"] if strict else [])]
        assert main(argv) == 0
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"password\n")))
        assert main(["check", "--store", str(tmp_path / "s.store")]) == 1
        assert capsys.readouterr().out.startswith(f"compromised (seen {PASSWORD_COUNT} times)")


@pytest.mark.usefixtures("kernels")
class TestComboPasswords:
    """A combo list feeds a password build directly: no --pairs, no key."""

    COMBOS: ClassVar = [f"user{i}@example.com:{p}" for i, p in enumerate([*LEAKED, "password", "password"])]

    @pytest.mark.parametrize("scheme", ["sha1", "ntlm"])
    def test_build_from_combos(self, tmp_path: Path, scheme: str) -> None:
        """build(input_format="combo") hashes each line's password: "password" (three lines) is seen three times."""
        combo = tmp_path / "combo.txt"
        combo.write_text("\n".join([*self.COMBOS, "no separator here"]) + "\n")
        report = build([combo], store=tmp_path / "s.store", input_format="combo", scheme=scheme)
        assert (report.lines_read, report.kept, report.duplicates_merged, report.bad_lines) == (11, 8, 2, 1)
        assert report.reconciles() and report.sources[0].bad_line_numbers == [11]
        with credcheck.open(tmp_path / "s.store") as store:
            found = store.check("password")
            assert (found.compromised, found.count) == (True, 3)
            assert not store.check(self.COMBOS[0]).compromised  # the whole line was not hashed

    def test_build_from_combo_sha1(self, tmp_path: Path) -> None:
        """combo-sha1 lines give the SHA-1 they hold."""
        combo = tmp_path / "combo.txt"
        combo.write_text("".join(f"u{i}:{sha1_upper(p)}\n" for i, p in enumerate(LEAKED)))
        build([combo], filter=tmp_path / "f.bloom", input_format="combo-sha1")
        with credcheck.open(tmp_path / "f.bloom") as bloom:
            assert bloom.check("password").compromised

    def test_combo_sha1_cannot_give_ntlm(self, tmp_path: Path) -> None:
        """combo-sha1 with scheme ntlm is refused before anything is read."""
        with pytest.raises(InputError, match="can only be sha1"):
            build([tmp_path / "x"], filter=tmp_path / "f.bloom", input_format="combo-sha1", scheme="ntlm")

    def test_combos_from_standard_input(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A combo list on standard input builds too (it is read once)."""
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("\n".join(self.COMBOS).encode())))
        report = build(["-"], store=tmp_path / "s.store", input_format="combo")
        assert report.kept == len(LEAKED)

    def test_auto_refuses_a_combo_list(self, tmp_path: Path) -> None:
        """Under auto, a combo list stops the build naming --input-format combo; nothing is written."""
        combo = tmp_path / "combo.txt"
        combo.write_text("\n".join(self.COMBOS))
        with pytest.raises(InputError, match="--input-format combo"):
            build([combo], filter=tmp_path / "f.bloom")
        assert not (tmp_path / "f.bloom").exists()

    def test_cli_build_then_check(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`credcheck build --input-format combo SOURCE --filter F --store S` needs no --pairs or --key."""
        from credcheck.cli import main

        combo = tmp_path / "combo.txt"
        combo.write_text("\n".join(self.COMBOS))
        target = ["--filter", str(tmp_path / "f.bloom"), "--store", str(tmp_path / "s.store")]
        assert main(["build", "--input-format", "combo", str(combo), *target, "-q"]) == 0
        for flag in ("--filter", "--store"):
            monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"password\n")))
            assert main(["check", flag, str(tmp_path / ("f.bloom" if flag == "--filter" else "s.store"))]) == 1
        assert capsys.readouterr().out.splitlines() == ["compromised", "compromised (seen 3 times)"]

    def test_cli_key_is_refused(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """build takes no --key (a pair build is credcheck pairs build): a usage error, not a pair build silently
        skipped."""
        from credcheck.cli import main

        combo = tmp_path / "combo.txt"
        combo.write_text("\n".join(self.COMBOS))
        argv = ["build", "--input-format", "combo", str(combo), "--filter", str(tmp_path / "f"), "--key", "k"]
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and "unrecognized arguments: --key" in capsys.readouterr().err

    def test_cli_auto_says_what_to_pass(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Under auto the CLI exits 2 with one line naming --input-format combo."""
        from credcheck.cli import main

        combo = tmp_path / "combo.txt"
        combo.write_text("\n".join(self.COMBOS))
        assert main(["build", str(combo), "--filter", str(tmp_path / "f.bloom")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--input-format combo" in err


class TestArchivesAndWarnings:
    def test_zip_is_one_clear_error(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A zipped dump is one line saying it is a ZIP archive and to extract it (exit 2), not bad lines."""
        import zipfile

        from credcheck.cli import main

        path = tmp_path / "pwned.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("pwned.txt", DUMP_SHAPES["tab"](SHAPE_ROWS))
        assert main(["build", str(path), "--filter", str(tmp_path / "f.bloom")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "ZIP archive" in err and "unzip" in err and "bad line" not in err

    def test_report_warns_of_digests_read_as_passwords(self, tmp_path: Path) -> None:
        """--input-format password on 40-hex lines builds from them as passwords, and the report warns."""
        listing = tmp_path / "list.txt"
        listing.write_text("".join(f"{sha1_upper(p)}\n" for p in LEAKED))
        report = build([listing], filter=tmp_path / "f.bloom", input_format="password")
        assert any("hex digest" in w for w in report.warnings)
        assert "hex digest" in report.summary()


class TestRefusalsKeepNoSecret:
    @pytest.mark.parametrize("kind", ["combo", "unread-shape", "mixed-late"])
    def test_no_line_in_the_error_or_its_frames(self, tmp_path: Path, kind: str) -> None:
        """A source refused for its shape leaves no password, username or hash in the message or the frames."""
        secret, name = "s3cret-Pw", "victim@example.com"
        lines = {
            "combo": [f"{name}:{secret}"] * 20,
            "unread-shape": [f"{sha1_upper(secret)};7"] * 20,
            "mixed-late": [secret] * 2000 + [sha1_upper(secret)] * 100,
        }[kind]
        source = tmp_path / "leak.txt"
        source.write_text("\n".join(lines) + "\n")
        with pytest.raises(InputError) as info:
            build([source], filter=tmp_path / "f.bloom")
        assert secrets_in_frames(info.value, [secret, name, sha1_upper(secret), secret.encode()]) == []
