"""The command line's progress: one tqdm bar per phase of a build on a terminal (the last one closed when the
next starts; an export's counts ranges), a pair build's plain line a minute elsewhere."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

__all__ = ["PhaseBars", "Progress", "build_bars", "counting_bars", "pair_build_progress", "phase_bars", "shown"]

_PLAIN_EVERY: Final = 60.0  # seconds between a pair build's progress lines when standard error is not a terminal

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


def _build_unit(phase: str, done: int, total: int | None, lines: int) -> str:
    return "digests" if phase == "merge" or (phase == "write" and total and done == lines) else "B"


def build_bars(enabled: bool) -> PhaseBars | None:
    """A password build's bar per phase when standard error is a terminal and tqdm is installed, else None."""
    if not enabled or not sys.stderr.isatty():
        return None
    return phase_bars(_build_unit, show_lines=True)


def counting_bars(unit: str, enabled: bool) -> PhaseBars | None:
    """A bar per phase counting ``unit`` (an export's ranges: "ranges", "ranges/s") when standard error is a
    terminal and tqdm is installed, else None."""
    if not enabled or not sys.stderr.isatty():
        return None
    return phase_bars(lambda phase, done, total, lines: f" {unit}")


def _pair_unit(phase: str, done: int, total: int | None, lines: int) -> str:
    return "B" if phase == "read" else " entries"


def pair_build_progress(enabled: bool) -> Progress | None:
    """A pair build's bar per phase on a terminal, else a plain line on standard error every minute while it
    stretches (a build of hours under a service manager still says how far it is)."""
    if not enabled:
        return None
    if sys.stderr.isatty():
        bars = phase_bars(_pair_unit)
        if bars is not None:
            return bars
    started = time.monotonic()
    last = [started]

    def line(phase: str, done: int, total: int | None, lines: int) -> None:
        now = time.monotonic()
        if phase != "stretch" or now - last[0] < _PLAIN_EVERY:
            return
        last[0] = now
        rate = done / (now - started) if now > started else 0.0
        eta = f", about {(total - done) / rate / 60:,.0f} min left" if total and rate else ""
        print(f"credcheck: stretched {done:,} of {total or 0:,} entries ({rate:,.0f}/s{eta})", file=sys.stderr)

    return line
