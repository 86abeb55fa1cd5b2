"""Progress bars for the command line: one tqdm bar per phase of a build, the last one closed when the next starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Progress", "phase_bars"]

#: progress(phase, done, total or None, lines): the callback builds take.
Progress = Callable[[str, int, int | None, int], None]


def phase_bars(unit_of: Callable[[str, int, int | None, int], str], *, show_lines: bool = False) -> Progress | None:
    """A callback drawing a tqdm bar per phase (unit from ``unit_of``), or None if tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bars: dict[str, Any] = {}

    def update(phase: str, done: int, total: int | None, lines: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            for old in bars.values():
                old.close()
            unit = unit_of(phase, done, total, lines)
            bar = bars[phase] = tqdm(total=total, desc=phase, unit=unit, unit_scale=True, leave=False)
        bar.update(done - bar.n)
        if show_lines:
            bar.set_postfix_str(f"{lines:,} lines", refresh=False)

    return update
