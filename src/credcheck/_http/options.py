"""The options of every client, as one frozen object: :class:`ClientOptions` (and its :class:`Timeout`).

As httpx's ``Timeout``/``Limits`` and argon2-cffi's ``Parameters``: a client's settings are checked once, when
the object is made, and then travel inward as one value — to the flows (``Retrying``, the range and pair
protocols) and to every driver (requests, httpx, http.client). The public entry points still take keywords
for people (``RangeClient(timeout=1.5)``, ``credcheck.open(url, retries=0)``); :meth:`ClientOptions.of` turns
them into the object, and :class:`RangeKeywords` / :class:`ClientKeywords` spell their types once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, TypedDict

from .. import _args
from .._version import __version__

if TYPE_CHECKING:  # ssl is imported only when a context is given: `import credcheck` stays light
    import ssl

__all__ = [
    "DEFAULT_CACHE_ENTRIES",
    "ClientKeywords",
    "ClientOptions",
    "RangeKeywords",
    "Timeout",
    "default_user_agent",
]

#: The ranges ``cache=True`` keeps.
DEFAULT_CACHE_ENTRIES: Final = 128


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class Timeout:
    """Seconds to wait for a connection (``connect``) and for each read (``read``; the same as ``connect`` if not
    given). A deadline bounds a whole call; these bound each operation inside it."""

    connect: float
    read: float

    def __init__(self, connect: float, read: float | None = None) -> None:
        object.__setattr__(self, "connect", _args.positive_seconds("timeout", connect))
        object.__setattr__(self, "read", self.connect if read is None else _args.positive_seconds("timeout", read))

    @classmethod
    def of(cls, value: float | tuple[float, float] | Timeout) -> Timeout:
        """A Timeout from what people write: one number for both, a ``(connect, read)`` pair, or a Timeout."""
        if isinstance(value, Timeout):
            return value
        if isinstance(value, tuple):
            if len(value) != 2:
                raise ValueError("timeout must be a number or a (connect, read) pair")
            return cls(value[0], value[1])
        return cls(value)


class ClientKeywords(TypedDict, total=False):
    """The keywords a client's public entry point takes for its :class:`ClientOptions` (a pair service's)."""

    timeout: float | tuple[float, float] | Timeout
    deadline: float | None
    retries: int
    backoff_factor: float
    user_agent: str | None
    tls: ssl.SSLContext | None
    pool_size: int


class RangeKeywords(ClientKeywords, total=False):
    """The keywords of a range client: a pair service's, with padding and the cache."""

    padding: bool
    cache: bool | int


@dataclasses.dataclass(frozen=True, slots=True)
class ClientOptions:
    """How a client talks to a service: every setting checked when the object is made (a ValueError or
    TypeError naming the setting), then passed whole to the flows and the drivers.

    ``timeout`` bounds each connect and each read; ``deadline`` a whole call, retries and waits included (None:
    no bound, and then ``attempt_deadline`` must bound each attempt). A failure that may pass (a dropped
    connection, a timeout, a 5xx or 429) is tried ``retries`` more times, after the server's ``Retry-After``
    (at most ``max_retry_after``) or ``backoff_factor * 2**n`` seconds (at most ``max_backoff``; with
    ``jitter``, scaled by a random factor from 0.5 to 1), unless the wait would pass the deadline. ``padding``
    asks a range API to pad its answers; ``cache`` keeps that many parsed ranges (True: 128), honouring
    ``Cache-Control``. ``user_agent`` None is credcheck's own; ``tls`` is the context that verifies the server
    (None: the system's trust store); ``pool_size`` the connections a client keeps to the service.
    """

    timeout: Timeout = Timeout(3.0)
    deadline: float | None = 5.0
    attempt_deadline: float | None = None
    retries: int = 3
    backoff_factor: float = 0.2
    max_backoff: float = math.inf
    max_retry_after: float = math.inf
    jitter: bool = False
    padding: bool = True
    cache: int = 0
    user_agent: str | None = None
    tls: ssl.SSLContext | None = None
    pool_size: int = 10

    def __post_init__(self) -> None:
        # What people write is taken as it is meant: a number or a pair for the timeout, a bool for the cache.
        set_field = object.__setattr__
        set_field(self, "timeout", Timeout.of(self.timeout))
        if isinstance(self.cache, bool):
            set_field(self, "cache", DEFAULT_CACHE_ENTRIES if self.cache else 0)
        set_field(self, "padding", bool(self.padding))
        set_field(self, "jitter", bool(self.jitter))
        if self.deadline is None and self.attempt_deadline is None:
            raise ValueError("without a deadline for a whole call, each attempt needs one (attempt_deadline)")
        if self.deadline is not None:
            _args.positive_seconds("deadline", self.deadline)
        if self.attempt_deadline is not None:
            _args.positive_seconds("deadline", self.attempt_deadline)
        _args.non_negative_int("retries", self.retries)
        _args.non_negative_number("backoff_factor", self.backoff_factor)
        for name in ("max_backoff", "max_retry_after"):
            value = getattr(self, name)
            if value != math.inf:
                _args.non_negative_number(name, value)
        if not isinstance(self.cache, int) or self.cache < 0:
            raise ValueError(f"cache must be a bool or a non-negative number of entries, got {self.cache!r}")
        if self.user_agent is not None and not isinstance(self.user_agent, str):
            raise TypeError(f"user_agent must be str, not {type(self.user_agent).__name__}")
        if self.tls is not None:
            import ssl

            if not isinstance(self.tls, ssl.SSLContext):
                raise TypeError(f"tls must be an ssl.SSLContext, not {type(self.tls).__name__}")
        _args.positive_int("pool_size", self.pool_size)

    @classmethod
    def of(
        cls,
        options: ClientOptions | None,
        keywords: Mapping[str, object],
        accepted: type[ClientKeywords] = RangeKeywords,
    ) -> ClientOptions:
        """``options`` (or the defaults) with the keywords a person gave on top, each checked; a keyword that
        ``accepted`` does not name is a TypeError, as an unknown keyword argument is."""
        unknown = set(keywords) - accepted.__optional_keys__  # type: ignore[attr-defined]
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        base = cls() if options is None else options
        if not isinstance(base, ClientOptions):
            raise TypeError(f"options must be a ClientOptions, not {type(base).__name__}")
        return dataclasses.replace(base, **keywords) if keywords else base  # type: ignore[arg-type]

    def agent(self, what: str) -> str:
        """The User-Agent to send: the one given, else credcheck's own naming ``what`` the client is."""
        return default_user_agent(what) if self.user_agent is None else self.user_agent


@functools.cache
def default_user_agent(what: str = "k-anonymity range client") -> str:
    """``credcheck/VERSION (what)``."""
    return f"credcheck/{__version__} ({what})"
