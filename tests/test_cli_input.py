"""The bulk-input rule of `credcheck check` (credcheck.cli._input): every line gets an answer or an error line in
its place, in order, as it arrives."""

from __future__ import annotations

import contextlib
import io
import json
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from credcheck import sha1_hex
from credcheck.cli._input import lines_of, read_blocks

from .helpers import check_command, failing_range, run_main, wsgi_in_thread


@pytest.mark.parametrize("stdin", [b"\xef\xbb\xbfpassword\r\nnope-not-leaked\r\n", b"\xef\xbb\xbfpassword"])
def test_check_drops_a_bom_before_the_first_password(
    leaked_filter: Path, stdin: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A UTF-8 BOM (a password list saved on Windows) is not hashed into the first password."""
    assert run_main(["check", "--filter", str(leaked_filter), "--json"], stdin, monkeypatch) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[0])["compromised"] is True


class TestCheckStreaming:
    def test_each_line_answered_as_it_arrives(self, leaked_store: Path) -> None:
        """Through a real pipe fed one line at a time, each answer comes before the next line is written."""
        process = subprocess.Popen(
            [sys.executable, "-m", "credcheck", "check", "--store", str(leaked_store)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        answers: queue.Queue[bytes] = queue.Queue()
        output = process.stdout

        def pump() -> None:
            for line in output:
                answers.put(line)

        threading.Thread(target=pump, daemon=True).start()
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
        self, leaked_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Many lines at once (more than one batch, a final line without a newline) are answered in order."""
        lines = ["password" if i % 3 == 0 else f"x{i}" for i in range(10_000)]
        assert run_main(["check", "--store", str(leaked_store)], "\n".join(lines).encode(), monkeypatch) == 1
        out = capsys.readouterr().out.splitlines()
        assert out == ["compromised (seen 1 time)" if line == "password" else "not found" for line in lines]


class TestEveryLineAnswered:
    @pytest.mark.parametrize("hashes", [False, True], ids=["passwords", "hashes"])
    def test_bad_lines_and_a_failing_range_in_their_places(self, leaked_store: Path, hashes: bool) -> None:
        """Good lines, an undecodable line, an empty line and a line whose range the API cannot give: one output
        line per input line, in order (the line before the failing one keeps its answer), exit 2 at the end."""
        from credcheck.server import make_app

        broken = sha1_hex("qwerty")[:5]
        passwords = [b"password", b"\xff\xfe", b"qwerty", b"", b"123456", b"not leaked 42"]
        lines = [sha1_hex(p).encode() if hashes and p and p != b"\xff\xfe" else p for p in passwords]
        with (
            contextlib.closing(make_app([leaked_store])) as app,
            wsgi_in_thread(failing_range(app, broken)) as (url, _),
        ):
            argv = ["--api", url, *(["--hashes"] if hashes else [])]
            status, out, err = check_command(argv, b"\n".join(lines) + b"\n")
        bad = "not a sha1 hex digest" if hashes else "not UTF-8"
        empty = "empty line"
        assert status == 2
        assert out[:2] == ["compromised (seen 1 time)", f"error: {bad}"]
        assert out[2].startswith(f"error: range {broken}: ") and "after" not in out[2]  # not retried: a bad body
        assert out[3:] == [f"error: {empty}", "compromised (seen 2 times)", "not found"]
        assert [line.split(":")[1] for line in err.splitlines()] == [" error"] * 3
        assert [re.search(r"line (\d+)", line).group(1) for line in err.splitlines()] == ["2", "3", "4"]  # type: ignore[union-attr]

    def test_a_service_stopped_midway(self, leaked_store: Path) -> None:
        """Once the range API has gone, each line read gets an error line (the first one the service's, the
        others "not checked"), never an answer, and the check goes on to the end: exit 2."""
        from credcheck.server import make_app

        with contextlib.closing(make_app([leaked_store])) as app, wsgi_in_thread(app) as (url, server):
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

    def test_cr_line_ends_and_a_byte_order_mark(self, leaked_store: Path) -> None:
        """Lines ended by a lone CR (and a BOM before the first) are lines: each one is answered."""
        status, out, _ = check_command(["--store", str(leaked_store)], b"\xef\xbb\xbfpassword\rnot leaked 42\rqwerty\r")
        assert (status, out) == (1, ["compromised (seen 1 time)", "not found", "compromised (seen 3 times)"])

    def test_a_huge_single_line(self, leaked_store: Path) -> None:
        """Standard input that is one 20 MB line gets one error line (it is no password), not an answer."""
        status, out, err = check_command(["--store", str(leaked_store)], b"a" * (20 << 20))
        assert (status, out) == (2, ["error: longer than 1,024 bytes"])
        assert err == "credcheck: error: standard input line 1: longer than 1,024 bytes\n"

    def test_a_closed_standard_output(self, leaked_store: Path, tmp_path: Path) -> None:
        """A reader that goes away (`| head -1`): the check stops quietly with exit 2, no traceback."""
        lines = tmp_path / "lines.txt"
        lines.write_bytes(b"password\n" * 200_000)
        with lines.open("rb") as stdin:
            process = subprocess.Popen(
                [sys.executable, "-m", "credcheck", "check", "--store", str(leaked_store)],
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
        """LF, CRLF and lone CR end lines, a first BOM is dropped, a line over the limit is longer than the limit
        (its bytes not kept when it spans reads), wherever reads cut the input."""
        data = b"\xef\xbb\xbfab\r\ncd\ref\n\r\ntoo long\nabcd\r\rlast"
        stream = self._trickle(data) if trickle else io.BytesIO(data)
        lines = [line for block in read_blocks(stream, 4) for line in lines_of(block)]
        assert [line if len(line) <= 4 else None for line in lines] == [
            b"ab",
            b"cd",
            b"ef",
            b"",
            None,
            b"abcd",
            b"",
            b"last",
        ]
        assert (b"too long" in lines) != trickle  # dropped as it arrived when reads cut it

    def test_a_bom_alone_and_an_empty_input(self) -> None:
        """A BOM alone is an empty input; a BOM not at the start is part of its line."""
        assert list(read_blocks(io.BytesIO(b"\xef\xbb\xbf"), 10)) == []
        lines = [line for block in read_blocks(io.BytesIO(b"a\n\xef\xbb\xbfb"), 10) for line in lines_of(block)]
        assert lines == [b"a", b"\xef\xbb\xbfb"]


@pytest.mark.parametrize("argv", [[], ["--hashes"]], ids=["passwords", "hashes"])
def test_utf16_input_is_refused_as_a_whole(
    leaked_store: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """UTF-16 text on standard input (what Windows PowerShell writes by default) is refused before any answer, as
    build refuses it, with the fix: read as UTF-8, its passwords would all be "not found"."""
    stdin = "password\r\nqwerty\r\n".encode("utf-16")
    assert run_main(["check", "--store", str(leaked_store), *argv], stdin, monkeypatch) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "credcheck: error: standard input: the text is UTF-16, not UTF-8 (read as UTF-8 every password would hash "
        "wrongly); convert it first, e.g. iconv -f UTF-16 -t UTF-8\n"
    )
