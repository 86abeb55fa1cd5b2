"""Progress bars for the command line: one tqdm bar per phase of a build, the last one closed when the next starts."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["PhaseBars", "Progress", "phase_bars", "shown"]

#: progress(phase, done, total or None, lines): the callback builds take.
Progress = Callable[[str, int, int | None, int], None]


class PhaseBars:
    """A progress callback drawing a tqdm bar per phase (its unit from ``unit_of``); :meth:`close` clears the
    last one."""

    def __init__(self, tqdm: Any, unit_of: Callable[[str, int, int | None, int], str], show_lines: bool) -> None:
        self._tqdm, self._unit_of, self._show_lines = tqdm, unit_of, show_lines
        self._bars: dict[str, Any] = {}

    def __call__(self, phase: str, done: int, total: int | None, lines: int) -> None:
        bar = self._bars.get(phase)
        if bar is None:
            self.close()
            unit = self._unit_of(phase, done, total, lines)
            bar = self._bars[phase] = self._tqdm(total=total, desc=phase, unit=unit, unit_scale=True, leave=False)
        bar.update(done - bar.n)
        if self._show_lines:
            bar.set_postfix_str(f"{lines:,} lines", refresh=False)

    def close(self) -> None:
        """Close (and so clear) the bars drawn so far."""
        for bar in self._bars.values():
            bar.close()


def phase_bars(unit_of: Callable[[str, int, int | None, int], str], *, show_lines: bool = False) -> PhaseBars | None:
    """A callback drawing a tqdm bar per phase (unit from ``unit_of``), or None if tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return PhaseBars(tqdm, unit_of, show_lines)


@contextlib.contextmanager
def shown(progress: Progress | None) -> Iterator[Progress | None]:
    """Yield ``progress`` for a command's work and clear its bars when the work ends, however it ends (an error
    or a stop then starts on a line of its own, not at the end of a half-drawn bar)."""
    try:
        yield progress
    finally:
        if isinstance(progress, PhaseBars):
            progress.close()
