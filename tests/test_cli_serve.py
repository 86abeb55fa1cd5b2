"""`credcheck serve --help` (credcheck.cli.serve) is true to the code: the worker counts each server starts, and
the size of the bodies side file."""

from __future__ import annotations

import contextlib
import io
import logging
import logging.config
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from credcheck.cli import main, make_parser
from credcheck.server import _runners as runners
from credcheck.server._bodyfile import DATA_AT, HEADER_SIZE, build_bodies
from credcheck.store import RangeStore


def _serve_help() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        make_parser().parse_args(["serve", "--help"])
    return " ".join(out.getvalue().split())  # argparse wraps the help: compare it as one line


@pytest.mark.parametrize(("kind", "per_core"), [("granian", 1), ("gunicorn", 2)])
def test_workers_started_are_those_help_states(
    kind: str, per_core: int, leaked_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --workers each server starts the number --help states for this machine (3 cores here: granian 3,
    gunicorn 6)."""
    monkeypatch.setattr(runners, "_cores", lambda: 3)
    assert "two a core under gunicorn: 3 and 6 here" in _serve_help()
    started: list[int] = []

    def run(*args: Any) -> None:
        started.append(args[4])  # (module, app, host, port, workers, ...)

    # serve() sets up this process's logging as a serving process's (JSON lines, credcheck's loggers at INFO): kept
    # from the test process, whose later tests read credcheck's DEBUG records and its progress on standard error
    monkeypatch.setattr(logging.config, "dictConfig", lambda config: None)
    monkeypatch.setattr(logging, "captureWarnings", lambda capture: None)
    monkeypatch.setattr(runners, "_pick_server", lambda server: (kind, None))
    monkeypatch.setattr(runners, f"_serve_{kind}", run)
    runners.serve([str(leaked_store)], "127.0.0.1", 0, bodies="off")
    assert started == [3 * per_core]


def test_bodies_size_help_states_is_measured(tmp_path: Path) -> None:
    """The side file's size in --help: a 32 MiB index, and 61 MB beside the bundled data's 8.8 MB store."""
    data = resources.files("credcheck").joinpath("data", "common-passwords.sha1.txt.gz")
    store = tmp_path / "bundled.store"
    assert main(["build", str(data), "--store", str(store), "-q"]) == 0
    with RangeStore(store) as opened:
        bodies = Path(build_bodies(opened))
    help_text = _serve_help()
    assert DATA_AT - HEADER_SIZE == 32 << 20 and "a 32 MiB index" in help_text
    store_mb, bodies_mb = store.stat().st_size / 1e6, bodies.stat().st_size / 1e6
    assert f"{bodies_mb:.0f} MB beside the bundled data's {store_mb:.1f} MB store" in help_text
