"""Atomic file writes: a temporary file beside the target, fsync, rename; the old file survives a crash."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from .errors import CredcheckError

__all__ = ["atomic_writer", "remove_quietly", "replace", "temp_path_beside"]


def temp_path_beside(path: str | os.PathLike[str], suffix: str = ".tmp") -> str:
    """Create an empty private temporary file in the target's directory and return its name."""
    target = os.path.abspath(os.fspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=suffix, dir=os.path.dirname(target))
    try:
        # mkstemp makes the file private; an artefact gets the mode a plain new file (or the old one) would have
        try:
            mode = os.stat(target).st_mode & 0o7777
        except OSError:
            umask = os.umask(0o22)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return tmp


def _fsync_dir(directory: str) -> None:
    with contextlib.suppress(OSError):  # not every platform lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_quietly(path: str) -> None:
    """Remove a temporary file if it is there."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def replace(tmp: str, target: str) -> None:
    """Move a finished, fsynced temporary file over ``target`` and make the rename durable."""
    try:
        os.replace(tmp, target)
    except OSError as exc:
        remove_quietly(tmp)
        raise CredcheckError(f"cannot write {target}: {exc.strerror or exc}") from exc
    _fsync_dir(os.path.dirname(os.path.abspath(target)))


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only once everything written to it is on disk."""
    target = os.path.abspath(os.fspath(path))
    try:
        tmp = temp_path_beside(target)
    except OSError as exc:
        raise CredcheckError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with open(tmp, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        remove_quietly(tmp)
        raise CredcheckError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        remove_quietly(tmp)
        raise
    replace(tmp, target)
