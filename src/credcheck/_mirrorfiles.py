"""The files a mirror keeps beside its store: the journal of an unfinished mirror, and the store's ETags.

Layouts (docs/MIRROR.md): every part is little-endian and checksummed (xxh3-64), so that a record torn by a
kill, or a file that belongs to another store, is recognised and never trusted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import threading
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
import xxhash

from . import _atomic
from ._artifact import Description, source_digest
from ._http.urls import redacted
from .errors import ArtifactError, CredcheckError, InputError, StorageError
from .hashing import SCHEMES, scheme_by_code
from .store import HEADER_SIZE, PREFIXES, SKIP

__all__ = [
    "BODY",
    "ETAGS_MAGIC",
    "JOURNAL_MAGIC",
    "MAX_ETAG",
    "NOT_MODIFIED",
    "ETags",
    "Journal",
    "LoadedETags",
    "Range",
    "describe_etags",
    "describe_journal",
    "encode_record",
    "store_identity",
]

JOURNAL_MAGIC: Final = b"CCMIRJ1\n"
ETAGS_MAGIC: Final = b"CCETAGS\x00"
_ETAGS_VERSION: Final = 2  # 2: the fingerprint of the filter written with the store (1: none kept)
_ETAGS_HEAD: Final = struct.Struct("<8sHBxQQH")
MAX_ETAG: Final = 255
# a journal record: payload length, then the payload -- prefix, kind, etag length, rows -- and its checksum
_RECORD_HEAD: Final = struct.Struct("<IIBxHI")
_CHECKSUM: Final = struct.Struct("<Q")
BODY, NOT_MODIFIED = 1, 2


@dataclasses.dataclass(slots=True)
class Range:
    """One range as it goes into the journal: tails (digest bytes 2..) sorted, with counts, and its ETag."""

    prefix: int
    kind: int
    etag: bytes
    tails: bytes
    counts: bytes  # little-endian uint32
    rows: int


def encode_record(item: Range) -> bytes:
    """One journal record: the payload's length, the payload, and its checksum."""
    payload = b"".join(
        (
            _RECORD_HEAD.pack(0, item.prefix, item.kind, len(item.etag), item.rows)[4:],
            item.etag,
            item.tails,
            item.counts,
        )
    )
    return struct.pack("<I", len(payload)) + payload + _CHECKSUM.pack(xxhash.xxh3_64_intdigest(payload))


class Journal:
    """Append-only records of the ranges fetched so far, after a header naming what is being mirrored.

    Each record carries its own length and checksum, so a record torn by a kill (the last one) is detected
    on reopening and cut off; records are fsynced in batches, and once more when the mirror stops.
    """

    def __init__(self, path: str, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self.offsets = np.full(PREFIXES, -1, dtype=np.int64)  # where each prefix's record starts
        self.rows = np.zeros(PREFIXES, dtype=np.int64)
        self.kinds = np.zeros(PREFIXES, dtype=np.uint8)
        self.records = 0
        self._lock = threading.Lock()
        self._fd = -1
        self._end = 0
        self._dirty = False

    @staticmethod
    def _encode_header(header: dict[str, Any]) -> bytes:
        text = json.dumps(header, sort_keys=True).encode()
        head = JOURNAL_MAGIC + struct.pack("<I", len(text)) + text
        return head + _CHECKSUM.pack(xxhash.xxh3_64_intdigest(head))

    def create(self) -> None:
        try:
            self._fd = _atomic.create_private(self.path, os.O_RDWR)  # never through a symlink planted there
            head = self._encode_header(self.header)
            os.write(self._fd, head)
            os.fsync(self._fd)
        except OSError as exc:
            raise StorageError(f"cannot write the journal {self.path}: {exc.strerror or exc}") from exc
        self._end = len(head)

    def reopen(self, size: int) -> None:
        """Open an interrupted run's journal, check it is for this mirror, index its whole records."""
        try:
            self._fd = os.open(self.path, os.O_RDWR)
            found, at = _journal_header(self._fd, self.path)
            for key, value in self.header.items():
                if found.get(key) != value:
                    raise InputError(
                        f"{self.path} belongs to another mirror (its {key} differs): run that mirror again with "
                        f"--resume, or delete the journal to start this one over"
                    )
            self._end = _journal_records(self._fd, at, size, self._index)
            torn = os.fstat(self._fd).st_size > self._end
        except CredcheckError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot read the journal {self.path}: {exc.strerror or exc}") from exc
        if torn:
            try:
                os.ftruncate(self._fd, self._end)
                os.fsync(self._fd)
            except OSError as exc:
                raise StorageError(f"cannot repair the journal {self.path}: {exc.strerror or exc}") from exc

    def _index(self, prefix: int, kind: int, rows: int, at: int) -> None:
        if self.offsets[prefix] < 0:
            self.records += 1
        self.offsets[prefix], self.kinds[prefix], self.rows[prefix] = at, kind, rows

    def append(self, item: Range) -> None:
        record = encode_record(item)
        with self._lock:
            if self._fd < 0:  # closed under a worker that was still fetching: the range is simply not kept
                raise StorageError(f"the journal {self.path} is closed")
            try:
                _atomic.pwrite_all(self._fd, record, self._end)
            except OSError as exc:
                raise StorageError(f"cannot write the journal {self.path}: {exc.strerror or exc}") from exc
            self._index(item.prefix, item.kind, item.rows, self._end)
            self._end += len(record)
            self._dirty = True

    def sync(self) -> None:
        with self._lock:
            if self._dirty and self._fd >= 0:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    raise StorageError(f"cannot write the journal {self.path}: {exc.strerror or exc}") from exc
                self._dirty = False

    def read(self, prefix: int, size: int, *, with_rows: bool = True) -> tuple[bytes, bytes, bytes]:
        """The ETag, tails and counts of a journaled prefix (only its ETag unless ``with_rows``)."""
        at = int(self.offsets[prefix])
        rows = int(self.rows[prefix]) if with_rows else 0
        head = os.pread(self._fd, _RECORD_HEAD.size, at)
        etag_len = _RECORD_HEAD.unpack(head)[3]
        width = size - SKIP
        body = os.pread(self._fd, etag_len + rows * (width + 4), at + _RECORD_HEAD.size)
        return body[:etag_len], body[etag_len : etag_len + rows * width], body[etag_len + rows * width :]

    def close(self) -> None:
        with self._lock:  # never while a record is being written; no write after it (the fd may be reused)
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _journal_header(fd: int, path: str) -> tuple[dict[str, Any], int]:
    """What the journal open at ``fd`` mirrors (its header) and where its records start; StorageError if it is not
    a journal or its header is damaged."""
    at = len(JOURNAL_MAGIC) + 4
    head = os.pread(fd, at, 0)
    if head[: len(JOURNAL_MAGIC)] != JOURNAL_MAGIC or len(head) < at:
        raise StorageError(f"{path}: not a credcheck mirror journal; delete it to start over")
    (length,) = struct.unpack_from("<I", head, len(JOURNAL_MAGIC))
    # a length past the file's end is damage: never a read (and a buffer) of the gigabytes it may claim
    rest = os.pread(fd, length + 8, at) if at + length + 8 <= os.fstat(fd).st_size else b""
    whole = len(rest) == length + 8
    if not whole or _CHECKSUM.unpack_from(rest, length)[0] != xxhash.xxh3_64_intdigest(head + rest[:length]):
        raise StorageError(f"{path}: the journal's header is damaged; delete it to start over")
    try:
        found = json.loads(rest[:length])
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise StorageError(f"{path}: the journal's header is damaged; delete it to start over")
    return found, at + length + 8


def _journal_records(fd: int, at: int, size: int, found: Callable[[int, int, int, int], None]) -> int:
    """Walk the journal's records from ``at`` on (digests of ``size`` bytes), calling ``found(prefix, kind, rows,
    offset)`` for each whole one; return where the last whole record ends. A record cut short or failing its
    checksum (a kill mid-write, or damage) ends the walk: it and whatever follows are not taken."""
    end = os.fstat(fd).st_size
    while at + 4 <= end:
        (length,) = struct.unpack("<I", os.pread(fd, 4, at))
        stop = at + 4 + length
        if length < _RECORD_HEAD.size - 4 or stop + 8 > end:
            break  # torn: the last record was cut short
        record = os.pread(fd, length + 8, at + 4)
        payload = record[:length]
        if len(record) != length + 8 or _CHECKSUM.unpack_from(record, length)[0] != xxhash.xxh3_64_intdigest(payload):
            break  # torn or damaged: this and whatever follows is fetched again
        _, prefix, kind, etag_len, rows = _RECORD_HEAD.unpack_from(b"\0\0\0\0" + payload[: _RECORD_HEAD.size - 4])
        if (
            prefix >= PREFIXES
            or kind not in (BODY, NOT_MODIFIED)
            or len(payload) != (_RECORD_HEAD.size - 4 + etag_len + rows * (size - SKIP + 4))
        ):
            break
        found(prefix, kind, rows, at)
        at = stop + 8
    return at


def describe_journal(info: Description) -> None:
    """Fill ``info`` for a mirror's journal (``STORE.mirror-journal``): the mirror it belongs to and the ranges it
    holds; it verifies when it ends with a whole record (a resume takes every range in it)."""
    info.kind, info.version = "mirror journal", 1
    with _atomic.open_for_reading(info.path, "journal") as fh:
        fd = fh.fileno()
        header, at = _journal_header(fd, info.path)
        scheme = SCHEMES.get(str(header.get("scheme")))
        base = header.get("base")
        info.facts.update(
            scheme=header.get("scheme"),
            url=redacted(str(header.get("url"))),  # never a user:password@ the URL was given with
            update=header.get("update"),
            base=f"{base:016x}" if isinstance(base, int) and base else None,  # the store it started from (0: none)
        )
        if scheme is None:
            raise ArtifactError(f"{info.path}: the journal names an unknown hash scheme")
        prefixes: set[int] = set()
        counts = {"records": 0, "not_modified": 0, "rows": 0}

        def count(prefix: int, kind: int, rows: int, offset: int) -> None:
            prefixes.add(prefix)
            counts["records"] += 1
            counts["not_modified"] += kind == NOT_MODIFIED
            counts["rows"] += rows

        whole = _journal_records(fd, at, scheme.digest_size, count)
        size = os.fstat(fd).st_size
    info.facts.update(ranges=len(prefixes), **counts)

    def ends_with_a_whole_record() -> None:
        if whole != size:
            raise ArtifactError(
                f"{info.path}: the last {size - whole:,} bytes are not a whole record (a mirror stopped mid-write, "
                "or damage): --resume cuts them off and fetches those ranges again"
            )

    info.check(ends_with_a_whole_record)


def store_identity(path: str) -> int:
    """A fingerprint of a store or filter file: the digest of its 128-byte header, which holds the checksums of
    everything after it (``_artifact.source_digest``: what a derived file records of its source)."""
    with open(path, "rb") as fh:
        return source_digest(fh.read(HEADER_SIZE))


class LoadedETags(NamedTuple):
    """What :meth:`ETags.load` found: the ETags (None if unusable, ``why`` says why) and whether the file names
    the store's content as it is now."""

    etags: ETags | None
    why: str
    bound: bool
    #: The fingerprint of the filter the mirror wrote with the store (0: none).
    filter: int = 0


class ETags:
    """Each prefix's ETag (or none), as read from or written to the sidecar ``STORE.etags``."""

    def __init__(self, lengths: npt.NDArray[np.uint8] | None = None, blob: bytes = b"") -> None:
        self.lengths = np.zeros(PREFIXES, dtype=np.uint8) if lengths is None else lengths
        self.starts = np.zeros(PREFIXES + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.starts[1:])
        self.blob = blob

    def get(self, prefix: int) -> bytes:
        return self.blob[int(self.starts[prefix]) : int(self.starts[prefix + 1])]

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.lengths))

    @classmethod
    def load(cls, path: str, scheme: str, identity: int, url: str) -> LoadedETags:
        """The sidecar of a store: whether it names the store's content as it is now (``bound``: a mirror wrote
        the store so, and nothing changed it since), and its ETags if they can be used for this URL."""
        name = os.path.basename(path)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return LoadedETags(None, f"no ETags file beside it ({name} is missing)", bound=False)
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            head = _etags_header(data, name)
        except ArtifactError as exc:
            return LoadedETags(None, str(exc), bound=False)
        if head["scheme"] != scheme:
            return LoadedETags(None, f"{name} is of another hash scheme", bound=False)
        if head["store"] != identity:
            return LoadedETags(None, f"{name} was written for other contents of the store", bound=False)
        if head["url"] != url:
            return LoadedETags(None, "the store's ETags came from another URL", bound=True, filter=head["filter"])
        try:
            lengths, blob = _etags_body(data, head, name)
        except ArtifactError as exc:
            return LoadedETags(None, str(exc), bound=True, filter=head["filter"])
        return LoadedETags(cls(lengths, blob), "", bound=True, filter=head["filter"])

    @staticmethod
    def encode(scheme: str, identity: int, url: str, etags: list[bytes], filter_identity: int = 0) -> list[bytes]:
        """The sidecar's bytes: the fingerprints of the store (and of the filter written with it, 0 if none)."""
        shown = url.encode()
        head = _ETAGS_HEAD.pack(
            ETAGS_MAGIC, _ETAGS_VERSION, SCHEMES[scheme].code, identity, filter_identity, len(shown)
        )
        lengths = np.fromiter((len(e) for e in etags), dtype=np.uint8, count=PREFIXES).tobytes()
        parts = [head, shown, lengths, b"".join(etags)]
        digest = xxhash.xxh3_64()
        for part in parts:
            digest.update(part)
        return [*parts, _CHECKSUM.pack(digest.intdigest())]


def _etags_header(data: bytes, name: str) -> dict[str, Any]:
    """The fields of an ETags file's header (its whole checksum checked first); ArtifactError naming what is wrong."""
    if len(data) < _ETAGS_HEAD.size + 8 or data[:8] != ETAGS_MAGIC:
        raise ArtifactError(f"{name} is not a credcheck ETag file")
    if _CHECKSUM.unpack_from(data, len(data) - 8)[0] != xxhash.xxh3_64_intdigest(data[:-8]):
        raise ArtifactError(f"{name} is damaged (checksum mismatch)")
    _, version, code, store, made_filter, url_len = _ETAGS_HEAD.unpack_from(data)
    info = scheme_by_code(code)
    if version != _ETAGS_VERSION or info is None:
        raise ArtifactError(f"{name} is of another version ({version}) or hash scheme ({code})")
    at = _ETAGS_HEAD.size + url_len
    return {
        "version": version,
        "scheme": info.name,
        "store": store,
        "filter": made_filter,
        "url": data[_ETAGS_HEAD.size : at].decode("utf-8", "replace"),
        "lengths_at": at,
    }


def _etags_body(data: bytes, head: dict[str, Any], name: str) -> tuple[npt.NDArray[np.uint8], bytes]:
    """An ETags file's ETag lengths (one a prefix) and the ETags; ArtifactError if they do not add up."""
    at = head["lengths_at"]
    if len(data) < at + PREFIXES + 8:
        raise ArtifactError(f"{name} is inconsistent (shorter than its ETag lengths)")
    lengths = np.frombuffer(data, dtype=np.uint8, count=PREFIXES, offset=at).copy()
    blob = data[at + PREFIXES : -8]
    printable = np.frombuffer(blob, dtype=np.uint8)
    if int(lengths.sum(dtype=np.int64)) != len(blob) or bool(((printable < 0x20) | (printable > 0x7E)).any()):
        raise ArtifactError(f"{name} is inconsistent")
    return lengths, blob


def describe_etags(info: Description) -> None:
    """Fill ``info`` for a store's ETags file (``STORE.etags``): the URL and scheme they came from and how many
    ranges have one; it verifies when its checksum and lengths hold. Whether it was written for the store beside it
    as that store is now (what ``mirror --update`` requires) is a fact, not a failure: a store merged into since
    is still a store."""
    info.kind, info.version = "mirror ETags file", _ETAGS_VERSION
    with _atomic.open_for_reading(info.path, "ETags") as fh:
        data = fh.read()
    head = _etags_header(data, info.path)
    info.facts.update(scheme=head["scheme"], url=redacted(head["url"]), with_filter=head["filter"] != 0)
    store = info.path.removesuffix(".etags") if info.path.endswith(".etags") else None
    if store is not None and os.path.isfile(store):
        info.facts["store"] = store
        info.facts["store_as_written"] = store_identity(store) == head["store"]

    def lengths_add_up() -> None:
        lengths, _ = _etags_body(data, head, info.path)
        info.facts["etags"] = int(np.count_nonzero(lengths))

    info.check(lengths_add_up)
