"""What a partner site does with a check's answer, declared once and shared by Django, Flask, FastAPI and the
WSGI/ASGI middleware (docs/INTEGRATIONS.md, "The policy").

- :class:`Policy`: stages (:class:`Stage`: sign-up, change, reset, log-in) x verdicts (:class:`Verdict`: the
  password leaked, the exact pair, a similar pair, the username alone, unchecked, clean) → reactions
  (:class:`Reaction`: an :class:`Action` — allow, warn, require a change at once or after a grace, block — and
  whom to notify), an audit-only mode, thresholds, the log-in re-check interval and canary credentials. Frozen;
  checked when made. The defaults follow NIST SP 800-63B §5.1.1.2.
- :class:`Guard`: the policy at work — canaries, the log-in throttle (a lookup only when the corpus changed since
  the user's last check, or after the interval), the checks under their failure policy, the user's state
  (:class:`MemoryState`, or any :class:`StateStore`), one :class:`Event` per decision; it returns a
  :class:`Decision`.

A site without a framework integration::

    from credcheck.contrib.policy import Guard, Policy

    guard = Guard(
        Policy(login={"password": {"action": "require_change", "grace_logins": 2}}),
        passwords={"source": "https://ranges.internal.example", "timeout": 1.5},
        pairs={"source": "https://pairs.internal.example", "on_error": "allow"},
        secret=SITE_SECRET,
    )
    decision = guard.check("signup", username, password)     # decision.blocked, decision.message()
    decision = guard.login(username, password)               # after the password was verified
    if decision.change_required:
        guard.flag(session, decision)                        # guard.must_change(session) on each request
    guard.password_changed(username)                         # once the new password is saved
"""

from __future__ import annotations

from ._events import Event, user_reference
from ._guard import EXPOSED_CREDENTIAL_CHECK, SESSION_FLAG, Decision, Guard
from ._state import MemoryState, StateStore, UserState
from ._table import DEFAULT_RECHECK_INTERVAL, DEFAULTS, Action, Canary, Policy, Reaction, Stage
from ._verdicts import Verdict

__all__ = [
    "DEFAULTS",
    "DEFAULT_RECHECK_INTERVAL",
    "EXPOSED_CREDENTIAL_CHECK",
    "SESSION_FLAG",
    "Action",
    "Canary",
    "Decision",
    "Event",
    "Guard",
    "MemoryState",
    "Policy",
    "Reaction",
    "Stage",
    "StateStore",
    "UserState",
    "Verdict",
    "user_reference",
]
