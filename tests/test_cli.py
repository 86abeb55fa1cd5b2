"""The credcheck command: build, check, demo; exit codes; one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import re
import signal
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from credcheck import sha1_hex
from credcheck.cli import main
from credcheck.cli._input import read_lines

from .conftest import LEAKED
from .helpers import credcheck_process, kill_session, survivors, wait_until


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
        err = capsys.readouterr().err
        assert (
            "(it would also report passwords seen fewer than 5 times as compromised); rebuild it with --min-count 5"
            in (err)
        )


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
    def test_build_report_says_only_what_happened(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The build report puts each number with its noun in the right number and leaves out what did not
        happen: never "seen fewer than 1 times", "merged 0 duplicates" or "1 bad lines"."""
        source = tmp_path / "one.txt"
        source.write_bytes(b"password\n\xff\n")
        assert main(["build", str(source), "--filter", str(tmp_path / "f.bloom")]) == 0
        out = capsys.readouterr().out
        assert out.startswith("read 2 lines from 1 source in ") and "  kept 1 sha1 hash; 1 bad line\n" in out
        assert "one.txt: 1 bad line (password): line 2\n" in out

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


def test_a_bug_exits_2_without_its_message(store: Path) -> None:
    """An exception nobody expected ends the command with status 2 (never 1, "compromised"), its traceback and
    its type, but not its message, which may quote an input line."""
    patch = (
        "import credcheck.checker as c\n"
        "def broken(self, passwords): raise KeyError(b'hunter2-secret')\n"
        "c.Checker.check_many = broken"
    )
    process = credcheck_process(["check", "--store", str(store)], patch=patch, stdin=subprocess.PIPE)
    _, err = process.communicate(b"hunter2-secret\n", timeout=60)
    message = err.decode()
    assert process.returncode == 2 and "hunter2" not in message
    assert message.startswith("Traceback (most recent call last):\n") and "in broken" in message
    assert message.endswith("credcheck: internal error: KeyError (its message is not shown, as it may quote an "
                            "input); please report it with the lines above\n")  # fmt: skip


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


class TestUsageErrors:
    """CLI misuse raises UsageError, a CredcheckError and a ValueError, never the bare root."""

    def test_build_without_target(self) -> None:
        """build with neither --filter nor --store raises UsageError (exit status 2 through main)."""
        import argparse

        from credcheck import cli
        from credcheck.errors import CredcheckError, UsageError

        args = argparse.Namespace(pairs=None, input_format="auto", filter=None, store=None)
        with pytest.raises(UsageError, match="build needs --filter FILE") as info:
            cli._cmd_build(args)
        assert isinstance(info.value, CredcheckError) and isinstance(info.value, ValueError)


# ----------------------------------------------------------------------------------------------------
# The bulk-input rule of check: every line gets an answer or an error line in its place, in order


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client that went away mid-answer
        pass


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _range_api(app: Callable[..., Any]) -> Iterator[tuple[str, WSGIServer]]:
    """Serve the WSGI ``app`` on 127.0.0.1 from a thread; yield its URL and the server (to stop it early)."""
    server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _failing_range(app: Callable[..., Any], prefix: str) -> Callable[..., Any]:
    """``app``, except that the range ``prefix`` answers a body that is not a range (no retry can help)."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ["PATH_INFO"].upper() == f"/RANGE/{prefix}":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"this is not a range line"]
        return app(environ, start_response)

    return wrapped


@pytest.fixture
def store(hibp_file: Path, tmp_path: Path) -> Path:
    target = tmp_path / "leaked.store"
    assert main(["build", str(hibp_file), "--store", str(target), "-q"]) == 0
    return target


def _check(argv: list[str], stdin: bytes) -> tuple[int, list[str], str]:
    """``credcheck check ARGV`` in a process of its own: exit status, output lines, standard error."""
    done = subprocess.run([sys.executable, "-m", "credcheck", "check", *argv], input=stdin, capture_output=True)
    return done.returncode, done.stdout.decode().splitlines(), done.stderr.decode()


class TestEveryLineAnswered:
    @pytest.mark.parametrize("hashes", [False, True], ids=["passwords", "hashes"])
    def test_bad_lines_and_a_failing_range_in_their_places(self, store: Path, hashes: bool) -> None:
        """Good lines, an undecodable line, an empty line and a line whose range the API cannot give: one output
        line per input line, in order (the line before the failing one keeps its answer), exit 2 at the end."""
        from credcheck.server import make_app

        broken = sha1_hex("qwerty")[:5]
        passwords = [b"password", b"\xff\xfe", b"qwerty", b"", b"123456", b"not leaked 42"]
        lines = [sha1_hex(p).encode() if hashes and p and p != b"\xff\xfe" else p for p in passwords]
        with contextlib.closing(make_app([store])) as app, _range_api(_failing_range(app, broken)) as (url, _):
            status, out, err = _check(["--api", url, *(["--hashes"] if hashes else [])], b"\n".join(lines) + b"\n")
        bad = "not a sha1 hex digest" if hashes else "not UTF-8"
        empty = "not a sha1 hex digest" if hashes else "empty line"
        assert status == 2
        assert out[:2] == ["compromised (seen 1 time)", f"error: {bad}"]
        assert out[2].startswith(f"error: range {broken}: ") and "after" not in out[2]  # not retried: a bad body
        assert out[3:] == [f"error: {empty}", "compromised (seen 2 times)", "not found"]
        assert [line.split(":")[1] for line in err.splitlines()] == [" error"] * 3
        assert [re.search(r"line (\d+)", line).group(1) for line in err.splitlines()] == ["2", "3", "4"]  # type: ignore[union-attr]

    def test_a_service_stopped_midway(self, store: Path) -> None:
        """Once the range API has gone, each line read gets an error line (the first one the service's, the
        others "not checked"), never an answer, and the check goes on to the end: exit 2."""
        from credcheck.server import make_app

        with contextlib.closing(make_app([store])) as app, _range_api(app) as (url, server):
            process = subprocess.Popen(
                [sys.executable, "-m", "credcheck", "check", "--api", url, "--timeout", "1"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(b"password\n")
                process.stdin.flush()
                assert process.stdout.readline() == b"compromised (seen 1 time)\n"
                server.shutdown()
                server.server_close()
                out, err = process.communicate(b"123456\nqwerty\n", timeout=60)  # one write: read together
            finally:
                process.kill()
        assert process.returncode == 2
        first, second = out.decode().splitlines()
        assert first.startswith(f"error: range {sha1_hex('123456')[:5]}: connection")
        assert second == "error: not checked: the service did not answer for line 2"
        assert "standard input line 3: not checked" in err.decode()

    def test_cr_line_ends_and_a_byte_order_mark(self, store: Path) -> None:
        """Lines ended by a lone CR (and a BOM before the first) are lines: each one is answered."""
        status, out, _ = _check(["--store", str(store)], b"\xef\xbb\xbfpassword\rnot leaked 42\rqwerty\r")
        assert (status, out) == (1, ["compromised (seen 1 time)", "not found", "compromised (seen 3 times)"])

    def test_a_huge_single_line(self, store: Path) -> None:
        """Standard input that is one 20 MB line gets one error line (it is no password), not an answer."""
        status, out, err = _check(["--store", str(store)], b"a" * (20 << 20))
        assert (status, out) == (2, ["error: longer than 1,024 bytes"])
        assert err == "credcheck: error: standard input line 1: longer than 1,024 bytes\n"

    def test_a_closed_standard_output(self, store: Path, tmp_path: Path) -> None:
        """A reader that goes away (`| head -1`): the check stops quietly with exit 2, no traceback."""
        lines = tmp_path / "lines.txt"
        lines.write_bytes(b"password\n" * 200_000)
        with lines.open("rb") as stdin:
            process = subprocess.Popen(
                [sys.executable, "-m", "credcheck", "check", "--store", str(store)],
                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            assert process.stdout is not None and process.stderr is not None
            assert process.stdout.readline() == b"compromised (seen 1 time)\n"
            process.stdout.close()
            assert process.wait(timeout=60) == 2
            assert process.stderr.read() == b""


class TestReadLines:
    @staticmethod
    def _trickle(data: bytes) -> io.BufferedReader:
        """A stream whose every read returns one byte (a BOM, a CRLF, a long line split across reads)."""

        class OneByte(io.RawIOBase):
            def __init__(self) -> None:
                self.data = data

            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                if not self.data:
                    return 0
                buffer[0], self.data = self.data[0], self.data[1:]
                return 1

        return io.BufferedReader(OneByte(), buffer_size=1)

    @pytest.mark.parametrize("trickle", [False, True], ids=["at-once", "one-byte-reads"])
    def test_line_ends_bom_and_long_lines(self, trickle: bool) -> None:
        """LF, CRLF and lone CR end lines, a first BOM is dropped, a line over the limit is None, wherever reads
        cut the input."""
        data = b"\xef\xbb\xbfab\r\ncd\ref\n\r\ntoo long\nabcd\r\rlast"
        stream = self._trickle(data) if trickle else io.BytesIO(data)
        lines = [line for batch in read_lines(stream, 4) for line in batch]
        assert lines == [b"ab", b"cd", b"ef", b"", None, b"abcd", b"", b"last"]

    def test_a_bom_alone_and_an_empty_input(self) -> None:
        """A BOM alone is an empty input; a BOM not at the start is part of its line."""
        assert list(read_lines(io.BytesIO(b"\xef\xbb\xbf"), 10)) == []
        assert list(read_lines(io.BytesIO(b"a\n\xef\xbb\xbfb"), 10)) == [[b"a"], [b"\xef\xbb\xbfb"]]


# ----------------------------------------------------------------------------------------------------
# The one runner: SIGTERM behaves as Ctrl-C in every command


_RENAME_THEN_WAIT = """
import sys, time
from credcheck import _atomic
real = _atomic.replace
def replace(tmp, target):
    real(tmp, target)
    print("renamed", flush=True)
    time.sleep(2)
_atomic.replace = replace
"""


def _stopped(process: subprocess.Popen[bytes], *signums: int) -> tuple[int, str]:
    """Send ``signums``, wait for the end; fail if any process it started is still alive. Exit status, stderr."""
    try:
        for signum in signums:
            process.send_signal(signum)
        _, err = process.communicate(timeout=120)
        assert survivors(process.pid) == []
    finally:
        kill_session(process.pid)
    return process.returncode, err.decode()


class TestStop:
    def test_between_the_renames_of_a_filter_and_a_store(self, hibp_file: Path, tmp_path: Path) -> None:
        """SIGTERM after the filter is renamed into place waits for the store's rename: both are new, no
        temporary file or lock is left, and the message says both were written."""
        f, s = tmp_path / "f.bloom", tmp_path / "s.store"
        process = credcheck_process(
            ["build", str(hibp_file), "--filter", str(f), "--store", str(s), "-q"], patch=_RENAME_THEN_WAIT
        )
        assert process.stdout is not None and process.stdout.readline() == b"renamed\n"
        status, err = _stopped(process, signal.SIGTERM)
        assert (status, err) == (2, f"credcheck: terminated; {f} and {s} were written in full\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bloom", "pwned.txt", "s.store"]
        assert _check(["--store", str(s)], b"password\n")[:2] == (1, ["compromised (seen 1 time)"])  # both whole
        assert _check(["--filter", str(f)], b"password\n")[:2] == (1, ["compromised"])

    def test_between_the_renames_of_an_export(self, hibp_file: Path, tmp_path: Path) -> None:
        """SIGTERM once the old export is moved aside waits for the new one to take its place: an export is
        there, complete, and neither the old one nor a temporary directory is left."""
        s, out = tmp_path / "s.store", tmp_path / "export"
        assert main(["build", str(hibp_file), "--store", str(s), "-q"]) == 0
        assert main(["export", "--store", str(s), "--out", str(out), "--prefixes", "5BA00-5BAFF", "-q"]) == 0
        (out / "range" / "5BA00").write_bytes(b"from the earlier export")
        patch = (
            "import os, time\nreal = os.rename\n"
            "def rename(src, dst):\n"
            "    real(src, dst)\n"
            "    if '.old-' in os.fspath(dst): print('moved aside', flush=True); time.sleep(2)\n"
            "os.rename = rename\n"
        )
        argv = ["export", "--store", str(s), "--out", str(out), "--prefixes", "5BA00-5BAFF", "-q"]
        process = credcheck_process(argv, patch=patch)
        assert process.stdout is not None and process.stdout.readline() == b"moved aside\n"
        status, err = _stopped(process, signal.SIGTERM)
        assert (status, err) == (2, f"credcheck: terminated; {out} was written in full\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "pwned.txt", "s.store"]
        assert len(os.listdir(out / "range")) == 256 and (out / "range" / "5BA00").read_bytes() == b""

    def test_a_mirror_keeps_its_journal_for_resume(self, hibp_file: Path, tmp_path: Path) -> None:
        """SIGTERM in the middle of a mirror: exit 2 with a message naming the journal and --resume, no store
        or temporary file; the same command with --resume then finishes the mirror."""
        from credcheck.server import make_app

        source, mirrored = tmp_path / "source.store", tmp_path / "m.store"
        assert main(["build", str(hibp_file), "--store", str(source), "-q"]) == 0
        answered, go_on = [0], threading.Event()

        def gate(app: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
                answered[0] += 1
                if answered[0] > 300:
                    go_on.wait(60)  # the mirror is stopped while its workers wait here
                return app(environ, start_response)

            return wrapped

        argv = ["mirror", "--store", str(mirrored), "--prefixes", "5B000-5BFFF", "--workers", "4", "-q"]
        with contextlib.closing(make_app([source])) as app, _range_api(gate(app)) as (url, _):
            process = credcheck_process([*argv, url])
            wait_until(lambda: answered[0] > 300, process, "its 300th range")
            status, err = _stopped(process, signal.SIGTERM)
            go_on.set()
            journal = f"{mirrored}.mirror-journal"
            assert status == 2
            assert err == (
                "credcheck: terminated; nothing was replaced and temporary files were removed; the ranges fetched so "
                f"far are kept in {journal}: add --resume to the same command to go on from them\n"
            )
            left = ["m.store.mirror-journal", "pwned.txt", "source.store"]  # no lock, no temporary file
            assert sorted(p.name for p in tmp_path.iterdir()) == left
            assert main([*argv, url, "--resume"]) == 0
        assert not os.path.exists(journal)
        assert _check(["--store", str(mirrored)], b"password\n") == (1, ["compromised (seen 1 time)"], "")

    def test_serve_stopped_while_it_renders_its_bodies(self, store: Path, tmp_path: Path) -> None:
        """SIGTERM while serve --bodies wait renders the bodies file: it stops with status 0, as when it serves,
        and leaves neither the temporary file nor the lock."""
        argv = ["serve", "--store", str(store), "--port", "0", "--server", "wsgiref", "--bodies", "wait"]
        process = credcheck_process(argv)
        wait_until(lambda: any(p.name.endswith(".tmp") for p in tmp_path.iterdir()), process, "rendering")
        status, err = _stopped(process, signal.SIGTERM)
        assert status == 0 and err.endswith(" (once) ...\ncredcheck: terminated before serving\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["leaked.store", "pwned.txt"]

    @pytest.mark.parametrize("kind", ["wsgiref", "granian"])
    def test_serve_stops_on_sigterm(self, store: Path, kind: str) -> None:
        """Under the runner, serve still stops on SIGTERM with status 0 and no message, its workers gone."""
        if kind != "wsgiref":
            pytest.importorskip(kind)
        argv = ["serve", "--store", str(store), "--port", "0", "--server", kind, "--bodies", "off"]
        process = credcheck_process(argv)
        assert process.stdout is not None
        wait_until(lambda: b"http://127.0.0.1:" in process.stdout.readline(), process, "serving")  # type: ignore[union-attr]
        status, err = _stopped(process, signal.SIGTERM)
        assert status == 0 and "Traceback" not in err and "error" not in err
