"""The artefact lifecycle every file kind goes through: temporaries that never outlive their writer, seals keyed
from a secret, files someone else could cut short under a map, and the identity that tells a file apart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import credcheck
from credcheck import _artifact, _atomic
from credcheck.errors import StorageError


def write_dump(path: Path, count: int = 5) -> Path:
    path.write_text("".join(f"{credcheck.sha1_hex(f'pw{i}')}:{i + 1}\n" for i in range(count)))
    return path


class TestTemporaries:
    def test_a_killed_writers_temporary_is_removed_by_the_next_writer(self, tmp_path: Path) -> None:
        """A temporary file left beside a target by a writer killed outright (SIGKILL: no cleanup ran) is removed
        by the next writer of that target, once it holds the target's lock."""
        target = tmp_path / "s.store"
        left = tmp_path / ".s.store.k1ll3d_x.tmp"
        left.write_bytes(b"x" * 4096)
        other = tmp_path / ".other.store.k1ll3d_x.tmp"  # another target's: not this writer's to remove
        other.write_bytes(b"y")
        credcheck.build([write_dump(tmp_path / "d.txt")], store=target)
        assert not left.exists() and other.exists()

    def test_a_temporary_of_a_live_writer_is_left_alone(self, tmp_path: Path) -> None:
        """While a writer holds the lock its temporary exists; nobody else can take the lock to remove it."""
        target = tmp_path / "s.store"
        with _atomic.lock_beside([target]):
            tmp = _atomic.temp_path_beside(target)
            with pytest.raises(StorageError, match="another credcheck build"):
                credcheck.build([write_dump(tmp_path / "d.txt")], store=target)
            assert os.path.exists(tmp)
            _atomic.remove_quietly(tmp)

    @pytest.mark.parametrize("how", ["exception", "sigterm-as-exception", "sys.exit"])
    def test_no_temporary_outlives_its_process(self, tmp_path: Path, how: str) -> None:
        """A process that ends while writing (an error, SIGTERM turned into an exception, sys.exit) leaves no
        temporary file behind, wherever it was in the write."""
        script = textwrap.dedent(
            f"""
            import os, signal, sys
            from credcheck import _atomic
            tmp = _atomic.temp_path_beside({str(tmp_path / "target")!r})
            open(tmp, "wb").write(b"half of an artefact")
            if {how!r} == "exception":
                raise RuntimeError("a writer that failed")
            if {how!r} == "sys.exit":
                sys.exit(3)
            def stop(signum, frame):
                raise KeyboardInterrupt
            signal.signal(signal.SIGTERM, stop)
            os.kill(os.getpid(), signal.SIGTERM)
            """
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
        assert done.returncode != 0
        assert os.listdir(tmp_path) == []

    @pytest.mark.parametrize("how", ["sys.exit", "multiprocessing-fork", "multiprocessing-spawn"])
    def test_no_temporary_or_lock_outlives_a_writer_thread(self, tmp_path: Path, how: str) -> None:
        """A process that ends while a background thread writes under a lock (a server's side-file render: a
        granian worker is a multiprocessing child, which ends with os._exit and runs no atexit hook) leaves
        neither the temporary file nor the lock file behind."""
        script = textwrap.dedent(
            f"""
            import multiprocessing, os, sys, threading, time
            from credcheck import _atomic

            def write_forever(target, started):
                with _atomic.lock_beside([target]):
                    open(_atomic.temp_path_beside(target), "wb").write(b"half of a side file")
                    started.set()
                    time.sleep(600)

            def worker(target):
                started = threading.Event()
                threading.Thread(target=write_forever, args=(target, started), daemon=True).start()
                started.wait(60)

            if __name__ == "__main__":
                target = {str(tmp_path / "s.store.bodies")!r}
                how = {how!r}
                if how == "sys.exit":
                    worker(target)
                    sys.exit(0)
                process = multiprocessing.get_context(how.split("-")[1]).Process(target=worker, args=(target,))
                process.start()
                process.join(60)
                sys.exit(process.exitcode)
            """
        )
        script_path = tmp_path / "writer.py"
        script_path.write_text(script)
        done = subprocess.run([sys.executable, str(script_path)], capture_output=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert sorted(os.listdir(tmp_path)) == ["writer.py"]

    def test_a_fork_never_removes_its_parents_temporary(self, tmp_path: Path) -> None:
        """A child forked while the parent writes does not remove the parent's temporary when it exits."""
        tmp = _atomic.temp_path_beside(tmp_path / "target")
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                _atomic._remove_pending()
                os._exit(0)
            os.waitpid(pid, 0)
            assert os.path.exists(tmp)
        finally:
            _atomic.remove_quietly(tmp)

    def test_a_lock_through_a_planted_symlink_is_refused(self, tmp_path: Path) -> None:
        """A symlink where a target's lock goes is not followed: nothing is created through it."""
        os.symlink(tmp_path / "elsewhere", _atomic.lock_path(tmp_path / "s.store"))
        with pytest.raises(StorageError, match="cannot lock"):
            credcheck.build([write_dump(tmp_path / "d.txt")], store=tmp_path / "s.store")
        assert not (tmp_path / "elsewhere").exists()


class TestPrivate:
    def test_created_0600_whatever_the_umask(self, tmp_path: Path) -> None:
        """A private file is its owner's alone, even under a umask of 0."""
        old = os.umask(0)
        try:
            os.close(_atomic.create_private(str(tmp_path / "f")))
        finally:
            os.umask(old)
        assert (tmp_path / "f").stat().st_mode & 0o777 == 0o600

    @pytest.mark.parametrize("planted", ["file", "symlink"])
    def test_never_an_existing_file_nor_through_a_symlink(self, tmp_path: Path, planted: str) -> None:
        """What is already there, a dangling symlink included, is refused, and nothing is created through it."""
        path = tmp_path / "f"
        if planted == "file":
            path.write_bytes(b"theirs")
        else:
            os.symlink(tmp_path / "elsewhere", path)
        with pytest.raises(FileExistsError):
            _atomic.create_private(str(path))
        assert not (tmp_path / "elsewhere").exists() and (planted == "symlink" or path.read_bytes() == b"theirs")


class TestSeal:
    @given(st.lists(st.binary(max_size=40), max_size=5), st.binary(min_size=1, max_size=40))
    def test_parts_cannot_shift(self, parts: list[bytes], extra: bytes) -> None:
        """A seal is over the parts as given: moving bytes from one part to the next gives another seal."""
        key = _artifact.seal_key(b"s" * 32, b"test")
        sealed = _artifact.seal(key, *parts, extra)
        assert _artifact.unsealed(key, sealed, *parts, extra)
        assert not _artifact.unsealed(key, sealed, *parts, extra[:-1], extra[-1:])
        assert not _artifact.unsealed(_artifact.seal_key(b"t" * 32, b"test"), sealed, *parts, extra)

    def test_purposes_get_their_own_keys(self) -> None:
        """Keys derived for two purposes from one secret differ, and neither is the secret."""
        secret = b"s" * 32
        first, second = _artifact.seal_key(secret, b"a"), _artifact.seal_key(secret, b"b")
        assert first != second and secret not in (first, second)


class TestOwnership:
    def test_world_writable_is_refused(self, tmp_path: Path) -> None:
        """A file every user may write is not one to map."""
        path = tmp_path / "f"
        path.write_bytes(b"x")
        os.chmod(path, 0o646)
        assert "every user may write it" in (_artifact.owned_safely(os.stat(path), ()) or "")
        os.chmod(path, 0o644)
        assert _artifact.owned_safely(os.stat(path), ()) is None

    def test_not_a_regular_file(self, tmp_path: Path) -> None:
        """A directory (or a device, a FIFO) is not an artefact."""
        assert "not a regular file" in (_artifact.owned_safely(os.stat(tmp_path), ()) or "")


def test_identity_tells_a_rewrite_with_its_mtime_set_back(tmp_path: Path) -> None:
    """The same bytes' length, the mtime put back: the change time still tells the file was written."""
    path = tmp_path / "f"
    path.write_bytes(b"one")
    before = _artifact.FileIdentity.at(path)
    time.sleep(0.01)
    with open(path, "r+b") as fh:
        fh.write(b"two")
    os.utime(path, ns=(before.mtime_ns, before.mtime_ns))
    after = _artifact.FileIdentity.at(path)
    assert after.same_file(before) and after.mtime_ns == before.mtime_ns and after != before


def test_sigkill_of_a_render_leaves_a_temporary_the_next_render_removes(tmp_path: Path) -> None:
    """The background render of a bodies side file killed outright leaves its temporary; the next render of that
    side file (a restarted server) removes it before writing its own: they never pile up."""
    from credcheck.server._bodyfile import bodies_path, build_bodies
    from credcheck.store import RangeStore

    store = tmp_path / "s.store"
    credcheck.build([write_dump(tmp_path / "d.txt", 2000)], store=store)
    script = textwrap.dedent(
        f"""
        import os, signal
        from credcheck.store import RangeStore
        from credcheck.server import _bodyfile
        from credcheck.server._bodies import Body
        def slow(self):
            os.kill(os.getpid(), signal.SIGKILL)  # killed halfway through the render
        Body.gzip = slow
        _bodyfile.build_bodies(RangeStore({str(store)!r}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert len([name for name in os.listdir(tmp_path) if name.endswith(".tmp")]) == 1
    with RangeStore(store) as opened:
        assert build_bodies(opened) == bodies_path(store)
    assert sorted(os.listdir(tmp_path)) == ["d.txt", "s.store", "s.store.bodies"]


@pytest.mark.parametrize("call", ["lookup", "range_body", "rows_of", "bucket"])
def test_an_artefact_used_after_close_raises_closed_error(tmp_path: Path, call: str) -> None:
    """A store or pair store read after close() raises ClosedError (a CredcheckError), never an AttributeError or
    an IndexError of its released views."""
    from credcheck.errors import ClosedError
    from credcheck.store import RangeStore

    if call == "bucket":
        from credcheck.pairs.store import PairStore

        from .pairs_fixtures import build_store

        opened: Any = PairStore(build_store(tmp_path))
        opened.close()
        with pytest.raises(ClosedError, match="pair store is closed"):
            opened.bucket(0)
        return
    credcheck.build([write_dump(tmp_path / "d.txt")], store=tmp_path / "s.store")
    opened = RangeStore(tmp_path / "s.store")
    opened.close()
    args = {"lookup": (bytes(20),), "range_body": (1,), "rows_of": (1,)}[call]
    with pytest.raises(ClosedError, match="store is closed"):
        getattr(opened, call)(*args)


def test_whether_a_lock_is_held_never_waits_on_a_planted_fifo(tmp_path: Path) -> None:
    """A FIFO planted where a target's lock goes: asking whether it is held answers at once (no), never blocks."""
    os.mkfifo(_atomic.lock_path(tmp_path / "s.store.bodies"))
    assert _atomic.lock_held(tmp_path / "s.store.bodies") is False
    target = tmp_path / "other"
    with _atomic.lock_beside([target]):
        assert _atomic.lock_held(target) is True
    assert _atomic.lock_held(target) is False
