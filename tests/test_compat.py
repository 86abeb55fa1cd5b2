"""Existing HIBP clients from PyPI, pointed at a running ``credcheck serve``, get the right answers.

Each client is redirected the way its own users would do it, never by patching its HTTP layer:

- pwned-passwords-django: subclass ``PwnedPasswords`` with another ``api_endpoint`` (its only knob for it).
- pyhibp: set the module constant ``pyhibp.pwnedpasswords.PWNED_PASSWORDS_API_BASE_URI`` (read on every call).
- pwnedpasswords (lionheart): replace ``PwnedPasswordsAPI.url``, which hard-codes the host; it splits bodies
  on exactly CRLF, so it is also a check of the line endings.
"""

from __future__ import annotations

import asyncio
import importlib.util
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import credcheck

from .helpers import CLEAN, LEAKED, RunningServer, corpus, running_server

LEAKED_ITEMS = pytest.mark.parametrize(("password", "count"), list(LEAKED.items()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``serve()`` (gunicorn when installed) over a SHA-1 store of the test corpus."""
    root = tmp_path_factory.mktemp("compat")
    source = root / "sha1.txt"
    source.write_text("\n".join(f"{h}:{n}" for h, n in corpus("sha1").items()) + "\n")
    store = root / "sha1.store"
    credcheck.build([source], store=store, scheme="sha1")
    kind = "gunicorn" if importlib.util.find_spec("gunicorn") else "wsgiref"
    with running_server(kind, [Path(store)]) as running:
        yield running


class TestPwnedPasswordsDjango:
    @pytest.fixture
    def client(self, server: RunningServer) -> Iterator[Any]:
        pytest.importorskip("pwned_passwords_django")
        from django.conf import settings

        if not settings.configured:
            settings.configure(PWNED_PASSWORDS={"ADD_PADDING": True, "API_TIMEOUT": 5.0})
        from pwned_passwords_django.api import PwnedPasswords

        class SelfHosted(PwnedPasswords):
            api_endpoint = f"{server.url}/range/"

        client = SelfHosted()
        yield client
        client.client.close()

    @LEAKED_ITEMS
    def test_leaked_password_found_with_its_count(self, client: Any, password: str, count: int) -> None:
        """check_password returns the exact count of a leaked password (httpx, gzip, padding on)."""
        assert client.check_password(password) == count

    @pytest.mark.parametrize("password", CLEAN)
    def test_clean_password_is_clean(self, client: Any, password: str) -> None:
        """check_password returns 0 for a password outside the corpus."""
        assert client.check_password(password) == 0

    def test_async_client_agrees(self, client: Any) -> None:
        """check_password_async gives the same counts."""

        async def both() -> list[int]:
            return [await client.check_password_async(p) for p in ("password", CLEAN[0])]

        assert asyncio.run(both()) == [LEAKED["password"], 0]


class TestPyHIBP:
    @pytest.fixture(autouse=True)
    def _point_at_server(self, server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
        api = pytest.importorskip("pyhibp.pwnedpasswords")
        import pyhibp

        monkeypatch.setitem(pyhibp.pyHIBP_HEADERS, "User-Agent", "credcheck-compat-test")
        monkeypatch.setattr(api, "PWNED_PASSWORDS_API_BASE_URI", f"{server.url}/")

    @LEAKED_ITEMS
    @pytest.mark.parametrize("padding", [True, False])
    def test_leaked_password_found_with_its_count(self, password: str, count: int, padding: bool) -> None:
        """is_password_breached returns the exact count, with and without padding."""
        import pyhibp.pwnedpasswords

        assert pyhibp.pwnedpasswords.is_password_breached(password=password, add_padding=padding) == count

    @pytest.mark.parametrize("password", CLEAN)
    @pytest.mark.parametrize("padding", [True, False])
    def test_clean_password_is_clean(self, password: str, padding: bool) -> None:
        """is_password_breached returns 0 for a password outside the corpus."""
        import pyhibp.pwnedpasswords

        assert pyhibp.pwnedpasswords.is_password_breached(password=password, add_padding=padding) == 0


class TestLionheartPwnedPasswords:
    @pytest.fixture(autouse=True)
    def _point_at_server(self, server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
        pytest.importorskip("pwnedpasswords")
        from pwnedpasswords.pwnedpasswords import PwnedPasswordsAPI

        def url(*components: str, **query: str) -> str:
            value = f"{server.url}/" + "/".join(components)
            return value + ("?" + urllib.parse.urlencode(query) if query else "")

        monkeypatch.setattr(PwnedPasswordsAPI, "url", staticmethod(url))

    @LEAKED_ITEMS
    def test_leaked_password_found_with_its_count(self, password: str, count: int) -> None:
        """pwnedpasswords.check (k-anonymity range, split on CRLF) returns the exact count."""
        import pwnedpasswords

        assert pwnedpasswords.check(password, plain_text=True) == count

    def test_clean_password_next_to_a_leaked_one_is_clean(self) -> None:
        """A clean password whose range holds another hash is reported as 0."""
        import pwnedpasswords

        assert pwnedpasswords.check(CLEAN[0], plain_text=True) == 0

    @pytest.mark.xfail(raises=ValueError, strict=True, reason="pwnedpasswords 3.1 cannot parse an empty range")
    def test_clean_password_in_an_empty_range(self) -> None:
        """Known client limit: it fails on an empty body, which HIBP never sends but a small corpus does."""
        import pwnedpasswords

        assert pwnedpasswords.check(CLEAN[1], plain_text=True) == 0
