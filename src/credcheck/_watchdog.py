"""The deadline watchdog every driver shares: one thread shuts the socket of any request past its deadline.

A socket timeout bounds each connect and each read, so a server that drips a byte within every read timeout
could hold a request open for as long as it likes. A driver therefore arms a :class:`Watchdog` for each
request (:func:`arm`, with the seconds the flow has left) and attaches the request's socket once it has one;
if the deadline passes first, the socket is shut down, which wakes the blocked read, and ``fired`` tells the
driver that whatever it read is not whole. ``disarm`` when the request is over.

One thread watches every armed request of the process (a heap of deadlines), rather than a timer thread per
request: the mirror sends thousands of requests a second, and starting a thread costs about as much as the
rest of a request's client-side work. The thread starts on first use, and anew in a forked child.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable

__all__ = ["Watchdog", "Watcher", "arm"]

# Cancelled entries stay in the heap until they reach its top; past this many (and half the heap) it is rebuilt.
_COMPACT_AFTER = 1024


class Watchdog:
    """One request's deadline: shuts down the attached socket once it passes (see :func:`arm`)."""

    __slots__ = ("_done", "_sock", "_watcher", "fired")

    def __init__(self, watcher: Watcher) -> None:
        self.fired = False
        self._done = False  # fired or disarmed: its heap entry is dead
        self._sock: socket.socket | None = None
        self._watcher = watcher

    def attach(self, sock: socket.socket | None) -> None:
        """Watch this socket (the request's, once connected); shut at once if the deadline already passed."""
        with self._watcher.lock:
            self._sock = sock
            if self.fired:
                self._shutdown()

    def disarm(self) -> None:
        """The request is over: never touch its socket again."""
        watcher = self._watcher
        with watcher.lock:
            self._sock = None
            if not self._done:
                self._done = True
                watcher.cancelled()

    def _fire(self) -> None:  # under the watcher's lock
        self.fired = self._done = True
        self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # already closed
                self._sock.shutdown(socket.SHUT_RDWR)


class Watcher:
    """The thread behind every :class:`Watchdog` of a process: a heap of deadlines on ``clock``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        self._clock = clock
        self._heap: list[tuple[float, int, Watchdog]] = []
        self._order = itertools.count()
        self._stale = 0
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> Watchdog:
        """A watchdog that fires ``seconds`` from now (at once if that is not positive)."""
        dog = Watchdog(self)
        entry = (self._clock() + max(seconds, 0.0), next(self._order), dog)
        with self.lock:
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="credcheck-watchdog", daemon=True)
                self._thread.start()
            if self._heap[0] is entry:  # the thread sleeps until the old first deadline: wake it
                self._wake.notify()
        return dog

    def cancelled(self) -> None:  # under the lock: a watchdog was disarmed before it fired
        self._stale += 1
        heap = self._heap
        if self._stale > _COMPACT_AFTER and 2 * self._stale > len(heap):
            heap[:] = [entry for entry in heap if not entry[2]._done]
            heapq.heapify(heap)
            self._stale = 0

    def _run(self) -> None:
        heap = self._heap
        with self.lock:
            while True:
                while heap and heap[0][2]._done:
                    heapq.heappop(heap)
                    self._stale -= 1
                if not heap:
                    self._wake.wait()
                    continue
                left = heap[0][0] - self._clock()
                if left > 0:
                    self._wake.wait(left)
                    continue
                heapq.heappop(heap)[2]._fire()


_watcher = Watcher()


def _after_fork() -> None:
    global _watcher
    _watcher = Watcher()  # the parent's thread does not exist here, and its lock may have been held


os.register_at_fork(after_in_child=_after_fork)


def arm(seconds: float) -> Watchdog:
    """Arm this process's watcher for one request: a :class:`Watchdog` that fires ``seconds`` from now."""
    return _watcher.arm(seconds)
