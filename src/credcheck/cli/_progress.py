"""The command line's progress: every command's through one :class:`credcheck._progress.Reporter` (a tqdm bar per
phase on a terminal, a log line now and then elsewhere), and what each command's phases count."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Final

from .._progress import Reporter, size

__all__ = ["Progress", "build_progress", "export_progress", "mirror_progress", "shown"]

#: progress(phase, done, total or None, lines): the callback builds take.
Progress = Callable[[str, int, int | None, int], None]

_RANGES: Final = "ranges"


def _build_unit(phase: str, total: int | None) -> str:
    """What a phase of a password or pair build counts: input bytes, except the merge and a write of merged rows
    (digests, no total known) and the stretch (entries)."""
    if phase == "stretch":
        return "entries"
    return "digests" if phase == "merge" or (phase == "write" and total is None) else "B"


def build_progress(enabled: bool, task: str = "build") -> Reporter | None:
    """A password, pair or combined build's progress (``task`` names it in lines and bars), or None."""
    return Reporter(task, _build_unit) if enabled else None


def export_progress(enabled: bool) -> tuple[Reporter | None, Callable[[int, int], None] | None]:
    """An export's reporter and the callback :func:`credcheck.export.export` takes (ranges written of all)."""
    if not enabled:
        return None, None
    reporter = Reporter("export", lambda phase, total: _RANGES)
    return reporter, lambda done, total: reporter("write", done, total)


def mirror_progress(enabled: bool) -> tuple[Reporter | None, Callable[[int, int, int], None] | None]:
    """A mirror's reporter and the callback :func:`credcheck.mirror.mirror` takes (ranges done, of all, bytes
    received)."""
    if not enabled:
        return None, None
    reporter = Reporter("mirror", lambda phase, total: _RANGES)
    return reporter, lambda done, total, received: reporter("fetch", done, total, note=f"{size(received)} received")


@contextlib.contextmanager
def shown(reporter: Reporter | None) -> Iterator[Reporter | None]:
    """Yield ``reporter`` for a command's work and clear its bar when the work ends, however it ends (an error
    or a stop then starts on a line of its own, not at the end of a half-drawn bar)."""
    try:
        yield reporter
    finally:
        if reporter is not None:
            reporter.close()
