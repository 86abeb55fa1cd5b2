"""The pair check both framework integrations share: a lazily opened pair checker and the same failure policy.

:class:`PairCheck` is :class:`~credcheck.contrib._policy.CompromiseCheck` for a username and password
together: it opens a pair service (an ``http(s)://`` URL; ``public_key`` pins its key) or a local pair store
(with ``key``) on first use and applies one of the policies of :mod:`credcheck.contrib._policy` when it
cannot answer — ``"reject"`` (refused as unchecked), ``"allow"`` (accepted unchecked, an error logged on
``credcheck.contrib``) or ``"fallback"`` (asked of ``fallback``, another pair source, with ``fallback_key``
when it is a store). Logs name the source and the kind of failure, never a username, a password or a bucket.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping
from typing import Any, Final

from .._frames import entry_point
from .._sources import is_remote, source_label
from ..errors import ClosedError, CredcheckError, RemoteError
from ._policy import POLICIES, Role, check_policy_values, logger

__all__ = ["PairCheck", "PairCheckResult", "check_pair_values", "shared_pair_check"]

#: The failure policies (the same three as for passwords).
PAIR_POLICIES: Final = POLICIES


@dataclasses.dataclass(frozen=True, slots=True)
class PairCheckResult:
    """What a pair check decided (no trace of the username or password).

    ``status``: the :class:`~credcheck.PairStatus` value a source answered (``"exact"``, ``"similar"``,
    ``"username"``, ``"not_found"``), or ``None`` when none answered. ``compromised``: exact or similar.
    ``checked_by``: ``"source"``, ``"fallback"`` or ``None``. ``unchecked``: no source answered and the policy
    is to refuse for that.
    """

    status: str | None
    checked_by: Role | None = None
    unchecked: bool = False

    @property
    def compromised(self) -> bool:
        """True when this exact pair, or the username with a password very close to it, has leaked."""
        return self.status in ("exact", "similar")

    @property
    def rejected(self) -> bool:
        """Whether the caller must refuse (a leaked pair, or one that could not be checked under "reject")."""
        return self.compromised or self.unchecked

    @property
    def label(self) -> str:
        """One word for a session or a log: the status, ``"unchecked"`` or ``"not_checked"``."""
        if self.status is not None:
            return self.status
        return "unchecked" if self.unchecked else "not_checked"


def _reason(error: Exception) -> str:
    if isinstance(error, RemoteError):
        return f"pair service error: {error.code.value}"
    return f"{type(error).__name__}: {error}"


def check_pair_values(config: Mapping[str, Any]) -> None:
    """Raise TypeError/ValueError for a setting of ``config`` that is unusable (called where settings are given)."""
    for name in ("source", "fallback"):
        value = config.get(name)
        if value is not None and (not isinstance(value, str | os.PathLike) or not os.fspath(value)):
            raise TypeError(f"{name} must be a pair service URL or a pair store path, not {value!r}")
    check_policy_values(config)


class PairCheck:
    """Checks (username, password) pairs against one pair source, opened on first use, under a failure policy.

    ``source``: a pair service's ``http(s)://`` base URL or a pair store path (then ``key``: its key file).
    ``on_error``: ``"reject"`` (the default without a fallback), ``"allow"`` or ``"fallback"`` (the default with
    one). ``timeout`` bounds one check against a service, retries included. Other options go to
    :func:`credcheck.open_pairs` for ``source`` (``public_key``, ``retries``, ``session``...). Thread-safe; a
    source that fails to open is opened again at the next check.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        key: str | os.PathLike[str] | None = None,
        on_error: str | None = None,
        fallback: str | os.PathLike[str] | None = None,
        fallback_key: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> None:
        if source is None:
            raise ValueError("a pair check needs a source: a pair service URL or a pair store path")
        check_pair_values({"source": source, "fallback": fallback, "on_error": on_error, "timeout": timeout})
        if on_error is None:
            on_error = "fallback" if fallback is not None else "reject"
        if on_error == "fallback" and fallback is None:
            raise ValueError("on_error='fallback' needs a fallback pair source")
        for role, target, its_key in (("source", source, key), ("fallback", fallback, fallback_key)):
            if target is not None and not is_remote(target) and its_key is None:
                raise ValueError(f"the {role} {source_label(target)} is a pair store: give its key file too")
        self.source, self.key, self.on_error, self.timeout = source, key, on_error, timeout
        self.fallback = fallback if on_error == "fallback" else None
        self.fallback_key = fallback_key
        self.options = dict(options)
        self._lock = threading.Lock()
        self._checkers: dict[Role, Any] = {}

    def _open(self, role: Role) -> Any:
        from .. import open_pairs

        target = self.source if role == "source" else self.fallback
        assert target is not None
        options: dict[str, Any] = dict(self.options) if role == "source" else {}
        if is_remote(target):
            if self.timeout is not None:
                options.setdefault("timeout", self.timeout)
                options.setdefault("deadline", self.timeout)
        else:
            options = {k: v for k, v in options.items() if k == "verify"}
            options["key"] = self.key if role == "source" else self.fallback_key
        return open_pairs(target, **options)

    def _checker(self, role: Role) -> Any:
        checker = self._checkers.get(role)
        if checker is None:
            with self._lock:
                checker = self._checkers.get(role)
                if checker is None:
                    checker = self._checkers[role] = self._open(role)
        return checker

    def _ask(self, role: Role, username: str, password: str) -> str:
        checker = self._checker(role)
        try:
            return str(checker.check(username, password).status.value)
        except ClosedError:
            with self._lock:
                if self._checkers.get(role) is checker:
                    del self._checkers[role]
            return str(self._checker(role).check(username, password).status.value)

    @entry_point
    def check(self, username: str, password: str) -> PairCheckResult:
        """Check the pair, applying the failure policy if the source cannot answer."""
        try:
            return PairCheckResult(self._ask("source", username, password), "source")
        except CredcheckError as error:
            failed = error
        return self._after_failure(username, password, failed)

    def _after_failure(self, username: str, password: str, error: CredcheckError) -> PairCheckResult:
        """The failure policy, once the source could not answer (the async check shares it)."""
        reason = _reason(error)
        source = source_label(self.source)
        if self.on_error == "allow":
            logger.error(
                "credcheck: could not check a log-in pair against %s (%s); accepted it unchecked (on_error='allow')",
                source,
                reason,
            )
            return PairCheckResult(None)
        if self.on_error == "fallback" and self.fallback is not None:
            fallback = source_label(self.fallback)
            try:
                status = self._ask("fallback", username, password)
            except (CredcheckError, ValueError) as fallback_error:
                logger.error(
                    "credcheck: could not check a log-in pair against %s (%s) nor against the fallback %s (%s); "
                    "refused it as unchecked",
                    source,
                    reason,
                    fallback,
                    _reason(fallback_error),
                )
                return PairCheckResult(None, None, unchecked=True)
            logger.warning("credcheck: %s could not answer (%s); checked the pair against %s", source, reason, fallback)
            return PairCheckResult(status, "fallback")
        logger.error(
            "credcheck: could not check a log-in pair against %s (%s); refused it as unchecked (on_error='reject')",
            source,
            reason,
        )
        return PairCheckResult(None, None, unchecked=True)

    def close(self) -> None:
        """Close what this check opened; a later check opens it again."""
        with self._lock:
            checkers, self._checkers = list(self._checkers.values()), {}
        for checker in checkers:
            checker.close()

    def __repr__(self) -> str:
        fallback = "" if self.fallback is None else f" fallback={source_label(self.fallback)!r}"
        return f"<PairCheck source={source_label(self.source)!r} on_error={self.on_error!r}{fallback}>"


def shared_pair_check(config: Mapping[str, Any]) -> PairCheck:
    """This process's :class:`PairCheck` for ``config`` (one open source and connection pool per configuration;
    :func:`credcheck.contrib._policy.close_shared` closes them with the others)."""
    from ._policy import shared

    return shared(PairCheck, config)
