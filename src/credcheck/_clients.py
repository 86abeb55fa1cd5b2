"""What every client is around its flow, sync or async: the options, the protocol that decides, the driver that
sends (as httpx's ``BaseClient`` under ``Client`` and ``AsyncClient``).

:class:`FlowClient` is that, for any protocol; :class:`RangeClientBase` is :class:`~credcheck.client.RangeClient`
and :class:`~credcheck.aio.AsyncRangeClient` but for their driver and the methods that run it;
:class:`PairClientBase` the same for the pair clients.
Each holds its :class:`~credcheck._http.options.ClientOptions` (one object, checked when made), builds its
protocol before its driver (a bad URL leaves no connection pool behind), and gives the protocol the lock its
shared state needs: the flows of one client may run in several threads at once (a batch's prefixes, the async
pair client's steps in worker threads), and the protocol itself holds no thread primitive.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from ._http.options import ClientKeywords, ClientOptions, RangeKeywords
from ._http.ranges import RangeProtocol
from ._http.urls import redacted
from .pairs._wire import DEFAULT_MAX_STRETCH_MEMORY, PairProtocol

__all__ = ["FlowClient", "PairClientBase", "RangeClientBase"]

D = TypeVar("D")
P = TypeVar("P", RangeProtocol, PairProtocol)


class FlowClient(abc.ABC, Generic[P, D]):
    """A client without its driver loop: ``options`` (those given, with a person's ``keywords`` on top),
    ``protocol`` (the flows and the state they share) and ``driver`` (made by ``connect`` from the options,
    after the protocol: a bad URL leaves no connection pool behind)."""

    options: ClientOptions
    protocol: P
    driver: D

    def __init__(
        self,
        base_url: str,
        options: ClientOptions | None,
        keywords: Mapping[str, Any],
        connect: Callable[[ClientOptions], D],
    ) -> None:
        self.options, self.protocol = self._start(base_url, options, dict(keywords))
        self.driver = connect(self.options)

    @staticmethod
    @abc.abstractmethod
    def _start(base_url: str, options: ClientOptions | None, keywords: dict[str, Any]) -> tuple[ClientOptions, P]:
        """The options and the protocol of a client of this kind."""

    @property
    def base_url(self) -> str:
        """The service's root."""
        return self.protocol.base_url


class RangeClientBase(FlowClient[RangeProtocol, D]):
    """A range client without its driver loop (``GET {base_url}/range/{PREFIX}`` must answer)."""

    @staticmethod
    def _start(
        base_url: str, options: ClientOptions | None, keywords: dict[str, Any]
    ) -> tuple[ClientOptions, RangeProtocol]:
        settings = ClientOptions.of(options, keywords, RangeKeywords)
        return settings, RangeProtocol(base_url, settings, lock=threading.Lock())

    def __repr__(self) -> str:
        options = self.options
        return (
            f"<{type(self).__name__} {redacted(self.base_url)!r} padding={options.padding} "
            f"cache={options.cache or False}>"
        )


class PairClientBase(FlowClient[PairProtocol, D]):
    """A pair client without its driver loop. Of the keywords (``pairs._wire.PairKeywords``), ``public_key``
    pins the service's key and ``max_stretch_memory`` bounds its stretch; the rest are options."""

    @staticmethod
    def _start(
        base_url: str, options: ClientOptions | None, keywords: dict[str, Any]
    ) -> tuple[ClientOptions, PairProtocol]:
        public_key = keywords.pop("public_key", None)
        max_stretch_memory = keywords.pop("max_stretch_memory", DEFAULT_MAX_STRETCH_MEMORY)
        settings = ClientOptions.of(options, keywords, ClientKeywords)
        protocol = PairProtocol(
            base_url, settings, lock=threading.Lock(), public_key=public_key, max_stretch_memory=max_stretch_memory
        )
        return settings, protocol

    def __repr__(self) -> str:
        config = self.protocol.config
        key = f" key_id={config.key_id.hex()}" if config is not None else ""
        return f"<{type(self).__name__} {redacted(self.base_url)!r}{key}>"
