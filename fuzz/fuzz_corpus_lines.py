"""Fuzz target 1: corpus lines.

Input layout: byte 0 = mode, byte 1 = chunk size for ``read_source`` (1..256 bytes), the rest = the corpus.
mode bits: 0-1 hex width (0, 3: 40 = SHA-1; 1: 32 = NTLM; 2: an even width 2..32 from bits 4-7),
bit 2 = with counts (``HEX:COUNT``), bit 3 = ``strict``.

Checked on every input:

1. ``credcheck._native.kernels.parse_lines`` (the C kernel) and ``credcheck._kernels_py.parse_lines`` (its numpy
   twin) return identical tuples, digests, counts and bad-line indices, never raise, and both agree with a
   plain-Python reference parser written from the rules in ``_kernels.c``'s header comment.
2. ``credcheck._corpus.read_source(io.BytesIO(data), input_format=fmt, chunk_bytes=small)`` for every format
   (SHA-1 or NTLM by the width) either raises ``CredcheckError`` or yields chunks with
   ``stats.lines == good + stats.bad_lines``; for ``hibp``/``hash``/``password`` (sha1) the digests, counts,
   line and bad-line numbers equal the reference parse of the whole buffer, whatever the chunk size, and an
   ``InputError`` is raised exactly when the reference says a count overflows (or, with ``strict``, when
   there is a bad line).

Run:  .venv/bin/python fuzz/fuzz_corpus_lines.py fuzz/corpus/corpus_lines -max_total_time=300
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import sys

import _common

with _common.instrument_credcheck():
    import numpy as np

    import credcheck
    from credcheck import _kernels_py
    from credcheck._corpus import MAX_LINE_BYTES, UTF8_BOM, looks_utf16, read_source
    from credcheck._native import NAME as NATIVE_NAME
    from credcheck._native import kernels as native

from _common import Finding

HARNESS = "corpus_lines"
MAX_COUNT = 0xFFFFFFFF
MAX_DIGITS = 10
HEXCHARS = frozenset(b"0123456789abcdefABCDEF")
COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
TRAILING_BLANKS = re.compile(rb'(?<=[0-9A-Za-z"])[ \t]{1,16}(\r?)(?=\n|\Z)')
LONE_CR = re.compile(rb"\r(?!\n)")
# what the reference below does not model: a source refused as a whole before any line, and a bad line of a
# shape other than the plain one (its message names the shape: "not a valid hibp line, HEX<TAB>COUNT")
NOT_MODELLED = ("archive", "zstd", "look like", "UTF-16", " line, ")


def decode(data: bytes) -> tuple[int, int, bool, bool, int, bytes]:
    mode = data[0] if data else 0
    chunk = 1 + (data[1] if len(data) > 1 else 63)
    body = data[2:]
    width = mode & 3
    hexlen = 32 if width == 1 else 2 * (1 + (mode >> 4)) if width == 2 else 40
    return mode, hexlen, bool(mode & 4), bool(mode & 8), chunk, body


def split_lines(buf: bytes) -> list[bytes]:
    """Lines end at '\\n' (one trailing '\\r' dropped); a final line without '\\n' counts."""
    if not buf:
        return []
    parts = buf.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    return [p[:-1] if p.endswith(b"\r") else p for p in parts]


def reference(
    buf: bytes, with_counts: bool, hexlen: int, resume: bool = False
) -> tuple[int, list[bytes], list[int], list[int], int]:
    """(lines, digests, counts, bad indices, overflow index or -1), as ``_kernels.c`` documents and does.

    One rule is the implementation's rather than the comment's: a count of more than 10 characters that are
    all digits (even "00000000001") is treated as too large, i.e. it stops parsing. With ``resume`` (what
    ``read_source`` does when not strict) such a line is a bad line and parsing goes on.
    """
    digests: list[bytes] = []
    counts: list[int] = []
    bad: list[int] = []
    lines = 0
    for index, line in enumerate(split_lines(buf)):
        ok = len(line) >= hexlen and all(c in HEXCHARS for c in line[:hexlen])
        value = 1
        if ok and with_counts:
            rest = line[hexlen:]
            digits = rest[1:]
            if not rest.startswith(b":") or not 1 <= len(digits) <= MAX_DIGITS:
                ok = False
                if not resume and rest.startswith(b":") and len(digits) > MAX_DIGITS and digits.isdigit():
                    return lines, digests, counts, bad, index
            elif not (digits.isdigit() and digits.isascii()):
                ok = False
            else:
                value = int(digits)
                if value > MAX_COUNT:
                    if not resume:
                        return lines, digests, counts, bad, index
                    ok = False
        elif ok and len(line) != hexlen:
            ok = False
        if ok:
            digests.append(bytes.fromhex(line[:hexlen].decode("ascii")))
            counts.append(value)
        else:
            bad.append(index)
        lines += 1
    return lines, digests, counts, bad, -1


def run_kernel(kernel, buf: bytes, with_counts: bool, hexlen: int):  # type: ignore[no-untyped-def]
    max_lines = buf.count(b"\n") + 1
    dsize = hexlen // 2
    digests = np.zeros((max_lines, dsize), dtype=np.uint8)
    counts = np.zeros(max_lines, dtype=np.uint64)
    bad = np.zeros(max_lines, dtype=np.int64)
    lines, good, nbad, overflow = kernel.parse_lines(buf, int(with_counts), hexlen, digests, counts, bad)
    return (
        (int(lines), int(good), int(nbad), int(overflow)),
        digests[:good].tobytes(),
        counts[:good].tolist(),
        bad[:nbad].tolist(),
    )


def check_kernels(data: bytes, body: bytes, with_counts: bool, hexlen: int) -> None:
    results = {}
    for name, kernel in (("c", native), ("numpy", _kernels_py)):
        out = _common.guard(
            HARNESS, f"parse_lines[{name}]", data, lambda k=kernel: run_kernel(k, body, with_counts, hexlen), ()
        )
        if isinstance(out, BaseException):
            return
        results[name] = out
    if NATIVE_NAME == "c" and results["c"] != results["numpy"]:
        _common.finding(HARNESS, "parse_lines", Finding("kernels-differ: C and numpy parse_lines disagree"), data)
    lines, digests, counts, bad, overflow = reference(body, with_counts, hexlen)
    want = ((lines, len(counts), len(bad), overflow), b"".join(digests), counts, bad)
    if results["numpy"] != want:
        _common.finding(
            HARNESS, "parse_lines", Finding("kernel-vs-reference: parse_lines disagrees with the rules"), data
        )


def read_all(body: bytes, fmt: str, scheme: str, strict: bool, chunk: int):  # type: ignore[no-untyped-def]
    stats = credcheck._corpus.SourceStats("<fuzz>")
    digests, counts = [], []
    for part in read_source(
        io.BytesIO(body), scheme=scheme, input_format=fmt, strict=strict, stats=stats, chunk_bytes=chunk
    ):
        if part.digests.shape != (len(part.counts), 20 if scheme == "sha1" else 16):
            raise Finding("chunk-shape: a chunk's digests and counts do not line up")
        digests.append(part.digests.tobytes())
        counts.extend(part.counts.tolist())
    return stats, b"".join(digests), counts


def password_reference(body: bytes) -> tuple[int, list[bytes], list[int]]:
    lines = split_lines(body)
    digests, bad = [], []
    for index, line in enumerate(lines):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(index)
            continue
        if not line or len(line) > MAX_LINE_BYTES:
            bad.append(index)
            continue
        digests.append(hashlib.sha1(line).digest())
    return len(lines), digests, bad


def check_read_source(data: bytes, body: bytes, hexlen: int, strict: bool, chunk: int) -> None:
    scheme = {40: "sha1", 32: "ntlm"}.get(hexlen)
    if scheme is None:
        return
    compressed = body.startswith(COMPRESSED)
    for fmt in ("hibp", "hash", "password", "auto"):
        label = f"read_source[{fmt},{scheme}{',strict' if strict else ''}]"
        out = _common.guard(
            HARNESS, label, data, lambda f=fmt: read_all(body, f, scheme, strict, chunk), (credcheck.CredcheckError,)
        )
        if isinstance(out, Exception) and not isinstance(out, credcheck.CredcheckError):
            continue  # already recorded
        raised = isinstance(out, credcheck.CredcheckError)
        if not raised:
            stats, digests, counts = out
            if stats.lines != len(counts) + stats.bad_lines:
                _common.finding(HARNESS, label, Finding("accounting: stats.lines != good + bad"), data)
                continue
            if len(stats.bad_line_numbers) != min(stats.bad_lines, 10):
                _common.finding(
                    HARNESS, label, Finding("bad-line-samples: wrong number of bad line numbers kept"), data
                )
        if compressed or fmt == "auto" or (fmt == "password" and scheme != "sha1"):
            continue
        if raised and any(what in str(out) for what in NOT_MODELLED):
            continue
        if not raised and (stats.shape or stats.header):
            continue  # the reference models the plain shape (HEX, HEX:COUNT, a password a line), no header
        utf16 = looks_utf16(body[: max(chunk, 4096)])
        # a byte-order mark is not part of line 1; a line ends at LF, CRLF or a lone CR
        text = LONE_CR.sub(b"\n", body.removeprefix(UTF8_BOM))
        if fmt == "password":
            lines, ref_digests, ref_bad = password_reference(text)
            ref_counts, overflow = [1] * len(ref_digests), -1
        else:
            # trailing blanks (up to 16, after a digit) are not part of a hash line; a count too large is a
            # bad line (under strict, an error); a line longer than MAX_LINE_BYTES can never be good
            text = TRAILING_BLANKS.sub(rb"\1", text)
            lines, ref_digests, ref_counts, ref_bad, overflow = reference(text, fmt == "hibp", hexlen, resume=True)
            overflow = -1 if not strict else reference(text, fmt == "hibp", hexlen)[4]
        expect_error = utf16 or overflow >= 0 or (strict and bool(ref_bad))
        if expect_error != raised:
            what = "raised" if raised else "did not raise"
            _common.finding(
                HARNESS, label, Finding(f"error-vs-reference: read_source {what} InputError ({out!r:.200})"), data
            )
            continue
        if raised:
            continue
        if (stats.lines, digests, counts, stats.bad_lines, stats.bad_line_numbers) != (
            lines,
            b"".join(ref_digests),
            ref_counts,
            len(ref_bad),
            [i + 1 for i in ref_bad[:10]],
        ):
            _common.finding(
                HARNESS, label, Finding("read-vs-reference: read_source result differs from the rules"), data
            )


def test_one(data: bytes) -> None:
    _mode, hexlen, with_counts, strict, chunk, body = decode(data)
    check_kernels(data, body, with_counts, hexlen)
    check_read_source(data, body, hexlen, strict, chunk)


def seeds() -> list[bytes]:
    sha = hashlib.sha1(b"password").hexdigest().upper().encode()
    sha2 = hashlib.sha1(b"Passw0rd!").hexdigest().encode()
    ntlm = b"FC525C9683E8FE067095BA2DDC971889"
    hibp = sha + b":3861493\r\n" + sha2 + b":42\r\n" + b"ZZ" + sha[2:] + b":1\r\n" + sha + b":4294967295\n"
    return [
        bytes([0b0100, 16]) + hibp,
        bytes([0b0100, 255]) + hibp + sha + b":4294967296\r\n",
        bytes([0b0100, 3]) + sha + b":00000000001\r\n",
        bytes([0b0000, 40]) + sha + b"\n" + sha2 + b"\r\n\r\n" + sha[:-1],
        bytes([0b0101, 20]) + ntlm + b":7\r\n" + ntlm.lower() + b":1",
        bytes([0b0001, 20]) + ntlm + b"\n",
        bytes([0b1100, 10]) + hibp,
        bytes([0b0100, 64]) + gzip.compress(hibp),
        bytes([0b0000, 8]) + b"password\r\n123456\n\xff\xfe\n\n\xc3\xa9t\xc3\xa9\n",
        bytes([0b0110 | 0x30, 5]) + b"abCD12ef:5\r\nab:1\n",
    ]


if __name__ == "__main__":
    _common.main(test_one, seeds)
    sys.exit(0)
