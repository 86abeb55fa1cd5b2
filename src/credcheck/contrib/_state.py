"""What is kept about a user between log-ins, and where: the throttle's last check and a pending required change.

A log-in is checked only when it is due (:func:`due`): the corpus of a tier changed since the user's last check,
a tier was never checked, or ``recheck_interval`` passed. What is kept (:class:`UserState`) is small, JSON-ready
and holds nothing derived from the password: when the last check ran, the corpus version each tier answered
from, and a required change with its grace. It is keyed by the user's reference (an opaque id or a keyed hash
of the username: ``credcheck.contrib._events.user_reference``), never the username.

Where it lives is the site's choice: anything with ``load(user)`` and ``save(user, state)``
(:class:`StateStore`) — a cache, a column of the user model. :class:`MemoryState` keeps it in this process
(tests, a single-process site); the Django integration has one over Django's cache framework.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol

__all__ = ["MemoryState", "StateStore", "UserState", "due"]


@dataclasses.dataclass(frozen=True, slots=True)
class UserState:
    """What is kept about one user: ``checked_at`` (the time of the last complete check, on the guard's clock),
    ``versions`` (by tier, ``"password"`` and ``"pair"``, the corpus version each answered from; None where the
    source has none; a tier that did not answer is absent), and a required change: ``change_required``, the
    verdict behind it (``reason``), the grace log-ins left and the time the grace ends (None: no such grace);
    ``changed_at``, when the password was last changed (a session flagged before then is released)."""

    checked_at: float | None = None
    versions: Mapping[str, str | None] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    change_required: bool = False
    reason: str | None = None
    logins_left: int | None = None
    change_by: float | None = None
    changed_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The state as JSON-ready data (what a store saves)."""
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        data["versions"] = dict(self.versions)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> UserState:
        """The state a store saved (an empty one for None); anything unusable is dropped, never trusted, each field
        alone and towards the safe side: a check time that does not parse means no check recorded (the next
        log-in is checked), a grace that does not parse means none (a required change is forced at once), a
        change time that does not parse means no change (a flagged session stays flagged)."""
        if not isinstance(data, Mapping):
            return cls()
        try:
            versions = MappingProxyType(
                {str(k): None if v is None else str(v) for k, v in dict(data.get("versions") or {}).items()}
            )
        except (TypeError, ValueError):
            versions = MappingProxyType({})
        left = data.get("logins_left")
        try:
            left = None if left is None or isinstance(left, bool) else int(left)
        except (TypeError, ValueError, OverflowError):
            left = None
        return cls(
            _time(data.get("checked_at")),
            versions,
            data.get("change_required") is True,
            None if data.get("reason") is None else str(data["reason"]),
            left,
            _time(data.get("change_by")),
            _time(data.get("changed_at")),
        )


def _time(value: object) -> float | None:
    """A stored time, or None when there is none or it is no finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None


class StateStore(Protocol):
    """Where user states live: ``load`` returns what ``save`` stored for a user reference (None if nothing)."""

    def load(self, user: str) -> Mapping[str, Any] | None: ...

    def save(self, user: str, state: Mapping[str, Any]) -> None: ...


class MemoryState:
    """User states in this process's memory (tests; a single-process site): lost at restart, not shared between
    worker processes — each process then checks a user once per version."""

    def __init__(self) -> None:
        self._states: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def load(self, user: str) -> Mapping[str, Any] | None:
        with self._lock:
            state = self._states.get(user)
            return None if state is None else dict(state)

    def save(self, user: str, state: Mapping[str, Any]) -> None:
        with self._lock:
            self._states[user] = dict(state)

    def __len__(self) -> int:
        return len(self._states)

    def __repr__(self) -> str:
        return f"<MemoryState users={len(self._states)}>"


def due(state: UserState, versions: Mapping[str, str | None], now: float, interval: float | None) -> bool:
    """Whether a log-in must be checked: a tier in ``versions`` (the tiers asked now, with their sources'
    current versions) never answered for this user or answered from another version, or ``interval`` seconds
    passed since the last check (a clock that went back counts as passed)."""
    if state.checked_at is None:
        return True
    for tier, version in versions.items():
        if tier not in state.versions or state.versions[tier] != version:
            return True
    if interval is None:
        return False
    elapsed = now - state.checked_at
    return elapsed < 0 or elapsed >= interval
