"""Per-address token buckets that hold across a server's worker processes: a small shared, memory-mapped table.

The pair query endpoint is an oracle (one query tests one password for one username), so the service limits
how fast one client address may ask. A limit kept in each worker's memory would be multiplied by the number
of workers, and reset whenever one restarts; so the buckets live in one file that every worker maps
(``MAP_SHARED``): the parent creates it before the workers start (a fresh, private file, mode 0600, on
``/dev/shm`` where there is one), forked workers inherit the map and spawned ones (granian) open it by path.

Layout: a 64-byte header (magic, rate, burst, set count, a random 32-byte salt), then ``sets`` sets of
``WAYS`` slots of 24 bytes (an 8-byte key, the tokens left and the time they were counted, as two doubles).
An address is keyed by BLAKE2b(salt, address) — never stored itself — and lives in one set, chosen by
the key; a new address takes the slot idle the longest, so eviction forgets only buckets that have refilled
(unless more than ``WAYS`` addresses of one set are all active within ``burst / rate`` seconds). IPv6
addresses count by their /64 (one subscriber's usual allocation). Each update holds a POSIX record lock on
its set's bytes (``fcntl.lockf``: between processes) and a lock per process (between threads; record locks
are per process). Times are ``time.monotonic()``, one clock for every process on a machine.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import mmap
import os
import secrets
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final

from .. import _args, _atomic
from ..errors import ArtifactError, StorageError

__all__ = ["DEFAULT_BURST", "DEFAULT_RATE", "RateLimiter", "address_key"]

MAGIC: Final = b"CCRATE\x00\x01"
_HEADER: Final = struct.Struct("<8sddQ32s")
HEADER_SIZE: Final = 64
_SLOT: Final = struct.Struct("<8sdd")
WAYS: Final = 8
DEFAULT_SETS: Final = 8192  # 65,536 slots, 1.5 MiB
#: Queries a second one address may make on average, and how many it may make at once.
DEFAULT_RATE: Final = 10.0
DEFAULT_BURST: Final = 50.0
_EMPTY: Final = bytes(8)


def address_key(address: str) -> bytes:
    """What an address counts as: an IPv4 address, the /64 of an IPv6 one, or the text itself (e.g. a socket)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return b"x" + address.encode("utf-8", "surrogateescape")
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return b"4" + mapped.packed
        return b"6" + ip.packed[:8]
    return b"4" + ip.packed


def _reserve(fd: int, size: int) -> None:
    """Give the file ``size`` bytes that are really allocated (not a sparse hole), or raise OSError (ENOSPC)."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except AttributeError:  # not on this platform
        pass
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
    os.ftruncate(fd, size)
    _atomic.pwrite_all(fd, bytes(size), 0)  # a file system without fallocate: write every byte (~1.5 MiB)


class RateLimiter:
    """Token buckets of ``rate`` tokens a second up to ``burst``, one per address, shared by every process.

    Make one with :meth:`create` in the parent (before workers fork), or attach with :meth:`open` in a worker
    started from scratch. :meth:`take` spends a token or says how long to wait.
    """

    def __init__(self, path: str, mm: mmap.mmap, fd: int, *, owner: bool) -> None:
        self.path = path
        self._map = mm
        self._fd = fd
        self._owner = os.getpid() if owner else None  # a forked worker inherits the map, not the file
        self._lock = threading.Lock()
        magic, rate, burst, sets, salt = _HEADER.unpack_from(mm, 0)
        size = HEADER_SIZE + sets * WAYS * _SLOT.size
        if magic != MAGIC or not rate > 0 or not burst >= 1 or sets < 1 or len(mm) != size:
            raise ArtifactError(f"{path} is not a credcheck rate-limit table")
        self.rate: float = rate
        self.burst: float = burst
        self.sets: int = sets
        self._salt: bytes = salt
        self.clock: Callable[[], float] = time.monotonic

    @classmethod
    def create(
        cls,
        rate: float = DEFAULT_RATE,
        burst: float = DEFAULT_BURST,
        *,
        directory: str | None = None,
        sets: int = DEFAULT_SETS,
    ) -> RateLimiter:
        """A new, empty table in a private file (unlinked by :meth:`close` of this object)."""
        _args.positive_number("the rate limit", rate, " of queries a second")
        _args.number_at_least("the burst", burst, 1, " of queries")
        if directory is None:
            directory = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        try:
            fd, path = tempfile.mkstemp(prefix="credcheck-ratelimit-", dir=directory)  # 0600, O_EXCL
        except OSError as exc:
            raise StorageError(f"cannot create the rate-limit table: {exc.strerror or exc}") from None
        try:
            size = HEADER_SIZE + sets * WAYS * _SLOT.size
            # Every page is reserved now: a sparse table on a /dev/shm that another user filled would kill the
            # worker with SIGBUS the first time it touched a new page; a full one is an error here, at start.
            _reserve(fd, size)
            os.pwrite(fd, _HEADER.pack(MAGIC, float(rate), float(burst), sets, secrets.token_bytes(32)), 0)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            where = os.path.dirname(path)
            raise StorageError(
                f"cannot create the rate-limit table in {where}: {exc.strerror or exc} (it needs {size:,} bytes)"
            ) from None
        return cls(path, mm, fd, owner=True)

    @classmethod
    def open(cls, path: str) -> RateLimiter:
        """Attach to a table made by :meth:`create` (in a worker process)."""
        try:
            fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
            mm = mmap.mmap(fd, 0, mmap.MAP_SHARED)
        except (OSError, ValueError) as exc:
            raise StorageError(f"cannot open the rate-limit table {path}: {exc}") from None
        return cls(path, mm, fd, owner=False)

    @contextlib.contextmanager
    def _locked(self, at: int, size: int) -> Iterator[None]:
        with self._lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, size, at)
            try:
                yield
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, size, at)

    def take(self, address: str) -> float:
        """Spend one token of ``address``'s bucket: 0.0 if it had one, else the seconds until it will."""
        key = hashlib.blake2b(address_key(address), digest_size=8, key=self._salt).digest()
        if key == _EMPTY:
            key = b"\x00" * 7 + b"\x01"
        chosen = int.from_bytes(key, "little") % self.sets
        at = HEADER_SIZE + chosen * WAYS * _SLOT.size
        with self._locked(at, WAYS * _SLOT.size):
            now = self.clock()
            slots = [_SLOT.unpack_from(self._map, at + way * _SLOT.size) for way in range(WAYS)]
            way = next((i for i, slot in enumerate(slots) if slot[0] == key), None)
            if way is None:
                # an empty slot, else the one idle the longest (a bucket idle for burst/rate seconds is full)
                way = min(range(WAYS), key=lambda i: (slots[i][0] != _EMPTY, slots[i][2]))
                tokens = self.burst
            else:
                _, tokens, then = slots[way]
                tokens = min(self.burst, tokens + max(0.0, now - then) * self.rate)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self.rate
            _SLOT.pack_into(self._map, at + way * _SLOT.size, key, tokens, now)
        return wait

    def close(self) -> None:
        """Unmap the table (and remove its file, from the process that created it)."""
        with contextlib.suppress(ValueError, BufferError):
            self._map.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        if self._owner == os.getpid():
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def __repr__(self) -> str:
        return f"<RateLimiter {self.rate:g}/s burst {self.burst:g}, {self.sets * WAYS} slots>"
