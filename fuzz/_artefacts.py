"""Artefact helpers shared by fuzz_artifacts.py and fuzz_artifacts_mutate.py (not a harness itself).

Header layouts are taken from docs/FORMAT.md (re-declared here so that a bug in the library's own struct
definitions cannot hide itself), plus the checks run on anything that opens.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct

import _common
import numpy as np
import xxhash
from _common import Finding

import credcheck
from credcheck._http.body import parse_range_body

FILTER_MAGIC = b"CCBLOOM\x00"
STORE_MAGIC = b"CCSTORE\x00"
FILTER_HEAD = struct.Struct("<8sHBBIQQQdQQQ")  # ... body_len, body_checksum
STORE_HEAD = struct.Struct("<8sHBBIQQQQQQ")  # ... index, hash, count checksums
FILTER_FIELDS = ("magic", "version", "scheme", "k", "key_size", "m", "capacity", "items", "fp_rate", "min_count",
                 "body_len", "body_checksum")  # fmt: skip
STORE_FIELDS = ("magic", "version", "scheme", "prefix_bits", "digest_size", "rows", "min_count", "created",
                "index_checksum", "hash_checksum", "count_checksum")  # fmt: skip
HEADER = 128
PREFIXES = 1 << 20
INDEX_BYTES = (PREFIXES + 1) * 8
KEY_SIZES = {1: 20, 2: 16, 3: 16}
DIGEST_SIZES = {1: 20, 2: 16}


def resign_header(buf: bytearray) -> None:
    """Write xxh3_64 of bytes 0-119 at 120, as a writer would."""
    if len(buf) >= HEADER:
        struct.pack_into("<Q", buf, 120, xxhash.xxh3_64_intdigest(bytes(buf[:120])))


def store_layout(rows: int, size: int) -> tuple[int, int, int]:
    suffixes = HEADER + INDEX_BYTES
    counts = suffixes + rows * (size - 2)
    counts += -counts % 8
    return suffixes, counts, counts + rows * 4


def resign_bodies(buf: bytearray) -> None:
    """Recompute the body/section checksums the header points at (where the header's numbers allow), then the
    header checksum: the file becomes self-consistent, whatever its content means."""
    if len(buf) < HEADER:
        return
    if buf[:8] == FILTER_MAGIC:
        body_len = struct.unpack_from("<Q", buf, 56)[0]
        if HEADER + body_len <= len(buf):
            struct.pack_into("<Q", buf, 64, xxhash.xxh3_64_intdigest(bytes(buf[HEADER : HEADER + body_len])))
    elif buf[:8] == STORE_MAGIC:
        size, rows = struct.unpack_from("<IQ", buf, 12)
        if size in (16, 20) and rows < 1 << 32:
            suffix_at, counts_at, end = store_layout(rows, size)
            if end <= len(buf):
                parts = (
                    buf[HEADER : HEADER + INDEX_BYTES],
                    buf[suffix_at : suffix_at + rows * (size - 2)],
                    buf[counts_at : counts_at + rows * 4],
                )
                for at, part in zip((40, 48, 56), parts, strict=True):
                    struct.pack_into("<Q", buf, at, xxhash.xxh3_64_intdigest(bytes(part)))
    resign_header(buf)


def filter_meaning(data: bytes) -> tuple[object, ...]:
    """What a filter file says: every header field (the header checksum aside) and the body."""
    fields = FILTER_HEAD.unpack_from(data)
    body_len = fields[10]
    return (*fields, bytes(data[HEADER : HEADER + body_len]))


def store_meaning(data: bytes) -> tuple[object, ...]:
    """What a store file says: every header field and the three sections; the alignment gap between the hash
    and count sections (at most 7 bytes, covered by no checksum, never read) carries no meaning."""
    fields = STORE_HEAD.unpack_from(data)
    size, rows = fields[4], fields[5]
    suffix_at, counts_at, end = store_layout(rows, size)
    return (
        *fields,
        bytes(data[HEADER:suffix_at]),
        bytes(data[suffix_at : suffix_at + rows * (size - 2)]),
        bytes(data[counts_at:end]),
    )


class LookupFailed(Exception):
    """A file opened, then a lookup on it raised ``exc``."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(repr(exc))
        self.exc = exc


def exercise_filter(bf: credcheck.BloomFilter, probe: bytes) -> None:
    """Lookups on an opened filter: one key, a batch, repr, the fill estimate."""
    size = bf.key_size
    key = (probe * (size // max(1, len(probe)) + 1))[:size] if probe else bytes(size)
    _ = key in bf
    keys = np.frombuffer(hashlib.sha1(key).digest()[:size] + key, dtype=np.uint8).reshape(2, size)
    got = bf.contains_many(keys)
    if got.dtype != np.bool_ or got.shape != (2,):
        raise Finding("contains_many-shape: wrong result shape or type")
    repr(bf)


def exercise_store(st: credcheck.RangeStore, probe: bytes) -> None:
    """Lookups on an opened store: a digest, a range body (must parse), the first and last prefix."""
    size = st.digest_size
    digest = (probe + bytes(size))[:size]
    count = st.lookup(digest)
    if not isinstance(count, int) or count < 0:
        raise Finding("lookup-type: lookup returned a non-count")
    prefix = int.from_bytes(digest[:3], "big") >> 4
    for p in (prefix, 0, PREFIXES - 1):
        body = st.range_body(p)
        parsed = parse_range_body(body, st.suffix_length)
        rows, _counts = st.rows_of(p)
        if len(parsed) > len(rows):
            raise Finding("range-body: more lines than rows")
    repr(st)


def exercise_checker(checker: credcheck.Checker, probe: bytes) -> None:
    checker.check("password")
    checker.check_many(["password", probe.decode("latin-1")])
    width = 40 if checker.scheme == "sha1" else 32
    checker.check_hash(probe.hex().upper().ljust(width, "0")[:width])
    repr(checker)


def open_all(path: str, probe: bytes, verify: bool) -> dict[str, object]:
    """Open ``path`` every way a user can; each entry is "opened", the exception raised on opening, or
    :class:`LookupFailed` when it opened and a lookup then raised."""
    out: dict[str, object] = {}
    attempts = (
        ("BloomFilter.open", lambda: credcheck.BloomFilter.open(path, verify=verify), exercise_filter),
        ("RangeStore", lambda: credcheck.RangeStore(path, verify=verify), exercise_store),
        ("credcheck.open", lambda: credcheck.open(path, verify=verify), exercise_checker),
    )
    for name, opener, exercise in attempts:
        try:
            obj = opener()
        except Exception as exc:
            out[name] = exc
            continue
        try:
            exercise(obj, probe)  # type: ignore[arg-type]
            out[name] = "opened"
        except Exception as exc:  # opened, then a lookup failed: whatever it raised, a finding
            out[name] = LookupFailed(exc)
        finally:
            obj.close()  # type: ignore[attr-defined]
    return out


def open_and_record(harness: str, path: str, probe: bytes, data: bytes) -> dict[str, object]:
    """Open ``path`` with every reader, verified and not; record as findings any outcome other than an
    answer or a CredcheckError; return the outcomes by ``"{reader}(verify={flag})"``."""
    results: dict[str, object] = {}
    for verify in (True, False):
        for name, outcome in open_all(path, probe, verify).items():
            label = f"{name}(verify={verify})"
            results[label] = outcome
            if isinstance(outcome, LookupFailed):
                _common.finding(harness, label + "-then-lookup", outcome.exc, data)
            elif isinstance(outcome, BaseException) and not isinstance(outcome, credcheck.CredcheckError):
                _common.finding(harness, label, outcome, data)
    return results


def write(path: str, data: bytes | bytearray) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def reference_open(buf: bytes | bytearray, verify: bool) -> str | None:
    """Which artefact docs/FORMAT.md says ``buf`` is ("filter", "store"), or None if a reader must refuse it.

    Written from the format page's "Checking a file" lists, not from the library's code; ``verify=False``
    skips only the body / section checksums.
    """
    data = bytes(buf)
    if len(data) < HEADER:
        return None
    if xxhash.xxh3_64_intdigest(data[:120]) != struct.unpack_from("<Q", data, 120)[0]:
        return None
    if data[:8] == FILTER_MAGIC:
        _, version, scheme, k, key_size, m, cap, _items, fp, minc, body_len, body_sum = FILTER_HEAD.unpack_from(data)
        if version != 1 or KEY_SIZES.get(scheme) != key_size or not 1 <= k <= 64:
            return None
        if not (0.0 < fp < 1.0) or cap < 1 or minc < 1:
            return None
        if m < 64 or m % 64 or body_len != m // 8 or len(data) != HEADER + body_len:
            return None
        if verify and xxhash.xxh3_64_intdigest(data[HEADER:]) != body_sum:
            return None
        return "filter"
    if data[:8] == STORE_MAGIC:
        _, version, scheme, bits, size, rows, minc, created, isum, hsum, csum = STORE_HEAD.unpack_from(data)
        if version != 1 or DIGEST_SIZES.get(scheme) != size or bits != 20 or minc < 1 or created > 253402300799:
            return None
        suffix_at, counts_at, end = store_layout(rows, size)
        if len(data) != end:
            return None
        index_bytes = data[HEADER:suffix_at]
        if verify and (
            xxhash.xxh3_64_intdigest(index_bytes) != isum
            or xxhash.xxh3_64_intdigest(data[suffix_at : suffix_at + rows * (size - 2)]) != hsum
            or xxhash.xxh3_64_intdigest(data[counts_at:end]) != csum
        ):
            return None
        index = np.frombuffer(index_bytes, dtype="<u8")
        if index[0] != 0 or index[-1] != rows or bool(np.any(index[1:] < index[:-1])):
            return None
        if verify and not _store_rows_consistent(data, index, size, rows, minc, suffix_at, counts_at):
            return None
        return "store"
    return None


def _store_rows_consistent(
    data: bytes, index: np.ndarray, size: int, rows: int, min_count: int, suffix_at: int, counts_at: int
) -> bool:
    """FORMAT.md's row rules, checked on whole digests: each row's full digest (its prefix's first two bytes,
    then the stored bytes) is above the one before it, starts with its prefix, and has a count >= min_count."""
    width = size - 2
    previous = b""
    prefixes = np.repeat(np.arange(PREFIXES), np.diff(index.astype(np.int64)))
    counts = np.frombuffer(data, dtype="<u4", count=rows, offset=counts_at)
    for r in range(rows):
        p = int(prefixes[r])
        digest = bytes([p >> 12, (p >> 4) & 0xFF]) + data[suffix_at + r * width : suffix_at + (r + 1) * width]
        if digest.hex().upper()[:5] != f"{p:05X}" or digest <= previous or int(counts[r]) < min_count:
            return False
        previous = digest
    return True
