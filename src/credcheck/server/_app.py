"""The k-anonymity range service: a WSGI app that answers ``GET /range/{PREFIX}`` byte for byte like HIBP.

The wire format (see docs and the HIBP API):

- ``GET /range/{P}`` with ``P`` five hex characters in any case; ``?mode=ntlm`` (exactly) selects the NTLM
  store, anything else SHA-1. The body is ``SUFFIX:COUNT`` lines, upper-case, sorted, joined by CRLF with
  none after the last; a prefix with no hashes answers 200 with an empty body.
- ``Add-Padding: true`` appends 10 to 209 random ``SUFFIX:0`` lines after the real ones, as HIBP does.
- ``ETag``/``Last-Modified``/``Cache-Control: public, max-age=2678400``, ``If-None-Match`` -> 304, CORS for
  any origin (``ETag`` exposed), gzip whenever the client accepts it.
- credcheck's own, beside HIBP's paths: ``X-Credcheck-Corpus`` on every range (the served store's corpus
  version) and ``GET /v1/corpus``, the version of each store served now (docs/PROTOCOL.md, "Corpus version").

Caching and padding. HIBP pads at its edge, so the object its CDN caches is the unpadded one. Here a padded
response differs on every request, so it is marked ``Cache-Control: private`` (a shared cache that replayed
one padded body for a prefix would make that prefix recognisable by its size again) with a *weak* ETag
(``W/"…-padded"``: equivalent content, different bytes). An ETag is a hash of the range's own rows, not of
the store: a rebuild that leaves a range as it was leaves its ETag too, so a mirror's ``--update`` and a
CDN revalidate it with a 304. Every range response carries
``Vary: Accept-Encoding, Add-Padding``. A conditional request matches any of a range's ETags: a 304 only
says "the real lines you hold are current", which is true whichever variant they came from.

Cost of a request: a check that the served file is unchanged (:mod:`._live`), then, with the store's bodies
side file (:mod:`._bodyfile`), a lookup in its index and a copy of one slice of it: every body, plain and gzip,
was rendered and compressed once. Without it, one index lookup and one slice of the memory-mapped store
(never a parse), rendered and compressed on first use and kept in a per-process LRU (:mod:`._bodies`).

Routes: ``/range/{P}``; ``/v1/pairs/…`` (the pair service); ``/health`` (liveness: 200 while the process answers),
``/ready`` and ``/`` (readiness: 200 only when every store is served verified, else 503; the same JSON status
document on all three); ``/metrics`` (Prometheus, with telemetry's metrics on).

Privacy: the app logs no prefix, bucket, path, query string or header. With telemetry (:mod:`.telemetry`) it
records one access record a request naming the route by its template, and metrics labelled the same way.
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import json
import logging
import os
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final

from .. import _args
from .._artifact import Watched
from .._padding import padding as pad
from .._wire import CORPUS_HEADER, CORPUS_PATH, MODE_PARAM, PREFIX_LENGTH
from ..pairs._service import PairService, UnavailablePairs
from ..store import RangeStore
from ._bodies import DEFAULT_CACHE_SIZE, Body, BodyCache, accepts_gzip
from ._bodyfile import BodyFiles, ensure_bodies
from ._live import Served, watch_store
from ._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ._telemetry import Recorder, Telemetry

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["RangeApp", "Route", "make_app"]

logger = logging.getLogger("credcheck.server")

#: What HIBP sends: 31 days.
MAX_AGE: Final = 2678400
#: Padding lines appended to a padded response: ``PADDING_MIN + randbelow(PADDING_SPAN)``, i.e. 10..209 as HIBP.
PADDING_MIN: Final = 10
PADDING_SPAN: Final = 200

_ALLOWED: Final = "GET, HEAD, OPTIONS"
_TEXT: Final = "text/plain; charset=utf-8"
_VARY: Final = "Accept-Encoding, Add-Padding"
_PUBLIC: Final = f"public, max-age={MAX_AGE}"
_PRIVATE: Final = f"private, max-age={MAX_AGE}"
_RANGE_HEADERS: Final = (
    ("Vary", _VARY),
    ("Access-Control-Allow-Origin", "*"),
    # ETag is not a CORS-safelisted response header: without this a browser client cannot read it to
    # revalidate (Last-Modified is safelisted); nor is the corpus version
    ("Access-Control-Expose-Headers", f"ETag, {CORPUS_HEADER}"),
)
_PLAIN_HEADERS: Final = (("Content-Type", _TEXT), ("X-Content-Type-Options", "nosniff"))
_GZIP_HEADERS: Final = (*_PLAIN_HEADERS, ("Content-Encoding", "gzip"))
_known_encodings = functools.lru_cache(maxsize=64)(accepts_gzip)


def _accepts_gzip(value: str) -> bool:
    """:func:`._bodies.accepts_gzip`, its answer kept for the few short values clients send (the header is the
    client's: long values are never kept, so the cache stays a few KB whatever is sent)."""
    return _known_encodings(value) if len(value) <= 128 else accepts_gzip(value)


_HEX_PREFIX = re.compile(rf"[0-9A-Fa-f]{{{PREFIX_LENGTH}}}", re.ASCII)
_ETAG = re.compile(r'(?:W/)?"([^"]*)"')


def _parse_http_date(value: str) -> int | None:
    try:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else int(email.utils.mktime_tz(parsed))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class _Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        self.status, self.headers, self.body = status, headers, body


def _text(status: str, message: str, *extra: tuple[str, str]) -> _Response:
    body = message.encode()
    return _Response(
        status,
        [
            ("Content-Type", _TEXT),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Access-Control-Allow-Origin", "*"),
            ("X-Content-Type-Options", "nosniff"),
            *extra,
        ],
        body,
    )


#: The route template of a path no route answers (logs and metrics never hold the path itself).
UNROUTED: Final = "{other}"


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """A path (or, ending in ``/``, every path under it) and what answers a GET or HEAD there (any method
    with ``any_method``).

    ``handler(app, rest, environ)`` gets the rest of the path after a prefix route's (``""`` for an exact one).
    Logs and metrics name a request by its route's ``template`` (``/range/{prefix}``), never by its path: a
    route under a path names the few ``names`` under it by their own path (``/v1/pairs/query``).
    """

    path: str
    handler: Callable[[RangeApp, str, WSGIEnvironment], _Response]
    #: The handler answers every method itself (its own 405s and preflight), e.g. the pair service's POST.
    any_method: bool = False
    #: What logs and metrics call a request here (default: the path).
    template: str = ""
    #: Paths under this one that logs and metrics name as they are (every other one is ``template``).
    names: tuple[str, ...] = ()
    #: The size of a body here follows from the key asked for (a range's prefix, a pair query's bucket): the
    #: access log holds it rounded up to a power of two.
    coarse: bool = False

    #: Whether this route answers every path under its own (it ends in ``/``), not only that one path.
    under: bool = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "under", self.path.endswith("/") and self.path != "/")
        object.__setattr__(self, "template", self.template or self.path)

    def template_of(self, rest: str) -> str:
        """What logs and metrics call a request of this route for ``rest``, the path after the route's."""
        return self.path + rest if rest in self.names else self.template


class RangeApp:
    """A WSGI app serving HIBP-style ranges from at most one SHA-1 and one NTLM :class:`RangeStore`.

    Build it with :func:`make_app`. It is thread-safe, and fork-safe until its first request (the stores are
    read-only memory maps; the body cache starts empty in every process).
    """

    #: What answers where: the first route whose path matches; set below the class (a new kind of request is
    #: a new entry, e.g. ``Route("/v1/pairs/", handler)``).
    routes: ClassVar[tuple[Route, ...]] = ()

    def __init__(
        self,
        stores: Sequence[RangeStore],
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        owned: Sequence[RangeStore] = (),
        verify: bool = True,
        pending: Sequence[tuple[str, str]] = (),
        pairs: PairService | UnavailablePairs | None = None,
        build_bodies: bool = False,
        telemetry: Telemetry | None = None,
    ) -> None:
        live: dict[str, Watched[Served]] = {}
        for store in stores:
            if store.scheme in live:
                raise ValueError(f"two {store.scheme} stores given; serve at most one store per hash scheme")
            live[store.scheme] = watch_store(
                store.scheme, store.path, store, verify=verify, owned=any(store is o for o in owned)
            )
        for scheme, path in pending:  # stores that could not be opened yet: 503 until a verified file is there
            if scheme in live:
                raise ValueError(f"two {scheme} stores given; serve at most one store per hash scheme")
            live[scheme] = watch_store(scheme, path, None, verify=verify, owned=False)
        if not live and pairs is None:
            raise ValueError("no store given; serve at least one SHA-1 or NTLM store (or a pair store)")
        self._live = live
        #: The pair service answering under ``/v1/pairs/`` (``credcheck serve --pairs``), or None.
        self.pairs: PairService | UnavailablePairs | None = pairs
        self._cache = BodyCache(cache_size)
        self._bodies = BodyFiles(build=build_bodies)
        #: What this app records of its requests and stores (:mod:`.telemetry`), or None: nothing.
        self.recorder: Recorder | None = None
        if telemetry is not None:
            recorder = self.recorder = Recorder(telemetry)
            recorder.on_new_process = self._publish
            for watched in self._watched():
                watched.on_event = functools.partial(self._store_event, watched)

    def _watched(self) -> list[Watched[Any]]:
        """Every store this app serves, watched: the range stores, then the pair store."""
        found: list[Watched[Any]] = list(self._live.values())
        if self.pairs is not None and not isinstance(self.pairs, UnavailablePairs):
            found.append(self.pairs.watched)
        return found

    def _store_event(self, watched: Watched[Any], event: str) -> None:
        recorder = self.recorder
        if recorder is not None:
            recorder.store_event(watched.role, event)
            recorder.store(watched.role, watched.verified, watched.generation)

    def _publish(self, recorder: Recorder) -> None:
        """Set this process's gauges of every store it serves (a pair store a worker could not take up: 0)."""
        for watched in self._watched():
            recorder.store(watched.role, watched.verified, watched.generation)
        if isinstance(self.pairs, UnavailablePairs):
            recorder.store("pairs", False, 0)

    def worker_started(self) -> None:
        """Log that this process serves (a worker started) and set its gauges."""
        if self.recorder is not None:
            self.recorder.started()

    @property
    def builds_bodies(self) -> bool:
        """Whether this app makes a missing or stale bodies side file (in the background, one process at a time)."""
        return self._bodies.build

    def prepare_bodies(self) -> None:
        """Make the bodies side file of each served store now unless a matching one is there (docs/DEPLOY.md)."""
        for live in self._live.values():
            if live.served is not None:
                ensure_bodies(live.served.store)

    @property
    def stores(self) -> dict[str, RangeStore]:
        """The stores served now, by scheme ('sha1', 'ntlm')."""
        return {scheme: live.served.store for scheme, live in self._live.items() if live.served is not None}

    @property
    def paths(self) -> dict[str, str]:
        """The path of each served scheme's store (watched for replacement)."""
        return {scheme: live.path for scheme, live in self._live.items()}

    def close(self) -> None:
        """Close the stores that :func:`make_app` opened from paths (stores passed in open stay open)."""
        for live in self._live.values():
            live.close()
        self._bodies.close()

    def __repr__(self) -> str:
        schemes = ", ".join(f"{s}: {v.served.store.rows if v.served else 'no'} rows" for s, v in self._live.items())
        return f"<RangeApp {schemes}>"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        recorder = self.recorder
        started = time.perf_counter() if recorder is not None else 0.0
        response, route, rest = self._respond(environ)
        start_response(response.status, response.headers)
        sent = [] if not response.body or environ.get("REQUEST_METHOD") == "HEAD" else [response.body]
        if recorder is not None:
            template, coarse = (UNROUTED, False) if route is None else (route.template_of(rest), route.coarse)
            size = len(response.body) if sent else 0
            recorder.request(environ, template, response.status, size, time.perf_counter() - started, coarse)
        return sent

    def _respond(self, environ: WSGIEnvironment) -> tuple[_Response, Route | None, str]:
        """The response to one request, headers and full body (the body of a HEAD as for its GET), with the route
        that answered it (None: none) and the rest of the path after the route's."""
        path: str = environ.get("PATH_INFO") or "/"
        method: str = environ.get("REQUEST_METHOD", "GET")
        for route in self.routes:
            # the table's test, inlined: this runs on every request
            if route.under:
                if path.startswith(route.path):
                    rest = path[len(route.path) :]
                    break
            elif path == route.path:
                rest = ""
                break
        else:
            return _text("404 Not Found", "Not found: the range API answers GET /range/{5 hex characters}"), None, ""
        if route.any_method:
            return route.handler(self, rest, environ), route, rest
        if method == "OPTIONS":
            return self._preflight(), route, rest
        if method not in ("GET", "HEAD"):
            refused = _text("405 Method Not Allowed", f"Only {_ALLOWED} are allowed here", ("Allow", _ALLOWED))
            return refused, route, rest
        return route.handler(self, rest, environ), route, rest

    @staticmethod
    def _preflight() -> _Response:
        return _Response(
            "204 No Content",
            [
                ("Allow", _ALLOWED),
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Methods", _ALLOWED),
                ("Access-Control-Allow-Headers", "Add-Padding, If-None-Match"),
                ("Access-Control-Max-Age", "86400"),
            ],
        )

    def _health(self, rest: str, environ: WSGIEnvironment) -> _Response:
        """Liveness: 200 whenever the process answers, with the status document (whose ``status`` says whether
        it is ready): a server waiting for a good store must not be restarted for it."""
        return self._status(rest, environ, liveness=True)

    def _metrics(self, rest: str, environ: WSGIEnvironment) -> _Response:
        """Every worker's metrics in Prometheus's text format (``serve --metrics``; else 404)."""
        recorder = self.recorder
        if recorder is None or recorder.metrics is None:
            return _text("404 Not Found", "Metrics are off on this server (credcheck serve --metrics)")
        self._publish_current(recorder)
        body = recorder.metrics.render()
        return _Response(
            "200 OK",
            [("Content-Type", METRICS_CONTENT_TYPE), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")],
            body,
        )

    def _publish_current(self, recorder: Recorder) -> None:
        """This process's gauges as of now: each store checked as a request would check it."""
        for live in self._live.values():
            live.current()
        if isinstance(self.pairs, PairService):
            self.pairs.watched.current()
        self._publish(recorder)

    def _status(self, rest: str, environ: WSGIEnvironment, *, liveness: bool = False) -> _Response:
        """Readiness: 200 when every store is served verified (and the pair store is loaded), else 503; the body
        says what each store serves and where its bodies come from (the side file's state)."""
        stores: dict[str, dict[str, object]] = {}
        for scheme, live in sorted(self._live.items()):
            served = live.current()
            entry: dict[str, object] = {"state": "serving" if served is not None else "unavailable"}
            if served is not None:
                entry.update(rows=served.store.rows, created=served.store.created, version=served.tag)
                # whether bodies come from the store's side file yet (else rendered and compressed per request)
                stored = self._bodies.get(served.tag, served.store)
                entry["bodies"] = (
                    "rendered" if stored is None else "side file" if stored.complete else "side file, being checked"
                )
            if live.loading:
                entry["replacement"] = "verifying"
            elif live.refused is not None:
                entry["replacement"] = "refused"
            stores[scheme] = entry
        state: dict[str, object] = {"schemes": sorted(self._live), "stores": stores}
        ok = all(entry["state"] == "serving" for entry in stores.values())
        if self.pairs is not None:  # what a pair client will be told, and nothing about the queries
            pairs = state["pairs"] = self.pairs.status()
            ok = ok and pairs["state"] == "serving"
        state["status"] = "ok" if ok else "unavailable"
        body = json.dumps(state, sort_keys=True).encode()
        return _Response(
            "200 OK" if ok or liveness else "503 Service Unavailable",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("Access-Control-Allow-Origin", "*"),
            ],
            body,
        )

    def _range(self, candidate: str, environ: WSGIEnvironment) -> _Response:
        if len(candidate) != PREFIX_LENGTH:  # also catches extra path segments: "/range/ABCDE/x"
            return _text("400 Bad Request", "The hash prefix was not in a valid format")
        if _HEX_PREFIX.fullmatch(candidate) is None:
            return _text("400 Bad Request", "The hash prefix was not valid hexadecimal")
        prefix = candidate.upper()
        scheme = "sha1"
        query = environ.get("QUERY_STRING", "")
        for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True) if query else ():
            if name == MODE_PARAM:  # the first one counts, as URLSearchParams.get
                scheme = "ntlm" if value == "ntlm" else "sha1"
                break
        live = self._live.get(scheme)
        if live is None:
            return _text("404 Not Found", f"This server has no {scheme.upper()} store")
        served = live.current()
        if served is None:
            return _text(
                "503 Service Unavailable",
                f"The {scheme.upper()} store is being replaced; try again shortly",
                ("Retry-After", "10"),
            )

        padding_asked = environ.get("HTTP_ADD_PADDING")
        padded = padding_asked is not None and padding_asked.strip().lower() == "true"
        encodings = environ.get("HTTP_ACCEPT_ENCODING")
        gzipped = encodings is not None and _accepts_gzip(encodings)
        number = int(prefix, 16)
        base = f"{served.range_tag(number)}-{prefix}"
        etag = f'W/"{base}-padded"' if padded else f'"{base}-gzip"' if gzipped else f'"{base}"'
        headers = [
            ("Cache-Control", _PRIVATE if padded else _PUBLIC),
            ("ETag", etag),
            ("Last-Modified", served.last_modified),
            (CORPUS_HEADER, served.corpus),
            *_RANGE_HEADERS,
        ]
        if ("HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MODIFIED_SINCE" in environ) and self._not_modified(
            environ, base, served.store.created
        ):
            return _Response("304 Not Modified", headers)

        key = (served.tag, number)
        stored = self._bodies.get(served.tag, served.store)
        if stored is not None and not stored.ready[number]:
            stored = None  # this range's bodies are not checked against the store yet
        recorder = self.recorder
        if stored is not None and not padded:  # a lookup and a copy of one slice
            content = stored.gzipped(number) if gzipped else stored.plain(number)
            if recorder is not None:
                recorder.body("side_file")
            return self._ok(headers, content, gzipped)
        body = None if stored is None else stored.body(number)
        source = "side_file"
        if body is None:
            body = self._cache.get(key)
            source = "cache"
        if body is None:
            body = Body(served.store.range_body(number))
            self._cache.put(key, body)
            source = "rendered"
        if recorder is not None:
            recorder.body(source)
        if padded:
            padding = pad(
                served.store, number, PADDING_MIN + secrets.randbelow(PADDING_SPAN), after_lines=bool(body.raw)
            )
            fresh = gzipped and body.gzipped is None
            content = body.gzip_padded(padding) if gzipped else body.raw + padding
            if fresh and stored is None:
                self._cache.grew(key, body)
        elif gzipped:
            fresh = body.gzipped is None
            content = body.gzip()
            if fresh and stored is None:
                self._cache.grew(key, body)
        else:
            content = body.raw
        return self._ok(headers, content, gzipped)

    @staticmethod
    def _ok(headers: list[tuple[str, str]], content: bytes, gzipped: bool) -> _Response:
        headers += _GZIP_HEADERS if gzipped else _PLAIN_HEADERS
        headers.append(("Content-Length", str(len(content))))
        return _Response("200 OK", headers, content)

    @staticmethod
    def _not_modified(environ: WSGIEnvironment, base: str, created: int) -> bool:
        match = environ.get("HTTP_IF_NONE_MATCH")
        if match is not None:
            if match.strip() == "*":
                return True
            ours = (base, f"{base}-gzip", f"{base}-padded")
            return any(tag in ours for tag in _ETAG.findall(match))
        since = environ.get("HTTP_IF_MODIFIED_SINCE")
        if since is not None:
            when = _parse_http_date(since)
            return when is not None and created <= when
        return False


def _corpus(app: RangeApp, rest: str, environ: WSGIEnvironment) -> _Response:
    """``GET /v1/corpus``: the corpus version of each store served now (a store being replaced is left out), for
    partner sites that re-check a user only when the corpus changed (docs/PROTOCOL.md, "Corpus version")."""
    ranges = {scheme: served.corpus for scheme, live in sorted(app._live.items()) if (served := live.current())}
    pairs = app.pairs.version if app.pairs is not None else None
    body = json.dumps({"ranges": ranges, "pairs": pairs}, sort_keys=True).encode()
    return _Response(
        "200 OK",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Access-Control-Allow-Origin", "*"),
        ],
        body,
    )


def _pairs(app: RangeApp, rest: str, environ: WSGIEnvironment) -> _Response:
    """Everything under ``/v1/pairs/``: the pair service's config and query (:mod:`credcheck.pairs._service`)."""
    if app.pairs is None:
        return _text("404 Not Found", "This server has no pair store")
    status, headers, body = app.pairs.respond(environ)
    return _Response(status, headers, body)


RangeApp.routes = (
    Route("/v1/pairs/", _pairs, any_method=True, template="/v1/pairs/{other}", names=("config", "query"), coarse=True),
    Route("/range/", RangeApp._range, template="/range/{prefix}", coarse=True),
    Route(CORPUS_PATH, _corpus),
    Route("/", RangeApp._status),
    Route("/ready", RangeApp._status),
    Route("/health", RangeApp._health),
    Route("/metrics", RangeApp._metrics),
)


def make_app(
    stores: Sequence[RangeStore | str | os.PathLike[str]] | RangeStore | str | os.PathLike[str],
    *,
    cache_size: int = DEFAULT_CACHE_SIZE,
    verify: bool = True,
    pairs: PairService | None = None,
    build_bodies: bool = False,
    telemetry: Telemetry | None = None,
) -> RangeApp:
    """Return a WSGI app serving ``GET /range/{PREFIX}`` from ``stores`` (at most one per hash scheme).

    ``pairs`` (a :class:`~credcheck.pairs._service.PairService`) also answers the pair endpoints under
    ``/v1/pairs/``; with it, ``stores`` may be empty. It stays open after :meth:`RangeApp.close` (it is the
    caller's).

    ``stores`` holds :class:`RangeStore` objects or paths (opened here with ``verify``, and closed by
    :meth:`RangeApp.close`). Each process keeps the bodies (raw and gzip) of up to ``cache_size`` recent
    prefixes, within 64 MiB: at HIBP's density (about 60 KB a range) some 500 prefixes, on a smaller corpus
    all of them. A store's bodies side file (``STORE.bodies``, :mod:`._bodyfile`), once verified in the
    background, serves every body instead; ``build_bodies`` makes it when it is missing or stale (as
    ``credcheck serve`` does). Two stores of one scheme raise ``ValueError``.

    ``telemetry`` (:class:`~credcheck.server._telemetry.Telemetry`) makes the app record an access record a
    request on the ``credcheck.server.access`` logger and, with its ``metrics``, count them for ``/metrics``
    (in this process; :func:`~credcheck.server.serve` adds up every worker's). Without it the app records
    nothing and ``/metrics`` is a 404.
    """
    if isinstance(stores, RangeStore | str | os.PathLike):
        stores = [stores]
    _args.non_negative_int("cache_size", cache_size)
    opened: list[RangeStore] = []
    try:
        given: list[RangeStore] = []
        for item in stores:
            if isinstance(item, RangeStore):
                given.append(item)
            elif isinstance(item, str | os.PathLike):
                store = RangeStore(item, verify=verify)
                opened.append(store)
                given.append(store)
            else:
                raise TypeError(f"a store must be a RangeStore or a path, not {type(item).__name__}")
        return RangeApp(
            given,
            cache_size=cache_size,
            owned=opened,
            verify=verify,
            pairs=pairs,
            build_bodies=build_bodies,
            telemetry=telemetry,
        )
    except BaseException:
        for store in opened:
            store.close()
        raise
