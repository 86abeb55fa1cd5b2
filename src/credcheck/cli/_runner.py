"""The one runner of every ``credcheck`` command: stop signals, exit statuses, and errors as one line.

Every subcommand runs under :func:`run`. The first SIGINT, SIGTERM or SIGHUP becomes :class:`Stopped` in the
main thread, so a command stopped by a service manager unwinds exactly as after Ctrl-C: every ``finally``
runs, children are stopped, temporary files and locks are removed, and what a later ``--resume`` needs is
kept. Signals after the first are ignored until the command has unwound, so a second Ctrl-C or a SIGTERM
right after one cannot cut the cleanup short (a commit holds them back on its own:
:func:`credcheck._atomic.uninterrupted`).

One place, :func:`run`, turns what a command raised into a message and an exit status. An error carries
its status as ``exit_code`` (as click's ``ClickException`` does); one that names none exits 2
(:func:`exit_status`, which ``info`` also uses for the files it could not describe or verify).
Exit statuses: 0 done (nothing compromised), 1 at least one compromised (``check``), 2 an error, a line that
could not be checked, or a stop.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from ..errors import CredcheckError

__all__ = [
    "EXIT_COMPROMISED",
    "EXIT_ERROR",
    "EXIT_OK",
    "Command",
    "Stopped",
    "exit_status",
    "kept_for_resume",
    "run",
]

EXIT_OK: Final = 0
EXIT_COMPROMISED: Final = 1
EXIT_ERROR: Final = 2

_STOP_SIGNALS: Final = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_HOW: Final = {getattr(signal, "SIGTERM", -1): "terminated", getattr(signal, "SIGHUP", -1): "stopped (hangup)"}


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM or SIGHUP), raised in the main thread wherever the command was."""

    exit_code: Final = EXIT_ERROR

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def how(self) -> str:
        """How the command was stopped: interrupted (SIGINT), terminated (SIGTERM) or stopped (hangup)."""
        return _HOW.get(self.signum, "interrupted")


def _no_outputs(args: argparse.Namespace) -> Sequence[str | None]:
    return ()


def _nothing_kept(args: argparse.Namespace) -> str | None:
    return None


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand as the runner sees it: the function that runs it (returning its exit status), the files
    it puts in place, and what a stopped run keeps for the next one."""

    run: Callable[[argparse.Namespace], int]
    #: the artefacts a run writes (None for an option not given); a stop's message says which were written
    outputs: Callable[[argparse.Namespace], Sequence[str | None]] = _no_outputs
    #: after a stop that wrote none of them: what was kept for a later run and how to use it, or None
    kept: Callable[[argparse.Namespace], str | None] = _nothing_kept


def kept_for_resume(what: str, where: str, *, resuming: bool) -> str:
    """What a stopped run kept for the next one, where, and how to go on from it (a Command's ``kept``)."""
    how = "run the same command again" if resuming else "add --resume to the same command"
    return f"{what} kept in {where}: {how} to go on from them"


class _StopSignals:
    """The handler of the stop signals while a command runs: the first one raises, the later ones are ignored."""

    def __init__(self) -> None:
        self.armed = True

    def __call__(self, signum: int, frame: object) -> None:
        if self.armed:
            self.armed = False
            raise Stopped(signum)


@contextlib.contextmanager
def _stop_signals() -> Iterator[_StopSignals]:
    handler = _StopSignals()
    previous = {}
    for signum in _STOP_SIGNALS:
        current = signal.getsignal(signum)
        # one ignored when credcheck started (nohup, a background job) stays ignored; None: not set from Python
        if current is not None and current is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield handler
    finally:
        handler.armed = False
        for signum, old in previous.items():
            signal.signal(signum, old)


_Identity = tuple[int, int, int, int] | None


def _identity(path: str) -> _Identity:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def run(command: Command, args: argparse.Namespace) -> int:
    """Run ``command`` with ``args`` under the stop signals; return its exit status, or that of what it raised
    (after saying what went wrong in one line on standard error)."""
    outputs = {path: _identity(path) for path in command.outputs(args) if path}
    with _stop_signals() as handler:
        try:
            return command.run(args)
        except SystemExit:  # argparse's, gunicorn's: already an exit status
            raise
        except BaseException as exc:
            handler.armed = False  # unwound already: a signal now would only cut the message short
            return _failed(exc, command, args, outputs)


def exit_status(exc: BaseException) -> int:
    """The exit status an error carries (``exit_code``), EXIT_ERROR when it names none: an error never exits 0."""
    status = getattr(exc, "exit_code", EXIT_ERROR)
    if not isinstance(status, int) or isinstance(status, bool) or status == EXIT_OK:
        return EXIT_ERROR
    return status


def _failed(exc: BaseException, command: Command, args: argparse.Namespace, outputs: dict[str, _Identity]) -> int:
    """The one place that maps an exception to a message and an exit status."""
    status = exit_status(exc)
    if isinstance(exc, BrokenPipeError):  # the reader went away (`credcheck check ... | head`): no one to tell
        with contextlib.suppress(OSError):  # and no complaint from the interpreter's last flush either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return status
    if isinstance(exc, KeyboardInterrupt):
        how = exc.how if isinstance(exc, Stopped) else "interrupted"
        _say(f"credcheck: {how}{_after_stop(command, args, outputs)}")
        return status
    if isinstance(exc, CredcheckError | ValueError | OSError):
        _say(f"credcheck: error: {exc}")
        return status
    # A bug. Say where, not what: the message of an exception nobody expected may quote an input line.
    _say("Traceback (most recent call last):\n" + "".join(traceback.format_tb(exc.__traceback__)).rstrip())
    _say(f"credcheck: internal error: {type(exc).__name__} (its message is not shown, as it may quote an input); "
         "please report it with the lines above")  # fmt: skip
    return EXIT_ERROR


def _after_stop(command: Command, args: argparse.Namespace, outputs: dict[str, _Identity]) -> str:
    """What a stopped command left: which outputs were written (none, unless the stop came during the final
    renames, which are completed), that temporary files are gone, and what was kept for a resume."""
    if not outputs:
        return ""
    written = [path for path, before in outputs.items() if _identity(path) != before]
    if written:
        left = [path for path in outputs if path not in written]
        done = f"; {_listed(written)} {'was' if len(written) == 1 else 'were'} written in full"
        return done + (f", {_listed(left)} left as {'it was' if len(left) == 1 else 'they were'}" if left else "")
    try:
        kept = command.kept(args)
    except Exception:  # what was kept is a courtesy: never an error in place of the message
        kept = None
    return "; nothing was replaced and temporary files were removed" + (f"; {kept}" if kept else "")


def _listed(paths: Sequence[str]) -> str:
    return paths[0] if len(paths) == 1 else f"{', '.join(paths[:-1])} and {paths[-1]}"


def _say(text: str) -> None:
    with contextlib.suppress(OSError):  # standard error closed too (a terminal that went away)
        print(text, file=sys.stderr, flush=True)
