"""What the pair service's tests share: small pair stores, a service over them, and a real server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import io
import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from credcheck.pairs import _oprf
from credcheck.pairs.build import build_pairs
from credcheck.pairs.keys import KeyPair, _serialize

from .helpers import KEY, TINY, SerialExecutor, fixed_key, write_combo

OTHER_KEY = fixed_key(b"another key")
LEAKED = ["Alice@Example.com:Summer2019", "bob:hunter2", "bob:correct horse"]


def write_key_file(folder: Path, key: KeyPair = KEY) -> Path:
    """``key`` as a 0600 key file in ``folder`` (a local pair store's key, given by path)."""
    path = folder / "key"
    path.write_bytes(_serialize(key))
    path.chmod(0o600)
    return path


def build_store(folder: Path, *, key: KeyPair = KEY, username_entries: bool = True, name: str = "p") -> Path:
    """LEAKED as a pair store with 9 variants (and username entries unless told otherwise)."""
    combo = write_combo(folder / f"{name}.txt", LEAKED)
    out = folder / name
    build_pairs(
        combo, out, key, stretch=TINY, variants=9, username_entries=username_entries, executor=SerialExecutor()
    )  # fmt: skip
    return out


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Threading(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


@contextlib.contextmanager
def serving(app: Callable[..., Any]) -> Iterator[str]:
    """A threaded wsgiref server of ``app`` on 127.0.0.1; yields its base URL."""
    with make_server("127.0.0.1", 0, app, server_class=_Threading, handler_class=_Quiet) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_port}"
        finally:
            httpd.shutdown()
            thread.join()


def environ(
    method: str = "POST",
    path: str = "/v1/pairs/query",
    body: bytes = b"",
    *,
    content_type: str | None = "application/json",
    length: str | None = None,
    address: str = "192.0.2.1",
    **extra: str,
) -> dict[str, Any]:
    """A WSGI environ for one request (Content-Length from the body unless given; None leaves it out)."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "REMOTE_ADDR": address,
        "wsgi.input": io.BytesIO(body),
    }
    if content_type is not None:
        env["CONTENT_TYPE"] = content_type
    if length is None and method == "POST" and "HTTP_TRANSFER_ENCODING" not in extra:
        length = str(len(body))
    if length is not None:
        env["CONTENT_LENGTH"] = length
    env.update(extra)
    return env


def query_body(bucket: int, count: int = 1) -> bytes:
    """A well-formed query of ``count`` freshly blinded random elements."""
    elements = [_oprf.blind(bytes([n]) * 32)[1].hex() for n in range(count)]
    return json.dumps({"bucket": bucket, "elements": elements}).encode()
