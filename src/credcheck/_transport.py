"""The requests/urllib3 plumbing under :class:`~credcheck.client.RangeClient`: the watchdog hand-over that
enforces the overall deadline, and the session the client builds for itself.

urllib3's timeouts bound each connect and each read, so a server that drips one byte a second (within
every read timeout) could hold a request open for as long as it likes, even while the status line and
headers arrive. Each request therefore arms the shared watchdog (``credcheck._watchdog``) through
:func:`armed`: the connections of the client's own session hand their socket to it before the response is
read, and when the deadline passes it shuts the socket down, which wakes the blocked read. A session passed
in by the caller keeps its own adapters, so there the deadline is checked between body chunks only.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.response

from ._watchdog import Watchdog, arm

__all__ = ["DeadlineAdapter", "NoCookies", "Watchdog", "armed", "new_session"]


_current = threading.local()


def _attach_current(sock: socket.socket | None) -> None:
    watchdog: Watchdog | None = getattr(_current, "watchdog", None)
    if watchdog is not None:
        watchdog.attach(sock)


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        _attach_current(self.sock)
        return super().getresponse()


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        _attach_current(self.sock)
        return super().getresponse()


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Stores no cookie and returns none."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False


@contextlib.contextmanager
def armed(seconds: float) -> Iterator[Watchdog]:
    """A watchdog for this thread's next request: it shuts the request's socket ``seconds`` from now."""
    watchdog = _current.watchdog = arm(seconds)
    try:
        yield watchdog
    finally:
        watchdog.disarm()
        _current.watchdog = None


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """An adapter whose connections report their socket to the current attempt's watchdog; with ``tls``, the
    context that verifies servers (exactly that context: requests' own CA bundle is not added to it)."""

    def __init__(self, *, tls: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        self.tls = tls
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self.tls is not None:
            kwargs["ssl_context"] = self.tls
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if self.tls is None or not url.lower().startswith("https"):
            super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
            return
        # The context decides what is trusted; requests would load its CA bundle into it.
        conn.cert_reqs, conn.ca_certs, conn.ca_cert_dir = "CERT_REQUIRED", None, None


def new_session(pool_size: int, tls: ssl.SSLContext | None = None) -> requests.Session:
    """A session whose connections answer to the watchdog, with no retries of its own and no cookies; ``tls``
    verifies the servers (None: requests' own CA bundle)."""
    session = requests.Session()
    # Retries are the protocol's (deadline-aware), so urllib3's are off.
    adapter = DeadlineAdapter(tls=tls, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # Cookies a range server sets are never sent back: they would link one client's requests.
    session.cookies.set_policy(NoCookies())
    return session
