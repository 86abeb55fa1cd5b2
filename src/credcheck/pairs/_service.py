"""The pair service's two endpoints, ``GET /v1/pairs/config`` and ``POST /v1/pairs/query``, over WSGI environs.

:class:`PairService` holds a verified pair store and the key it was built with (refused unless their key ids
match, and a key file others can read is refused by :func:`~credcheck.pairs.keys.load_key`), and answers
one request at a time: :meth:`PairService.respond` takes a WSGI environ and returns ``(status, headers,
body)``; the range server's route table sends it every path under ``/v1/pairs/``, and it is also a WSGI app
by itself (:meth:`PairService.__call__`).

The query is strict (docs/PROTOCOL.md, "Wire"): the body is at most :data:`MAX_BODY` bytes of UTF-8 JSON,
exactly ``{"bucket": INT, "elements": [HEX, ...]}`` — no other key, no key twice, a bucket that is an integer
(not a boolean, not a float) below ``2^B``, one element (two when the store has username entries), each
64 hex digits of a canonical ristretto255 element other than the identity. Anything else is a 400 (a body
too large, of another media type or with no length too, as the protocol says) with a short plain-text reason,
never a 500 and never a traceback. Before the body is looked at, the client's address spends a token of
its bucket in the shared :class:`~credcheck.pairs._ratelimit.RateLimiter` (429 with ``Retry-After`` when
it has none); behind a reverse proxy, ``trusted_proxies`` names the proxies whose ``X-Forwarded-For`` is
believed.

Privacy: nothing here logs a bucket, an element or an address (the rate limit's refusals are logged as a count);
a response is ``Cache-Control: no-store``.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from .._artifact import Over, Watched
from .._wire import CORPUS_HEADER
from ..errors import ArtifactError, ClosedError, CryptoError
from . import _oprf
from ._names import PROTOCOL
from ._ratelimit import DEFAULT_BURST, DEFAULT_RATE, RateLimiter
from .keys import KeyPair, load_key
from .store import PairStore

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "CONFIG_PATH",
    "MAX_BODY",
    "PREFIX",
    "QUERY_PATH",
    "PairService",
    "UnavailablePairs",
    "client_address",
    "make_pair_service",
    "trusted",
]

logger = logging.getLogger("credcheck.server")

PREFIX: Final = "/v1/pairs/"
CONFIG_PATH: Final = "/v1/pairs/config"
QUERY_PATH: Final = "/v1/pairs/query"
#: The largest query body accepted: two elements and a bucket take about 170 bytes.
MAX_BODY: Final = 1024
#: Seconds between two log events about queries the rate limit refused (per worker).
LIMIT_LOG_EVERY: Final = 10.0
_HEX64 = re.compile(r"[0-9A-Fa-f]{64}", re.ASCII)
_JSON: Final = "application/json"
_TEXT: Final = "text/plain; charset=utf-8"

Response = tuple[str, list[tuple[str, str]], bytes]


class _Refused(Exception):
    """A request answered with a 4xx: ``status`` and a short reason (never quoting the request)."""

    def __init__(self, status: str, reason: str, *headers: tuple[str, str]) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, list(headers)


def _common(content_type: str, body: bytes) -> list[tuple[str, str]]:
    return [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("Access-Control-Allow-Origin", "*"),
        ("X-Content-Type-Options", "nosniff"),
    ]


def _text(status: str, reason: str, *extra: tuple[str, str]) -> Response:
    body = reason.encode()
    return status, [*_common(_TEXT, body), *extra], body


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for name, value in pairs:
        if name in seen:
            raise _Refused("400 Bad Request", "a key appears twice in the JSON object")
        seen[name] = value
    return seen


def _no_constant(name: str) -> Any:
    raise _Refused("400 Bad Request", "NaN and Infinity are not JSON")


class UnavailablePairs:
    """The pair endpoints of a worker that could not take up the pair service its parent verified (its key file
    changed on disk, say): every request a 503, never a crash that would have the worker respawned in a loop."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        logger.error("%s: the pair service is unavailable in this worker: %s", path, reason)

    def respond(self, environ: WSGIEnvironment) -> Response:
        return _text(
            "503 Service Unavailable", "The pair service is unavailable; try again shortly", ("Retry-After", "30")
        )

    def status(self) -> dict[str, object]:
        return {"state": "unavailable"}

    @property
    def version(self) -> str | None:
        return None

    def close(self) -> None:
        pass


class _Served(Over):
    """A verified pair store with the config a client is told about it (what :class:`Watched` serves)."""

    store: PairStore

    def __init__(self, store: PairStore, key: KeyPair) -> None:
        self.store = store
        self.elements = 2 if store.username_entries else 1
        config = {
            "protocol": PROTOCOL,
            "suite": _oprf.SUITE,
            "mode": "voprf",
            "public_key": key.pk.hex(),
            "key_id": key.key_id.hex(),
            "bucket_bits": store.bucket_bits,
            "stretch": {"name": "scrypt", "n": store.stretch.n, "r": store.stretch.r, "p": store.stretch.p},
            "username_entries": store.username_entries,
        }
        self.config = json.dumps(config).encode()
        #: The store's corpus version, sent with every config and answer as X-Credcheck-Corpus.
        self.version = store.version


def _built_with(key: KeyPair) -> Callable[[_Served], str | None]:
    def accept(served: _Served) -> str | None:
        found = served.store.key_id
        return None if found == key.key_id else f"it was built with key id {found.hex()}, not {key.key_id.hex()}"

    return accept


class PairService:
    """Answers the pair endpoints from one pair store and its key (see the module docs).

    The store is the artefact lifecycle's :class:`~credcheck._artifact.Watched`: checked on every query, so a
    store overwritten in place (another key's entries, same size) answers 503 rather than "not found"; a new
    file renamed over the path is verified in the background and served if it was built with this key.
    """

    def __init__(
        self,
        store: PairStore,
        key: KeyPair,
        *,
        limiter: RateLimiter | None = None,
        trusted_proxies: Iterable[str] = (),
        owned: bool = False,
        owned_limiter: bool = False,
    ) -> None:
        accept = _built_with(key)
        first = _Served(store, key)
        refused = accept(first)
        if refused is not None:
            raise ArtifactError(f"{store.path} {refused} (this key)")
        self._key = key
        self._evaluator = _oprf.Evaluator(key.sk)  # the key checked and its per-key work done once

        def load(path: str) -> _Served:
            return _Served(PairStore(path), key)  # a new file at the path: verified in full

        self.path = store.path
        self._watched: Watched[_Served] = Watched(
            store.path, first, load=load, accept=accept, owned=owned, role="pairs"
        )
        self.limiter = limiter
        self.trusted_proxies = trusted(trusted_proxies)
        self._owned_limiter = owned_limiter
        #: The key file the key was loaded from (a granian worker loads it again), if any.
        self.key_path: str | None = None
        self._refusals = 0  # queries refused by the rate limit since the last event logged
        self._refusals_logged = -math.inf
        self._refusals_lock = threading.Lock()

    @property
    def store(self) -> PairStore | None:
        """The pair store answered from now, or None while none can be (changed in place, being replaced)."""
        served = self._watched.current()
        return None if served is None else served.store

    @property
    def watched(self) -> Watched[Any]:
        """The served pair store's path, watched (:class:`~credcheck._artifact.Watched`): its state and events."""
        return self._watched

    @property
    def config(self) -> bytes:
        """What ``GET /v1/pairs/config`` answers now (empty while no store can be served)."""
        served = self._watched.current()
        return b"" if served is None else served.config

    @property
    def version(self) -> str | None:
        """The corpus version of the pair store answered from now, or None while none can be."""
        served = self._watched.current()
        return None if served is None else served.version

    def status(self) -> dict[str, object]:
        """What the health page says of the pair service: what a client is told, nothing about the queries."""
        store = self.store
        if store is None:
            return {"state": "unavailable", "key_id": self.key_id.hex()}
        return {
            "state": "serving",
            "key_id": self.key_id.hex(),
            "bucket_bits": store.bucket_bits,
            "entries": store.entries,
        }

    @property
    def key_id(self) -> bytes:
        """The id of the key (and of the store): 8 bytes."""
        return self._key.key_id

    def close(self) -> None:
        """Close the store and the rate-limit table if :func:`make_pair_service` opened them."""
        self._watched.close()
        if self._owned_limiter and self.limiter is not None:
            self.limiter.close()

    def __enter__(self) -> PairService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PairService {self._watched.path!r} key_id={self.key_id.hex()} limiter={self.limiter!r}>"

    # ------------------------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve the pair endpoints alone, as a WSGI app (every other path is a 404)."""
        status, headers, body = self.respond(environ)
        start_response(status, headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" or not body else [body]

    def respond(self, environ: WSGIEnvironment) -> Response:
        """The response to one request for a path under ``/v1/pairs/``: status, headers and body."""
        try:
            return self._respond(environ)
        except _Refused as refused:
            return _text(refused.status, refused.reason, *refused.headers)
        except Exception as exc:  # a bug: answer without a traceback, log its type only (no request data)
            logger.error("pair service: internal error (%s)", type(exc).__name__)
            return _text("500 Internal Server Error", "internal error")

    def _respond(self, environ: WSGIEnvironment) -> Response:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if path == CONFIG_PATH:
            allowed = "GET, HEAD, OPTIONS"
            if method in ("GET", "HEAD"):
                served = self._served()
                return "200 OK", [*_common(_JSON, served.config), (CORPUS_HEADER, served.version)], served.config
        elif path == QUERY_PATH:
            allowed = "POST, OPTIONS"
            if method == "POST":
                return self._query(environ)
        else:
            raise _Refused(
                "404 Not Found", f"Not found: the pair service answers GET {CONFIG_PATH} and POST {QUERY_PATH}"
            )
        if method == "OPTIONS":
            return (
                "204 No Content",
                [
                    ("Allow", allowed),
                    ("Access-Control-Allow-Origin", "*"),
                    ("Access-Control-Allow-Methods", allowed),
                    ("Access-Control-Allow-Headers", "Content-Type"),
                    ("Access-Control-Max-Age", "86400"),
                ],
                b"",
            )
        raise _Refused("405 Method Not Allowed", f"Only {allowed} are allowed here", ("Allow", allowed))

    def _served(self) -> _Served:
        """The verified store to answer from now; a 503 while there is none (changed in place, being replaced)."""
        served = self._watched.current()
        if served is None:
            raise _Refused(
                "503 Service Unavailable", "The pair store is being replaced; try again shortly", ("Retry-After", "10")
            )
        return served

    def client_address(self, environ: WSGIEnvironment) -> str:
        """The address a query counts against: the peer's, or behind a trusted proxy the one it forwards."""
        address = client_address(environ, self.trusted_proxies)
        if address is None:
            raise _Refused("400 Bad Request", "X-Forwarded-For holds something that is not an IP address")
        return address

    def _query(self, environ: WSGIEnvironment) -> Response:
        body = _read_body(environ)
        served = self._served()
        if self.limiter is not None:
            wait = self.limiter.take(self.client_address(environ))
            if wait > 0:
                self._limited()
                retry = str(max(1, math.ceil(wait)))
                raise _Refused("429 Too Many Requests", "too many queries from this address", ("Retry-After", retry))
        bucket, elements = self._parse(body, served)
        try:  # the elements are checked here, once: a bad one is a 400 naming it
            evaluated, proof = self._evaluator.blind_evaluate(elements)
        except CryptoError as exc:
            raise _Refused("400 Bad Request", str(exc)) from None
        try:
            entries = served.store.bucket(bucket)
        except (ArtifactError, ClosedError):  # changed under this query: the next one gets the 503
            raise _Refused(
                "503 Service Unavailable", "The pair store is being replaced; try again shortly", ("Retry-After", "10")
            ) from None
        answer = {
            "key_id": self._key.key_id.hex(),
            "evaluated": [element.hex() for element in evaluated],
            "proof": proof.hex(),
            "entries": base64.b64encode(entries).decode("ascii"),
        }
        out = json.dumps(answer).encode()
        return "200 OK", [*_common(_JSON, out), (CORPUS_HEADER, served.version)], out

    def _limited(self) -> None:
        """Log the rate limit's refusals: the first at once, then at most one event every
        :data:`LIMIT_LOG_EVERY` seconds, counting those since the last (a flood of 429s is not a flood of lines)."""
        now = time.monotonic()
        with self._refusals_lock:
            self._refusals += 1
            if now - self._refusals_logged < LIMIT_LOG_EVERY:
                return
            refused, self._refusals, self._refusals_logged = self._refusals, 0, now
        logger.warning(
            "pair queries refused by the rate limit: %d since the last report",
            refused,
            extra={"event": "rate_limited", "refused": refused},
        )

    def _parse(self, body: bytes, served: _Served) -> tuple[int, list[bytes]]:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused("400 Bad Request", "the body is not UTF-8") from None
        try:
            doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
        except (ValueError, RecursionError):  # JSONDecodeError, and an integer too long for int()
            raise _Refused("400 Bad Request", "the body is not JSON") from None
        if not isinstance(doc, dict) or set(doc) != {"bucket", "elements"}:
            raise _Refused("400 Bad Request", 'the body must be exactly {"bucket": INT, "elements": [HEX, ...]}')
        bucket, items = doc["bucket"], doc["elements"]
        if type(bucket) is not int:
            raise _Refused("400 Bad Request", "the bucket must be a JSON integer")
        if not 0 <= bucket < served.store.buckets:
            raise _Refused("400 Bad Request", f"the bucket must be from 0 to {served.store.buckets - 1}")
        if not isinstance(items, list) or not 1 <= len(items) <= served.elements:
            many = "1 or 2 elements" if served.elements == 2 else "exactly 1 element (no username entries here)"
            raise _Refused("400 Bad Request", f"elements must be a list of {many}")
        elements = []
        for number, item in enumerate(items, 1):
            if not isinstance(item, str) or _HEX64.fullmatch(item) is None:
                raise _Refused("400 Bad Request", f"element {number} must be 64 hex digits")
            elements.append(bytes.fromhex(item))  # a valid group element: checked by the evaluator
        return bucket, elements


def client_address(environ: WSGIEnvironment, trusted_proxies: frozenset[str]) -> str | None:
    """The client's address: the peer's, or on a connection from one of ``trusted_proxies`` (normal spellings,
    :func:`trusted`) the rightmost address of ``X-Forwarded-For`` that is not one of them; None if that header,
    from a trusted proxy, holds something that is not an address."""
    peer = str(environ.get("REMOTE_ADDR") or "")
    if not trusted_proxies or _normal(peer) not in trusted_proxies:
        return peer
    forwarded = str(environ.get("HTTP_X_FORWARDED_FOR") or "")
    # right to left: the rightmost entry was written by our proxy; skip our own proxies in a chain
    for item in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
        address = _normal(item)
        if address is None:
            return None
        if address not in trusted_proxies:
            return address
    return peer


def trusted(proxies: Iterable[str]) -> frozenset[str]:
    """The addresses of trusted reverse proxies in their normal spellings; ``ValueError`` for one that is not an IP
    address."""
    return frozenset(_normal_or_raise(proxy) for proxy in proxies)


def _normal(address: str) -> str | None:
    """An address as one spelling: an IPv4 address mapped into IPv6 (``::ffff:127.0.0.1``, how a server listening
    on ``::`` sees an IPv4 peer) as the IPv4 address itself; None if it is not an address."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _normal_or_raise(address: str) -> str:
    normal = _normal(address)
    if normal is None:
        raise ValueError(f"a trusted proxy must be an IP address, got {address.strip()[:60]!r}")
    return normal


def _read_body(environ: WSGIEnvironment) -> bytes:
    """The request body, at most MAX_BODY bytes, framed by Content-Length or chunked (de-chunked by the server)."""
    content_type = str(environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    if content_type != _JSON:
        raise _Refused("400 Bad Request", f"the body must be {_JSON}")
    stream = environ.get("wsgi.input")
    declared = str(environ.get("CONTENT_LENGTH") or "").strip()
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING") or "").lower()
    try:
        if declared:
            if not (declared.isascii() and declared.isdigit()):
                raise _Refused("400 Bad Request", "malformed Content-Length")
            size = int(declared)
            if size > MAX_BODY:
                raise _Refused("400 Bad Request", f"a query is at most {MAX_BODY} bytes")
            body = stream.read(size) if size and stream is not None else b""
            if len(body) != size:
                raise _Refused("400 Bad Request", "the body is shorter than its Content-Length")
            return bytes(body)
        if not chunked or stream is None:
            raise _Refused("400 Bad Request", "a query needs a Content-Length (or chunked framing)")
        body = stream.read(MAX_BODY + 1)
    except _Refused:
        raise
    except (OSError, ValueError) as exc:
        raise _Refused("400 Bad Request", f"the body could not be read ({type(exc).__name__})") from None
    if len(body) > MAX_BODY:
        raise _Refused("400 Bad Request", f"a query is at most {MAX_BODY} bytes")
    return bytes(body)


def make_pair_service(
    store: PairStore | str | os.PathLike[str],
    key: KeyPair | str | os.PathLike[str],
    *,
    rate: float | None = None,
    burst: float | None = None,
    limiter: RateLimiter | str | None = None,
    trusted_proxies: Sequence[str] = (),
    verify: bool = True,
) -> PairService:
    """A :class:`PairService` over a pair store (or its path) and its key (or key file).

    ``limiter`` is a :class:`RateLimiter`, the path of one made by the parent process, or None: then one is
    created here with ``rate`` and ``burst`` (its defaults), unless ``rate`` is 0 (no limit).
    """
    keypair = key if isinstance(key, KeyPair) else load_key(key)
    opened = not isinstance(store, PairStore)
    pair_store = PairStore(store, verify=verify) if not isinstance(store, PairStore) else store
    made: RateLimiter | None = None
    try:
        if isinstance(limiter, str):
            made = RateLimiter.open(limiter)
        elif limiter is None and rate != 0:
            made = RateLimiter.create(DEFAULT_RATE if rate is None else rate, DEFAULT_BURST if burst is None else burst)
        chosen = made if made is not None else limiter if isinstance(limiter, RateLimiter) else None
        service = PairService(
            pair_store,
            keypair,
            limiter=chosen,
            trusted_proxies=trusted_proxies,
            owned=opened,
            owned_limiter=made is not None,
        )
    except BaseException:
        if made is not None:
            made.close()
        if opened:
            pair_store.close()
        raise
    if not isinstance(key, KeyPair):
        service.key_path = os.path.abspath(os.fspath(key))
    return service
