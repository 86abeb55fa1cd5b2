"""Shared fixtures: small leaked sets written in every input format."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

import credcheck
from credcheck import _native
from credcheck.cli import main
from credcheck.hashing import ntlm_hex
from credcheck.server import serve_in_background

# No per-example deadline: CI shares two cores with other jobs, and a slow example is not a failure here
# (benchmarks measure speed). print_blob lets a failure be replayed exactly.
settings.register_profile("credcheck", deadline=None, print_blob=True)
settings.load_profile("credcheck")


@pytest.fixture(autouse=True)
def _no_options_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands the tests run take no options from the environment of the shell running the suite
    (CREDCHECK_<COMMAND>_<OPTION>, CREDCHECK_CONFIG: credcheck.cli._config)."""
    for name in [name for name in os.environ if name.startswith("CREDCHECK_")]:
        monkeypatch.delenv(name)


@pytest.fixture(
    params=[
        pytest.param(
            "c",
            id="c-kernels",
            marks=pytest.mark.skipif("c" not in _native.AVAILABLE, reason="the C extension (_kernels.c) is not built"),
        ),
        pytest.param("numpy", id="numpy-kernels"),
    ]
)
def kernels(request: pytest.FixtureRequest) -> Iterator[_native.Kernels]:
    """Run the test on the C kernels and again on the numpy ones (every kernel user reads _native.kernels)."""
    with _native.use(request.param) as chosen:
        yield chosen


LEAKED = ["password", "123456", "qwerty", "Passw0rd!", "letmein", "dragon", "monkey", "iloveyou"]


def sha1_upper(password: str) -> str:
    return hashlib.sha1(password.encode()).hexdigest().upper()


@pytest.fixture
def hibp_file(tmp_path: Path) -> Path:
    """A sorted HIBP-format SHA-1 dump of LEAKED, with count i+1 for the i-th password, CRLF endings."""
    lines = sorted(f"{sha1_upper(p)}:{i + 1}" for i, p in enumerate(LEAKED))
    path = tmp_path / "pwned.txt"
    path.write_bytes("\r\n".join(lines).encode())
    return path


@pytest.fixture
def ntlm_hibp_file(tmp_path: Path) -> Path:
    """A HIBP-format NTLM dump of LEAKED."""
    lines = sorted(f"{ntlm_hex(p)}:{i + 1}" for i, p in enumerate(LEAKED))
    path = tmp_path / "pwned-ntlm.txt"
    path.write_bytes("\n".join(lines).encode() + b"\n")
    return path


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    """A plaintext list of LEAKED with 'password' repeated and one undecodable line."""
    path = tmp_path / "plain.txt"
    path.write_bytes("\n".join([*LEAKED, "password"]).encode() + b"\n\xff\xfe\n")
    return path


@pytest.fixture
def leaked_filter(hibp_file: Path, tmp_path: Path) -> Path:
    """A Bloom filter of hibp_file, built by `credcheck build`."""
    target = tmp_path / "leaked.bloom"
    assert main(["build", str(hibp_file), "--filter", str(target), "-q"]) == 0
    return target


@pytest.fixture
def leaked_store(hibp_file: Path, tmp_path: Path) -> Path:
    """A range store of hibp_file, built by `credcheck build`."""
    target = tmp_path / "leaked.store"
    assert main(["build", str(hibp_file), "--store", str(target), "-q"]) == 0
    return target


# -- what the partner-site integrations are tested against ---------------------------------------------

LEAKS = {"password": 9, "iloveyou": 3, "letmein!": 1}  # password -> times seen
UNLEAKED = "correct horse battery staple 42"
FAST: dict[str, Any] = {"retries": 0}  # a dead server fails at once instead of after backoff


@dataclasses.dataclass(frozen=True)
class Corpus:
    store: str
    filter: str
    filter_min5: str


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """LEAKS as a store, a filter, and a filter of only the hashes seen at least 5 times."""
    folder = tmp_path_factory.mktemp("corpus")
    dump = folder / "pwned.txt"
    dump.write_text("\r\n".join(sorted(f"{credcheck.sha1_hex(p)}:{n}" for p, n in LEAKS.items())))
    credcheck.build([dump], filter=folder / "all.bloom", store=folder / "pwned.store")
    credcheck.build([dump], filter=folder / "min5.bloom", min_count=5)
    return Corpus(str(folder / "pwned.store"), str(folder / "all.bloom"), str(folder / "min5.bloom"))


@pytest.fixture(scope="module")
def range_api(corpus: Corpus) -> Iterator[str]:
    """A range API serving the corpus's store on 127.0.0.1."""
    with serve_in_background([corpus.store]) as url:
        yield url


@pytest.fixture(scope="module")
def dead_api() -> str:
    """The URL of a closed port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def leak_logs(caplog: pytest.LogCaptureFixture, password: str) -> None:
    """Assert nothing logged holds the password, its hash or its hash prefix."""
    digest = credcheck.sha1_hex(password)
    text = caplog.text + "".join(str(record.args) for record in caplog.records)
    for secret in (password, digest, digest[:5], digest.lower(), digest[:5].lower()):
        assert secret not in text


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A browser test that fails saves a screenshot of the page, and its report says where (the ``browser``
    fixture of tests/test_example_site.py)."""
    report: pytest.TestReport = yield
    browser = getattr(item, "funcargs", {}).get("browser")
    if report.when == "call" and report.failed and browser is not None:
        folder = tempfile.mkdtemp(prefix="credcheck-screenshots-")
        shot = os.path.join(folder, f"{item.name}.png")
        saved = browser.save_screenshot(shot)
        report.longrepr = (
            f"{report.longrepr}\n\nscreenshot: {shot if saved else 'could not be saved'} (page: {browser.current_url})"
        )
    return report
