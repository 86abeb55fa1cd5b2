"""The corpus version: an artefact's header digest, the same locally and from `credcheck serve` (the
X-Credcheck-Corpus header on range and pair answers, GET /v1/corpus), and what every checker reports of it."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import credcheck
from credcheck._artifact import corpus_version
from credcheck._http.corpus import corpus_flow, parse_versions
from credcheck._http.events import Request, Response
from credcheck._http.options import ClientOptions
from credcheck._http.retrying import Retrying
from credcheck.errors import RemoteError, RemoteErrorCode
from credcheck.pairs._service import make_pair_service
from credcheck.pairs.store import PairStore
from credcheck.server import make_app
from credcheck.store import RangeStore

from .helpers import KEY, call, wsgi_in_thread
from .pairs_fixtures import build_store, environ, query_body, write_key_file


def build_range_store(folder: Path, passwords: list[str], name: str = "pwned.store") -> Path:
    dump = folder / f"{name}.txt"
    dump.write_text("".join(f"{credcheck.sha1_hex(p)}:{n + 1}\n" for n, p in enumerate(passwords)))
    credcheck.build([dump], store=folder / name, filter=folder / f"{name}.bloom")
    return folder / name


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_range_store(tmp_path_factory.mktemp("corpus"), ["hunter2", "letmein"])


@pytest.fixture(scope="module")
def pair_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("corpus-pairs"))


@pytest.fixture(scope="module")
def served(store: Path, pair_store: Path) -> Iterator[str]:
    with make_pair_service(pair_store, KEY, rate=0) as pairs, wsgi_in_thread(make_app(store, pairs=pairs)) as (url, _):
        yield url


class TestArtefacts:
    def test_version_is_the_header_digest(self, store: Path) -> None:
        """A store's version is 16 hex digits of its header's digest, the same at every open."""
        with RangeStore(store) as one, RangeStore(store) as two:
            assert one.version == two.version == corpus_version(one.header)
            assert len(one.version) == 16 and int(one.version, 16) >= 0

    def test_a_rebuild_is_a_new_version(self, tmp_path: Path) -> None:
        """The same passwords built again (another build time) and a changed corpus both give new versions."""
        first = build_range_store(tmp_path, ["hunter2"], "a")
        time.sleep(1.1)  # the header holds the build time in seconds
        again = build_range_store(tmp_path, ["hunter2"], "b")
        other = build_range_store(tmp_path, ["hunter2", "dragon"], "c")
        versions = {credcheck.open(path).corpus_version() for path in (first, again, other)}
        assert len(versions) == 3

    def test_filters_have_their_own_version(self, store: Path) -> None:
        """An opened filter has its file's version; one made in memory has none."""
        bloom = credcheck.BloomFilter.open(f"{store}.bloom")
        assert bloom.version is not None and bloom.version != credcheck.open(store).corpus_version()
        assert credcheck.BloomFilter.create(10).version is None

    def test_a_pair_store_checker_has_the_stores_version(self, pair_store: Path, tmp_path: Path) -> None:
        with credcheck.open_pairs(pair_store, key=write_key_file(tmp_path)) as checker:
            assert checker.corpus_version() == PairStore(pair_store).version


class TestServer:
    def test_range_answers_name_the_corpus(self, store: Path) -> None:
        """Every range answer (200, padded, 304) carries X-Credcheck-Corpus: the served store's version."""
        app = make_app(store)
        version = RangeStore(store).version
        for headers in ({}, {"Add-Padding": "true"}, {"If-None-Match": "*"}):
            reply = call(app, "/range/ABCDE", headers=headers)
            assert reply.status in (200, 304)
            assert reply.headers["x-credcheck-corpus"] == version

    def test_corpus_endpoint_lists_every_store(self, store: Path, pair_store: Path) -> None:
        """GET /v1/corpus: each served scheme's version and the pair store's, never cached."""
        with make_pair_service(pair_store, KEY, rate=0) as pairs:
            reply = call(make_app(store, pairs=pairs), "/v1/corpus")
            assert reply.status == 200 and reply.headers["cache-control"] == "no-store"
            assert json.loads(reply.body) == {"ranges": {"sha1": RangeStore(store).version}, "pairs": pairs.version}

    def test_corpus_endpoint_without_pairs(self, store: Path) -> None:
        assert json.loads(call(make_app(store), "/v1/corpus").body)["pairs"] is None

    def test_pair_answers_name_the_corpus(self, pair_store: Path) -> None:
        """The pair config and every pair answer carry the pair store's version."""
        with make_pair_service(pair_store, KEY, rate=0) as service:
            status, headers, _ = service.respond(environ("GET", "/v1/pairs/config"))
            assert status == "200 OK" and ("X-Credcheck-Corpus", service.version) in headers
            status, headers, _ = service.respond(environ(body=query_body(0)))
            assert status == "200 OK" and ("X-Credcheck-Corpus", service.version) in headers

    def test_a_replaced_store_is_a_new_version(self, tmp_path: Path) -> None:
        """A new build renamed over a served store: the endpoint names its version once it is served."""
        path = build_range_store(tmp_path, ["hunter2"])
        app = make_app(path)
        before = json.loads(call(app, "/v1/corpus").body)["ranges"]["sha1"]
        newer = build_range_store(tmp_path, ["hunter2", "dragon"], "next")
        os.replace(newer, path)
        deadline = time.monotonic() + 20
        while (now := json.loads(call(app, "/v1/corpus").body)["ranges"].get("sha1")) in (before, None):
            assert time.monotonic() < deadline, "the new store was never served"
            time.sleep(0.05)
        assert now == RangeStore(path).version != before


class TestClients:
    def test_remote_checkers_report_the_served_version(self, served: str, store: Path, pair_store: Path) -> None:
        """A range checker and a pair checker of the service report what a local open of the same files does."""
        with credcheck.open(served) as remote:
            assert remote.corpus_version() == credcheck.open(store).corpus_version()
        with credcheck.open_pairs(served) as pairs:
            assert pairs.corpus_version() == PairStore(pair_store).version

    def test_async_checkers_agree(self, served: str) -> None:
        async def versions() -> tuple[str | None, str | None]:
            async with credcheck.open_async(served) as ranges, credcheck.open_async_pairs(served) as pairs:
                return await ranges.corpus_version(), await pairs.corpus_version()

        with credcheck.open(served) as ranges, credcheck.open_pairs(served) as pairs:
            assert asyncio.run(versions()) == (ranges.corpus_version(), pairs.corpus_version())

    def test_a_scheme_not_served_has_no_version(self, served: str) -> None:
        with credcheck.open(served, scheme="ntlm") as checker:
            assert checker.corpus_version() is None

    def test_an_api_without_versions_has_none(self) -> None:
        """A range API with no /v1/corpus (HIBP's answers 404) has no version: a site re-checks by interval."""

        def hibp_like(env: dict[str, Any], start: Any) -> list[bytes]:
            start("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
            return []

        with wsgi_in_thread(hibp_like) as (url, _), credcheck.open(url) as checker:
            assert checker.corpus_version() is None

    def test_a_failing_service_is_an_error_not_none(self) -> None:
        """A 503 (after retries) is a RemoteError: never taken for "this API keeps no versions"."""

        def down(env: dict[str, Any], start: Any) -> list[bytes]:
            start("503 Service Unavailable", [("Content-Length", "0")])
            return []

        with wsgi_in_thread(down) as (url, _), credcheck.open(url, retries=0) as checker:
            with pytest.raises(RemoteError) as caught:
                checker.corpus_version()
            assert caught.value.code is RemoteErrorCode.HTTP_STATUS

    def test_a_closed_checker_refuses(self, store: Path) -> None:
        checker = credcheck.open(store)
        checker.close()
        with pytest.raises(credcheck.errors.ClosedError):
            checker.corpus_version()


class TestFlow:
    """The sans-I/O flow, driven by hand."""

    @staticmethod
    def drive(response: Response) -> Any:
        flow = corpus_flow("https://ranges.example", "test", Retrying(ClientOptions(retries=0)), lambda: 0.0)
        request = next(flow)
        assert isinstance(request, Request)
        assert request.url == "https://ranges.example/v1/corpus"
        try:
            flow.send(response)
        except StopIteration as done:
            return done.value
        raise AssertionError("the flow asked for more")

    def test_reads_the_versions(self) -> None:
        body = b'{"ranges": {"sha1": "00112233aabbccdd"}, "pairs": null, "later": 1}'
        versions = self.drive(Response(200, {}, body))
        assert dict(versions.ranges) == {"sha1": "00112233aabbccdd"} and versions.pairs is None

    @pytest.mark.parametrize("status", [400, 404, 405, 410])
    def test_no_such_path_means_no_versions(self, status: int) -> None:
        assert self.drive(Response(status, {})) is None

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"[]",
            b'{"ranges": {}}',
            b'{"ranges": [], "pairs": null}',
            b'{"ranges": {"sha1": 7}, "pairs": null}',
            b'{"ranges": {"sha1": "bad version\\r\\nX-Injected: 1"}, "pairs": null}',
            b'{"ranges": {}, "pairs": ""}',
            b'{"ranges": {}, "pairs": "' + b"a" * 65 + b'"}',
        ],
    )
    def test_a_malformed_answer_is_an_error(self, body: bytes) -> None:
        with pytest.raises(RemoteError) as caught:
            parse_versions(body)
        assert caught.value.code is RemoteErrorCode.BAD_RESPONSE
