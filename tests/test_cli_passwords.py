"""`credcheck build` and `credcheck check` (credcheck.cli._passwords): reports, answers, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from credcheck import sha1_hex
from credcheck.cli import main

from .conftest import LEAKED
from .helpers import run_main


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

    def test_lock_file_symlink_not_followed(
        self, hibp_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A symlink planted where a build's lock file goes is refused, and what it names is left as it was (the
        build writes its pid into its lock file)."""
        victim = tmp_path / "victim.txt"
        victim.write_text("not yours to truncate\n")
        (tmp_path / ".s.store.lock").symlink_to(victim)
        assert main(["build", str(hibp_file), "--store", str(tmp_path / "s.store"), "-q"]) == 2
        assert "cannot write" in capsys.readouterr().err
        assert victim.read_text() == "not yours to truncate\n" and not (tmp_path / "s.store").exists()

    def test_needs_an_output(self, hibp_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """build without --filter or --store is an error (exit 2)."""
        assert main(["build", str(hibp_file)]) == 2
        assert "--filter" in capsys.readouterr().err

    def test_build_report_says_only_what_happened(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The build report puts each number with its noun in the right number and leaves out what did not
        happen: never "seen fewer than 1 times", "merged 0 duplicates" or "1 bad lines"."""
        source = tmp_path / "one.txt"
        source.write_bytes(b"password\n\xff\n")
        assert main(["build", str(source), "--filter", str(tmp_path / "f.bloom")]) == 0
        out = capsys.readouterr().out
        assert out.startswith("read 2 lines from 1 source in ") and "  kept 1 sha1 hash; 1 bad line\n" in out
        assert "one.txt: 1 bad line (password): line 2\n" in out


class TestCheck:
    def test_exit_1_when_any_compromised(
        self, leaked_filter: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """One line per password; exit 1 when at least one is compromised."""
        code = run_main(["check", "--filter", str(leaked_filter)], b"password\r\nnot-leaked-93!x\n", monkeypatch)
        assert code == 1
        assert capsys.readouterr().out.splitlines() == ["compromised", "not found"]

    def test_exit_0_when_none(self, leaked_filter: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Exit 0 when no password is compromised."""
        assert run_main(["check", "--filter", str(leaked_filter)], b"not-leaked-93!x\n", monkeypatch) == 0

    def test_json(
        self, leaked_filter: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json prints one object per password and never the password."""
        run_main(["check", "--filter", str(leaked_filter), "--json"], b"qwerty\nnot-leaked-93!x\n", monkeypatch)
        out = capsys.readouterr().out
        assert [json.loads(line) for line in out.splitlines()] == [
            {"compromised": True, "count": None},
            {"compromised": False, "count": 0},
        ]
        assert "qwerty" not in out

    @pytest.mark.parametrize("damage", ["flip", "truncate", "random"])
    def test_corrupt_filter_exit_2_one_line(
        self, leaked_filter: Path, damage: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A flipped byte, a truncated file or random bytes: exit 2 with one line, no traceback."""
        data = bytearray(leaked_filter.read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0x01
        elif damage == "truncate":
            data = data[:-8]
        else:
            data = bytearray(b"\x93" * len(data))
        leaked_filter.write_bytes(bytes(data))
        assert run_main(["check", "--filter", str(leaked_filter)], b"password\n", monkeypatch) == 2
        err = capsys.readouterr().err
        assert err.startswith("credcheck: error:") and err.count("\n") == 1 and "Traceback" not in err

    def test_wrong_hash_for_file(
        self, leaked_filter: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--hash that contradicts the file's scheme is an error."""
        assert run_main(["check", "--filter", str(leaked_filter), "--hash", "ntlm"], b"x\n", monkeypatch) == 2

    def test_min_count_above_filter_threshold(
        self, leaked_filter: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A filter cannot answer a higher --min-count than it was built with: exit 2 with the fix."""
        assert run_main(["check", "--filter", str(leaked_filter), "--min-count", "5"], b"x\n", monkeypatch) == 2
        err = capsys.readouterr().err
        assert (
            "(it would also report passwords seen fewer than 5 times as compromised); rebuild it with --min-count 5"
            in (err)
        )


class TestCheckMistakes:
    """Messages that point at the real mistake."""

    def test_api_without_scheme(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        """--api host:port (no scheme) says a URL is needed, not "No such file or directory"."""
        assert run_main(["check", "--api", "127.0.0.1:8765"], b"x\n", monkeypatch) == 2
        err = capsys.readouterr().err
        assert "http:// or https://" in err and "No such file" not in err

    def test_api_with_range_path(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        """--api http://host/range says the URL is the API's root, before any request."""
        assert run_main(["check", "--api", "http://127.0.0.1:9/range"], b"x\n", monkeypatch) == 2
        assert "without /range" in capsys.readouterr().err

    def test_store_given_as_filter(
        self, leaked_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check --filter some.store is refused, naming --store."""
        assert run_main(["check", "--filter", str(leaked_store)], b"x\n", monkeypatch) == 2
        assert "is a range store; give it with --store" in capsys.readouterr().err

    def test_filter_given_as_store(
        self, leaked_filter: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check --store some.bloom is refused, naming --filter."""
        assert run_main(["check", "--store", str(leaked_filter)], b"x\n", monkeypatch) == 2
        assert "is a Bloom filter; give it with --filter" in capsys.readouterr().err

    def test_open_of_a_host_and_port_hints_at_a_url(self) -> None:
        """credcheck.open("host:port") names the missing file and says a range API needs its URL."""
        import credcheck

        with pytest.raises(credcheck.StorageError, match="http:// or https:// URL"):
            credcheck.open("127.0.0.1:8765")


class TestCheckHashes:
    def test_ntlm_audit_from_stdin(
        self, ntlm_hibp_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--hashes reads hex digests (an NTLM export) and reports each with its count."""
        from credcheck.hashing import ntlm_hex

        store = tmp_path / "n.store"
        assert main(["build", str(ntlm_hibp_file), "--store", str(store), "--hash", "ntlm", "-q"]) == 0
        stdin = f"{ntlm_hex('Passw0rd!').lower()}\n{ntlm_hex('not leaked 77')}\n".encode()
        assert run_main(["check", "--store", str(store), "--hashes", "--json"], stdin, monkeypatch) == 1
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert lines == [
            {"compromised": True, "count": LEAKED.index("Passw0rd!") + 1},
            {"compromised": False, "count": 0},
        ]

    def test_bad_line_reported_and_the_rest_answered(
        self, leaked_filter: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With --hashes a bad line gets an error line in its place (its number on stderr); the others are answered."""
        stdin = f"{sha1_hex('password')}\nhunter2-secret\n{sha1_hex('not leaked 5')}\n".encode()
        assert run_main(["check", "--filter", str(leaked_filter), "--hashes", "--json"], stdin, monkeypatch) == 2
        captured = capsys.readouterr()
        assert [json.loads(line) for line in captured.out.splitlines()] == [
            {"compromised": True, "count": None},
            {"error": "not a sha1 hex digest"},
            {"compromised": False, "count": 0},
        ]
        assert "standard input line 2" in captured.err and "hunter2" not in captured.err + captured.out

    def test_bad_digest_names_the_line(
        self, leaked_filter: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A line that is not a digest of the scheme: exit 2, the line number named, its content not echoed."""
        stdin = b"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8\nhunter2-secret\n"
        assert run_main(["check", "--filter", str(leaked_filter), "--hashes"], stdin, monkeypatch) == 2
        err = capsys.readouterr().err
        assert "line 2" in err and "hunter2" not in err


class TestUsageErrors:
    """CLI misuse raises UsageError, a CredcheckError and a ValueError, never the bare root."""

    def test_build_without_target(self, hibp_file: Path) -> None:
        """build with neither --filter nor --store raises UsageError (exit status 2 through main)."""
        from credcheck.cli import make_parser
        from credcheck.errors import CredcheckError, UsageError

        args = make_parser().parse_args(["build", str(hibp_file)])
        with pytest.raises(UsageError, match="build needs --filter FILE") as info:
            args.func.run(args)
        assert isinstance(info.value, CredcheckError) and isinstance(info.value, ValueError)
