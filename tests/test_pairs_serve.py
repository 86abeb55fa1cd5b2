"""`credcheck serve --pairs PATH --key KEYFILE` under granian, gunicorn and wsgiref: real servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import credcheck
from credcheck.pairs._service import make_pair_service
from credcheck.pairs.checker import PairStatus
from credcheck.pairs.keys import load_key, write_key
from credcheck.server import make_app, serve_in_background
from credcheck.server._app import RangeApp

from .helpers import recording
from .pairs_fixtures import build_store, environ, query_body

_URL = re.compile(r"http://127\.0\.0\.1:\d+")
KINDS = ["granian", "gunicorn", "wsgiref"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serve-pairs")
    write_key(folder / "key")
    pairs = build_store(folder, key=load_key(folder / "key"))
    dump = folder / "pwned.txt"
    dump.write_text(f"{credcheck.sha1_hex('hunter2')}:7\r\n")
    credcheck.build([dump], store=folder / "pwned.store")
    return {"key": folder / "key", "pairs": pairs, "store": folder / "pwned.store"}


@contextlib.contextmanager
def running(kind: str, *args: str, timeout: float = 60) -> Iterator[str]:
    """``credcheck serve ARGS --server KIND --port 0`` in a subprocess; yields its URL, stops it on exit."""
    argv = [sys.executable, "-m", "credcheck", "serve", *args, "--server", kind, "--port", "0", "--workers", "2"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str | None] = queue.Queue()
    errors: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    def pump_errors() -> None:
        assert process.stderr is not None
        errors.extend(process.stderr)

    threads = [threading.Thread(target=f, daemon=True) for f in (pump, pump_errors)]
    for thread in threads:
        thread.start()
    try:
        while True:
            line = lines.get(timeout=timeout)
            if line is None:
                process.wait(10)
                threads[1].join(5)
                raise RuntimeError(f"the {kind} server exited early: {''.join(errors)[-2000:]}")
            found = _URL.search(line)
            if found:
                assert "credential pairs" in line
                yield found.group(0)
                return
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _skip_missing(kind: str) -> None:
    if kind != "wsgiref":
        pytest.importorskip(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_pairs_and_ranges_from_one_server(kind: str, files: dict[str, Path]) -> None:
    """One server answers pair checks and range lookups; the Python API and the CLI both get the right answers."""
    _skip_missing(kind)
    args = ["--pairs", str(files["pairs"]), "--key", str(files["key"]), "--store", str(files["store"])]
    with running(kind, *args) as url:
        with credcheck.open_pairs(url, retries=0) as checker:
            answers = checker.check_many(
                [("Alice@Example.com", "Summer2019"), ("alice@example.com", "summer2019"), ("bob", "x"), ("eve", "y")]
            )
        assert [a.status for a in answers] == [
            PairStatus.EXACT,
            PairStatus.SIMILAR,
            PairStatus.USERNAME,
            PairStatus.NOT_FOUND,
        ]
        with credcheck.open(url) as ranges:
            assert ranges.check("hunter2").count == 7
        done = subprocess.run(
            [sys.executable, "-m", "credcheck", "pairs", "check", "--api", url, "--json"],
            input=b"bob:hunter2\ncarol:hunter2\n",
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 1
        assert [json.loads(line)["status"] for line in done.stdout.decode().splitlines()] == ["exact", "not_found"]


@pytest.mark.parametrize("kind", ["granian", "gunicorn"])
def test_rate_limit_holds_across_workers(kind: str, files: dict[str, Path]) -> None:
    """With two worker processes, one address gets its burst once in all, not once per worker."""
    _skip_missing(kind)
    args = ["--pairs", str(files["pairs"]), "--key", str(files["key"]), "--rate-limit", "0.001", "--burst", "3"]
    with running(kind, *args) as url:
        codes = []
        for _ in range(8):  # a new connection each time: the workers share them out
            reply = requests.post(
                f"{url}/v1/pairs/query",
                data=query_body(5, 1),
                headers={"Content-Type": "application/json", "Connection": "close"},
                timeout=10,
            )
            codes.append(reply.status_code)
        assert codes.count(200) == 3 and codes.count(429) == 5
        assert reply.headers["Retry-After"].isdigit()


def test_pairs_alone(files: dict[str, Path]) -> None:
    """serve --pairs without --store answers the pair endpoints, and 404 for ranges (it serves none)."""
    with running("wsgiref", "--pairs", str(files["pairs"]), "--key", str(files["key"])) as url:
        config = requests.get(f"{url}/v1/pairs/config", timeout=10).json()
        assert config["key_id"] == load_key(files["key"]).key_id.hex()
        assert requests.get(f"{url}/range/ABCDE", timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("change", "message"),
    [("other-key", "key id"), ("readable", "accessible to group or others")],
)
def test_refuses_bad_key(files: dict[str, Path], tmp_path: Path, change: str, message: str) -> None:
    """serve refuses a key that is not the store's, or a key file others can read (exit 2, saying why)."""
    write_key(tmp_path / "k")
    if change == "readable":
        os.chmod(tmp_path / "k", 0o640)
    done = subprocess.run(
        [sys.executable, "-m", "credcheck", "serve", "--pairs", str(files["pairs"]), "--key", str(tmp_path / "k")],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2 and message in done.stderr.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "--store PATH and/or --pairs"), (["--pairs", "P"], "needs --key"), (["--key", "K"], "give --pairs")],
)
def test_serve_arguments(args: list[str], message: str) -> None:
    """serve needs a store or a pair store with its key."""
    done = subprocess.run([sys.executable, "-m", "credcheck", "serve", *args], capture_output=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr.decode()


class TestRouteTable:
    def test_pairs_beside_ranges(self, files: dict[str, Path]) -> None:
        """The range app's route table sends /v1/pairs/ to the pair service, any method, and the rest as before."""
        service = make_pair_service(files["pairs"], files["key"], rate=0)
        app = make_app([files["store"]], pairs=service)
        try:
            assert isinstance(app, RangeApp)
            replies: dict[str, str] = {}
            for name, env in {
                "query": environ(body=query_body(1, 2)),
                "config": environ("GET", "/v1/pairs/config"),
                "bad": environ(body=b"{}"),
                "preflight": environ("OPTIONS", "/v1/pairs/query"),
                "range": environ("GET", "/range/ABCDE"),
            }.items():
                started: list[tuple[str, list[tuple[str, str]]]] = []
                app(env, recording(started))
                replies[name] = started[0][0]
            assert replies == {
                "query": "200 OK",
                "config": "200 OK",
                "bad": "400 Bad Request",
                "preflight": "204 No Content",
                "range": "200 OK",
            }
        finally:
            app.close()
            service.close()

    def test_health_names_the_pair_store(self, files: dict[str, Path]) -> None:
        """/health says which key and how many buckets the pair service serves."""
        service = make_pair_service(files["pairs"], files["key"], rate=0)
        app = make_app([], pairs=service)
        try:
            body: list[bytes] = []
            body += app(environ("GET", "/health"), recording([]))
            state = json.loads(b"".join(body))
            assert state["status"] == "ok" and state["schemes"] == []
            assert state["pairs"]["key_id"] == service.key_id.hex() and state["pairs"]["bucket_bits"] == 8
        finally:
            app.close()
            service.close()

    def test_no_pair_store(self, files: dict[str, Path]) -> None:
        """A range server without a pair store answers 404 under /v1/pairs/."""
        app = make_app([files["store"]])
        try:
            started: list[tuple[str, list[tuple[str, str]]]] = []
            app(environ("GET", "/v1/pairs/config"), recording(started))
            assert [status for status, _ in started] == ["404 Not Found"]
        finally:
            app.close()

    def test_serve_in_background(self, files: dict[str, Path]) -> None:
        """serve_in_background takes a pair service alone."""
        service = make_pair_service(files["pairs"], files["key"], rate=0)
        with serve_in_background(pairs=service) as url, credcheck.open_pairs(url, retries=0) as checker:
            assert checker.check("bob", "hunter2").compromised
