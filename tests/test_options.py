"""ClientOptions: one frozen object of a client's settings, checked once, that every client, flow and driver takes."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest
import requests

import credcheck
from credcheck import ClientOptions, Timeout
from credcheck.aio import AsyncRangeClient
from credcheck.checker import RemoteChecker
from credcheck.client import RangeClient
from credcheck.errors import RemoteError, RemoteErrorCode
from credcheck.mirror import MIRROR_OPTIONS, mirror
from credcheck.pair_client import PairClient
from credcheck.store import RangeStore

SUFFIX = "1E4C9B93F3F0682250B6CF8331B7EE68FD8"  # of SHA-1("password"), prefix 5BAA6


class TestTheObject:
    def test_defaults(self) -> None:
        """The defaults are a partner site's: 3 s per connect and read, 5 s a call, 3 retries, padding."""
        options = ClientOptions()
        assert (options.timeout, options.deadline, options.retries, options.padding) == (Timeout(3.0), 5.0, 3, True)
        assert (options.cache, options.pool_size, options.tls, options.user_agent) == (0, 10, None, None)

    def test_frozen(self) -> None:
        """An options object cannot change under the clients that share it."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            ClientOptions().retries = 5  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("given", "timeout"),
        [(1.5, Timeout(1.5, 1.5)), ((1, 4), Timeout(1.0, 4.0)), (Timeout(2.0), Timeout(2.0, 2.0))],
    )
    def test_timeout_as_people_write_it(self, given: Any, timeout: Timeout) -> None:
        """A number, a (connect, read) pair or a Timeout: one Timeout."""
        assert ClientOptions(timeout=given).timeout == timeout

    @pytest.mark.parametrize(("given", "entries"), [(True, 128), (False, 0), (7, 7)])
    def test_cache_as_people_write_it(self, given: bool | int, entries: int) -> None:
        """cache=True keeps 128 ranges, False none, a number that many."""
        assert ClientOptions(cache=given).cache == entries

    @pytest.mark.parametrize(
        ("settings", "named"),
        [
            ({"timeout": 0}, "timeout"),
            ({"timeout": (1, 2, 3)}, "timeout"),
            ({"deadline": -1}, "deadline"),
            ({"retries": True}, "retries"),
            ({"backoff_factor": -1}, "backoff_factor"),
            ({"max_backoff": -1}, "max_backoff"),
            ({"cache": "yes"}, "cache"),
            ({"pool_size": 0}, "pool_size"),
            ({"deadline": None}, "attempt_deadline"),
        ],
    )
    def test_bad_setting_named(self, settings: dict[str, Any], named: str) -> None:
        """A setting that cannot be used is a ValueError naming it, when the object is made."""
        with pytest.raises(ValueError, match=named):
            ClientOptions(**settings)

    @pytest.mark.parametrize("settings", [{"user_agent": 3}, {"tls": "on"}])
    def test_wrong_type_named(self, settings: dict[str, Any]) -> None:
        """A setting of the wrong kind is a TypeError naming it."""
        with pytest.raises(TypeError, match=next(iter(settings))):
            ClientOptions(**settings)

    def test_keywords_on_top_of_an_object(self) -> None:
        """Keywords a person gives change only those fields of the object given."""
        base = ClientOptions(retries=0, padding=False)
        options = ClientOptions.of(base, {"timeout": 1.0})
        assert (options.retries, options.padding, options.timeout) == (0, False, Timeout(1.0))


class TestOneObjectTravels:
    def test_the_client_flow_and_driver_share_it(self) -> None:
        """The object a client is given is the one its protocol and retry policy read."""
        options = ClientOptions(retries=1, cache=4)
        with RangeClient(options=options) as client:
            assert client.options is options and client.protocol.options is options
            assert client.protocol.retrying.options is options

    def test_open_passes_it_whole(self) -> None:
        """credcheck.open(url, options=...) hands the object itself to the client."""
        options = ClientOptions(deadline=9.0)
        with credcheck.open("https://ranges.example", options=options) as checker:
            assert isinstance(checker, RemoteChecker) and isinstance(checker.client, RangeClient)
            assert checker.client.options is options

    def test_async_client_reads_the_same(self) -> None:
        """The async client takes the same object and the same keywords."""
        client = AsyncRangeClient(timeout=(1, 2), retries=0)
        assert client.options == ClientOptions(timeout=Timeout(1, 2), retries=0)

    @pytest.mark.parametrize("option", ["padding", "cache"])
    def test_a_pair_client_refuses_range_options(self, option: str) -> None:
        """padding and cache mean nothing to a pair service: a TypeError, as an unknown keyword is."""
        with pytest.raises(TypeError, match=option):
            PairClient("https://pairs.example", **{option: True})  # type: ignore[arg-type]

    def test_unknown_keyword(self) -> None:
        """A keyword that is no client setting is a TypeError naming it."""
        with pytest.raises(TypeError, match="colour"):
            RangeClient(colour="blue")  # type: ignore[call-arg]

    def test_mirror_refuses_keywords_it_no_longer_takes(self, tmp_path: Path) -> None:
        """The mirror's HTTP settings are one object: options=, not retries=/timeout=/deadline=."""
        with pytest.raises(TypeError):
            mirror("http://127.0.0.1:9", store=tmp_path / "m.store", retries=1)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="ClientOptions"):
            mirror("http://127.0.0.1:9", store=tmp_path / "m.store", options={"retries": 1})  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# tls= reaches every driver: requests, httpx and http.client (the mirror's), against a server on 127.0.0.1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _ranges(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = f"{SUFFIX}:42".encode() if environ["PATH_INFO"].upper().endswith("5BAA6") else b""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture(scope="module")
def https_url(certificate: tuple[Path, Path]) -> Iterator[str]:
    """A range API over TLS on 127.0.0.1 (its certificate trusted by no default store)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with make_server("127.0.0.1", 0, _ranges, handler_class=_Quiet) as httpd:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"https://127.0.0.1:{httpd.server_port}"
        finally:
            httpd.shutdown()
            thread.join()


@pytest.fixture(scope="module")
def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A context that trusts the test certificate and nothing else."""
    return ssl.create_default_context(cafile=str(certificate[0]))


FAST: dict[str, Any] = {"retries": 0, "timeout": 2.0, "deadline": 2.0}


class TestTLS:
    def test_requests_driver(self, https_url: str, trusting: ssl.SSLContext) -> None:
        """RangeClient verifies the server with the context given, and only then answers."""
        with RangeClient(https_url, tls=trusting, **FAST) as client:
            assert client.get_range("5BAA6") == {SUFFIX: 42}

    def test_requests_driver_trusts_only_the_context(self, https_url: str, certificate: tuple[Path, Path]) -> None:
        """The context is used as given: requests' own CA bundle is not loaded into it (a private CA stays the
        only one trusted)."""
        context = ssl.create_default_context(cafile=str(certificate[0]))
        before = context.cert_store_stats()
        with RangeClient(https_url, tls=context, **FAST) as client:
            client.get_range("5BAA6")
        assert context.cert_store_stats() == before

    def test_requests_driver_without_it(self, https_url: str) -> None:
        """Without the context the certificate is refused: a TLS failure, not retried."""
        with RangeClient(https_url, **FAST) as client, pytest.raises(RemoteError, match="TLS") as caught:
            client.get_range("5BAA6")
        assert caught.value.code is RemoteErrorCode.CONNECTION

    def test_httpx_driver(self, https_url: str, trusting: ssl.SSLContext) -> None:
        """AsyncRangeClient verifies the server with the context given."""

        async def go() -> dict[str, int]:
            async with AsyncRangeClient(https_url, tls=trusting, **FAST) as client:
                return await client.get_range("5BAA6")

        assert asyncio.run(go()) == {SUFFIX: 42}

    def test_httpx_driver_without_it(self, https_url: str) -> None:
        """Without the context the async client refuses the certificate too."""

        async def go() -> None:
            async with AsyncRangeClient(https_url, **FAST) as client:
                await client.get_range("5BAA6")

        with pytest.raises(RemoteError, match="TLS"):
            asyncio.run(go())

    def test_open_takes_it(self, https_url: str, trusting: ssl.SSLContext) -> None:
        """credcheck.open(url, tls=...) reaches the client."""
        with credcheck.open(https_url, tls=trusting, **FAST) as checker:
            assert checker.check("password") == credcheck.Exposure(True, 42)

    def test_not_beside_a_session_given(self, trusting: ssl.SSLContext) -> None:
        """A session passed in keeps its own TLS: tls= beside it is a ValueError, not a setting silently dropped."""
        with pytest.raises(ValueError, match="tls"):
            RangeClient(session=requests.Session(), tls=trusting)
        with pytest.raises(ValueError, match="tls"):
            AsyncRangeClient(session=httpx.AsyncClient(), tls=trusting)

    def test_mirror_driver(self, https_url: str, trusting: ssl.SSLContext, tmp_path: Path) -> None:
        """The mirror's http.client driver verifies the server with the options' context."""
        options = dataclasses.replace(MIRROR_OPTIONS, tls=trusting, retries=0)
        mirror(https_url, store=tmp_path / "m.store", prefixes=[0x5BAA6], options=options)
        with RangeStore(tmp_path / "m.store") as store:
            assert store.rows == 1

    def test_mirror_driver_without_it(self, https_url: str, tmp_path: Path) -> None:
        """Without the context the mirror stops with a TLS failure and writes nothing."""
        options = dataclasses.replace(MIRROR_OPTIONS, retries=0)
        with pytest.raises(RemoteError, match="TLS"):
            mirror(https_url, store=tmp_path / "m.store", prefixes=[0x5BAA6], options=options)
        assert not (tmp_path / "m.store").exists()
