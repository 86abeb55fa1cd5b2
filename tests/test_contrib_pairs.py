"""Partner sites and credential pairs: the Django backend wrapper and validator, the Flask helper and validator,
against a real pair service on 127.0.0.1, under each failure policy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
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

from django.contrib.auth import authenticate  # these need configured settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import RequestFactory, override_settings
from flask import Flask, g
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField

from credcheck.contrib import _policy
from credcheck.contrib._pairs import PairCompromiseCheck
from credcheck.contrib.django import SESSION_KEY, PairCheckBackend, pair_checked
from credcheck.contrib.flask import PairNotCompromised, check_login
from credcheck.pairs._service import make_pair_service

from .helpers import KEY, closing_shared_checks, slow_pair_reads
from .pairs_fixtures import build_store, serving, write_key_file


@pytest.fixture(autouse=True)
def _close_shared_checks() -> Iterator[None]:
    yield
    _policy.close_shared()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("contrib-pairs"))


@pytest.fixture(scope="module")
def service_url(store: Path) -> Iterator[str]:
    with make_pair_service(store, KEY, rate=0) as service, serving(service) as url:
        yield url


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """KEY as a 0600 key file (for a local pair store fallback)."""
    return write_key_file(tmp_path_factory.mktemp("key"))


class User:
    def __init__(self, username: str) -> None:
        self.username = username

    def get_username(self) -> str:
        return self.username


class AcceptingBackend:
    """Accepts any log-in whose password is not 'wrong' (the site's own password check)."""

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None) -> User | None:
        return None if password == "wrong" or username is None else User(username)

    def get_user(self, user_id: Any) -> User:
        return User(str(user_id))


BACKEND = "credcheck.contrib.django.PairCheckBackend"
INNER = f"{__name__}.AcceptingBackend"


def django_login(username: str, password: str, **pairs: Any) -> tuple[Any, Any, list[Any]]:
    """Log in through django.contrib.auth.authenticate with PairCheckBackend; (user, request, signals)."""
    request = RequestFactory().post("/login")
    request.session = {}
    received: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs["result"])

    pair_checked.connect(receiver)
    try:
        with override_settings(AUTHENTICATION_BACKENDS=[BACKEND], CREDCHECK_PAIRS={"backend": INNER, **pairs}):
            user = authenticate(request, username=username, password=password)
    finally:
        pair_checked.disconnect(receiver)
    return user, request, received


class TestDjangoBackend:
    @pytest.mark.parametrize(
        ("username", "password", "label", "compromised"),
        [
            ("Alice@Example.com", "Summer2019", "exact", True),
            ("alice@example.com", "summer2019", "similar", True),
            ("bob", "my new password", "username", False),
            ("carol", "hunter2", "not_found", False),
        ],
    )
    def test_records_the_outcome(
        self, service_url: str, username: str, password: str, label: str, compromised: bool
    ) -> None:
        """A successful log-in is checked; the result is on the request, in the session and in the signal."""
        user, request, received = django_login(username, password, source=service_url, retries=0)
        assert user is not None and user.get_username() == username
        assert request.credcheck_pair.label == label and request.credcheck_pair.compromised is compromised
        assert request.session[SESSION_KEY] == label
        assert [r.label for r in received] == [label]

    def test_failed_log_in_is_not_checked(self, service_url: str) -> None:
        """A log-in the wrapped backend refuses is refused, and no pair is checked."""
        user, request, received = django_login("bob", "wrong", source=service_url)
        assert user is None and not hasattr(request, "credcheck_pair") and received == []

    @pytest.mark.parametrize(("policy", "label"), [("reject", "unchecked"), ("allow", "not_checked")])
    def test_service_down(self, dead_api: str, policy: str, label: str, caplog: pytest.LogCaptureFixture) -> None:
        """With the service down the log-in still succeeds; the outcome says it was not checked, the log says why."""
        user, request, _ = django_login("bob", "hunter2", source=dead_api, on_error=policy, retries=0)
        assert user is not None and request.session[SESSION_KEY] == label
        assert "pair service error: connection" in caplog.text
        assert "bob" not in caplog.text and "hunter2" not in caplog.text

    def test_fallback(self, dead_api: str, store: Path, key_file: Path) -> None:
        """on_error='fallback' asks the fallback pair source."""
        _, request, _ = django_login(
            "bob", "hunter2", source=dead_api, fallback=str(store), fallback_key=str(key_file), retries=0
        )
        assert request.credcheck_pair.label == "exact" and request.credcheck_pair.checked_by == "fallback"

    def test_delegates(self) -> None:
        """get_user and other methods are the wrapped backend's."""
        with override_settings(CREDCHECK_PAIRS={"backend": INNER, "source": "http://127.0.0.1:1"}):
            assert PairCheckBackend().get_user(7).get_username() == "7"


PAIR_VALIDATOR = "credcheck.contrib.django.CompromisedPairValidator"


def pair_errors(password: str, user: User | None, **options: Any) -> list[ValidationError]:
    with override_settings(AUTH_PASSWORD_VALIDATORS=[{"NAME": PAIR_VALIDATOR, "OPTIONS": options}]):
        try:
            validate_password(password, user)
        except ValidationError as exc:
            return list(exc.error_list)
    return []


class TestDjangoValidator:
    def test_leaked_pair_refused(self, service_url: str) -> None:
        """A new password that leaked with this user's username is refused."""
        (error,) = pair_errors("hunter2", User("bob"), source=service_url)
        assert error.code == "password_pair_compromised"

    def test_same_password_other_user(self, service_url: str) -> None:
        """The same password with another username passes (the pair is what counts)."""
        assert pair_errors("hunter2", User("carol"), source=service_url) == []

    def test_no_user(self, service_url: str) -> None:
        """Without a user there is no pair: it passes."""
        assert pair_errors("hunter2", None, source=service_url) == []

    def test_unchecked(self, dead_api: str) -> None:
        """A service down under 'reject' refuses as unchecked."""
        (error,) = pair_errors("hunter2", User("bob"), source=dead_api, retries=0)
        assert error.code == "password_pair_check_failed"

    def test_options_replace_the_messages(self, service_url: str, dead_api: str) -> None:
        """OPTIONS message and unchecked_message replace the messages; the codes stay."""
        (leaked,) = pair_errors("hunter2", User("bob"), source=service_url, message="Not that one.")
        assert (leaked.code, leaked.messages) == ("password_pair_compromised", ["Not that one."])
        (unchecked,) = pair_errors("x", User("bob"), source=dead_api, retries=0, unchecked_message="Later.")
        assert (unchecked.code, unchecked.messages) == ("password_pair_check_failed", ["Later."])


class SignUp(FlaskForm):
    username = StringField("Username")
    password = PasswordField("Password", validators=[PairNotCompromised()])


def flask_app(**pairs: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="credcheck-tests", WTF_CSRF_ENABLED=False, CREDCHECK_PAIRS=pairs)

    @app.post("/sign-up")
    def sign_up() -> Any:
        form = SignUp()
        return ({"ok": True}, 200) if form.validate_on_submit() else ({"errors": form.errors}, 400)

    @app.post("/login")
    def login() -> Any:
        from flask import request

        result = check_login(request.form["username"], request.form["password"])
        return {"label": result.label, "on_g": g.credcheck_pair.label, "compromised": result.compromised}

    return app


class TestFlask:
    def test_login_helper(self, service_url: str) -> None:
        """check_login in a log-in view returns the outcome and keeps it on flask.g."""
        client = flask_app(source=service_url).test_client()
        reply = client.post("/login", data={"username": "Alice@Example.com", "password": "Summer2019"})
        assert reply.json == {"label": "exact", "on_g": "exact", "compromised": True}

    def test_login_service_down(self, dead_api: str) -> None:
        """With the service down, 'allow' lets the log-in through unchecked."""
        client = flask_app(source=dead_api, on_error="allow", retries=0).test_client()
        reply = client.post("/login", data={"username": "bob", "password": "x"})
        assert reply.json is not None and reply.json["label"] == "not_checked"

    def test_sign_up_refused(self, service_url: str) -> None:
        """The WTForms validator refuses a password leaked with the form's username."""
        client = flask_app(source=service_url).test_client()
        reply = client.post("/sign-up", data={"username": "bob", "password": "hunter2"})
        assert reply.status_code == 400 and reply.json is not None
        assert "together with this username" in reply.json["errors"]["password"][0]

    def test_bad_pair_config_names_the_setting(self, service_url: str) -> None:
        """A bad value in app.config["CREDCHECK_PAIRS"] raises, naming that setting."""
        app = flask_app(source=service_url, on_error="ignore")
        with app.app_context(), pytest.raises(ValueError, match=r"CREDCHECK_PAIRS.*on_error"):
            check_login("bob", "hunter2")

    def test_sign_up_accepted(self, service_url: str) -> None:
        """A pair that has not leaked passes."""
        client = flask_app(source=service_url).test_client()
        assert client.post("/sign-up", data={"username": "carol", "password": "hunter2"}).status_code == 200


class TestPolicy:
    def test_store_needs_key(self, store: Path) -> None:
        """A pair store source without its key is refused at set-up."""
        with pytest.raises(ValueError, match="give its key file"):
            PairCompromiseCheck(str(store))

    def test_local_store(self, store: Path, key_file: Path) -> None:
        """A local pair store with its key answers (the corpus owner's own site)."""
        assert PairCompromiseCheck(str(store), key=str(key_file)).check("bob", "hunter2").label == "exact"

    def test_fallback_down_too(self, dead_api: str, caplog: pytest.LogCaptureFixture) -> None:
        """When the fallback fails too, the pair is refused as unchecked and both failures are logged."""
        caplog.set_level(logging.ERROR)
        check = PairCompromiseCheck(dead_api, fallback=dead_api, retries=0)
        result = check.check("bob", "hunter2")
        assert result.unchecked and result.rejected and "nor against the fallback" in caplog.text


class TestCloseSharedRace:
    @pytest.mark.parametrize("framework", ["flask", "django"])
    def test_log_ins_while_close_shared_loops(
        self, framework: str, store: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """close_shared() in a loop while 8 threads log in: every log-in gets the right answer (a pair store
        closed under a check is opened again for it), none an error page."""
        slow_pair_reads(monkeypatch)
        pairs = {"source": str(store), "key": str(key_file)}
        log_in: Callable[[int], object]
        if framework == "flask":
            app = flask_app(**pairs)

            def log_in(_: int) -> object:
                reply = app.test_client().post("/login", data={"username": "bob", "password": "hunter2"})
                label = reply.json["label"] if reply.status_code == 200 and reply.json is not None else reply.text
                return (reply.status_code, label)

        else:

            def log_in(_: int) -> object:
                request = RequestFactory().post("/login")
                request.session = {}
                user = authenticate(request, username="bob", password="hunter2")
                return (200 if user is not None else 401, request.credcheck_pair.label)

        settings_ = override_settings(AUTHENTICATION_BACKENDS=[BACKEND], CREDCHECK_PAIRS={"backend": INNER, **pairs})
        with settings_, closing_shared_checks() as errors, ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(log_in, range(160)))
        assert errors == []
        assert set(outcomes) == {(200, "exact")}
