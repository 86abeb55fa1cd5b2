"""The one failure policy (``credcheck.contrib._policy``) under both checks, sync and async: a password check and a
pair check answer, fail and fall back the same way, and one check per configuration serves every integration."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from credcheck import _sources
from credcheck.contrib import _policy
from credcheck.contrib._pairs import PairCompromiseCheck
from credcheck.contrib._passwords import CompromiseCheck, shared_check
from credcheck.contrib._verdicts import CheckResult, PairCheckResult
from credcheck.contrib.fastapi import PasswordCheck
from credcheck.contrib.flask import check_password

from .conftest import FAST, Corpus
from .pairs_fixtures import build_store, write_key_file


@pytest.fixture(autouse=True)
def _close_shared_checks() -> Iterator[None]:
    yield
    _policy.close_shared()


@pytest.fixture(scope="module")
def pair_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A local pair store and its 0600 key file."""
    folder = tmp_path_factory.mktemp("policy-pairs")
    return build_store(folder), write_key_file(folder)


Tier = tuple[Callable[..., Any], tuple[str, ...], Any]


@pytest.fixture(params=["passwords", "pairs"])
def tier(request: pytest.FixtureRequest, corpus: Corpus, pair_store: tuple[Path, Path]) -> Tier:
    """(make a check on a dead service with a local fallback, the credentials, the fallback's answer)."""
    if request.param == "passwords":

        def passwords(dead: str, on_error: str, fallback: Path | None = None) -> CompromiseCheck:
            return CompromiseCheck(dead, on_error=on_error, fallback=fallback or corpus.store, **FAST)

        return passwords, ("iloveyou",), CheckResult(True, 3, "fallback")
    store, key = pair_store

    def pairs(dead: str, on_error: str, fallback: Path | None = None) -> PairCompromiseCheck:
        return PairCompromiseCheck(dead, on_error=on_error, fallback=fallback or store, fallback_key=key, **FAST)

    return pairs, ("bob", "hunter2"), PairCheckResult("exact", "fallback")


def ask(check: Any, credentials: tuple[str, ...], mode: str) -> Any:
    if mode == "sync":
        return check.check(*credentials)

    async def main() -> Any:
        try:
            return await check.acheck(*credentials)
        finally:
            await check.aclose()

    return asyncio.run(main())


class TestOnePolicy:
    @pytest.mark.parametrize("mode", ["sync", "async"])
    @pytest.mark.parametrize(
        ("on_error", "level", "said"),
        [
            ("reject", logging.ERROR, "refused it as unchecked (on_error='reject')"),
            ("allow", logging.ERROR, "accepted it unchecked (on_error='allow')"),
            ("fallback", logging.WARNING, "checked against the fallback"),
        ],
    )
    def test_a_dead_service(
        self,
        tier: Tier,
        dead_api: str,
        mode: str,
        on_error: str,
        level: int,
        said: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Both checks, sync or async, meet a dead service the same way: the result and the one log line the
        policy asks for, naming the service's error code and never the credentials."""
        make, credentials, fallback_answer = tier
        check = make(dead_api, on_error)
        with caplog.at_level(logging.WARNING, logger="credcheck.contrib"):
            result = ask(check, credentials, mode)
        check.close()
        if on_error == "fallback":
            assert result == fallback_answer
        else:
            assert result == type(fallback_answer).unanswered(unchecked=on_error == "reject")
            assert result.rejected is (on_error == "reject") and result.checked_by is None
        (record,) = [r for r in caplog.records if r.name == "credcheck.contrib"]
        assert record.levelno == level and said in record.getMessage()
        assert "error: connection" in record.getMessage()
        assert not any(secret in caplog.text for secret in credentials)

    @pytest.mark.parametrize("mode", ["sync", "async"])
    def test_fallback_down_too(
        self, tier: Tier, dead_api: str, mode: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A fallback that fails as well refuses as unchecked, both failures in one error line."""
        make, credentials, fallback_answer = tier
        check = make(dead_api, "fallback", tmp_path / "missing")
        with caplog.at_level(logging.ERROR, logger="credcheck.contrib"):
            result = ask(check, credentials, mode)
        check.close()
        assert result == type(fallback_answer).unanswered(unchecked=True)
        (record,) = caplog.records
        assert "nor against the fallback" in record.getMessage()


class TestOneCheckPerConfiguration:
    def test_sync_and_async_integrations_share_it(self, corpus: Corpus) -> None:
        """Flask (sync) and FastAPI (async) configured alike share one check, so the store is opened once."""
        with mock.patch.object(_sources, "open", wraps=_sources.open) as opened:
            assert check_password("password", source=corpus.store) == [
                "This password has appeared in a data breach 9 times."
            ]
            result = asyncio.run(PasswordCheck(corpus.store).check("password"))
        assert result == CheckResult(True, 9, "source")
        assert [call.args for call in opened.call_args_list] == [(corpus.store,)]

    def test_one_check_answers_sync_and_async(self, corpus: Corpus) -> None:
        """The shared check of a configuration answers check() and acheck() alike."""
        check = shared_check({"source": corpus.store})
        assert check.check("iloveyou") == asyncio.run(check.acheck("iloveyou")) == CheckResult(True, 3, "source")
