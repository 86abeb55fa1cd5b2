"""Flask: a WTForms validator, a plain check function and a Flask-Security-Too password hook.

- :class:`NotCompromised` goes in a WTForms (or Flask-WTF) field's ``validators``.
- :func:`check_password` returns a list of error messages, for any hand-written sign-up or change view.
- :class:`CredcheckPasswordUtil` (when Flask-Security-Too is installed) is a ``PasswordUtil`` for
  ``Security(app, datastore, password_util_cls=CredcheckPasswordUtil)``: Flask-Security-Too's own checks
  first (length, complexity), then credcheck on the normalised password.

Settings not given to a validator come from the current app's config, read when a password is checked,
never at import: ``CREDCHECK_SOURCE`` (a filter file, a store path or a range API URL; default: the public
Pwned Passwords API), ``CREDCHECK_MIN_COUNT``, ``CREDCHECK_ON_ERROR`` (``"reject"``, ``"allow"`` or
``"fallback"``), ``CREDCHECK_FALLBACK`` (a local filter or store), ``CREDCHECK_TIMEOUT`` (seconds one
check may wait for a range API) and ``CREDCHECK_OPTIONS`` (a dict of other :func:`credcheck.open` options).

Credential pairs (a pair service, ``credcheck serve --pairs``), with settings in ``app.config["CREDCHECK_PAIRS"]``
(a dict: ``source``, the service's URL or a pair store path with ``key``; ``on_error``, ``fallback``,
``fallback_key``, ``timeout``, ``public_key``...):

- :func:`check_login` goes in the log-in view, after the password was verified: it checks the username and
  password pair and returns a :class:`~credcheck.contrib._verdicts.PairCheckResult`, also kept on
  ``flask.g.credcheck_pair`` for the request, so the view can ask for a password change.
- :class:`PairNotCompromised` is the WTForms validator for sign-up and password change: the new password with
  the form's username field (``username_field``).

The policy (docs/INTEGRATIONS.md, "The policy"): :class:`CredcheckPolicy` is a Flask extension over one
:class:`~credcheck.contrib.policy.Guard`, its settings read from ``app.config`` when first needed:
``CREDCHECK_POLICY`` (a :class:`~credcheck.contrib.policy.Policy`'s settings, and ``passwords`` — check
passwords with the ``CREDCHECK_*`` settings, default True — and ``pairs`` — check pairs with
``CREDCHECK_PAIRS``, default: when it is set), the app's ``secret_key`` (user references). Its views call
:meth:`CredcheckPolicy.check` (sign-up, change, reset), :meth:`CredcheckPolicy.login` (after the password was
verified: throttled, and a required change flags the session) and :meth:`CredcheckPolicy.password_changed`; a
``before_request`` hook sends a flagged session to the change endpoint from anywhere but the allowed ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from flask import Flask, current_app, g, has_app_context, has_request_context, redirect, request, session, url_for
from wtforms import Field, Form
from wtforms.validators import ValidationError

from .._frames import entry_point
from ._events import Event
from ._guard import SESSION_FLAG, Decision, Guard
from ._pairs import PairCompromiseCheck, shared_pair_check
from ._passwords import CompromiseCheck, Source, shared_check
from ._policy import frozen_settings
from ._rules import PairRule, PasswordRule, configuration, project_settings
from ._state import MemoryState, StateStore
from ._table import Policy, Stage
from ._verdicts import PairCheckResult

try:
    from flask_security import PasswordUtil as _PasswordUtil
except ImportError:  # Flask-Security-Too is optional
    _HAVE_FLASK_SECURITY = False
else:
    _HAVE_FLASK_SECURITY = True

__all__ = [
    "CONFIG_KEYS",
    "OPTIONS_KEY",
    "PAIRS_KEY",
    "POLICY_KEY",
    "CredcheckPasswordUtil",
    "CredcheckPolicy",
    "NotCompromised",
    "PairNotCompromised",
    "check_login",
    "check_password",
]

#: The app config key read for each setting, when the setting is not given explicitly.
CONFIG_KEYS: Final = {
    "source": "CREDCHECK_SOURCE",
    "min_count": "CREDCHECK_MIN_COUNT",
    "on_error": "CREDCHECK_ON_ERROR",
    "fallback": "CREDCHECK_FALLBACK",
    "timeout": "CREDCHECK_TIMEOUT",
}
#: The app config key holding a dict of further :func:`credcheck.open` options.
OPTIONS_KEY: Final = "CREDCHECK_OPTIONS"
#: The app config key holding the pair checks' settings (a dict).
PAIRS_KEY: Final = "CREDCHECK_PAIRS"
#: The app config key holding the policy's settings and ``passwords``/``pairs`` (a dict).
POLICY_KEY: Final = "CREDCHECK_POLICY"
_OWN_KEYS: Final = ("passwords", "pairs")


def _app_settings() -> dict[str, Any]:
    if not has_app_context():
        return {}
    config = current_app.config
    extra = project_settings(CompromiseCheck, f"app.config[{OPTIONS_KEY!r}]", config.get(OPTIONS_KEY))
    named = {name: config.get(key) for name, key in CONFIG_KEYS.items()}
    return configuration(extra, project_settings(CompromiseCheck, "app.config CREDCHECK_*", named))


def _refusal(password: str, rule: PasswordRule, *translations: Any) -> str | None:
    """The message to refuse ``password`` with under ``rule`` over the app's settings (None: it may be used),
    through ``translations`` (gettext and ngettext; plain English without)."""
    result = shared_check(configuration(_app_settings(), rule.options)).check(password)
    return rule.refusal(result, *translations)


@entry_point
def check_password(
    password: str,
    *,
    source: Source | None = None,
    min_count: int | None = None,
    on_error: str | None = None,
    fallback: Source | None = None,
    timeout: float | None = None,
    **options: Any,
) -> list[str]:
    """Return the error messages for ``password`` (an empty list when it may be used).

    One message when the password has leaked (with its count where the source keeps one) or when it could
    not be checked and the policy is "reject". Settings not given here come from ``current_app.config``
    (``CREDCHECK_*``) when an app context is active.
    """
    message = _refusal(password, PasswordRule(source, min_count, on_error, fallback, timeout, **options))
    return [] if message is None else [message]


class NotCompromised(PasswordRule):
    """WTForms validator: fails a field whose password has leaked, or could not be checked under "reject".

    ``NotCompromised(source=None, min_count=None, on_error=None, fallback=None, timeout=None, *, message=None,
    unchecked_message=None, **options)``. An empty field passes (pair it with ``DataRequired``/``InputRequired``).
    ``message`` replaces the "leaked" message and ``unchecked_message`` the "could not be checked" one, both
    used verbatim; the defaults go through the form's translations and give the count where the source keeps one.
    """

    @entry_point
    def __call__(self, form: Form, field: Field) -> None:
        password = field.data
        if not password:
            return
        message = _refusal(password, self, field.gettext, field.ngettext)
        if message is not None:
            raise ValidationError(message)


def _pair_config(explicit: dict[str, Any]) -> dict[str, Any]:
    configured = current_app.config.get(PAIRS_KEY) if has_app_context() else None
    merged = configuration(project_settings(PairCompromiseCheck, f"app.config[{PAIRS_KEY!r}]", configured), explicit)
    if "source" not in merged:
        raise ValueError(f"a pair check needs a source: app.config[{PAIRS_KEY!r}]['source'] or source=")
    return merged


@entry_point
def check_login(username: str, password: str, **options: Any) -> PairCheckResult:
    """Check a log-in's username and password pair (call it once the password is verified); the outcome is
    returned and kept on ``flask.g.credcheck_pair``. Options override ``app.config["CREDCHECK_PAIRS"]``."""
    PairCompromiseCheck.check_settings(options)
    result = shared_pair_check(_pair_config(options)).check(username, password)
    if has_request_context():
        g.credcheck_pair = result
    return result


class PairNotCompromised(PairRule):
    """WTForms validator: fails a password that has leaked together with the form's username.

    ``username_field`` names the form's username field. An empty password or username passes (there is no pair
    to check). ``message`` and ``unchecked_message`` replace the messages; the defaults go through the form's
    translations. Options override ``app.config["CREDCHECK_PAIRS"]``.
    """

    def __init__(self, username_field: str = "username", **settings: Any) -> None:
        super().__init__(**settings)
        self.username_field = username_field

    @entry_point
    def __call__(self, form: Form, field: Field) -> None:
        password = field.data
        try:
            username = form[self.username_field].data
        except KeyError:
            raise TypeError(
                f"the form has no field {self.username_field!r} (PairNotCompromised(username_field=))"
            ) from None
        if not password or not username:
            return
        result = shared_pair_check(_pair_config(self.options)).check(username, password)
        message = self.refusal(result, field.gettext)
        if message is not None:
            raise ValidationError(message)

    def _details(self) -> str:
        return f" username_field={self.username_field!r}"


class CredcheckPolicy:
    """The policy for a Flask app: ``policy = CredcheckPolicy(app, change_endpoint="change_password")``.

    ``state``: where users' log-in states live (default: this process's memory; give a shared
    :class:`~credcheck.contrib.policy.StateStore` to a site of several processes). ``change_endpoint``: the
    password-change view; ``allowed_endpoints``: what else a flagged session may reach (default log-out and
    static files). Events go to the ``credcheck.policy`` logger and to the callbacks given here or registered
    with :meth:`on_decision`.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        state: StateStore | None = None,
        change_endpoint: str = "change_password",
        allowed_endpoints: Iterable[str] = ("logout", "static"),
        callbacks: Iterable[Callable[[Event], object]] = (),
    ) -> None:
        self.state: StateStore = state if state is not None else MemoryState()
        self.change_endpoint = change_endpoint
        self.allowed_endpoints = frozenset(allowed_endpoints) | {change_endpoint}
        self.callbacks = list(callbacks)
        self._guards: dict[object, Guard] = {}
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the extension and its ``before_request`` hook on ``app``."""
        app.extensions["credcheck_policy"] = self
        app.before_request(self._forced_change)

    def on_decision(self, callback: Callable[[Event], object]) -> Callable[[Event], object]:
        """Register ``callback`` for every event (a decorator)."""
        self.callbacks.append(callback)
        return callback

    def guard(self) -> Guard:
        """The current app's guard, made from its config when first needed (and again when the config changes)."""
        config = current_app.config
        own = dict(config.get(POLICY_KEY) or {})
        passwords = _app_settings() if own.get("passwords", True) else None
        pairs = _pair_config({}) if own.get("pairs", config.get(PAIRS_KEY) is not None) else None
        secret = current_app.secret_key
        if not secret:
            raise RuntimeError("CredcheckPolicy needs app.secret_key (for sessions and user references)")
        key = frozen_settings([own, passwords, pairs, secret])
        made = self._guards.get(key)
        if made is None:
            policy = Policy.from_settings({k: v for k, v in own.items() if k not in _OWN_KEYS})
            made = self._guards[key] = Guard(
                policy, passwords=passwords, pairs=pairs, state=self.state, secret=secret, callbacks=self.callbacks
            )
        return made

    @entry_point
    def check(self, stage: Stage | str, username: str | None, password: str) -> Decision:
        """Decide for credentials being chosen (``"signup"``, ``"change"``, ``"reset"``): ``decision.blocked``,
        ``decision.message()``."""
        return self.guard().check(stage, username, password)

    @entry_point
    def login(self, username: str, password: str) -> Decision:
        """Decide for a log-in whose password was verified (throttled); a required change flags the session.
        The decision is also on ``flask.g.credcheck``."""
        guard = self.guard()
        decision = guard.login(username, password)
        guard.flag(session, decision)
        g.credcheck = decision
        return decision

    def password_changed(self, username: str) -> None:
        """Record that the user's new password was saved: a forced change is over."""
        self.guard().password_changed(username)

    def _forced_change(self) -> Any:
        flagged = SESSION_FLAG in session and self.guard().must_change(session)
        if flagged and request.endpoint not in self.allowed_endpoints:
            return redirect(url_for(self.change_endpoint))
        return None


if TYPE_CHECKING or _HAVE_FLASK_SECURITY:

    class CredcheckPasswordUtil(_PasswordUtil):
        """Flask-Security-Too ``PasswordUtil`` that also refuses leaked passwords.

        Pass it as ``Security(app, datastore, password_util_cls=CredcheckPasswordUtil)``. Flask-Security-Too's
        own validation runs first (normalisation, length, complexity); a password that passes it is then
        checked with :func:`check_password` on its normalised form (the one that gets hashed and stored),
        with settings from the app's ``CREDCHECK_*`` config. Leave ``SECURITY_PASSWORD_CHECK_BREACHED`` off:
        that one always asks the public API, with no padding, timeout or failure policy.
        """

        @entry_point
        def validate(self, password: str, is_register: bool, **kwargs: Any) -> tuple[list[str] | None, str]:
            errors, normalized = super().validate(password, is_register, **kwargs)
            if errors:
                return errors, normalized
            return check_password(normalized) or None, normalized
