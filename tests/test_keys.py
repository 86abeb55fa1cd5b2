"""The pair tier's key file (credcheck.pairs.keys) and `credcheck pairs keygen`."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import threading
import traceback
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credcheck.cli import main
from credcheck.errors import ArtifactError, CredcheckError, StorageError
from credcheck.pairs import _oprf as oprf
from credcheck.pairs.keys import FILE_SIZE, HEADER, KeyPair, _parse, load_key, write_key

posix_only = pytest.mark.skipif(os.name != "posix", reason="mode bits are POSIX")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _lines(key: Path) -> list[bytes]:
    return key.read_bytes().split(b"\n")


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.key"
    write_key(path)
    return path


class TestWrite:
    def test_round_trip(self, tmp_path: Path) -> None:
        """write_key's key is what load_key reads back, and its pk and key id follow from the secret."""
        path = tmp_path / "k"
        written = write_key(path)
        loaded = load_key(path)
        assert loaded == written
        assert loaded.pk == oprf.public_key(loaded.sk) and loaded.key_id == oprf.key_id(loaded.pk)

    @posix_only
    def test_mode_0600(self, key: Path) -> None:
        """The key file is created readable and writable by its owner only."""
        assert _mode(key) == 0o600

    @posix_only
    def test_mode_0600_whatever_the_umask(self, tmp_path: Path) -> None:
        """Even under umask 0777 the file is 0600 (so its owner can still read it)."""
        old = os.umask(0o777)
        try:
            write_key(tmp_path / "k")
        finally:
            os.umask(old)
        assert _mode(tmp_path / "k") == 0o600

    def test_format(self, key: Path) -> None:
        """The file is the header line, the secret's 64 hex digits and the key id line, each ending in LF."""
        loaded = load_key(key)
        assert key.read_bytes() == b"%s\n%s\nkey-id %s\n" % (
            HEADER,
            loaded.sk.hex().encode(),
            loaded.key_id.hex().encode(),
        )
        assert key.stat().st_size == FILE_SIZE == 139  # the size docs/PROTOCOL.md states

    def test_keys_are_random(self, tmp_path: Path) -> None:
        """Two keygens give two different keys."""
        assert write_key(tmp_path / "a").sk != write_key(tmp_path / "b").sk

    def test_never_overwrites(self, key: Path) -> None:
        """write_key refuses an existing path and leaves the old key byte-identical."""
        before = key.read_bytes()
        with pytest.raises(StorageError, match="already exists"):
            write_key(key)
        assert key.read_bytes() == before

    def test_never_follows_a_dangling_symlink(self, tmp_path: Path) -> None:
        """A dangling symlink at the path is refused, not followed to create its target."""
        (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
        with pytest.raises(StorageError, match="already exists"):
            write_key(tmp_path / "link")
        assert not (tmp_path / "elsewhere").exists()

    def test_no_temporary_file_left(self, key: Path) -> None:
        """After a keygen, and after a refused one, the directory holds only the key."""
        with pytest.raises(StorageError):
            write_key(key)
        assert os.listdir(key.parent) == [key.name]

    def test_failed_write_leaves_nothing(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A write that fails (a full disk at fsync) is a StorageError and leaves neither key nor temporary file."""

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", full)
        with pytest.raises(StorageError, match="No space left"):
            write_key(tmp_path / "k")
        assert os.listdir(tmp_path) == []

    def test_missing_directory(self, tmp_path: Path) -> None:
        """A key file in a directory that does not exist is a StorageError naming the path."""
        with pytest.raises(StorageError, match="no-such-dir"):
            write_key(tmp_path / "no-such-dir" / "k")

    def test_racing_keygens_one_wins(self, tmp_path: Path) -> None:
        """Of several keygens racing for one path exactly one succeeds, and the file holds its key."""
        path, barrier = tmp_path / "k", threading.Barrier(6)
        won: list[KeyPair] = []
        lost: list[BaseException] = []

        def run() -> None:
            barrier.wait()
            try:
                won.append(write_key(path))
            except StorageError as exc:
                lost.append(exc)

        threads = [threading.Thread(target=run) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1 and len(lost) == 5
        assert load_key(path) == won[0]
        assert os.listdir(tmp_path) == ["k"]

    def test_without_hard_links(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Where the file system has no hard links, the key is still written, 0600, and loads."""

        def no_link(src: str, dst: str) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
        written = write_key(tmp_path / "k")
        assert load_key(tmp_path / "k") == written
        assert os.listdir(tmp_path) == ["k"]

    def test_without_hard_links_still_never_overwrites(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The no-hard-link fallback refuses a file that appeared after the first check (O_EXCL)."""
        path = tmp_path / "k"

        def appear_then_fail(src: str, dst: str) -> None:
            path.write_bytes(b"someone else's")
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", appear_then_fail)
        with pytest.raises(StorageError, match="already exists"):
            write_key(path)
        assert path.read_bytes() == b"someone else's"
        assert os.listdir(tmp_path) == ["k"]


class TestLoad:
    @posix_only
    @pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o660, 0o666, 0o700 | 0o070])
    def test_refuses_group_or_other_access(self, key: Path, mode: int) -> None:
        """A key file that group or others may read or write is refused, naming the path and the chmod fix."""
        key.chmod(mode)
        with pytest.raises(StorageError) as info:
            load_key(key)
        assert str(key) in str(info.value) and f"chmod 600 {key}" in str(info.value)

    @posix_only
    @pytest.mark.parametrize("mode", [0o600, 0o400])
    def test_accepts_owner_only(self, key: Path, mode: int) -> None:
        """Owner-only modes 0600 and 0400 load."""
        key.chmod(mode)
        assert load_key(key).sk

    def test_missing(self, tmp_path: Path) -> None:
        """A missing key file is a StorageError naming the path."""
        with pytest.raises(StorageError, match=r"nope\.key"):
            load_key(tmp_path / "nope.key")

    def test_directory(self, tmp_path: Path) -> None:
        """A directory in the key's place is refused."""
        sub = tmp_path / "d"
        sub.mkdir(mode=0o700)
        with pytest.raises(StorageError):
            load_key(sub)

    @posix_only
    def test_fifo_does_not_hang(self, tmp_path: Path) -> None:
        """A FIFO in the key's place is refused at once rather than blocking on open."""
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo, 0o600)
        with pytest.raises(StorageError, match="not a regular file"):
            load_key(fifo)

    def _rewrite(self, key: Path, data: bytes) -> None:
        key.write_bytes(data)
        key.chmod(0o600)

    @pytest.mark.parametrize(
        "damage",
        [
            pytest.param(lambda d: d.replace(b"\n", b"\r\n"), id="crlf"),
            pytest.param(lambda d: d[:-1], id="truncated"),
            pytest.param(lambda d: d + b"\n", id="extra-line"),
            pytest.param(lambda d: b"X" + d[1:], id="header"),
            pytest.param(lambda d: d.replace(b"key-id ", b"key_id "), id="id-tag"),
            pytest.param(lambda d: b"", id="empty"),
        ],
    )
    def test_refuses_a_wrong_format(self, key: Path, damage: object) -> None:
        """Anything but the exact format is an ArtifactError naming the path."""
        assert callable(damage)
        self._rewrite(key, damage(key.read_bytes()))
        with pytest.raises(ArtifactError, match=re.escape(str(key))):
            load_key(key)

    @pytest.mark.parametrize(
        "secret",
        [
            pytest.param(b"00" * 32, id="zero"),
            pytest.param(oprf.ORDER.to_bytes(32, "little").hex().encode(), id="order"),
            pytest.param(b"ff" * 32, id="above-order"),
            pytest.param(b"zz" * 32, id="not-hex"),
        ],
    )
    def test_refuses_a_bad_secret(self, key: Path, secret: bytes) -> None:
        """A secret that is not a canonical non-zero scalar in hex is refused."""
        lines = _lines(key)
        self._rewrite(key, b"\n".join([lines[0], secret, *lines[2:]]))
        with pytest.raises(ArtifactError, match=re.escape(str(key))):
            load_key(key)

    def test_refuses_a_damaged_secret(self, key: Path) -> None:
        """A secret with one hex digit changed no longer matches its key id, and is refused."""
        lines = _lines(key)
        digit = b"1" if lines[1][:1] != b"1" else b"2"
        self._rewrite(key, b"\n".join([lines[0], digit + lines[1][1:], *lines[2:]]))
        with pytest.raises(ArtifactError, match="does not match its key id"):
            load_key(key)

    def test_accepts_upper_case_hex(self, key: Path) -> None:
        """Hex digits may be upper-case (a hand-copied key still loads)."""
        expected = load_key(key)
        self._rewrite(
            key,
            key.read_bytes().replace(b"\n" + expected.sk.hex().encode(), b"\n" + expected.sk.hex().upper().encode()),
        )
        assert load_key(key) == expected

    @given(data=st.binary(max_size=FILE_SIZE + 4))
    def test_parser_never_crashes(self, data: bytes) -> None:
        """Arbitrary bytes parse to a KeyPair or raise ArtifactError, nothing else."""
        with contextlib.suppress(ArtifactError):
            _parse(data, "k")


class TestSecrecy:
    def test_repr_hides_the_secret(self, key: Path) -> None:
        """repr and str of a KeyPair show the key id and public key, never the secret."""
        loaded = load_key(key)
        for text in (repr(loaded), str(loaded)):
            assert loaded.sk.hex() not in text and loaded.key_id.hex() in text

    def test_error_frames_hold_no_secret(self, key: Path) -> None:
        """A refused key file's error carries no frame whose locals hold the file's bytes or secret."""
        lines = _lines(key)
        lines[2] = b"key-id " + b"0" * 16
        key.write_bytes(b"\n".join(lines))
        key.chmod(0o600)
        secret = lines[1]
        try:
            load_key(key)
        except ArtifactError as exc:
            frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)][1:]  # [0] is this test
        assert frames
        for frame in frames:
            for value in frame.f_locals.values():
                assert not (isinstance(value, bytes) and (secret in value or bytes.fromhex(secret.decode()) in value))

    def test_errors_are_credcheck_errors(self, tmp_path: Path) -> None:
        """Key file errors derive from CredcheckError."""
        with pytest.raises(CredcheckError):
            load_key(tmp_path / "missing")


class TestKeygenCommand:
    def test_writes_a_key(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`credcheck pairs keygen KEYFILE` writes a loadable key and prints its key id, not its secret."""
        path = tmp_path / "pairs.key"
        assert main(["pairs", "keygen", str(path)]) == 0
        out = capsys.readouterr().out
        loaded = load_key(path)
        assert loaded.key_id.hex() in out and loaded.sk.hex() not in out

    def test_refuses_to_overwrite(self, key: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`credcheck pairs keygen` on an existing file exits 2 with one error line and leaves the file alone."""
        before = key.read_bytes()
        assert main(["pairs", "keygen", str(key)]) == 2
        assert "already exists" in capsys.readouterr().err
        assert key.read_bytes() == before
