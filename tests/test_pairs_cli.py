"""`credcheck build --pairs` / `credcheck check --pairs`, credcheck.build(pairs=...) and credcheck.open_pairs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import credcheck
from credcheck.cli import main
from credcheck.pairs.build import PairBuildReport
from credcheck.pairs.keys import write_key

from .helpers import TINY, write_combo

COMBO = ["alice@example.com:Summer2019", "bob:hunter2", "not a pair"]


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: bytes = b"") -> int:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    return main(argv)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    write_key(tmp_path / "key")
    return tmp_path / "key"


@pytest.fixture
def store(tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    combo = write_combo(tmp_path / "combo.txt", COMBO)
    argv = ["build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", TINY]
    assert run([*argv, "--variants", "9", "--username-entries", "--workers", "1", "-q"], monkeypatch) == 0
    return tmp_path / "p"


class TestBuild:
    def test_report(
        self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """build --pairs prints a report with the bad line's number and the entries by status, no secret."""
        combo = write_combo(tmp_path / "combo.txt", COMBO)
        argv = ["build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", TINY]
        assert run([*argv, "--bucket-bits", "4", "--workers", "1"], monkeypatch) == 0
        out = capsys.readouterr().out
        assert "2 exact" in out and "line 3" in out and "2^4 buckets" in out
        assert "hunter2" not in out and "bob" not in out

    def test_json(
        self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json prints the report as JSON, and it adds up."""
        combo = write_combo(tmp_path / "combo.txt", COMBO)
        argv = ["build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", TINY, "--json"]
        assert run([*argv, "--workers", "1"], monkeypatch) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["pairs_read"] == report["entries_kept"] + report["duplicates_merged"] + report["bad_lines"]

    @pytest.mark.parametrize(
        ("extra", "message"),
        [
            (["--input-format", "combo"], "needs --filter FILE and/or --store PATH (or --pairs OUT)"),
            (["--pairs", "OUT"], "needs --key"),
            (
                ["--pairs", "OUT", "--key", "KEY", "--store", "S", "--input-format", "combo-sha1", "--hash", "ntlm"],
                "can only be sha1",
            ),
            (["--pairs", "OUT", "--key", "KEY", "--input-format", "hibp"], "combo or combo-sha1"),
            (["--pairs", "OUT", "--key", "KEY", "--variants", "10"], "variants"),
            (["--pairs", "OUT", "--key", "KEY", "--stretch", "quick"], "unknown stretch"),
            (
                ["--pairs", "OUT", "--key", "KEY", "--update", "--min-count", "2"],
                "--update and --min-count do not apply",
            ),
            (["--pairs", "OUT", "--key", "KEY", "--hash", "ntlm"], "--hash ntlm does not apply"),
        ],
    )
    def test_refused(
        self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        extra: list[str], message: str,
    ) -> None:  # fmt: skip
        """Bad option combinations exit 2 with one line saying what to do."""
        combo = write_combo(tmp_path / "combo.txt", COMBO)
        argv = [str(tmp_path / "OUT") if a == "OUT" else str(key) if a == "KEY" else a for a in extra]
        assert run(["build", str(combo), *argv], monkeypatch) == 2
        assert message in capsys.readouterr().err

    def test_readable_key_refused(
        self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A key file others can read is refused, and nothing is built."""
        os.chmod(key, 0o644)
        combo = write_combo(tmp_path / "combo.txt", COMBO)
        assert run(["build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key)], monkeypatch) == 2
        assert "chmod 600" in capsys.readouterr().err and not (tmp_path / "p").exists()

    def test_scheduler(self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """--scheduler runs the stretch on a running Dask cluster (a LocalCluster on 127.0.0.1 here)."""
        distributed = pytest.importorskip("distributed")
        combo = write_combo(tmp_path / "combo.txt", COMBO)
        with distributed.LocalCluster(
            n_workers=1, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster:
            argv = ["build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", TINY]
            assert run([*argv, "--scheduler", cluster.scheduler_address, "-q"], monkeypatch) == 0
        with credcheck.open_pairs(tmp_path / "p", key=key) as checker:
            assert checker.check("bob", "hunter2").compromised


class TestCheck:
    def test_answers_and_exit_1(
        self, store: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """One line per pair; exit 1 when one is compromised (exact or similar)."""
        stdin = b"bob:hunter2\r\nALICE@example.com:summer2019\nbob:other\ncarol:x\n"
        assert run(["check", "--pairs", str(store), "--key", str(key)], monkeypatch, stdin) == 1
        lines = capsys.readouterr().out.splitlines()
        assert [line.split(" (")[0] for line in lines] == ["compromised", "compromised", "not found", "not found"]
        assert "similar" in lines[1] or "close" in lines[1]
        assert "username is in the leak" in lines[2]

    def test_json_and_exit_0(
        self, store: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json gives status and compromised; exit 0 when none is compromised."""
        assert run(["check", "--pairs", str(store), "--key", str(key), "--json"], monkeypatch, b"bob:x\ncarol:y") == 0
        answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert answers == [{"compromised": False, "status": "username"}, {"compromised": False, "status": "not_found"}]

    def test_hashes(self, store: Path, key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """--hashes reads username:SHA1HEX lines."""
        stdin = b"bob:" + hashlib.sha1(b"hunter2").hexdigest().upper().encode() + b"\n"
        assert run(["check", "--pairs", str(store), "--key", str(key), "--hashes"], monkeypatch, stdin) == 1

    def test_bad_line_exit_2_unquoted(
        self, store: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A line that is not username:password exits 2 naming its number, never its content."""
        assert run(["check", "--pairs", str(store), "--key", str(key)], monkeypatch, b"bob:x\nsecretline\n") == 2
        err = capsys.readouterr().err
        assert "line 2" in err and "secret" not in err

    def test_needs_key(self, store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        """check --pairs without --key exits 2."""
        assert run(["check", "--pairs", str(store)], monkeypatch, b"bob:x\n") == 2
        assert "--key" in capsys.readouterr().err

    def test_password_options_refused(
        self, store: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--hash and --min-count, which a pair check cannot honour, exit 2 instead of being ignored."""
        assert run(["check", "--pairs", str(store), "--key", str(key), "--min-count", "3"], monkeypatch, b"a:b\n") == 2
        assert "do not apply" in capsys.readouterr().err

    def test_other_key(
        self, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Another key exits 2 (never "not found")."""
        write_key(tmp_path / "other")
        assert run(["check", "--pairs", str(store), "--key", str(tmp_path / "other")], monkeypatch, b"bob:x\n") == 2
        assert "key id" in capsys.readouterr().err


class TestPython:
    def test_build_pairs(self, tmp_path: Path, key: Path) -> None:
        """credcheck.build_pairs(sources, OUT, KEYFILE) is the pair build and returns its report; credcheck.build
        is the password build alone (it takes no pair store)."""
        combo = write_combo(tmp_path / "combo.txt", COMBO)
        report = credcheck.build_pairs(combo, tmp_path / "p", key, stretch=TINY, workers=1)
        assert isinstance(report, PairBuildReport) and report.exact == 2 and report.reconciles()
        with credcheck.open_pairs(tmp_path / "p", key=key) as checker:
            assert checker.check("bob", "hunter2").status is credcheck.PairStatus.EXACT
            assert isinstance(checker, credcheck.PairChecker)
            assert isinstance(checker.check("x", "y"), credcheck.PairExposure)
        with pytest.raises(TypeError):
            credcheck.build(combo, pairs=tmp_path / "p", key=key)  # type: ignore[call-arg]

    def test_import_is_light(self) -> None:
        """`import credcheck` (and its CLI module) loads neither the pair tier nor pysodium nor Dask."""
        prefixes = ("credcheck.pairs", "pysodium", "distributed")
        code = (
            f"import sys, credcheck, credcheck.cli; print(sorted(m for m in sys.modules if m.startswith({prefixes})))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "[]"

    def test_public_names(self) -> None:
        """The pair names are in credcheck's __all__ and resolve lazily."""
        assert {"open_pairs", "PairChecker", "PairExposure", "PairStatus"} <= set(credcheck.__all__)
        assert [s.name for s in credcheck.PairStatus] == ["NOT_FOUND", "EXACT", "SIMILAR", "USERNAME"]
        with pytest.raises(AttributeError):
            credcheck.NoSuchName  # noqa: B018


def test_demo_shows_the_pair_tier(capsys: pytest.CaptureFixture[str]) -> None:
    """credcheck demo ends with the pair tier over loopback: an exact, a similar, a username-only and an unknown
    log-in, checked through a pair service that is shown only buckets and blinded elements."""
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    section = out[out.index("7. The private tier") :]
    assert [line.split()[-1] for line in section.splitlines()[3:7]] == ["EXACT", "SIMILAR", "USERNAME", "NOT_FOUND"]
    assert "exact pair leaked" in section and "served on http://127.0.0.1:" in section
    assert "2 freshly blinded elements" in section
    assert "123456" not in section and "qwerty99" not in section
