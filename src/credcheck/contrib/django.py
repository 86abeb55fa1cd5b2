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
(a local filter or store), ``timeout`` (seconds one check may wait for a range API), and any other option
of :func:`credcheck.open` (``retries``, ``padding``, ...). Anything not given there comes from the
optional ``settings.CREDCHECK`` dict (same keys), read when a password is validated, never at import.

The validator hides every local variable of the call chain under it from Django's error reports
(``sensitive_variables``), so neither the password nor its hash shows up in a 500 e-mail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils.deconstruct import deconstructible
from django.utils.translation import gettext, ngettext
from django.views.decorators.debug import sensitive_variables

from .._frames import entry_point
from . import _policy

__all__ = ["SETTING", "CompromisedPasswordValidator"]

#: The optional settings dict read when a password is first validated (keys as the validator's OPTIONS).
SETTING = "CREDCHECK"

_F = TypeVar("_F", bound=Callable[..., Any])


def _hidden_from_error_reports(func: _F) -> _F:
    # With no names, sensitive_variables hides every local of func *and* of every frame it calls, so the
    # password stays hidden down in the checker too, and so do the digests computed from it.
    return cast(_F, sensitive_variables()(func))


def _settings() -> Mapping[str, Any]:
    configured = getattr(settings, SETTING, None)
    if configured is None:
        return {}
    if not isinstance(configured, Mapping):
        raise ImproperlyConfigured(f"settings.{SETTING} must be a dict, not {type(configured).__name__}")
    try:
        _policy.check_values(configured)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"settings.{SETTING}: {exc}") from exc
    return configured


@deconstructible(path="credcheck.contrib.django.CompromisedPasswordValidator")
class CompromisedPasswordValidator:
    """Refuses a password that a leaked-password source has seen (at least ``min_count`` times).

    Error codes: ``password_compromised`` (params: ``count``, absent when the source keeps no counts, as a
    Bloom filter does) and ``password_check_failed`` when the source could not answer and ``on_error`` is
    ``"reject"``. Also usable as a form or model field validator (``validators=[...]``); it deconstructs
    for migrations and compares equal to another with the same options.
    """

    code = "password_compromised"
    unchecked_code = "password_check_failed"

    def __init__(
        self,
        source: str | os.PathLike[str] | None = None,
        min_count: int | None = None,
        on_error: str | None = None,
        fallback: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> None:
        self.options = _policy.configuration(
            options,
            {"source": source, "min_count": min_count, "on_error": on_error, "fallback": fallback, "timeout": timeout},
        )
        _policy.check_values(self.options)

    @entry_point
    @_hidden_from_error_reports
    def validate(self, password: str, user: object | None = None) -> None:
        """Raise ``ValidationError`` if ``password`` has leaked, or could not be checked under "reject"."""
        result = _policy.shared_check(_policy.configuration(_settings(), self.options)).check(password)
        if result.unchecked:
            raise ValidationError(self.get_unchecked_message(), code=self.unchecked_code)
        if result.compromised:
            if result.count is None:
                raise ValidationError(self.get_error_message(None), code=self.code)
            raise ValidationError(self.get_error_message(result.count), code=self.code, params={"count": result.count})

    @entry_point
    @_hidden_from_error_reports
    def __call__(self, value: str) -> None:
        """Validate ``value`` as a field validator does."""
        self.validate(value)

    def get_error_message(self, count: int | None) -> str:
        """The message for a leaked password (``%(count)d`` is filled in from the error's params)."""
        if count is None:
            return str(gettext("This password has appeared in a data breach."))
        return str(
            ngettext(
                "This password has appeared in a data breach %(count)d time.",
                "This password has appeared in a data breach %(count)d times.",
                count,
            )
        )

    def get_unchecked_message(self) -> str:
        """The message for a password that could not be checked because the source failed."""
        return str(gettext("This password could not be checked against known data breaches. Please try again later."))

    def get_help_text(self) -> str:
        """The help text Django shows beside password fields."""
        return str(gettext("Your password cannot be one that has appeared in a data breach."))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompromisedPasswordValidator):
            return NotImplemented
        return self.options == other.options

    def __repr__(self) -> str:
        shown = {**self.options}
        for name in ("source", "fallback"):
            if name in shown:
                shown[name] = _policy.source_label(shown[name])
        return f"<CompromisedPasswordValidator {shown!r}>"
