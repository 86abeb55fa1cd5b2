"""The credential-check middleware for WSGI, ASGI and Django: the verdict of the credentials posted to a log-in
route as a request attribute and an Exposed-Credential-Check header, the body given back to the app whole, and a
client's own header never believed."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.parse
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

from django.http import HttpRequest, HttpResponse, JsonResponse  # these need configured settings
from django.test import RequestFactory, override_settings
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

import credcheck
from credcheck.contrib import _policy
from credcheck.contrib.django import CredentialCheckMiddleware
from credcheck.contrib.middleware import (
    ENVIRON_KEY,
    CredentialCheckASGI,
    CredentialCheckWSGI,
    LoginRoute,
)
from credcheck.contrib.policy import Decision, Event, Guard, Policy

from .helpers import call, secrets_in_frames
from .pairs_fixtures import build_store, write_key_file

SECRET = b"middleware tests"


@pytest.fixture(autouse=True)
def _close_shared_checks() -> Iterator[None]:
    yield
    _policy.close_shared()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("middleware")
    dump = folder / "pwned.txt"
    dump.write_text(f"{credcheck.sha1_hex('Summer2019')}:5\n{credcheck.sha1_hex('letmein')}:7\n")
    credcheck.build([dump], store=folder / "pwned.store")
    return {"store": folder / "pwned.store", "pairs": build_store(folder), "key": write_key_file(folder)}


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def guard(files: dict[str, Path], events: list[Event]) -> Guard:
    return Guard(
        Policy(canaries=["canary-password"]),
        passwords={"source": str(files["store"])},
        pairs={"source": str(files["pairs"]), "key": str(files["key"])},
        secret=SECRET,
        callbacks=[events.append],
    )


CASES = [
    ("Alice@Example.com", "Summer2019", "1"),
    ("alice@example.com", "summer2019", "3"),
    ("carol", "letmein", "4"),
    ("bob", "a long unleaked passphrase", "2"),
    ("carol", "a long unleaked passphrase", None),
    ("anyone", "canary-password", "4"),
]


def form(username: str, password: str, user_field: str = "username", password_field: str = "password") -> bytes:
    return urllib.parse.urlencode({user_field: username, password_field: password, "next": "/home"}).encode()


def wsgi_echo(environ: dict[str, Any], start: Any) -> list[bytes]:
    """An app that says what it got: the decision, the header and the whole body it read."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    decision = environ.get(ENVIRON_KEY)
    out = {
        "verdict": None if decision is None else decision.verdict.value,
        "header": environ.get("HTTP_EXPOSED_CREDENTIAL_CHECK"),
        "body": body.decode(errors="replace"),
    }
    data = json.dumps(out).encode()
    start("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def post(app: Any, path: str, body: bytes, content_type: str, **headers: str) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper()] = value
    started: list[Any] = []
    result: dict[str, Any] = json.loads(b"".join(app(environ, lambda s, h: started.append(s))))
    return result


class TestWSGI:
    @pytest.mark.parametrize(("username", "password", "header"), CASES)
    def test_the_verdict_reaches_the_app_with_the_whole_body(
        self, guard: Guard, username: str, password: str, header: str | None
    ) -> None:
        app = CredentialCheckWSGI(wsgi_echo, guard, ["/login"])
        body = form(username, password)
        got = post(app, "/login", body, "application/x-www-form-urlencoded")
        assert got["header"] == header and got["body"] == body.decode()
        assert got["verdict"] is not None

    def test_json_bodies_and_other_field_names(self, guard: Guard) -> None:
        route = LoginRoute("/api/session", username_field="email", password_field="secret")
        app = CredentialCheckWSGI(wsgi_echo, guard, [route])
        body = json.dumps({"email": "Alice@Example.com", "secret": "Summer2019"}).encode()
        got = post(app, "/api/session", body, "application/json; charset=utf-8")
        assert (got["header"], got["verdict"], got["body"]) == ("1", "exact", body.decode())

    def test_a_clients_own_header_is_never_believed(self, guard: Guard) -> None:
        """On the log-in route (clean credentials) and anywhere else, a header the client sent is removed."""
        app = CredentialCheckWSGI(wsgi_echo, guard, ["/login"])
        clean = form("carol", "a long unleaked passphrase")
        assert (
            post(app, "/login", clean, "application/x-www-form-urlencoded", EXPOSED_CREDENTIAL_CHECK="4")["header"]
            is None
        )
        assert post(app, "/other", b"", "text/plain", EXPOSED_CREDENTIAL_CHECK="1")["header"] is None
        assert (
            call(app, "/other", headers={"Exposed-Credential-Check": "1"}).body
            == b'{"verdict": null, "header": null, "body": ""}'
        )

    @pytest.mark.parametrize(
        ("path", "body", "content_type"),
        [
            ("/other", form("Alice@Example.com", "Summer2019"), "application/x-www-form-urlencoded"),
            (
                "/login",
                form("Alice@Example.com", "Summer2019", password_field="pw"),
                "application/x-www-form-urlencoded",
            ),
            ("/login", b"username=Alice%40Example.com&password=Summer2019", "multipart/form-data; boundary=x"),
            ("/login", b"username=Alice%40Example.com&password=Summer2019", "text/plain"),
            ("/login", b"\xff\xfe not text", "application/x-www-form-urlencoded"),
            ("/login", b"[1, 2]", "application/json"),
        ],
        ids=["another-path", "no-password-field", "not-multipart", "plain-text", "not-utf8", "json-not-an-object"],
    )
    def test_not_screened(self, guard: Guard, events: list[Event], path: str, body: bytes, content_type: str) -> None:
        app = CredentialCheckWSGI(wsgi_echo, guard, ["/login"])
        got = post(app, path, body, content_type)
        assert got["verdict"] is None and got["header"] is None and events == []

    def test_a_large_or_unsized_body_is_passed_on_untouched(self, guard: Guard) -> None:
        seen: list[Any] = []

        def app(environ: dict[str, Any], start: Any) -> list[bytes]:
            seen.append((environ["wsgi.input"], environ.get(ENVIRON_KEY)))
            start("204 No Content", [])
            return []

        middleware = CredentialCheckWSGI(app, guard, ["/login"], max_body=16)
        stream = io.BytesIO(form("Alice@Example.com", "Summer2019"))
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/login", "CONTENT_LENGTH": "60", "wsgi.input": stream}
        ignore: Any = lambda status, headers: None  # noqa: E731
        middleware(environ, ignore)
        del environ["CONTENT_LENGTH"]
        middleware(environ, ignore)
        assert seen == [(stream, None), (stream, None)] and stream.tell() == 0

    @pytest.mark.parametrize(
        "body",
        [
            b"username=Alice%40Example.com&password=Summer2019&password=a+long+unleaked+passphrase",
            b"username=Alice%40Example.com&password=a+long+unleaked+passphrase&password=Summer2019",
        ],
        ids=["leaked-first", "leaked-last"],
    )
    def test_a_field_given_twice_cannot_hide_a_leak(self, guard: Guard, body: bytes) -> None:
        """Werkzeug reads a repeated form field as its first value, Django and Starlette as its last: a leaked
        pair in either place is found, whichever value the app then verifies."""
        app = CredentialCheckWSGI(wsgi_echo, guard, ["/login"])
        got = post(app, "/login", body, "application/x-www-form-urlencoded")
        assert (got["header"], got["verdict"]) == ("1", "exact")

    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            (b"username=%20%20&password=Summer2019", "application/x-www-form-urlencoded"),
            (b'{"username": "\\ud800", "password": "Summer2019"}', "application/json"),
        ],
        ids=["blank", "lone-surrogate"],
    )
    def test_a_username_no_account_can_have_screens_the_password(
        self, guard: Guard, body: bytes, content_type: str
    ) -> None:
        """A client's username that cannot be canonicalised is no error page: the password is screened alone."""
        app = CredentialCheckWSGI(wsgi_echo, guard, ["/login"])
        got = post(app, "/login", body, content_type)
        assert (got["header"], got["verdict"]) == ("4", "password")

    def test_a_multipart_form_is_screened(self, guard: Guard) -> None:
        """Flask and FastAPI read form fields from a multipart body as well: posting one does not dodge the
        screen (a file part is left out, and the body reaches the app whole)."""
        app = CredentialCheckWSGI(wsgi_echo, guard, ["/login"])
        body = (
            b"--XyZ\r\n"
            b'Content-Disposition: form-data; name="avatar"; filename="a.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n\xff\xfe\x00\r\n"
            b'--XyZ\r\nContent-Disposition: form-data; name="username"\r\n\r\nAlice@Example.com\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="password"\r\n\r\nSummer2019\r\n'
            b"--XyZ--\r\n"
        )
        got = post(app, "/login", body, "multipart/form-data; boundary=XyZ")
        assert (got["header"], got["verdict"]) == ("1", "exact")
        assert got["body"] == body.decode(errors="replace")

    def test_a_lower_case_method_is_screened(self, guard: Guard) -> None:
        """Werkzeug (Flask) takes "post" for POST, so the screen does too."""
        app = CredentialCheckWSGI(wsgi_echo, guard, ["/login"])
        body = form("Alice@Example.com", "Summer2019")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "post",
            "PATH_INFO": "/login",
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
        }
        ignore: Any = lambda status, headers: None  # noqa: E731
        got = json.loads(b"".join(app(environ, ignore)))
        assert got["header"] == "1"

    def test_routes_are_checked_when_made(self, guard: Guard) -> None:
        with pytest.raises(ValueError, match="no log-in route"):
            CredentialCheckWSGI(wsgi_echo, guard, [])
        with pytest.raises(ValueError, match="starts with '/'"):
            CredentialCheckWSGI(wsgi_echo, guard, ["login"])
        with pytest.raises(ValueError, match="unknown log-in route setting"):
            CredentialCheckWSGI(wsgi_echo, guard, [{"path": "/login", "user_field": "x"}])


def asgi_echo_app() -> FastAPI:
    app = FastAPI()

    @app.post("/login")
    async def login(request: Request) -> dict[str, Any]:
        body = await request.body()
        decision = request.state.credcheck_screen
        return {
            "verdict": None if decision is None else decision.verdict.value,
            "header": request.headers.get("exposed-credential-check"),
            "body": body.decode(errors="replace"),
        }

    @app.get("/other")
    async def other(request: Request) -> dict[str, Any]:
        return {"header": request.headers.get("exposed-credential-check"), "decision": request.state.credcheck_screen}

    return app


class TestASGI:
    @pytest.mark.parametrize(("username", "password", "header"), CASES)
    def test_the_verdict_reaches_the_app_with_the_whole_body(
        self, guard: Guard, username: str, password: str, header: str | None
    ) -> None:
        app = asgi_echo_app()
        app.add_middleware(CredentialCheckASGI, guard=guard, routes=["/login"])
        body = form(username, password)
        with TestClient(app) as client:
            got = client.post(
                "/login", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
            ).json()
        assert got["header"] == header and got["body"] == body.decode() and got["verdict"] is not None

    def test_a_clients_own_header_is_never_believed(self, guard: Guard) -> None:
        app = asgi_echo_app()
        app.add_middleware(CredentialCheckASGI, guard=guard, routes=["/login"])
        with TestClient(app) as client:
            assert client.get("/other", headers={"Exposed-Credential-Check": "1"}).json() == {
                "header": None,
                "decision": None,
            }
            clean = form("carol", "a long unleaked passphrase")
            got = client.post(
                "/login",
                content=clean,
                headers={"Content-Type": "application/x-www-form-urlencoded", "Exposed-Credential-Check": "4"},
            ).json()
            assert got["header"] is None

    def test_a_body_in_several_messages_is_replayed_in_order(self, guard: Guard) -> None:
        """The messages read to screen the body are given to the app as they came, then the live receive."""
        body = form("Alice@Example.com", "Summer2019")
        messages = [
            {"type": "http.request", "body": body[:10], "more_body": True},
            {"type": "http.request", "body": body[10:], "more_body": False},
            {"type": "http.disconnect"},
        ]
        got: list[Any] = []

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            got.append((scope["state"]["credcheck_screen"].verdict.value, dict(scope["headers"])))
            got.extend([await receive() for _ in range(3)])

        async def receive() -> Any:
            return messages.pop(0)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/login",
            "headers": [
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-length", str(len(body)).encode()),
                (b"exposed-credential-check", b"4"),
            ],
        }
        asyncio.run(CredentialCheckASGI(app, guard, ["/login"])(scope, receive, None))  # type: ignore[arg-type]
        assert got[0] == (
            "exact",
            {
                b"content-type": b"application/x-www-form-urlencoded",
                b"content-length": str(len(body)).encode(),
                b"exposed-credential-check": b"1",
            },
        )
        assert b"".join(m.get("body", b"") for m in got[1:3]) == body and got[3] == {"type": "http.disconnect"}

    def test_a_chunked_body_is_screened(self, guard: Guard) -> None:
        """A body sent chunked declares no length: read up to max_body and screened, so chunking does not dodge
        the screen."""
        body = form("Alice@Example.com", "Summer2019")
        messages = [
            {"type": "http.request", "body": body[:7], "more_body": True},
            {"type": "http.request", "body": body[7:], "more_body": False},
        ]
        got: list[Any] = []

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            got.append((scope["state"]["credcheck_screen"], dict(scope["headers"]).get(b"exposed-credential-check")))
            got.extend([await receive() for _ in range(2)])

        async def receive() -> Any:
            return messages.pop(0)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/login",
            "headers": [(b"content-type", b"application/x-www-form-urlencoded"), (b"transfer-encoding", b"chunked")],
        }
        asyncio.run(CredentialCheckASGI(app, guard, ["/login"])(scope, receive, None))  # type: ignore[arg-type]
        assert got[0][0] is not None and (got[0][0].verdict.value, got[0][1]) == ("exact", b"1")
        assert b"".join(m["body"] for m in got[1:]) == body

    def test_an_error_of_the_app_shows_no_password_in_the_middlewares_frame(self, guard: Guard) -> None:
        """The middleware's frame is in the traceback of whatever the app raises (an error tracker records its
        locals): it holds no message of the body."""
        body = form("Alice@Example.com", "Summer2019")
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            raise RuntimeError("the app failed")

        async def receive() -> Any:
            return messages.pop(0)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/login",
            "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        }
        with pytest.raises(RuntimeError) as caught:
            asyncio.run(CredentialCheckASGI(app, guard, ["/login"])(scope, receive, None))  # type: ignore[arg-type]
        assert secrets_in_frames(caught.value, ["Summer2019", b"Summer2019"]) == []

    def test_a_body_longer_than_it_said_is_replayed_unscreened(self, guard: Guard) -> None:
        chunks = [{"type": "http.request", "body": b"x" * 10, "more_body": True} for _ in range(3)]
        chunks.append({"type": "http.request", "body": b"", "more_body": False})
        seen: list[Any] = []

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            seen.append(scope["state"]["credcheck_screen"])
            seen.extend([await receive() for _ in range(4)])

        async def receive() -> dict[str, Any]:
            return chunks.pop(0)

        scope = {"type": "http", "method": "POST", "path": "/login", "headers": [(b"content-length", b"12")]}
        asyncio.run(CredentialCheckASGI(app, guard, ["/login"], max_body=16)(scope, receive, None))  # type: ignore[arg-type]
        assert seen[0] is None and sum(len(m["body"]) for m in seen[1:]) == 30


class TestDjango:
    def respond(self, request: HttpRequest) -> HttpResponse:
        decision = request.credcheck_screen
        return JsonResponse(
            {
                "verdict": None if decision is None else decision.verdict.value,
                "header": request.META.get("HTTP_EXPOSED_CREDENTIAL_CHECK"),
                "password": request.POST.get("password"),
            }
        )

    @pytest.fixture
    def configured(self, files: dict[str, Path]) -> Iterator[None]:
        with override_settings(
            CREDCHECK={"source": str(files["store"])},
            CREDCHECK_PAIRS={"source": str(files["pairs"]), "key": str(files["key"])},
            CREDCHECK_POLICY={"login_routes": ["/login"], "state": "cache"},
        ):
            yield

    @pytest.mark.parametrize(("username", "password", "header"), CASES[:5])
    @pytest.mark.usefixtures("configured")
    def test_the_verdict_reaches_the_view(self, username: str, password: str, header: str | None) -> None:
        request = RequestFactory().post("/login", {"username": username, "password": password})
        got = json.loads(CredentialCheckMiddleware(self.respond)(request).content)
        assert got["header"] == header and got["password"] == password  # the view still reads the form

    @pytest.mark.usefixtures("configured")
    def test_a_clients_own_header_is_never_believed(self) -> None:
        factory = RequestFactory()
        for request in (
            factory.get("/other", HTTP_EXPOSED_CREDENTIAL_CHECK="1"),
            factory.post(
                "/login",
                {"username": "carol", "password": "a long unleaked passphrase"},
                HTTP_EXPOSED_CREDENTIAL_CHECK="4",
            ),
        ):
            got = json.loads(CredentialCheckMiddleware(self.respond)(request).content)
            assert got["header"] is None

    @pytest.mark.usefixtures("configured")
    def test_request_headers_read_before_it_show_only_its_own(self) -> None:
        """``request.headers`` is built once from ``META``: read by an earlier middleware, it would keep the
        client's header (and miss the one set here) unless rebuilt."""
        factory = RequestFactory()
        forged = factory.post(
            "/login", {"username": "carol", "password": "a long unleaked passphrase"}, HTTP_EXPOSED_CREDENTIAL_CHECK="1"
        )
        leaked = factory.post("/login", {"username": "Alice@Example.com", "password": "Summer2019"})
        seen: list[str | None] = []
        for request in (forged, leaked):
            assert request.headers.get("Exposed-Credential-Check") in ("1", None)  # an earlier middleware's look

            def view(request: HttpRequest) -> HttpResponse:
                seen.append(request.headers.get("Exposed-Credential-Check"))
                return HttpResponse()

            CredentialCheckMiddleware(view)(request)
        assert seen == [None, "1"]


def test_the_decision_type_is_the_policys(guard: Guard) -> None:
    """(The attribute holds a Decision: the same object every integration returns.)"""
    got: list[Any] = []

    def keep(environ: Any, start: Any) -> list[bytes]:
        got.append(environ)
        return []

    app = CredentialCheckWSGI(keep, guard, ["/login"])
    body = form("carol", "letmein")
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/login",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    app(environ, None)  # type: ignore[arg-type]
    assert isinstance(got[0][ENVIRON_KEY], Decision)
