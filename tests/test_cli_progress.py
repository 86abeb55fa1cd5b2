"""The command line's progress bars (credcheck.cli._progress)."""

from __future__ import annotations

import pytest

from credcheck.cli._progress import phase_bars


def test_one_bar_per_phase(capsys: pytest.CaptureFixture[str]) -> None:
    """A bar is made once per phase, with the unit unit_of names for it; updates within a phase reuse it."""
    pytest.importorskip("tqdm")
    asked: list[str] = []

    def unit_of(phase: str, done: int, total: int | None, lines: int) -> str:
        asked.append(phase)
        return "B"

    update = phase_bars(unit_of, show_lines=True)
    assert update is not None
    update("read", 10, 100, 1)
    update("read", 50, 100, 5)
    update("merge", 3, None, 5)
    assert asked == ["read", "merge"]


def test_without_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without tqdm there is no bar (None), never an ImportError."""
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert phase_bars(lambda *a: "B") is None
