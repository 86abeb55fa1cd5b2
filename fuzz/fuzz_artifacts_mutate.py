"""Fuzz target 3b: structure-aware mutations of VALID artefacts.

At start-up the harness builds small valid artefacts with ``credcheck.build`` from a 3,000-line HIBP-format
file (``HEX:COUNT``, sorted, CRLF): a SHA-1 filter (fp 1e-6) and a SHA-1 store; plus an xxh3 filter saved
with ``BloomFilter.save``. The fuzz input drives an ``atheris.FuzzedDataProvider`` that picks one of them
and applies 1-4 mutations: set a header field (to 0, 1, +-1, x2, /2, the type's max, NaN/inf for the
fp rate, a random value), flip a bit (header or body), truncate, append, overwrite a run of bytes, set a
store index entry, swap two store rows or change a count, set a filter body byte. Finally it may re-sign
(0: no; 1: recompute the header checksum; 2: recompute the body/section checksums, then the header's).

How a result is judged:

- every outcome is "opened, and lookups work" or ``CredcheckError`` (anything else is a finding), for
  ``BloomFilter.open``, ``RangeStore`` and ``credcheck.open``, each with ``verify=True`` and ``False``;
- a reader opens the file exactly when docs/FORMAT.md's rules say it must (an independent reference
  check, ``_artefacts.reference_open``);
- not re-signed (this is *corruption*): with ``verify=True`` a mutated file must not open unless it means
  the same as the original. "Means the same" = every header field (the header checksum aside) and every
  section is byte-identical -- for a filter the header and the bit array, for a store the header, the
  index, the hash rows and the counts; the only bytes outside that are a store's 0-7 alignment bytes
  between rows and counts, which no reader looks at. When it does open, every member must be found, with
  its exact count for a store;
- re-signed (a *self-consistent* file whose content changed -- a buggy writer or a hand edit, which no
  checksum can catch): the reader must still apply the documented checks and never crash; files it accepts
  whose content breaks an invariant the format states but the reader does not check (unsorted rows, a
  row filed under the wrong prefix, fp_rate outside (0, 1), items > capacity, min_count 0, ...) are recorded
  once per kind in ``fuzz/crashes/observations-artifacts_mutate.txt``: observations, not findings.

Run:  .venv/bin/python fuzz/fuzz_artifacts_mutate.py fuzz/corpus/artifacts_mutate -max_total_time=300
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import struct
import sys

import _common
import atheris

with _common.instrument_credcheck():
    import numpy as np

    import credcheck

import _artefacts as A
from _common import Finding

HARNESS = "artifacts_mutate"
SCRATCH = _common.scratch_dir()
atexit.register(shutil.rmtree, SCRATCH, True)
PATH = os.path.join(SCRATCH, "mutant")
N_MEMBERS = 3000

# (name, offset, struct format) of every header field, from docs/FORMAT.md
FILTER_FIELDS = [("magic", 0, "8s"), ("version", 8, "<H"), ("scheme", 10, "<B"), ("k", 11, "<B"),
                 ("key_size", 12, "<I"), ("m", 16, "<Q"), ("capacity", 24, "<Q"), ("items", 32, "<Q"),
                 ("fp_rate", 40, "<d"), ("min_count", 48, "<Q"), ("body_len", 56, "<Q"),
                 ("body_checksum", 64, "<Q"), ("reserved", 72, "<Q"), ("header_checksum", 120, "<Q")]  # fmt: skip
STORE_FIELDS = [("magic", 0, "8s"), ("version", 8, "<H"), ("scheme", 10, "<B"), ("prefix_bits", 11, "<B"),
                ("digest_size", 12, "<I"), ("rows", 16, "<Q"), ("min_count", 24, "<Q"), ("created", 32, "<Q"),
                ("index_checksum", 40, "<Q"), ("hash_checksum", 48, "<Q"), ("count_checksum", 56, "<Q"),
                ("reserved", 64, "<Q"), ("header_checksum", 120, "<Q")]  # fmt: skip


def _build_originals() -> dict[str, object]:
    rng = np.random.default_rng(20240601)
    digests = np.unique(rng.integers(0, 256, size=(N_MEMBERS, 20), dtype=np.uint8), axis=0)
    counts = np.minimum(rng.zipf(1.7, size=len(digests)), 4_000_000).astype(np.uint64)
    text = os.path.join(SCRATCH, "pwned.txt")
    with open(text, "w", newline="") as out:
        for row, count in zip(digests, counts, strict=True):
            out.write(f"{row.tobytes().hex().upper()}:{count}\r\n")
    filter_path, store_path = os.path.join(SCRATCH, "orig.bloom"), os.path.join(SCRATCH, "orig.store")
    report = credcheck.build([text], filter=filter_path, store=store_path, fp_rate=1e-6)
    assert report.kept == len(digests) and report.reconciles(), report
    xxh = credcheck.BloomFilter.create(50, 1e-3, scheme="xxh3")
    xxh.update([b"alice:hunter2", b"bob:123456"])
    xxh_path = os.path.join(SCRATCH, "orig-xxh3.bloom")
    xxh.save(xxh_path)
    originals: dict[str, object] = {"digests": digests, "counts": counts}
    for name, path in (("filter", filter_path), ("store", store_path), ("xxh3", xxh_path)):
        with open(path, "rb") as fh:
            originals[name] = fh.read()
    return originals


ORIGINALS = _build_originals()
MEMBERS: np.ndarray = ORIGINALS["digests"]  # type: ignore[assignment]
MEMBER_COUNTS: np.ndarray = ORIGINALS["counts"]  # type: ignore[assignment]
_observed: set[str] = set()


def observe(kind: str, data: bytes) -> None:
    if kind in _observed or not _common.KEEP_GOING:
        return
    _observed.add(kind)
    os.makedirs(_common.CRASH_DIR, exist_ok=True)
    with open(os.path.join(_common.CRASH_DIR, f"observations-{HARNESS}.txt"), "a") as out:
        out.write(f"{kind}\tinput hex: {data.hex()}\n")


def _int_value(fdp: atheris.FuzzedDataProvider, orig: int, bits: int) -> int:
    top = (1 << bits) - 1
    choice = fdp.ConsumeIntInRange(0, 9)
    if choice == 9:
        return fdp.ConsumeIntInRange(0, top)
    if choice == 8:
        return orig ^ (1 << fdp.ConsumeIntInRange(0, bits - 1))
    return (0, 1, 2, orig - 1, orig + 1, orig * 2, orig // 2, top)[choice] & top


def _set_field(fdp: atheris.FuzzedDataProvider, buf: bytearray, fields: list[tuple[str, int, str]]) -> None:
    _, offset, fmt = fields[fdp.ConsumeIntInRange(0, len(fields) - 1)]
    size = struct.calcsize(fmt)
    if len(buf) < offset + size:
        return
    if fmt == "8s":
        pos = fdp.ConsumeIntInRange(0, 7)
        buf[offset + pos] ^= 1 << fdp.ConsumeIntInRange(0, 7)
    elif fmt == "<d":
        (orig,) = struct.unpack_from(fmt, buf, offset)
        value = (0.0, 1.0, -1e-6, math.nan, math.inf, 1e-300, orig * 2, orig / 2, 0.5, 1e-3)[
            fdp.ConsumeIntInRange(0, 9)
        ]
        struct.pack_into(fmt, buf, offset, value)
    else:
        (orig,) = struct.unpack_from(fmt, buf, offset)
        struct.pack_into(fmt, buf, offset, _int_value(fdp, orig, 8 * size))


def mutate(fdp: atheris.FuzzedDataProvider, original: bytes, kind: str) -> tuple[bytearray, int]:
    buf = bytearray(original)
    fields = STORE_FIELDS if kind == "store" else FILTER_FIELDS
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        op = fdp.ConsumeIntInRange(0, 7)
        n = len(buf)
        if op == 0:
            _set_field(fdp, buf, fields)
        elif op == 1 and n:
            region = fdp.ConsumeIntInRange(0, 2)
            lo, hi = ((0, min(n, A.HEADER)), (min(n, A.HEADER), n), (0, n))[region]
            if hi > lo:
                buf[fdp.ConsumeIntInRange(lo, hi - 1)] ^= 1 << fdp.ConsumeIntInRange(0, 7)
        elif op == 2 and n:
            choice = fdp.ConsumeIntInRange(0, 4)
            keep = (0, A.HEADER - 1, A.HEADER, n - 1, fdp.ConsumeIntInRange(0, n - 1))[choice]
            del buf[max(0, min(keep, n)) :]
        elif op == 3:
            buf += fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16)) or b"\0"
        elif op == 4 and n:
            at = fdp.ConsumeIntInRange(0, n - 1)
            run = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))
            buf[at : at + len(run)] = run[: n - at]
        elif op == 5 and kind == "store" and n >= A.HEADER + A.INDEX_BYTES:
            choice = fdp.ConsumeIntInRange(0, 3)
            entry = (0, A.PREFIXES, fdp.ConsumeIntInRange(1, A.PREFIXES - 1), fdp.ConsumeIntInRange(0, A.PREFIXES))[
                choice
            ]
            at = A.HEADER + 8 * entry
            (orig,) = struct.unpack_from("<Q", buf, at)
            struct.pack_into("<Q", buf, at, _int_value(fdp, orig, 64))
        elif op == 6 and kind == "store":
            _edit_rows(fdp, buf)
        elif op == 7 and kind != "store" and n > A.HEADER:
            buf[fdp.ConsumeIntInRange(A.HEADER, n - 1)] = (0, 0xFF)[fdp.ConsumeIntInRange(0, 1)]
    resign = fdp.ConsumeIntInRange(0, 2)
    if resign == 2:
        A.resign_bodies(buf)
    elif resign == 1:
        A.resign_header(buf)
    return buf, resign


def _edit_rows(fdp: atheris.FuzzedDataProvider, buf: bytearray) -> None:
    size, rows = struct.unpack_from("<IQ", buf, 12) if len(buf) >= 24 else (0, 0)
    if size not in (16, 20) or not rows:
        return
    suffix_at, counts_at, end = A.store_layout(rows, size)
    if end > len(buf):
        return
    width = size - 2
    i, j = fdp.ConsumeIntInRange(0, rows - 1), fdp.ConsumeIntInRange(0, rows - 1)
    if fdp.ConsumeBool():  # swap two rows (hash and count)
        a, b = suffix_at + i * width, suffix_at + j * width
        buf[a : a + width], buf[b : b + width] = buf[b : b + width], buf[a : a + width]
        a, b = counts_at + 4 * i, counts_at + 4 * j
        buf[a : a + 4], buf[b : b + 4] = buf[b : b + 4], buf[a : a + 4]
    else:
        (orig,) = struct.unpack_from("<I", buf, counts_at + 4 * i)
        struct.pack_into("<I", buf, counts_at + 4 * i, _int_value(fdp, orig, 32))


def _members_ok(path: str, kind: str) -> str | None:
    """With a file that means the same as the original: are all members there (with exact counts)?"""
    if kind == "filter":
        with credcheck.BloomFilter.open(path) as bf:
            return None if bool(bf.contains_many(MEMBERS).all()) else "a member is missing"
    if kind == "store":
        with credcheck.RangeStore(path) as st:
            got = st.lookup_many(MEMBERS)
            return None if np.array_equal(got, MEMBER_COUNTS.astype(np.uint32)) else "a count is wrong"
    with credcheck.BloomFilter.open(path) as bf:
        return None if b"alice:hunter2" in bf and b"bob:123456" in bf else "a member is missing"


def _observe_accepted(buf: bytes, kind: str, data: bytes) -> None:
    """A re-signed file that opened: note the documented invariants it breaks (the reader does not check)."""
    if kind == "store":
        fields = A.STORE_HEAD.unpack_from(buf)
        size, rows, min_count = fields[4], fields[5], fields[6]
        if min_count == 0:
            observe("store: min_count 0 accepted", data)
        suffix_at, counts_at, _ = A.store_layout(rows, size)
        index = np.frombuffer(buf, dtype="<u8", count=A.PREFIXES + 1, offset=A.HEADER).astype(np.int64)
        width = size - 2
        prefixes = np.repeat(np.arange(A.PREFIXES), np.diff(index))
        keys = [bytes(buf[suffix_at + r * width : suffix_at + (r + 1) * width]) for r in range(rows)]
        full = [int(prefixes[r] >> 4).to_bytes(2, "big") + keys[r] for r in range(rows)]
        if any(full[r] >= full[r + 1] for r in range(rows - 1)):
            observe("store: rows not strictly ascending (unsorted or duplicate) accepted", data)
        if any((keys[r][0] >> 4) != (int(prefixes[r]) & 15) for r in range(rows)):
            observe("store: a row filed under a prefix whose 5th hex digit it does not share, accepted", data)
        counts = np.frombuffer(buf, dtype="<u4", count=rows, offset=counts_at)
        if rows and int(counts.min()) == 0:
            observe("store: a row with count 0 accepted (served as a padding line)", data)
    else:
        fields = A.FILTER_HEAD.unpack_from(buf)
        capacity, items, fp_rate, min_count = fields[6], fields[7], fields[8], fields[9]
        if not 0.0 < fp_rate < 1.0:
            observe("filter: fp_rate outside (0, 1) (0, negative, 1, inf, NaN, huge) accepted", data)
        if capacity == 0:
            observe("filter: capacity 0 accepted", data)
        if items > capacity:
            observe("filter: items > capacity accepted (an over-full filter the writer refuses to save)", data)
        if min_count == 0:
            observe("filter: min_count 0 accepted", data)


def test_one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    kind = ("filter", "store", "xxh3")[fdp.ConsumeIntInRange(0, 2)]
    original: bytes = ORIGINALS[kind]  # type: ignore[assignment]
    buf, resigned = mutate(fdp, original, kind)
    A.write(PATH, buf)
    results = A.open_and_record(HARNESS, PATH, bytes(buf[-20:]), data)
    for verify in (True, False):
        want = A.reference_open(buf, verify)
        for reader_kind, name in (("filter", "BloomFilter.open"), ("store", "RangeStore")):
            label = f"{name}(verify={verify})"
            opened = results[label] == "opened" or isinstance(results[label], A.LookupFailed)
            if opened != (want == reader_kind):
                what = "opened a file the format rules refuse" if opened else "refused a valid file"
                _common.finding(HARNESS, label, Finding(f"vs-format-rules: {name} {what}"), data)
    reader = "RangeStore(verify=True)" if kind == "store" else "BloomFilter.open(verify=True)"
    if results[reader] != "opened":
        return
    meaning = A.store_meaning if kind == "store" else A.filter_meaning
    same = len(buf) == len(original) and meaning(bytes(buf)) == meaning(original)
    if same:
        problem = _members_ok(PATH, kind)
        if problem:
            _common.finding(HARNESS, kind, Finding(f"same-meaning-wrong-answer: {problem}"), data)
    elif not resigned and bytes(buf[:128]) == original[:128]:
        _common.finding(HARNESS, kind, Finding("corrupt-accepted: a corrupted file opened with verify=True"), data)
    elif not resigned:
        _common.finding(HARNESS, kind, Finding("corrupt-header-accepted: a changed header opened unsigned"), data)
    else:
        _observe_accepted(bytes(buf), kind, data)


def seeds() -> list[bytes]:
    return [bytes([i, j, k, 0, 0, 0, 0, 0]) for i in range(3) for j in range(8) for k in (0, 1, 2)]


if __name__ == "__main__":
    _common.main(test_one, seeds)
    sys.exit(0)
