"""The password check the integrations share: passwords asked of a filter, a store or a range API under the
failure policy of :mod:`credcheck.contrib._policy`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

from .. import _args, _sources
from .._frames import async_entry_point, entry_point
from .._http.ranges import DEFAULT_BASE_URL
from .._sources import is_remote, source_label
from ..checker import Checker, RemoteChecker
from ..errors import CredcheckError
from ._policy import PolicyCheck, shared
from ._verdicts import CheckResult, Role

__all__ = ["DEFAULT_SOURCE", "CompromiseCheck", "shared_check"]

#: Where passwords are checked unless configured otherwise: the public Pwned Passwords range API.
DEFAULT_SOURCE: Final = DEFAULT_BASE_URL

Source = str | os.PathLike[str] | Checker


class CompromiseCheck(PolicyCheck[CheckResult]):
    """Checks passwords against one source, opened on first use, under the failure policy.

    ``source`` is what :func:`credcheck.open` accepts: a filter file, a store path or a range API URL
    (default: the public Pwned Passwords API), or a :class:`~credcheck.Checker` already open (used as it is,
    and left open by :meth:`close`: it is the caller's); so is ``fallback``. ``min_count``: a password counts
    as compromised only when the source has seen it at least that often (a filter must have been built with
    at least that threshold); it defaults to 1, or to the ``min_count`` of a checker given, which must agree
    with it. ``on_error`` is ``"reject"``, ``"allow"`` or ``"fallback"`` (see :mod:`credcheck.contrib._policy`);
    it defaults to ``"fallback"`` when a ``fallback`` source is given and to ``"reject"`` otherwise.
    ``timeout`` bounds, in seconds, how long one check may wait for a range API, retries included (it sets
    the client's per-request ``timeout`` and its ``deadline``); local sources ignore it. Other keyword
    options go to :func:`credcheck.open` for ``source`` as they are (``retries``, ``padding``, ``scheme``,
    ``session``, ``verify``...). The fallback is opened with ``min_count`` only.
    """

    _result = CheckResult
    _asked = "a password"
    _service = "range API"
    _fallback_kind = "a local filter or store path"

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
        self.check_settings(
            {"source": source, "fallback": fallback, "min_count": min_count, "on_error": on_error, "timeout": timeout}
        )
        if isinstance(source, Checker) and source_options:
            raise TypeError(
                f"options for opening a source do not apply to a Checker: {', '.join(sorted(source_options))}"
            )
        super().__init__(source, on_error=on_error, fallback=fallback, timeout=timeout, source_options=source_options)
        given = [
            (role, value) for role, value in (("source", source), ("fallback", fallback)) if isinstance(value, Checker)
        ]
        if min_count is None:
            min_count = given[0][1].min_count if given else 1
        for name, checker in given:
            if checker.min_count != min_count:
                raise ValueError(f"the {name} checker answers min_count={checker.min_count}, not {min_count}")
        self.min_count = min_count
        for role in self._roles():
            if isinstance(self._target(role), Checker):
                self._given[role] = self._target(role)
        for role in self._roles():
            self._probe(role)

    @classmethod
    def check_settings(cls, config: Mapping[str, Any]) -> None:
        super().check_settings(config)
        min_count = config.get("min_count")
        if min_count is not None:
            _args.positive_int("min_count", min_count)

    @classmethod
    def _check_source(cls, name: str, value: object) -> None:
        if isinstance(value, Checker):
            return
        if not isinstance(value, str | os.PathLike):
            raise TypeError(f"{name} must be a path, an http(s):// URL or a Checker, not {type(value).__name__}")
        if not os.fspath(value):
            raise ValueError(f"{name} must not be empty")

    def _probe(self, role: Role) -> None:
        """Open a local source now, so that one that exists but could never answer is refused at set-up.

        A filter keeps no counts, so it cannot answer a ``min_count`` above the one it was built with; found
        only when the fallback is first needed, that would turn an outage into an error on every check. A
        file that is missing or unreadable now is left to the check (it may appear later, and the failure
        policy handles it then). What opens is kept: the check uses it.
        """
        target = self._target(role)
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
        """Check ``password`` against the source, applying the failure policy if the source cannot answer."""
        return self._check((password,))

    @async_entry_point
    async def acheck(self, password: str | bytes) -> CheckResult:
        """:meth:`check` from async code: a range API is asked over httpx, a local source inline."""
        return await self._acheck((password,))

    def _open(self, role: Role) -> Checker:
        options = self._bounded(self.source, self.source_options) if role == "source" else {}  # fallback: min_count
        return _sources.open(self._target(role), min_count=self.min_count, **options)

    def _open_async(self) -> Any:
        return _sources.open_async(
            self.source, min_count=self.min_count, **self._bounded(self.source, self.source_options)
        )

    def _blocks(self) -> bool:
        # A filter or a store answers in microseconds; a sync checker of a range API given as the source does not.
        return isinstance(self.source, RemoteChecker)

    def _details(self) -> str:
        return f" min_count={self.min_count}"


def shared_check(config: Mapping[str, Any]) -> CompromiseCheck:
    """Return this process's :class:`CompromiseCheck` for ``config``, making it on first use."""
    return shared(CompromiseCheck, config)
