"""The requests driver of the pair exchange: :class:`PairClient` asks a pair service (``credcheck serve --pairs``).

:class:`PairClient` is :class:`~credcheck.client.FlowDriver` (the range client's requests driver: the session,
the deadline watchdog, body framing, transport errors) running the flows of
:class:`~credcheck.pairs._wire.PairProtocol`; :class:`~credcheck.pairs.checker.RemotePairChecker` checks pairs
through it (``credcheck.open_pairs("https://…")`` makes both). What leaves the process per check is the bucket
(the top bits of a hash of the canonical username) and one or two blinded elements, fresh each time; the server
learns neither the username nor the password, nor the answer. Every answer is verified (the proof, with the
pinned key) before it is read, and anything that cannot be verified is a
:class:`~credcheck.errors.RemoteError`, never a "not found".
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ._clients import PairClientBase
from ._frames import entry_point
from .client import FlowDriver

if TYPE_CHECKING:
    import requests
    from typing_extensions import Unpack

    from ._http.options import ClientOptions
    from .pairs._entry import Status
    from .pairs._wire import PairConfig, PairKeywords

__all__ = ["PairClient"]


class PairClient(PairClientBase[FlowDriver]):
    """Asks the pair service at ``base_url`` (its root) over requests.

    ``public_key`` (32 bytes or 64 hex digits) pins the server's key; without it the key in the first config is
    kept for the client's life. The settings are ``options`` (a :class:`~credcheck.ClientOptions`; padding and
    the cache do not apply), with any keyword of its fields on top, as for :class:`~credcheck.client.RangeClient`;
    ``max_stretch_memory`` refuses a server whose stretch would need more memory than that per check.
    """

    def __init__(
        self,
        base_url: str,
        options: ClientOptions | None = None,
        *,
        session: requests.Session | None = None,
        **keywords: Unpack[PairKeywords],
    ) -> None:
        super().__init__(base_url, options, keywords, functools.partial(FlowDriver, session=session))

    def config(self) -> PairConfig:
        """The service's config: fetched on first use, then kept (a later one naming another key is refused)."""
        driver = self.driver
        return driver.drive(self.protocol.get_config(driver.clock))

    @entry_point  # the flow holds the canonical username and the password's hash
    def query(self, canonical: bytes, sha1: bytes) -> Status | None:
        """The status the service holds for a canonical username and a password's raw SHA-1, or None."""
        driver = self.driver
        return driver.drive(self.protocol.check(canonical, sha1, driver.clock))

    def corpus_version(self) -> str | None:
        """The version of the pair store the service answers from now (``GET /v1/corpus``), or None when it does
        not say; a RemoteError if it cannot be asked."""
        driver = self.driver
        versions = driver.drive(self.protocol.corpus(driver.clock))
        return None if versions is None else versions.pairs

    def close(self) -> None:
        """Close the connection pool if this client built its session (a session passed in stays open)."""
        self.driver.close()

    def __enter__(self) -> PairClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
