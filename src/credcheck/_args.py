"""The argument checks every public function shares: one ``ValueError``/``TypeError`` wording for the package.

``True`` and ``False`` are ints to Python but never a count, a size or a number of seconds here: every check
refuses them. Messages name the argument and show the value (arguments are settings, never secrets).
"""

from __future__ import annotations

import fractions
import math
import numbers
import os
import re
from collections.abc import Collection
from typing import TypeVar

__all__ = [
    "byte_size",
    "choice",
    "int_in_range",
    "machine_memory",
    "non_negative_int",
    "non_negative_number",
    "number_at_least",
    "positive_int",
    "positive_number",
    "positive_seconds",
    "probability",
]

T = TypeVar("T")

_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([kmgt]?)(i?)(b?)", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def positive_int(name: str, value: object) -> int:
    """``value`` if it is an int >= 1, else a ``ValueError`` naming ``name``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"{name} must be a positive integer, got {value!r}")


def non_negative_int(name: str, value: object) -> int:
    """``value`` if it is an int >= 0, else a ``ValueError`` naming ``name``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def int_in_range(name: str, value: object, low: int, high: int) -> int:
    """``value`` if it is an int from ``low`` to ``high`` (both included), else a ``ValueError`` naming ``name``."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def positive_number(name: str, value: object, unit: str = "") -> float:
    """``value`` if it is a finite number > 0, else a ``ValueError``: "``name`` must be a positive number``unit``"."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < float(value) < math.inf:
        return float(value)
    raise ValueError(f"{name} must be a positive number{unit}, got {value!r}")


def positive_seconds(name: str, value: object) -> float:
    """``value`` if it is a finite number > 0, else a ``ValueError`` naming ``name``."""
    return positive_number(name, value, " of seconds")


def number_at_least(name: str, value: object, low: float, unit: str = "") -> float:
    """``value`` if it is a finite number >= ``low``, else a ``ValueError`` naming ``name`` (and ``unit``)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and low <= float(value) < math.inf:
        return float(value)
    raise ValueError(f"{name} must be a number{unit} of at least {low:g}, got {value!r}")


def non_negative_number(name: str, value: object) -> float:
    """``value`` if it is a finite number >= 0, else a ``ValueError`` naming ``name``."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= float(value) < math.inf:
        return float(value)
    raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def probability(name: str, value: object) -> float:
    """``value`` if it is a number strictly between 0 and 1 (NaN is not), else a ``ValueError`` naming ``name``."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 < float(value) < 1.0:
        return float(value)
    raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {value!r}")


def choice(name: str, value: T, choices: Collection[T]) -> T:
    """``value`` if it is one of ``choices``, else a ``ValueError`` listing them."""
    try:
        known = value in choices
    except TypeError:  # an unhashable value asked of a set or dict
        known = False
    if not known:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(str, choices))}")
    return value


def machine_memory() -> int | None:
    """The machine's physical memory in bytes, or None where it cannot be known."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def byte_size(name: str, value: object, low: int = 0, *, memory: bool = False) -> int:
    """``value`` as a number of bytes of at least ``low``: an int, or a size such as ``64MiB``, ``2GiB``, ``512K`` or
    ``1.5GB`` (KiB, MiB, GiB, TiB and a bare K, M, G, T are powers of 1024, as sort --buffer-size reads them;
    kB, MB, GB, TB powers of 1000); a ``ValueError`` naming ``name`` otherwise. A ``memory`` budget is also at most
    this machine's memory: a larger one would be taken at its word and never spill, until the kernel's OOM killer
    ends the process."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())) is not None:
        number, power, binary, unit = match.groups()
        decimal = power and unit and not binary  # "MB" (a bare "M" and "MiB" are binary)
        if binary and not power:  # "iB"
            raise ValueError(f"{name} must be a size such as 64MiB or 2GiB, got {value!r}")
        # exact, whatever the digits: a float would round a long number, or overflow
        size = int(fractions.Fraction(number) * (1000 if decimal else 1024) ** _POWERS[power.lower()])
    else:
        raise ValueError(f"{name} must be a size such as 64MiB or 2GiB, got {value!r}")
    if size < low:
        raise ValueError(f"{name} must be at least {low:,} bytes, got {value!r}")
    total = machine_memory() if memory else None
    if total is not None and size > total:
        raise ValueError(f"{name} must be at most this machine's memory ({total:,} bytes), got {value!r}")
    return size
