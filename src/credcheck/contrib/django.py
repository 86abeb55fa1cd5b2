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

The policy (docs/INTEGRATIONS.md, "The policy"): ``settings.CREDCHECK_POLICY`` holds a
:class:`~credcheck.contrib.policy.Policy`'s settings (``signup``, ``change``, ``reset``, ``login``,
``audit_only``, ``thresholds``, ``recheck_interval``, ``canaries``) and this integration's own: ``passwords``
(check passwords with ``settings.CREDCHECK``; default True), ``pairs`` (check pairs with
``settings.CREDCHECK_PAIRS``; default: when it is set), ``state`` (where users' log-in states live:
``"cache"``, the default cache, or ``"cache:ALIAS"``, or a :class:`~credcheck.contrib.policy.StateStore`),
``change_url`` and ``allowed_urls`` (URL names or paths: the change view, and what else a flagged session may
reach; default ``"password_change"`` and ``["logout"]``), ``login_routes`` (for
:class:`CredentialCheckMiddleware`). With it:

- :class:`PolicyValidator` in ``AUTH_PASSWORD_VALIDATORS`` decides at sign-up and change (both tiers), and
  releases a forced change once the new password is saved;
- :class:`LoginCheckBackend` wraps the site's backend and decides at each successful log-in, throttled;
  a required change flags the session, and :class:`ForcedChangeMiddleware` then lets it reach only the change
  view and log-out;
- :class:`CredentialCheckMiddleware` screens the credentials posted to ``login_routes`` (``Exposed-Credential-Check``);
- :data:`credential_decision` is sent once per decision with its ``event``
  (:class:`~credcheck.contrib.policy.Event`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.dispatch import Signal
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils.crypto import salted_hmac
from django.utils.deconstruct import deconstructible
from django.utils.module_loading import import_string
from django.utils.translation import gettext, ngettext
from django.views.decorators.debug import sensitive_variables

from .._frames import entry_point
from ._events import Event
from ._guard import SESSION_FLAG, Decision, Guard
from ._pairs import PairCompromiseCheck, shared_pair_check
from ._passwords import CompromiseCheck, shared_check
from ._policy import PolicyCheck, frozen_settings
from ._rules import PairRule, PasswordRule, Rule, configuration, project_settings
from ._state import StateStore
from ._table import Policy, Stage, stage_of
from ._verdicts import (
    COMPROMISED_MANY,
    COMPROMISED_NO_COUNT,
    COMPROMISED_ONE,
    UNCHECKED,
    CheckResult,
    PairCheckResult,
    Verdict,
)
from .middleware import CredentialScreen

__all__ = [
    "PAIR_SETTING",
    "POLICY_SETTING",
    "SETTING",
    "CacheState",
    "CompromisedPairValidator",
    "CompromisedPasswordValidator",
    "CredentialCheckMiddleware",
    "ForcedChangeMiddleware",
    "LoginCheckBackend",
    "PairCheckBackend",
    "PolicyValidator",
    "credential_decision",
    "guard",
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
#: The settings dict of the policy and of this integration's use of it (see the module docs).
POLICY_SETTING = "CREDCHECK_POLICY"
#: Sent once per decision of the policy: ``sender=Guard``, ``event`` (a :class:`~credcheck.contrib.policy.Event`).
credential_decision = Signal()
#: The keys of ``CREDCHECK_POLICY`` that are this integration's, not the policy's.
_OWN_KEYS = ("passwords", "pairs", "state", "change_url", "allowed_urls", "login_routes")

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

    if TYPE_CHECKING:  # what @deconstructible adds to each validator, declared: Django's decorator is untyped

        def deconstruct(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]: ...

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


class _WrappingBackend:
    """An authentication backend around the site's own (``inner``): permissions and the rest are its."""

    def __init__(self) -> None:
        configured = getattr(settings, PAIR_SETTING, None) or {}
        path = configured.get("backend", "django.contrib.auth.backends.ModelBackend")
        self.inner = import_string(path)()

    def get_user(self, user_id: Any) -> Any:
        return self.inner.get_user(user_id)

    @entry_point
    @_hidden_from_error_reports
    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        """Authenticate with the wrapped backend; a user it accepts is then checked (:meth:`_checked`)."""
        user = self.inner.authenticate(request, username=username, password=password, **kwargs)
        if user is None or password is None:
            return user
        return self._checked(request, user, password)

    def _checked(self, request: Any, user: Any, password: str) -> Any:
        """What this backend does with a user the wrapped backend accepted: the user, or None to refuse."""
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        # permissions and the rest: the wrapped backend's (never "inner" itself: no recursion before __init__)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


class PairCheckBackend(_WrappingBackend):
    """An authentication backend that wraps another and checks each successful log-in's username and password.

    ``AUTHENTICATION_BACKENDS = ["credcheck.contrib.django.PairCheckBackend"]``; the wrapped backend is
    ``settings.CREDCHECK_PAIRS["backend"]`` (a dotted path, default ``django.contrib.auth.backends.ModelBackend``).
    A log-in the wrapped backend refuses is refused (nothing is checked); one it accepts is accepted whatever
    the pair check says — the outcome is recorded (see the module docs) for the site to act on. For a policy
    (both tiers, throttled, a forced change), use :class:`LoginCheckBackend`.
    """

    @_hidden_from_error_reports
    def _checked(self, request: Any, user: Any, password: str) -> Any:
        """Check the pair and record the outcome; the user is accepted whatever it says."""
        result = shared_pair_check(_pair_settings()).check(user.get_username(), password)
        if request is not None:
            request.credcheck_pair = result
            session = getattr(request, "session", None)
            if session is not None:
                session[SESSION_KEY] = result.label
        pair_checked.send(sender=PairCheckBackend, request=request, user=user, result=result)
        return user


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


class CacheState:
    """Users' log-in states in a Django cache (``alias``; the default cache unless told): shared by every worker
    process when the cache is (Redis, Memcached, the database cache), never expiring (``timeout`` None)."""

    def __init__(
        self, alias: str = "default", *, prefix: str = "credcheck:user:", timeout: float | None = None
    ) -> None:
        self.alias, self.prefix, self.timeout = alias, prefix, timeout

    def load(self, user: str) -> Mapping[str, Any] | None:
        found = caches[self.alias].get(self.prefix + user)
        return found if isinstance(found, Mapping) else None

    def save(self, user: str, state: Mapping[str, Any]) -> None:
        caches[self.alias].set(self.prefix + user, dict(state), self.timeout)

    def __repr__(self) -> str:
        return f"<CacheState {self.alias!r}>"


def _policy_settings() -> dict[str, Any]:
    configured = getattr(settings, POLICY_SETTING, None)
    if configured is None:
        return {}
    if not isinstance(configured, Mapping):
        raise ImproperlyConfigured(f"settings.{POLICY_SETTING} must be a dict, not {type(configured).__name__}")
    return dict(configured)


def _state(spec: object) -> StateStore:
    if spec is None or spec == "cache":
        return CacheState()
    if isinstance(spec, str) and spec.startswith("cache:"):
        return CacheState(spec.removeprefix("cache:"))
    if hasattr(spec, "load") and hasattr(spec, "save"):
        return cast(StateStore, spec)
    raise ImproperlyConfigured(
        f"settings.{POLICY_SETTING}['state'] must be 'cache', 'cache:ALIAS' or an object with load() and save()"
    )


def _send_signal(event: Event) -> None:
    credential_decision.send(sender=Guard, event=event)


_guards: dict[object, Guard] = {}  # by settings; a few at most (tests override settings)
_GUARDS_KEPT = 16


def guard() -> Guard:
    """This process's :class:`~credcheck.contrib.policy.Guard` for the current settings (``CREDCHECK_POLICY``,
    ``CREDCHECK``, ``CREDCHECK_PAIRS``, ``SECRET_KEY``), made when first needed (never at import); a bad
    setting is ``ImproperlyConfigured``."""
    own = _policy_settings()
    passwords = _project(CompromiseCheck, SETTING) if own.get("passwords", True) else None
    pairs = _pair_settings() if own.get("pairs", getattr(settings, PAIR_SETTING, None) is not None) else None
    key = frozen_settings([own, passwords, pairs, settings.SECRET_KEY])
    made = _guards.get(key)
    if made is None:
        try:
            policy = Policy.from_settings({k: v for k, v in own.items() if k not in _OWN_KEYS})
            secret = salted_hmac("credcheck.contrib.django user reference", "key", algorithm="sha256").digest()
            made = Guard(
                policy,
                passwords=passwords,
                pairs=pairs,
                state=_state(own.get("state")),
                secret=secret,
                callbacks=[_send_signal],
            )
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"settings.{POLICY_SETTING}: {exc}") from exc
        if len(_guards) >= _GUARDS_KEPT:
            _guards.pop(next(iter(_guards)))
        _guards[key] = made
    return made


def _error_code(decision: Decision) -> str:
    if decision.verdict is Verdict.UNCHECKED:
        return "password_check_failed"
    if decision.verdict in (Verdict.EXACT, Verdict.SIMILAR):
        return "password_pair_compromised"
    return "password_compromised" if decision.verdict is Verdict.PASSWORD else "password_refused"


@deconstructible(path="credcheck.contrib.django.PolicyValidator")
class PolicyValidator:
    """The policy where a password is chosen: put it in ``AUTH_PASSWORD_VALIDATORS``.

    ``validate`` decides at sign-up (a user not saved yet) or change (one that is), or at the ``stage`` given in
    ``OPTIONS``; a blocked password is a ``ValidationError`` (codes ``password_compromised``,
    ``password_pair_compromised``, ``password_check_failed``, ``password_refused``) with the decision's
    message. ``password_changed`` (Django calls it once a new password is saved) releases a forced change.
    """

    def __init__(self, stage: str | None = None) -> None:
        self.stage = None if stage is None else stage_of(stage)

    @entry_point
    @_hidden_from_error_reports
    def validate(self, password: str, user: Any | None = None) -> None:
        """Raise ``ValidationError`` when the policy blocks ``password`` for ``user`` at this stage."""
        username = user.get_username() if user is not None and hasattr(user, "get_username") else None
        stage = self.stage or (Stage.SIGNUP if user is None or getattr(user, "pk", None) is None else Stage.CHANGE)
        decision = guard().check(stage, username or None, password)
        if decision.blocked:
            raise ValidationError(str(decision.message(gettext, ngettext)), code=_error_code(decision))

    def password_changed(self, password: str, user: Any | None = None) -> None:
        """Record the change: a forced change is over, and the next log-in is checked again."""
        if user is not None and hasattr(user, "get_username"):
            guard().password_changed(user.get_username())

    def get_help_text(self) -> str:
        return str(gettext("Your password cannot be one that has appeared in a data breach."))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PolicyValidator) and other.stage == self.stage

    def __hash__(self) -> int:
        return hash(self.stage)


class LoginCheckBackend(_WrappingBackend):
    """An authentication backend that wraps the site's own and decides each successful log-in by the policy.

    ``AUTHENTICATION_BACKENDS = ["credcheck.contrib.django.LoginCheckBackend"]`` (the wrapped backend is
    ``CREDCHECK_PAIRS["backend"]``, default ``ModelBackend``). A log-in the wrapped backend accepts is decided
    by :meth:`Guard.login <credcheck.contrib.policy.Guard.login>` (checked only when due); the decision is on
    ``request.credcheck``. A blocked log-in is refused (``authenticate`` returns None; show
    ``request.credcheck.message()``); one that requires a change flags the session at ``login()``, and
    :class:`ForcedChangeMiddleware` does the rest.
    """

    @_hidden_from_error_reports
    def _checked(self, request: Any, user: Any, password: str) -> Any:
        """Decide the log-in by the policy; a blocked one is refused."""
        decision = guard().login(user.get_username(), password)
        if request is not None:
            request.credcheck = decision
        return None if decision.blocked else user


def _flag_session(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    # After login(): it may have flushed the session the backend saw.
    decision = getattr(request, "credcheck", None)
    session = getattr(request, "session", None)
    if isinstance(decision, Decision) and decision.change_required and session is not None:
        guard().flag(session, decision)


user_logged_in.connect(_flag_session, dispatch_uid="credcheck.contrib.django.flag_session")


def _path(name_or_path: str) -> str:
    if name_or_path.startswith("/"):
        return name_or_path
    try:
        return str(reverse(name_or_path))
    except NoReverseMatch as exc:
        raise ImproperlyConfigured(f"settings.{POLICY_SETTING}: no URL named {name_or_path!r}") from exc


class ForcedChangeMiddleware:
    """A session flagged for a password change reaches only the change view and ``allowed_urls`` (log-out by
    default) until the change is made; everything else redirects to the change view. Put it after the session
    and authentication middleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        if session is not None and SESSION_FLAG in session and guard().must_change(session):
            own = _policy_settings()
            change = _path(own.get("change_url", "password_change"))
            allowed = {change, *(_path(name) for name in own.get("allowed_urls", ["logout"]))}
            # static files stay reachable (the change page's own styles), unless STATIC_URL is the root, which
            # would open every page
            static = str(getattr(settings, "STATIC_URL", None) or "")
            is_static = static.startswith("/") and static != "/" and request.path.startswith(static)
            if request.path not in allowed and not is_static:
                return HttpResponseRedirect(change)
        return self.get_response(request)


class CredentialCheckMiddleware:
    """Screens the credentials posted to ``CREDCHECK_POLICY["login_routes"]`` (paths, or dicts of ``path``,
    ``username_field``, ``password_field``) before the view: the decision is on ``request.credcheck_screen`` and
    ``request.META["HTTP_EXPOSED_CREDENTIAL_CHECK"]`` is set as Cloudflare's header would be (a client's own is
    always removed). Form (multipart too) and JSON bodies; see :mod:`credcheck.contrib.middleware`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    @entry_point
    @_hidden_from_error_reports
    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.META.pop("HTTP_EXPOSED_CREDENTIAL_CHECK", None)
        request.credcheck_screen = None
        screen = CredentialScreen(guard(), _policy_settings().get("login_routes", ()))
        route = screen.route(request.method or "", request.path_info)
        if route is not None and screen.wanted(request.META.get("CONTENT_LENGTH")):
            if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                decision = screen.screen_fields(route, request.POST)  # Django parses both, and keeps them
            else:
                decision = screen.screen(route, request.content_type or "", request.body)
            request.credcheck_screen = decision
            value = None if decision is None else decision.exposed_credential_check
            if value is not None:
                request.META["HTTP_EXPOSED_CREDENTIAL_CHECK"] = value
        # request.headers is built from META once: an earlier middleware that read it would keep the client's value
        request.__dict__.pop("headers", None)
        return self.get_response(request)
