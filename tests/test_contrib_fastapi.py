"""The FastAPI integration: a real FastAPI app called through httpx's ASGITransport, against a real range API and
a real pair service on 127.0.0.1, under each failure policy."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel

import credcheck
from credcheck.contrib import _passwords, _policy
from credcheck.contrib._pairs import PairCompromiseCheck
from credcheck.contrib.fastapi import PairCheck, PasswordCheck
from credcheck.pairs._service import make_pair_service
from credcheck.pairs.stretch import Stretch
from credcheck.server import serve_in_background

from .conftest import FAST, UNLEAKED, Corpus, leak_logs
from .helpers import (
    KEY,
    closing_shared_checks,
    hold_in_thread,
    secrets_in_frames,
    secrets_in_threads,
    slow_pair_reads,
)
from .pairs_fixtures import build_store, write_key_file

_T = TypeVar("_T")
UNCHECKED = "This password could not be checked against known data breaches. Please try again later."


def run(coroutine: Awaitable[_T]) -> _T:
    async def main() -> _T:
        return await coroutine

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def _close_shared_checks() -> Iterator[None]:
    yield
    _policy.close_shared()


class SignUp(BaseModel):
    username: str
    password: str


def make_app(passwords: PasswordCheck | None = None, pairs: PairCheck | None = None) -> FastAPI:
    """A sign-up view that validates the password with each check given, and a log-in view that reports the pair."""
    app = FastAPI()
    password_check = passwords or PasswordCheck()
    pair_check = pairs or PairCheck(source="http://127.0.0.1:9")

    @app.post("/sign-up")
    async def sign_up(
        form: SignUp,
        # Defaults, not Annotated: with postponed annotations FastAPI would evaluate them in the module's globals.
        check: PasswordCheck = Depends(password_check),  # noqa: B008
        pair: PairCheck = Depends(pair_check),  # noqa: B008
    ) -> dict[str, Any]:
        result = await check.validate(form.password)
        if pairs is not None:
            await pair.validate(form.username, form.password)
        return {"count": result.count, "checked_by": result.checked_by}

    @app.post("/log-in")
    async def log_in(form: SignUp, pair: PairCheck = Depends(pair_check)) -> dict[str, Any]:  # noqa: B008
        result = await pair.check(form.username, form.password)
        return {"pair": result.label}

    return app


def post(app: FastAPI, path: str, password: str, username: str = "carol") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://site.test") as client:
            return await client.post(path, json={"username": username, "password": password})

    return run(go())


def refusal(response: httpx.Response) -> tuple[str, str]:
    """The message and type of a 422 refusal of the password field."""
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["body", "password"]
    return detail["msg"], detail["type"]


class TestPasswords:
    def test_range_api_refuses_with_count(self, range_api: str) -> None:
        """A leaked password is a 422 naming its count (over httpx, from a real range API), never the password."""
        response = post(make_app(PasswordCheck(range_api)), "/sign-up", "iloveyou")
        assert refusal(response) == ("This password has appeared in a data breach 3 times.", "password_compromised")
        assert "iloveyou" not in response.text and credcheck.sha1_hex("iloveyou")[:5] not in response.text

    def test_unleaked_passes(self, range_api: str) -> None:
        """An unleaked password reaches the view, checked by the source."""
        response = post(make_app(PasswordCheck(range_api)), "/sign-up", UNLEAKED)
        assert response.status_code == 200 and response.json() == {"count": 0, "checked_by": "source"}

    @pytest.mark.parametrize(
        ("min_count", "password", "refused"), [(10, "password", False), (9, "password", True), (2, "letmein!", False)]
    )
    def test_min_count(self, range_api: str, min_count: int, password: str, refused: bool) -> None:
        """min_count lets passwords seen fewer times through."""
        response = post(make_app(PasswordCheck(range_api, min_count=min_count)), "/sign-up", password)
        assert (response.status_code == 422) is refused

    @pytest.mark.parametrize("kind", ["store", "filter"])
    def test_local_sources(self, corpus: Corpus, kind: str) -> None:
        """A local store or filter answers inline, with the sync checker."""
        source = corpus.store if kind == "store" else corpus.filter
        message, _ = refusal(post(make_app(PasswordCheck(source)), "/sign-up", "iloveyou"))
        assert message == (
            "This password has appeared in a data breach 3 times."
            if kind == "store"
            else "This password has appeared in a data breach."
        )

    def test_reject_is_the_default(self, dead_api: str) -> None:
        """A dead range API refuses the password as unchecked."""
        response = post(make_app(PasswordCheck(dead_api, **FAST)), "/sign-up", UNLEAKED)
        assert refusal(response) == (UNCHECKED, "password_unchecked")

    def test_allow_accepts_and_logs_without_secrets(self, dead_api: str, caplog: pytest.LogCaptureFixture) -> None:
        """on_error="allow" lets the password through and logs an error holding no password, hash or prefix."""
        with caplog.at_level(logging.ERROR, logger="credcheck.contrib"):
            response = post(make_app(PasswordCheck(dead_api, on_error="allow", **FAST)), "/sign-up", "iloveyou")
        assert response.status_code == 200 and response.json() == {"count": None, "checked_by": None}
        assert any("accepted it unchecked" in r.getMessage() for r in caplog.records if r.name == "credcheck.contrib")
        leak_logs(caplog, "iloveyou")

    def test_fallback_answers(self, dead_api: str, corpus: Corpus) -> None:
        """on_error="fallback" answers from the local fallback, count included."""
        check = PasswordCheck(dead_api, on_error="fallback", fallback=corpus.store, **FAST)
        assert refusal(post(make_app(check), "/sign-up", "password"))[0].endswith("9 times.")
        assert post(make_app(check), "/sign-up", UNLEAKED).json() == {"count": 0, "checked_by": "fallback"}

    def test_fallback_failing_too_is_unchecked(self, dead_api: str, tmp_path: Path) -> None:
        """A fallback that cannot answer either refuses the password as unchecked."""
        check = PasswordCheck(dead_api, fallback=tmp_path / "missing.store", **FAST)
        assert refusal(post(make_app(check), "/sign-up", UNLEAKED)) == (UNCHECKED, "password_unchecked")

    def test_custom_messages(self, corpus: Corpus, dead_api: str) -> None:
        """message and unchecked_message replace the defaults verbatim."""
        leaked = PasswordCheck(corpus.store, message="Pick another one.")
        dead = PasswordCheck(dead_api, unchecked_message="Try later.", **FAST)
        assert refusal(post(make_app(leaked), "/sign-up", "password"))[0] == "Pick another one."
        assert refusal(post(make_app(dead), "/sign-up", UNLEAKED))[0] == "Try later."

    def test_one_check_across_event_loops(self, range_api: str) -> None:
        """The shared check answers from a second asyncio.run with an httpx client of that loop (a pool's
        connections belong to the loop that opened them); within one loop it keeps one client."""
        check = PasswordCheck(range_api)
        shared = _passwords.shared_check(check.options)

        async def twice() -> tuple[Any, int | None]:
            first = await check.check("password")
            client = shared._async._checker
            assert (await check.check("password")) == first and shared._async._checker is client
            return client, first.count

        first_client, count = run(twice())
        second_client, again = run(twice())
        assert count == again == 9 and first_client is not second_client

    @pytest.mark.parametrize(
        "options", [{"on_error": "ignore"}, {"min_count": 0}, {"timeout": -1}, {"source": 42}, {"fallback": ""}]
    )
    def test_bad_options_fail_at_construction(self, options: dict[str, Any]) -> None:
        """A bad setting fails when the check is made, not at a sign-up."""
        with pytest.raises((TypeError, ValueError)):
            PasswordCheck(**options)

    def test_repr_hides_credentials(self) -> None:
        """The repr shows the source without its user:password part."""
        assert "hunter2" not in repr(PasswordCheck("https://user:hunter2@ranges.example"))

    def test_errors_hold_no_secret(self, range_api: str) -> None:
        """A configuration error raised from a check carries no frame holding the password."""
        check = PasswordCheck(range_api, colour="blue")
        with pytest.raises(TypeError) as caught:
            run(check.check("Zebra-Secret-7f3a9q!"))
        assert (
            secrets_in_frames(caught.value, ["Zebra-Secret-7f3a9q!", credcheck.sha1_hex("Zebra-Secret-7f3a9q!")]) == []
        )


# ----------------------------------------------------------------------------------------------------
# Pairs


@pytest.fixture(scope="module")
def pair_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("fastapi-pairs"))


@pytest.fixture(scope="module")
def pair_url(pair_store: Path) -> Iterator[str]:
    with make_pair_service(pair_store, KEY, rate=0) as service, serve_in_background(pairs=service) as url:
        yield url


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """KEY as a 0600 key file (for a local pair store)."""
    return write_key_file(tmp_path_factory.mktemp("key"))


class TestPairs:
    @pytest.mark.parametrize(
        ("username", "password", "label"),
        [
            ("Alice@Example.com", "Summer2019", "exact"),
            ("alice@example.com", "summer2019", "similar"),
            ("bob", "something else", "username"),
            ("carol", "hunter2", "not_found"),
        ],
    )
    def test_log_in_reports_the_pair(self, pair_url: str, username: str, password: str, label: str) -> None:
        """At log-in the view gets the pair's status from a real pair service."""
        app = make_app(pairs=PairCheck(source=pair_url, **FAST))
        assert post(app, "/log-in", password, username).json() == {"pair": label}

    def test_sign_up_refuses_a_leaked_pair(self, pair_url: str, corpus: Corpus) -> None:
        """validate refuses a leaked pair with a 422 that names neither the username nor the password."""
        app = make_app(PasswordCheck(corpus.store), PairCheck(source=pair_url, **FAST))
        response = post(app, "/sign-up", "hunter2", "bob")
        assert refusal(response)[1] == "pair_compromised"
        assert "hunter2" not in response.text and "bob" not in response.text
        assert post(app, "/sign-up", "hunter2", "carol").status_code == 200

    @pytest.mark.parametrize(("on_error", "label"), [("reject", "unchecked"), ("allow", "not_checked")])
    def test_dead_service(self, dead_api: str, on_error: str, label: str) -> None:
        """A dead pair service: "reject" reports unchecked, "allow" lets it through unchecked."""
        app = make_app(pairs=PairCheck(source=dead_api, on_error=on_error, **FAST))
        assert post(app, "/log-in", "hunter2", "bob").json() == {"pair": label}

    def test_fallback_to_a_local_store(self, dead_api: str, pair_store: Path, key_file: Path) -> None:
        """on_error="fallback" asks a local pair store (in a worker thread: it stretches)."""
        check = PairCheck(source=dead_api, fallback=pair_store, fallback_key=key_file, **FAST)
        assert post(make_app(pairs=check), "/log-in", "hunter2", "bob").json() == {"pair": "exact"}

    def test_local_store_source(self, pair_store: Path, key_file: Path) -> None:
        """A local pair store as the source answers too."""
        check = PairCheck(source=pair_store, key=key_file)
        assert post(make_app(pairs=check), "/log-in", "hunter2", "bob").json() == {"pair": "exact"}

    def test_needs_a_source(self) -> None:
        """A pair check without a source fails when it is made."""
        with pytest.raises(ValueError, match="source"):
            PairCheck()


PAIR_SECRETS: list[str | bytes] = ["bob-the-user", "hunter2", b"hunter2", hashlib.sha1(b"hunter2").digest()]


class TestRaces:
    @pytest.mark.parametrize("what", ["pairs", "passwords"])
    def test_log_ins_while_close_shared_loops(
        self, what: str, pair_store: Path, key_file: Path, corpus: Corpus, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """close_shared() in a loop while 48 requests run at once: each gets the right answer, none a 500."""
        slow_pair_reads(monkeypatch)
        app = make_app(PasswordCheck(corpus.filter), PairCheck(source=pair_store, key=key_file))
        path, password, expected = (
            ("/log-in", "hunter2", {"pair": "exact"}) if what == "pairs" else ("/sign-up", "carol's own", None)
        )

        async def go() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://site.test") as client:
                body = {"username": "bob", "password": password}
                return await asyncio.gather(*(client.post(path, json=body) for _ in range(48)))

        with closing_shared_checks() as errors:
            replies = run(go())
        assert errors == []
        assert {reply.status_code for reply in replies} == {200}
        if expected is not None:
            assert all(reply.json() == expected for reply in replies)

    def test_cancelled_local_pair_check(
        self, pair_store: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """acheck cancelled while a local pair store stretches in its worker thread: the cancellation reaches the
        caller once the thread is done, and neither it nor a thread holds the username or password."""
        entered, release, done = hold_in_thread(monkeypatch, Stretch, "__call__")
        check = PairCompromiseCheck(source=pair_store, key=key_file)

        async def go() -> tuple[BaseException, bool, list[str]]:
            task = asyncio.ensure_future(check.acheck("bob-the-user", "hunter2"))
            await anyio.to_thread.run_sync(entered.wait)
            task.cancel()
            threading.Timer(0.2, release.set).start()
            with pytest.raises(asyncio.CancelledError) as caught:
                await task
            return caught.value, done.is_set(), secrets_in_threads(PAIR_SECRETS)

        error, step_done, in_threads = run(go())
        check.close()
        assert step_done, "the CancelledError reached the caller while the check still ran in its thread"
        assert in_threads == []
        assert secrets_in_frames(error, PAIR_SECRETS) == []
