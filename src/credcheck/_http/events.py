"""What a flow and its driver tell each other: :class:`Request` and :class:`Wait` out, a :class:`Response`, a
:class:`Failure` or :data:`DEADLINE_PASSED` back (as h11's events: values, never sockets)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Mapping
from typing import Final, TypeVar

from ..errors import RemoteErrorCode
from .options import Timeout

__all__ = [
    "DEADLINE_PASSED",
    "DeadlinePassed",
    "Failure",
    "Reply",
    "Request",
    "Response",
    "Wait",
    "bad_response",
    "run",
]

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """Send ``method url`` with ``headers`` (and ``body``, for a POST): ``timeout`` per connect and per read,
    and give up at ``deadline`` (on the flow's clock; ``remaining`` seconds from when it was yielded), following
    no redirect."""

    url: str
    headers: Mapping[str, str]
    timeout: Timeout
    deadline: float
    remaining: float
    method: str = "GET"
    body: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """Sleep this many seconds, then send ``None``.

    ``asked`` is true when the server asked for the wait (a 429 or 5xx with ``Retry-After``): it then holds
    for every request to that server, so a driver that runs many flows against it at once pauses them all.
    """

    seconds: float
    asked: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """What came back: the status, the headers and, for a 200 only, the whole decoded body."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """The exchange went wrong before a usable response: ``detail`` says how (never with the URL), ``code`` and
    ``retryable`` classify it, ``cause`` is the driver's exception (chained to the error raised)."""

    code: RemoteErrorCode
    detail: str
    retryable: bool
    cause: BaseException | None = None


class DeadlinePassed:
    """The type of :data:`DEADLINE_PASSED`, its one value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEADLINE_PASSED"


#: The overall deadline passed during the exchange (the driver shut the socket): whatever arrived is not whole.
DEADLINE_PASSED: Final = DeadlinePassed()

#: What a driver sends a flow: after a Request, what came back; after a Wait, None.
Reply = Response | Failure | DeadlinePassed | None


def bad_response(detail: str) -> Failure:
    """The Failure of a body or response that cannot be used (not retried)."""
    return Failure(RemoteErrorCode.BAD_RESPONSE, detail, retryable=False)


def run(
    flow: Generator[Request | Wait, Reply, _T], exchange: Callable[[Request], Reply], wait: Callable[[Wait], None]
) -> _T:
    """Run a flow to its end, as a blocking driver does: ``wait`` out its Waits, answer each Request with what
    ``exchange`` says came back; return the flow's value or raise its error. (The I/O is the driver's: this
    loop only hands events over.)"""
    try:
        event = next(flow)
        while True:
            if isinstance(event, Wait):
                wait(event)
                event = flow.send(None)
            else:
                event = flow.send(exchange(event))
    except StopIteration as done:
        value: _T = done.value
        return value
