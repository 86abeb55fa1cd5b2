"""The public surface: which modules are public, and that each says exactly what it offers in ``__all__``."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import credcheck

#: The public modules (docs/DESIGN.md, "A small public surface"); every other module is ``_``-named.
PUBLIC = {
    "credcheck",
    "credcheck.aio",
    "credcheck.bloom",
    "credcheck.build",
    "credcheck.checker",
    "credcheck.cli",
    "credcheck.client",
    "credcheck.contrib",
    "credcheck.contrib.django",
    "credcheck.contrib.fastapi",
    "credcheck.contrib.flask",
    "credcheck.contrib.middleware",
    "credcheck.contrib.policy",
    "credcheck.errors",
    "credcheck.export",
    "credcheck.fuse",
    "credcheck.hashing",
    "credcheck.mirror",
    "credcheck.pair_client",
    "credcheck.pairs",
    "credcheck.pairs.build",
    "credcheck.pairs.checker",
    "credcheck.pairs.keys",
    "credcheck.pairs.store",
    "credcheck.pairs.stretch",
    "credcheck.server",
    "credcheck.store",
}


def _public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


ALL_MODULES = sorted({"credcheck"} | {m.name for m in pkgutil.walk_packages(credcheck.__path__, "credcheck.")})
PUBLIC_FOUND = [name for name in ALL_MODULES if _public(name)]


def test_the_public_modules_are_the_documented_ones() -> None:
    """A module is public only when named so on purpose: a new one is ``_``-named unless added to PUBLIC."""
    assert set(PUBLIC_FOUND) == PUBLIC


@pytest.mark.parametrize("name", PUBLIC_FOUND)
class TestPublicModule:
    def test_defines_all(self, name: str) -> None:
        """A public module lists its public names in ``__all__``."""
        module = importlib.import_module(name)
        assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__"

    def test_every_name_exists(self, name: str) -> None:
        """Every name in ``__all__`` is there (the package's lazy names included), once."""
        module = importlib.import_module(name)
        names = getattr(module, "__all__", [])
        assert len(set(names)) == len(names)
        assert [n for n in names if not hasattr(module, n)] == []

    def test_offers_no_private_name(self, name: str) -> None:
        """``__all__`` offers no ``_``-named object (a private module's helper handed on under its own name)."""
        names = getattr(importlib.import_module(name), "__all__", [])
        assert [n for n in names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))] == []


def test_dir_shows_only_public_names() -> None:
    """dir(credcheck) lists __all__ only; submodules still import and stay reachable."""
    import credcheck.client

    assert dir(credcheck) == sorted(credcheck.__all__)
    assert credcheck.client.RangeClient.__name__ == "RangeClient"


@pytest.mark.parametrize("name", ["build_pairs", "build_combined", "CombinedReport", "PairChecker"])
def test_lazy_names_are_the_modules_own(name: str) -> None:
    """A name the package loads on first use is the object itself, not a wrapper hiding its signature."""
    home = {"build_pairs": "credcheck.pairs.build", "PairChecker": "credcheck.pairs.checker"}
    module = importlib.import_module(home.get(name, "credcheck._combined"))
    assert getattr(credcheck, name) is getattr(module, name)
