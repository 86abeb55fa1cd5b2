"""Pair checks over a real pair service on 127.0.0.1: right answers, and a RemoteError (never NOT_FOUND) otherwise."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import credcheck
from credcheck.cli import main
from credcheck.errors import RemoteError, RemoteErrorCode
from credcheck.pairs import _oprf
from credcheck.pairs._service import PairService, make_pair_service
from credcheck.pairs.checker import PairChecker, PairStatus, RemotePairChecker, StorePairChecker

from .helpers import KEY, recording, secrets_in_frames
from .pairs_fixtures import OTHER_KEY, build_store, serving

FAST: dict[str, Any] = {"retries": 0, "timeout": 2.0, "deadline": 2.0}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pairs-remote")


@pytest.fixture(scope="module")
def service(folder: Path) -> Iterator[PairService]:
    with make_pair_service(build_store(folder), KEY, rate=0) as svc:
        yield svc


@pytest.fixture(scope="module")
def other_service(folder: Path) -> Iterator[PairService]:
    with make_pair_service(build_store(folder, key=OTHER_KEY, name="other"), OTHER_KEY, rate=0) as svc:
        yield svc


@pytest.fixture(scope="module")
def url(service: PairService) -> Iterator[str]:
    with serving(service) as base:
        yield base


Rewrite = Callable[[dict[str, Any]], dict[str, Any]]


def rewriting(inner: Any, rewrite: Rewrite) -> Any:
    """A WSGI app that passes requests to ``inner`` and rewrites the JSON of each query answer it sends back."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        started: list[tuple[str, list[tuple[str, str]]]] = []
        body = b"".join(inner(environ, recording(started)))
        status, headers = started[0]
        if environ["PATH_INFO"].endswith("/query") and status.startswith("200"):
            body = json.dumps(rewrite(json.loads(body))).encode()
        headers = [(n, v) for n, v in headers if n != "Content-Length"]
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return app


class TestAnswers:
    @pytest.mark.parametrize(
        ("username", "password", "status"),
        [
            ("Alice@Example.com", "Summer2019", PairStatus.EXACT),
            ("  ALICE@example.COM ", "Summer2019", PairStatus.EXACT),
            ("alice@example.com", "summer2019", PairStatus.SIMILAR),
            ("bob", "something else", PairStatus.USERNAME),
            ("carol", "hunter2", PairStatus.NOT_FOUND),
        ],
    )
    def test_status(self, url: str, username: str, password: str, status: PairStatus) -> None:
        """A pair service answers exact, similar, username only and not found as the local checker does."""
        with credcheck.open_pairs(url, **FAST) as checker:
            assert isinstance(checker, RemotePairChecker) and not isinstance(checker, StorePairChecker)
            assert isinstance(checker, PairChecker)  # the one contract
            assert checker.check(username, password).status is status

    def test_same_as_local(self, url: str, folder: Path) -> None:
        """The remote checker and the local one agree on every pair."""
        pairs = [("bob", "hunter2"), ("bob", "hunter3"), ("Bob", "correct horse"), ("dave", "x")]
        with credcheck.open_pairs(url, **FAST) as remote, credcheck.open_pairs(folder / "p", key=KEY) as local:
            assert remote.check_many(pairs) == local.check_many(pairs)

    def test_check_hash(self, url: str) -> None:
        """check_hash takes the password's SHA-1 in hex."""
        with credcheck.open_pairs(url, **FAST) as checker:
            assert checker.check_hash("bob", hashlib.sha1(b"hunter2").hexdigest().upper()).compromised

    def test_pinned_public_key(self, url: str) -> None:
        """A pinned public key (hex) that is the server's works."""
        with credcheck.open_pairs(url, public_key=KEY.pk.hex(), **FAST) as checker:
            assert checker.check("bob", "hunter2").status is PairStatus.EXACT

    def test_config_fetched_once(self, service: PairService) -> None:
        """The config is asked for once per checker, however many checks follow."""
        paths: list[str] = []

        def counting(environ: dict[str, Any], start_response: Any) -> Any:
            paths.append(environ["PATH_INFO"])
            return service(environ, start_response)

        with serving(counting) as base, credcheck.open_pairs(base, **FAST) as checker:
            checker.check_many([("bob", "a"), ("bob", "b"), ("carol", "c")])
        assert paths.count("/v1/pairs/config") == 1 and paths.count("/v1/pairs/query") == 3

    def test_no_username_entries(self, folder: Path) -> None:
        """Against a store without username entries, one element is sent and a known username is NOT_FOUND."""
        with (
            make_pair_service(build_store(folder, username_entries=False, name="plain"), KEY, rate=0) as svc,
            serving(svc) as base,
            credcheck.open_pairs(base, **FAST) as checker,
        ):
            assert checker.check("bob", "hunter2").status is PairStatus.EXACT
            assert checker.check("bob", "other").status is PairStatus.NOT_FOUND


def _flip(hex_text: str, at: int = 0) -> str:
    raw = bytearray(bytes.fromhex(hex_text))
    raw[at] ^= 1
    return raw.hex()


class TestNeverNotFound:
    def test_wrong_pinned_key(self, url: str) -> None:
        """A pinned key that is not the server's is a RemoteError before any query."""
        with (
            credcheck.open_pairs(url, public_key=OTHER_KEY.pk, **FAST) as checker,
            pytest.raises(RemoteError, match="not the pinned one"),
        ):
            checker.check("bob", "hunter2")

    def test_tampered_evaluated(self, service: PairService) -> None:
        """An evaluated element replaced by another valid element fails the proof: RemoteError."""
        other = _oprf.blind(b"other")[1].hex()
        app = rewriting(service, lambda doc: {**doc, "evaluated": [other, *doc["evaluated"][1:]]})
        with (
            serving(app) as base,
            credcheck.open_pairs(base, **FAST) as checker,
            pytest.raises(RemoteError, match="proof does not verify") as caught,
        ):
            checker.check("bob", "hunter2")
        assert caught.value.code is RemoteErrorCode.BAD_RESPONSE

    @pytest.mark.parametrize("at", [0, 31, 32, 63])
    def test_tampered_proof(self, service: PairService, at: int) -> None:
        """A proof with one bit flipped (in c or in s) is a RemoteError."""
        app = rewriting(service, lambda doc: {**doc, "proof": _flip(doc["proof"], at)})
        with (
            serving(app) as base,
            credcheck.open_pairs(base, **FAST) as checker,
            pytest.raises(RemoteError, match="proof"),
        ):
            checker.check("bob", "hunter2")

    def test_second_server_with_another_key(self, service: PairService, other_service: PairService) -> None:
        """After the key is pinned, a server with another key (the same URL, a swapped backend) is a RemoteError."""
        backend = [service]

        def switching(environ: dict[str, Any], start_response: Any) -> Any:
            return backend[0](environ, start_response)

        with serving(switching) as base, credcheck.open_pairs(base, **FAST) as checker:
            assert checker.check("bob", "hunter2").status is PairStatus.EXACT
            backend[0] = other_service
            with pytest.raises(RemoteError, match="key id"):
                checker.check("bob", "hunter2")
            backend[0] = rewriting(other_service, lambda doc: {**doc, "key_id": KEY.key_id.hex()})
            with pytest.raises(RemoteError, match="proof does not verify"):
                checker.check("bob", "hunter2")

    @pytest.mark.parametrize(
        "rewrite",
        [
            lambda doc: {**doc, "entries": doc["entries"][:-4]},
            lambda doc: {**doc, "entries": base64.b64encode(base64.b64decode(doc["entries"])[17:]).decode()},
            lambda doc: {**doc, "entries": base64.b64encode(base64.b64decode(doc["entries"])[::-1]).decode()},
            lambda doc: {**doc, "entries": ""},
            lambda doc: {**doc, "entries": "!" + doc["entries"][1:]},
            lambda doc: {**doc, "evaluated": doc["evaluated"][:1]},
            lambda doc: {**doc, "evaluated": [*doc["evaluated"], doc["evaluated"][0]]},
            lambda doc: {**doc, "evaluated": ["00" * 32, *doc["evaluated"][1:]]},
            lambda doc: {**doc, "proof": doc["proof"][:-2]},
            lambda doc: {**doc, "extra": 1},
            lambda doc: {k: v for k, v in doc.items() if k != "key_id"},
            lambda doc: [doc],
        ],
        ids=[
            "cut-base64",
            "one-entry-less",
            "unsorted",
            "empty-bucket",
            "bad-base64",
            "fewer-evaluated",
            "more-evaluated",
            "identity",
            "short-proof",
            "extra-field",
            "missing-field",
            "not-an-object",
        ],
    )
    def test_malformed_answer(self, service: PairService, rewrite: Rewrite) -> None:
        """An answer that is not exactly the documented JSON, or whose bucket does not parse, is a RemoteError."""
        with (
            serving(rewriting(service, rewrite)) as base,
            credcheck.open_pairs(base, **FAST) as checker,
            pytest.raises(RemoteError) as caught,
        ):
            checker.check("bob", "hunter2")
        assert caught.value.code is RemoteErrorCode.BAD_RESPONSE

    def test_not_json(self) -> None:
        """A 200 that is an HTML page is a RemoteError."""

        def html(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", "6")])
            return [b"<html>"]

        with (
            serving(html) as base,
            credcheck.open_pairs(base, **FAST) as checker,
            pytest.raises(RemoteError, match="config is not JSON"),
        ):
            checker.check("bob", "hunter2")

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"key_id": "00" * 8}, "key id is not the id"),
            ({"mode": "oprf"}, "does not speak"),
            ({"bucket_bits": 25}, "bucket_bits"),
            ({"bucket_bits": True}, "bucket_bits"),
            ({"stretch": {"name": "scrypt", "n": 1 << 17, "r": 8, "p": 1}}, "more than this client allows"),
            ({"stretch": {"name": "scrypt", "n": 3, "r": 1, "p": 1}}, "impossible stretch"),
            ({"stretch": {"name": "argon2", "n": 16, "r": 1, "p": 1}}, "stretch must be"),
            ({"username_entries": 1}, "username_entries"),
            ({"public_key": "00" * 32}, "identity"),
        ],
    )
    def test_bad_config(self, service: PairService, change: dict[str, Any], message: str) -> None:
        """A config that is not credcheck-pairs-v1 as documented is a RemoteError naming what is wrong."""
        config = {**json.loads(service.config), **change}

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            if environ["PATH_INFO"].endswith("/config"):
                body = json.dumps(config).encode()
                start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
                return [body]
            return service(environ, start_response)

        with (
            serving(app) as base,
            credcheck.open_pairs(base, **FAST) as checker,
            pytest.raises(RemoteError, match=message),
        ):
            checker.check("bob", "hunter2")

    def test_timeout(self, service: PairService) -> None:
        """A server slower than the deadline is a RemoteError (TIMEOUT)."""

        def slow(environ: dict[str, Any], start_response: Any) -> Any:
            if environ["PATH_INFO"].endswith("/query"):
                time.sleep(1.5)
            return service(environ, start_response)

        with (
            serving(slow) as base,
            credcheck.open_pairs(base, retries=0, timeout=0.5, deadline=0.5) as checker,
            pytest.raises(RemoteError) as caught,
        ):
            checker.check("bob", "hunter2")
        assert caught.value.code is RemoteErrorCode.TIMEOUT

    def test_http_400_not_retried(self, service: PairService) -> None:
        """A 400 from the service is a RemoteError at once (HTTP_STATUS), not a retry loop."""
        calls: list[str] = []

        def refusing(environ: dict[str, Any], start_response: Any) -> Any:
            if environ["PATH_INFO"].endswith("/query"):
                calls.append("query")
                start_response("400 Bad Request", [("Content-Length", "0")])
                return [b""]
            return service(environ, start_response)

        with (
            serving(refusing) as base,
            credcheck.open_pairs(base, retries=3, backoff_factor=0) as checker,
            pytest.raises(RemoteError) as caught,
        ):
            checker.check("bob", "hunter2")
        assert caught.value.code is RemoteErrorCode.HTTP_STATUS and calls == ["query"]

    def test_429_retried_after_retry_after(self, service: PairService) -> None:
        """A 429 is retried (the range client's retry policy) and the next answer is used."""
        calls: list[str] = []

        def limited(environ: dict[str, Any], start_response: Any) -> Any:
            if environ["PATH_INFO"].endswith("/query"):
                calls.append("query")
                if len(calls) == 1:
                    start_response("429 Too Many Requests", [("Retry-After", "0"), ("Content-Length", "0")])
                    return [b""]
            return service(environ, start_response)

        with serving(limited) as base, credcheck.open_pairs(base, retries=2) as checker:
            assert checker.check("bob", "hunter2").status is PairStatus.EXACT
        assert calls == ["query", "query"]

    def test_dead_server(self, dead_api: str) -> None:
        """Nothing listening is a RemoteError (CONNECTION)."""
        with credcheck.open_pairs(dead_api, **FAST) as checker, pytest.raises(RemoteError) as caught:
            checker.check("bob", "hunter2")
        assert caught.value.code is RemoteErrorCode.CONNECTION


class TestOptions:
    def test_key_for_a_url(self, url: str) -> None:
        """key= with a URL is a TypeError (a service holds its own key)."""
        with pytest.raises(TypeError, match="public_key"):
            credcheck.open_pairs(url, key=KEY)

    def test_no_key_for_a_path(self, tmp_path: Path) -> None:
        """A local store without key= is a TypeError."""
        with pytest.raises(TypeError, match="needs key"):
            credcheck.open_pairs(tmp_path / "p")

    def test_repr_has_no_secret(self, url: str) -> None:
        """The repr names the URL (without credentials) and the key id."""
        with credcheck.open_pairs(url.replace("http://", "http://user:pw@"), **FAST) as checker:
            checker.check("bob", "x")
            assert "pw@" not in repr(checker) and KEY.key_id.hex() in repr(checker)


def _cli(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: bytes) -> int:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    return main(argv)


class TestCLI:
    def test_answers(self, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        """pairs check --api URL answers each username:password line; exit 1 when one is compromised."""
        lines = b"Alice@Example.com:Summer2019\nalice@example.com:summer2019\nbob:nope\ncarol:x\n"
        assert _cli(["pairs", "check", "--api", url, "--json"], monkeypatch, lines) == 1
        statuses = [json.loads(line)["status"] for line in capsys.readouterr().out.splitlines()]
        assert statuses == ["exact", "similar", "username", "not_found"]

    def test_none_compromised(self, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Exit 0 when no pair is compromised."""
        assert _cli(["pairs", "check", "--api", url], monkeypatch, b"carol:x\nbob:nope\n") == 0

    def test_wrong_key_exit_2(
        self, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A pinned --public-key that is not the server's is exit 2 with the reason, no secret printed."""
        argv = ["pairs", "check", "--api", url, "--public-key", OTHER_KEY.pk.hex()]
        assert _cli(argv, monkeypatch, b"bob:hunter2\n") == 2
        err = capsys.readouterr().err
        assert "pinned" in err and "hunter2" not in err and "bob" not in err

    def test_tampered_exit_2(self, service: PairService, monkeypatch: pytest.MonkeyPatch) -> None:
        """A tampered proof is exit 2, never a 'not found' line."""
        app = rewriting(service, lambda doc: {**doc, "proof": _flip(doc["proof"])})
        with serving(app) as base:
            assert _cli(["pairs", "check", "--api", base, "--timeout", "2"], monkeypatch, b"bob:hunter2\n") == 2

    def test_key_with_url(self, url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """--key with a pair service is refused (exit 2)."""
        assert _cli(["pairs", "check", "--api", url, "--key", str(tmp_path / "k")], monkeypatch, b"") == 2

    def test_subprocess(self, url: str) -> None:
        """The installed command answers over a real server from another process."""
        done = subprocess.run(
            [sys.executable, "-m", "credcheck", "pairs", "check", "--api", url],
            input=b"bob:hunter2\n",
            capture_output=True,
            timeout=60,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        assert done.returncode == 1 and done.stdout.decode().startswith("compromised")


def test_remote_errors_carry_no_secret_in_frames(service: PairService) -> None:
    """A RemoteError from a remote pair check holds no frame whose locals hold the username or password."""
    app = rewriting(service, lambda doc: {**doc, "proof": _flip(doc["proof"])})
    with serving(app) as base, credcheck.open_pairs(base, **FAST) as checker:
        try:
            checker.check("secret-user@example.com", "secret-password-123")
        except RemoteError as exc:
            error: BaseException = exc
        else:
            raise AssertionError("no RemoteError")
    assert (
        secrets_in_frames(error, ["secret-user", b"secret-user", "secret-password-123", b"secret-password-123"]) == []
    )


_names = st.sampled_from(["Alice@Example.com", " alice@example.com", "bob", "BOB ", "carol", "ǅemo"]) | st.text(
    min_size=1, max_size=12
).filter(lambda text: text.strip() != "")
_passwords = st.sampled_from(["Summer2019", "summer2019", "Summer201", "hunter2", "correct horse"]) | st.text(
    max_size=12
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(_names, _passwords), min_size=1, max_size=3))
def test_remote_agrees_with_local(url: str, folder: Path, pairs: list[tuple[str, str]]) -> None:
    """For any usernames and passwords, the pair service and the local store give the same answers."""
    with credcheck.open_pairs(url, **FAST) as remote, credcheck.open_pairs(folder / "p", key=KEY) as local:
        try:
            expected = local.check_many(pairs)
        except credcheck.InputError:  # a username that is not one (a lone surrogate...): both refuse it
            with pytest.raises(credcheck.InputError):
                remote.check_many(pairs)
            return
        assert remote.check_many(pairs) == expected
