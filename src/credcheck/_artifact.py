"""The life of an artefact file, one way for every kind: opened read-only and mapped, watched for change while
it is read, served only while verified, bound to the file it was made from, and sealed with a key where an
attacker could otherwise rewrite it.

Every file credcheck reads back goes through here: the range store, the filter, the bodies side file, the pair
store, the pair build's checkpoints, the mirror's journal and ETag index. What each kind adds is its layout
and its own checks (docs/FORMAT.md); what they share is written once:

- :class:`FileIdentity` and :class:`Mapped`: open, ``fstat``, header, ``mmap``; :meth:`Mapped.changed` on every
  read (size, modification time and header, before the map is touched, so a shortened file is an answer and
  not a SIGBUS); the change time, which no program can set back, is what :class:`Watched` looks at.
- :class:`Watched`: one served path. A file written to in place is never read again (None: the caller answers
  503) until a verified file is back; a new file at the path is verified in a background thread and then
  served; one whose contents fail while it is the very file being served ends its service too.
- :func:`source_digest`: what a derived file records of the file it was made from (the source's header, which
  holds the checksums of everything after it); the derived file is then verified against the source's
  contents, not only against itself (the bodies side file against the store's rows). The same digest, as
  16 hex digits, is the artefact's corpus version (:func:`corpus_version`, :attr:`Mapped.version`): what a
  partner site compares to know that the corpus changed since a user was last checked.
- :func:`owned_safely`: a file someone else could rewrite or truncate under our map (a file planted in a
  directory others can write) is not mapped at all.
- :func:`seal_key` and :func:`seal`: a MAC keyed from a secret the attacker lacks (the pair build's checkpoints
  are sealed with a key derived from the OPRF key), where a checksum would let an edit through.
- :func:`kind_of`: what a file is, told by the magic it starts with (the one test, for every reader that takes
  more than one kind), and :class:`Description`: what ``credcheck info`` says of a file, filled by each kind's
  own ``describe`` beside its header parser.

Temporary files and locks are ``_atomic``'s: a writer that takes a target's lock first removes the temporaries
a killed writer of that target left behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import logging
import mmap
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, Any, ClassVar, Final, Generic, Protocol, TypeVar, overload

import xxhash

from . import _atomic
from ._frames import clear_frames, entry_point
from .errors import ArtifactError, ClosedError, CredcheckError, DependencyError

__all__ = [
    "Description",
    "FileIdentity",
    "Mapped",
    "Over",
    "Watched",
    "corpus_version",
    "created_at",
    "describe_lock",
    "kind_of",
    "owned_safely",
    "read_header",
    "seal",
    "seal_key",
    "source_digest",
    "unsealed",
]

logger = logging.getLogger("credcheck.server")

#: Seconds between two looks at a served path for a replacement (the open file is checked on every read).
WATCH_INTERVAL: Final = 0.2
SEAL_SIZE: Final = 32


@dataclasses.dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file an open artefact is, and its state: device, inode, size, modification and change times (ns).

    The change time (ctime) moves on every write, truncation, chmod or link, and, unlike the modification
    time, cannot be set back by a program: equal identities mean the same file, left alone in between.
    """

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, fd: int) -> FileIdentity:
        """The identity of an open file descriptor."""
        return cls._from(os.fstat(fd))

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> FileIdentity:
        """The identity of the file a path names now (raises OSError if there is none)."""
        return cls._from(os.stat(path))

    @classmethod
    def _from(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def same_file(self, other: FileIdentity) -> bool:
        """Whether ``other`` is this very file (device and inode), whatever happened to it since."""
        return (self.device, self.inode) == (other.device, other.inode)


_Fields = TypeVar("_Fields")


class Mapped:
    """A file opened read-only and memory-mapped, that tells when it changed under its reader.

    A subclass opens with :meth:`_open` (which reads and returns the header), checks what it must, then maps
    with :meth:`_map_file`; it names the arrays it hands out over the map in ``_views`` so that :meth:`close`
    drops them before unmapping.
    """

    kind: ClassVar[str] = "artefact"  # what messages call it: "store", "pair store", "bodies file"
    _views: ClassVar[tuple[str, ...]] = ()

    path: str
    identity: FileIdentity
    owner: int  # the user the file belongs to
    header: bytes
    _file: IO[bytes] | None = None
    _map: mmap.mmap | None = None

    @overload
    def _open(
        self, path: str | os.PathLike[str], header_size: int, *, trusted_owners: tuple[int, ...] = ()
    ) -> bytes: ...
    @overload
    def _open(
        self,
        path: str | os.PathLike[str],
        header_size: int,
        parse: Callable[[bytes, str], _Fields],
        *,
        trusted_owners: tuple[int, ...] = (),
    ) -> _Fields: ...
    def _open(
        self,
        path: str | os.PathLike[str],
        header_size: int,
        parse: Callable[[bytes, str], object] | None = None,
        *,
        trusted_owners: tuple[int, ...] = (),
    ) -> object:
        """Open the file, take its identity, read its header (up to ``header_size`` bytes; fewer if shorter) and
        return what ``parse(header, path)`` makes of it (without ``parse``: the header), closing the file if
        that raises.

        ``trusted_owners``: the file must belong to one of these users (or to this process's), and not be
        writable by others (:func:`owned_safely`); empty: no such check.
        """
        name = self.path = os.fspath(path)
        fh = _atomic.open_for_reading(name, self.kind)
        try:
            st = os.fstat(fh.fileno())
            if trusted_owners:
                why = owned_safely(st, trusted_owners)
                if why is not None:
                    raise ArtifactError(f"{name}: not used: {why}")
            self.identity = FileIdentity._from(st)
            self.owner = st.st_uid
            self.header = fh.read(header_size)
        except BaseException:
            fh.close()
            raise
        self._file = fh
        if parse is None:
            return self.header
        try:
            return parse(self.header, name)
        except BaseException:
            self.close()
            raise

    def _map_file(self, size: int) -> mmap.mmap:
        """Map the whole file once its size is the ``size`` its header states (ArtifactError if not: a file cut
        short or padded; mapping it would read past its end, or trust bytes no checksum covers)."""
        assert self._file is not None
        if self.identity.size != size:
            raise ArtifactError(
                f"{self.path}: {self.kind} is {self.identity.size} bytes, its header says {size}: truncated or padded"
            )
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        return self._map

    @property
    def closed(self) -> bool:
        return self._map is None

    @property
    def version(self) -> str:
        """The corpus version of the file opened (:func:`corpus_version` of its header)."""
        return corpus_version(self.header)

    def __getattr__(self, name: str) -> object:
        # only for what normal lookup did not find: the views close() dropped
        if name in type(self)._views:
            raise ClosedError(f"{self.__dict__.get('path', 'the file')}: the {self.kind} is closed")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def changed(self) -> str | None:
        """Why the open file is no longer the one opened (written to, truncated, grown), or None if it is.

        Cheap enough for every read (one ``fstat`` and a compare of the header): its size and modification
        time, then its header. The size is checked before the map is touched, so a shortened file gives an
        answer here, never a SIGBUS. A file *replaced* at its path (a new build renamed over it) leaves this one
        intact; a change only its ctime shows (a write with the mtime put back) is :class:`Watched`'s to find.
        """
        mapped, file = self._map, self._file  # taken once: close() may run in another thread meanwhile
        if mapped is None or file is None:
            return "it is closed"
        try:
            now = os.fstat(file.fileno())
            if now.st_size != self.identity.size:
                return f"its size changed from {self.identity.size} to {now.st_size} bytes"
            if now.st_mtime_ns != self.identity.mtime_ns:
                return "it was written to"
            if self.header and mapped[: len(self.header)] != self.header:
                return "its header was overwritten"
        except (OSError, ValueError):  # closed meanwhile
            return "it can no longer be read"
        return None

    def ensure_unchanged(self) -> None:
        """Raise :class:`ArtifactError` if the open file changed on disk since it was opened (:meth:`changed`), or
        :class:`ClosedError` once it is closed."""
        if self._map is None:
            raise ClosedError(f"{self.path}: the {self.kind} is closed")
        why = self.changed()
        if why is not None:
            raise ArtifactError(
                f"{self.path}: the {self.kind} changed on disk after it was opened ({why}); open it again"
            )

    def close(self) -> None:
        """Release the mapping (views handed out before become invalid) and the file."""
        for name in self._views:
            self.__dict__.pop(name, None)
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a caller still holds a view; the map goes when it does
                self._map.close()
            self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None


def owned_safely(st: os.stat_result, owners: tuple[int, ...]) -> str | None:
    """Why a file must not be mapped (someone else could rewrite or truncate it under the map), or None.

    It must belong to this process's user or one of ``owners`` (e.g. the owner of the file it was derived
    from), and not be writable by every user. A file planted by another user in a directory they can write
    fails: truncated under our map it would kill the process with SIGBUS.
    """
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    mine = os.geteuid() if hasattr(os, "geteuid") else st.st_uid
    if st.st_uid != mine and st.st_uid not in owners:
        return f"it belongs to user {st.st_uid}, neither this process's nor the owner of what it was made from"
    if st.st_mode & stat.S_IWOTH:
        return "every user may write it"
    return None


_K = TypeVar("_K")


@entry_point  # the head of a file given by mistake (a password list) must not stay in a frame's locals
def kind_of(path: str, kinds: Mapping[bytes, _K], what: str) -> _K:
    """What the file at ``path`` is: the value in ``kinds`` of the magic it starts with.

    A file that starts with none of them is an :class:`ArtifactError` ("not a credcheck ``what``"; an empty file
    says so); one that cannot be read, the :class:`~credcheck.errors.StorageError` of
    :func:`~credcheck._atomic.open_for_reading` (a missing file, a directory, a FIFO).
    """
    with _atomic.open_for_reading(path, what) as fh:
        head = fh.read(max(map(len, kinds)))
    for magic, kind in kinds.items():
        if head.startswith(magic):
            return kind
    if not head:
        raise ArtifactError(f"{path}: the file is empty, not a credcheck {what}")
    raise ArtifactError(f"{path}: not a credcheck {what} (unknown magic)")


def read_header(path: str, size: int, kind: str) -> bytes:
    """The first ``size`` bytes of an artefact (fewer if it is shorter), for its kind's header parser."""
    with _atomic.open_for_reading(path, kind) as fh:
        return fh.read(size)


@dataclasses.dataclass(slots=True)
class Description:
    """What ``credcheck info`` says of one file: its kind and format version, what it records (``facts``: counts,
    parameters, build time, in the order shown), its size, and whether it verifies.

    Each kind's ``describe`` fills it from the kind's own header parser and opens the file with its own reader to
    verify it. ``verified`` is None when the file could not be checked (``problem`` says what it needs); False
    when it fails, ``problem`` being the error's message and ``error`` the error (its frames cleared and its
    traceback dropped: a frame must not keep what a reader held).
    """

    path: str
    kind: str | None = None  # None: not a credcheck file (problem says why)
    version: int | None = None
    size: int | None = None
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    verified: bool | None = None
    problem: str | None = None
    error: BaseException | None = None

    def check(self, verify: Callable[[], object]) -> None:
        """Run ``verify`` (the kind's reader opening the file, verified, and closing it): the file verifies
        unless it raises a CredcheckError or an OSError, whose message is then the reason (a DependencyError:
        it could not be checked here)."""
        try:
            verify()
        except DependencyError as exc:  # this machine lacks what the check needs: nothing is known against the file
            self.unchecked(str(exc))
        except (CredcheckError, OSError) as exc:
            self.fail(exc)
        else:
            self.verified, self.problem, self.error = True, None, None

    def fail(self, error: BaseException) -> None:
        """The file does not verify, or could not be read: ``error`` says why."""
        clear_frames(error)
        self.verified, self.problem, self.error = False, str(error), error.with_traceback(None)

    def unchecked(self, why: str) -> None:
        """The file could not be checked here (not a failure): ``why`` says what that needs."""
        self.verified, self.problem, self.error = None, why, None

    def as_dict(self) -> dict[str, Any]:
        """The description as JSON-ready values: path, kind, format_version, size, the facts, verified, problem."""
        head = {"path": self.path, "kind": self.kind, "format_version": self.version, "size": self.size}
        return {**head, **self.facts, "verified": self.verified, "problem": self.problem}


def describe_lock(info: Description) -> None:
    """Fill ``info`` for a lock file (``.NAME.lock``, told by its name: it has no magic): the artefact it guards and
    whether a writer holds it now (and which process took it, as the file says)."""
    target = _atomic.locked_target(info.path)
    if target is None:
        raise ArtifactError(f"{info.path}: not a lock file")
    info.kind = "lock file"
    with _atomic.open_for_reading(info.path, "lock") as fh:
        said = fh.read(32).decode("ascii", "replace").strip()
    held = _atomic.lock_held(target)
    info.facts.update(guards=target, held=held, pid=int(said) if said.isdigit() else None)
    info.unchecked(
        "a lock file has no contents to verify"
        + ("" if held else "; no process holds it: the next writer of what it guards takes it over")
    )


def created_at(seconds: int) -> str:
    """A build time recorded in a header (Unix seconds) as ISO 8601 UTC, as ``credcheck info`` shows it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def source_digest(header: bytes) -> int:
    """What a derived file records of its source: a digest of the source's header (which holds the checksums of
    the source's sections, so any change of its contents changes it)."""
    return xxhash.xxh3_64_intdigest(header)


def corpus_version(header: bytes) -> str:
    """The corpus version of an artefact: :func:`source_digest` of its header as 16 lower-case hex digits.

    A header holds the checksums of every section after it (and a store's or pair store's its build time), so
    any change of content is a new version, and the same file gives the same version wherever it is opened:
    a local checker and the ``credcheck serve`` answering from that file agree. No format change was needed.
    """
    return f"{source_digest(header):016x}"


def seal_key(secret: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for :func:`seal`, derived from ``secret`` for one ``purpose`` (never the secret itself)."""
    return hmac.new(secret, b"credcheck seal key\x00" + purpose, hashlib.sha256).digest()


def seal(key: bytes, *parts: bytes | memoryview) -> bytes:
    """A MAC of ``parts`` (each length-prefixed, so parts cannot shift into each other) under ``key``."""
    mac = hashlib.blake2b(key=key, digest_size=SEAL_SIZE)
    for part in parts:
        mac.update(len(part).to_bytes(8, "little"))
        mac.update(part)
    return mac.digest()


def unsealed(key: bytes, sealed: bytes | memoryview, *parts: bytes | memoryview) -> bool:
    """Whether ``sealed`` is :func:`seal` of ``parts`` under ``key`` (compared in constant time)."""
    return hmac.compare_digest(sealed, seal(key, *parts))


class Servable(Protocol):
    """What :class:`Watched` serves: an object over one open artefact file."""

    @property
    def identity(self) -> FileIdentity: ...

    def changed(self) -> str | None: ...

    def close(self) -> None: ...


class Over:
    """What :class:`Watched` serves, made over one open artefact (``store``): its identity, its change check and
    its closing are the artefact's. (A class that adds what every answer from the file repeats.)"""

    __slots__ = ()
    store: Mapped

    @property
    def identity(self) -> FileIdentity:
        return self.store.identity

    def changed(self) -> str | None:
        return self.store.changed()

    def close(self) -> None:
        self.store.close()


S = TypeVar("S", bound=Servable)


class Watched(Generic[S]):
    """One served path: the verified artefact answered from, checked on every request, replaced when a verified
    file arrives at the path.

    :meth:`current` checks the open file (:meth:`Mapped.changed`): written to in place, it is never read again,
    and ``None`` is answered (the caller sends 503) until a verified file is back. A few times a second it looks
    at the path too: a different file there (an atomic ``mv`` of a new build) or new contents in place are
    opened with ``load`` (which verifies fully) in a background thread, checked by ``accept`` (a reason to
    refuse it, or None), and served once they pass; until then the previous verified file goes on answering.
    A file that fails is not tried again until the path changes once more; if its *contents* fail and it is the
    very file being served (edited in place with its mtime put back, which only its ctime shows), nothing more
    is answered from it.

    Each change is logged with an ``event`` field (``store_broken``, ``reload_started``, ``reload_refused``,
    ``reloaded``) and the ``role`` of what is served, and reported to :attr:`on_event` (``broken``, ``refused``,
    ``reloaded``), which the server's metrics count; :attr:`generation` counts the files served after the first.
    """

    def __init__(
        self,
        path: str,
        served: S | None,
        *,
        load: Callable[[str], S],
        accept: Callable[[S], str | None] = lambda _: None,
        label: str = "",
        owned: bool = True,
        role: str = "",
    ) -> None:
        self.path, self.label, self.role = path, label or path, role
        self.served: S | None = served
        self.owned = owned and served is not None
        self._load_file, self._accept = load, accept
        self.broken: str | None = None  # why the file being served can no longer be (None: it can)
        self.refused: FileIdentity | None = None  # the last file at the path that failed verification
        self.loading = False
        #: Files served after the first (each new file at the path that passed).
        self.generation = 0
        #: Called with "broken", "refused" or "reloaded" after each change (from a request's or the loader's thread).
        self.on_event: Callable[[str], None] | None = None
        self._lock = threading.Lock()
        self._next_look = 0.0  # when to look at the path again (time.monotonic)

    @property
    def verified(self) -> bool:
        """Whether a verified file is being served (as far as the last check knows; :meth:`current` checks)."""
        return self.served is not None and self.broken is None

    def _fields(self, event: str) -> dict[str, object]:
        return {"event": event, "store": self.role, "path": self.path}

    def _tell(self, event: str) -> None:
        hook = self.on_event
        if hook is not None:
            try:
                hook(event)
            except Exception as exc:  # counting a change must never stop serving
                logger.warning("%s: a change was not counted (%s)", self.label, type(exc).__name__)

    def current(self) -> S | None:
        """The verified artefact to answer from now, or None when there is none (the caller answers 503)."""
        served = self.served
        opened = None
        if served is not None:
            why = served.changed()
            if why is not None:
                first = self.broken is None
                self.broken = why
                if first:
                    logger.warning(
                        "%s changed on disk while served (%s): answering 503 until it is replaced",
                        self.label,
                        why,
                        extra=self._fields("store_broken"),
                    )
                    self._tell("broken")
                served = None
            else:
                opened = served.identity
        # The open file is checked on every request (a wrong answer is never sent); the path, for a new file
        # renamed over it, a few times a second (a stat per request would cost as much as the check above).
        now = time.monotonic()
        if served is None or now >= self._next_look:
            self._next_look = now + WATCH_INTERVAL
            self._watch(opened)
        return served

    def _watch(self, opened: FileIdentity | None) -> None:
        """Start verifying the file at the path if it is not the one served (and not one refused already)."""
        try:
            now = FileIdentity.at(self.path)
        except OSError:
            return  # gone from its path: the open file still answers
        if (opened is not None and now == opened) or now == self.refused or self.loading:
            return
        with self._lock:
            if self.loading:
                return
            self.loading = True
        logger.info("%s: a new file is at the path: verifying it", self.label, extra=self._fields("reload_started"))
        threading.Thread(target=self._load, args=(now,), name="credcheck-reload", daemon=True).start()

    def _load(self, seen: FileIdentity) -> None:
        try:
            loaded = self._load_file(self.path)
        except (CredcheckError, OSError) as exc:
            logger.warning("%s: the new file is not served: %s", self.label, exc, extra=self._fields("reload_refused"))
            self._refuse(seen, content=isinstance(exc, CredcheckError))
            return
        except Exception as exc:  # never let the watcher die silently
            logger.warning(
                "%s: the new file is not served (%s)",
                self.label,
                type(exc).__name__,
                extra=self._fields("reload_refused"),
            )
            self._refuse(seen, content=False)
            return
        why = self._accept(loaded)
        if why is not None:
            logger.warning("%s: the new file is not served: %s", self.label, why, extra=self._fields("reload_refused"))
            loaded.close()
            self._refuse(seen, content=True)
            return
        # The previous one is not closed: a request in another thread may still be reading it; it is unmapped
        # when the last reference goes.
        self.served, self.owned, self.broken, self.refused = loaded, True, None, None
        self.generation += 1
        self.loading = False
        logger.warning("%s: now serving the new file", self.label, extra=self._fields("reloaded"))
        self._tell("reloaded")

    def _refuse(self, seen: FileIdentity, *, content: bool) -> None:
        served = self.served
        if content and served is not None and seen.same_file(served.identity):
            logger.warning(
                "%s was changed in place and no longer verifies: answering 503 until it is replaced",
                self.label,
                extra=self._fields("store_broken"),
            )
            self.broken = "it was changed in place and no longer verifies"
            self.served = None  # not closed: a request in another thread may still be reading it
        self.refused = seen
        self.loading = False
        self._tell("refused")

    def close(self) -> None:
        if self.owned and self.served is not None:
            self.served.close()
