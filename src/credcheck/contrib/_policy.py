"""The failure policy every integration's check goes through (:class:`PolicyCheck`), and one check per
configuration per process (:func:`shared`).

A validator in a web application must answer even when its source cannot: the range API or the pair service
times out, a file went missing. :class:`PolicyCheck` owns that decision for both tiers, sync and async, so the
integrations only turn a result (:mod:`credcheck.contrib._verdicts`) into their own error:

- ``on_error="reject"`` (the default without a fallback): refused as *unchecked*; the user is told it could
  not be checked, never that it leaked.
- ``on_error="allow"``: accepted unchecked, and an error is logged on ``credcheck.contrib`` (the source and
  the reason, never a username, a password, a hash or a hash prefix).
- ``on_error="fallback"`` (the default when ``fallback`` is given): asked of the fallback source instead,
  typically a local file; if that fails too, refused as unchecked.

The checks on it: ``credcheck.contrib._passwords.CompromiseCheck`` (passwords, :func:`credcheck.open`) and
``credcheck.contrib._pairs.PairCompromiseCheck`` (username and password pairs, :func:`credcheck.open_pairs`).
The integrations read their settings when a check runs and look the check up in a per-process registry keyed
by the whole configuration (:func:`shared`), so a changed setting takes effect at the next check and an
unchanged one reuses the open source and its connection pool.

A check also says which corpus version its source answers from (:meth:`PolicyCheck.corpus_version`), asked at
most once per :data:`VERSION_TTL` seconds: the log-in throttle compares it with the version a user was last
checked against.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, TypeVar, cast

from .. import _args
from .._inflight import in_thread
from .._sources import is_remote, source_label
from ..errors import ClosedError, CredcheckError, RemoteError
from ._verdicts import CheckResult, PairCheckResult, Role

__all__ = ["POLICIES", "VERSION_TTL", "PolicyCheck", "close_shared", "frozen_settings", "shared"]

logger = logging.getLogger("credcheck.contrib")

#: The failure policies, in the order the docs describe them.
POLICIES: Final = ("reject", "allow", "fallback")
#: Seconds a source's corpus version is kept before the source is asked again.
VERSION_TTL: Final = 60.0

_R = TypeVar("_R", CheckResult, PairCheckResult)


def _loop() -> object | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): one checker for the process
        return None


class _PerLoop:
    """One async checker per event loop: the latest loop's (one opened on a loop now gone is dropped).

    An ``httpx.AsyncClient``'s connections belong to the event loop that opened them, so a check that runs on
    another loop (an application that calls ``asyncio.run`` more than once) opens its own.
    """

    def __init__(self) -> None:
        self._loop: object | None = None
        self._checker: Any = None

    def get(self, open_checker: Callable[[], Any]) -> Any:
        loop = _loop()
        if self._checker is None or self._loop is not loop:
            self._loop, self._checker = loop, open_checker()
        return self._checker

    async def aclose(self) -> None:
        checker, self._checker = self._checker, None
        if checker is not None and self._loop is _loop():
            await checker.aclose()

    def forget(self) -> None:
        self._checker = None


class PolicyCheck(abc.ABC, Generic[_R]):
    """A source, opened on first use, asked under the failure policy: the mechanism of every check.

    ``source`` and ``fallback`` are what the subclass opens (a path or a URL), or checkers the caller opened
    (kept in ``_given``: used as they are, never closed here). The subclass says what differs between the
    tiers: how a role's source is opened (:meth:`_open`, and :meth:`_open_async` for a service asked from
    async code), what its answer becomes (``_result``), whether a local source may block an event loop
    (:meth:`_blocks`), and how logs name what was checked and the service.

    Thread-safe: each source is opened once, by whichever thread needs it first. An open that fails is
    retried at the next check, so a file that appears later (or a service that comes back) is picked up
    without a restart. From async code (:meth:`_acheck`) a service is asked over httpx, so the event loop is
    never blocked on the network; what happens when it cannot answer runs in a worker thread, since a fallback
    may be a file or another service. A cancelled check waits for its worker thread before the cancellation
    goes on and leaves no frame holding the credentials. (An async checker is fetched and entered in one step
    of the loop, so :meth:`aclose` cannot close it between the two; a sync source closed under a check is
    opened again for it.)
    """

    #: The result type of the tier.
    _result: type[_R]
    #: What the logs say was checked ("a password").
    _asked: str
    #: What the logs call a service whose error code they give ("range API").
    _service: str
    #: What a fallback may be, for the error when ``on_error="fallback"`` has none.
    _fallback_kind: str

    def __init__(
        self,
        source: Any,
        *,
        on_error: str | None,
        fallback: Any,
        timeout: float | None,
        source_options: Mapping[str, Any],
    ) -> None:
        if on_error is None:
            on_error = "fallback" if fallback is not None else "reject"
        if on_error == "fallback" and fallback is None:
            raise ValueError(f"on_error='fallback' needs a fallback source ({self._fallback_kind})")
        self.source: Any = source
        self.on_error = on_error
        # A fallback that the policy never consults is dropped, so the repr shows what will really happen.
        self.fallback: Any = fallback if on_error == "fallback" else None
        self.timeout = timeout
        self.source_options = dict(source_options)
        self._lock = threading.Lock()
        self._checkers: dict[Role, Any] = {}
        self._given: dict[Role, Any] = {}
        self._async = _PerLoop()
        self._version: tuple[str | None, float] | None = None  # (the source's version, when it was asked)

    @classmethod
    def check_settings(cls, config: Mapping[str, Any]) -> None:
        """Raise ``TypeError``/``ValueError`` for a known setting in ``config`` whose value is unusable.

        Integrations call it where the settings are given, so a typo fails at start-up rather than at a log-in.
        Settings that only make sense together (``on_error="fallback"`` needs ``fallback``) are checked when
        the check is made.
        """
        for name in ("source", "fallback"):
            if config.get(name) is not None:
                cls._check_source(name, config[name])
        on_error = config.get("on_error")
        if on_error is not None and on_error not in POLICIES:
            raise ValueError(f"on_error must be one of {', '.join(map(repr, POLICIES))}, got {on_error!r}")
        timeout = config.get("timeout")
        if timeout is not None:
            _args.positive_seconds("timeout", timeout)

    @classmethod
    @abc.abstractmethod
    def _check_source(cls, name: str, value: object) -> None:
        """Raise if ``value`` cannot be a source or fallback of this tier."""

    @abc.abstractmethod
    def _open(self, role: Role) -> Any:
        """Open ``role``'s source (a path or a URL) for sync checks."""

    @abc.abstractmethod
    def _open_async(self) -> Any:
        """Open the source, a service, for async checks (over httpx)."""

    @abc.abstractmethod
    def _blocks(self) -> bool:
        """Whether a sync check of the source, not a service, may block an event loop."""

    def _roles(self) -> tuple[Role, ...]:
        """The roles this check may ask: the source, and the fallback when the policy consults one."""
        return ("source",) if self.fallback is None else ("source", "fallback")

    def _target(self, role: Role) -> Any:
        """What ``role`` names: the source or the fallback (a path, a URL or a checker given)."""
        return self.source if role == "source" else self.fallback

    def _bounded(self, target: Any, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options ``target`` is opened with: ``options``, and for a service ``timeout`` as the bound of each
        request and of the whole check (local sources ignore it)."""
        bounded = dict(options)
        if self.timeout is not None and is_remote(target):
            bounded.setdefault("timeout", self.timeout)
            bounded.setdefault("deadline", self.timeout)
        return bounded

    def _check(self, credentials: tuple[Any, ...]) -> _R:
        """Ask the source about ``credentials``, applying the failure policy if it cannot answer.

        Configuration errors (an unknown option, a filter built with a lower threshold than ``min_count``)
        are raised as they are; only a :class:`~credcheck.CredcheckError` from opening or asking the source
        is a failure the policy handles.
        """
        try:
            answer = self._ask("source", credentials)
        except CredcheckError as error:
            return self._after_failure(credentials, error)
        return self._result.answered(answer, "source")

    async def _acheck(self, credentials: tuple[Any, ...]) -> _R:
        """:meth:`_check` for async code: a service over httpx, the same policy."""
        if not is_remote(self.source):
            return await in_thread(self._check, credentials) if self._blocks() else self._check(credentials)
        try:
            answer = await self._async.get(self._open_async).check(*credentials)
        except CredcheckError as error:
            return await in_thread(self._after_failure, credentials, error)
        return self._result.answered(answer, "source")

    def corpus_version(self, now: float) -> str | None:
        """The version of the corpus the source answers from (None where it has none), asked at most once per
        :data:`VERSION_TTL` seconds of ``now``'s clock; when the source cannot say, the last version it gave.

        The fallback's version is never given: an answer from it is recorded as coming from no known version,
        so the user is checked again once the source answers.
        """
        known = self._kept(now)
        if known is not None:
            return known[0]
        try:
            version: str | None = self._checker("source").corpus_version()
        except CredcheckError as error:
            version = self._version_lost(error)
        self._version = (version, now)
        return version

    async def acorpus_version(self, now: float) -> str | None:
        """:meth:`corpus_version` from async code: a service asked over httpx, a local file inline."""
        if not is_remote(self.source):
            return self.corpus_version(now)
        known = self._kept(now)
        if known is not None:
            return known[0]
        try:
            version: str | None = await self._async.get(self._open_async).corpus_version()
        except CredcheckError as error:
            version = self._version_lost(error)
        self._version = (version, now)
        return version

    def _kept(self, now: float) -> tuple[str | None, float] | None:
        known = self._version
        return known if known is not None and 0 <= now - known[1] < VERSION_TTL else None

    def _version_lost(self, error: CredcheckError) -> str | None:
        logger.warning(
            "credcheck: could not ask %s for its corpus version (%s)", source_label(self.source), self._reason(error)
        )
        known = self._version
        return None if known is None else known[0]

    def _after_failure(self, credentials: tuple[Any, ...], error: CredcheckError) -> _R:
        """The failure policy, once the source could not answer."""
        source, reason = source_label(self.source), self._reason(error)
        if self.on_error == "allow":
            logger.error(
                "credcheck: could not check %s against %s (%s); accepted it unchecked (on_error='allow')",
                self._asked,
                source,
                reason,
            )
            return self._result.unanswered(unchecked=False)
        if self.on_error == "fallback" and self.fallback is not None:
            fallback = source_label(self.fallback)
            try:
                answer = self._ask("fallback", credentials)
            except (CredcheckError, ValueError) as fallback_error:
                # ValueError: the fallback file was replaced since set-up by one that cannot answer (a filter
                # built with a lower min_count); an outage must not become an error page.
                logger.error(
                    "credcheck: could not check %s against %s (%s) nor against the fallback %s (%s); "
                    "refused it as unchecked",
                    self._asked,
                    source,
                    reason,
                    fallback,
                    self._reason(fallback_error),
                )
                return self._result.unanswered(unchecked=True)
            logger.warning(
                "credcheck: %s could not answer (%s); checked against the fallback %s", source, reason, fallback
            )
            return self._result.answered(answer, "fallback")
        logger.error(
            "credcheck: could not check %s against %s (%s); refused it as unchecked (on_error='reject')",
            self._asked,
            source,
            reason,
        )
        return self._result.unanswered(unchecked=True)

    def _reason(self, error: Exception) -> str:
        # A RemoteError's message may name what it asked for (a hash prefix); a log must not, so only its code
        # goes out. Other errors name a file and what is wrong with it, never a credential or a hash.
        if isinstance(error, RemoteError):
            return f"{self._service} error: {error.code.value}"
        return f"{type(error).__name__}: {error}"

    def _ask(self, role: Role, credentials: tuple[Any, ...]) -> Any:
        checker = self._checker(role)
        try:
            return checker.check(*credentials)
        except ClosedError:
            # close() ran between fetching the checker and asking it: ask the one opened in its place.
            with self._lock:
                if self._checkers.get(role) is checker:
                    del self._checkers[role]
            return self._checker(role).check(*credentials)

    def _checker(self, role: Role) -> Any:
        checker = self._checkers.get(role)
        if checker is None:
            with self._lock:
                checker = self._checkers.get(role)
                if checker is None:
                    given = self._given.get(role)
                    checker = self._checkers[role] = self._open(role) if given is None else given
        return checker

    def close(self) -> None:
        """Close the sources this check opened (a checker it was given stays open) and forget the async one
        (its pool closes with its event loop); a later check opens them again."""
        self._async.forget()
        with self._lock:
            checkers, self._checkers = list(self._checkers.values()), {}
        given = [id(checker) for checker in self._given.values()]
        for checker in checkers:
            if id(checker) not in given:
                checker.close()

    async def aclose(self) -> None:
        """Close the async checker (on its own loop) and the sync sources; a later check opens them again."""
        await self._async.aclose()
        self.close()

    def _details(self) -> str:
        return ""

    def __repr__(self) -> str:
        fallback = "" if self.fallback is None else f" fallback={source_label(self.fallback)!r}"
        return (
            f"<{type(self).__name__} source={source_label(self.source)!r}{self._details()} "
            f"on_error={self.on_error!r}{fallback}>"
        )


def frozen_settings(value: object) -> object:
    """``value`` (settings: dicts, lists, paths) as something hashable that compares equal for equal settings."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), frozen_settings(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(frozen_settings(v) for v in value)
    if isinstance(value, os.PathLike):
        return ("path", os.fspath(value))
    try:
        hash(value)
    except TypeError:
        return (type(value).__qualname__, repr(value))
    return (type(value).__qualname__, value)


_shared: dict[tuple[object, object], PolicyCheck[Any]] = {}  # (kind of check, frozen configuration) -> the check
_shared_lock = threading.Lock()
_C = TypeVar("_C", bound=PolicyCheck[Any])


def shared(kind: type[_C], config: Mapping[str, Any]) -> _C:
    """This process's ``kind(**config)`` (a password or a pair check), made on first use.

    Validators are created often (Django may build one per call) but must share one open source and one
    connection pool; keying on the whole configuration also means a changed setting gets its own check. Sync
    and async code share it: each asks it its own way (``check``, ``acheck``).
    """
    key = (kind, frozen_settings(config))
    with _shared_lock:
        check = _shared.get(key)
        if check is None:
            check = _shared[key] = kind(**config)
    return cast(_C, check)


def close_shared() -> None:
    """Close and forget every shared check, pair checks included (tests, or an application that swaps its corpus
    at run time)."""
    with _shared_lock:
        checks = list(_shared.values())
        _shared.clear()
    for check in checks:
        check.close()
