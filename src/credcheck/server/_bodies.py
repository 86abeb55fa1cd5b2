"""Range bodies as they go out: each prefix's body and its gzip encoding, made once and kept in an LRU.

A padded gzip response reuses the cached compressed real lines and compresses only the padding (gzip lets a
deflate stream continue after a sync flush, and CRC-32 can be extended). The cache is bounded in entries and
in the bytes an entry really holds.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import struct
import sys
import threading
import zlib
from typing import Any, Final

__all__ = ["CACHE_BYTES", "DEFAULT_CACHE_SIZE", "Body", "BodyCache", "accepts_gzip"]

DEFAULT_CACHE_SIZE: Final = 1 << 20  # every prefix may be cached ...
CACHE_BYTES: Final = 64 << 20  # ... within 64 MiB of bodies per worker process

# RFC 9110 qvalue: 0 to 1 with at most three decimals
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?", re.ASCII)
# A gzip member header with no name and mtime 0, so that every worker sends the same bytes for one ETag.
_GZIP_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
# What a cache entry holds besides its bodies' bytes objects: the Body (72 bytes), the key tuple and its int
# (56 + 28), the OrderedDict's slot, hash entry and link (about 100), the (body, size) pair and its int (about
# 90), rounded up for the allocator.
_ENTRY_OVERHEAD: Final = 384


def _deflater() -> Any:
    # Huffman-only: hex text has few useful repeats, and on range bodies this is both ~4x faster than the
    # default strategy and a few percent smaller.
    return zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_HUFFMAN_ONLY)


@dataclasses.dataclass(slots=True)
class Body:
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

    @staticmethod
    def holds(raw: bytes | memoryview, member: bytes | memoryview, crc: int, deflated: int) -> bool:
        """Whether ``member`` is the gzip member :meth:`gzip` makes of ``raw``, with ``crc`` and ``deflated``
        right: our header, a deflate stream that gives exactly ``raw`` up to its sync flush ``deflated`` bytes
        in (where :meth:`gzip_padded` continues it, so the stream must not end there) and nothing after it,
        and a trailer of ``raw``'s CRC-32 and length. One inflate; nothing is compressed."""
        size, head_end = len(member), len(_GZIP_HEADER) + deflated
        if size < head_end + 8 or member[: len(_GZIP_HEADER)] != _GZIP_HEADER or crc != zlib.crc32(raw):
            return False
        if member[size - 8 :] != struct.pack("<II", crc, len(raw) & 0xFFFFFFFF):
            return False
        if deflated < 4 or member[head_end - 4 : head_end] != b"\x00\x00\xff\xff":  # a sync flush ends so
            return False
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            if inflater.decompress(member[len(_GZIP_HEADER) : head_end], len(raw) + 1) != raw or inflater.eof:
                return False
            if inflater.unconsumed_tail or inflater.decompress(member[head_end : size - 8], 1):
                return False
        except zlib.error:
            return False
        return inflater.eof and not inflater.unused_data

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


class BodyCache:
    """A thread-safe LRU of :class:`Body` keyed by (store tag, prefix), bounded in entries and in bytes.

    The bytes counted are what an entry really holds (:meth:`Body.footprint`: both encodings once made, the
    objects around them, the key and the cache's own bookkeeping), so that the bound holds whatever the
    size of the bodies: at a small corpus' few dozen bytes a range, the overheads are most of it.
    """

    def __init__(self, size: int, max_bytes: int = CACHE_BYTES) -> None:
        self.size, self.max_bytes, self.bytes = size, max_bytes, 0
        self._entries: collections.OrderedDict[tuple[str, int], tuple[Body, int]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, int]) -> Body | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: tuple[str, int], body: Body) -> None:
        if not self.size:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._store(key, body)

    def grew(self, key: tuple[str, int], body: Body) -> None:
        """Count ``body`` again after it gained its gzip encoding (if it is still the one cached)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is body:
                self.bytes -= entry[1]
                self._store(key, body)

    def _store(self, key: tuple[str, int], body: Body) -> None:
        footprint = body.footprint()
        self._entries[key] = (body, footprint)
        self.bytes += footprint
        while len(self._entries) > self.size or (self.bytes > self.max_bytes and len(self._entries) > 1):
            _, (_, evicted) = self._entries.popitem(last=False)
            self.bytes -= evicted


def accepts_gzip(header: str) -> bool:
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
