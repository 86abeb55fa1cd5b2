"""Retrying: what every flow shares around its requests — the per-operation timeouts, the deadlines, retries,
their backoff and ``Retry-After`` — and :class:`Failed`, an attempt that gave no answer."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Callable, Generator, Mapping
from typing import TypeVar

from ..errors import RemoteError, RemoteErrorCode
from .events import DeadlinePassed, Failure, Reply, Request, Response, Wait
from .options import ClientOptions, Timeout

__all__ = ["Failed", "Retrying", "retry_after"]

logger = logging.getLogger("credcheck.client")

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class Failed:
    """One attempt's outcome when it gave no answer: the error, whether to try again, and after how long.

    ``expired``: the attempt ran out of time (the driver answered DEADLINE_PASSED); it is retried only when
    that was a per-attempt deadline and the call's own deadline is still ahead.
    """

    error: RemoteError
    retryable: bool
    retry_after: float | None = None
    cause: BaseException | None = None
    expired: bool = False


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The delay a 429/503 asks for, in seconds (the delta-seconds form only; an HTTP date is ignored)."""
    value = headers.get("Retry-After", "").strip()
    return float(value) if value.isascii() and value.isdigit() else None


def _attempts(count: int) -> str:
    return "after 1 attempt" if count == 1 else f"after {count} attempts"


class Retrying:
    """What every flow shares: per-operation timeouts, the deadlines, retries and their backoff.

    :meth:`run` repeats an attempt (a sub-flow that returns an answer or a :class:`Failed`) while the failure
    is retryable, there are retries left and the wait ends before the deadline; :meth:`send` is one request
    of an attempt, with its failures classified. ``label`` names what is asked in messages and debug logs
    ("range ABCDE", "pair query"), never a secret.

    The settings are the client's :class:`~credcheck._http.options.ClientOptions`. The wait before a retry is the
    server's ``Retry-After`` (cut to ``max_retry_after``), else ``backoff_factor * 2**n`` (at most
    ``max_backoff``; with ``jitter``, scaled by ``0.5 + uniform() / 2`` so that many clients do not retry in
    step; ``uniform`` gives numbers in [0, 1)). ``deadline`` bounds a whole call, waits included (None: no
    bound); ``attempt_deadline``, if given, bounds each attempt as well, and an attempt that runs out of it is
    retried like a timeout.
    """

    def __init__(self, options: ClientOptions, *, uniform: Callable[[], float] = random.random) -> None:
        self.options = options
        self.timeout = options.timeout
        self.deadline = math.inf if options.deadline is None else options.deadline
        self.attempt_deadline = options.attempt_deadline
        self.retries = options.retries
        self.jitter = uniform if options.jitter else None

    def run(
        self, attempt: Callable[[float], Generator[Request, Reply, _T | Failed]], clock: Callable[[], float], label: str
    ) -> Generator[Request | Wait, Reply, _T]:
        """Run ``attempt(deadline)`` until it answers; raise its RemoteError when no retry is left."""
        deadline = clock() + self.deadline
        count = 0
        while True:
            count += 1
            bound = deadline if self.attempt_deadline is None else min(deadline, clock() + self.attempt_deadline)
            outcome = yield from attempt(bound)
            if not isinstance(outcome, Failed):
                return outcome
            error, retryable = outcome.error, outcome.retryable
            if outcome.expired and bound < deadline:
                assert self.attempt_deadline is not None
                error = RemoteError(
                    f"{label}: no complete answer within the {self.attempt_deadline:g} s deadline of an attempt",
                    RemoteErrorCode.TIMEOUT,
                )
                retryable = True
            if not retryable:
                raise error from outcome.cause
            if count > self.retries:
                raise RemoteError(f"{error} ({_attempts(count)})", error.code) from outcome.cause
            asked = outcome.retry_after is not None
            if outcome.retry_after is not None:
                wait = min(outcome.retry_after, self.options.max_retry_after)
            else:
                wait = min(self.options.backoff_factor * 2 ** (count - 1), self.options.max_backoff)
                if self.jitter is not None:
                    wait *= 0.5 + self.jitter() / 2
            if clock() + wait >= deadline:
                raise RemoteError(
                    f"{error} ({_attempts(count)}; waiting {wait:g} s more would pass "
                    f"the {self.deadline:g} s deadline)",
                    error.code,
                ) from outcome.cause
            logger.debug("%s: %s; retrying in %.2f s", label, error.code.value, wait)
            yield Wait(wait, asked)

    def send(
        self,
        url: str,
        headers: Mapping[str, str],
        deadline: float,
        clock: Callable[[], float],
        label: str,
        *,
        method: str = "GET",
        body: bytes | None = None,
    ) -> Generator[Request, Reply, Response | Failed]:
        """Yield one request bounded by what is left of ``deadline``; return its Response or the Failed it was."""
        remaining = deadline - clock()
        if remaining <= 0:
            return Failed(self.timed_out(label), retryable=False, expired=True)
        timeout = Timeout(min(self.timeout.connect, remaining), min(self.timeout.read, remaining))
        logger.debug("%s: %s", label, method)
        reply = yield Request(url, headers, timeout, deadline, remaining, method, body)
        if isinstance(reply, DeadlinePassed):
            return Failed(self.timed_out(label), retryable=False, expired=True)
        if isinstance(reply, Failure):
            return Failed(RemoteError(f"{label}: {reply.detail}", reply.code), reply.retryable, cause=reply.cause)
        if not isinstance(reply, Response):
            raise TypeError(f"a flow is sent a Response, a Failure or DEADLINE_PASSED, not {reply!r}")
        logger.debug("%s: HTTP %d", label, reply.status)
        return reply

    @staticmethod
    def status_failure(response: Response, label: str, hint: str = "") -> Failed:
        """The Failed of a status that is no answer: 429 and 5xx are retried (after any Retry-After)."""
        status = response.status
        error = RemoteError(f"{label}: HTTP {status}{hint}", RemoteErrorCode.HTTP_STATUS)
        if status == 429 or 500 <= status <= 599:
            return Failed(error, retryable=True, retry_after=retry_after(response.headers))
        return Failed(error, retryable=False)

    def timed_out(self, label: str) -> RemoteError:
        """The error of a call that ran out of its deadline."""
        return RemoteError(
            f"{label}: no complete answer within the {self.deadline:g} s deadline", RemoteErrorCode.TIMEOUT
        )
