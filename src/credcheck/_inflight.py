"""Calls in flight: the gate every checker closes behind them, and worker-thread steps that a cancellation waits for.

A checker may be shared by threads (or tasks) and closed while they use it. :class:`Gate` counts the calls in
flight: a call enters it (a :class:`~credcheck.errors.ClosedError` once the checker is closed) and leaves it
when done; closing refuses new calls and waits for those in flight, so a call racing ``close()`` either
answers from the open source or raises ClosedError, never an error of the half-released source (an unmapped
file, a closed connection pool) and never a wrong answer. The range checkers, the pair checkers and their
async twins all close through it.

:func:`in_thread` runs a blocking step (a stretch, a proof check, a local lookup) in a worker thread from
async code. A cancelled task stops waiting for a thread at once, but the thread goes on with the step and its
arguments — a username, a password, a flow holding both. So a cancellation waits for the step to finish
before it goes on: once the CancelledError reaches the caller, no thread of the check still holds them.

anyio is imported only by the async functions, so the sync checkers need nothing more than the standard library.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from .errors import ClosedError

__all__ = ["Gate", "in_thread"]

_R = TypeVar("_R")


class Gate:
    """Counts the calls in flight on one checker; :meth:`close` refuses new ones and waits for those in flight.

    ``with gate:`` around a call enters it (ClosedError once closed, naming ``owner``) and leaves it on the
    way out, however the call ends.
    """

    __slots__ = ("_active", "_closed", "_idle", "_lock", "owner")

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` (or :meth:`aclose`) has run."""
        return self._closed

    def __enter__(self) -> None:
        with self._lock:
            if self._closed:
                raise ClosedError(f"{self.owner} is closed")
            self._active += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._active -= 1
            if not self._active:
                self._idle.notify_all()

    def _shut(self) -> bool:
        """Refuse new calls; True for the first close only."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            return True

    def _wait_idle(self) -> None:
        with self._lock:
            self._idle.wait_for(lambda: not self._active)

    def close(self) -> bool:
        """Refuse new calls and wait for those in flight; True for the first close only (the one to release)."""
        if not self._shut():
            return False
        self._wait_idle()
        return True

    async def aclose(self) -> bool:
        """:meth:`close` for async code: the calls in flight are waited for without blocking the event loop."""
        if not self._shut():
            return False
        if self._active:  # none can start now; no thread to wait in when none is running
            await in_thread(self._wait_idle)
        return True


async def in_thread(func: Callable[..., _R], *args: Any) -> _R:
    """``func(*args)`` in a worker thread; a cancellation waits for it to finish before it propagates.

    The cancellation is raised as the backend raises it (CancelledError under asyncio); the result or error
    of the abandoned step is dropped. A step cancelled before its thread took it up never runs.
    """
    import anyio
    import anyio.to_thread

    claim = threading.Lock()
    finished = threading.Event()
    # Taken by the step when it starts (so the worker thread keeps nothing of it once it is done), or dropped
    # here when a cancellation comes first; "running" says which.
    work: list[Any] = [func, args]
    running = False

    def step() -> _R:
        nonlocal running
        with claim:
            if not work:  # abandoned while it waited for a thread: the caller is gone
                return cast(_R, None)
            call, arguments = work
            work.clear()
            running = True
        try:
            return call(*arguments)  # type: ignore[no-any-return]
        finally:
            del call, arguments
            finished.set()

    try:
        return await anyio.to_thread.run_sync(step)
    except BaseException:
        with claim:
            work.clear()
            started = running
        if started:
            # asyncio delivers task.cancel() (and asyncio.wait_for) here at once, while the thread still runs
            # the step with its arguments: wait for it, shielded from further cancellation, then go on.
            cancelled = anyio.get_cancelled_exc_class()
            while not finished.is_set():
                with anyio.CancelScope(shield=True), contextlib.suppress(cancelled):
                    await anyio.to_thread.run_sync(finished.wait)
        raise
