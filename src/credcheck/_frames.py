"""Keeps secrets out of the frames attached to the exceptions that leave credcheck's public entry points.

An exception carries its traceback, and every frame in it keeps its local variables alive: the password a
checker was asked about, the digests computed from it, a leak's line. ``traceback.TracebackException(
capture_locals=True)``, ``pytest -l`` and error trackers that capture locals print them. A public function
wrapped in :func:`entry_point` clears the locals of every frame below it on the way out, ours and those of
the libraries it called (the file and line of each frame stay, so the traceback still says where it went
wrong), and drops its own arguments before the exception passes through it. Exceptions chained to it as
cause or context are cleared too, except one the caller was handling already: that one is the caller's.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

__all__ = ["async_entry_point", "clear_frames", "entry_point"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _clear_traceback(tb: TracebackType | None) -> None:
    while tb is not None:
        # A frame still executing (the entry point itself, a caller's handler) cannot be cleared.
        with contextlib.suppress(RuntimeError):
            tb.tb_frame.clear()
        tb = tb.tb_next


def clear_frames(error: BaseException, *, before: BaseException | None = None) -> None:
    """Clear the locals of the finished frames in ``error``'s traceback and in those it is chained to.

    ``before`` is the exception the caller was already handling when it called in (Python chains it as the
    context): it and what it chains to are the caller's, and stay as they are.
    """
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or current is before or id(current) in seen:
            continue
        seen.add(id(current))
        _clear_traceback(current.__traceback__)
        pending += (current.__cause__, current.__context__)


def entry_point(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Wrap a public function whose arguments or work may hold secrets (see the module docs)."""

    @functools.wraps(func)
    def entry(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        handling = sys.exc_info()[1]
        try:
            return func(*args, **kwargs)
        except BaseException as error:
            clear_frames(error, before=handling)
            del args, kwargs, handling
            raise

    return entry


def async_entry_point(func: Callable[_P, Coroutine[Any, Any, _R]]) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """:func:`entry_point` for a coroutine function: the frames are cleared once the error leaves the await.

    That includes a cancellation, and one thrown in before the coroutine ever ran (``asyncio.wait_for(...,
    0)``, a task cancelled at once), whose only frame is the coroutine's own, holding its arguments.
    """

    @functools.wraps(func)
    def entry(*args: _P.args, **kwargs: _P.kwargs) -> Coroutine[Any, Any, _R]:
        return _Call(func(*args, **kwargs))

    return entry


class _Call(Coroutine[Any, Any, _R]):
    """One call of an async entry point: its coroutine, run step by step, whose errors leave with cleared frames.

    A coroutine cannot catch what is thrown into it before its first step, so the clearing is done here,
    around every step, where it always runs. It is a Coroutine, so ``await``, tasks and ``wait_for`` take it.
    """

    __slots__ = ("_coro",)

    def __init__(self, coro: Coroutine[Any, Any, _R]) -> None:
        self._coro = coro

    def __await__(self) -> Generator[Any, None, _R]:
        return self  # an iterator with send and throw is what await drives

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        handling = sys.exc_info()[1]
        try:
            return self._coro.send(value)
        except StopIteration:
            raise
        except BaseException as error:
            clear_frames(error, before=handling)
            del handling
            raise

    def throw(self, *thrown: Any) -> Any:
        handling = sys.exc_info()[1]
        try:
            return self._coro.throw(*thrown)
        except StopIteration:
            raise
        except BaseException as error:
            clear_frames(error, before=handling)
            del thrown, handling
            raise

    def close(self) -> None:
        self._coro.close()

    def __getattr__(self, name: str) -> Any:
        if name == "_coro":  # not set yet: no recursion through this method
            raise AttributeError(name)
        return getattr(self._coro, name)  # cr_frame, cr_await, __qualname__...: what introspection asks a coroutine
