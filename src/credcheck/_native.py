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

__all__ = ["NAME", "kernels"]
