"""What a pair check puts on the wire, recorded byte for byte between the client and a real server on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import threading
import types
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest

import credcheck
from credcheck.errors import RemoteError
from credcheck.pairs import _oprf, _wire
from credcheck.pairs._service import PairService, make_pair_service
from credcheck.pairs.stretch import Stretch
from credcheck.server import serve_in_background

from .helpers import KEY
from .pairs_fixtures import build_store

USERNAME = "  Alice@Example.COM"
PASSWORD = "Summer2019"


class Recorder:
    """A TCP proxy on 127.0.0.1 that forwards to ``target`` and keeps every byte each way."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sent = bytearray()  # client -> server
        self.received = bytearray()  # server -> client
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink, log in ((client, upstream, self.sent), (upstream, client, self.received)):
                thread = threading.Thread(target=self._pipe, args=(source, sink, log), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pipe(self, source: socket.socket, sink: socket.socket, log: bytearray) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                with self._lock:
                    log.extend(data)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PairService]:
    with make_pair_service(build_store(tmp_path_factory.mktemp("wire")), KEY, rate=0) as svc:
        yield svc


@contextlib.contextmanager
def recorded(service: PairService) -> Iterator[tuple[str, Recorder]]:
    with serve_in_background(pairs=service) as url:
        address = re.match(r"http://([\d.]+):(\d+)", url)
        assert address is not None
        host, port = address.groups()
        recorder = Recorder((host, int(port)))
        try:
            yield f"http://127.0.0.1:{recorder.port}", recorder
        finally:
            recorder.close()


def independent_canon(username: str) -> bytes:
    """DESIGN.md's canon(u), written again here: NFKC, strip, casefold, UTF-8."""
    return unicodedata.normalize("NFKC", username).strip().casefold().encode("utf-8")


def independent_bucket(username: str, bits: int) -> int:
    """DESIGN.md's bucket, written again here: the top B bits of SHA-256(lp(label) || lp(canon(u)))."""
    label, name = b"credcheck-pairs-v1 bucket", independent_canon(username)
    digest = hashlib.sha256(len(label).to_bytes(2, "big") + label + len(name).to_bytes(2, "big") + name).digest()
    return int.from_bytes(digest, "big") >> (256 - bits)


def secrets_of(username: str, password: str, stretch: Stretch) -> dict[str, bytes]:
    """Everything that must never cross the wire, derived independently of the client."""
    canonical = independent_canon(username)
    sha1 = hashlib.sha1(password.encode()).digest()
    pair = stretch(b"\x01" + len(canonical).to_bytes(2, "big") + canonical + sha1)
    user = stretch(b"\x02" + len(canonical).to_bytes(2, "big") + canonical + bytes(20))
    return {
        "username": username.strip().encode(),
        "canonical username": canonical,
        "password": password.encode(),
        "sha1": sha1,
        "pair stretch": pair,
        "username stretch": user,
        "pair OPRF output": _oprf.evaluate(KEY.sk, pair),
        "username OPRF output": _oprf.evaluate(KEY.sk, user),
    }


def leaks(wire: bytes, secrets: dict[str, bytes]) -> list[str]:
    """The names of the secrets found on the wire in any form: raw, hex (either case), base64, a 5-hex prefix of hex."""
    found = []
    lowered = wire.lower()
    for name, value in secrets.items():
        forms = [value, value.hex().encode(), base64.b64encode(value), base64.urlsafe_b64encode(value)]
        if name not in ("username", "canonical username", "password"):
            forms.append(value.hex()[:10].encode())  # even a piece of a digest
        if any(form in wire for form in forms) or value.hex().encode() in lowered or value.lower() in lowered:
            found.append(name)
    return found


def queries(wire: bytes) -> list[dict[str, Any]]:
    """The JSON bodies of the pair queries in a recorded client stream."""
    return [json.loads(m.group(1)) for m in re.finditer(rb"\r\n\r\n(\{\"bucket\".*?\})", wire)]


def test_nothing_secret_crosses_the_wire(service: PairService) -> None:
    """No username, canonical username, password, SHA-1, stretch or OPRF output is sent or received, in any form."""
    with recorded(service) as (url, recorder), credcheck.open_pairs(url, retries=0) as checker:
        assert checker.check(USERNAME, PASSWORD).status.value == "exact"
        assert checker.check("bob", "something else").status.value == "username"
    assert service.store is not None
    secrets = secrets_of(USERNAME, PASSWORD, service.store.stretch)
    assert recorder.sent and recorder.received
    assert leaks(bytes(recorder.sent), secrets) == []
    assert leaks(bytes(recorder.received), secrets) == []


def test_bucket_is_the_documented_derivation(service: PairService) -> None:
    """The bucket sent is DESIGN.md's: the top B bits of SHA-256(lp(label) || lp(canon(u))), computed here anew."""
    with recorded(service) as (url, recorder), credcheck.open_pairs(url, retries=0) as checker:
        checker.check(USERNAME, PASSWORD)
        checker.check("Émile", "x")
    sent = queries(bytes(recorder.sent))
    assert service.store is not None
    bits = service.store.bucket_bits
    assert [q["bucket"] for q in sent] == [independent_bucket(USERNAME, bits), independent_bucket("Émile", bits)]
    assert all(set(q) == {"bucket", "elements"} for q in sent)


def test_same_pair_twice_sends_different_elements(service: PairService) -> None:
    """Two checks of one pair send unrelated blinded elements (fresh blinds), with the same bucket."""
    with recorded(service) as (url, recorder), credcheck.open_pairs(url, retries=0) as checker:
        checker.check(USERNAME, PASSWORD)
        checker.check(USERNAME, PASSWORD)
    first, second = queries(bytes(recorder.sent))
    assert first["bucket"] == second["bucket"]
    assert not set(first["elements"]) & set(second["elements"])


def test_mutation_sending_the_canonical_username_is_caught(
    service: PairService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that also sent the canonical username would be caught by the leak search above."""
    canonical = independent_canon(USERNAME).decode()

    def dumps(obj: object, **kwargs: Any) -> str:
        if isinstance(obj, dict) and "bucket" in obj:
            obj = {**obj, "user": canonical}
        return json.dumps(obj, **kwargs)

    monkeypatch.setattr(_wire, "json", types.SimpleNamespace(dumps=dumps, loads=json.loads))
    with (
        recorded(service) as (url, recorder),
        credcheck.open_pairs(url, retries=0) as checker,
        pytest.raises(RemoteError),  # the strict server refuses the extra field, but it has been sent
    ):
        checker.check(USERNAME, PASSWORD)
    assert service.store is not None
    assert "canonical username" in leaks(bytes(recorder.sent), secrets_of(USERNAME, PASSWORD, service.store.stretch))


def test_config_and_answer_shape(service: PairService) -> None:
    """What comes back is the config and the documented answer; the request bodies are the documented query."""
    with recorded(service) as (url, recorder), credcheck.open_pairs(url, retries=0) as checker:
        checker.check(USERNAME, PASSWORD)
    received = bytes(recorder.received)
    assert b'"protocol": "credcheck-pairs-v1"' in received
    assert re.search(rb'\{"key_id": "[0-9a-f]{16}", "evaluated": \["[0-9a-f]{64}", "[0-9a-f]{64}"\]', received)
    sent = bytes(recorder.sent)
    assert sent.startswith(b"GET /v1/pairs/config HTTP/1.1\r\n") and b"POST /v1/pairs/query HTTP/1.1\r\n" in sent
    assert b"Cookie" not in sent
