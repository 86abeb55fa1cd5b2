"""Artefact files on disk: atomic writes (a temporary file beside the target, fsync, rename; the old file
survives a crash), the lock beside a target, and opening one for reading with a clear error.

No temporary file outlives its writer: one this process made and has not yet renamed or removed, and the lock
files it holds, are removed when the process ends (an exception, a signal turned into one, ``sys.exit``, or the
end of a multiprocessing child such as a granian worker, which skips ``atexit``), even while a background thread
is still writing; and whoever takes a target's lock first removes the temporaries that a writer of that target
killed outright (SIGKILL, a power cut) left beside it -- every writer of a target holds its lock while its
temporary exists, so any that is there then is stale.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import os
import re
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol

from .errors import ArtifactNotFoundError, StorageError

__all__ = [
    "Stage",
    "Staged",
    "StagedFile",
    "create_private",
    "fsync_dir",
    "lock_beside",
    "lock_held",
    "lock_path",
    "locked_target",
    "open_beside",
    "open_for_reading",
    "pwrite_all",
    "remove_quietly",
    "replace",
    "same_file",
    "temp_path_beside",
    "uninterrupted",
    "write_beside",
    "writing",
]


_TEMP_SUFFIX = ".tmp"
_pending: dict[str, int] = {}  # temporaries being written and lock files held: path -> the process that made it
_pending_lock = threading.Lock()
_finalized_in = 0  # the process in which _remove_pending is also a multiprocessing finalizer


def _remember(path: str) -> None:
    """Remove ``path`` when this process ends, unless :func:`remove_quietly` or :func:`replace` dealt with it."""
    global _finalized_in
    me = os.getpid()
    with _pending_lock:
        _pending[path] = me
        if _finalized_in == me:
            return
        _finalized_in = me
    # A multiprocessing child (a granian worker, a pool worker) ends with os._exit after multiprocessing's own
    # finalizers, never atexit; one registered in a parent is skipped in a forked child, so each process
    # registers its own. Outside multiprocessing, atexit alone runs it.
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.Finalize(None, _remove_pending, exitpriority=0)


def _forget(tmp: str) -> None:
    with _pending_lock:
        _pending.pop(tmp, None)


@atexit.register
def _remove_pending() -> None:
    """Remove the temporaries this process made and did not finish, and the lock files it holds (never a
    parent's, inherited by a fork); a thread still writing one writes to a file no longer in the directory."""
    me = os.getpid()
    with _pending_lock:
        mine = [path for path, pid in _pending.items() if pid == me]
    for path in mine:
        remove_quietly(path)


def _stale_temporaries(target: str) -> list[str]:
    """The temporary files of ``target`` in its directory (``.NAME.XXXXXXXX.tmp``) that belong to this user."""
    directory, name = os.path.split(target)
    pattern = re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}{re.escape(_TEMP_SUFFIX)}")
    found = []
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if pattern.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                        found.append(entry.path)
    return found


def temp_path_beside(path: str | os.PathLike[str]) -> str:
    """Create an empty private temporary file in the target's directory and return its name.

    Any failure (no permission, no space, no inode left) is a :class:`StorageError` naming the target. The file
    is removed when the process exits unless :func:`replace` or :func:`remove_quietly` took care of it first.
    """
    target = os.path.abspath(os.fspath(path))
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(target)}.", suffix=_TEMP_SUFFIX, dir=os.path.dirname(target)
        )
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    _remember(tmp)
    try:
        os.fchmod(fd, _artefact_mode(target))  # mkstemp makes the file private
    except BaseException:  # (a stop signal too: the caller never learns the name, so it cannot remove it)
        remove_quietly(tmp)
        raise
    finally:
        os.close(fd)
    return tmp


def _artefact_mode(target: str) -> int:
    """The mode an artefact written for ``target`` gets: the old file's, else what a plain new file would have."""
    try:
        return os.stat(target).st_mode & 0o7777
    except OSError:
        umask = os.umask(0o22)
        os.umask(umask)
        return 0o666 & ~umask


def open_beside(name: str, target: str | os.PathLike[str]) -> int:
    """Open (or create) the file ``name`` beside ``target`` to read and write in place, never through a symlink,
    with the mode the artefact will have; return its descriptor. Unlike :func:`temp_path_beside`'s files it is
    not removed at exit: a resumable writer's partial file, kept for the next run (under the target's lock)."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    target = os.path.abspath(os.fspath(target))
    try:
        fd = os.open(name, flags, 0o600)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.geteuid():
            # planted: a link to another file, or another user's file, would be written through
            raise StorageError(f"cannot write {target}: {name} is not a file of this user's own; remove it")
        os.fchmod(fd, _artefact_mode(target))
    except OSError as exc:
        os.close(fd)
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private(path: str, flags: int = os.O_WRONLY) -> int:
    """Create ``path``, a new file only its owner can read or write (0600 whatever the umask), and return its
    descriptor (opened with ``flags``): never an existing file, nor one through a symlink planted there (O_EXCL
    follows none). For what holds personal data or secrets: keys, checkpoints, a build's spilled runs."""
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask: 0600 exactly (a umask of 0777 would leave us unable to read)
    except BaseException:
        os.close(fd)
        remove_quietly(path)
        raise
    return fd


def fsync_dir(directory: str) -> None:
    """Make the entries of ``directory`` durable (a rename, a new file in it)."""
    with contextlib.suppress(OSError):  # not every platform lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def pwrite_all(fd: int, data: memoryview | bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (os.pwrite may write less than asked, e.g. on a nearly full disk)."""
    view = memoryview(data)
    if view.nbytes == 0:  # nothing to write (and an empty n x 18 view cannot be cast to bytes)
        return
    view = view.cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(28, "No space left on device")
        view, offset = view[written:], offset + written


def remove_quietly(path: str) -> None:
    """Remove a temporary file if it is there."""
    with contextlib.suppress(OSError):
        os.unlink(path)
    _forget(path)


def replace(tmp: str, target: str) -> None:
    """Move a finished, fsynced temporary file over ``target`` and make the rename durable."""
    try:
        os.replace(tmp, target)
    except OSError as exc:
        remove_quietly(tmp)
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    _forget(tmp)
    fsync_dir(os.path.dirname(os.path.abspath(target)))


_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back for the block; one that arrives meanwhile is acted on when it ends.

    For a commit that renames several files into place: stopped between two renames, a build would leave
    one artefact new and another old, and a temporary file behind. Once the block ends, the signal goes to
    whatever handler was there before (Ctrl-C's KeyboardInterrupt, the CLI's, or the default action), as if
    it had arrived then. Only the main thread can set handlers; elsewhere the block runs as it is (signals
    are handled in the main thread anyway).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def hold(signum: int, frame: object) -> None:
        if signum not in arrived:
            arrived.append(signum)

    previous = {}
    try:  # (a signal while the handlers are being swapped still finds them all put back)
        for signum in _STOP_SIGNALS:
            handler = signal.getsignal(signum)
            if handler is not None and handler is not signal.SIG_IGN:  # None: set outside Python, left alone
                previous[signum] = handler
                signal.signal(signum, hold)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in arrived:
            signal.raise_signal(signum)


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
    with writing(tmp, target), open(tmp, "wb") as out:
        for part in parts:
            out.write(part)
        out.flush()
        os.fsync(out.fileno())
    return tmp


@contextlib.contextmanager
def writing(tmp: str, target: str, what: str = "") -> Iterator[None]:
    """A block that writes ``tmp``, the temporary file of ``target``: whatever stops it removes ``tmp``; an
    OSError (a full disk, say) comes out as a :class:`StorageError` naming the target (as ``what``, if given)."""
    try:
        yield
    except OSError as exc:
        remove_quietly(tmp)
        raise StorageError(f"cannot write {what or target}: {exc.strerror or exc}") from exc
    except BaseException:
        remove_quietly(tmp)
        raise


def open_for_reading(name: str, kind: str) -> BinaryIO:
    """Open an artefact (``kind``: "filter", "store") to read and map; a file that is not there is an
    :class:`ArtifactNotFoundError` (also a ``FileNotFoundError``), one that cannot be read -- a directory, a FIFO
    or a device in its place included -- a :class:`StorageError`.
    """
    try:
        # O_NONBLOCK: a FIFO put where an artefact goes must not hang its reader until someone writes to it
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ArtifactNotFoundError(errno.ENOENT, f"no {kind} file at {name}") from None
    except OSError as exc:
        raise StorageError(exc.errno, f"cannot read the {kind} file {name}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise StorageError(errno.EISDIR, f"cannot read the {kind} file {name}: {os.strerror(errno.EISDIR)}")
        if not stat.S_ISREG(mode):
            raise StorageError(f"cannot read the {kind} file {name}: not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def locked_target(path: str | os.PathLike[str]) -> str | None:
    """The artefact a lock file guards, told by the lock's name (:func:`lock_path`), or None if it is not one."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    if name.startswith(".") and name.endswith(".lock") and len(name) > len("..lock"):
        return os.path.join(directory, name[1 : -len(".lock")])
    return None


def lock_path(path: str | os.PathLike[str]) -> str:
    """The lock file that guards an artefact: ``.NAME.lock`` in the artefact's directory."""
    target = os.path.abspath(os.fspath(path))
    return os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.lock")


def _acquire(target: str) -> int:
    """Open and flock the lock file of ``target``; retry if the file was removed by its last holder meanwhile."""
    name = lock_path(target)
    while True:
        try:  # never through a symlink planted where the lock goes
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise StorageError(f"cannot write {target}: cannot lock {name}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StorageError(
                f"cannot write {target}: another credcheck build (pid {holder}) is writing it; "
                f"try again when it has finished (lock file {name})"
            ) from None
        try:
            current = os.stat(name).st_ino
        except FileNotFoundError:
            current = -1
        if current == os.fstat(fd).st_ino:
            with contextlib.suppress(OSError):  # the pid is for the message of a second build only
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            # every writer of this target holds this lock while its temporary file exists: any there now was
            # left by a writer killed outright
            for stale in _stale_temporaries(target):
                if stale not in _pending:
                    remove_quietly(stale)
            _remember(name)  # removed on release, or when this process ends
            return fd
        os.close(fd)  # we locked a file its holder had just removed: take the new one


def lock_held(target: str | os.PathLike[str]) -> bool:
    """Whether another process holds the lock of ``target`` (is writing it) right now: never through a symlink,
    never waiting on something planted in the lock's place (a FIFO)."""
    try:
        fd = os.open(lock_path(target), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases a lock taken here
    return False


@contextlib.contextmanager
def lock_beside(paths: Iterable[str | os.PathLike[str]]) -> Iterator[None]:
    """Hold an exclusive lock on each artefact for the whole block, or fail at once if another process holds one.

    Two builds that update one store would each merge into the same old version and the second rename
    would drop the first one's breach; so a writer takes ``flock`` on a lock file beside each target
    (in a fixed order; the kernel releases it even when the process is killed). A second writer does not
    wait: it raises :class:`StorageError` naming the process that holds the lock, so a scheduler can
    retry and a person sees why. The holder removes the lock file when done (a later locker checks that
    the file it locked is still the one in the directory).
    """
    held: list[tuple[int, str]] = []
    try:
        # by real path, so that two names of one file (a symlink) share its lock
        for target in sorted({os.path.realpath(os.fspath(p)) for p in paths}):
            held.append((_acquire(target), lock_path(target)))
        yield
    finally:
        for fd, name in reversed(held):
            remove_quietly(name)  # still holding the lock, so no one else has it now
            os.close(fd)  # closing the descriptor releases its flock


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when two paths name one file: the same real path, or (hard links) the same inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


class Staged(Protocol):
    """An artefact finished beside its target: :meth:`commit` renames it into place, :meth:`abort` drops it."""

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class StagedFile:
    """A finished temporary file (from :func:`write_beside`) and the target it goes to."""

    def __init__(self, tmp: str, target: str | os.PathLike[str]) -> None:
        self.tmp, self.target = tmp, os.path.abspath(os.fspath(target))

    def commit(self) -> None:
        replace(self.tmp, self.target)

    def abort(self) -> None:
        remove_quietly(self.tmp)


class Stage:
    """The commit of builds that write several artefacts: all of them are renamed into place, or none.

    A build takes its targets' locks through :meth:`lock` (held until the stage ends, so no other writer comes
    between the last artefact's finishing and the renames), writes each artefact beside its target and hands it
    to :meth:`add` when it is finished and fsynced. :meth:`commit` renames them in the order they were added;
    leaving the ``with`` block without it (an error, an interrupt) drops every one, and the old artefacts stay.
    One build with a stage of its own commits it itself; builds run together (a pair build that also writes a
    filter and a store) share one, and whoever runs them commits it once all have finished.
    """

    def __init__(self) -> None:
        self._locks = contextlib.ExitStack()
        self._staged: list[Staged] = []
        self._locked: set[str] = set()

    def lock(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Take the lock of each target not locked by this stage yet (:func:`lock_beside`), until the stage ends."""
        fresh = {os.path.realpath(os.fspath(p)) for p in paths} - self._locked
        if fresh:
            self._locks.enter_context(lock_beside(fresh))
            self._locked |= fresh

    def add(self, staged: Staged) -> None:
        """An artefact finished beside its target, to be renamed with the others."""
        self._staged.append(staged)

    def commit(self) -> None:
        """Rename every artefact into place, in the order they were added (one that fails, and those after it,
        are dropped: the old ones stay)."""
        with uninterrupted():  # a stop between two renames would leave one artefact new and another old
            while self._staged:
                self._staged[0].commit()
                del self._staged[0]

    def abort(self) -> None:
        """Drop every artefact not committed; the old ones stay."""
        staged, self._staged = self._staged, []
        for item in reversed(staged):
            item.abort()

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.abort()
        finally:
            self._locks.close()
