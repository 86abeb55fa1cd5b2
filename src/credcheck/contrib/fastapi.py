"""FastAPI (and Starlette): password and pair checks for async views, with an explicit failure policy.

Make a check once, with the settings the Django and Flask integrations take, and use it as a dependency::

    from fastapi import Depends, FastAPI
    from credcheck.contrib.fastapi import PasswordCheck

    passwords = PasswordCheck("https://ranges.example", on_error="fallback", fallback="/srv/pwned.bloom")

    @app.post("/signup")
    async def signup(form: SignUp, check: PasswordCheck = Depends(passwords)) -> dict[str, str]:
        await check.validate(form.password)  # a 422 if it leaked, or could not be checked under "reject"
        ...

``source`` (a range API URL, or a local filter or store; default: the public Pwned Passwords API),
``min_count``, ``on_error`` (``"reject"``, ``"allow"`` or ``"fallback"``), ``fallback``, ``timeout`` and the
other options of :func:`credcheck.open` mean what they mean for the other integrations
(``credcheck.contrib._policy``); a range API is asked over httpx (:mod:`credcheck.aio`), so a check never
blocks the event loop. :meth:`PasswordCheck.validate` raises ``HTTPException(422)`` with FastAPI's own error
shape (``{"detail": [{"loc": ["body", FIELD], "msg": ..., "type": ...}]}``); the message never holds the
password, only the count a source keeps. :meth:`PasswordCheck.check` returns the
:class:`~credcheck.contrib._verdicts.CheckResult` for a view that decides itself.

:class:`PairCheck` does the same for a username and password pair against a pair service
(``credcheck serve --pairs``); at log-in, use :meth:`PairCheck.check` and ask for a password change rather
than refusing the log-in. Checks are shared per configuration in the process, as in the other integrations;
``credcheck.contrib._policy.close_shared()`` closes them.

The policy (docs/INTEGRATIONS.md, "The policy"): :class:`LoginPolicy` puts a
:class:`~credcheck.contrib.policy.Guard` in an app that has Starlette's ``SessionMiddleware``. Its views call
``await policy.check(...)`` (sign-up, change, reset), ``await policy.login(request, ...)`` (after the password
was verified: throttled; a required change flags the session) and ``policy.password_changed(...)``; the policy
itself is the dependency that keeps a flagged session on the change path::

    policy = LoginPolicy(guard, change_path="/password")
    app = FastAPI(dependencies=[Depends(policy)])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, TypeVar

from fastapi import HTTPException, Request

from .._frames import async_entry_point
from ._guard import Decision, Guard
from ._pairs import shared_pair_check
from ._passwords import Source, shared_check
from ._rules import PairRule, PasswordRule, Rule
from ._table import Stage
from ._verdicts import CheckResult, PairCheckResult

__all__ = ["STATUS_CODE", "LoginPolicy", "PairCheck", "PasswordCheck"]

#: The status of a refused password: FastAPI's own for a request whose fields do not validate.
STATUS_CODE: Final = 422

_D = TypeVar("_D", bound="_Dependency")


class _Dependency(Rule):
    """What both checks share: ``Depends(check)`` gives the view the check, and a refusal is FastAPI's 422."""

    field: str
    #: The ``type`` of the 422 for a leak.
    compromised_type: str

    def __call__(self: _D) -> _D:
        return self

    def _raise_for(self, result: CheckResult | PairCheckResult) -> None:
        message = self.refusal(result)
        if message is not None:
            kind = "password_unchecked" if result.unchecked else self.compromised_type
            raise HTTPException(STATUS_CODE, detail=[{"loc": ["body", self.field], "msg": message, "type": kind}])


class PasswordCheck(_Dependency, PasswordRule):
    """A password check for FastAPI: ``Depends(PasswordCheck(...))`` gives the view this object.

    ``PasswordCheck(source=None, *, field="password", min_count=None, on_error=None, fallback=None,
    timeout=None, message=None, unchecked_message=None, **options)``: ``field`` names the request field in
    the 422's ``loc``; ``message`` and ``unchecked_message`` replace the default messages; the rest are the
    settings of the other integrations.
    """

    compromised_type = "password_compromised"

    def __init__(self, source: Source | None = None, *, field: str = "password", **settings: Any) -> None:
        super().__init__(source, **settings)
        self.field = field

    @async_entry_point
    async def check(self, password: str) -> CheckResult:
        """What the configured source (or the failure policy) says about ``password``."""
        return await shared_check(self.options).acheck(password)

    @async_entry_point
    async def validate(self, password: str) -> CheckResult:
        """Raise ``HTTPException(422)`` for a leaked password, or one that could not be checked under "reject";
        otherwise return the result."""
        result = await self.check(password)
        self._raise_for(result)
        return result


class PairCheck(_Dependency, PairRule):
    """A username and password pair check for FastAPI: ``Depends(PairCheck(source=...))`` gives the view this object.

    ``field``, ``message`` and ``unchecked_message`` as for :class:`PasswordCheck`; the other options are
    :class:`~credcheck.contrib._pairs.PairCompromiseCheck`'s (``source``: the pair service's URL, or a pair
    store with ``key``; ``on_error``, ``fallback``, ``fallback_key``, ``timeout``, ``public_key``...).
    """

    compromised_type = "pair_compromised"

    def __init__(self, *, field: str = "password", **settings: Any) -> None:
        if settings.get("source") is None:
            raise ValueError("a pair check needs a source: a pair service URL or a pair store path")
        super().__init__(**settings)
        self.field = field

    @async_entry_point
    async def check(self, username: str, password: str) -> PairCheckResult:
        """What the pair source (or the failure policy) says about this username with this password."""
        return await shared_pair_check(self.options).acheck(username, password)

    @async_entry_point
    async def validate(self, username: str, password: str) -> PairCheckResult:
        """Raise ``HTTPException(422)`` for a pair that leaked (exact or similar), or that could not be checked
        under "reject" (sign-up, password change); otherwise return the result."""
        result = await self.check(username, password)
        self._raise_for(result)
        return result


class LoginPolicy:
    """The policy in a FastAPI app (see the module docs): ``LoginPolicy(guard, change_path="/password")``.

    As a dependency (``Depends(policy)``, on the app or a router) it sends a flagged session to ``change_path``
    — a 303 for a browser's GET, a 403 for anything else (``redirect=False``: always 403) — from every path
    but ``change_path`` and ``allowed_paths`` (log-out by default). It needs ``request.session`` (Starlette's
    ``SessionMiddleware``); without one no session is ever flagged.
    """

    def __init__(
        self, guard: Guard, *, change_path: str, allowed_paths: Iterable[str] = ("/logout",), redirect: bool = True
    ) -> None:
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a Guard, not {type(guard).__name__}")
        self.guard = guard
        self.change_path = change_path
        self.allowed_paths = frozenset(allowed_paths) | {change_path}
        self.redirect = redirect

    async def __call__(self, request: Request) -> None:
        session = request.scope.get("session")
        if session is None or request.url.path in self.allowed_paths or not self.guard.must_change(session):
            return
        if self.redirect and request.method in ("GET", "HEAD"):
            raise HTTPException(303, "change your password first", headers={"Location": self.change_path})
        raise HTTPException(403, "change your password first")

    @async_entry_point
    async def check(self, stage: Stage | str, username: str | None, password: str) -> Decision:
        """Decide for credentials being chosen (``"signup"``, ``"change"``, ``"reset"``)."""
        return await self.guard.acheck(stage, username, password)

    @async_entry_point
    async def login(self, request: Request, username: str, password: str) -> Decision:
        """Decide for a log-in whose password was verified (throttled); a required change flags the session."""
        decision = await self.guard.alogin(username, password)
        session = request.scope.get("session")
        if session is not None:
            self.guard.flag(session, decision)
        return decision

    def password_changed(self, username: str) -> None:
        """Record that the user's new password was saved: a forced change is over."""
        self.guard.password_changed(username)
