"""What every client is around its flow, sync or async: the options, the protocol that decides, the driver that
sends (as httpx's ``BaseClient`` under ``Client`` and ``AsyncClient``).

:class:`RangeClientBase` is :class:`~credcheck.client.RangeClient` and :class:`~credcheck.aio.AsyncRangeClient`
but for their driver and the one method that runs it; :class:`PairClientBase` the same for the pair clients.
Each holds its :class:`~credcheck._http.options.ClientOptions` (one object, checked when made), builds its
protocol before its driver (a bad URL leaves no connection pool behind), and gives the protocol the lock its
shared state needs: the flows of one client may run in several threads at once (a batch's prefixes, the async
pair client's steps in worker threads), and the protocol itself holds no thread primitive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from ._http.options import ClientOptions
from ._http.ranges import RangeProtocol
from ._http.urls import redacted
from .pairs._wire import DEFAULT_MAX_STRETCH_MEMORY, PairProtocol

__all__ = ["PairClientBase", "RangeClientBase"]

D = TypeVar("D")


class RangeClientBase(Generic[D]):
    """A range client without its driver loop: ``options``, ``protocol`` (the range flow and its cache) and
    ``driver`` (made by ``connect`` from the options)."""

    def __init__(self, base_url: str, options: ClientOptions, connect: Callable[[ClientOptions], D]) -> None:
        self.options = options
        self.protocol = RangeProtocol(base_url, options, lock=threading.Lock())
        self.driver = connect(options)

    @property
    def base_url(self) -> str:
        """The API's root (``GET {base_url}/range/{PREFIX}`` must answer)."""
        return self.protocol.base_url

    def __repr__(self) -> str:
        options = self.options
        return (
            f"<{type(self).__name__} {redacted(self.base_url)!r} padding={options.padding} "
            f"cache={options.cache or False}>"
        )


class PairClientBase(Generic[D]):
    """A pair client without its driver loop: ``options``, ``protocol`` (the pair flow and the config it keeps)
    and ``driver``; ``public_key`` pins the service's key, ``max_stretch_memory`` bounds its stretch."""

    def __init__(
        self,
        base_url: str,
        options: ClientOptions,
        connect: Callable[[ClientOptions], D],
        *,
        public_key: bytes | str | None = None,
        max_stretch_memory: int = DEFAULT_MAX_STRETCH_MEMORY,
    ) -> None:
        self.options = options
        self.protocol = PairProtocol(
            base_url, options, lock=threading.Lock(), public_key=public_key, max_stretch_memory=max_stretch_memory
        )
        self.driver = connect(options)

    @property
    def base_url(self) -> str:
        """The pair service's root."""
        return self.protocol.base_url

    def __repr__(self) -> str:
        config = self.protocol.config
        key = f" key_id={config.key_id.hex()}" if config is not None else ""
        return f"<{type(self).__name__} {redacted(self.base_url)!r}{key}>"
