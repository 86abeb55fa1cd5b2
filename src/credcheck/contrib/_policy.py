"""The core both framework integrations share: a lazily opened checker and an explicit failure policy.

A validator in a web application must answer even when its source cannot: the range API times out, a
filter file went missing. :class:`CompromiseCheck` owns that decision, so Django and Flask code only turns
a :class:`CheckResult` into its own error and never re-implements it:

- ``on_error="reject"`` (the default without a fallback): the password is refused as *unchecked*; the
  user is told it could not be checked, never that it leaked.
- ``on_error="allow"``: the password is accepted unchecked and an error is logged on
  ``credcheck.contrib`` (the source and the reason, never the password, its hash or its hash prefix).
- ``on_error="fallback"`` (the default when ``fallback`` is given): the password is checked against the
  fallback source instead, typically a local filter or store; if that fails too, it is refused as unchecked.

The integrations read their settings when a password is first checked and look the check up in a
per-process registry keyed by the whole configuration (:func:`shared_check`), so a changed setting takes
effect at the next check and an unchanged one reuses the open source and its connection pool.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeVar, cast

from .. import _args, _sources
from .._frames import entry_point
from .._http.ranges import DEFAULT_BASE_URL
from .._sources import is_remote, source_label
from ..checker import Checker, Exposure
from ..errors import ClosedError, CredcheckError, RemoteError

__all__ = [
    "COMPROMISED_MANY",
    "COMPROMISED_NO_COUNT",
    "COMPROMISED_ONE",
    "DEFAULT_SOURCE",
    "PAIR_COMPROMISED",
    "POLICIES",
    "UNCHECKED",
    "CheckResult",
    "CompromiseCheck",
    "check_policy_values",
    "check_values",
    "close_shared",
    "configuration",
    "message",
    "shared",
    "shared_check",
    "source_label",
]

logger = logging.getLogger("credcheck.contrib")

#: Where passwords are checked unless configured otherwise: the public Pwned Passwords range API.
DEFAULT_SOURCE: Final = DEFAULT_BASE_URL
#: The failure policies, in the order the docs describe them.
POLICIES: Final = ("reject", "allow", "fallback")

Role = Literal["source", "fallback"]

# Plain English by default; each integration runs them through its own translations.
PAIR_COMPROMISED: Final = "This password has appeared in a data breach together with this username."

COMPROMISED_ONE: Final = "This password has appeared in a data breach %(count)d time."
COMPROMISED_MANY: Final = "This password has appeared in a data breach %(count)d times."
COMPROMISED_NO_COUNT: Final = "This password has appeared in a data breach."
UNCHECKED: Final = "This password could not be checked against known data breaches. Please try again later."


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """What a check decided about one password (it holds no trace of the password itself).

    ``compromised``: a source answered and has seen the password at least ``min_count`` times.
    ``count``: how often that source has seen it (``None`` when it cannot know, e.g. a Bloom filter, or
    when no source answered). ``checked_by``: ``"source"``, ``"fallback"``, or ``None`` when no source
    answered. ``unchecked``: no source answered and the policy is to refuse the password for that.
    """

    compromised: bool
    count: int | None = None
    checked_by: Role | None = None
    unchecked: bool = False

    @property
    def rejected(self) -> bool:
        """Whether the caller must refuse the password (leaked, or not checkable under "reject")."""
        return self.compromised or self.unchecked

    @classmethod
    def _answered(cls, exposure: Exposure, role: Role) -> CheckResult:
        return cls(exposure.compromised, exposure.count, role)


_UNCHECKED: Final = CheckResult(False, None, None, unchecked=True)
_ACCEPTED_UNCHECKED: Final = CheckResult(False, None, None)


def _reason(error: Exception) -> str:
    # A RemoteError's message names the hash prefix it asked for; a log must not, so only its code goes out.
    # Other errors name a file and what is wrong with it, never a password or a hash.
    if isinstance(error, RemoteError):
        return f"range API error: {error.code.value}"
    return f"{type(error).__name__}: {error}"


Source = str | os.PathLike[str] | Checker


def _check_source(name: str, value: object) -> None:
    if isinstance(value, Checker):
        return
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"{name} must be a path, an http(s):// URL or a Checker, not {type(value).__name__}")
    if not os.fspath(value):
        raise ValueError(f"{name} must not be empty")


def check_values(config: Mapping[str, Any]) -> None:
    """Raise ``TypeError``/``ValueError`` for any known setting in ``config`` whose value is unusable.

    Integrations call it where the settings are given, so a typo fails at start-up rather than at a log-in.
    Settings that only make sense together (``on_error="fallback"`` needs ``fallback``) are checked when
    the :class:`CompromiseCheck` is made.
    """
    for name in ("source", "fallback"):
        if config.get(name) is not None:
            _check_source(name, config[name])
    min_count = config.get("min_count")
    if min_count is not None:
        _args.positive_int("min_count", min_count)
    check_policy_values(config)


def check_policy_values(config: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for an ``on_error`` or ``timeout`` in ``config`` that is unusable (both checks share it)."""
    on_error = config.get("on_error")
    if on_error is not None and on_error not in POLICIES:
        raise ValueError(f"on_error must be one of {', '.join(map(repr, POLICIES))}, got {on_error!r}")
    timeout = config.get("timeout")
    if timeout is not None:
        _args.positive_seconds("timeout", timeout)


class CompromiseCheck:
    """Checks passwords against one source, opened on first use, and applies the failure policy.

    ``source`` is what :func:`credcheck.open` accepts: a filter file, a store path or a range API URL
    (default: the public Pwned Passwords API), or a :class:`~credcheck.Checker` already open (used as it is,
    and left open by :meth:`close`: it is the caller's); so is ``fallback``. ``min_count``: a password counts
    as compromised only when the source has seen it at least that often (a filter must have been built with
    at least that threshold); it defaults to 1, or to the ``min_count`` of a checker given, which must agree
    with it. ``on_error`` is ``"reject"``, ``"allow"`` or ``"fallback"`` (see the module docs);
    it defaults to ``"fallback"`` when a ``fallback`` source is given and to ``"reject"`` otherwise.
    ``timeout`` bounds, in seconds, how long one check may wait for a range API, retries included (it sets
    the client's per-request ``timeout`` and its ``deadline``); local sources ignore it. Other keyword
    options go to :func:`credcheck.open` for ``source`` as they are (``retries``, ``padding``, ``hash``,
    ``session``, ``verify``...). The fallback is opened with ``min_count`` only.

    Safe to share between threads: each source is opened once, by whichever thread needs it first. An open
    that fails is retried at the next check, so a file that appears later (or an API that comes back) is
    picked up without a restart.
    """

    def __init__(
        self,
        source: Source = DEFAULT_SOURCE,
        *,
        min_count: int | None = None,
        on_error: str | None = None,
        fallback: Source | None = None,
        timeout: float | None = None,
        **source_options: Any,
    ) -> None:
        check_values({"source": source, "min_count": min_count, "on_error": on_error, "timeout": timeout})
        if fallback is not None:
            _check_source("fallback", fallback)
        if on_error is None:
            on_error = "fallback" if fallback is not None else "reject"
        if on_error == "fallback" and fallback is None:
            raise ValueError("on_error='fallback' needs a fallback source (a local filter or store path)")
        given = [
            (role, value) for role, value in (("source", source), ("fallback", fallback)) if isinstance(value, Checker)
        ]
        if isinstance(source, Checker) and source_options:
            raise TypeError(
                f"options for opening a source do not apply to a Checker: {', '.join(sorted(source_options))}"
            )
        if min_count is None:
            min_count = given[0][1].min_count if given else 1
        for name, checker in given:
            if checker.min_count != min_count:
                raise ValueError(f"the {name} checker answers min_count={checker.min_count}, not {min_count}")
        self.source = source
        self.min_count = min_count
        self.on_error = on_error
        # A fallback that the policy never consults is dropped, so the repr shows what will really happen.
        self.fallback = fallback if on_error == "fallback" else None
        self.timeout = timeout
        self.source_options = dict(source_options)
        self._lock = threading.Lock()
        self._checkers: dict[Role, Checker] = {}
        self._given: dict[Role, Checker] = {}  # checkers the caller gave: used as they are, never closed here
        if isinstance(source, Checker):
            self._given["source"] = source
        if isinstance(self.fallback, Checker):
            self._given["fallback"] = self.fallback
        roles: tuple[Role, ...] = ("source", "fallback") if self.fallback is not None else ("source",)
        for role in roles:
            self._probe(role)

    def _probe(self, role: Role) -> None:
        """Open a local source now, so that one that exists but could never answer is refused at set-up.

        A filter keeps no counts, so it cannot answer a ``min_count`` above the one it was built with; found
        only when the fallback is first needed, that would turn an outage into an error on every check. A
        file that is missing or unreadable now is left to the check (it may appear later, and the failure
        policy handles it then). What opens is kept: the check uses it.
        """
        target = self.source if role == "source" else self.fallback
        assert target is not None
        if isinstance(target, Checker) or is_remote(target) or not os.path.isfile(target):
            return
        try:
            self._checkers[role] = self._open(role)
        except CredcheckError:
            return  # unreadable now: the check retries it under the failure policy
        except ValueError as exc:
            raise ValueError(f"{role} {source_label(target)}: {exc}") from None

    @entry_point
    def check(self, password: str | bytes) -> CheckResult:
        """Check ``password`` against the source, applying the failure policy if the source cannot answer.

        Configuration errors (an unknown option, a filter built with a lower threshold than ``min_count``)
        are raised as they are; only a :class:`~credcheck.CredcheckError` from opening or asking the source
        is a failure the policy handles.
        """
        try:
            exposure = self._ask("source", password)
        except CredcheckError as error:
            return self._after_failure(password, error)
        return CheckResult._answered(exposure, "source")

    def _after_failure(self, password: str | bytes, error: CredcheckError) -> CheckResult:
        source, reason = source_label(self.source), _reason(error)
        if self.on_error == "allow":
            logger.error(
                "credcheck: could not check a password against %s (%s); accepted it unchecked (on_error='allow')",
                source,
                reason,
            )
            return _ACCEPTED_UNCHECKED
        if self.on_error == "fallback" and self.fallback is not None:
            fallback = source_label(self.fallback)
            try:
                exposure = self._ask("fallback", password)
            except (CredcheckError, ValueError) as fallback_error:
                # ValueError: the fallback file was replaced since set-up by one that cannot answer (a filter
                # built with a lower min_count); an outage must not become an error page.
                logger.error(
                    "credcheck: could not check a password against %s (%s) nor against the fallback %s (%s); "
                    "refused it as unchecked",
                    source,
                    reason,
                    fallback,
                    _reason(fallback_error),
                )
                return _UNCHECKED
            logger.warning(
                "credcheck: %s could not answer (%s); checked against the fallback %s", source, reason, fallback
            )
            return CheckResult._answered(exposure, "fallback")
        logger.error(
            "credcheck: could not check a password against %s (%s); refused it as unchecked (on_error='reject')",
            source,
            reason,
        )
        return _UNCHECKED

    def _ask(self, role: Role, password: str | bytes) -> Exposure:
        checker = self._checker(role)
        try:
            return checker.check(password)
        except ClosedError:
            # close() ran between fetching the checker and asking it: ask the one opened in its place.
            self._forget(role, checker)
            return self._checker(role).check(password)

    def _forget(self, role: Role, checker: Checker) -> None:
        with self._lock:
            if self._checkers.get(role) is checker:
                del self._checkers[role]

    def _checker(self, role: Role) -> Checker:
        checker = self._checkers.get(role)
        if checker is None:
            with self._lock:
                checker = self._checkers.get(role)
                if checker is None:
                    checker = self._checkers[role] = self._open(role)
        return checker

    def _open(self, role: Role) -> Checker:
        given = self._given.get(role)
        if given is not None:
            return given
        if role == "fallback":
            assert self.fallback is not None and not isinstance(self.fallback, Checker)
            return _sources.open(self.fallback, min_count=self.min_count)
        assert not isinstance(self.source, Checker)
        return _sources.open(self.source, min_count=self.min_count, **self._source_options())

    def _source_options(self) -> dict[str, Any]:
        """The options the source is opened with: those given, and for a range API the timeout as its deadline."""
        options = dict(self.source_options)
        if self.timeout is not None and not isinstance(self.source, Checker) and is_remote(self.source):
            options.setdefault("timeout", self.timeout)
            options.setdefault("deadline", self.timeout)
        return options

    def close(self) -> None:
        """Close the sources this check opened (a Checker it was given stays open); a later check reopens them."""
        with self._lock:
            checkers, self._checkers = list(self._checkers.values()), {}
        given = [id(checker) for checker in self._given.values()]
        for checker in checkers:
            if id(checker) not in given:
                checker.close()

    def __repr__(self) -> str:
        fallback = "" if self.fallback is None else f" fallback={source_label(self.fallback)!r}"
        return (
            f"<CompromiseCheck source={source_label(self.source)!r} min_count={self.min_count} "
            f"on_error={self.on_error!r}{fallback}>"
        )


def message(
    result: CheckResult,
    gettext: Callable[[str], str] = str,
    ngettext: Callable[[str, str, int], str] | None = None,
) -> str | None:
    """What to tell the user about ``result`` (None when the password may be used), through the given
    translations (plain English by default); never the password, only the count a source keeps."""
    if ngettext is None:
        ngettext = _english_ngettext
    if result.unchecked:
        return gettext(UNCHECKED)
    if not result.compromised:
        return None
    if result.count is None:
        return gettext(COMPROMISED_NO_COUNT)
    return ngettext(COMPROMISED_ONE, COMPROMISED_MANY, result.count) % {"count": result.count}


def _english_ngettext(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


# ----------------------------------------------------------------------------------------------------
# One check per configuration per process


def configuration(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge settings layers, later ones winning; a ``None`` value means "not set here" and is skipped."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged.update((str(name), value) for name, value in layer.items() if value is not None)
    return merged


def _frozen(value: object) -> object:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, os.PathLike):
        return ("path", os.fspath(value))
    try:
        hash(value)
    except TypeError:
        return (type(value).__qualname__, repr(value))
    return (type(value).__qualname__, value)


_shared: dict[tuple[object, object], Any] = {}  # (kind of check, frozen configuration) -> the open check
_shared_lock = threading.Lock()
_C = TypeVar("_C")


def shared(kind: Callable[..., _C], config: Mapping[str, Any]) -> _C:
    """This process's ``kind(**config)`` (a :class:`CompromiseCheck` or a pair check), made on first use.

    Validators are created often (Django may build one per call) but must share one open source and one
    connection pool; keying on the whole configuration also means a changed setting gets its own check.
    """
    key = (kind, _frozen(config))
    with _shared_lock:
        check = _shared.get(key)
        if check is None:
            check = _shared[key] = kind(**config)
    return cast(_C, check)


def shared_check(config: Mapping[str, Any]) -> CompromiseCheck:
    """Return this process's :class:`CompromiseCheck` for ``config``, making it on first use."""
    return shared(CompromiseCheck, config)


def close_shared() -> None:
    """Close and forget every shared check, pair checks included (tests, or an application that swaps its corpus
    at run time)."""
    with _shared_lock:
        checks = list(_shared.values())
        _shared.clear()
    for check in checks:
        check.close()
