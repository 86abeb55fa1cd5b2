"""A pair build that also writes --filter/--store from the combo lists' passwords, in one run (credcheck._combined)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

import credcheck
from credcheck._combined import CombinedReport, build_combined
from credcheck.build import BuildPlan
from credcheck.cli import main
from credcheck.errors import InputError, StorageError
from credcheck.pairs.build import PairPlan
from credcheck.pairs.keys import write_key

from .helpers import TINY, SerialExecutor, write_combo

COMBO = ["alice@example.com:Summer2019", "bob:hunter2", "not a pair", "carol:hunter2"]


def sha1_twin(lines: list[str]) -> list[str]:
    """The combo-sha1 twin of plaintext combo lines (bad lines kept as they are)."""
    out = []
    for line in lines:
        name, sep, password = line.partition(":")
        out.append(f"{name}:{hashlib.sha1(password.encode()).hexdigest().upper()}" if sep else line)
    return out


@pytest.fixture
def key(tmp_path: Path) -> Path:
    write_key(tmp_path / "key")
    return tmp_path / "key"


def build_all(tmp_path: Path, key: Path, combo: Path | str, *, scheme: str = "sha1", **options: Any) -> CombinedReport:
    """build_combined: a pair store ``p``, a filter ``f`` and a store ``s`` from one combo list."""
    options.setdefault("executor", SerialExecutor())
    fmt = options.pop("input_format", "combo")
    passwords = BuildPlan.of(combo, filter=tmp_path / "f", store=tmp_path / "s", scheme=scheme, input_format=fmt)
    return build_combined(PairPlan.of(combo, tmp_path / "p", key, stretch=TINY, input_format=fmt, **options), passwords)


def leftovers(directory: Path) -> list[str]:
    """Files a build left beside its targets: temporaries, runs, checkpoints (not lock files)."""
    return sorted(n for n in os.listdir(directory) if n.startswith(".") and not n.endswith(".lock"))


class TestOneRun:
    def test_writes_pairs_filter_and_store(self, tmp_path: Path, key: Path) -> None:
        """One run writes a pair store, a filter and a store, and each answers from the same combo lines."""
        report = build_all(tmp_path, key, write_combo(tmp_path / "c.txt", COMBO))
        assert isinstance(report, CombinedReport) and report.reconciles()
        with credcheck.open_pairs(tmp_path / "p", key=key) as pairs:
            assert pairs.check("bob", "hunter2").status is credcheck.PairStatus.EXACT
            assert pairs.check("bob", "Summer2019").status is credcheck.PairStatus.NOT_FOUND
        with credcheck.open(tmp_path / "s") as store:
            assert store.check("hunter2").count == 2  # two combo lines hold it
            assert store.check("Summer2019").count == 1
            assert not store.check("not a pair").compromised
        with credcheck.open(tmp_path / "f") as bloom:
            assert bloom.check("hunter2").compromised and bloom.check("Summer2019").compromised
        assert leftovers(tmp_path) == []

    def test_bad_line_counted_once_in_each_report(self, tmp_path: Path, key: Path) -> None:
        """A bad line is one bad line in the pair report and one in the password report; both add up."""
        report = build_all(tmp_path, key, write_combo(tmp_path / "c.txt", COMBO))
        assert (report.pairs.bad_lines, report.passwords.bad_lines) == (1, 1)
        assert (report.pairs.pairs_read, report.passwords.lines_read) == (4, 4)
        assert report.passwords.sources[0].bad_line_numbers == [3]
        assert report.passwords.kept == 2 and report.passwords.duplicates_merged == 1

    def test_combo_sha1_answers_like_plaintext(self, tmp_path: Path, key: Path) -> None:
        """combo-sha1 lines give the filter and store the answers of their plaintext twins."""
        plain, hashed = tmp_path / "plain", tmp_path / "hashed"
        plain.mkdir()
        hashed.mkdir()
        build_all(plain, key, write_combo(plain / "c.txt", COMBO))
        report = build_all(hashed, key, write_combo(hashed / "c.txt", sha1_twin(COMBO)), input_format="combo-sha1")
        assert report.reconciles() and report.passwords.bad_lines == 1
        for password in ("hunter2", "Summer2019", "not leaked"):
            with credcheck.open(plain / "s") as a, credcheck.open(hashed / "s") as b:
                assert a.check(password) == b.check(password)
            with credcheck.open(plain / "f") as a, credcheck.open(hashed / "f") as b:
                assert a.check(password).compromised == b.check(password).compromised

    def test_ntlm_from_plaintext(self, tmp_path: Path, key: Path) -> None:
        """With scheme ntlm the store holds the passwords' NTLM hashes; combo-sha1 cannot give NTLM."""
        build_all(tmp_path, key, write_combo(tmp_path / "c.txt", COMBO), scheme="ntlm")
        with credcheck.open(tmp_path / "s") as store:
            assert store.scheme == "ntlm" and store.check("hunter2").count == 2
        with pytest.raises(InputError, match="combo-sha1"):
            build_all(tmp_path, key, write_combo(tmp_path / "h.txt", sha1_twin(COMBO)), input_format="combo-sha1",
                      scheme="ntlm")  # fmt: skip

    def test_standard_input_refused(self, tmp_path: Path, key: Path) -> None:
        """The combined build reads its sources twice: standard input is refused before anything is written."""
        with pytest.raises(InputError, match="twice"):
            build_all(tmp_path, key, "-")
        assert not any((tmp_path / n).exists() for n in "pfs")

    def test_pairs_and_store_same_file_refused(self, tmp_path: Path, key: Path) -> None:
        """--pairs and --store naming one file is refused."""
        combo = write_combo(tmp_path / "c.txt", COMBO)
        with pytest.raises(InputError, match="same file"):
            build_combined(
                PairPlan.of(combo, tmp_path / "x", key, stretch=TINY),
                BuildPlan.of(combo, store=tmp_path / "x", input_format="combo"),
            )


class TestAllOrNothing:
    @pytest.fixture
    def old(self, tmp_path: Path, key: Path) -> dict[str, bytes]:
        build_all(tmp_path, key, write_combo(tmp_path / "old.txt", ["dave:correct horse"]))
        return {n: (tmp_path / n).read_bytes() for n in "pfs"}

    def test_password_failure_keeps_old_pairs(
        self, tmp_path: Path, key: Path, old: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failure once every artefact is written (the first rename) leaves all three old artefacts."""

        def fail(self: object) -> None:
            raise StorageError("disk gone")

        monkeypatch.setattr("credcheck._sinks.FilterSink.commit", fail)  # the first rename
        with pytest.raises(StorageError, match="disk gone"):
            build_all(tmp_path, key, write_combo(tmp_path / "c.txt", COMBO))
        assert {n: (tmp_path / n).read_bytes() for n in "pfs"} == old
        assert leftovers(tmp_path) == [".p.checkpoints"]  # the finished chunks, for --resume

    def test_pair_failure_keeps_old_filter_and_store(
        self, tmp_path: Path, key: Path, old: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A pair part that fails after the filter and store are finished leaves all three old artefacts."""
        with pytest.raises(OSError, match="went away"):
            build_all(tmp_path, key, write_combo(tmp_path / "c.txt", COMBO), executor=SerialExecutor(fail_after=0))
        assert {n: (tmp_path / n).read_bytes() for n in "pfs"} == old
        assert leftovers(tmp_path) == [".p.checkpoints"]

    def test_combo_changed_between_the_two_reads_is_refused(
        self, tmp_path: Path, key: Path, old: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A combo list rewritten after the password build read it and before the pair build does is an error
        naming it, raised before any stretch; the old artefacts stay (else the filter/store and the pair store
        would answer from different lists)."""
        import credcheck.pairs.build as pair_build

        combo = write_combo(tmp_path / "c.txt", COMBO)
        real_read = pair_build._read

        def rewritten_first(*args: Any, **kwargs: Any) -> Any:
            write_combo(combo, [*COMBO, "dave:letmein"])
            return real_read(*args, **kwargs)

        def no_stretch(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("stretched a list that changed")

        monkeypatch.setattr(pair_build, "_read", rewritten_first)
        monkeypatch.setattr(pair_build, "_stretch_and_evaluate", no_stretch)
        with pytest.raises(InputError, match=r"c\.txt changed while it was being built from"):
            build_all(tmp_path, key, combo)
        assert {n: (tmp_path / n).read_bytes() for n in "pfs"} == old
        assert leftovers(tmp_path) == []

    def test_same_bytes_rewritten_is_not_a_change(
        self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Only the bytes count: the list written again with the same lines (a new mtime) builds as before."""
        import credcheck.pairs.build as pair_build

        combo = write_combo(tmp_path / "c.txt", COMBO)
        real_read = pair_build._read

        def touched_first(*args: Any, **kwargs: Any) -> Any:
            write_combo(combo, COMBO)
            return real_read(*args, **kwargs)

        monkeypatch.setattr(pair_build, "_read", touched_first)
        assert build_all(tmp_path, key, combo).reconciles()


class TestCli:
    def run(self, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
        return main(argv)

    def test_json_gives_both_reports(
        self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """pairs build --filter --store --json prints {"pairs": ..., "passwords": ...}, no secret."""
        combo = write_combo(tmp_path / "c.txt", COMBO)
        argv = ["pairs", "build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", TINY]
        argv += ["--filter", str(tmp_path / "f"), "--store", str(tmp_path / "s"), "--workers", "1", "--json"]
        assert self.run(argv, monkeypatch) == 0
        out = capsys.readouterr().out
        report = json.loads(out)
        assert report["pairs"]["exact"] == 3 and report["pairs"]["bad_lines"] == 1
        assert report["passwords"]["kept"] == 2 and report["passwords"]["bad_lines"] == 1
        assert "hunter2" not in out and "bob" not in out

    def test_summary_prints_both(
        self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The plain report shows the pair build's and the password build's accounts."""
        combo = write_combo(tmp_path / "c.txt", COMBO)
        argv = ["pairs", "build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", TINY]
        assert self.run([*argv, "--store", str(tmp_path / "s"), "--workers", "1"], monkeypatch) == 0
        out = capsys.readouterr().out
        assert "3 exact" in out and "kept 2 sha1 hashes" in out and "wrote store" in out
        assert not (tmp_path / "f").exists()

    def test_help_says_so(self, capsys: pytest.CaptureFixture[str]) -> None:
        """pairs build --help says the pair build may also write --filter/--store from the passwords."""
        with pytest.raises(SystemExit):
            main(["pairs", "build", "--help"])
        assert "--filter/--store" in " ".join(capsys.readouterr().out.split())
