"""The stores a range app serves: each one verified, watched on every request and hot reloaded (the artefact
lifecycle's :class:`~credcheck._artifact.Watched`), with what every response from it repeats; and the proof a
worker process gives that it maps the very file its parent verified.

A store written to in place is never read again (its scheme answers 503 until a verified file is back); a
new file renamed over the path is verified in the background and then served (docs/DEPLOY.md).
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import os
import zlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np
import xxhash

from .._artifact import FileIdentity, Mapped, Over, Watched
from ..store import PREFIXES, RangeStore

__all__ = ["Served", "http_date", "open_as_verified", "verified_identities", "verified_identity", "watch_store"]

logger = logging.getLogger("credcheck.server")


@dataclasses.dataclass(frozen=True, slots=True)
class Served(Over):
    """A store and what every response from it repeats."""

    store: RangeStore
    tag: str  # identifies the store's content: scheme plus a digest of its header fields and index
    last_modified: str
    #: The store's corpus version (its header's digest), sent with every range as X-Credcheck-Corpus.
    corpus: str
    #: Each range's content tag as a number once it was computed (0: not yet): 8 bytes a prefix, zero pages
    #: until touched, so that a request does not hash a 60 KB range's rows again.
    range_tags: memoryview = dataclasses.field(repr=False, compare=False)

    @classmethod
    def of(cls, store: RangeStore) -> Served:
        tags = np.zeros(PREFIXES, dtype=np.uint64).data.cast("B").cast("Q")
        return cls(store, _store_tag(store), http_date(store.created), store.version, tags)

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


def watch_store(scheme: str, path: str, store: RangeStore | None, *, verify: bool, owned: bool) -> Watched[Served]:
    """The served store at ``path``: checked on every request and hot reloaded (:class:`~credcheck._artifact.Watched`);
    a new file must hold ``scheme`` hashes to be served."""

    def load(name: str) -> Served:
        return Served.of(RangeStore(name, verify=verify))

    def accept(served: Served) -> str | None:
        found = served.store.scheme
        return None if found == scheme else f"it is a {found} store, not {scheme}"

    first = None if store is None else Served.of(store)
    return Watched(path, first, load=load, accept=accept, owned=owned, role=scheme)


def _store_tag(store: RangeStore) -> str:
    # The header names the build: row count, min_count, build time and the checksums of the index, the
    # hashes and the counts, so any change of content gives a new tag (without reading the file per request).
    digest = xxhash.xxh3_64(store.header)
    # zlib's version too: a strong ETag promises the same gzip bytes from every server behind one name.
    digest.update(zlib.ZLIB_RUNTIME_VERSION.encode())
    return f"{store.scheme}-{digest.hexdigest()}"


def http_date(seconds: int) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


M = TypeVar("M", bound=Mapped)


def verified_identity(artefact: Mapped) -> dict[str, Any]:
    """What another process needs to prove it maps the very file this one verified (and has open): its path,
    identity and header, as JSON-ready data. Taken from the open file, never from the path, which may name
    another file by now."""
    entry: dict[str, Any] = {"path": os.path.abspath(artefact.path), "header": artefact.header.hex()}
    entry.update(dataclasses.asdict(artefact.identity))
    return entry


def verified_identities(stores: Iterable[RangeStore]) -> str:
    """:func:`verified_identity` of each store with its scheme: JSON, one entry per store."""
    return json.dumps([{"scheme": store.scheme, **verified_identity(store)} for store in stores])


def open_as_verified(entry: dict[str, Any], opener: Callable[..., M] = RangeStore) -> M:  # type: ignore[assignment]
    """Open the file ``entry`` names (a range store, or what ``opener`` opens: ``opener(path, verify=...)``),
    skipping the full verification only if it is the very file verified.

    The same device, inode, size, mtime and ctime (which no program can set back) and the same header, as the
    file opened here shows them, mean the file the parent verified, untouched since; anything else is a
    different or changed file, and is verified here in full before it is served.
    """
    opened = opener(entry["path"], verify=False)
    expected = FileIdentity(**{field: entry[field] for field in FileIdentity.__dataclass_fields__})
    if opened.identity == expected and opened.header.hex() == entry["header"]:
        return opened
    opened.close()
    logger.warning("%s changed since it was verified: verifying it again in this worker", entry["path"])
    return opener(entry["path"], verify=True)
