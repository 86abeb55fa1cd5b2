"""Artefact files on disk: atomic writes (a temporary file beside the target, fsync, rename; the old file
survives a crash), and opening one for reading with a clear error."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable
from typing import BinaryIO

from .errors import ArtifactNotFoundError, StorageError

__all__ = ["open_for_reading", "pwrite_all", "remove_quietly", "replace", "temp_path_beside", "write_beside"]


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


def pwrite_all(fd: int, data: memoryview | bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (os.pwrite may write less than asked, e.g. on a nearly full disk)."""
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(28, "No space left on device")
        view, offset = view[written:], offset + written


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
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    _fsync_dir(os.path.dirname(os.path.abspath(target)))


def write_beside(path: str | os.PathLike[str], parts: Iterable[bytes | memoryview]) -> str:
    """Write ``parts`` to a new temporary file beside ``path``, fsync it, and return its name.

    Nothing is replaced yet: :func:`replace` puts it in place, so that several artefacts can all be written
    first and renamed only once every one of them is safely on disk.
    """
    target = os.path.abspath(os.fspath(path))
    try:
        tmp = temp_path_beside(target)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                out.write(part)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        remove_quietly(tmp)
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        remove_quietly(tmp)
        raise
    return tmp


def open_for_reading(name: str, kind: str) -> BinaryIO:
    """Open an artefact (``kind``: "filter", "store") to read and map; a file that is not there is an
    :class:`ArtifactNotFoundError` (also a ``FileNotFoundError``), one that cannot be read a :class:`StorageError`.
    """
    try:
        return open(name, "rb")
    except FileNotFoundError:
        raise ArtifactNotFoundError(errno.ENOENT, f"no {kind} file at {name}") from None
    except OSError as exc:
        raise StorageError(exc.errno, f"cannot read the {kind} file {name}: {exc.strerror or exc}") from None
