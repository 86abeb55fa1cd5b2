"""Errors leave the pair tier's public functions without the frames that held usernames, passwords or keys.

A traceback keeps every frame's locals alive (and debuggers, error reporters and ``traceback.print_exc(
capture_locals=True)`` show them): a build's frames hold combo lines and stretch inputs. At the public boundary
the error is re-raised from the wrapper alone. (Checks clear their frames with :func:`credcheck._frames.entry_point`,
which also covers cancellations and errors of any class.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from ..errors import CredcheckError

_P = ParamSpec("_P")
_R = TypeVar("_R")
#: What is scrubbed: the errors the pair tier raises on purpose and those its inputs can cause.
SCRUBBED = (CredcheckError, ValueError, TypeError, OSError)


def scrubbed(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Re-raise errors of ``func`` with no traceback frames below this wrapper and no chained exceptions."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except SCRUBBED as exc:
            error = exc.with_traceback(None)
        del args, kwargs
        error.__context__ = error.__cause__ = None  # a chained error's traceback would still hold the frames
        raise error from None

    return wrapper
