"""The credcheck command: build, check, demo; exit codes; one-line errors."""

from __future__ import annotations

import io
import json
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from credcheck import sha1_hex
from credcheck.cli import main

from .conftest import LEAKED


def _run(argv: list[str], stdin: bytes = b"", monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    assert monkeypatch is not None
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    return main(argv)


@pytest.fixture
def built(hibp_file: Path, tmp_path: Path) -> Path:
    target = tmp_path / "leaked.bloom"
    assert main(["build", str(hibp_file), "--filter", str(target), "-q"]) == 0
    return target


class TestBuild:
    def test_report_printed(self, hibp_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """build prints a summary with the counts."""
        assert main(["build", str(hibp_file), "--filter", str(tmp_path / "f.bloom")]) == 0
        assert f"kept {len(LEAKED)} sha1 hashes" in capsys.readouterr().out

    def test_json_report(self, password_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--json prints the report as one JSON object whose numbers add up."""
        assert main(["build", str(password_file), "--filter", str(tmp_path / "f.bloom"), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert (
            report["lines_read"]
            == report["kept"] + report["below_min_count"] + report["duplicates_merged"] + report["bad_lines"]
        )
        assert report["sources"][0]["bad_line_numbers"] == [len(LEAKED) + 2]

    def test_strict_exit_2_one_line(
        self, password_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--strict stops at the bad line with exit 2 and a single-line message, no artefact."""
        assert main(["build", str(password_file), "--filter", str(tmp_path / "f.bloom"), "--strict", "-q"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f":{len(LEAKED) + 2}: bad line" in err
        assert not (tmp_path / "f.bloom").exists()

    def test_needs_an_output(self, hibp_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """build without --filter or --store is an error (exit 2)."""
        assert main(["build", str(hibp_file)]) == 2
        assert "--filter" in capsys.readouterr().err


class TestCheck:
    def test_exit_1_when_any_compromised(
        self, built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """One line per password; exit 1 when at least one is compromised."""
        code = _run(["check", "--filter", str(built)], b"password\r\nnot-leaked-93!x\n", monkeypatch)
        assert code == 1
        assert capsys.readouterr().out.splitlines() == ["compromised", "not found"]

    def test_exit_0_when_none(self, built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Exit 0 when no password is compromised."""
        assert _run(["check", "--filter", str(built)], b"not-leaked-93!x\n", monkeypatch) == 0

    def test_json(self, built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        """--json prints one object per password and never the password."""
        _run(["check", "--filter", str(built), "--json"], b"qwerty\nnot-leaked-93!x\n", monkeypatch)
        out = capsys.readouterr().out
        assert [json.loads(line) for line in out.splitlines()] == [
            {"compromised": True, "count": None},
            {"compromised": False, "count": 0},
        ]
        assert "qwerty" not in out

    @pytest.mark.parametrize("damage", ["flip", "truncate", "random"])
    def test_corrupt_filter_exit_2_one_line(
        self, built: Path, damage: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A flipped byte, a truncated file or random bytes: exit 2 with one line, no traceback."""
        data = bytearray(built.read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0x01
        elif damage == "truncate":
            data = data[:-8]
        else:
            data = bytearray(b"\x93" * len(data))
        built.write_bytes(bytes(data))
        assert _run(["check", "--filter", str(built)], b"password\n", monkeypatch) == 2
        err = capsys.readouterr().err
        assert err.startswith("credcheck: error:") and err.count("\n") == 1 and "Traceback" not in err

    def test_wrong_hash_for_file(
        self, built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--hash that contradicts the file's scheme is an error."""
        assert _run(["check", "--filter", str(built), "--hash", "ntlm"], b"x\n", monkeypatch) == 2

    def test_min_count_above_filter_threshold(
        self, built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A filter cannot answer a higher --min-count than it was built with: exit 2 with the fix."""
        assert _run(["check", "--filter", str(built), "--min-count", "5"], b"x\n", monkeypatch) == 2
        assert "--min-count 5" in capsys.readouterr().err


@pytest.mark.parametrize("stdin", [b"\xef\xbb\xbfpassword\r\nnope-not-leaked\r\n", b"\xef\xbb\xbfpassword"])
def test_check_drops_a_bom_before_the_first_password(
    built: Path, stdin: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A UTF-8 BOM (a password list saved on Windows) is not hashed into the first password."""
    assert _run(["check", "--filter", str(built), "--json"], stdin, monkeypatch) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[0])["compromised"] is True


class TestCheckStreaming:
    def test_each_line_answered_as_it_arrives(self, hibp_file: Path, tmp_path: Path) -> None:
        """Through a real pipe fed one line at a time, each answer comes before the next line is written."""
        store = tmp_path / "s.store"
        assert main(["build", str(hibp_file), "--store", str(store), "-q"]) == 0
        process = subprocess.Popen(
            [sys.executable, "-m", "credcheck", "check", "--store", str(store)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        answers: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=lambda: [answers.put(line) for line in process.stdout], daemon=True).start()  # type: ignore[union-attr]
        try:
            for password, expected in [("password", b"compromised (seen 1 time)"), ("not-leaked-93!x", b"not found")]:
                process.stdin.write(password.encode() + b"\n")
                process.stdin.flush()
                # stdin stays open: a batching reader would wait for more input and this would time out
                assert answers.get(timeout=60).rstrip() == expected
            process.stdin.close()
            assert process.wait(timeout=60) == 1
        finally:
            process.kill()

    def test_bulk_input_answered_in_order(
        self, hibp_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Many lines at once (more than one batch, a final line without a newline) are answered in order."""
        store = tmp_path / "s.store"
        assert main(["build", str(hibp_file), "--store", str(store), "-q"]) == 0
        lines = ["password" if i % 3 == 0 else f"x{i}" for i in range(10_000)]
        assert _run(["check", "--store", str(store)], "\n".join(lines).encode(), monkeypatch) == 1
        out = capsys.readouterr().out.splitlines()
        assert out == ["compromised (seen 1 time)" if line == "password" else "not found" for line in lines]


class TestCheckMistakes:
    """Messages that point at the real mistake."""

    def test_api_without_scheme(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        """--api host:port (no scheme) says a URL is needed, not "No such file or directory"."""
        assert _run(["check", "--api", "127.0.0.1:8765"], b"x\n", monkeypatch) == 2
        err = capsys.readouterr().err
        assert "http:// or https://" in err and "No such file" not in err

    def test_api_with_range_path(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        """--api http://host/range says the URL is the API's root, before any request."""
        assert _run(["check", "--api", "http://127.0.0.1:9/range"], b"x\n", monkeypatch) == 2
        assert "without /range" in capsys.readouterr().err

    def test_store_given_as_filter(
        self, hibp_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check --filter some.store is refused, naming --store."""
        store = tmp_path / "s.store"
        assert main(["build", str(hibp_file), "--store", str(store), "-q"]) == 0
        assert _run(["check", "--filter", str(store)], b"x\n", monkeypatch) == 2
        assert "is a range store; give it with --store" in capsys.readouterr().err

    def test_filter_given_as_store(
        self, built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check --store some.bloom is refused, naming --filter."""
        assert _run(["check", "--store", str(built)], b"x\n", monkeypatch) == 2
        assert "is a Bloom filter; give it with --filter" in capsys.readouterr().err

    def test_open_of_a_host_and_port_hints_at_a_url(self) -> None:
        """credcheck.open("host:port") names the missing file and says a range API needs its URL."""
        import credcheck

        with pytest.raises(credcheck.StorageError, match="http:// or https:// URL"):
            credcheck.open("127.0.0.1:8765")


def test_module_entry_point_and_help() -> None:
    """python -m credcheck --help lists the commands."""
    out = subprocess.run(
        [sys.executable, "-m", "credcheck", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(cmd in out for cmd in ("build", "check", "demo"))


def test_demo_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    """credcheck demo builds, serves on loopback and flags the leaked users through both paths, prefixes only."""
    from credcheck.demo import USERS

    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert out.count("LEAKED, seen 1 time ") == 4 and out.count("not leaked (") == 4  # API and filter agree
    assert out.count("GET /range/") == len(USERS) and "sent 5 of 40 hex digits" in out
    for _, password in USERS:
        assert sha1_hex(password) not in out  # only prefixes are shown
        if not password.isdigit():  # a digit string could turn up in a port number or a timing
            assert password not in out  # masked


class TestWording:
    def test_version_names_the_kernels(self) -> None:
        """--version says which kernels run (C or numpy)."""
        from credcheck._native import NAME

        out = subprocess.run(
            [sys.executable, "-m", "credcheck", "--version"], capture_output=True, text=True, check=True
        ).stdout
        assert out.startswith("credcheck ") and ("(C kernels)" if NAME == "c" else "numpy kernels") in out

    def test_demo_reads_as_a_person_writes(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The demo names its kernels and never says "0 ... fewer than 1 times" or "1 false positives"."""
        assert main(["demo"]) == 0
        out = capsys.readouterr().out
        assert "kernels" in out and "fewer than 1 time" not in out and "dropped 0" not in out
        assert not re.search(r"(?<![\d,])1 (false positives|times|lines|bad lines)\b", out)

    def test_story_plurals(self) -> None:
        """The demo's build story puts each number with its noun in the right number, and skips the zeros."""
        from credcheck.build import BuildReport
        from credcheck.demo import _story

        report = BuildReport("sha1", 3, [], lines_read=1, kept=1, below_min_count=1, bad_lines=2, duplicates_merged=0)
        (line,) = _story(report)
        assert line.startswith("Read 1 line in") and "kept 1 SHA-1 hash (" in line
        assert "1 hash seen fewer than 3 times dropped" in line and "2 bad lines" in line
        assert "duplicate" not in line

    def test_dir_shows_only_public_names(self) -> None:
        """dir(credcheck) lists __all__ only; submodules still import and stay reachable."""
        import credcheck
        import credcheck.client

        assert dir(credcheck) == sorted(credcheck.__all__)
        assert credcheck.client.RangeClient.__name__ == "RangeClient"


class TestCheckHashes:
    def test_ntlm_audit_from_stdin(
        self, ntlm_hibp_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--hashes reads hex digests (an NTLM export) and reports each with its count."""
        from credcheck.hashing import ntlm_hex

        store = tmp_path / "n.store"
        assert main(["build", str(ntlm_hibp_file), "--store", str(store), "--hash", "ntlm", "-q"]) == 0
        stdin = f"{ntlm_hex('Passw0rd!').lower()}\n{ntlm_hex('not leaked 77')}\n".encode()
        assert _run(["check", "--store", str(store), "--hashes", "--json"], stdin, monkeypatch) == 1
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert lines == [
            {"compromised": True, "count": LEAKED.index("Passw0rd!") + 1},
            {"compromised": False, "count": 0},
        ]

    def test_bad_line_reported_and_the_rest_answered(
        self, built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With --hashes a bad line gets an error line in its place (its number on stderr); the others are answered."""
        stdin = f"{sha1_hex('password')}\nhunter2-secret\n{sha1_hex('not leaked 5')}\n".encode()
        assert _run(["check", "--filter", str(built), "--hashes", "--json"], stdin, monkeypatch) == 2
        captured = capsys.readouterr()
        assert [json.loads(line) for line in captured.out.splitlines()] == [
            {"compromised": True, "count": None},
            {"error": "not a sha1 hex digest"},
            {"compromised": False, "count": 0},
        ]
        assert "standard input line 2" in captured.err and "hunter2" not in captured.err + captured.out

    def test_bad_digest_names_the_line(
        self, built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A line that is not a digest of the scheme: exit 2, the line number named, its content not echoed."""
        stdin = b"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8\nhunter2-secret\n"
        assert _run(["check", "--filter", str(built), "--hashes"], stdin, monkeypatch) == 2
        err = capsys.readouterr().err
        assert "line 2" in err and "hunter2" not in err
