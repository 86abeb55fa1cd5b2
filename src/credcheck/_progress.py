"""Progress of long work, one way for every command and the server: a tqdm bar per phase when standard error is a
terminal, else a log line now and then saying what is done, of what total, how fast, and how long is left.

A build, a mirror, a pair build, an export and the bodies side file of ``credcheck serve`` all report through a
:class:`Reporter`. Under a service manager, in a log file or behind a pipe, a bar would be a stream of carriage
returns nobody reads; a line every few seconds would flood a log of a build of hours. So off a terminal a phase
says how far it is at most every :data:`EVERY` seconds and every :data:`STEP` of its total, whichever comes
rarer (without a total: every :data:`EVERY` seconds or a tenth of the time the phase has run, whichever is
longer), and says nothing at all in its first :data:`EVERY` seconds. A line holds counts, sizes, rates and
times only: never a range prefix, a bucket, a path's contents or anything derived from a password.

The lines go to the ``credcheck.progress`` logger when the application has configured logging to show them (a
handler, and INFO enabled; the record carries the figures in its ``progress`` attribute, for a structured
formatter), else straight to standard error: a line is never lost to an unconfigured logger.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from time import monotonic
from typing import Any, Final, TextIO

__all__ = ["EVERY", "STEP", "Reporter", "size", "span"]

#: The shortest time between two lines of a phase, in seconds.
EVERY: Final = 10.0
#: The least share of a phase's total between two of its lines.
STEP: Final = 0.1

logger = logging.getLogger("credcheck.progress")

#: unit_of(phase, total): what a phase counts, "B" for bytes (shown as kB, MB, GB) or a plural noun.
UnitOf = Callable[[str, int | None], str]


def size(count: float) -> str:
    """A number of bytes as people read it: 950 B, 1.2 kB, 48.3 MB, 3.4 GB (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def span(seconds: float) -> str:
    """A duration as people read it: 45 s, 12 min, 3.2 h."""
    if seconds < 90:
        return f"{seconds:,.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:,.0f} min"
    return f"{seconds / 3600:,.1f} h"


def _amount(count: float, unit: str) -> str:
    return size(count) if unit == "B" else f"{count:,.0f} {unit}"


@dataclasses.dataclass
class _Phase:
    name: str
    unit: str
    started: float
    first: int  # done when the phase started (a resumed mirror starts part-way)
    said_at: float
    said_done: int
    bar: Any = None


class Reporter:
    """A task's progress, phase after phase: call it with ``(phase, done, total or None, lines)`` (the progress
    callback of :func:`credcheck.build` and the pair build), or with ``note=`` for a figure of its own; a new
    phase ends the one before. :meth:`close` clears the last bar.

    ``bars``: None chooses by ``stream`` (a terminal and tqdm installed: bars; else lines), False always lines
    (a server, whose standard error is a log whatever it is attached to). ``clock`` (default: ``time.monotonic``)
    is for the tests.
    """

    def __init__(
        self,
        task: str,
        unit_of: UnitOf,
        *,
        bars: bool | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] | None = None,
        every: float = EVERY,
        step: float = STEP,
    ) -> None:
        self.task, self._unit_of, self._every, self._step = task, unit_of, every, step
        self._clock = clock if clock is not None else monotonic
        self._stream = stream
        self._tqdm: Any = None
        if bars is not False and self.stream.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # an extra: lines instead
                tqdm = None
            self._tqdm = tqdm
        self._phase: _Phase | None = None

    @property
    def stream(self) -> TextIO:
        """Where bars (and lines, when logging is not configured) go: standard error unless told otherwise."""
        return self._stream if self._stream is not None else sys.stderr

    @property
    def bars(self) -> bool:
        """Whether this reporter draws bars (else it writes lines)."""
        return self._tqdm is not None

    def __call__(
        self, phase: str, done: int, total: int | None = None, lines: int | None = None, *, note: str = ""
    ) -> None:
        now = self._clock()
        current = self._phase
        if current is None or current.name != phase:
            self._end_phase()
            current = self._phase = _Phase(phase, self._unit_of(phase, total), now, done, now, done)
        if lines is not None and not note:
            note = f"{lines:,} lines"
        if self._tqdm is not None:
            self._draw(current, done, total, note)
        elif self._due(current, now, done, total):
            current.said_at, current.said_done = now, done
            self._say(current, now, done, total, note)

    def _due(self, phase: _Phase, now: float, done: int, total: int | None) -> bool:
        waited = now - phase.said_at
        if total:
            return waited >= self._every and done - phase.said_done >= self._step * total
        return waited >= max(self._every, self._step * (now - phase.started))

    def _say(self, phase: _Phase, now: float, done: int, total: int | None, note: str) -> None:
        elapsed = now - phase.started
        rate = (done - phase.first) / elapsed if elapsed > 0 else 0.0
        unit = phase.unit
        eta: float | None = None
        if not total:
            text = f"{self.task} {phase.name}: {_amount(done, unit)}"
        elif unit == "B":
            text = f"{self.task} {phase.name}: {size(done)} of {size(total)} ({100 * done / total:.0f}%)"
        else:
            text = f"{self.task} {phase.name}: {done:,} of {total:,} {unit} ({100 * done / total:.0f}%)"
        text += f", {size(rate)}/s" if unit == "B" else f", {rate:,.0f} {unit}/s"
        if total and rate > 0:
            eta = max(total - done, 0) / rate
            text += f", about {span(eta)} left"
        if note:
            text += f"; {note}"
        if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
            figures = {"task": self.task, "phase": phase.name, "done": done, "total": total, "unit": unit}
            logger.info("%s", text, extra={"progress": {**figures, "rate": rate, "eta_seconds": eta}})
        else:
            print(f"credcheck: {text}", file=self.stream, flush=True)

    def _draw(self, phase: _Phase, done: int, total: int | None, note: str) -> None:
        if phase.bar is None:
            in_bytes = phase.unit == "B"
            phase.bar = self._tqdm(
                total=total,
                initial=done,
                desc=f"{self.task} {phase.name}",
                unit=phase.unit if in_bytes else f" {phase.unit}",
                unit_scale=in_bytes,  # kB, MB; a count stays a whole number of ranges
                leave=False,
                file=self.stream,
            )
        phase.bar.update(done - phase.bar.n)
        if note:
            phase.bar.set_postfix_str(note, refresh=False)

    def _end_phase(self) -> None:
        if self._phase is not None and self._phase.bar is not None:
            self._phase.bar.close()
        self._phase = None

    def close(self) -> None:
        """End the current phase (clearing its bar)."""
        self._end_phase()
