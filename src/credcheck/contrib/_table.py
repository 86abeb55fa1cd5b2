"""The policy itself: stages x verdicts → reactions, declared once, frozen and checked when made.

:class:`Policy` says what a site does with each :class:`~credcheck.contrib._verdicts.Verdict` at each
:class:`Stage`; a :class:`Reaction` is one of the :class:`Action` values (allow, warn, require a change — at
once or after a grace of log-ins or days —, block) plus whom to notify. The defaults follow NIST SP 800-63B
§5.1.1.2: a known-compromised password is refused when it is set or changed, and at log-in the user is made to
change it. An *unchecked* verdict follows the failure policy of the check unless the table says otherwise:
refused when the check refused the credentials (``on_error="reject"``, or a fallback that failed too), let
through when it let them through (``on_error="allow"``).

Nothing here does I/O or holds a secret in a repr: a canary's password is kept for comparison only.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

from ..pairs._names import canon
from ._verdicts import Verdict

__all__ = ["DEFAULTS", "DEFAULT_RECHECK_INTERVAL", "Action", "Canary", "Policy", "Reaction", "Stage", "stage_of"]

#: Seconds after which a user is checked again at log-in even when the corpus version did not change (or the
#: source has none, as HIBP's API): a day.
DEFAULT_RECHECK_INTERVAL: Final = 86400.0


class Stage(str, enum.Enum):
    """When credentials are checked."""

    SIGNUP = "signup"
    CHANGE = "change"
    RESET = "reset"
    LOGIN = "login"


class Action(str, enum.Enum):
    """What is done with the credentials, from the mildest to the strongest."""

    #: Let them through; nothing is said.
    ALLOW = "allow"
    #: Let them through and tell the user (at log-in: "change your password soon").
    WARN = "warn"
    #: At log-in: let the user in, but their session reaches only the password-change view until they change
    #: it (at once, or once a grace of log-ins or days is spent; until then, a warning).
    REQUIRE_CHANGE = "require_change"
    #: Refuse them (at log-in: refuse the log-in).
    BLOCK = "block"

    @property
    def strength(self) -> int:
        return _STRENGTH[self]


_STRENGTH: Final = {action: rank for rank, action in enumerate(Action)}
#: Whom a reaction may notify (the site's callbacks do the notifying; the event says whom).
NOTIFY: Final = ("user", "admin")
_ACTION_NAMES: Final = tuple(action.value for action in Action)
_NOTIFY_NAMES: Final = tuple(f"notify_{who}" for who in NOTIFY)


def _known(kind: str, value: object, names: Iterable[str]) -> str:
    return f"unknown {kind} {value!r}; the known ones are {', '.join(map(repr, names))}"


@dataclasses.dataclass(frozen=True, slots=True)
class Reaction:
    """What a policy does for one verdict at one stage: an :class:`Action`, a grace before a required change is
    forced (``grace_logins``: log-ins that only warn, the one that found the leak included; and/or
    ``grace_days``; whichever ends first), and whom to notify (``"user"``, ``"admin"``)."""

    action: Action = Action.ALLOW
    grace_logins: int = 0
    grace_days: float = 0.0
    notify: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", _action(self.action))
        if type(self.grace_logins) is not int or self.grace_logins < 0:
            raise ValueError(f"grace_logins must be a whole number of log-ins, 0 or more, not {self.grace_logins!r}")
        days = self.grace_days
        if isinstance(days, bool) or not isinstance(days, int | float) or not math.isfinite(days) or days < 0:
            raise ValueError(f"grace_days must be a number of days, 0 or more, not {days!r}")
        object.__setattr__(self, "grace_days", float(days))
        notify = frozenset(self.notify)
        for who in notify:
            if who not in NOTIFY:
                raise ValueError(_known("notification", who, NOTIFY))
        object.__setattr__(self, "notify", notify)
        if (self.grace_logins or self.grace_days) and self.action is not Action.REQUIRE_CHANGE:
            raise ValueError(f"a grace applies to 'require_change' only, not to {self.action.value!r}")

    @property
    def grace(self) -> bool:
        """Whether a required change waits for a grace (log-ins or days) before it is forced."""
        return bool(self.grace_logins or self.grace_days)

    @classmethod
    def of(cls, spec: object) -> Reaction:
        """A reaction from its declarative spelling: a :class:`Reaction`; an action's name (``"block"``); a
        list of names, one action and any of ``"notify_user"``, ``"notify_admin"``; or a dict with ``action``
        and any of ``grace_logins``, ``grace_days`` and ``notify`` (a list of ``"user"``, ``"admin"``). Anything
        else, an unknown name, or no action (it would silently allow), is a ``ValueError``."""
        if isinstance(spec, Reaction):
            return spec
        if isinstance(spec, str | Action):
            spec = [spec]
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"action", "grace_logins", "grace_days", "notify"}
            if unknown:
                raise ValueError(
                    _known("reaction setting", sorted(unknown)[0], ("action", "grace_logins", "grace_days", "notify"))
                )
            notify = spec.get("notify", ())
            if isinstance(notify, str):
                notify = [notify]
            reaction = cls(
                _action(spec.get("action", Action.ALLOW)),
                spec.get("grace_logins", 0),
                spec.get("grace_days", 0.0),
                frozenset(notify),
            )
            if "action" not in spec:
                raise ValueError(_NO_ACTION)
            return reaction
        if isinstance(spec, list | tuple):
            actions, notify = [], set()
            for name in spec:
                value = name.value if isinstance(name, Action) else name
                if value in _NOTIFY_NAMES:
                    notify.add(str(value).removeprefix("notify_"))
                elif value in _ACTION_NAMES:
                    actions.append(Action(value))
                else:
                    raise ValueError(_known("action", name, (*_ACTION_NAMES, *_NOTIFY_NAMES)))
            if len(actions) > 1:
                raise ValueError(f"one action per reaction, not {', '.join(a.value for a in actions)}")
            if not actions:
                raise ValueError(_NO_ACTION)
            return cls(actions[0], notify=frozenset(notify))
        raise TypeError(f"a reaction is an action's name, a list of names or a dict, not {type(spec).__name__}")


#: A reaction spelt without its action would silently allow what the defaults refuse (``["notify_admin"]`` for a
#: leaked pair at log-in would drop the required change): the action is always named.
_NO_ACTION: Final = "a reaction names its action (allow, warn, require_change or block), e.g. ['block', 'notify_admin']"


def _action(value: object) -> Action:
    if isinstance(value, Action):
        return value
    if value not in _ACTION_NAMES:
        raise ValueError(_known("action", value, _ACTION_NAMES))
    return Action(value)


def stage_of(value: object) -> Stage:
    """``value`` as a :class:`Stage` (its name, or the stage); a ``ValueError`` naming the known ones."""
    if isinstance(value, Stage):
        return value
    if value not in tuple(stage.value for stage in Stage):
        raise ValueError(_known("stage", value, (stage.value for stage in Stage)))
    return Stage(value)


def _verdict(value: object) -> Verdict:
    if isinstance(value, Verdict):
        return value
    if value not in tuple(verdict.value for verdict in Verdict):
        raise ValueError(_known("verdict", value, (verdict.value for verdict in Verdict)))
    return Verdict(value)


_BLOCK: Final = Reaction(Action.BLOCK)
_CHANGE: Final = Reaction(Action.REQUIRE_CHANGE)
_ALLOW: Final = Reaction()
#: The defaults (NIST SP 800-63B §5.1.1.2): refuse a compromised password where one is chosen, make the user
#: change it at log-in. A leaked username alone says nothing about this password. UNCHECKED is absent: it
#: follows the failure policy of the check (see the module docs).
DEFAULTS: Final[Mapping[Stage, Mapping[Verdict, Reaction]]] = MappingProxyType(
    {
        **{
            stage: MappingProxyType(
                {Verdict.EXACT: _BLOCK, Verdict.SIMILAR: _BLOCK, Verdict.PASSWORD: _BLOCK, Verdict.USERNAME: _ALLOW}
            )
            for stage in (Stage.SIGNUP, Stage.CHANGE, Stage.RESET)
        },
        Stage.LOGIN: MappingProxyType(
            {Verdict.EXACT: _CHANGE, Verdict.SIMILAR: _CHANGE, Verdict.PASSWORD: _CHANGE, Verdict.USERNAME: _ALLOW}
        ),
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class Canary:
    """Test credentials every source reports as leaked, decided before any lookup (nothing is sent anywhere):
    with a ``username``, the pair (an exact pair and a leaked password); without one, the password alone."""

    password: str = dataclasses.field(repr=False)
    username: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.password, str) or not self.password:
            raise ValueError("a canary needs a password (a non-empty string)")
        if self.username is not None:
            if not isinstance(self.username, str):
                raise TypeError(f"a canary's username must be a string, not {type(self.username).__name__}")
            canon(self.username)  # one that could never match is refused now

    def __repr__(self) -> str:
        return "Canary(pair)" if self.username is not None else "Canary(password)"

    def verdicts(self, username: str | None, password: str) -> tuple[Verdict, ...]:
        """What this canary makes of credentials: ``(EXACT, PASSWORD)`` for its pair, ``(PASSWORD,)`` for its
        password alone (a password canary), ``()`` otherwise (compared in constant time)."""
        if not hmac.compare_digest(
            self.password.encode("utf-8", "surrogatepass"), password.encode("utf-8", "surrogatepass")
        ):
            return ()
        if self.username is None:
            return (Verdict.PASSWORD,)
        if username is None:
            return ()
        try:
            same = hmac.compare_digest(canon(self.username), canon(username))
        except ValueError:
            return ()
        return (Verdict.EXACT, Verdict.PASSWORD) if same else ()

    @classmethod
    def of(cls, spec: object) -> Canary:
        if isinstance(spec, Canary):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"username", "password"}
            if unknown:
                raise ValueError(_known("canary setting", sorted(unknown)[0], ("username", "password")))
            return cls(spec.get("password"), spec.get("username"))  # type: ignore[arg-type]
        raise TypeError(
            f"a canary is a password, a dict of username and password or a Canary, not {type(spec).__name__}"
        )


#: The settings :meth:`Policy.from_settings` knows, for its error messages.
SETTINGS: Final = ("signup", "change", "reset", "login", "audit_only", "thresholds", "recheck_interval", "canaries")


@dataclasses.dataclass(frozen=True, init=False)
class Policy:
    """What a site does with the verdicts of a check, at each stage: one declarative object, frozen, checked when
    made, shared by the Django, Flask and FastAPI integrations and the middleware.

    ``Policy(login={"exact": ["require_change", "notify_admin"], "password": {"action": "require_change",
    "grace_logins": 3}}, audit_only=False, thresholds={"login": 10}, recheck_interval=86400, canaries=[...])``:

    - ``signup``, ``change``, ``reset``, ``login``: for that stage, reactions by verdict (``"exact"``,
      ``"similar"``, ``"password"``, ``"username"``, ``"unchecked"``, ``"clean"``), laid over the defaults
      (:data:`DEFAULTS`); a reaction is spelt as :meth:`Reaction.of` takes it.
    - ``audit_only``: decide and record every decision (events, log records), enforce nothing.
    - ``thresholds``: by stage, how many times a password must have been seen for the ``password`` verdict
      (default 1; the check's ``min_count`` applies first).
    - ``recheck_interval``: seconds after which a log-in is checked again though the corpus did not change
      (None: only when it changes; a source without versions is then checked once).
    - ``canaries``: test credentials reported as leaked by every source, before any lookup (:class:`Canary`).

    An unknown stage, verdict, action or setting is a ``ValueError`` naming the known ones.
    """

    rules: Mapping[Stage, Mapping[Verdict, Reaction]]
    audit_only: bool
    thresholds: Mapping[Stage, int]
    recheck_interval: float | None
    canaries: tuple[Canary, ...]

    def __init__(
        self,
        *,
        signup: Mapping[str, Any] | None = None,
        change: Mapping[str, Any] | None = None,
        reset: Mapping[str, Any] | None = None,
        login: Mapping[str, Any] | None = None,
        audit_only: bool = False,
        thresholds: Mapping[str, int] | None = None,
        recheck_interval: float | None = DEFAULT_RECHECK_INTERVAL,
        canaries: Iterable[object] = (),
    ) -> None:
        given = {Stage.SIGNUP: signup, Stage.CHANGE: change, Stage.RESET: reset, Stage.LOGIN: login}
        rules: dict[Stage, Mapping[Verdict, Reaction]] = {}
        for stage, table in given.items():
            merged = dict(DEFAULTS[stage])
            if table is not None:
                if not isinstance(table, Mapping):
                    raise TypeError(f"{stage.value}: reactions by verdict must be a dict, not {type(table).__name__}")
                for verdict, spec in table.items():
                    try:
                        merged[_verdict(verdict)] = Reaction.of(spec)
                    except (TypeError, ValueError) as exc:
                        raise type(exc)(f"{stage.value}: {exc}") from None
            for verdict, reaction in merged.items():
                if stage is not Stage.LOGIN and reaction.action is Action.REQUIRE_CHANGE:
                    raise ValueError(
                        f"{stage.value}: 'require_change' is a log-in reaction; a password being chosen is blocked "
                        f"or let through ({verdict.value})"
                    )
            rules[stage] = MappingProxyType(merged)
        if not isinstance(audit_only, bool):
            raise TypeError(f"audit_only must be True or False, not {audit_only!r}")
        limits = {stage: 1 for stage in Stage}
        for name, value in (thresholds or {}).items():
            if type(value) is not int or value < 1:
                raise ValueError(f"thresholds: the threshold of {name!r} must be a whole number from 1, not {value!r}")
            limits[stage_of(name)] = value
        if recheck_interval is not None:
            if isinstance(recheck_interval, bool) or not isinstance(recheck_interval, int | float):
                raise TypeError(f"recheck_interval must be a number of seconds or None, not {recheck_interval!r}")
            if not math.isfinite(recheck_interval) or recheck_interval <= 0:
                raise ValueError(f"recheck_interval must be a positive number of seconds, not {recheck_interval!r}")
            recheck_interval = float(recheck_interval)
        if isinstance(canaries, str | Mapping):
            canaries = [canaries]
        object.__setattr__(self, "rules", MappingProxyType(rules))
        object.__setattr__(self, "audit_only", audit_only)
        object.__setattr__(self, "thresholds", MappingProxyType(limits))
        object.__setattr__(self, "recheck_interval", recheck_interval)
        object.__setattr__(self, "canaries", tuple(Canary.of(spec) for spec in canaries))

    def __hash__(self) -> int:
        rules = tuple((stage, tuple(table.items())) for stage, table in self.rules.items())
        return hash((rules, self.audit_only, tuple(self.thresholds.items()), self.recheck_interval, self.canaries))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> Policy:
        """A policy from a settings dict (Django's ``CREDCHECK_POLICY``, Flask's ``app.config``): the keyword
        arguments as keys; an unknown key is a ``ValueError`` naming the known ones."""
        settings = dict(settings or {})
        for name in settings:
            if name not in SETTINGS:
                raise ValueError(_known("policy setting", name, SETTINGS))
        return cls(**settings)

    def reaction(self, stage: Stage, verdict: Verdict, *, refused: bool = False) -> Reaction:
        """What to do for ``verdict`` at ``stage``. Unless the table says otherwise, UNCHECKED is BLOCK when the
        check's failure policy ``refused`` the credentials, else ALLOW; CLEAN is ALLOW."""
        reaction = self.rules[stage].get(verdict)
        if reaction is not None:
            return reaction
        return _BLOCK if verdict is Verdict.UNCHECKED and refused else _ALLOW

    def threshold(self, stage: Stage) -> int:
        """How many times a password must have been seen for the ``password`` verdict at ``stage``."""
        return self.thresholds[stage]

    def canary(self, username: str | None, password: str) -> tuple[Verdict, ...]:
        """The verdicts of a canary these credentials are (``()`` when they are none)."""
        for canary in self.canaries:
            found = canary.verdicts(username, password)
            if found:
                return found
        return ()
