"""The Flask integration: a Flask-WTF form posted through a real app, check_password(), Flask-Security-Too."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_security import RoleMixin, Security, UserDatastore, UserMixin
from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import InputRequired

import credcheck
from credcheck.contrib import _passwords, _policy
from credcheck.contrib.flask import CredcheckPasswordUtil, NotCompromised, check_password

from .conftest import FAST, UNLEAKED, Corpus, leak_logs


@pytest.fixture(autouse=True, scope="module")
def _close_shared_checks() -> Iterator[None]:
    yield
    _policy.close_shared()


# Defined at import time, before any app or setting exists: the validator must read its config later.
class SignUpForm(FlaskForm):
    password = PasswordField("Password", validators=[InputRequired(), NotCompromised()])


def make_site(form_class: type[FlaskForm] = SignUpForm, **config: Any) -> Flask:
    """A Flask app with a sign-up view that answers the form's errors as JSON."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="credcheck-tests", WTF_CSRF_ENABLED=False, **config)

    @app.post("/sign-up")
    def sign_up() -> Any:
        form = form_class()
        if form.validate_on_submit():
            return {"ok": True}
        return {"errors": form.errors}, 400

    return app


def post(app: Flask, password: str) -> list[str]:
    """Post ``password`` to the sign-up view; return the password field's errors."""
    response = app.test_client().post("/sign-up", data={"password": password})
    if response.status_code == 200:
        return []
    assert response.status_code == 400
    errors: list[str] = response.get_json()["errors"]["password"]
    return errors


def form_with(**options: Any) -> type[FlaskForm]:
    class ExplicitForm(FlaskForm):
        password = PasswordField("Password", validators=[NotCompromised(**options)])

    return ExplicitForm


# ----------------------------------------------------------------------------------------------------


class TestSources:
    def test_store_rejects_with_count(self, corpus: Corpus) -> None:
        """A leaked password from a local store is refused with its count."""
        app = make_site(CREDCHECK_SOURCE=corpus.store)
        assert post(app, "password") == ["This password has appeared in a data breach 9 times."]

    def test_count_of_one_is_singular(self, corpus: Corpus) -> None:
        """A count of 1 reads "1 time"."""
        app = make_site(CREDCHECK_SOURCE=corpus.store)
        assert post(app, "letmein!") == ["This password has appeared in a data breach 1 time."]

    def test_filter_rejects_without_count(self, corpus: Corpus) -> None:
        """A filter knows no count: the message has no number."""
        app = make_site(CREDCHECK_SOURCE=corpus.filter)
        assert post(app, "iloveyou") == ["This password has appeared in a data breach."]

    def test_range_api_rejects_with_count(self, range_api: str) -> None:
        """A leaked password is refused through a range API running on 127.0.0.1."""
        app = make_site(CREDCHECK_SOURCE=range_api)
        assert post(app, "password") == ["This password has appeared in a data breach 9 times."]

    @pytest.mark.parametrize("kind", ["store", "filter", "api"])
    def test_unleaked_passes(self, kind: str, corpus: Corpus, range_api: str) -> None:
        """A password in no source is accepted."""
        source = {"store": corpus.store, "filter": corpus.filter, "api": range_api}[kind]
        assert post(make_site(CREDCHECK_SOURCE=source), UNLEAKED) == []

    def test_empty_field_is_left_to_input_required(self, corpus: Corpus) -> None:
        """An empty password is not checked (the empty string's hash is in real corpora); InputRequired speaks."""
        app = make_site(form_with(source=corpus.store))
        assert post(app, "") == []


class TestMinCount:
    @pytest.mark.parametrize(("password", "refused"), [("iloveyou", False), ("password", True)])
    def test_store_counts_below_threshold_pass(self, corpus: Corpus, password: str, refused: bool) -> None:
        """With CREDCHECK_MIN_COUNT=5 a store refuses a password seen 9 times and accepts one seen 3 times."""
        app = make_site(CREDCHECK_SOURCE=corpus.store, CREDCHECK_MIN_COUNT=5)
        assert bool(post(app, password)) is refused

    @pytest.mark.parametrize(("password", "refused"), [("iloveyou", False), ("password", True)])
    def test_range_api_counts_below_threshold_pass(self, range_api: str, password: str, refused: bool) -> None:
        """min_count applies to a range API's counts too."""
        assert bool(post(make_site(form_with(source=range_api, min_count=5)), password)) is refused

    @pytest.mark.parametrize(("password", "refused"), [("iloveyou", False), ("password", True)])
    def test_filter_built_with_threshold(self, corpus: Corpus, password: str, refused: bool) -> None:
        """A filter built with --min-count 5 answers min_count=5."""
        app = make_site(CREDCHECK_SOURCE=corpus.filter_min5, CREDCHECK_MIN_COUNT=5)
        assert bool(post(app, password)) is refused


class TestFailurePolicy:
    def test_reject_is_the_default(self, dead_api: str) -> None:
        """A dead source refuses the password as unchecked."""
        app = make_site(CREDCHECK_SOURCE=dead_api, CREDCHECK_OPTIONS=FAST)
        assert post(app, UNLEAKED) == [
            "This password could not be checked against known data breaches. Please try again later."
        ]

    def test_allow_accepts_and_logs_without_secrets(self, dead_api: str, caplog: pytest.LogCaptureFixture) -> None:
        """on_error="allow" accepts the password and logs an error that holds no password or hash."""
        app = make_site(CREDCHECK_SOURCE=dead_api, CREDCHECK_ON_ERROR="allow", CREDCHECK_OPTIONS=FAST)
        with caplog.at_level(logging.ERROR, logger="credcheck.contrib"):
            assert post(app, "iloveyou") == []
        (record,) = [r for r in caplog.records if r.name == "credcheck.contrib"]
        assert record.levelno == logging.ERROR
        assert "accepted it unchecked" in record.getMessage()
        leak_logs(caplog, "iloveyou")

    def test_fallback_answers_from_local_source(self, dead_api: str, corpus: Corpus) -> None:
        """on_error="fallback" answers from the local fallback, count included."""
        app = make_site(
            CREDCHECK_SOURCE=dead_api,
            CREDCHECK_ON_ERROR="fallback",
            CREDCHECK_FALLBACK=corpus.store,
            CREDCHECK_OPTIONS=FAST,
        )
        assert post(app, "password") == ["This password has appeared in a data breach 9 times."]
        assert post(app, UNLEAKED) == []


class TestConfiguration:
    def test_config_read_at_validation(self, corpus: Corpus) -> None:
        """The app config is read when a password is checked: one form class serves differently set-up apps."""
        by_store = make_site(CREDCHECK_SOURCE=corpus.store)
        by_filter = make_site(CREDCHECK_SOURCE=corpus.filter)
        assert post(by_store, "password") == ["This password has appeared in a data breach 9 times."]
        assert post(by_filter, "password") == ["This password has appeared in a data breach."]
        by_store.config["CREDCHECK_MIN_COUNT"] = 10
        assert post(by_store, "password") == []

    def test_explicit_options_override_config(self, corpus: Corpus) -> None:
        """Options given to NotCompromised win over the app config."""
        app = make_site(form_with(source=corpus.store), CREDCHECK_SOURCE=corpus.filter)
        assert post(app, "password") == ["This password has appeared in a data breach 9 times."]

    def test_custom_messages(self, corpus: Corpus, dead_api: str) -> None:
        """message and unchecked_message replace the defaults verbatim."""
        leaked = make_site(form_with(source=corpus.store, message="Pick another."))
        assert post(leaked, "password") == ["Pick another."]
        dead = make_site(form_with(source=dead_api, unchecked_message="Try later.", **FAST))
        assert post(dead, UNLEAKED) == ["Try later."]

    def test_bad_config_is_reported(self, corpus: Corpus) -> None:
        """A bad CREDCHECK_* value raises, naming the setting."""
        app = make_site(CREDCHECK_SOURCE=corpus.store, CREDCHECK_ON_ERROR="ignore")
        with app.app_context(), pytest.raises(ValueError, match=r"CREDCHECK_.*on_error"):
            check_password("password")

    def test_options_must_be_a_dict(self, corpus: Corpus) -> None:
        """CREDCHECK_OPTIONS that is not a dict raises, naming the key."""
        app = make_site(CREDCHECK_SOURCE=corpus.store, CREDCHECK_OPTIONS=["retries"])
        with app.app_context(), pytest.raises(TypeError, match="CREDCHECK_OPTIONS"):
            check_password("password")

    def test_repr_hides_source_credentials(self) -> None:
        """The validator's repr names the source without any user:password part of its URL."""
        text = repr(NotCompromised("https://user:s3cret@ranges.example"))
        assert "s3cret" not in text
        assert "ranges.example" in text

    def test_bad_options_fail_at_construction(self) -> None:
        """A bad option fails when the form is defined, not at the first sign-up."""
        with pytest.raises(ValueError, match="timeout"):
            NotCompromised(timeout=0)


class TestCheckPassword:
    def test_outside_an_app(self, corpus: Corpus) -> None:
        """check_password works with explicit settings and no app context."""
        assert check_password("password", source=corpus.store) == [
            "This password has appeared in a data breach 9 times."
        ]
        assert check_password(UNLEAKED, source=corpus.store) == []

    def test_lone_surrogate_leaked_is_found(self, tmp_path: Path) -> None:
        """A leaked password holding a lone surrogate is found, from the hash of its surrogatepass bytes."""
        password = "pass\ud800word"
        dump = tmp_path / "hashes.txt"
        dump.write_text(hashlib.sha1(password.encode("utf-8", "surrogatepass")).hexdigest().upper() + ":2\n")
        credcheck.build([dump], store=tmp_path / "s.store")
        assert check_password(password, source=str(tmp_path / "s.store"), on_error="allow") == [
            "This password has appeared in a data breach 2 times."
        ]

    def test_takes_an_open_checker(self, corpus: Corpus) -> None:
        """source may be a Checker already open."""
        with credcheck.open(corpus.filter) as checker:
            assert check_password("iloveyou", source=checker) == ["This password has appeared in a data breach."]

    def test_reads_app_config(self, corpus: Corpus) -> None:
        """Inside an app context it reads CREDCHECK_* from the app."""
        app = make_site(CREDCHECK_SOURCE=corpus.filter)
        with app.app_context():
            assert check_password("iloveyou") == ["This password has appeared in a data breach."]


# ----------------------------------------------------------------------------------------------------
# Flask-Security-Too


class User(UserMixin):
    id = None
    fs_uniquifier = None
    email = None
    password = None
    active = True


class Role(RoleMixin):
    pass


class NoUsers(UserDatastore):
    """A datastore with nobody in it: enough for Flask-Security-Too's registration form to validate."""

    def __init__(self) -> None:
        super().__init__(User, Role)

    def find_user(self, *args: Any, **kwargs: Any) -> None:
        return None


def security_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="credcheck-tests",
        SECURITY_PASSWORD_SALT="credcheck-tests",
        SECURITY_REGISTERABLE=True,
        SECURITY_SEND_REGISTER_EMAIL=False,
        SECURITY_EMAIL_VALIDATOR_ARGS={"check_deliverability": False},
        WTF_CSRF_ENABLED=False,
        **config,
    )
    Security(app, NoUsers(), password_util_cls=CredcheckPasswordUtil)
    return app


class TestFlaskSecurity:
    def test_register_refuses_leaked_password(self, corpus: Corpus) -> None:
        """Flask-Security-Too's /register refuses a leaked password with credcheck's message."""
        app = security_app(CREDCHECK_SOURCE=corpus.store)
        response = app.test_client().post(
            "/register", json={"email": "user@example.com", "password": "password", "password_confirm": "password"}
        )
        assert response.status_code == 400
        assert response.get_json()["response"]["field_errors"] == {
            "password": ["This password has appeared in a data breach 9 times."]
        }

    def test_password_util_accepts_unleaked(self, corpus: Corpus) -> None:
        """The hook returns no errors and the normalised password for an unleaked one."""
        app = security_app(CREDCHECK_SOURCE=corpus.store)
        with app.test_request_context():
            util = app.extensions["security"].password_util
            assert util.validate(UNLEAKED, True) == (None, UNLEAKED)

    def test_flask_security_checks_run_first(self, corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
        """A password Flask-Security-Too refuses (too short) gets its message and is never sent to credcheck."""
        app = security_app(CREDCHECK_SOURCE=corpus.store)
        monkeypatch.setattr(_passwords.CompromiseCheck, "check", lambda self, password: pytest.fail("checked"))
        with app.test_request_context():
            errors, _ = app.extensions["security"].password_util.validate("123", True)
        assert errors == ["Password must be at least 8 characters"]

    def test_checks_the_normalized_password(self, tmp_path: Path) -> None:
        """The password checked is the NFKD-normalised one Flask-Security-Too stores."""
        leaked = "ﬁnancial-2024"  # the "ﬁ" ligature normalises to "fi"
        dump = tmp_path / "pwned.txt"
        dump.write_text(f"{credcheck.sha1_hex('financial-2024')}:4")
        credcheck.build([dump], store=tmp_path / "pwned.store")
        app = security_app(CREDCHECK_SOURCE=str(tmp_path / "pwned.store"))
        with app.test_request_context():
            errors, normalized = app.extensions["security"].password_util.validate(leaked, True)
        assert normalized == "financial-2024"
        assert errors == ["This password has appeared in a data breach 4 times."]
