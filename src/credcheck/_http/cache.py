"""The range cache: parsed ranges kept as ``Cache-Control`` allows, revalidated with ``ETag``/``Last-Modified``."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from contextlib import AbstractContextManager

__all__ = ["CacheEntry", "RangeCache", "freshness"]


def freshness(headers: Mapping[str, str], default: float) -> float | None:
    """Seconds a response stays fresh in a private cache, or ``None`` if it must not be stored."""
    header = headers.get("Cache-Control")
    if header is None:
        return default
    lifetime = 0.0
    for directive in header.split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name == "no-store":
            return None
        if name == "no-cache":
            return 0.0
        if name == "max-age":
            value = value.strip().strip('"')
            lifetime = float(value) if value.isascii() and value.isdigit() else 0.0
    age = headers.get("Age", "").strip()
    if age.isascii() and age.isdigit():
        lifetime -= float(age)
    return max(lifetime, 0.0)


@dataclasses.dataclass(slots=True)
class CacheEntry:
    """A parsed range and what keeps it fresh: until ``expires`` (on the flow's clock), then revalidated."""

    counts: dict[str, int]
    expires: float
    lifetime: float
    etag: str | None
    last_modified: str | None


class RangeCache:
    """A small LRU of parsed ranges, keyed by (prefix, scheme), shared by the flows of one client.

    ``lock`` guards it: the driver's (a ``threading.Lock`` where flows run in several threads at once), so this
    module, like every module of the protocol, starts no thread and imports no threading.
    """

    def __init__(self, size: int, lock: AbstractContextManager[object]) -> None:
        self.size = size
        self._entries: collections.OrderedDict[tuple[str, str], CacheEntry] = collections.OrderedDict()
        self._lock = lock

    def get(self, key: tuple[str, str]) -> CacheEntry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str], entry: CacheEntry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def discard(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._entries.pop(key, None)
