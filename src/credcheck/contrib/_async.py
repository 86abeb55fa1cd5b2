"""The integrations' checks for async code: the same policies, a range API or pair service asked over httpx.

:class:`AsyncCompromiseCheck` is :class:`~credcheck.contrib._policy.CompromiseCheck` and
:class:`AsyncPairCheck` is :class:`~credcheck.contrib._pairs.PairCheck`, with one coroutine more each
(``acheck``): a remote source is asked through :mod:`credcheck.aio`, so the event loop is never blocked on the
network; what happens when it cannot answer is the sync class's own code (``_after_failure``), run in a worker
thread because a fallback may be a file or another service. A local source is asked as the sync check asks
it: a filter or a store answers in microseconds, inline; a pair store stretches, so in a worker thread. A
cancelled check waits for its worker thread before the cancellation goes on, and leaves no frame holding the
password. (An async checker is fetched and entered in one step of the loop, so :meth:`aclose` cannot close it
between the two; a sync source closed under a check is opened again for it by the sync check.)

An ``httpx.AsyncClient``'s connections belong to the event loop that opened them, so the async checker is
opened again when a check runs on another loop (an application that calls ``asyncio.run`` more than once).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .._frames import async_entry_point
from .._inflight import in_thread
from .._sources import is_remote
from ..checker import RemoteChecker
from ..errors import CredcheckError
from ._pairs import PairCheck, PairCheckResult
from ._policy import CheckResult, CompromiseCheck

__all__ = ["AsyncCompromiseCheck", "AsyncPairCheck"]


def _loop() -> object | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): one checker for the process
        return None


class _PerLoop:
    """One async checker per event loop: the latest loop's (one opened on a loop now gone is dropped)."""

    def __init__(self) -> None:
        self._loop: object | None = None
        self._checker: Any = None

    def get(self, open_checker: Any) -> Any:
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


def _remote(source: object) -> bool:
    return isinstance(source, str | os.PathLike) and is_remote(source)


class AsyncCompromiseCheck(CompromiseCheck):
    """:class:`CompromiseCheck` with :meth:`acheck`: a range API asked over httpx, the same failure policy."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._async = _PerLoop()

    @async_entry_point
    async def acheck(self, password: str | bytes) -> CheckResult:
        """Check ``password``, applying the failure policy if the source cannot answer (see the sync check)."""
        if not _remote(self.source):
            if isinstance(self.source, RemoteChecker):  # a sync checker given: its requests must not block the loop
                return await in_thread(self.check, password)
            return self.check(password)
        try:
            exposure = await self._async.get(self._open_async).check(password)
        except CredcheckError as error:
            return await in_thread(self._after_failure, password, error)
        return CheckResult._answered(exposure, "source")

    def _open_async(self) -> Any:
        from .._sources import open_async

        assert isinstance(self.source, str)
        return open_async(self.source, min_count=self.min_count, **self._source_options())

    async def aclose(self) -> None:
        """Close the async checker (on its own loop) and the sync sources; a later check opens them again."""
        await self._async.aclose()
        super().close()

    def close(self) -> None:
        """Close the sync sources and forget the async checker (its pool closes with its event loop)."""
        self._async.forget()
        super().close()


class AsyncPairCheck(PairCheck):
    """:class:`PairCheck` with :meth:`acheck`: a pair service asked over httpx, the same failure policy."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._async = _PerLoop()

    @async_entry_point
    async def acheck(self, username: str, password: str) -> PairCheckResult:
        """Check the pair, applying the failure policy if the source cannot answer."""
        if not _remote(self.source):
            return await in_thread(self.check, username, password)
        try:
            found = await self._async.get(self._open_async).check(username, password)
        except CredcheckError as error:
            return await in_thread(self._after_failure, username, password, error)
        return PairCheckResult(str(found.status.value), "source")

    def _open_async(self) -> Any:
        from .._sources import open_async_pairs

        options = dict(self.options)
        if self.timeout is not None:
            options.setdefault("timeout", self.timeout)
            options.setdefault("deadline", self.timeout)
        return open_async_pairs(self.source, **options)

    async def aclose(self) -> None:
        """Close the async checker (on its own loop) and what the sync check opened."""
        await self._async.aclose()
        super().close()

    def close(self) -> None:
        """Close what the sync check opened and forget the async checker."""
        self._async.forget()
        super().close()
