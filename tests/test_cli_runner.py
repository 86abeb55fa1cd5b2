"""The one runner of every command (credcheck.cli._runner): SIGTERM behaves as Ctrl-C in every command; what
an error exits with, and its one line."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from credcheck.cli import main

from .helpers import check_command, credcheck_process, kill_session, survivors, wait_until, wsgi_in_thread


def test_a_bug_exits_2_without_its_message(leaked_store: Path) -> None:
    """An exception nobody expected ends the command with status 2 (never 1, "compromised"), its traceback and
    its type, but not its message, which may quote an input line."""
    patch = (
        "import credcheck.checker as c\n"
        "def broken(self, passwords): raise KeyError(b'hunter2-secret')\n"
        "c.Checker.check_many = broken"
    )
    process = credcheck_process(["check", "--store", str(leaked_store)], patch=patch, stdin=subprocess.PIPE)
    _, err = process.communicate(b"hunter2-secret\n", timeout=60)
    message = err.decode()
    assert process.returncode == 2 and "hunter2" not in message
    assert message.startswith("Traceback (most recent call last):\n") and "in broken" in message
    assert message.endswith("credcheck: internal error: KeyError (its message is not shown, as it may quote an "
                            "input); please report it with the lines above\n")  # fmt: skip


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
        assert check_command(["--store", str(s)], b"password\n")[:2] == (1, ["compromised (seen 1 time)"])  # both whole
        assert check_command(["--filter", str(f)], b"password\n")[:2] == (1, ["compromised"])

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

        argv = ["mirror", "--store", str(mirrored), "--prefixes", "5B000-5BFFF", "--connections", "4", "-q"]
        with contextlib.closing(make_app([source])) as app, wsgi_in_thread(gate(app)) as (url, _):
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
        assert check_command(["--store", str(mirrored)], b"password\n") == (1, ["compromised (seen 1 time)"], "")

    def test_serve_stopped_while_it_renders_its_bodies(self, tmp_path: Path) -> None:
        """SIGTERM while serve --bodies wait renders the bodies file: it stops with status 0, as when it serves,
        and leaves neither the temporary file nor the lock."""
        # 60,000 hashes in as many ranges: seconds of rendering, so the stop lands in it however busy the machine
        dump = tmp_path / "pwned.txt"
        dump.write_text("".join(f"{hashlib.sha1(b'%d' % i).hexdigest().upper()}:1\n" for i in range(60_000)))
        leaked_store = tmp_path / "leaked.store"
        assert main(["build", str(dump), "--store", str(leaked_store), "-q"]) == 0
        argv = ["serve", "--store", str(leaked_store), "--port", "0", "--server", "wsgiref", "--bodies", "wait"]
        process = credcheck_process(argv)
        wait_until(lambda: any(p.name.endswith(".tmp") for p in tmp_path.iterdir()), process, "rendering")
        status, err = _stopped(process, signal.SIGTERM)
        *logged, said = err.splitlines()
        assert status == 0 and said == "credcheck: terminated before serving"
        assert json.loads(logged[-1])["event"] == "side_file" and json.loads(logged[-1])["state"] == "rendering"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["leaked.store", "pwned.txt"]

    @pytest.mark.parametrize("kind", ["wsgiref", "granian"])
    def test_serve_stops_on_sigterm(self, leaked_store: Path, kind: str) -> None:
        """Under the runner, serve still stops on SIGTERM with status 0 and no message, its workers gone."""
        if kind != "wsgiref":
            pytest.importorskip(kind)
        argv = ["serve", "--store", str(leaked_store), "--port", "0", "--server", kind, "--bodies", "off"]
        process = credcheck_process(argv)
        assert process.stdout is not None
        wait_until(lambda: b"http://127.0.0.1:" in process.stdout.readline(), process, "serving")  # type: ignore[union-attr]
        status, err = _stopped(process, signal.SIGTERM)
        assert status == 0 and "Traceback" not in err and "error" not in err
