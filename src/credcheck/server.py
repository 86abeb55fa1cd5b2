"""The k-anonymity range service: a WSGI app that answers ``GET /range/{PREFIX}`` byte for byte like HIBP.

:func:`make_app` turns one SHA-1 store and/or one NTLM store into a WSGI callable; :func:`serve` runs it
under gunicorn (several worker processes) or, when gunicorn is not installed, under a threaded ``wsgiref``
server. Any HIBP Pwned Passwords client works against it unchanged: point it at ``http://host:port``.

The wire format (see docs and the HIBP API):

- ``GET /range/{P}`` with ``P`` five hex characters in any case; ``?mode=ntlm`` (exactly) selects the NTLM
  store, anything else SHA-1. The body is ``SUFFIX:COUNT`` lines, upper-case, sorted, joined by CRLF with
  none after the last; a prefix with no hashes answers 200 with an empty body.
- ``Add-Padding: true`` appends 10 to 209 random ``SUFFIX:0`` lines after the real ones, as HIBP does.
- ``ETag``/``Last-Modified``/``Cache-Control: public, max-age=2678400``, ``If-None-Match`` -> 304, CORS for
  any origin, gzip whenever the client accepts it.

Caching and padding. HIBP pads at its edge, so the object its CDN caches is the unpadded one. Here a padded
response differs on every request, so it is marked ``Cache-Control: private`` (a shared cache that replayed
one padded body for a prefix would make that prefix recognisable by its size again) with a *weak* ETag
(``W/"…-padded"``: equivalent content, different bytes). Every range response carries
``Vary: Accept-Encoding, Add-Padding``. A conditional request matches any of a range's ETags: a 304 only
says "the real lines you hold are current", which is true whichever variant they came from.

Cost of a request: one index lookup and one slice of the memory-mapped store (never a parse), then, for hot
prefixes, nothing at all: a small LRU per process keeps recent bodies and their gzip encoding. A padded gzip
response reuses the cached compressed real lines and compresses only the padding (gzip lets a deflate stream
continue after a sync flush, and CRC-32 can be extended).

Files that change. Each request first checks that the served file is still the one verified (size, mtime,
header; the size before the map is read) and answers 503 for its scheme if it was written to in place; a new
file renamed over the path is verified in the background and served once it passes (docs/DEPLOY.md).

Privacy: the app logs nothing but the prefix (at debug level); the servers run by :func:`serve` keep no
access log, and gunicorn's warnings about bad requests are stripped of the client's address, so client
addresses are not recorded either.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import email.utils
import importlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import numpy as np
import numpy.typing as npt
import xxhash

from .errors import CredcheckError
from .store import FileIdentity, RangeStore

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["RangeApp", "make_app", "serve", "serve_in_background"]

logger = logging.getLogger("credcheck.server")

#: What HIBP sends: 31 days.
MAX_AGE: Final = 2678400
#: Padding lines appended to a padded response: ``PADDING_MIN + randbelow(PADDING_SPAN)``, i.e. 10..209 as HIBP.
PADDING_MIN: Final = 10
PADDING_SPAN: Final = 200
DEFAULT_CACHE_SIZE: Final = 1 << 20  # every prefix may be cached ...
CACHE_BYTES: Final = 64 << 20  # ... within 64 MiB of bodies per worker process

_ALLOWED: Final = "GET, HEAD, OPTIONS"
_TEXT: Final = "text/plain; charset=utf-8"
_VARY: Final = "Accept-Encoding, Add-Padding"
_HEX5 = re.compile(r"[0-9A-Fa-f]{5}", re.ASCII)
_ETAG = re.compile(r'(?:W/)?"([^"]*)"')
# RFC 9110 qvalue: 0 to 1 with at most three decimals
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?", re.ASCII)
# A gzip member header with no name and mtime 0, so that every worker sends the same bytes for one ETag.
_GZIP_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
_PADDING_LINE_END: Final = np.frombuffer(b":0", dtype=np.uint8)
_CRLF: Final = np.frombuffer(b"\r\n", dtype=np.uint8)
# What a cache entry holds besides its bodies' bytes objects: the _Body (72 bytes), the key tuple and its int
# (56 + 28), the OrderedDict's slot, hash entry and link (about 100), the (body, size) pair and its int (about
# 90), rounded up for the allocator.
_ENTRY_OVERHEAD: Final = 384


def _deflater() -> Any:
    # Huffman-only: hex text has few useful repeats, and on range bodies this is both ~4x faster than the
    # default strategy and a few percent smaller.
    return zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_HUFFMAN_ONLY)


@dataclasses.dataclass(slots=True)
class _Body:
    """One prefix's real (unpadded) range, and its gzip encoding once a client has asked for it."""

    raw: bytes
    gzipped: bytes | None = None  # the gzip member of `raw`
    crc: int = 0
    deflated: int = 0  # length of raw's deflate stream up to its sync flush, after the gzip header

    def footprint(self) -> int:
        """Bytes this body holds in a cache: both encodings, the objects, a key and an LRU entry."""
        held = sys.getsizeof(self.raw) + (0 if self.gzipped is None else sys.getsizeof(self.gzipped))
        return held + _ENTRY_OVERHEAD

    def gzip(self) -> bytes:
        """The gzip member of ``raw``, compressed on first use (deterministic: every worker makes the same)."""
        if self.gzipped is None:
            deflater = _deflater()
            head = deflater.compress(self.raw) + deflater.flush(zlib.Z_SYNC_FLUSH)
            end = deflater.flush()
            self.crc = zlib.crc32(self.raw)
            self.deflated = len(head)
            trailer = struct.pack("<II", self.crc, len(self.raw) & 0xFFFFFFFF)
            self.gzipped = b"".join((_GZIP_HEADER, head, end, trailer))
        return self.gzipped

    def gzip_padded(self, padding: bytes) -> bytes:
        """The gzip member of ``raw + padding``: raw's cached deflate stream continued with the padding's.

        After a sync flush a deflate stream is byte-aligned and may go on with blocks from a fresh
        compressor; CRC-32 extends over the padding. Only the padding is compressed per request.
        """
        whole = memoryview(self.gzip())
        head = whole[len(_GZIP_HEADER) : len(_GZIP_HEADER) + self.deflated]
        deflater = _deflater()
        tail = deflater.compress(padding) + deflater.flush()
        trailer = struct.pack("<II", zlib.crc32(padding, self.crc), (len(self.raw) + len(padding)) & 0xFFFFFFFF)
        return b"".join((_GZIP_HEADER, head, tail, trailer))


class _BodyCache:
    """A thread-safe LRU of :class:`_Body` keyed by (store tag, prefix), bounded in entries and in bytes.

    The bytes counted are what an entry really holds (:meth:`_Body.footprint`: both encodings once made, the
    objects around them, the key and the cache's own bookkeeping), so that the bound holds whatever the
    size of the bodies: at a small corpus' few dozen bytes a range, the overheads are most of it.
    """

    def __init__(self, size: int, max_bytes: int = CACHE_BYTES) -> None:
        self.size, self.max_bytes, self.bytes = size, max_bytes, 0
        self._entries: collections.OrderedDict[tuple[str, int], tuple[_Body, int]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, int]) -> _Body | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: tuple[str, int], body: _Body) -> None:
        if not self.size:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._store(key, body)

    def grew(self, key: tuple[str, int], body: _Body) -> None:
        """Count ``body`` again after it gained its gzip encoding (if it is still the one cached)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is body:
                self.bytes -= entry[1]
                self._store(key, body)

    def _store(self, key: tuple[str, int], body: _Body) -> None:
        footprint = body.footprint()
        self._entries[key] = (body, footprint)
        self.bytes += footprint
        while len(self._entries) > self.size or (self.bytes > self.max_bytes and len(self._entries) > 1):
            _, (_, evicted) = self._entries.popitem(last=False)
            self.bytes -= evicted


@dataclasses.dataclass(frozen=True, slots=True)
class _Served:
    """A store and what every response from it repeats."""

    store: RangeStore
    tag: str  # identifies the store's content: scheme plus a digest of its header fields and index
    last_modified: str

    @classmethod
    def of(cls, store: RangeStore) -> _Served:
        return cls(store, _store_tag(store), _http_date(store.created))


class _Live:
    """One served path: the verified store answered from, watched so that a change never gives a wrong body.

    On every request the open file is checked (:meth:`RangeStore.changed`: size and mtime, then its header;
    the size before the map is touched): if it was written to in place, its scheme answers 503 until a
    verified file is back. The path is checked too: a different file there (an atomic ``mv`` of a new build)
    or new contents in place are opened and fully verified in a background thread, and served once they pass;
    until then the previous verified file goes on answering. A file that fails is not tried again until the
    path changes once more.
    """

    def __init__(self, scheme: str, path: str, store: RangeStore | None, *, verify: bool, owned: bool) -> None:
        self.scheme, self.path, self.verify = scheme, path, verify
        self.served: _Served | None = None if store is None else _Served.of(store)
        self.owned = owned and store is not None
        self.broken: str | None = None  # why the file being served can no longer be (None: it can)
        self.refused: FileIdentity | None = None  # the last file at the path that failed verification
        self.loading = False
        self._lock = threading.Lock()

    def current(self) -> _Served | None:
        """The verified store to answer from now, or None when there is none (the caller answers 503)."""
        served = self.served
        opened = None
        if served is not None:
            why = served.store.changed()
            if why is not None:
                if self.broken is None:
                    logger.warning(
                        "%s changed on disk while served (%s): answering 503 until it is replaced", self.path, why
                    )
                self.broken = why
                served = None
            else:
                opened = served.store.identity
        self._watch(opened)
        return served

    def _watch(self, opened: FileIdentity | None) -> None:
        """Start verifying the file at the path if it is not the one served (and not one refused already)."""
        try:
            now = FileIdentity.at(self.path)
        except OSError:
            return  # gone from its path: the open file still answers
        if (opened is not None and now == opened) or now == self.refused or self.loading:
            return
        with self._lock:
            if self.loading:
                return
            self.loading = True
        threading.Thread(target=self._load, args=(now,), name="credcheck-store-reload", daemon=True).start()

    def _load(self, seen: FileIdentity) -> None:
        try:
            store = RangeStore(self.path, verify=self.verify)
        except (CredcheckError, OSError) as exc:
            logger.warning("%s: the new file is not served: %s", self.path, exc)
            self.refused = seen
            self.loading = False
            return
        if store.scheme != self.scheme:
            logger.warning("%s: the new file is a %s store, not %s: not served", self.path, store.scheme, self.scheme)
            store.close()
            self.refused = seen
            self.loading = False
            return
        # The previous store is not closed: a request in another thread may still be reading it; it is
        # unmapped when the last reference goes.
        self.served, self.owned, self.broken, self.refused = _Served.of(store), True, None, None
        self.loading = False
        logger.warning("%s: now serving the new file (%d rows)", self.path, store.rows)

    def close(self) -> None:
        if self.owned and self.served is not None:
            self.served.store.close()


def _store_tag(store: RangeStore) -> str:
    # The header names the build: row count, min_count, build time and the checksums of the index, the
    # hashes and the counts, so any change of content gives a new tag (without reading the file per request).
    digest = xxhash.xxh3_64(store.header)
    # zlib's version too: a strong ETag promises the same gzip bytes from every server behind one name.
    digest.update(zlib.ZLIB_RUNTIME_VERSION.encode())
    return f"{store.scheme}-{digest.hexdigest()}"


def _accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (explicitly, or through ``*``) with a non-zero q."""
    explicit: bool | None = None
    wildcard: bool | None = None
    for item in header.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                quality = float(value) if _QVALUE.fullmatch(value) else 0.0
        if coding in ("gzip", "x-gzip"):
            explicit = quality > 0
        elif coding == "*":
            wildcard = quality > 0
    if explicit is not None:
        return explicit
    return bool(wildcard)


def _http_date(seconds: int) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


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


class RangeApp:
    """A WSGI app serving HIBP-style ranges from at most one SHA-1 and one NTLM :class:`RangeStore`.

    Build it with :func:`make_app`. It is thread-safe, and fork-safe until its first request (the stores are
    read-only memory maps; the body cache starts empty in every process).
    """

    def __init__(
        self,
        stores: Sequence[RangeStore],
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        owned: Sequence[RangeStore] = (),
        verify: bool = True,
        pending: Sequence[tuple[str, str]] = (),
    ) -> None:
        live: dict[str, _Live] = {}
        for store in stores:
            if store.scheme in live:
                raise ValueError(f"two {store.scheme} stores given; serve at most one store per hash scheme")
            live[store.scheme] = _Live(
                store.scheme, store.path, store, verify=verify, owned=any(store is o for o in owned)
            )
        for scheme, path in pending:  # stores that could not be opened yet: 503 until a verified file is there
            if scheme in live:
                raise ValueError(f"two {scheme} stores given; serve at most one store per hash scheme")
            live[scheme] = _Live(scheme, path, None, verify=verify, owned=False)
        if not live:
            raise ValueError("no store given; serve at least one SHA-1 or NTLM store")
        self._live = live
        self._cache = _BodyCache(cache_size)

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

    def __repr__(self) -> str:
        schemes = ", ".join(f"{s}: {v.served.store.rows if v.served else 'no'} rows" for s, v in self._live.items())
        return f"<RangeApp {schemes}>"

    # ------------------------------------------------------------------------------------------------
    # WSGI

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = self._respond(environ)
        start_response(response.status, response.headers)
        if environ.get("REQUEST_METHOD") == "HEAD" or not response.body:
            return []
        return [response.body]

    def _respond(self, environ: WSGIEnvironment) -> _Response:
        """The response to one request, headers and full body (the body of a HEAD as for its GET)."""
        path: str = environ.get("PATH_INFO") or "/"
        method: str = environ.get("REQUEST_METHOD", "GET")
        if path.startswith("/range/"):
            route = "range"
        elif path in ("/", "/health"):
            route = "status"
        else:
            return _text("404 Not Found", "Not found: the range API answers GET /range/{5 hex characters}")
        if method == "OPTIONS":
            return self._preflight()
        if method not in ("GET", "HEAD"):
            return _text("405 Method Not Allowed", f"Only {_ALLOWED} are allowed here", ("Allow", _ALLOWED))
        if route == "status":
            return self._status()
        return self._range(path[len("/range/") :], environ)

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

    def _status(self) -> _Response:
        stores: dict[str, dict[str, object]] = {}
        for scheme, live in sorted(self._live.items()):
            served = live.current()
            entry: dict[str, object] = {"state": "serving" if served is not None else "unavailable"}
            if served is not None:
                entry.update(rows=served.store.rows, created=served.store.created, version=served.tag)
            if live.loading:
                entry["replacement"] = "verifying"
            elif live.refused is not None:
                entry["replacement"] = "refused"
            stores[scheme] = entry
        ok = all(entry["state"] == "serving" for entry in stores.values())
        state = {"status": "ok" if ok else "unavailable", "schemes": sorted(self._live), "stores": stores}
        body = json.dumps(state, sort_keys=True).encode()
        return _Response(
            "200 OK" if ok else "503 Service Unavailable",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("Access-Control-Allow-Origin", "*"),
            ],
            body,
        )

    def _range(self, candidate: str, environ: WSGIEnvironment) -> _Response:
        if len(candidate) != 5:  # also catches extra path segments: "/range/ABCDE/x"
            return _text("400 Bad Request", "The hash prefix was not in a valid format")
        if _HEX5.fullmatch(candidate) is None:
            return _text("400 Bad Request", "The hash prefix was not valid hexadecimal")
        prefix = candidate.upper()
        scheme = "sha1"
        for name, value in urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True):
            if name == "mode":  # the first one counts, as URLSearchParams.get
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
        logger.debug("range %s (%s)", prefix, scheme)

        padded = environ.get("HTTP_ADD_PADDING", "").strip().lower() == "true"
        gzipped = _accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
        base = f"{served.tag}-{prefix}"
        etag = f'W/"{base}-padded"' if padded else f'"{base}-gzip"' if gzipped else f'"{base}"'
        headers = [
            ("Cache-Control", f"{'private' if padded else 'public'}, max-age={MAX_AGE}"),
            ("ETag", etag),
            ("Last-Modified", served.last_modified),
            ("Vary", _VARY),
            ("Access-Control-Allow-Origin", "*"),
            # ETag is not a CORS-safelisted response header: without this a browser client cannot read it
            # to revalidate (Last-Modified is safelisted)
            ("Access-Control-Expose-Headers", "ETag"),
        ]
        if self._not_modified(environ, base, served.store.created):
            return _Response("304 Not Modified", headers)

        number = int(prefix, 16)
        key = (served.tag, number)
        body = self._cache.get(key)
        if body is None:
            body = _Body(served.store.range_body(number))
            self._cache.put(key, body)
        if padded:
            padding = _padding(served.store, number, bool(body.raw))
            fresh = gzipped and body.gzipped is None
            content = body.gzip_padded(padding) if gzipped else body.raw + padding
            if fresh:
                self._cache.grew(key, body)
        elif gzipped:
            fresh = body.gzipped is None
            content = body.gzip()
            if fresh:
                self._cache.grew(key, body)
        else:
            content = body.raw
        headers += [
            ("Content-Type", _TEXT),
            ("Content-Length", str(len(content))),
            ("X-Content-Type-Options", "nosniff"),
        ]
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
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


def _padding(store: RangeStore, prefix: int, after_lines: bool) -> bytes:
    """10..209 random ``SUFFIX:0`` lines of ``prefix`` that are not in ``store``, each led by CRLF.

    The CRLF before the first line is left out when there are no real lines, so that the body never starts
    with a blank line.
    """
    lines = PADDING_MIN + secrets.randbelow(PADDING_SPAN)
    size = store.digest_size
    digests = np.frombuffer(bytearray(secrets.token_bytes(lines * size)), dtype=np.uint8).reshape(lines, size)
    _set_prefix(digests, prefix)
    real, _ = store.rows_of(prefix)  # sorted rows of digest bytes [size - width:], this prefix only
    if len(real):
        # A random suffix equal to a real one is astronomically unlikely, but a padding line must never be one.
        width = real.shape[1]
        keys = np.ascontiguousarray(real).view(f"S{width}").ravel()
        while True:
            mine = np.ascontiguousarray(digests[:, size - width :]).view(f"S{width}").ravel()
            at = np.minimum(np.searchsorted(keys, mine), len(keys) - 1)
            clash = np.flatnonzero(keys[at] == mine)
            if not len(clash):
                break
            fresh = secrets.token_bytes(len(clash) * size)
            digests[clash] = np.frombuffer(fresh, dtype=np.uint8).reshape(len(clash), size)
            _set_prefix(digests, prefix)
    hexes = np.frombuffer(digests.tobytes().hex().upper().encode("ascii"), dtype=np.uint8).reshape(lines, 2 * size)
    suffix_length = 2 * size - 5
    out = np.empty((lines, suffix_length + 4), dtype=np.uint8)
    out[:, :2] = _CRLF
    out[:, 2 : 2 + suffix_length] = hexes[:, 5:]
    out[:, 2 + suffix_length :] = _PADDING_LINE_END
    data = out.tobytes()
    return data if after_lines else data[2:]


def _set_prefix(digests: npt.NDArray[np.uint8], prefix: int) -> None:
    digests[:, 0] = prefix >> 12
    digests[:, 1] = (prefix >> 4) & 0xFF
    digests[:, 2] = (digests[:, 2] & 0x0F) | ((prefix & 0x0F) << 4)


def make_app(
    stores: Sequence[RangeStore | str | os.PathLike[str]] | RangeStore | str | os.PathLike[str],
    *,
    cache_size: int = DEFAULT_CACHE_SIZE,
    verify: bool = True,
) -> RangeApp:
    """Return a WSGI app serving ``GET /range/{PREFIX}`` from ``stores`` (at most one per hash scheme).

    ``stores`` holds :class:`RangeStore` objects or paths (opened here with ``verify``, and closed by
    :meth:`RangeApp.close`). Each process keeps the bodies (raw and gzip) of up to ``cache_size`` recent
    prefixes, within 64 MiB: at HIBP's density (about 60 KB a range) some 500 prefixes, on a smaller corpus
    all of them. Two stores of one scheme raise ``ValueError``.
    """
    if isinstance(stores, RangeStore | str | os.PathLike):
        stores = [stores]
    if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
        raise ValueError(f"cache_size must be a non-negative integer, got {cache_size!r}")
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
        return RangeApp(given, cache_size=cache_size, owned=opened, verify=verify)
    except BaseException:
        for store in opened:
            store.close()
        raise


# ----------------------------------------------------------------------------------------------------
# Running it


def _cores() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(cores, 1)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


SERVERS: Final = ("auto", "granian", "gunicorn", "wsgiref")
#: Seconds a client has to send a request's headers (granian; wsgiref: per read) before it is disconnected.
HEADER_TIMEOUT: Final = 5.0
#: Connections one granian worker holds at once (idle ones included): well above what a few thousand idle
#: sockets take from a worker, at some 16 KiB of memory each only while they are held.
GRANIAN_CONNECTIONS: Final = 4096
#: wsgiref runs a thread per connection: at most this many connections in all, and per client address.
WSGIREF_CONNECTIONS: Final = 512
WSGIREF_PER_ADDRESS: Final = 64


def _raise_open_files_limit() -> None:
    """Let this process (and the workers it starts) hold as many sockets as the hard limit allows."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def serve(
    stores: Sequence[RangeStore | str | os.PathLike[str]] | RangeStore | str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    workers: int | None = None,
    threads: int = 4,
    cache_size: int = DEFAULT_CACHE_SIZE,
    server: str = "auto",
) -> None:
    """Serve ``stores`` over HTTP until SIGINT or SIGTERM, then return.

    ``server`` picks the HTTP server; ``"auto"`` takes the first installed of granian, gunicorn, wsgiref.
    The stores are opened and verified once, in this process, before any worker starts.

    - granian (Rust, the fastest here): ``workers`` processes (default: the usable cores), each with one
      Python thread; the workers map the already verified stores read-only (one copy in the page cache).
    - gunicorn: ``workers`` processes (default 2 x the usable cores) of ``threads`` threads, forked after
      the stores are opened, so they share the maps.
    - wsgiref (standard library, with a one-line notice under "auto"): one process, a thread per connection.

    Each worker keeps its own body cache. The listening URL is printed once the server accepts connections
    (port 0 picks a free port and prints the real one); no access log is kept. A port already in use raises
    ``OSError`` at once.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer from 0 to 65535, got {port!r}")
    if server not in SERVERS:
        raise ValueError(f"server must be one of {', '.join(SERVERS)}, got {server!r}")
    workers = None if workers is None else _positive_int("workers", workers)
    threads = _positive_int("threads", threads)
    if port:
        _check_bindable(host, port)
    _raise_open_files_limit()
    app = make_app(stores, cache_size=cache_size)
    try:
        kind, module = _pick_server(server)
        if kind == "granian":
            _serve_granian(module, app, host, port, workers or _cores(), cache_size)
        elif kind == "gunicorn":
            _serve_gunicorn(module, app, host, port, workers or 2 * _cores(), threads)
        else:
            _serve_wsgiref(app, host, port)
    finally:
        app.close()


def _pick_server(server: str) -> tuple[str, Any]:
    """The server to run and its module (None for wsgiref); "auto" says so when it falls back to wsgiref."""
    modules = {"granian": "granian", "gunicorn": "gunicorn.app.base"}
    for kind in ("granian", "gunicorn") if server == "auto" else (server,):
        if kind == "wsgiref":
            return kind, None
        try:
            return kind, importlib.import_module(modules[kind])
        except ImportError:
            if server != "auto":
                raise CredcheckError(f"{kind} is not installed (pip install 'credcheck[all]')") from None
    print(
        "credcheck: neither granian nor gunicorn is installed; serving from one process with the threaded "
        "wsgiref server (pip install 'credcheck[all]' for a production server)",
        file=sys.stderr,
        flush=True,
    )
    return "wsgiref", None


_STORES_ENV: Final = "CREDCHECK_SERVE_STORES"
_CACHE_ENV: Final = "CREDCHECK_SERVE_CACHE"


def _verified_identities(app: RangeApp) -> str:
    """What a worker needs to prove it maps the files this process verified: JSON, one entry per store."""
    entries = []
    for scheme, store in app.stores.items():
        entry: dict[str, Any] = {"scheme": scheme, "path": os.path.abspath(store.path), "header": store.header.hex()}
        entry.update(dataclasses.asdict(store.identity))
        entries.append(entry)
    return json.dumps(entries)


def _open_as_verified(entry: dict[str, Any]) -> RangeStore:
    """Open the store ``entry`` names, skipping the full verification only if it is the very file verified.

    The same device, inode, size, mtime and ctime (which no program can set back) and the same header mean
    the file the parent verified, untouched since; anything else is a different or changed file, and is
    verified here in full before it is served.
    """
    store = RangeStore(entry["path"], verify=False)
    expected = FileIdentity(**{field: entry[field] for field in FileIdentity.__dataclass_fields__})
    if store.identity == expected and store.header.hex() == entry["header"]:
        return store
    store.close()
    logger.warning("%s changed since it was verified: verifying it again in this worker", entry["path"])
    return RangeStore(entry["path"], verify=True)


def _granian_app() -> RangeApp:
    """The app each granian worker loads: the stores the parent verified, proven to be the same files.

    A store that is no longer the verified file and fails verification is not served: its scheme answers 503
    (and its path is watched) rather than the worker failing and being respawned in a loop.
    """
    stores: list[RangeStore] = []
    pending: list[tuple[str, str]] = []
    for entry in json.loads(os.environ[_STORES_ENV]):
        try:
            stores.append(_open_as_verified(entry))
        except (CredcheckError, OSError) as exc:
            logger.error("%s is not served by this worker: %s", entry["path"], exc)
            pending.append((entry["scheme"], entry["path"]))
    return RangeApp(stores, cache_size=int(os.environ[_CACHE_ENV]), owned=stores, pending=pending)


def _serve_granian(granian: Any, app: RangeApp, host: str, port: int, workers: int, cache_size: int) -> None:
    from granian.constants import HTTPModes, Interfaces, RuntimeModes
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    if port == 0:
        with socket.create_server((host, 0), family=socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            port = probe.getsockname()[1]
    # JSON, not a path list: a path may hold any character, os.pathsep included
    os.environ[_STORES_ENV] = _verified_identities(app)
    os.environ[_CACHE_ENV] = str(cache_size)
    runner = granian.Granian(
        f"{__name__}:_granian_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        # one Python thread per worker, a single-threaded Rust runtime and HTTP/1 only: on two cores this
        # measured 44k requests/s against 21k with granian's defaults (benchmarks/range_server.py)
        blocking_threads=1,
        runtime_mode=RuntimeModes.st,
        http=HTTPModes.http1,
        websockets=False,
        log_level=LogLevels.warning,
        respawn_failed_workers=True,
        # Slowloris: granian's backpressure is the number of connections a worker holds at once (not only
        # requests); its default, backlog / workers = 512 on two cores, let ~1,000 idle half-open sockets
        # stop the service. Idle connections cost a Rust task and a buffer each, so allow thousands, and
        # close any that has not sent its headers within a few seconds (idle keep-alive ones too).
        backpressure=GRANIAN_CONNECTIONS,
        http1_settings=HTTP1Settings(header_read_timeout=int(HEADER_TIMEOUT * 1000)),
    )
    banner = f"credcheck: serving {', '.join(app.stores)} ranges on {_url(host, port)} (granian, {workers} workers)"
    announcer = threading.Thread(target=_announce_when_listening, args=(host, port, banner), daemon=True)
    announcer.start()
    runner.serve()


def _announce_when_listening(host: str, port: int, banner: str, timeout: float = 60.0) -> None:
    """Print the banner once the port accepts connections (granian binds in its own time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                print(banner, flush=True)
                return
        except OSError:
            time.sleep(0.05)


def _check_bindable(host: str, port: int) -> None:
    """Fail at once on an address in use (gunicorn would retry for five seconds, then exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        probe = socket.create_server((host, port), family=family)  # SO_REUSEADDR, as both servers set it
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {_url(host, port)}: {exc.strerror or exc}") from None
    probe.close()


def _serve_gunicorn(base: Any, app: RangeApp, host: str, port: int, workers: int, threads: int) -> None:
    def when_ready(arbiter: Any) -> None:
        bound_host, bound_port = arbiter.LISTENERS[0].sock.getsockname()[:2]
        print(
            f"credcheck: serving {', '.join(app.stores)} ranges on {_url(bound_host, bound_port)} "
            f"(gunicorn, {workers} workers x {threads} threads)",
            flush=True,
        )

    options: dict[str, Any] = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "preload_app": True,  # stores opened once in the master; workers inherit the maps
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "credcheck",
        "graceful_timeout": 5,
        "keepalive": 5,
        "when_ready": when_ready,
        "control_socket_disable": True,  # gunicorn >= 25 would otherwise create ~/.gunicorn/gunicorn.ctl
    }
    if os.path.isdir("/dev/shm"):
        options["worker_tmp_dir"] = "/dev/shm"  # heartbeat files off the disk

    class _Gunicorn(base.BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in options.items():
                if name in self.cfg.settings:  # skip settings an older gunicorn does not know
                    self.cfg.set(name, value)
            _quiet_gunicorn_addresses()

        def load(self) -> RangeApp:
            return app

    master = os.getpid()
    try:
        _Gunicorn().run()
    except SystemExit as exc:
        # The arbiter ends with sys.exit() even on a clean stop: turn that into a return, in the master only.
        # A forked worker also unwinds through here when it ends, and must go on exiting.
        if os.getpid() != master:
            raise
        if exc.code not in (0, None):
            raise CredcheckError(f"gunicorn stopped with exit status {exc.code} (its log above says why)") from None


class _NoClientAddresses(logging.Filter):
    """Takes client addresses out of gunicorn's log lines ("Invalid request from ip=…"): none is recorded."""

    _ADDRESS = re.compile(r" from ip=\S+?(?=: |$)|\bip=\S+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._ADDRESS.sub("", message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _quiet_gunicorn_addresses() -> None:
    error_log = logging.getLogger("gunicorn.error")
    if not any(isinstance(f, _NoClientAddresses) for f in error_log.filters):
        error_log.addFilter(_NoClientAddresses())


class _QuietHandler(WSGIRequestHandler):
    timeout = HEADER_TIMEOUT  # on every read and write of the connection: an idle client is let go

    def log_message(self, format: str, *args: Any) -> None:
        """Keep no access log: client addresses and request lines are not recorded."""


_BUSY: Final = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 5\r\n\r\n"


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref with a thread per connection, bounded: in all, and per client address (slowloris).

    Each connection's reads and writes time out (``_QuietHandler.timeout``); a connection over a limit gets
    a 503 and is closed at once, so that one address holding many idle sockets leaves room for the others.
    """

    daemon_threads = True
    request_queue_size = 1024  # socketserver's default of 5 drops bursts of clients (and probes amid an attack)
    max_connections = WSGIREF_CONNECTIONS
    max_per_address = WSGIREF_PER_ADDRESS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._by_address: collections.Counter[str] = collections.Counter()
        self._counted: dict[Any, str] = {}
        self._limit_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        address = str(client_address[0]) if isinstance(client_address, tuple) else ""
        with self._limit_lock:
            if len(self._counted) < self.max_connections and self._by_address[address] < self.max_per_address:
                self._by_address[address] += 1
                self._counted[request] = address
                return True
        with contextlib.suppress(OSError):
            request.setblocking(False)
            request.send(_BUSY)
        return False

    def shutdown_request(self, request: Any) -> None:
        with self._limit_lock:
            address = self._counted.pop(request, None)
            if address is not None:
                self._by_address[address] -= 1
                if not self._by_address[address]:
                    del self._by_address[address]
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed (timed out, reset): no traceback, and no client address, on stderr."""
        kind = sys.exc_info()[0]
        logger.debug("a connection ended with %s", "an error" if kind is None else kind.__name__)


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _Stop(Exception):
    """Raised by the SIGTERM handler to leave ``serve_forever``."""


@contextlib.contextmanager
def serve_in_background(
    stores: Sequence[RangeStore | str | os.PathLike[str]] | RangeStore | str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
) -> Iterator[str]:
    """Serve ``stores`` from a background thread of this process and yield the base URL; stop on exit.

    A threaded wsgiref server, for demos, tests and embedding; use :func:`serve` for production.
    """
    app = make_app(stores)
    server_class = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer
    try:
        with make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler) as httpd:
            thread = threading.Thread(target=httpd.serve_forever, name="credcheck-range-server", daemon=True)
            thread.start()
            try:
                yield _url(host, httpd.server_port)
            finally:
                httpd.shutdown()
                thread.join()
    finally:
        app.close()


def _serve_wsgiref(app: RangeApp, host: str, port: int) -> None:
    server_class = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer
    with make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler) as httpd:

        def stop(signum: int, frame: FrameType | None) -> None:
            raise _Stop

        # Signal handlers can only be set from the main thread; elsewhere the caller owns the stopping.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None
        try:
            if main:
                signal.signal(signal.SIGTERM, stop)
            print(
                f"credcheck: serving {', '.join(app.stores)} ranges on {_url(host, httpd.server_port)} "
                "(wsgiref, threaded)",
                flush=True,
            )
            httpd.serve_forever()
        except (KeyboardInterrupt, _Stop):
            pass
        finally:
            if main and previous is not None:
                signal.signal(signal.SIGTERM, previous)
