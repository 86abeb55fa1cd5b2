"""The policy in each framework, through its own test client, against a real `credcheck serve` on 127.0.0.1 (a
range store and a pair store): sign-up refused with the count, a leaked pair at log-in reaching only the change
page until the password is changed (the new one checked there), and each failure policy with the pair service
stopped."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        SECRET_KEY="credcheck-tests",
        DEBUG=False,
        USE_I18N=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
        AUTH_PASSWORD_VALIDATORS=[],
    )
    django.setup()

from django.contrib import auth  # these need configured settings
from django.contrib.auth import password_validation
from django.contrib.auth.models import User, update_last_login
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from flask import Flask, session
from pydantic import BaseModel
from starlette.middleware.sessions import SessionMiddleware

import credcheck
from credcheck.contrib import _policy
from credcheck.contrib.django import credential_decision
from credcheck.contrib.fastapi import LoginPolicy
from credcheck.contrib.flask import CredcheckPolicy
from credcheck.contrib.policy import Event, Guard, Policy

from .helpers import running_server, wsgi_in_thread
from .pairs_fixtures import build_store, write_key_file

LEAKED = {"Summer2019": 5, "letmein": 7}
PAIR = ("Alice@Example.com", "Summer2019")  # a leaked pair (tests/pairs_fixtures.py) whose password leaked too
PAIR_ONLY = ("bob", "hunter2")  # a leaked pair whose password is not in the range store: only the pair tier knows
CLEAN = "a long unleaked passphrase"
SERVE = """
import sys
sys.modules["granian"] = sys.modules["gunicorn"] = None  # the wsgiref server: one light process
from credcheck.server import serve
store, pairs, key = sys.argv[2:5]
serve([store], "127.0.0.1", 0, pairs=pairs, key=key, rate=0, bodies="off")
"""


@pytest.fixture(autouse=True)
def _close_shared_checks() -> Iterator[None]:
    yield
    _policy.close_shared()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("forced-change")
    dump = folder / "pwned.txt"
    dump.write_text("".join(f"{credcheck.sha1_hex(p)}:{n}\n" for p, n in LEAKED.items()))
    credcheck.build([dump], store=folder / "pwned.store")
    return {"store": folder / "pwned.store", "pairs": build_store(folder), "key": write_key_file(folder)}


@pytest.fixture(scope="module")
def url(files: dict[str, Path]) -> Iterator[str]:
    """A real `credcheck serve` of the range store and the pair store."""
    with running_server("wsgiref", [files["store"], files["pairs"], files["key"]], script=SERVE) as server:
        yield server.url


@pytest.fixture(scope="module")
def stopped() -> str:
    """Where a pair service was: nothing answers there any more."""
    with wsgi_in_thread(lambda environ, start: []) as (address, _):
        return address


def down(stopped: str, on_error: str, files: dict[str, Path]) -> dict[str, Any]:
    """Settings of a pair check whose service is stopped, under ``on_error``."""
    settings: dict[str, Any] = {"source": stopped, "timeout": 2, "retries": 0, "on_error": on_error}
    if on_error == "fallback":
        settings.update(fallback=str(files["pairs"]), fallback_key=str(files["key"]))
    return settings


# ----------------------------------------------------------------------------------------------------
# Django: the validator, the log-in backend, the forced-change middleware, through django.test.Client


class SiteBackend:
    """The site's own password check: any password but "wrong"; users need no database here."""

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None) -> User | None:
        if username is None or password == "wrong":
            return None
        return self.get_user(zlib.crc32(username.encode()), username)

    def get_user(self, user_id: Any, username: str | None = None) -> User:
        user = User(pk=int(user_id), username=username or NAMES[int(user_id)])
        NAMES[int(user_id)] = user.username
        return user


NAMES: dict[int, str] = {}


def django_log_in(request: HttpRequest) -> HttpResponse:
    user = auth.authenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        decision = getattr(request, "credcheck", None)
        return HttpResponse(decision.message() if decision is not None else "wrong password", status=401)
    auth.login(request, user)
    return HttpResponse("logged in", status=302, headers={"Location": "/home/"})


def django_change(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse("the change form")
    try:
        password_validation.validate_password(request.POST["new"], request.user)
    except ValidationError as refused:
        return HttpResponse(" ".join(refused.messages), status=400)
    password_validation.password_changed(request.POST["new"], request.user)  # what user.save() calls
    return HttpResponse("changed")


def django_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"page {request.path}")


def django_log_out(request: HttpRequest) -> HttpResponse:
    auth.logout(request)
    return HttpResponse("logged out")


urlpatterns = [
    path("login/", django_log_in),
    path("change/", django_change, name="password_change"),
    path("logout/", django_log_out, name="logout"),
    path("home/", django_page),
    path("elsewhere/", django_page),
]


@pytest.fixture
def django_site(url: str) -> Iterator[list[Event]]:
    """The Django site's settings against the real server; yields the events the signal sent."""
    events: list[Event] = []

    def receive(sender: Any, event: Event, **kwargs: Any) -> None:
        events.append(event)

    caches["default"].clear()  # the users' states and the sessions of other tests
    auth.signals.user_logged_in.disconnect(update_last_login, dispatch_uid="update_last_login")  # no database here
    credential_decision.connect(receive)
    try:
        with override_settings(
            ROOT_URLCONF=__name__,
            MIDDLEWARE=[
                "django.contrib.sessions.middleware.SessionMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "credcheck.contrib.django.ForcedChangeMiddleware",
            ],
            SESSION_ENGINE="django.contrib.sessions.backends.cache",
            AUTHENTICATION_BACKENDS=["credcheck.contrib.django.LoginCheckBackend"],
            AUTH_PASSWORD_VALIDATORS=[{"NAME": "credcheck.contrib.django.PolicyValidator"}],
            CREDCHECK={"source": url, "timeout": 5},
            CREDCHECK_PAIRS={"source": url, "timeout": 5, "backend": f"{__name__}.SiteBackend"},
            CREDCHECK_POLICY={"change_url": "password_change", "allowed_urls": ["logout"]},
        ):
            yield events
    finally:
        credential_decision.disconnect(receive)
        auth.signals.user_logged_in.connect(update_last_login, dispatch_uid="update_last_login")


class TestDjango:
    def test_a_leaked_pair_reaches_only_the_change_page_until_changed(self, django_site: list[Event]) -> None:
        client = Client()
        assert client.post("/login/", {"username": PAIR[0], "password": PAIR[1]}).status_code == 302
        for page in ("/home/", "/elsewhere/"):
            response = client.get(page)
            assert (response.status_code, response["Location"]) == (302, "/change/")
        assert client.get("/change/").status_code == 200
        refused = client.post("/change/", {"new": "letmein"})  # the new password is checked there
        assert refused.status_code == 400 and b"appeared in a data breach 7 times" in refused.content
        assert client.get("/home/").status_code == 302
        assert client.post("/change/", {"new": CLEAN}).status_code == 200
        assert client.get("/home/").content == b"page /home/"
        assert [(e.stage, e.verdict, e.action) for e in django_site] == [
            ("login", "exact", "require_change"),
            ("change", "password", "block"),
            ("change", "username", "allow"),  # her username leaked too: allowed,
        ]

    def test_a_static_url_at_the_root_opens_no_page(self, django_site: list[Event]) -> None:
        """Static files stay reachable from a flagged session, but a STATIC_URL of "/" does not make every page a
        static file."""
        client = Client()
        client.post("/login/", {"username": PAIR[0], "password": PAIR[1]})
        with override_settings(STATIC_URL="/"):
            response = client.get("/home/")
        assert (response.status_code, response["Location"]) == (302, "/change/")

    def test_log_out_stays_reachable(self, django_site: list[Event]) -> None:
        client = Client()
        client.post("/login/", {"username": PAIR[0], "password": PAIR[1]})
        assert client.get("/logout/").content == b"logged out"

    def test_a_clean_log_in_goes_where_it_asked(self, django_site: list[Event]) -> None:
        client = Client()
        assert client.post("/login/", {"username": "carol", "password": CLEAN}).status_code == 302
        assert client.get("/home/").status_code == 200

    def test_sign_up_refuses_a_leaked_password_with_its_count(self, django_site: list[Event]) -> None:
        with pytest.raises(ValidationError) as refused:
            password_validation.validate_password("letmein", User(username="newcomer"))
        assert refused.value.messages == ["This password has appeared in a data breach 7 times."]
        assert django_site[-1].stage == "signup"

    @pytest.mark.parametrize(
        ("on_error", "status", "then"),
        [("reject", 401, None), ("allow", 302, 200), ("fallback", 302, 302)],
    )
    def test_the_pair_service_stopped(
        self,
        django_site: list[Event],
        stopped: str,
        files: dict[str, Path],
        on_error: str,
        status: int,
        then: int | None,
    ) -> None:
        """reject: the log-in is refused as unchecked; allow: let in; fallback: the local pair store answers."""
        pairs = {**down(stopped, on_error, files), "backend": f"{__name__}.SiteBackend"}
        with override_settings(CREDCHECK_PAIRS=pairs):
            client = Client()
            response = client.post("/login/", {"username": PAIR_ONLY[0], "password": PAIR_ONLY[1]})
            assert response.status_code == status
            if then is None:
                assert b"could not be checked" in response.content
            else:
                assert client.get("/home/").status_code == then


# ----------------------------------------------------------------------------------------------------
# Flask: CredcheckPolicy, through app.test_client()


def flask_app(url: str, pairs: dict[str, Any] | None = None, **policy: Any) -> tuple[Flask, list[Event]]:
    app = Flask(__name__)
    app.secret_key = "flask tests"
    app.config.update(
        CREDCHECK_SOURCE=url,
        CREDCHECK_TIMEOUT=5,
        CREDCHECK_PAIRS=pairs or {"source": url, "timeout": 5},
        CREDCHECK_POLICY=policy,
    )
    events: list[Event] = []
    credcheck_policy = CredcheckPolicy(app, change_endpoint="change", callbacks=[events.append])

    @app.post("/login")
    def login() -> Any:
        from flask import request

        if request.form["password"] == "wrong":
            return "wrong password", 401
        decision = credcheck_policy.login(request.form["username"], request.form["password"])
        if decision.blocked:
            return decision.message() or "", 401
        session["user"] = request.form["username"]
        return "logged in", 302, {"Location": "/home"}

    @app.route("/change", methods=["GET", "POST"])
    def change() -> Any:
        from flask import request

        if request.method == "GET":
            return "the change form"
        decision = credcheck_policy.check("change", session["user"], request.form["new"])
        if decision.blocked:
            return decision.message() or "", 400
        credcheck_policy.password_changed(session["user"])
        return "changed"

    @app.get("/logout")
    def logout() -> Any:
        session.clear()
        return "logged out"

    @app.get("/home")
    def home() -> Any:
        return "home"

    return app, events


class TestFlask:
    def test_a_leaked_pair_reaches_only_the_change_page_until_changed(self, url: str) -> None:
        app, events = flask_app(url)
        client = app.test_client()
        assert client.post("/login", data={"username": PAIR[0], "password": PAIR[1]}).status_code == 302
        response = client.get("/home")
        assert (response.status_code, response.location) == (302, "/change")
        refused = client.post("/change", data={"new": "letmein"})
        assert refused.status_code == 400 and b"7 times" in refused.data
        assert client.get("/home").status_code == 302
        assert client.get("/logout").status_code == 200
        client.post("/login", data={"username": PAIR[0], "password": PAIR[1]})
        assert client.post("/change", data={"new": CLEAN}).status_code == 200
        assert client.get("/home").data == b"home"
        assert [(e.stage, e.verdict, e.action, e.checked) for e in events] == [
            ("login", "exact", "require_change", True),
            ("change", "password", "block", True),
            ("login", "exact", "require_change", False),  # the change still pending: no lookup
            ("change", "username", "allow", True),
        ]

    def test_a_grace_of_log_ins_warns_then_forces(self, url: str) -> None:
        app, _ = flask_app(url, login={"exact": {"action": "require_change", "grace_logins": 2}})
        client = app.test_client()
        for expected in (200, 200, 302):
            client.get("/logout")
            client.post("/login", data={"username": PAIR[0], "password": PAIR[1]})
            assert client.get("/home").status_code == expected

    @pytest.mark.parametrize(
        ("on_error", "status", "then"), [("reject", 401, None), ("allow", 302, 200), ("fallback", 302, 302)]
    )
    def test_the_pair_service_stopped(
        self, url: str, stopped: str, files: dict[str, Path], on_error: str, status: int, then: int | None
    ) -> None:
        app, events = flask_app(url, pairs=down(stopped, on_error, files))
        client = app.test_client()
        response = client.post("/login", data={"username": PAIR_ONLY[0], "password": PAIR_ONLY[1]})
        assert response.status_code == status
        if then is None:
            assert b"could not be checked" in response.data and events[-1].verdict == "unchecked"
        else:
            assert client.get("/home").status_code == then


# ----------------------------------------------------------------------------------------------------
# FastAPI: LoginPolicy as the app's dependency, through fastapi.testclient.TestClient


class Credentials(BaseModel):
    username: str
    password: str


class NewPassword(BaseModel):
    new: str


def fastapi_app(guard: Guard) -> FastAPI:
    policy = LoginPolicy(guard, change_path="/change")
    app = FastAPI(dependencies=[Depends(policy)])
    app.add_middleware(SessionMiddleware, secret_key="fastapi tests")

    @app.post("/login")
    async def login(form: Credentials, request: Request) -> dict[str, str]:
        decision = await policy.login(request, form.username, form.password)
        if decision.blocked:
            raise HTTPException(401, decision.message())
        request.session["user"] = form.username
        return {"action": decision.action.value}

    @app.get("/change")
    async def change_form() -> dict[str, str]:
        return {"form": "change"}

    @app.post("/change")
    async def change(form: NewPassword, request: Request) -> dict[str, str]:
        decision = await policy.check("change", request.session["user"], form.new)
        if decision.blocked:
            raise HTTPException(400, decision.message())
        policy.password_changed(request.session["user"])
        return {"changed": "yes"}

    @app.get("/home")
    async def home() -> dict[str, str]:
        return {"page": "home"}

    @app.post("/action")
    async def action() -> dict[str, str]:
        return {"done": "yes"}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, str]:
        request.session.clear()
        return {"page": "logged out"}

    return app


class TestFastAPI:
    def guard(self, url: str, events: list[Event], pairs: dict[str, Any] | None = None) -> Guard:
        return Guard(
            Policy(),
            passwords={"source": url, "timeout": 5},
            pairs=pairs or {"source": url, "timeout": 5},
            secret=b"fastapi tests",
            callbacks=[events.append],
        )

    def test_a_leaked_pair_reaches_only_the_change_page_until_changed(self, url: str) -> None:
        events: list[Event] = []
        with TestClient(fastapi_app(self.guard(url, events)), follow_redirects=False) as client:
            assert client.post("/login", json={"username": PAIR[0], "password": PAIR[1]}).json() == {
                "action": "require_change"
            }
            response = client.get("/home")
            assert (response.status_code, response.headers["location"]) == (303, "/change")
            assert client.post("/action").status_code == 403  # not a page a browser is sent to
            assert client.get("/change").json() == {"form": "change"}
            refused = client.post("/change", json={"new": "letmein"})
            assert refused.status_code == 400 and "7 times" in refused.json()["detail"]
            assert client.get("/home").status_code == 303
            assert client.post("/change", json={"new": CLEAN}).json() == {"changed": "yes"}
            assert client.get("/home").json() == {"page": "home"}
        assert [(e.stage, e.verdict, e.action) for e in events] == [
            ("login", "exact", "require_change"),
            ("change", "password", "block"),
            ("change", "username", "allow"),  # her username leaked too: allowed,
        ]

    @pytest.mark.parametrize(
        ("on_error", "status", "then"), [("reject", 401, None), ("allow", 200, 200), ("fallback", 200, 303)]
    )
    def test_the_pair_service_stopped(
        self, url: str, stopped: str, files: dict[str, Path], on_error: str, status: int, then: int | None
    ) -> None:
        guard = self.guard(url, [], pairs=down(stopped, on_error, files))
        with TestClient(fastapi_app(guard), follow_redirects=False) as client:
            response = client.post("/login", json={"username": PAIR_ONLY[0], "password": PAIR_ONLY[1]})
            assert response.status_code == status
            if then is None:
                assert "could not be checked" in response.json()["detail"]
            else:
                assert client.get("/home").status_code == then
