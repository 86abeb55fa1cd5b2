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
:class:`~credcheck.contrib._policy.CheckResult` for a view that decides itself.

:class:`PairCheck` does the same for a username and password pair against a pair service
(``credcheck serve --pairs``); at log-in, use :meth:`PairCheck.check` and ask for a password change rather
than refusing the log-in. Checks are shared per configuration in the process, as in the other integrations;
``credcheck.contrib._policy.close_shared()`` closes them.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import HTTPException

from .._frames import async_entry_point
from . import _pairs, _policy
from ._async import AsyncCompromiseCheck, AsyncPairCheck
from ._pairs import PairCheckResult
from ._policy import PAIR_COMPROMISED, UNCHECKED, CheckResult

__all__ = ["STATUS_CODE", "PairCheck", "PasswordCheck"]

#: The status of a refused password: FastAPI's own for a request whose fields do not validate.
STATUS_CODE: Final = 422


def _refusal(field: str, message: str, kind: str) -> HTTPException:
    return HTTPException(STATUS_CODE, detail=[{"loc": ["body", field], "msg": message, "type": kind}])


class PasswordCheck:
    """A password check for FastAPI: ``Depends(PasswordCheck(...))`` gives the view this object.

    ``field`` names the request field in the 422's ``loc``; ``message`` and ``unchecked_message`` replace the
    default messages.
    """

    def __init__(
        self,
        source: _policy.Source | None = None,
        *,
        min_count: int | None = None,
        on_error: str | None = None,
        fallback: _policy.Source | None = None,
        timeout: float | None = None,
        field: str = "password",
        message: str | None = None,
        unchecked_message: str | None = None,
        **options: Any,
    ) -> None:
        self.config = _policy.configuration(
            options,
            {"source": source, "min_count": min_count, "on_error": on_error, "fallback": fallback, "timeout": timeout},
        )
        _policy.check_values(self.config)
        self.field = field
        self.message = message
        self.unchecked_message = unchecked_message

    def __call__(self) -> PasswordCheck:
        return self

    @async_entry_point
    async def check(self, password: str) -> CheckResult:
        """What the configured source (or the failure policy) says about ``password``."""
        return await _policy.shared(AsyncCompromiseCheck, self.config).acheck(password)

    @async_entry_point
    async def validate(self, password: str) -> CheckResult:
        """Raise ``HTTPException(422)`` for a leaked password, or one that could not be checked under "reject";
        otherwise return the result."""
        result = await self.check(password)
        if result.unchecked:
            raise _refusal(self.field, self.unchecked_message or UNCHECKED, "password_unchecked")
        if result.compromised:
            text = self.message or _policy.message(result)
            assert text is not None
            raise _refusal(self.field, text, "password_compromised")
        return result

    def __repr__(self) -> str:
        shown = {**self.config}
        for name in ("source", "fallback"):
            if name in shown:
                shown[name] = _policy.source_label(shown[name])
        return f"<PasswordCheck {shown!r}>"


class PairCheck:
    """A username and password pair check for FastAPI: ``Depends(PairCheck(source=...))`` gives the view this object.

    The options are :class:`~credcheck.contrib._pairs.PairCheck`'s (``source``: the pair service's URL, or a pair
    store with ``key``; ``on_error``, ``fallback``, ``fallback_key``, ``timeout``, ``public_key``...).
    """

    def __init__(
        self,
        *,
        field: str = "password",
        message: str | None = None,
        unchecked_message: str | None = None,
        **options: Any,
    ) -> None:
        if options.get("source") is None:
            raise ValueError("a pair check needs a source: a pair service URL or a pair store path")
        _pairs.check_pair_values(options)
        self.config = options
        self.field = field
        self.message = message
        self.unchecked_message = unchecked_message

    def __call__(self) -> PairCheck:
        return self

    @async_entry_point
    async def check(self, username: str, password: str) -> PairCheckResult:
        """What the pair source (or the failure policy) says about this username with this password."""
        return await _policy.shared(AsyncPairCheck, self.config).acheck(username, password)

    @async_entry_point
    async def validate(self, username: str, password: str) -> PairCheckResult:
        """Raise ``HTTPException(422)`` for a pair that leaked (exact or similar), or that could not be checked
        under "reject" (sign-up, password change); otherwise return the result."""
        result = await self.check(username, password)
        if result.unchecked:
            raise _refusal(self.field, self.unchecked_message or UNCHECKED, "password_unchecked")
        if result.compromised:
            raise _refusal(self.field, self.message or PAIR_COMPROMISED, "pair_compromised")
        return result

    def __repr__(self) -> str:
        shown = {**self.config}
        for name in ("source", "fallback"):
            if name in shown:
                shown[name] = _policy.source_label(shown[name])
        return f"<PairCheck {shown!r}>"
