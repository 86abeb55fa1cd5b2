"""The pair check the integrations share: a (username, password) pair asked of a pair source under the failure
policy of :mod:`credcheck.contrib._policy`.

:class:`PairCompromiseCheck` is :class:`~credcheck.contrib._passwords.CompromiseCheck` for a username and password
together: it opens a pair service (an ``http(s)://`` URL; ``public_key`` pins its key) or a local pair store
(with ``key``) on first use and applies one of the same policies when it cannot answer — ``"reject"``
(refused as unchecked), ``"allow"`` (accepted unchecked, an error logged on ``credcheck.contrib``) or
``"fallback"`` (asked of ``fallback``, another pair source, with ``fallback_key`` when it is a store). Logs
name the source and the kind of failure, never a username, a password or a bucket.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .. import _sources
from .._frames import async_entry_point, entry_point
from .._sources import is_remote, source_label
from ._policy import PolicyCheck, shared
from ._verdicts import PairCheckResult, Role

__all__ = ["PairCompromiseCheck", "shared_pair_check"]

PairSource = str | os.PathLike[str]


class PairCompromiseCheck(PolicyCheck[PairCheckResult]):
    """Checks (username, password) pairs against one pair source, opened on first use, under a failure policy.

    ``source``: a pair service's ``http(s)://`` base URL or a pair store path (then ``key``: its key file).
    ``on_error``: ``"reject"`` (the default without a fallback), ``"allow"`` or ``"fallback"`` (the default with
    one). ``timeout`` bounds one check against a service, retries included. Other options go to
    :func:`credcheck.open_pairs` for a service ``source`` (``public_key``, ``retries``, ``session``...); a
    store takes ``verify`` of them. From async code (:meth:`acheck`) a service is asked over httpx and a store,
    which stretches, in a worker thread.
    """

    _result = PairCheckResult
    _asked = "a log-in pair"
    _service = "pair service"
    _fallback_kind = "another pair service URL or pair store path"

    def __init__(
        self,
        source: PairSource,
        *,
        key: PairSource | None = None,
        on_error: str | None = None,
        fallback: PairSource | None = None,
        fallback_key: PairSource | None = None,
        timeout: float | None = None,
        **source_options: Any,
    ) -> None:
        if source is None:
            raise ValueError("a pair check needs a source: a pair service URL or a pair store path")
        self.check_settings({"source": source, "fallback": fallback, "on_error": on_error, "timeout": timeout})
        for role, target, its_key in (("source", source, key), ("fallback", fallback, fallback_key)):
            if target is not None and not is_remote(target) and its_key is None:
                raise ValueError(f"the {role} {source_label(target)} is a pair store: give its key file too")
        super().__init__(source, on_error=on_error, fallback=fallback, timeout=timeout, source_options=source_options)
        self.key = key
        self.fallback_key = fallback_key

    @classmethod
    def _check_source(cls, name: str, value: object) -> None:
        if not isinstance(value, str | os.PathLike) or not os.fspath(value):
            raise TypeError(f"{name} must be a pair service URL or a pair store path, not {value!r}")

    @entry_point
    def check(self, username: str, password: str) -> PairCheckResult:
        """Check the pair, applying the failure policy if the source cannot answer."""
        return self._check((username, password))

    @async_entry_point
    async def acheck(self, username: str, password: str) -> PairCheckResult:
        """:meth:`check` from async code: a pair service is asked over httpx, a pair store in a worker thread."""
        return await self._acheck((username, password))

    def _open(self, role: Role) -> Any:
        target = self._target(role)
        options: dict[str, Any] = dict(self.source_options) if role == "source" else {}
        if is_remote(target):
            return _sources.open_pairs(target, **self._bounded(target, options))
        key = self.key if role == "source" else self.fallback_key
        verify = {name: value for name, value in options.items() if name == "verify"}
        return _sources.open_pairs(target, key=key, **verify)

    def _open_async(self) -> Any:
        return _sources.open_async_pairs(self.source, **self._bounded(self.source, self.source_options))

    def _blocks(self) -> bool:
        return True  # a pair store stretches the password


def shared_pair_check(config: Mapping[str, Any]) -> PairCompromiseCheck:
    """This process's :class:`PairCompromiseCheck` for ``config`` (one open source and connection pool per
    configuration; :func:`credcheck.contrib._policy.close_shared` closes them with the others)."""
    return shared(PairCompromiseCheck, config)
