"""Django: a password validator that refuses passwords found in leaked sets.

Add it to ``AUTH_PASSWORD_VALIDATORS``::

    AUTH_PASSWORD_VALIDATORS = [
        ...,
        {
            "NAME": "credcheck.contrib.django.CompromisedPasswordValidator",
            "OPTIONS": {"source": "/srv/credcheck/pwned.store", "min_count": 3},
        },
    ]

``OPTIONS`` are ``source`` (a filter file, a store path or a range API URL; default: the public Pwned
Passwords API), ``min_count``, ``on_error`` (``"reject"``, ``"allow"`` or ``"fallback"``), ``fallback``
(a local filter or store), ``timeout`` (seconds one check may wait for a range API), ``message`` and
``unchecked_message`` (replacing the messages verbatim), and any other option of :func:`credcheck.open`
(``retries``, ``padding``, ...). Anything not given there comes from the optional ``settings.CREDCHECK``
dict (same keys), read when a password is validated, never at import.

The validator hides every local variable of the call chain under it from Django's error reports
(``sensitive_variables``), so neither the password nor its hash shows up in a 500 e-mail.

Credential pairs (a pair service, ``credcheck serve --pairs``): settings in ``settings.CREDCHECK_PAIRS``
(``source``: the service's URL, or a pair store path with ``key``; ``on_error``, ``fallback``,
``fallback_key``, ``timeout``, ``public_key``...). :class:`PairCheckBackend` wraps the site's authentication
backend (``CREDCHECK_PAIRS["backend"]``, default ``ModelBackend``): after a successful log-in it checks the
username and password pair, sends :data:`pair_checked`, and records the outcome on ``request.credcheck_pair``
(a :class:`~credcheck.contrib._verdicts.PairCheckResult`) and in ``request.session["credcheck_pair"]`` (its
label: ``"exact"``, ``"similar"``, ``"username"``, ``"not_found"`` or ``"unchecked"``), so the site can ask
for a password change; it never refuses a log-in itself. :class:`CompromisedPairValidator` refuses, at
sign-up or password change, a new password that has leaked together with ``user.get_username()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.dispatch import Signal
from django.utils.deconstruct import deconstructible
from django.utils.module_loading import import_string
from django.utils.translation import gettext, ngettext
from django.views.decorators.debug import sensitive_variables

from .._frames import entry_point
from ._pairs import PairCompromiseCheck, shared_pair_check
from ._passwords import CompromiseCheck, shared_check
from ._policy import PolicyCheck
from ._rules import PairRule, PasswordRule, Rule, configuration, project_settings
from ._verdicts import (
    COMPROMISED_MANY,
    COMPROMISED_NO_COUNT,
    COMPROMISED_ONE,
    UNCHECKED,
    CheckResult,
    PairCheckResult,
)

__all__ = [
    "PAIR_SETTING",
    "SETTING",
    "CompromisedPairValidator",
    "CompromisedPasswordValidator",
    "PairCheckBackend",
    "pair_checked",
]

#: The optional settings dict read when a password is first validated (keys as the validator's OPTIONS).
SETTING = "CREDCHECK"
#: The settings dict of the pair checks (``source`` and the rest; ``backend`` for :class:`PairCheckBackend`).
PAIR_SETTING = "CREDCHECK_PAIRS"
#: Sent after each pair check of a successful log-in: ``sender=PairCheckBackend``, ``request``, ``user``, ``result``.
pair_checked = Signal()
#: Where :class:`PairCheckBackend` records the outcome in the session.
SESSION_KEY = "credcheck_pair"

_F = TypeVar("_F", bound=Callable[..., Any])


def _hidden_from_error_reports(func: _F) -> _F:
    # With no names, sensitive_variables hides every local of func *and* of every frame it calls, so the
    # password stays hidden down in the checker too, and so do the digests computed from it.
    return cast(_F, sensitive_variables()(func))


def _project(kind: type[PolicyCheck[Any]], name: str) -> dict[str, Any]:
    """``settings.<name>``, checked when a check runs (never at import); a bad one is ImproperlyConfigured."""
    try:
        return project_settings(kind, f"settings.{name}", getattr(settings, name, None))
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(str(exc)) from exc


class _Validator(Rule):
    """What both validators share: OPTIONS as a rule, equality by it (Django compares validators), and the way a
    refusal becomes a ValidationError."""

    code: str
    unchecked_code: str

    def _raise_for(
        self, result: CheckResult | PairCheckResult, message: str, params: Mapping[str, Any] | None = None
    ) -> None:
        """Raise the ValidationError for a refused ``result`` (``message``: the default for a leak)."""
        replacement = self.replacement(result)
        if result.unchecked:
            unchecked = self.get_unchecked_message() if replacement is None else replacement
            raise ValidationError(unchecked, code=self.unchecked_code)
        if result.compromised:
            raise ValidationError(message if replacement is None else replacement, code=self.code, params=params)

    def get_unchecked_message(self) -> str:
        """The message for a password that could not be checked because the source failed."""
        return str(gettext(UNCHECKED))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return (self.options, self.message, self.unchecked_message) == (
            other.options,
            other.message,
            other.unchecked_message,
        )


@deconstructible(path="credcheck.contrib.django.CompromisedPasswordValidator")
class CompromisedPasswordValidator(_Validator, PasswordRule):
    """Refuses a password that a leaked-password source has seen (at least ``min_count`` times).

    Error codes: ``password_compromised`` (params: ``count``, absent when the source keeps no counts, as a
    Bloom filter does) and ``password_check_failed`` when the source could not answer and ``on_error`` is
    ``"reject"``. ``message`` and ``unchecked_message`` replace the messages verbatim (or override
    :meth:`get_error_message` and :meth:`get_unchecked_message`). Also usable as a form or model field
    validator (``validators=[...]``); it deconstructs for migrations and compares equal to another with the
    same options.
    """

    code = "password_compromised"
    unchecked_code = "password_check_failed"

    @entry_point
    @_hidden_from_error_reports
    def validate(self, password: str, user: object | None = None) -> None:
        """Raise ``ValidationError`` if ``password`` has leaked, or could not be checked under "reject"."""
        result = shared_check(configuration(_project(CompromiseCheck, SETTING), self.options)).check(password)
        params = None if result.count is None else {"count": result.count}
        self._raise_for(result, self.get_error_message(result.count), params)

    @entry_point
    @_hidden_from_error_reports
    def __call__(self, value: str) -> None:
        """Validate ``value`` as a field validator does."""
        self.validate(value)

    def get_error_message(self, count: int | None) -> str:
        """The message for a leaked password (``%(count)d`` is filled in from the error's params)."""
        if count is None:
            return str(gettext(COMPROMISED_NO_COUNT))
        return str(ngettext(COMPROMISED_ONE, COMPROMISED_MANY, count))

    def get_help_text(self) -> str:
        """The help text Django shows beside password fields."""
        return str(gettext("Your password cannot be one that has appeared in a data breach."))


def _pair_settings(explicit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    merged = configuration(_project(PairCompromiseCheck, PAIR_SETTING), explicit)
    merged.pop("backend", None)
    if "source" not in merged:
        raise ImproperlyConfigured(f"settings.{PAIR_SETTING} needs a 'source': a pair service URL or a pair store")
    return merged


class PairCheckBackend:
    """An authentication backend that wraps another and checks each successful log-in's username and password.

    ``AUTHENTICATION_BACKENDS = ["credcheck.contrib.django.PairCheckBackend"]``; the wrapped backend is
    ``settings.CREDCHECK_PAIRS["backend"]`` (a dotted path, default ``django.contrib.auth.backends.ModelBackend``).
    A log-in the wrapped backend refuses is refused (nothing is checked); one it accepts is accepted whatever
    the pair check says — the outcome is recorded (see the module docs) for the site to act on.
    """

    def __init__(self) -> None:
        configured = getattr(settings, PAIR_SETTING, None) or {}
        path = configured.get("backend", "django.contrib.auth.backends.ModelBackend")
        self.inner = import_string(path)()

    @entry_point
    @_hidden_from_error_reports
    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        """Authenticate with the wrapped backend; on success, check the pair and record the outcome."""
        user = self.inner.authenticate(request, username=username, password=password, **kwargs)
        if user is None or password is None:
            return user
        result = shared_pair_check(_pair_settings()).check(user.get_username(), password)
        if request is not None:
            request.credcheck_pair = result
            session = getattr(request, "session", None)
            if session is not None:
                session[SESSION_KEY] = result.label
        pair_checked.send(sender=PairCheckBackend, request=request, user=user, result=result)
        return user

    def get_user(self, user_id: Any) -> Any:
        return self.inner.get_user(user_id)

    def __getattr__(self, name: str) -> Any:
        # permissions and the rest: the wrapped backend's (never "inner" itself: no recursion before __init__)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


@deconstructible(path="credcheck.contrib.django.CompromisedPairValidator")
class CompromisedPairValidator(_Validator, PairRule):
    """Refuses a new password that has leaked together with the user's username (sign-up, password change).

    Put it in ``AUTH_PASSWORD_VALIDATORS`` (``OPTIONS`` override ``settings.CREDCHECK_PAIRS``). Without a
    user (or one with no username yet) there is no pair to check and it passes. Error codes:
    ``password_pair_compromised`` (an exact or a similar password with this username), ``password_pair_check_failed``
    (the source could not answer and ``on_error`` is ``"reject"``); ``message`` and ``unchecked_message``
    replace the messages verbatim.
    """

    code = "password_pair_compromised"
    unchecked_code = "password_pair_check_failed"

    @entry_point
    @_hidden_from_error_reports
    def validate(self, password: str, user: Any | None = None) -> None:
        """Raise ``ValidationError`` if this username with ``password`` has leaked (or could not be checked)."""
        username = user.get_username() if user is not None and hasattr(user, "get_username") else None
        if not username:
            return
        result: PairCheckResult = shared_pair_check(_pair_settings(self.options)).check(username, password)
        self._raise_for(result, self.get_error_message())

    def get_error_message(self) -> str:
        return str(gettext("This password has appeared in a data breach together with your username."))

    def get_help_text(self) -> str:
        return str(gettext("Your password cannot be one that has leaked together with your username."))
