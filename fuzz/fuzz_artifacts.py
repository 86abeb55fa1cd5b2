"""Fuzz target 3a: artefact files from raw bytes.

Input: byte 0 = fix-up flags, the rest = the file. The bytes are written to a temporary file and opened
with ``credcheck.BloomFilter.open``, ``credcheck.RangeStore`` and ``credcheck.open``, each with
``verify=True`` and ``verify=False``. The only acceptable outcomes: it opens and lookups work (a key, a
batch, a range body that ``parse_range_body`` reads, a checker's ``check``), or ``CredcheckError``.

Random bytes never get past a 64-bit header checksum, so the flags let the fuzzer reach the deeper checks:

- bit 0: force a magic (bit 1 picks which: 0 filter, 1 store) into bytes 0-7;
- bit 2: store only -- lay out a store of the header's row count (if it stays under 16 MiB): the 8 MiB
  index puts every row under one prefix (taken from the input), the input's remaining bytes fill the
  rows and counts;
- bit 3: re-sign the header checksum (bytes 120-127);
- bit 4: recompute the body / section checksums too (then re-sign the header).

With bits 3-4 the file is self-consistent by construction: it tests the reader's parameter and size
checks, and that whatever a checksum-valid file holds (unsorted rows, odd parameters) never crashes a
lookup. Without them, ``verify=True`` must refuse anything that is not byte-for-byte a valid artefact --
and random bytes are not.

Run:  .venv/bin/python fuzz/fuzz_artifacts.py fuzz/corpus/artifacts -max_total_time=240
"""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import sys

import _common

with _common.instrument_credcheck():
    import numpy as np

    import credcheck

import _artefacts as A
from _common import Finding

HARNESS = "artifacts"
MAX_STORE = 16 << 20
SCRATCH = _common.scratch_dir()
atexit.register(shutil.rmtree, SCRATCH, True)
PATH = os.path.join(SCRATCH, "artefact")


def shape(data: bytes) -> bytearray:
    flags = data[0] if data else 0
    buf = bytearray(data[1:])
    if flags & 1:
        buf[:8] = (A.STORE_MAGIC if flags & 2 else A.FILTER_MAGIC) + bytes(max(0, 8 - len(buf)))
        buf = buf if len(buf) >= 8 else buf[:8]
    if flags & 4 and flags & 2 and len(buf) >= A.HEADER and buf[:8] == A.STORE_MAGIC:
        size, rows = struct.unpack_from("<IQ", buf, 12)
        if size in (16, 20):
            _, _, end = A.store_layout(rows, size)
            if end <= MAX_STORE:
                tail = bytes(buf[A.HEADER + 3 :])
                prefix = int.from_bytes(bytes(buf[A.HEADER : A.HEADER + 3]).ljust(3, b"\0"), "little") % A.PREFIXES
                store = bytearray(end)
                store[: A.HEADER] = buf[: A.HEADER]
                index = np.zeros(A.PREFIXES + 1, dtype="<u8")
                index[prefix + 1 :] = rows
                store[A.HEADER : A.HEADER + A.INDEX_BYTES] = index.tobytes()
                body_at = A.HEADER + A.INDEX_BYTES
                store[body_at : body_at + len(tail)] = tail[: end - body_at]
                buf = store
    if flags & 16:
        A.resign_bodies(buf)
    elif flags & 8:
        A.resign_header(buf)
    return buf


def test_one(data: bytes) -> None:
    buf = shape(data)
    A.write(PATH, buf)
    probe = bytes(data[-20:])
    results = A.open_and_record(HARNESS, PATH, probe, data)
    for verify in (True, False):
        want = A.reference_open(buf, verify)  # "filter", "store" or None, by docs/FORMAT.md's rules
        for kind, name in (("filter", "BloomFilter.open"), ("store", "RangeStore")):
            label = f"{name}(verify={verify})"
            if (results[label] == "opened" or isinstance(results[label], A.LookupFailed)) != (want == kind):
                what = "opened a file the format rules refuse" if want != kind else "refused a valid file"
                _common.finding(HARNESS, label, Finding(f"vs-format-rules: {name} {what}"), data)


def seeds() -> list[bytes]:
    out = []
    tmp = _common.scratch_dir()
    try:
        bf = credcheck.BloomFilter.create(4, 1e-3)
        bf.add("5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8")
        bf.save(os.path.join(tmp, "f"))
        with open(os.path.join(tmp, "f"), "rb") as fh:
            raw = fh.read()
        out += [b"\x00" + raw, b"\x08" + raw, b"\x10" + raw, b"\x01" + raw[:100], b"\x00" + raw[:-1]]
        head = bytearray(A.HEADER)
        A.STORE_HEAD.pack_into(head, 0, A.STORE_MAGIC, 1, 1, 20, 20, 3, 1, 0, 0, 0, 0)
        body = bytes(head) + b"\x01\x23\x45" + bytes(range(18)) * 3 + bytes(2) + struct.pack("<3I", 5, 1, 0)
        out += [b"\x17" + body, b"\x16" + body, b"\x0e" + body, b"\x06" + body]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    _common.main(test_one, seeds)
    sys.exit(0)
