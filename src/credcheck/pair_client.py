"""Pair checks against a pair service (``credcheck serve --pairs``): the same :class:`PairChecker` API, remotely.

:class:`RemotePairChecker` is :class:`~credcheck.client.FlowDriver` (the range client's requests driver:
the session, the deadline watchdog, body framing, transport errors) running the flows of
:class:`~credcheck.pairs._wire.PairProtocol`. What leaves the process per check is the bucket (the top bits
of a hash of the canonical username) and one or two blinded elements, fresh each time; the server learns
neither the username nor the password, nor the answer. Every answer is verified (the proof, with the
pinned key) before it is read, and anything that cannot be verified is a
:class:`~credcheck.errors.RemoteError`, never NOT_FOUND.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import _args
from ._inflight import Gate
from ._protocol import redacted
from .client import FlowDriver
from .pairs._wire import DEFAULT_MAX_STRETCH_MEMORY, PairConfig, pair_protocol
from .pairs.checker import STATUS_BY_CODE, PairChecker, PairExposure, PairStatus
from .pairs.entry import Status

if TYPE_CHECKING:
    import requests

__all__ = ["RemotePairChecker"]


class RemotePairChecker(PairChecker):
    """Checks username/password pairs against the pair service at ``base_url`` (its root).

    ``public_key`` (32 bytes or 64 hex digits) pins the server's key; without it the key in the first config
    is kept for the checker's life. ``timeout``, ``deadline``, ``retries``, ``backoff_factor``, ``session``,
    ``pool_size`` and ``user_agent`` mean what they mean for :class:`~credcheck.client.RangeClient`;
    ``max_stretch_memory`` refuses a server whose stretch would need more memory than that per check.
    """

    def __init__(
        self,
        base_url: str,
        *,
        public_key: bytes | str | None = None,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (3.0, 3.0),
        deadline: float = 5.0,
        retries: int = 3,
        backoff_factor: float = 0.2,
        user_agent: str | None = None,
        pool_size: int = 10,
        max_stretch_memory: int = DEFAULT_MAX_STRETCH_MEMORY,
    ) -> None:
        self._protocol = pair_protocol(
            base_url,
            public_key=public_key,
            timeout=timeout,
            deadline=deadline,
            retries=retries,
            backoff_factor=backoff_factor,
            user_agent=user_agent,
            max_stretch_memory=max_stretch_memory,
        )
        self.base_url = self._protocol.base_url
        _args.positive_int("pool_size", pool_size)
        self.driver = FlowDriver(session, pool_size)
        self._gate = Gate(type(self).__name__)

    @property
    def config(self) -> PairConfig:
        """The server's config (fetched now if no check has fetched it yet)."""
        with self._gate:
            return self.driver._drive(self._protocol.get_config(self.driver._clock))

    @property
    def key_id(self) -> bytes:
        """The id of the server's (pinned) key: 8 bytes."""
        return self.config.key_id

    def _check_canonical(self, canonical: bytes, sha1: bytes) -> PairExposure:
        found: Status | None = self.driver._drive(self._protocol.check(canonical, sha1, self.driver._clock))
        return PairExposure(PairStatus.NOT_FOUND if found is None else STATUS_BY_CODE[found])

    def _release(self) -> None:
        """Close the connection pool if this checker created its session (a session passed in stays open)."""
        if self.driver._owns_session:
            self.driver.session.close()

    def __repr__(self) -> str:
        config = self._protocol.config
        key = f" key_id={config.key_id.hex()}" if config is not None else ""
        return f"<RemotePairChecker {redacted(self.base_url)!r}{key}>"


def open_remote_pairs(url: str | os.PathLike[str], **options: object) -> RemotePairChecker:
    """A :class:`RemotePairChecker` on the pair service at ``url`` (``open_pairs("https://…")`` calls it)."""
    return RemotePairChecker(os.fspath(url), **options)  # type: ignore[arg-type]
