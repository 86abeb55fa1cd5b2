"""What pyproject.toml promises: the MIT licence, shipped as a LICENSE file; extras named for what they enable, each
one the docs and messages name existing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib")
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _names(requirements: list[str]) -> set[str]:
    """The distributions (or ``credcheck[...]`` extras, as ``[extra]``) a list of requirements names."""
    names = set()
    for requirement in requirements:
        inner = re.fullmatch(r"credcheck\[([a-z,]+)\]", requirement)
        if inner:
            names |= {f"[{extra}]" for extra in inner.group(1).split(",")}
        else:
            names.add(re.split(r"[<>=!~;\[ ]", requirement)[0].lower())
    return names


def test_license_file(project: dict[str, Any]) -> None:
    """The MIT licence pyproject.toml states is in a LICENSE file, the copyright the credcheck authors'."""
    text = (ROOT / "LICENSE").read_text()
    assert project["license"] == {"text": "MIT"}
    assert text.startswith("MIT License\n") and "the credcheck authors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_extras_named_for_what_they_enable(project: dict[str, Any]) -> None:
    """django, flask (with Flask-WTF), fastapi, pairs, async, and all: every extra but dev."""
    extras = {name: _names(requirements) for name, requirements in project["optional-dependencies"].items()}
    assert "django" in extras["django"]
    assert {"flask", "wtforms", "flask-wtf"} <= extras["flask"]
    assert {"fastapi", "[async]"} <= extras["fastapi"]
    assert "pysodium" in extras["pairs"] and "httpx" in extras["async"]
    assert {"granian", "gunicorn"} <= extras["serve"] and "tqdm" in extras["progress"]
    assert "distributed" in extras["dask"]
    assert extras["all"] == {f"[{name}]" for name in extras if name not in ("all", "dev")}


def test_every_extra_named_exists(project: dict[str, Any]) -> None:
    """Every `credcheck[...]` the README, the docs and the package's messages name is an extra."""
    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "src" / "credcheck").rglob("*.py")]
    named = {
        (path.name, extra)
        for path in texts
        for group in re.findall(r"credcheck\[([a-z,]+)\]", path.read_text())
        for extra in group.split(",")
    }
    assert {extra for _, extra in named} >= {"django", "flask", "fastapi", "pairs", "async", "serve"}
    assert {(name, extra) for name, extra in named if extra not in project["optional-dependencies"]} == set()
