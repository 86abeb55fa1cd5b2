"""Every command's progress off a terminal (credcheck.cli._progress, credcheck._progress): build, pairs build,
export, mirror and serve's bodies side file write log lines -- done, total, rate, time left -- and nothing
secret; timed by a fake clock."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import credcheck
from credcheck import _progress
from credcheck.cli import main
from credcheck.pairs.keys import write_key
from credcheck.server import make_app
from credcheck.server._bodyfile import ensure_bodies
from credcheck.store import RangeStore

from .helpers import TINY, write_combo, wsgi_in_thread

PASSWORDS = [f"secret-{i}-hunter2" for i in range(3000)]
#: Five hex digits in a row: a range prefix (or a piece of a hash). No progress line holds one.
_HEX_RUN = re.compile(r"[0-9A-Fa-f]{5}")


@pytest.fixture(autouse=True)
def slow_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reading of a reporter's clock is a minute after the last, so every call may be due."""
    ticks = iter(range(0, 10**9, 60))
    monkeypatch.setattr(_progress, "monotonic", lambda: float(next(ticks)))


def progress_lines(err: str, task: str) -> list[str]:
    lines = [line for line in err.splitlines() if line.startswith(f"credcheck: {task} ")]
    for line in lines:
        assert _HEX_RUN.search(line) is None, line
        assert "hunter2" not in line and "secret" not in line
        assert "/s" in line
    return lines


@pytest.fixture
def sources(tmp_path: Path) -> list[str]:
    """Three plaintext password lists (each a chunk of its own: more than one progress call a phase)."""
    paths = []
    for part in range(3):
        path = tmp_path / f"passwords-{part}.txt"
        path.write_text("".join(f"{p}\n" for p in PASSWORDS[part::3]))
        paths.append(str(path))
    return paths


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """A SHA-1 store with a few hundred filled ranges."""
    source = tmp_path / "leak.txt"
    source.write_text("".join(f"{hashlib.sha1(f'x{i}'.encode()).hexdigest()}:{i + 1}\n" for i in range(400)))
    credcheck.build([source], store=tmp_path / "leak.store")
    yield tmp_path / "leak.store"


def test_build(sources: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A build off a terminal says how far it read, in bytes of bytes, with the lines read."""
    assert main(["build", *sources, "--input-format", "password", "--store", str(tmp_path / "s")]) == 0
    lines = progress_lines(capsys.readouterr().err, "build")
    assert lines and all(re.search(r" of [\d.]+ kB \(\d+%\), .*B/s, about .* left; [\d,]+ lines$", x) for x in lines)


def test_quiet_says_nothing(sources: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-q: no progress at all."""
    assert main(["build", *sources, "--input-format", "password", "--store", str(tmp_path / "s"), "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_pairs_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A pair build off a terminal says how far it read (and stretched), never a username or password."""
    pytest.importorskip("pysodium")
    write_key(tmp_path / "key")
    combos = [
        str(write_combo(tmp_path / f"combo-{part}.txt", [f"user{i}:{p}" for i, p in enumerate(PASSWORDS[part::3])]))
        for part in range(3)
    ]
    argv = ["pairs", "build", *combos, "--pairs", str(tmp_path / "p"), "--key", str(tmp_path / "key")]
    assert main([*argv, "--stretch", TINY, "--workers", "1"]) == 0
    lines = progress_lines(capsys.readouterr().err, "pairs build")
    assert any(line.startswith("credcheck: pairs build read: ") for line in lines)
    assert not any("user" in line for line in lines)


def test_export(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An export off a terminal counts ranges written of all (not bytes, not lines)."""
    argv = ["export", "--store", str(store), "--out", str(tmp_path / "out"), "--prefixes", "00000-02FFF"]
    assert main(argv) == 0
    lines = progress_lines(capsys.readouterr().err, "export")
    assert lines[0].startswith("credcheck: export write: 8,192 of 12,288 ranges (67%), ")


def test_mirror(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mirror off a terminal counts ranges fetched of all, with the bytes received."""
    with wsgi_in_thread(make_app([str(store)])) as (url, _):
        assert main(["mirror", url, "--store", str(tmp_path / "m.store"), "--prefixes", "00000-003FF"]) == 0
    lines = progress_lines(capsys.readouterr().err, "mirror")
    assert lines and all(re.search(r" of 1,024 ranges \(\d+%\), .*; [\d.]+ k?B received$", x) for x in lines)


def test_bodies_side_file(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """serve's bodies side file says how far its render is, as lines even on a terminal (a server's log)."""
    with RangeStore(store) as opened:
        assert ensure_bodies(opened) is not None
    lines = progress_lines(capsys.readouterr().err, "bodies")
    assert lines and all(re.search(r"^credcheck: bodies render: [\d,]+ of 1,048,576 ranges \(\d+%\)", x) for x in lines)
