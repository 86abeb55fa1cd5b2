"""Picks the hot-loop kernels: the C extension when it was built, else its numpy twin."""

from __future__ import annotations

from types import ModuleType

kernels: ModuleType
try:
    from . import _kernels as kernels  # type: ignore[attr-defined,no-redef,unused-ignore]

    NAME = "c"
except ImportError:  # no compiler at install time
    from . import _kernels_py as kernels

    NAME = "numpy"

__all__ = ["NAME", "describe", "kernels"]


def describe() -> str:
    """Which kernels run, as ``--version`` and the demo say it."""
    if NAME == "c":
        return "C kernels"
    return "numpy kernels: the C extension was not built (no compiler at install); lookups run about 3.7x slower"
