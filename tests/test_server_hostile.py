"""The servers `serve` runs, under hostile clients: idle half-open sockets (slowloris), bad requests, logs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import credcheck
from credcheck.server import _runners as server
from credcheck.server import serve_in_background

from .helpers import running_server

DIGEST = hashlib.sha1(b"password").hexdigest().upper()
PARTIAL = b"GET /range/00000 HTTP/1.1\r\nHost: x\r\n"  # headers never finished


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    (root / "h.txt").write_text(f"{DIGEST}:5\n")
    credcheck.build([root / "h.txt"], store=root / "h.store")
    return root / "h.store"


@pytest.fixture
def many_files() -> Iterator[None]:
    """Room for a few thousand sockets in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if want < 4000:
        pytest.skip("the open files limit is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def idle_sockets(port: int, count: int, source: str = "127.0.0.2") -> Iterator[list[socket.socket]]:
    """``count`` connections from another loopback address, each with half a request's headers sent."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((source, 0))
            s.settimeout(30)
            s.connect(("127.0.0.1", port))
            s.sendall(PARTIAL)
            held.append(s)
        yield held
    finally:
        for s in held:
            s.close()


def status_line(s: socket.socket) -> bytes:
    return s.recv(256).split(b"\r\n", 1)[0]


class TestWsgiref:
    def test_one_address_cannot_take_every_connection(self, store: Path) -> None:
        """Past its per-address limit, an address's new connections get a 503 while another address is served."""
        with serve_in_background(store) as url:
            port = int(url.rsplit(":", 1)[1])
            with idle_sockets(port, server.WSGIREF_PER_ADDRESS), idle_sockets(port, 1) as extra:
                assert status_line(extra[0]) == b"HTTP/1.1 503 Service Unavailable"
                reply = requests.get(f"{url}/range/{DIGEST[:5]}", timeout=10)
                assert reply.status_code == 200

    def test_idle_connection_is_closed(self, store: Path) -> None:
        """A connection that sends nothing is closed by the server after its timeout (no thread held for ever)."""
        with serve_in_background(store) as url:
            port = int(url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                assert s.recv(256) == b""

    def test_timed_out_connection_leaves_no_trace_on_stderr(
        self, store: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A timed-out connection prints no traceback and no client address."""
        monkeypatch.setattr(server._QuietHandler, "timeout", 0.2)
        with serve_in_background(store) as url:
            port = int(url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(PARTIAL)
                s.recv(256)
            time.sleep(0.3)  # let the handler thread finish its error handling
        err = capfd.readouterr().err
        assert "127.0.0.1" not in err
        assert "Traceback" not in err


def test_granian_answers_while_thousands_of_idle_sockets_are_held(store: Path, many_files: None) -> None:
    """1,500 half-open connections from one address (more than granian's default 512 a worker) leave it answering."""
    pytest.importorskip("granian")
    with running_server("granian", [store]) as running:
        port = int(running.url.rsplit(":", 1)[1])
        with idle_sockets(port, 1500):
            reply = requests.get(f"{running.url}/range/{DIGEST[:5]}", timeout=10)
            assert reply.status_code == 200


@pytest.mark.parametrize("request_line", [b"\x00\x01 nonsense", b"GET /range/C0FFE?token=s3cret HTTP/1.1 junk"])
def test_gunicorn_logs_no_client_address_on_a_bad_request(store: Path, request_line: bytes) -> None:
    """gunicorn's "Invalid request from ip=..." warning reaches the log without the address, and without the
    request line it quotes (it may hold a prefix and a query string)."""
    pytest.importorskip("gunicorn")
    with running_server("gunicorn", [store]) as running:
        port = int(running.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(request_line + b"\r\n\r\n")
            assert status_line(s).startswith(b"HTTP/1.1 400")
        running.stop()
    (warning,) = [json.loads(line)["msg"] for line in running.stderr if "Invalid request" in line]
    assert "127.0.0.1" not in warning  # the warning is still there, without who sent it ...
    assert not any(sent in warning for sent in ("nonsense", "C0FFE", "s3cret"))  # ... or what
