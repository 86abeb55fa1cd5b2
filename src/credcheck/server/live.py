"""The stores a range app serves: each one verified, watched on every request, and hot reloaded; and the
proof a worker process gives that it maps the very file its parent verified.

A store written to in place is never read again (its scheme answers 503 until a verified file is back); a
new file renamed over the path is verified in the background and then served (docs/DEPLOY.md).
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import xxhash

from ..errors import CredcheckError
from ..store import PREFIXES, FileIdentity, RangeStore

__all__ = ["Live", "Served", "http_date", "open_as_verified", "verified_identities"]

logger = logging.getLogger("credcheck.server")

#: Seconds between two looks at a served path for a replacement (the open file is checked on every request).
WATCH_INTERVAL: Final = 0.2


@dataclasses.dataclass(frozen=True, slots=True)
class Served:
    """A store and what every response from it repeats."""

    store: RangeStore
    tag: str  # identifies the store's content: scheme plus a digest of its header fields and index
    last_modified: str
    #: Each range's content tag as a number once it was computed (0: not yet): 8 bytes a prefix, zero pages
    #: until touched, so that a request does not hash a 60 KB range's rows again.
    range_tags: memoryview = dataclasses.field(repr=False, compare=False)

    @classmethod
    def of(cls, store: RangeStore) -> Served:
        tags = np.zeros(PREFIXES, dtype=np.uint64).data.cast("B").cast("Q")
        return cls(store, _store_tag(store), http_date(store.created), tags)

    def range_tag(self, prefix: int) -> str:
        """A tag of one range's content: xxh3-64 of its suffix rows and counts, in hex (an ETag's core).

        A rebuild that leaves a range as it was leaves its tag too (so a mirror's ``--update`` and a CDN get
        a 304 for it). Computed on a range's first request in this process (a few microseconds for 60 KB,
        most of a request's cost) and kept.
        """
        known: int = self.range_tags[prefix]
        if not known:
            suffixes, counts = self.store.rows_of(prefix)
            digest = xxhash.xxh3_64(suffixes.data)
            digest.update(counts.data)
            known = digest.intdigest()
            self.range_tags[prefix] = known  # a tag of 0 is computed again each time: still right
        return f"{known:016x}"


class Live:
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
        self.served: Served | None = None if store is None else Served.of(store)
        self.owned = owned and store is not None
        self.broken: str | None = None  # why the file being served can no longer be (None: it can)
        self.refused: FileIdentity | None = None  # the last file at the path that failed verification
        self.loading = False
        self._lock = threading.Lock()
        self._next_look = 0.0  # when to look at the path again (time.monotonic)

    def current(self) -> Served | None:
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
        # The open file is checked on every request (a wrong body is never sent); the path, for a new file
        # renamed over it, a few times a second (a stat per request would cost as much as the check above).
        now = time.monotonic()
        if served is None or now >= self._next_look:
            self._next_look = now + WATCH_INTERVAL
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
            self._refuse(seen, content=isinstance(exc, CredcheckError))
            return
        if store.scheme != self.scheme:
            logger.warning("%s: the new file is a %s store, not %s: not served", self.path, store.scheme, self.scheme)
            store.close()
            self._refuse(seen, content=True)
            return
        # The previous store is not closed: a request in another thread may still be reading it; it is
        # unmapped when the last reference goes.
        self.served, self.owned, self.broken, self.refused = Served.of(store), True, None, None
        self.loading = False
        logger.warning("%s: now serving the new file (%d rows)", self.path, store.rows)

    def _refuse(self, seen: FileIdentity, *, content: bool) -> None:
        """The file at the path failed: not tried again until it changes once more. If its contents failed
        and it is the very file being served (edited in place, e.g. with its mtime put back, which only its
        ctime shows), nothing more is answered from it: 503 until a verified file is there."""
        served = self.served
        if (
            content
            and served is not None
            and (seen.device, seen.inode) == (served.store.identity.device, served.store.identity.inode)
        ):
            logger.warning(
                "%s was changed in place and no longer verifies: answering 503 until it is replaced", self.path
            )
            self.broken = "it was changed in place and no longer verifies"
            self.served = None  # not closed: a request in another thread may still be reading it
        self.refused = seen
        self.loading = False

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


def http_date(seconds: int) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


def verified_identities(stores: Iterable[RangeStore]) -> str:
    """What another process needs to prove it maps the files this one verified: JSON, one entry per store."""
    entries = []
    for store in stores:
        entry: dict[str, Any] = {
            "scheme": store.scheme,
            "path": os.path.abspath(store.path),
            "header": store.header.hex(),
        }
        entry.update(dataclasses.asdict(store.identity))
        entries.append(entry)
    return json.dumps(entries)


def open_as_verified(entry: dict[str, Any]) -> RangeStore:
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
