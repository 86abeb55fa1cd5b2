"""The Django password validator, driven through Django's own password-validation machinery.

Also the shared core (``credcheck.contrib._policy``) where its behaviour does not depend on a framework.
"""

from __future__ import annotations

import logging
import threading
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

from django import forms  # these need configured settings
from django.contrib.auth.password_validation import (
    password_validators_help_texts,
    validate_password,
)
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db.migrations.writer import MigrationWriter
from django.test import override_settings
from django.views.debug import ExceptionReporter

import credcheck
from credcheck import _sources
from credcheck.checker import StoreChecker
from credcheck.contrib import _passwords, _policy, _rules, _verdicts
from credcheck.contrib.django import CompromisedPasswordValidator

from .conftest import FAST, LEAKS, UNLEAKED, Corpus, leak_logs

NAME = "credcheck.contrib.django.CompromisedPasswordValidator"


@pytest.fixture(autouse=True, scope="module")
def _close_shared_checks() -> Iterator[None]:
    yield
    _policy.close_shared()


def validators(**options: Any) -> list[dict[str, Any]]:
    return [{"NAME": NAME, "OPTIONS": options}]


def errors_of(password: str, **options: Any) -> list[ValidationError]:
    """The ValidationErrors validate_password raises with the validator configured by ``options``."""
    with override_settings(AUTH_PASSWORD_VALIDATORS=validators(**options)):
        try:
            validate_password(password)
        except ValidationError as exc:
            return list(exc.error_list)
    return []


# ----------------------------------------------------------------------------------------------------


class TestSources:
    def test_store_rejects_with_count(self, corpus: Corpus) -> None:
        """A leaked password from a local store is refused with its count in message and params."""
        (error,) = errors_of("password", source=corpus.store)
        assert error.code == "password_compromised"
        assert error.params == {"count": 9}
        assert error.messages == ["This password has appeared in a data breach 9 times."]

    def test_count_of_one_is_singular(self, corpus: Corpus) -> None:
        """A count of 1 reads "1 time", not "1 times"."""
        (error,) = errors_of("letmein!", source=corpus.store)
        assert error.messages == ["This password has appeared in a data breach 1 time."]

    def test_filter_rejects_without_count(self, corpus: Corpus) -> None:
        """A filter knows no count: the message has no number and the error no params."""
        (error,) = errors_of("iloveyou", source=corpus.filter)
        assert error.code == "password_compromised"
        assert error.params is None
        assert error.messages == ["This password has appeared in a data breach."]

    def test_range_api_rejects_with_count(self, range_api: str) -> None:
        """A leaked password is refused through a range API running on 127.0.0.1."""
        (error,) = errors_of("password", source=range_api)
        assert error.params == {"count": 9}

    @pytest.mark.parametrize("kind", ["store", "filter", "api"])
    def test_unleaked_passes(self, kind: str, corpus: Corpus, range_api: str) -> None:
        """A password in no source is accepted."""
        source = {"store": corpus.store, "filter": corpus.filter, "api": range_api}[kind]
        assert errors_of(UNLEAKED, source=source) == []


class TestMinCount:
    @pytest.mark.parametrize(("password", "refused"), [("iloveyou", False), ("password", True)])
    def test_store_counts_below_threshold_pass(self, corpus: Corpus, password: str, refused: bool) -> None:
        """With min_count=5 a store refuses a password seen 9 times and accepts one seen 3 times."""
        assert bool(errors_of(password, source=corpus.store, min_count=5)) is refused

    @pytest.mark.parametrize(("password", "refused"), [("iloveyou", False), ("password", True)])
    def test_range_api_counts_below_threshold_pass(self, range_api: str, password: str, refused: bool) -> None:
        """min_count applies to a range API's counts too."""
        assert bool(errors_of(password, source=range_api, min_count=5)) is refused

    @pytest.mark.parametrize(("password", "refused"), [("iloveyou", False), ("password", True)])
    def test_filter_built_with_threshold(self, corpus: Corpus, password: str, refused: bool) -> None:
        """A filter built with --min-count 5 answers min_count=5."""
        assert bool(errors_of(password, source=corpus.filter_min5, min_count=5)) is refused

    def test_filter_built_below_threshold_is_a_configuration_error(self, corpus: Corpus) -> None:
        """A filter cannot answer a threshold above the one it was built with: loud, not silently wrong."""
        with pytest.raises(ValueError, match="min_count=1"):
            errors_of("password", source=corpus.filter, min_count=5)


class TestFailurePolicy:
    def test_reject_is_the_default(self, dead_api: str, caplog: pytest.LogCaptureFixture) -> None:
        """A dead source refuses the password as unchecked, with its own code, and logs why."""
        with caplog.at_level(logging.ERROR, logger="credcheck.contrib"):
            (error,) = errors_of(UNLEAKED, source=dead_api, **FAST)
        assert error.code == "password_check_failed"
        assert error.messages == [
            "This password could not be checked against known data breaches. Please try again later."
        ]
        assert "connection" in caplog.text
        leak_logs(caplog, UNLEAKED)

    def test_allow_accepts_and_logs_without_secrets(self, dead_api: str, caplog: pytest.LogCaptureFixture) -> None:
        """on_error="allow" accepts the password and logs an error naming the source, never the password."""
        with caplog.at_level(logging.ERROR, logger="credcheck.contrib"):
            assert errors_of("iloveyou", source=dead_api, on_error="allow", **FAST) == []
        (record,) = [r for r in caplog.records if r.name == "credcheck.contrib"]
        assert record.levelno == logging.ERROR
        assert dead_api in record.getMessage()
        assert "accepted it unchecked" in record.getMessage()
        leak_logs(caplog, "iloveyou")

    def test_fallback_answers_from_local_source(self, dead_api: str, corpus: Corpus) -> None:
        """on_error="fallback" answers from the local fallback, count included."""
        (error,) = errors_of("password", source=dead_api, on_error="fallback", fallback=corpus.store, **FAST)
        assert error.params == {"count": 9}

    def test_fallback_implies_the_policy(self, dead_api: str, corpus: Corpus) -> None:
        """Giving a fallback without on_error means on_error="fallback"."""
        (error,) = errors_of("iloveyou", source=dead_api, fallback=corpus.filter, **FAST)
        assert error.code == "password_compromised"

    def test_fallback_filter_below_the_threshold_is_refused_at_setup(self, dead_api: str, corpus: Corpus) -> None:
        """A filter fallback built without the threshold is a ValueError when the check is set up, not at the outage."""
        with pytest.raises(ValueError, match=r"fallback .*min_count=3"):
            _passwords.CompromiseCheck(dead_api, min_count=3, fallback=corpus.filter)

    def test_readme_fallback_example_answers_during_an_outage(self, dead_api: str, tmp_path: Path) -> None:
        """The README's example (min_count 3, a filter built with --min-count 3) answers while the API is down."""
        dump = tmp_path / "pwned.txt"
        dump.write_text("\r\n".join(sorted(f"{credcheck.sha1_hex(p)}:{n}" for p, n in LEAKS.items())))
        fallback = tmp_path / "pwned-min3.bloom"
        credcheck.build([dump], filter=fallback, min_count=3)
        options = {"source": dead_api, "min_count": 3, "on_error": "fallback", "fallback": str(fallback), **FAST}
        (error,) = errors_of("iloveyou", **options)  # seen 3 times
        assert error.code == "password_compromised"
        assert errors_of("letmein!", **options) == []  # seen once

    def test_fallback_replaced_by_one_that_cannot_answer_is_unchecked(
        self, dead_api: str, corpus: Corpus, tmp_path: Path
    ) -> None:
        """A fallback swapped after set-up for a filter below the threshold refuses as unchecked, never a 500."""
        fallback = tmp_path / "fallback.bloom"
        fallback.write_bytes(Path(corpus.filter_min5).read_bytes())
        check = _passwords.CompromiseCheck(dead_api, min_count=5, fallback=fallback, **FAST)
        check.close()  # forget what set-up opened, as after close_shared()
        fallback.write_bytes(Path(corpus.filter).read_bytes())
        assert check.check(UNLEAKED) == _verdicts.CheckResult(False, None, None, unchecked=True)

    def test_fallback_that_fails_too_rejects(self, dead_api: str, tmp_path: Path) -> None:
        """When the fallback cannot answer either, the password is refused as unchecked."""
        (error,) = errors_of(UNLEAKED, source=dead_api, fallback=str(tmp_path / "missing.bloom"), **FAST)
        assert error.code == "password_check_failed"

    @pytest.mark.parametrize("on_error", ["allow", "reject"])
    def test_lone_surrogate_is_checked_never_a_500(self, corpus: Corpus, dead_api: str, on_error: str) -> None:
        """A password holding a lone surrogate is checked like any other (found or not), under every policy."""
        assert errors_of("pass\ud800word", source=corpus.store, on_error=on_error) == []
        assert len(errors_of("pass\ud800word", source=dead_api, on_error="reject", **FAST)) == 1
        assert errors_of("pass\ud800word", source=dead_api, on_error="allow", **FAST) == []

    def test_missing_local_source_follows_the_policy(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A source that cannot be opened is a failure like an outage, not a crash."""
        with caplog.at_level(logging.ERROR, logger="credcheck.contrib"):
            assert errors_of(UNLEAKED, source=str(tmp_path / "gone.store"), on_error="allow") == []
        assert "gone.store" in caplog.text


class TestCheckerInstances:
    def test_validator_takes_an_open_checker(self, corpus: Corpus) -> None:
        """OPTIONS may hold a Checker instead of a path or URL; it answers, and stays open after close_shared()."""
        checker = credcheck.open(corpus.store, min_count=5)
        (error,) = errors_of("password", source=checker)
        assert error.params == {"count": 9}
        assert errors_of("iloveyou", source=checker) == []  # seen 3 times, below the checker's min_count
        _policy.close_shared()
        assert checker.check("password").compromised  # the caller's checker is the caller's to close
        checker.close()

    def test_checker_fallback_answers_during_an_outage(self, dead_api: str, corpus: Corpus) -> None:
        """A Checker given as the fallback is asked when the source fails."""
        with credcheck.open(corpus.store) as fallback:
            (error,) = errors_of("password", source=dead_api, fallback=fallback, **FAST)
            assert error.params == {"count": 9}

    def test_min_count_must_agree_with_the_checker(self, corpus: Corpus) -> None:
        """A min_count that contradicts the given checker's is a ValueError at set-up."""
        with credcheck.open(corpus.store, min_count=2) as checker, pytest.raises(ValueError, match="min_count=2"):
            _passwords.CompromiseCheck(checker, min_count=3)

    def test_open_options_do_not_apply_to_a_checker(self, corpus: Corpus) -> None:
        """Options meant for opening a source are refused next to a Checker (they would be silently unused)."""
        with credcheck.open(corpus.store) as checker, pytest.raises(TypeError, match="retries"):
            _passwords.CompromiseCheck(checker, retries=1)


class TestSettings:
    def test_settings_read_at_validation(self, corpus: Corpus) -> None:
        """settings.CREDCHECK is read when a password is validated, so a change after import takes effect."""
        with override_settings(CREDCHECK={"source": corpus.store}):
            (error,) = errors_of("password")
            assert error.params == {"count": 9}
        with override_settings(CREDCHECK={"source": corpus.filter}):
            (error,) = errors_of("password")
            assert error.params is None

    def test_options_override_settings(self, corpus: Corpus) -> None:
        """A validator's OPTIONS win over settings.CREDCHECK, key by key."""
        with override_settings(CREDCHECK={"source": corpus.store, "min_count": 5}):
            assert errors_of("iloveyou") == []
            assert errors_of("iloveyou", min_count=1)[0].params == {"count": 3}

    def test_options_replace_the_messages(self, corpus: Corpus, dead_api: str) -> None:
        """OPTIONS message and unchecked_message replace the messages, as in the other integrations; the codes
        and the count stay."""
        (leaked,) = errors_of("password", source=corpus.store, message="Seen %(count)d times: pick another.")
        assert (leaked.code, leaked.messages) == ("password_compromised", ["Seen 9 times: pick another."])
        (unchecked,) = errors_of(UNLEAKED, source=dead_api, unchecked_message="Try later.", **FAST)
        assert (unchecked.code, unchecked.messages) == ("password_check_failed", ["Try later."])

    def test_bad_settings_are_improperly_configured(self) -> None:
        """A settings.CREDCHECK that is not a dict, or holds a bad value, says so."""
        for value in (["source"], {"on_error": "ignore"}):
            with override_settings(CREDCHECK=value), pytest.raises(ImproperlyConfigured, match="CREDCHECK"):
                errors_of("password")

    def test_bad_options_fail_at_construction(self) -> None:
        """A bad OPTIONS value fails when Django builds the validator, not at the first log-in."""
        with pytest.raises(ValueError, match="on_error"):
            CompromisedPasswordValidator(on_error="ignore")
        with pytest.raises(ValueError, match="min_count"):
            CompromisedPasswordValidator(min_count=0)

    def test_default_source_is_the_public_api(self) -> None:
        """With nothing configured the source is the public Pwned Passwords API (not contacted here)."""
        check = _passwords.shared_check(_rules.configuration({}, CompromisedPasswordValidator().options))
        assert "api.pwnedpasswords.com" in repr(check)

    def test_help_text(self) -> None:
        """password_validators_help_texts() includes the validator's help text."""
        with override_settings(AUTH_PASSWORD_VALIDATORS=validators()):
            assert password_validators_help_texts() == [
                "Your password cannot be one that has appeared in a data breach."
            ]


class TestDjangoIntegration:
    def test_deconstruct(self) -> None:
        """The validator deconstructs to its import path and the keywords it was given."""
        validator = CompromisedPasswordValidator(source="/srv/pwned.store", min_count=3, retries=1)
        assert validator.deconstruct() == (NAME, (), {"source": "/srv/pwned.store", "min_count": 3, "retries": 1})

    def test_migration_serialization(self) -> None:
        """A migration writer can serialize it (as for a model field's validators)."""
        text, imports = MigrationWriter.serialize(CompromisedPasswordValidator(min_count=3))
        assert text == "credcheck.contrib.django.CompromisedPasswordValidator(min_count=3)"
        assert imports == {"import credcheck.contrib.django"}

    def test_equality(self) -> None:
        """Validators with the same options are equal; different options, or other types, are not."""
        assert CompromisedPasswordValidator(min_count=3) == CompromisedPasswordValidator(min_count=3)
        assert CompromisedPasswordValidator(min_count=3) != CompromisedPasswordValidator(min_count=4)
        assert CompromisedPasswordValidator() != object()

    def test_field_validator(self, corpus: Corpus) -> None:
        """Used in a form field's validators, it refuses a leaked value."""
        field = forms.CharField(validators=[CompromisedPasswordValidator(source=corpus.store)])
        with pytest.raises(ValidationError) as info:
            field.clean("password")
        assert info.value.error_list[0].code == "password_compromised"
        assert field.clean(UNLEAKED) == UNLEAKED

    def test_sensitive_variables_hide_the_password(self, corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
        """An error inside a check shows neither the password nor its digest in Django's error report."""

        def broken(self: StoreChecker, digests: Any) -> Any:
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(StoreChecker, "_check_digests", broken)
        validator = CompromisedPasswordValidator(source=corpus.store)
        with pytest.raises(RuntimeError) as info:
            validator.validate("hunter2-secret")
        frames = ExceptionReporter(None, info.type, info.value, info.tb).get_traceback_data()["frames"]
        assert any(frame["function"] == "validate" for frame in frames)
        shown = repr([frame["vars"] for frame in frames])
        digest = credcheck.sha1_hex("hunter2-secret")
        for secret in ("hunter2-secret", digest, digest.lower(), repr(bytes.fromhex(digest))):
            assert secret not in shown
        # The frames below the validator are cleared on the way out (credcheck._frames), so the report has
        # nothing left to mask there; what stays (the entry point's own frame) holds no argument.
        below = [frame["vars"] for frame in frames if frame["function"] != "test_sensitive_variables_hide_the_password"]
        assert all(name == "func" for variables in below for name, _ in variables)

    def test_repr_hides_source_credentials(self) -> None:
        """The repr names the source without any user:password part of its URL."""
        text = repr(CompromisedPasswordValidator(source="https://user:s3cret@ranges.example"))
        assert "s3cret" not in text
        assert "ranges.example" in text


class TestSharedCore:
    def test_opens_once_under_concurrency(self, corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
        """Threads checking at once open the source once and share it."""
        opened: list[str] = []
        real_open = credcheck.open

        def counting_open(source: Any, **options: Any) -> credcheck.Checker:
            opened.append(source)
            return real_open(source, **options)

        monkeypatch.setattr(_sources, "open", counting_open)
        check = _passwords.CompromiseCheck(corpus.store)
        barrier = threading.Barrier(8)
        results: list[_verdicts.CheckResult] = []

        def worker() -> None:
            barrier.wait()
            results.append(check.check("password"))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        check.close()
        assert opened == [corpus.store]
        assert results == [_verdicts.CheckResult(True, 9, "source")] * 8

    def test_failed_open_is_retried(self, tmp_path: Path, corpus: Corpus) -> None:
        """A source that was missing is picked up once it appears, without a restart."""
        target = tmp_path / "late.store"
        check = _passwords.CompromiseCheck(target, on_error="reject")
        assert check.check("password") == _verdicts.CheckResult(False, None, None, unchecked=True)
        target.write_bytes(Path(corpus.store).read_bytes())
        assert check.check("password") == _verdicts.CheckResult(True, 9, "source")
        check.close()

    def test_result_rejected(self) -> None:
        """A result is rejected when compromised or unchecked, and only then."""
        assert _verdicts.CheckResult(True, 3, "source").rejected
        assert _verdicts.CheckResult(False, None, None, unchecked=True).rejected
        assert not _verdicts.CheckResult(False, 0, "source").rejected
        assert not _verdicts.CheckResult(False, None, None).rejected

    def test_fallback_policy_needs_a_fallback(self) -> None:
        """on_error="fallback" without a fallback source is refused at construction."""
        with pytest.raises(ValueError, match="fallback"):
            _passwords.CompromiseCheck(on_error="fallback")

    def test_timeout_bounds_remote_checks(self, dead_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """timeout sets the client's per-request timeout and whole-check deadline; local sources ignore it."""
        seen: list[dict[str, Any]] = []
        monkeypatch.setattr(_sources, "open", lambda source, **options: seen.append(options))
        _passwords.CompromiseCheck(dead_api, timeout=1.5)._open("source")
        _passwords.CompromiseCheck("/srv/pwned.store", timeout=1.5)._open("source")
        assert seen == [{"min_count": 1, "timeout": 1.5, "deadline": 1.5}, {"min_count": 1}]

    def test_same_configuration_shares_one_check(self, corpus: Corpus) -> None:
        """shared_check returns one check per configuration, a new one when the configuration changes."""
        first = _passwords.shared_check({"source": corpus.store, "min_count": 2})
        assert _passwords.shared_check({"min_count": 2, "source": corpus.store}) is first
        assert _passwords.shared_check({"source": corpus.store, "min_count": 3}) is not first

    def test_unhashable_options_share_one_check(self, corpus: Corpus) -> None:
        """Configurations holding lists, dicts or paths are keyed by value."""
        config = {"source": "http://127.0.0.1:9", "fallback": Path(corpus.store), "user_agent": ["a"], "x": {"b": 1}}
        assert _passwords.shared_check(config) is _passwords.shared_check(dict(config))

    @pytest.mark.parametrize(("source", "error"), [(42, TypeError), ("", ValueError)])
    def test_bad_source_is_refused(self, source: Any, error: type[Exception]) -> None:
        """A source that is neither a path nor a URL is refused at construction."""
        with pytest.raises(error, match="source"):
            _passwords.CompromiseCheck(source)
