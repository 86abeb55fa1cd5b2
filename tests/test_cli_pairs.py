"""`credcheck pairs build|check|keygen` (credcheck.cli._pairs), and the pair tier's Python entry points."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import credcheck
from credcheck.cli import main
from credcheck.pairs.build import PairBuildReport
from credcheck.pairs.keys import write_key

from .helpers import TINY, credcheck_process, kill_session, run_main, survivors, wait_until, write_combo

COMBO = ["alice@example.com:Summer2019", "bob:hunter2", "not a pair"]


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: bytes = b"") -> int:
    return run_main(argv, stdin, monkeypatch)


def _checking(store: Path, key: Path, *extra: str) -> list[str]:
    """``credcheck pairs check`` of the local pair store ``store`` with its ``key``."""
    return ["pairs", "check", "--pairs", str(store), "--key", str(key), *extra]


@pytest.fixture
def key(tmp_path: Path) -> Path:
    write_key(tmp_path / "key")
    return tmp_path / "key"


@pytest.fixture
def store(tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    combo = write_combo(tmp_path / "combo.txt", COMBO)
    argv = ["pairs", "build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", TINY]
    assert run([*argv, "--variants", "9", "--username-entries", "--workers", "1", "-q"], monkeypatch) == 0
    return tmp_path / "p"


class TestBuild:
    def test_report(
        self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """pairs build prints a report with the bad line's number and the entries by status, no secret."""
        combo = write_combo(tmp_path / "combo.txt", COMBO)
        argv = ["pairs", "build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", TINY]
        assert run([*argv, "--bucket-bits", "4", "--workers", "1"], monkeypatch) == 0
        out = capsys.readouterr().out
        assert "2 exact" in out and "line 3" in out and "2^4 buckets" in out
        assert "hunter2" not in out and "bob" not in out

    def test_json(
        self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json prints the report as JSON, and it adds up."""
        combo = write_combo(tmp_path / "combo.txt", COMBO)
        argv = ["pairs", "build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", TINY]
        assert run([*argv, "--json", "--workers", "1"], monkeypatch) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["pairs_read"] == report["entries_kept"] + report["duplicates_merged"] + report["bad_lines"]

    @pytest.mark.parametrize(
        ("extra", "message"),
        [
            (["--key", "KEY"], "the following arguments are required: --pairs"),
            (["--pairs", "OUT"], "the following arguments are required: --key"),
            (
                ["--pairs", "OUT", "--key", "KEY", "--store", "S", "--input-format", "combo-sha1", "--hash", "ntlm"],
                "can only be sha1",
            ),
            (["--pairs", "OUT", "--key", "KEY", "--input-format", "hibp"], "choose from 'combo', 'combo-sha1'"),
            (["--pairs", "OUT", "--key", "KEY", "--variants", "10"], "variants"),
            (["--pairs", "OUT", "--key", "KEY", "--stretch", "quick"], "unknown stretch"),
            (
                ["--pairs", "OUT", "--key", "KEY", "--update", "--min-count", "2"],
                "--min-count and --update do not apply to a pair build alone",
            ),
            (["--pairs", "OUT", "--key", "KEY", "--hash", "ntlm"], "--hash does not apply to a pair build alone"),
            (["--pairs", "OUT", "--key", "KEY", "--workers", "2", "--scheduler", "tcp://x:1"], "not allowed with"),
            (["--pairs", "OUT", "--key", "KEY", "--cluster-threads", "2"], "--cluster-threads is for a Dask cluster"),
            (["--pairs", "http://x/p", "--key", "KEY"], "expected a file, got a URL"),
            (["--pairs", "OUT", "--key", "KEY", "--max-memory", "lots"], "max_memory must be a size such as 64MiB"),
            (["--pairs", "OUT", "--key", "KEY", "--max-memory", "1KiB"], "max_memory must be at least 65,536 bytes"),
            (["--pairs", "OUT", "--key", "KEY", "--max-memory", "1000T"], "at most this machine's memory"),
            (["--pairs", "OUT", "--key", "KEY", "--max-memory", "9" * 400], "at most this machine's memory"),
        ],
    )
    def test_refused(
        self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        extra: list[str], message: str,
    ) -> None:  # fmt: skip
        """Bad option combinations exit 2 with one line saying what to do."""
        combo = write_combo(tmp_path / "combo.txt", COMBO)
        argv = [str(tmp_path / "OUT") if a == "OUT" else str(key) if a == "KEY" else a for a in extra]
        assert run(["pairs", "build", str(combo), *argv], monkeypatch) == 2
        assert message in capsys.readouterr().err

    def test_max_memory(
        self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--max-memory SIZE bounds what the pair build holds: with little, it sorts on disk, and the store answers."""
        combo = write_combo(tmp_path / "combo.txt", [f"user{i}@example.com:password{i}" for i in range(300)])
        argv = ["pairs", "build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", TINY]
        assert run([*argv, "--json", "--variants", "9", "--max-memory", "64KiB", "--workers", "1"], monkeypatch) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["entries_kept"] == 3000 and report["spill_bytes"] > 3000 * 40
        with credcheck.open_pairs(tmp_path / "p", key=key) as checker:
            assert checker.check("user299@example.com", "password29").status is credcheck.PairStatus.SIMILAR

    def test_readable_key_refused(
        self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A key file others can read is refused, and nothing is built."""
        os.chmod(key, 0o644)
        combo = write_combo(tmp_path / "combo.txt", COMBO)
        argv = ["pairs", "build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key)]
        assert run(argv, monkeypatch) == 2
        assert "chmod 600" in capsys.readouterr().err and not (tmp_path / "p").exists()

    def test_scheduler(self, tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """--scheduler runs the stretch on a running Dask cluster (a LocalCluster on 127.0.0.1 here)."""
        distributed = pytest.importorskip("distributed")
        combo = write_combo(tmp_path / "combo.txt", COMBO)
        with distributed.LocalCluster(
            n_workers=1, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster:
            argv = ["pairs", "build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", TINY]
            assert run([*argv, "--scheduler", cluster.scheduler_address, "-q"], monkeypatch) == 0
        with credcheck.open_pairs(tmp_path / "p", key=key) as checker:
            assert checker.check("bob", "hunter2").compromised


class TestCheck:
    def test_answers_and_exit_1(
        self, store: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """One line per pair; exit 1 when one is compromised (exact or similar)."""
        stdin = b"bob:hunter2\r\nALICE@example.com:summer2019\nbob:other\ncarol:x\n"
        assert run(_checking(store, key), monkeypatch, stdin) == 1
        lines = capsys.readouterr().out.splitlines()
        assert [line.split(" (")[0] for line in lines] == ["compromised", "compromised", "not found", "not found"]
        assert "similar" in lines[1] or "close" in lines[1]
        assert "username is in the leak" in lines[2]

    def test_json_and_exit_0(
        self, store: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json gives status and compromised; exit 0 when none is compromised."""
        assert run(_checking(store, key, "--json"), monkeypatch, b"bob:x\ncarol:y") == 0
        answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert answers == [{"compromised": False, "status": "username"}, {"compromised": False, "status": "not_found"}]

    def test_hashes(self, store: Path, key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """--hashes reads username:SHA1HEX lines."""
        stdin = b"bob:" + hashlib.sha1(b"hunter2").hexdigest().upper().encode() + b"\n"
        assert run(_checking(store, key, "--hashes"), monkeypatch, stdin) == 1

    def test_bad_line_exit_2_unquoted(
        self, store: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A line that is not username:password exits 2 naming its number, never its content."""
        assert run(_checking(store, key), monkeypatch, b"bob:x\nsecretline\n") == 2
        err = capsys.readouterr().err
        assert "line 2" in err and "secret" not in err

    def test_every_line_answered_in_its_place(self, store: Path, key: Path) -> None:
        """Bad lines (no separator, not UTF-8, a bad digest, too long) get an error line in their place and the
        check goes on to the last line, as for passwords and hashes; exit 2 at the end."""
        stdin = b"bob:hunter2\nsecretline\n\xff:x\r\nbob:" + b"x" * 20_000 + b"\rcarol:x"
        done = subprocess.run(
            [sys.executable, "-m", "credcheck", "pairs", "check", "--pairs", str(store), "--key", str(key)],
            input=stdin, capture_output=True, check=False,
        )  # fmt: skip
        assert done.returncode == 2
        assert done.stdout.decode().splitlines() == [
            "compromised (this username with this password is in the leak)",
            "error: no ':' or tab separator",
            "error: not UTF-8",
            "error: longer than 16,384 bytes",
            "not found",
        ]
        err = done.stderr.decode()
        assert [line.split(": ")[2] for line in err.splitlines()] == [f"standard input line {n}" for n in (2, 3, 4)]
        assert "secret" not in err and "bob" not in err

    def test_needs_key(self, store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        """pairs check --pairs without --key exits 2."""
        assert run(["pairs", "check", "--pairs", str(store)], monkeypatch, b"bob:x\n") == 2
        assert "--key" in capsys.readouterr().err

    def test_password_options_refused(
        self, store: Path, key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--hash and --min-count, which a pair check cannot honour, are no options of it: exit 2, not ignored."""
        argv = _checking(store, key, "--min-count", "3")
        assert run(argv, monkeypatch, b"a:b\n") == 2
        assert "unrecognized arguments: --min-count" in capsys.readouterr().err

    def test_other_key(
        self, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Another key exits 2 (never "not found")."""
        write_key(tmp_path / "other")
        assert run(_checking(store, tmp_path / "other"), monkeypatch, b"bob:x\n") == 2
        assert "key id" in capsys.readouterr().err


_SMALL_CHUNKS = (  # the real command, stretching 256 inputs a chunk (a checkpoint every few milliseconds)
    "import credcheck.pairs.build as b; b.build_pairs.__wrapped__.__kwdefaults__['chunk_size'] = 256"
)
_SLOW_RENAME = """
import sys, time
from credcheck import _atomic
real = _atomic.replace
def replace(tmp, target):
    print("renaming", flush=True)
    time.sleep(3)
    real(tmp, target)
_atomic.replace = replace
"""


def _pairs(n: int) -> list[str]:
    return [f"user{i}@example.com:password{i}" for i in range(n)]


def _left(folder: Path, *inputs: str) -> list[str]:
    """What is in ``folder`` besides the inputs (a checkpoint directory is listed with its entries' kinds)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in inputs)


class TestStop:
    """SIGTERM (or SIGINT) ends a pair build as Ctrl-C did: workers stopped, lock and temporaries gone, the
    finished chunks kept with a message that says how to resume, exit 2."""

    @pytest.mark.parametrize(
        ("stretch", "pairs"), [(TINY, 20_000), ("scrypt:1024:1:1", 4_000)], ids=["tiny", "busy-workers"]
    )
    @pytest.mark.parametrize(
        "signals",
        [(signal.SIGTERM,), (signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGTERM)],
        ids=["TERM", "TERM-TERM", "INT-TERM"],
    )
    def test_while_stretching(
        self, tmp_path: Path, key: Path, stretch: str, pairs: int, signals: tuple[int, ...]
    ) -> None:
        """Stopped once chunks are checkpointed: exit 2 with one message naming the checkpoints and --resume, no
        store, lock, temporary file or worker process left; the same command with --resume then finishes."""
        combo = write_combo(tmp_path / "combo.txt", _pairs(pairs))
        argv = ["pairs", "build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", stretch]
        process = credcheck_process([*argv, "--workers", "2", "-q"], patch=_SMALL_CHUNKS)
        checkpoints = tmp_path / ".p.checkpoints"
        try:
            wait_until(lambda: checkpoints.is_dir() and len(os.listdir(checkpoints)) > 1, process, "a checkpoint")
            for signum in signals:
                process.send_signal(signum)
            _, err = process.communicate(timeout=120)
            assert survivors(process.pid) == []
        finally:
            kill_session(process.pid)
        message = err.decode()
        # the message names the signal acted on first; two sent back to back may be taken in either order
        hows = {"interrupted" if signum == signal.SIGINT else "terminated" for signum in signals}
        assert process.returncode == 2 and message.count("\n") == 1, message
        assert any(
            message.startswith(f"credcheck: {how}; nothing was replaced and temporary files were removed")
            for how in hows
        ), message
        assert f"kept in {checkpoints}: add --resume to the same command" in message
        assert _left(tmp_path, "combo.txt", "key") == [".p.checkpoints"]
        assert not any(name.endswith(".tmp") for name in os.listdir(checkpoints))

        again = credcheck_process([*argv, "--workers", "2", "--resume", "--json"], patch=_SMALL_CHUNKS)
        report, _ = again.communicate(timeout=300)
        assert again.returncode == 0 and json.loads(report)["resumed"] > 0
        assert _left(tmp_path, "combo.txt", "key") == ["p"]
        with credcheck.open_pairs(tmp_path / "p", key=key) as checker:
            assert checker.check("user7@example.com", "password7").status is credcheck.PairStatus.EXACT

    def test_while_reading(self, tmp_path: Path, key: Path) -> None:
        """Stopped while it reads (standard input that has not ended): exit 2, nothing left behind."""
        argv = ["pairs", "build", "-", "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", TINY, "-q"]
        process = credcheck_process(argv, stdin=subprocess.PIPE)
        assert process.stdin is not None
        try:
            process.stdin.write("".join(f"{line}\n" for line in _pairs(100)).encode())
            process.stdin.flush()
            wait_until((tmp_path / ".p.lock").exists, process, "taking its lock")
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=60)
            assert survivors(process.pid) == []
        finally:
            kill_session(process.pid)
        assert process.returncode == 2
        assert err.decode() == "credcheck: terminated; nothing was replaced and temporary files were removed\n"
        assert _left(tmp_path, "key") == []

    def test_during_the_final_rename(self, tmp_path: Path, key: Path) -> None:
        """A stop during the final rename is held back until it is done: the store is in place, its checkpoints
        are gone, and the message says the store was written."""
        combo = write_combo(tmp_path / "combo.txt", _pairs(50))
        argv = ["pairs", "build", str(combo), "--pairs", str(tmp_path / "p"), "--key", str(key), "--stretch", TINY]
        argv.append("-q")
        process = credcheck_process([*argv, "--workers", "1"], patch=_SLOW_RENAME)
        assert process.stdout is not None
        try:
            assert process.stdout.readline() == b"renaming\n"
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=60)
            assert survivors(process.pid) == []
        finally:
            kill_session(process.pid)
        assert process.returncode == 2
        assert err.decode() == f"credcheck: terminated; {tmp_path / 'p'} was written in full\n"
        assert _left(tmp_path, "combo.txt", "key") == ["p"]
        with credcheck.open_pairs(tmp_path / "p", key=key) as checker:
            assert checker.check("user7@example.com", "password7").compromised


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
