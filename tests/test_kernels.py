"""The hot loops: the C kernels and the numpy kernels give bit-identical filters, answers and parses.

Each kernel is checked two ways: against a small pure-Python model written from the rules in
``_kernels.c``'s header comment and docs/FORMAT.md (parametrised over both implementations), and
against the other implementation on the same Hypothesis-generated input (skipped without the C build).
"""

from __future__ import annotations

import mmap
import string
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from credcheck import _kernels_py, _native
from credcheck._native import Kernels

# None when built without a compiler: only the numpy kernels exist
_kernels_c = _native.AVAILABLE.get("c")

needs_c = pytest.mark.skipif(
    _kernels_c is None,
    reason="credcheck._kernels (the C extension) is not built: nothing to compare the numpy kernels with",
)
both_kernels = pytest.mark.parametrize(
    "impl", [pytest.param(_kernels_py, id="numpy"), pytest.param(_kernels_c, id="c", marks=needs_c)]
)

U64 = (1 << 64) - 1
MAX_COUNT = 4294967295
HIBP_LINE = b"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:3"
HIBP_DIGEST = bytes.fromhex("5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8")


# -- a pure-Python model of the layout and the parser ---------------------------------------------------


def model_positions(key: bytes, m: int, k: int) -> list[int]:
    """The k bit positions of a key, straight from the documented formula."""
    h1 = int.from_bytes(key[0:8], "little")
    h2 = int.from_bytes(key[8:16], "little") | 1
    return [(((h1 + i * h2) & U64) * m) >> 64 for i in range(k)]


def model_add(bits: bytearray, m: int, k: int, keys: list[bytes]) -> int:
    """Set every key's bits in order; return how many keys set at least one bit that was clear."""
    fresh = 0
    for key in keys:
        changed = False
        for p in model_positions(key, m, k):
            mask = 1 << (p & 7)
            changed |= not bits[p >> 3] & mask
            bits[p >> 3] |= mask
        fresh += changed
    return fresh


def model_contains(bits: bytes, m: int, k: int, key: bytes) -> bool:
    return all(bits[p >> 3] >> (p & 7) & 1 for p in model_positions(key, m, k))


# parse_lines' shape flags, as _kernels.c documents them
QUOTED_HEX, QUOTED_COUNT, PLUS, NUL = 0x100, 0x200, 0x400, 0x800


def model_parse(
    buf: bytes, with_counts: bool, hexlen: int, shape: int = 0
) -> tuple[tuple[int, int, int, int], bytes, list[int], list[int]]:
    """Parse by the rules in _kernels.c: returns (lines, good, bad, overflow), digests, counts, bad lines."""
    lines = buf.split(b"\n") if buf else []
    if buf.endswith(b"\n"):
        lines.pop()
    separator = bytes([shape & 0xFF or ord(":")])
    digests: list[bytes] = []
    counts: list[int] = []
    bad: list[int] = []
    overflow = -1
    for index, line in enumerate(lines):
        if line.endswith(b"\r"):
            line = line[:-1]
        if shape & NUL and line.endswith(b"\x00"):
            line = line[:-1]
        if shape & QUOTED_HEX:
            quoted = line[:1] == b'"' and line[hexlen + 1 : hexlen + 2] == b'"'
            head, rest = (line[1 : hexlen + 1], line[hexlen + 2 :]) if quoted else (b"", b"")
        else:
            head, rest = line[:hexlen], line[hexlen:]
        ok = len(head) == hexlen and all(chr(c) in string.hexdigits for c in head)
        count = 1
        if with_counts:
            number: bytes | None = rest[1:] if ok and rest[:1] == separator else None
            if number is not None and shape & QUOTED_COUNT:
                wrapped = len(number) >= 2 and number[:1] == number[-1:] == b'"'
                number = number[1:-1] if wrapped else None
            if number is not None and shape & PLUS:
                number = number.removeprefix(b"+")
            if number is not None and number.isdigit():  # bytes.isdigit is ASCII-only
                if len(number) > 10 or int(number) > MAX_COUNT:
                    overflow = index
                    lines = lines[:index]
                    break
                count = int(number)
            else:
                ok = False
        elif rest:
            ok = False
        if ok:
            digests.append(bytes.fromhex(head.decode("ascii")))
            counts.append(count)
        else:
            bad.append(index)
    return (len(lines), len(digests), len(bad), overflow), b"".join(digests), counts, bad


def buffers(buf: bytes, hexlen: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Output buffers of the documented sizes, pre-filled with a sentinel so stray writes show."""
    max_lines = buf.count(b"\n") + 1
    return (
        np.full(max_lines * hexlen // 2, 0xA5, dtype=np.uint8),
        np.full(max_lines, 0xDEADBEEF, dtype=np.uint64),
        np.full(max_lines, -7, dtype=np.int64),
    )


def run_parse(
    impl: Kernels, buf: bytes, with_counts: bool, hexlen: int, shape: int = 0
) -> tuple[tuple[int, int, int, int], bytes, np.ndarray, np.ndarray]:
    """Run a kernel's parse_lines; return its tuple, the digests it kept, and its whole counts and bad buffers.

    Digest bytes past the kept ones are scratch: the C kernel decodes a line's hex there before it knows
    whether the line is good, the numpy kernel leaves them alone; neither is part of the contract.
    """
    digests, counts, bad = buffers(buf, hexlen)
    result = impl.parse_lines(buf, int(with_counts), hexlen, digests, counts, bad, shape)
    good = result[1]
    return result, digests[: good * hexlen // 2].tobytes(), counts, bad


# -- strategies -----------------------------------------------------------------------------------------

strides = st.sampled_from([16, 20])
# small m makes keys collide (duplicate positions, shared bits); large m exercises the 64x64 product
bit_counts = st.one_of(st.integers(1, 300), st.integers(301, 1 << 20), st.sampled_from([64, 1 << 16, (1 << 20) + 64]))
k_values = st.one_of(st.integers(1, 64), st.sampled_from([1, 10, 14, 20, 64]))
edge_keys = [b"\x00" * 20, b"\xff" * 20, b"\x01" + b"\x00" * 19, b"\xff" * 8 + b"\x00" * 12]


FilterCase = tuple[int, int, int, np.ndarray, list[bytes], list[list[bytes]]]  # m, k, stride, bits, pool, batches


@st.composite
def filter_cases(draw: st.DrawFn) -> FilterCase:
    """m, k, stride, an initial bit array and a few batches of keys with repeats inside and across batches."""
    stride = draw(strides)
    m = draw(bit_counts)
    k = draw(k_values)
    key = st.one_of(st.binary(min_size=stride, max_size=stride), st.sampled_from([e[:stride] for e in edge_keys]))
    pool = draw(st.lists(key, min_size=1, max_size=30))
    batches = draw(st.lists(st.lists(st.sampled_from(pool), max_size=50), min_size=1, max_size=4))
    nbytes = (m + 7) // 8 + draw(st.integers(0, 3))
    density = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 0.9]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    bits = np.packbits(rng.random(nbytes * 8) < density) if density else np.zeros(nbytes, dtype=np.uint8)
    return m, k, stride, bits, pool, batches


HEX_UPPER = "0123456789ABCDEF"
HEX_LOWER = "0123456789abcdef"
NOT_HEX = ["g", "G", "x", " ", ":", "\x00", "\r", "é", "\xff", "-", "+", "0x"]
# mostly proper endings; a lone CR, a doubled CR or LF-CR joins or breaks lines
ENDINGS = [b"\n", b"\n", b"\n", b"\r\n", b"\r\n", b"\r\n", b"\r", b"\r\r\n", b"\n\r"]
COUNT_EDGES = [
    "0",
    "1",
    "00",
    "0000000000",
    "00000000000",
    "4294967294",
    "4294967295",
    "4294967296",
    "9999999999",
    "18446744073709551615",
    "18446744073709551616",
    "123456789012",
    "-1",
    "+1",
    " 3",
    "3 ",
    "3.0",
    "1e3",
    "٣",
]


COUNTS = st.one_of(
    st.sampled_from(COUNT_EDGES),
    st.text(alphabet="0123456789", min_size=0, max_size=12),
    st.integers(0, MAX_COUNT + 2).map(str),
)


@st.composite
def hex_parts(draw: st.DrawFn, hexlen: int) -> str:
    """Mostly a hexlen-long hex string (any case); sometimes the wrong length or with a non-hex character."""
    alphabet = draw(st.sampled_from([HEX_UPPER, HEX_LOWER, HEX_UPPER + HEX_LOWER]))
    size = draw(st.one_of(st.just(hexlen), st.just(hexlen), st.integers(0, hexlen + 3)))
    text = draw(st.text(alphabet=alphabet, min_size=size, max_size=size))
    if text and draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from(NOT_HEX)) + text[at + 1 :]
    return text


@st.composite
def nasty_lines(draw: st.DrawFn, hexlen: int) -> bytes:
    """One line of a leaked set as it may come: good, or broken in one of the ways real dumps are."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return b""  # a blank line
    if kind == 1:
        return draw(st.binary(max_size=hexlen + 14))  # anything at all, non-ASCII included
    if kind <= 4:  # a good line, in any case
        alphabet = draw(st.sampled_from([HEX_UPPER, HEX_LOWER, HEX_UPPER + HEX_LOWER]))
        digest = draw(st.text(alphabet=alphabet, min_size=hexlen, max_size=hexlen))
        return f"{digest}:{draw(st.integers(0, MAX_COUNT))}".encode()
    hex_part = draw(hex_parts(hexlen))
    separator = draw(st.sampled_from([":", ":", ":", ":", "", ";", " ", "::"]))
    count = draw(COUNTS)
    encoding = draw(st.sampled_from(["utf-8", "latin-1"]))
    return (hex_part + separator + count).encode(encoding, "replace")


# separators a shape may name: the real ones, and ones that collide with what else a line holds
SEPARATORS = [0, ord(":"), ord("\t"), ord(","), ord(";"), ord(" "), ord('"'), ord("+"), ord("5"), ord("a"), 13]


@st.composite
def shapes(draw: st.DrawFn) -> int:
    """A shape argument: a separator byte (0 for ':') and any of the flags."""
    separator = draw(st.one_of(st.sampled_from(SEPARATORS), st.integers(0, 255)))
    return separator | sum(draw(st.sets(st.sampled_from([QUOTED_HEX, QUOTED_COUNT, PLUS, NUL]))))


@st.composite
def shaped_lines(draw: st.DrawFn, hexlen: int, shape: int) -> bytes:
    """A line in ``shape``, or near it: each part as the shape wants it, or missing, doubled or another."""

    def part(wanted: bytes, *others: bytes) -> bytes:
        return draw(st.sampled_from([wanted, wanted, wanted, *others]))

    quote = b'"' if shape & QUOTED_HEX else b""
    count_quote = b'"' if shape & QUOTED_COUNT else b""
    separator = bytes([shape & 0xFF or ord(":")])
    return (
        part(quote, b'"', b"")
        + draw(hex_parts(hexlen)).encode()
        + part(quote, b'"', b"")
        + part(separator, b":", b"\t", b",", b"", separator * 2)
        + part(count_quote, b'"', b"")
        + part(b"+" if shape & PLUS else b"", b"+", b"", b"++", b"-")
        + draw(COUNTS).encode()
        + part(count_quote, b'"', b"", b'""')
        + part(b"\x00" if shape & NUL else b"", b"\x00", b"", b"\x00\x00")
    )


ParseCase = tuple[bytes, bool, int, int]  # buf, with_counts, hexlen, shape


@st.composite
def parse_cases(draw: st.DrawFn) -> ParseCase:
    """A buffer of nasty lines with mixed line endings, plus with_counts, the digest's hex length and a shape."""
    with_counts = draw(st.booleans())
    hexlen = draw(st.one_of(st.sampled_from([40, 32]), st.integers(1, 64).map(lambda n: 2 * n)))
    shape = draw(st.one_of(st.just(0), shapes()))
    lines = draw(st.lists(st.one_of(nasty_lines(hexlen), shaped_lines(hexlen, shape)), max_size=25))
    if not with_counts:  # also feed bare digests, the "hash" input format
        lines += draw(st.lists(hex_parts(hexlen).map(str.encode), max_size=5))
    parts = [line + draw(st.sampled_from(ENDINGS)) for line in lines]
    unterminated: bool = bool(parts) and draw(st.booleans())
    if unterminated:
        parts[-1] = lines[-1]  # a final line with no newline
    return b"".join(parts), with_counts, hexlen, shape


# -- Bloom kernels ----------------------------------------------------------------------------------------


class TestAdd:
    @both_kernels
    @settings(max_examples=150, deadline=None)
    @given(filter_cases())
    def test_matches_model(self, impl: Kernels, case: FilterCase) -> None:
        """add sets exactly the documented bits and counts the keys that set a clear bit, batch by batch."""
        m, k, stride, bits, _, batches = case
        expected = bytearray(bits.tobytes())
        for batch in batches:
            fresh = impl.add(bits, m, k, b"".join(batch), stride)
            assert fresh == model_add(expected, m, k, batch)
            assert bits.tobytes() == bytes(expected)

    @needs_c
    @settings(max_examples=200, deadline=None)
    @given(filter_cases())
    def test_c_and_numpy_identical(self, case: FilterCase) -> None:
        """The C and numpy add leave the same bit array and return the same fresh count on every call."""
        assert _kernels_c is not None  # needs_c skips the test otherwise
        m, k, stride, bits, _, batches = case
        c_bits, py_bits = bits.copy(), bits.copy()
        for batch in batches:
            keys = np.frombuffer(b"".join(batch), dtype=np.uint8).reshape(-1, stride)
            assert _kernels_c.add(c_bits, m, k, keys, stride) == _kernels_py.add(py_bits, m, k, keys, stride)
            np.testing.assert_array_equal(c_bits, py_bits)

    @both_kernels
    def test_duplicates_in_one_batch_count_once(self, impl: Kernels) -> None:
        """A key repeated inside one batch is fresh only the first time."""
        key = bytes(range(20))
        bits = np.zeros(1 << 10, dtype=np.uint8)
        assert impl.add(bits, 1 << 13, 10, key * 5, 20) == 1
        assert impl.add(bits, 1 << 13, 10, key, 20) == 0

    @both_kernels
    def test_empty_batch(self, impl: Kernels) -> None:
        """Adding no keys sets nothing and returns 0."""
        bits = np.zeros(8, dtype=np.uint8)
        assert impl.add(bits, 64, 3, b"", 16) == 0
        assert not bits.any()

    @both_kernels
    @pytest.mark.parametrize(
        ("nbytes", "m", "k", "keys", "stride"),
        [
            (8, 64, 0, b"\x00" * 16, 16),
            (8, 64, 65, b"\x00" * 16, 16),
            (8, 65, 3, b"\x00" * 16, 16),
            (8, 0, 3, b"\x00" * 16, 16),
            (8, 64, 3, b"\x00" * 15, 15),
            (8, 64, 3, b"\x00" * 30, 20),
        ],
        ids=["k=0", "k=65", "bits-short", "m=0", "stride<16", "ragged-keys"],
    )
    def test_bad_arguments(self, impl: Kernels, nbytes: int, m: int, k: int, keys: bytes, stride: int) -> None:
        """Out-of-range k, a bit array shorter than m, keys under 16 bytes or a ragged key buffer raise."""
        with pytest.raises(ValueError):
            impl.add(np.zeros(nbytes, dtype=np.uint8), m, k, keys, stride)


class TestContainsMany:
    @both_kernels
    @settings(max_examples=150, deadline=None)
    @given(filter_cases(), st.data())
    def test_matches_model(self, impl: Kernels, case: FilterCase, data: st.DataObject) -> None:
        """contains_many writes 1/0 for every key as the model says and returns the number of 1s."""
        m, k, stride, bits, pool, batches = case
        impl.add(bits, m, k, b"".join(batches[0]), stride)
        probes = data.draw(st.lists(st.one_of(st.sampled_from(pool), st.binary(min_size=stride, max_size=stride))))
        out = np.full(len(probes), 0x77, dtype=np.uint8)
        found = impl.contains_many(bits, m, k, b"".join(probes), stride, out)
        snapshot = bits.tobytes()
        expected = [model_contains(snapshot, m, k, p) for p in probes]
        assert out.tolist() == [int(e) for e in expected]
        assert found == sum(expected)
        members = np.zeros(len(batches[0]), dtype=np.uint8)
        assert impl.contains_many(bits, m, k, b"".join(batches[0]), stride, members) == len(batches[0])

    @needs_c
    @settings(max_examples=200, deadline=None)
    @given(filter_cases(), st.data())
    def test_c_and_numpy_identical(self, case: FilterCase, data: st.DataObject) -> None:
        """The C and numpy contains_many give the same out array and the same count."""
        assert _kernels_c is not None  # needs_c skips the test otherwise
        m, k, stride, bits, pool, batches = case
        for batch in batches:
            _kernels_c.add(bits, m, k, b"".join(batch), stride)
        probes = data.draw(
            st.lists(st.one_of(st.sampled_from(pool), st.binary(min_size=stride, max_size=stride)), max_size=200)
        )
        keys = np.frombuffer(b"".join(probes), dtype=np.uint8).reshape(-1, stride)
        c_out, py_out = np.full(len(probes), 9, np.uint8), np.full(len(probes), 9, np.uint8)
        assert _kernels_c.contains_many(bits, m, k, keys, stride, c_out) == _kernels_py.contains_many(
            bits, m, k, keys, stride, py_out
        )
        np.testing.assert_array_equal(c_out, py_out)

    @both_kernels
    def test_out_too_small(self, impl: Kernels) -> None:
        """An output buffer shorter than the number of keys raises ValueError."""
        with pytest.raises(ValueError):
            impl.contains_many(np.zeros(8, np.uint8), 64, 3, b"\x00" * 32, 16, np.zeros(1, np.uint8))


class TestContains:
    @both_kernels
    @settings(max_examples=150, deadline=None)
    @given(filter_cases())
    def test_matches_model(self, impl: Kernels, case: FilterCase) -> None:
        """contains answers one key as the model says: True for every added key."""
        m, k, stride, bits, pool, batches = case
        impl.add(bits, m, k, b"".join(batches[0]), stride)
        snapshot = bits.tobytes()
        for key in pool:
            assert impl.contains(bits, m, k, key) is model_contains(snapshot, m, k, key)
        assert all(impl.contains(bits, m, k, key) for key in batches[0])

    @needs_c
    @settings(max_examples=200, deadline=None)
    @given(filter_cases(), st.lists(st.binary(min_size=16, max_size=24), max_size=20))
    def test_c_and_numpy_identical(self, case: FilterCase, probes: list[bytes]) -> None:
        """The C and numpy contains agree on members and on arbitrary 16-24 byte keys."""
        assert _kernels_c is not None  # needs_c skips the test otherwise
        m, k, stride, bits, pool, batches = case
        _kernels_c.add(bits, m, k, b"".join(batches[0]), stride)
        for key in pool + probes:
            assert _kernels_c.contains(bits, m, k, key) is _kernels_py.contains(bits, m, k, key)

    @both_kernels
    def test_short_key(self, impl: Kernels) -> None:
        """A key under 16 bytes raises ValueError instead of reading past it."""
        with pytest.raises(ValueError):
            impl.contains(np.zeros(8, np.uint8), 64, 3, b"\x00" * 15)


class TestWideProduct:
    @settings(max_examples=500)
    @given(st.lists(st.integers(0, U64), min_size=1, max_size=20), st.integers(1, U64))
    def test_numpy_mulhi_is_exact(self, g: list[int], m: int) -> None:
        """The numpy 64x64 -> high-64 product, built from 32-bit halves, equals exact integer arithmetic."""
        got = _kernels_py._mulhi(np.array(g, dtype=np.uint64), m)
        assert got.tolist() == [(x * m) >> 64 for x in g]

    @both_kernels
    @settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.integers((1 << 32) + 1, (1 << 32) + (1 << 20)),
        st.lists(st.binary(min_size=20, max_size=20), max_size=50),
    )
    def test_filter_larger_than_2_to_32_bits(self, impl: Kernels, m: int, keys: list[bytes]) -> None:
        """With m above 2^32 the positions still follow formula (a sparse anonymous map holds the bits)."""
        with mmap.mmap(-1, (m + 7) // 8) as area:
            bits = np.frombuffer(area, dtype=np.uint8)
            impl.add(bits, m, 20, b"".join(keys), 20)
            for key in keys:
                for p in model_positions(key, m, 20):
                    assert bits[p >> 3] >> (p & 7) & 1
            out = np.zeros(len(keys), np.uint8)
            assert impl.contains_many(bits, m, 20, b"".join(keys), 20, out) == len(keys)
            del bits


# -- line parsing -------------------------------------------------------------------------------------------


class TestParseLines:
    @both_kernels
    def test_known_hibp_line(self, impl: Kernels) -> None:
        """The HIBP line for "password" parses to its digest and count 3."""
        result, digests, counts, _ = run_parse(impl, HIBP_LINE + b"\r\n", True, 40)
        assert result == (1, 1, 0, -1)
        assert digests == HIBP_DIGEST
        assert counts[0] == 3

    @both_kernels
    @pytest.mark.parametrize(
        ("buf", "with_counts", "hexlen", "expected"),
        [
            (b"", True, 40, (0, 0, 0, -1)),
            (b"\n", True, 40, (1, 0, 1, -1)),
            (HIBP_LINE, True, 40, (1, 1, 0, -1)),
            (HIBP_LINE + b"\n" + HIBP_LINE.lower() + b"\r\n\r\n", True, 40, (3, 2, 1, -1)),
            (HIBP_LINE + b"\r" + HIBP_LINE + b"\n", True, 40, (1, 0, 1, -1)),
            (HIBP_LINE + b"\r\r\n", True, 40, (1, 0, 1, -1)),
            (HIBP_LINE[:40] + b"\n", True, 40, (1, 0, 1, -1)),
            (HIBP_LINE[:40] + b":\n", True, 40, (1, 0, 1, -1)),
            (HIBP_LINE[:40] + b"3\n", True, 40, (1, 0, 1, -1)),
            (HIBP_LINE[:39] + b":3\n", True, 40, (1, 0, 1, -1)),
            (HIBP_LINE[:40] + b":4294967295", True, 40, (1, 1, 0, -1)),
            (HIBP_LINE + b"\n" + HIBP_LINE[:40] + b":4294967296\n" + HIBP_LINE, True, 40, (1, 1, 0, 1)),
            (HIBP_LINE[:40] + b":12345678901\n", True, 40, (0, 0, 0, 0)),
            (HIBP_LINE[:40] + b":1234567890x1\n", True, 40, (1, 0, 1, -1)),
            (HIBP_LINE[:40] + b"\n" + HIBP_LINE[:40].lower(), False, 40, (2, 2, 0, -1)),
            (HIBP_LINE + b"\n", False, 40, (1, 0, 1, -1)),
            (b"FC525C9683E8FE067095BA2DDC971889:0\n", True, 32, (1, 1, 0, -1)),
            ("5BAA61E4C9B93F3F0682250B6CF8331B7EE68FDé:3".encode(), True, 40, (1, 0, 1, -1)),
        ],
        ids=[
            "empty",
            "blank",
            "no-final-newline",
            "lf-crlf-blank",
            "lone-cr",
            "two-crs",
            "no-count",
            "empty-count",
            "missing-colon",
            "short-hex",
            "max-count",
            "overflow-stops",
            "eleven-digits",
            "non-digit-in-long-count",
            "bare-digests",
            "count-without-counts",
            "ntlm-count-zero",
            "non-ascii",
        ],
    )
    def test_rules(
        self, impl: Kernels, buf: bytes, with_counts: bool, hexlen: int, expected: tuple[int, int, int, int]
    ) -> None:
        """Each rule: line endings, blank lines, case, lengths, colon, count range, stop at an overflow."""
        result, digests, counts, bad = run_parse(impl, buf, with_counts, hexlen)
        assert result == expected
        model = model_parse(buf, with_counts, hexlen)
        assert (result, digests, counts[: result[1]].tolist(), bad[: result[2]].tolist()) == model

    @both_kernels
    @pytest.mark.parametrize(
        ("line", "shape", "good"),
        [
            (HIBP_LINE[:40] + b"\t3", 9, True),
            (HIBP_LINE[:40] + b",3", 44, True),
            (b'"' + HIBP_LINE[:40] + b'",3', 44 | QUOTED_HEX, True),
            (b'"' + HIBP_LINE[:40] + b'","3"', 44 | QUOTED_HEX | QUOTED_COUNT, True),
            (HIBP_LINE[:40] + b":+3", PLUS, True),
            (HIBP_LINE + b"\x00", NUL, True),
            (HIBP_LINE + b"\x00\r", NUL, True),
            (b'"' + HIBP_LINE[:40] + b'"\t"+3"\x00', 9 | QUOTED_HEX | QUOTED_COUNT | PLUS | NUL, True),
            (HIBP_LINE[:40] + b"\t3", 0, False),
            (HIBP_LINE[:40] + b":3", 9, False),
            (b'"' + HIBP_LINE[:40] + b",3", 44 | QUOTED_HEX, False),
            (HIBP_LINE[:40] + b'",3', 44 | QUOTED_HEX, False),
            (b'"' + HIBP_LINE[:40] + b'",3', 44, False),
            (HIBP_LINE[:40] + b',"3', 44 | QUOTED_COUNT, False),
            (HIBP_LINE[:40] + b',"', 44 | QUOTED_COUNT, False),
            (HIBP_LINE[:40] + b',""', 44 | QUOTED_COUNT, False),
            (HIBP_LINE[:40] + b":+3", 0, False),
            (HIBP_LINE[:40] + b":++3", PLUS, False),
            (HIBP_LINE[:40] + b":+", PLUS, False),
            (HIBP_LINE + b"\x00", 0, False),
            (HIBP_LINE + b"\x00\x00", NUL, False),
            (HIBP_LINE + b"\r\x00", NUL, False),
        ],
        ids=[
            "tab", "comma", "quoted-hex", "quoted-both", "plus", "nul", "nul-then-cr", "all-at-once",
            "tab-not-asked", "colon-when-tab-asked", "no-closing-quote", "no-opening-quote", "quote-not-asked",
            "count-quote-unclosed", "count-one-quote", "count-empty-quotes", "plus-not-asked", "two-pluses",
            "plus-alone", "nul-not-asked", "two-nuls", "cr-after-nul",
        ],
    )  # fmt: skip
    def test_shapes(self, impl: Kernels, line: bytes, shape: int, good: bool) -> None:
        """Each shape reads its own lines to the same digest and count, and nothing looser."""
        result, digests, counts, _ = run_parse(impl, line + b"\n", True, 40, shape)
        assert result == ((1, 1, 0, -1) if good else (1, 0, 1, -1))
        assert (digests, counts[: result[1]].tolist()) == ((HIBP_DIGEST, [3]) if good else (b"", []))
        assert result == model_parse(line + b"\n", True, 40, shape)[0]

    @both_kernels
    @pytest.mark.parametrize("shape", [QUOTED_HEX, QUOTED_HEX | NUL])
    def test_shapes_of_bare_digests(self, impl: Kernels, shape: int) -> None:
        """Without counts, a quoted digest (and a NUL before the line end) reads as the digest."""
        line = b'"' + HIBP_LINE[:40] + b'"' + (b"\x00" if shape & NUL else b"")
        result, digests, _, _ = run_parse(impl, line + b"\r\n" + HIBP_LINE[:40] + b"\n", False, 40, shape)
        assert (result, digests) == ((2, 1, 1, -1), HIBP_DIGEST)

    @both_kernels
    @pytest.mark.parametrize("shape", [-1, 0x1000])
    def test_bad_shape(self, impl: Kernels, shape: int) -> None:
        """A shape outside 0..0xFFF raises ValueError."""
        with pytest.raises(ValueError):
            run_parse(impl, HIBP_LINE, True, 40, shape)

    @both_kernels
    @settings(max_examples=300, deadline=None)
    @given(parse_cases())
    @example((HIBP_LINE + b"\r\n" + HIBP_LINE[:40] + b":99999999999", True, 40, 0))
    @example(
        (b'"' + HIBP_LINE[:40] + b'"\t"+12345678901"\x00\r\n', True, 40, 9 | QUOTED_HEX | QUOTED_COUNT | PLUS | NUL)
    )
    def test_matches_model(self, impl: Kernels, case: ParseCase) -> None:
        """parse_lines gives the model's tuple, digests, counts and bad lines, and writes nothing past them."""
        buf, with_counts, hexlen, shape = case
        result, digests, counts, bad = run_parse(impl, buf, with_counts, hexlen, shape)
        expected, want_digests, want_counts, want_bad = model_parse(buf, with_counts, hexlen, shape)
        assert result == expected
        assert digests == want_digests
        assert counts[: result[1]].tolist() == want_counts
        assert bad[: result[2]].tolist() == want_bad
        assert (counts[result[1] :] == 0xDEADBEEF).all() and (bad[result[2] :] == -7).all()

    @needs_c
    @settings(max_examples=500, deadline=None)
    @given(parse_cases())
    def test_c_and_numpy_identical(self, case: ParseCase) -> None:
        """On nasty input the C and numpy parsers return the same tuple and fill the same outputs."""
        assert _kernels_c is not None  # needs_c skips the test otherwise
        buf, with_counts, hexlen, shape = case
        c_result, c_digests, c_counts, c_bad = run_parse(_kernels_c, buf, with_counts, hexlen, shape)
        py_result, py_digests, py_counts, py_bad = run_parse(_kernels_py, buf, with_counts, hexlen, shape)
        assert c_result == py_result
        assert c_digests == py_digests
        np.testing.assert_array_equal(c_counts, py_counts)
        np.testing.assert_array_equal(c_bad, py_bad)

    @needs_c
    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400), st.booleans(), st.sampled_from([40, 32]), st.one_of(st.just(0), shapes()))
    def test_c_and_numpy_identical_on_arbitrary_bytes(
        self, buf: bytes, with_counts: bool, hexlen: int, shape: int
    ) -> None:
        """On arbitrary bytes, in any shape, the C and numpy parsers agree too."""
        assert _kernels_c is not None  # needs_c skips the test otherwise
        c = run_parse(_kernels_c, buf, with_counts, hexlen, shape)
        py = run_parse(_kernels_py, buf, with_counts, hexlen, shape)
        assert c[:2] == py[:2]
        np.testing.assert_array_equal(c[2], py[2])
        np.testing.assert_array_equal(c[3], py[3])

    @both_kernels
    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=2000), st.booleans(), st.sampled_from([40, 32]), st.one_of(st.just(0), shapes()))
    def test_never_raises_on_arbitrary_bytes(
        self, impl: Kernels, buf: bytes, with_counts: bool, hexlen: int, shape: int
    ) -> None:
        """Given correctly sized buffers, parse_lines takes any bytes in any shape and accounts for every line."""
        digests, counts, bad = buffers(buf, hexlen)
        lines, good, nbad, overflow = impl.parse_lines(buf, int(with_counts), hexlen, digests, counts, bad, shape)
        assert lines == good + nbad
        assert overflow == -1 or overflow == lines
        assert 0 <= lines <= buf.count(b"\n") + 1

    @both_kernels
    @settings(max_examples=50, deadline=None)
    @given(st.lists(st.binary(min_size=20, max_size=20), min_size=1, max_size=50), st.data())
    def test_round_trips_formatted_digests(self, impl: Kernels, digests: list[bytes], data: st.DataObject) -> None:
        """Digests written as HEX:COUNT lines in any case come back as the same bytes and counts."""
        counts = data.draw(st.lists(st.integers(0, MAX_COUNT), min_size=len(digests), max_size=len(digests)))
        lines = []
        for digest, count in zip(digests, counts, strict=True):
            text = digest.hex()
            lines.append((text.upper() if data.draw(st.booleans()) else text) + f":{count}")
        result, got_digests, got_counts, _ = run_parse(impl, "\r\n".join(lines).encode(), True, 40)
        assert result == (len(digests), len(digests), 0, -1)
        assert got_digests == b"".join(digests)
        assert got_counts[: len(digests)].tolist() == counts

    @both_kernels
    @pytest.mark.parametrize("hexlen", [0, -2, 3, 130])
    def test_bad_hexlen(self, impl: Kernels, hexlen: int) -> None:
        """A hex length that is odd, not positive or above 128 raises ValueError."""
        with pytest.raises(ValueError):
            impl.parse_lines(
                b"00\n", 1, hexlen, np.zeros(1000, np.uint8), np.zeros(2, np.uint64), np.zeros(2, np.int64)
            )

    @both_kernels
    @pytest.mark.parametrize("short", ["digests", "counts", "bad"])
    def test_buffers_too_small(self, impl: Kernels, short: str) -> None:
        """An output buffer with room for fewer entries than there are lines raises ValueError, never overflows."""
        buf = HIBP_LINE + b"\n" + HIBP_LINE + b"\n"
        digests, counts, bad = buffers(buf, 40)
        sized = {"digests": digests[: 20 + 19], "counts": counts[:1], "bad": bad[:1]}
        digests_out, counts_out, bad_out = (
            sized[name] if name == short else full for name, full in zip(sized, (digests, counts, bad), strict=True)
        )
        with pytest.raises(ValueError):
            impl.parse_lines(buf, 1, 40, digests_out, counts_out, bad_out)


def test_model_agrees_with_itself_on_overflow() -> None:
    """The model stops at the first too-large count and does not count that line (guards the model itself)."""
    result, _, _, bad = model_parse(b"x\n" + HIBP_LINE[:40] + b":4294967296\nx\n", True, 40)
    assert result == (1, 0, 1, 1) and bad == [0]


class TestSwitch:
    """The conftest fixture switches the kernels every user reads."""

    def test_fixture_switches_the_one_indirection(self, kernels: object) -> None:
        """Under the fixture, _native.kernels is the chosen implementation, and a filter answers through it."""
        from credcheck import _native
        from credcheck.bloom import BloomFilter

        assert _native.kernels is kernels and _native.AVAILABLE[_native.NAME] is kernels
        bf = BloomFilter.create(100, 0.01)
        bf.add(b"\x01" * 20)
        assert b"\x01" * 20 in bf

    def test_use_restores(self) -> None:
        """_native.use() puts the previous kernels back when the block ends, even on an error."""
        from credcheck import _native

        before = _native.kernels
        with pytest.raises(RuntimeError), _native.use("numpy"):
            assert _native.NAME == "numpy"
            raise RuntimeError
        assert _native.kernels is before


# -- rendering range lines ----------------------------------------------------------------------------


def model_render(rows: list[bytes], counts: list[int]) -> bytes:
    """Range lines from the documented rule: each row's hex upper-cased without its first digit, ':', count, CRLF."""
    lines = zip(rows, counts, strict=True)
    return b"".join(b"%s:%d\r\n" % (row.hex().upper()[1:].encode(), count) for row, count in lines)


RenderCase = tuple[int, list[bytes], list[int]]  # width, rows, counts


@st.composite
def render_cases(draw: st.DrawFn) -> RenderCase:
    width = draw(st.sampled_from([1, 2, 14, 18, 64]))
    n = draw(st.integers(0, 40))
    rows = [draw(st.binary(min_size=width, max_size=width)) for _ in range(n)]
    edge = st.sampled_from([0, 1, 9, 10, 99, 100, 999_999_999, 1_000_000_000, MAX_COUNT])
    counts = [draw(st.one_of(edge, st.integers(0, MAX_COUNT))) for _ in range(n)]
    return width, rows, counts


def run_render(impl: Kernels, width: int, rows: list[bytes], counts: list[int], room: int | None = None) -> bytes:
    out = bytearray(len(counts) * (2 * width + 12) if room is None else room)
    size = impl.render_lines(b"".join(rows), width, np.asarray(counts, dtype="<u4"), out)
    return bytes(out[:size])


class TestRenderLines:
    @both_kernels
    @settings(max_examples=200, deadline=None)
    @given(render_cases())
    def test_matches_model(self, impl: Kernels, case: RenderCase) -> None:
        """Every row as HIBP writes it: upper-case hex less the first digit, the count in plain decimal, CRLF."""
        width, rows, counts = case
        assert run_render(impl, width, rows, counts) == model_render(rows, counts)

    @needs_c
    @settings(max_examples=200, deadline=None)
    @given(render_cases())
    def test_c_and_numpy_identical(self, case: RenderCase) -> None:
        """The two kernels write the same bytes."""
        assert _kernels_c is not None  # needs_c skips the test otherwise
        assert run_render(_kernels_c, *case) == run_render(_kernels_py, *case)

    @both_kernels
    def test_more_rows_than_one_block(self, impl: Kernels) -> None:
        """A batch larger than the numpy kernel's block renders as a whole (70,000 rows)."""
        rng = np.random.default_rng(5)
        rows = [bytes(r) for r in rng.integers(0, 256, (70_000, 18), dtype=np.uint8)]
        counts = rng.integers(0, MAX_COUNT + 1, 70_000).tolist()
        assert run_render(impl, 18, rows, counts) == model_render(rows, counts)

    @both_kernels
    @pytest.mark.parametrize(
        ("width", "rows", "counts", "room", "message"),
        [
            (0, b"", [], 0, "width"),
            (18, b"x" * 17, [1], 48, "rows"),
            (18, b"x" * 18, [1], 47, "too small"),
        ],
    )
    def test_bad_arguments(
        self, impl: Kernels, width: int, rows: bytes, counts: list[int], room: int, message: str
    ) -> None:
        """A wrong width, rows that do not match the counts, or a buffer too small is a ValueError."""
        with pytest.raises(ValueError, match=message):
            impl.render_lines(rows, width, np.asarray(counts, dtype="<u4"), bytearray(room))


# -- binary fuse filters: a model of the documented rules, and the two kernels against it and each other -----

U32 = (1 << 32) - 1


def model_murmur64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & U64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & U64
    return h ^ (h >> 33)


def model_fuse_slots(h: int, sl: int, scl: int) -> list[int]:
    """The three slots of a hash, as _kernels.c's fuse section and docs/FORMAT.md state them."""
    p0 = (h * scl) >> 64
    return [p0, ((p0 + sl) & U32) ^ ((h >> 18) & (sl - 1)), ((p0 + 2 * sl) & U32) ^ (h & (sl - 1))]


def model_fingerprint(h: int, width: int) -> int:
    return (h ^ (h >> 32)) & ((1 << width) - 1)


def model_field(region: bytes, slot: int, width: int) -> int:
    return (int.from_bytes(region, "little") >> (slot * width)) & ((1 << width) - 1)


def model_fuse_build(words: list[int], seed: int, sl: int, scl: int, width: int) -> bytes | None:
    """Peel in rounds (every key alone somewhere, by its lowest alone slot; removed together), fill the slots in
    reverse round order, pack them: the region, or None when peeling stops."""
    al = scl + 2 * sl
    hashes = [model_murmur64((w + seed) & U64) for w in words]
    left = set(range(len(hashes)))
    rounds = []
    while True:
        count = [0] * al
        for i in left:
            for p in model_fuse_slots(hashes[i], sl, scl):
                count[p] += 1
        chosen = []
        for i in sorted(left):
            alone = [p for p in model_fuse_slots(hashes[i], sl, scl) if count[p] == 1]
            if alone:
                chosen.append((i, min(alone)))
        if not chosen:
            break
        rounds.append(chosen)
        left -= {i for i, _ in chosen}
    if left:
        return None
    slots = [0] * al
    for chosen in reversed(rounds):
        for i, slot in chosen:
            h = hashes[i]
            a, b, c = model_fuse_slots(h, sl, scl)
            slots[slot] = model_fingerprint(h, width) ^ slots[a] ^ slots[b] ^ slots[c]
    packed = sum(v << (i * width) for i, v in enumerate(slots))
    size = _kernels_py.fuse_region_bytes(al, width)
    return packed.to_bytes(size, "little")


def model_fuse_contains(region: bytes, entry: dict[str, int], shard_bits: int, width: int, key: bytes) -> bool:
    word = int.from_bytes(key[8:16], "little")
    h = model_murmur64((word + entry["seed"]) & U64)
    a, b, c = model_fuse_slots(h, entry["sl"], entry["scl"])
    found = model_field(region, a, width) ^ model_field(region, b, width) ^ model_field(region, c, width)
    return found == model_fingerprint(h, width)


def fuse_shape(n: int, sl_exp: int) -> tuple[int, int]:
    """A segment length 2^sl_exp and enough segments for n keys (about 1.3 slots a key, at least one segment)."""
    sl = 1 << sl_exp
    return sl, max(1, -(-(n * 13 // 10) // sl) - 2) * sl


FuseCase = tuple[list[int], int, int, int, int]  # words, seed, sl, scl, width


@st.composite
def fuse_cases(draw: st.DrawFn) -> FuseCase:
    """Distinct words (sometimes sharing their low bits), a seed, segment parameters and a width."""
    words = draw(
        st.lists(st.one_of(st.integers(0, U64), st.integers(0, 255), st.integers(U64 - 255, U64)), max_size=120)
    )
    words = list(dict.fromkeys(words))
    sl, scl = fuse_shape(len(words), draw(st.integers(2, 6)))
    return words, draw(st.integers(0, U64)), sl, scl, draw(st.integers(1, 32))


def one_shard_directory(seed: int, sl: int, scl: int, items: int) -> np.ndarray:
    entry = np.zeros(1, dtype=_kernels_py.FUSE_ENTRY_DTYPE)
    entry["seed"], entry["items"], entry["al"], entry["sl"], entry["scl"] = seed, items, scl + 2 * sl, sl, scl
    return entry.view(np.uint8)


def run_fuse_build(impl: Kernels, words: list[int], seed: int, sl: int, scl: int, width: int) -> bytes | None:
    region = np.full(_kernels_py.fuse_region_bytes(scl + 2 * sl, width), 0xA5, dtype=np.uint8)
    placed = impl.fuse_build(np.array(words, dtype=np.uint64), seed, sl, scl, width, region)
    return region.tobytes() if placed else None


def key_of(word: int, lead: bytes = b"\x00\x00\x00\x00", size: int = 20) -> bytes:
    return (lead + b"\x5a" * 4 + word.to_bytes(8, "little")).ljust(size, b"\xc3")


class TestFuseBuild:
    @both_kernels
    @settings(max_examples=60, deadline=None)
    @given(fuse_cases())
    def test_matches_model(self, impl: Kernels, case: FuseCase) -> None:
        """A shard's region (or the failure to peel) is exactly what the documented rounds give."""
        words, seed, sl, scl, width = case
        assert run_fuse_build(impl, words, seed, sl, scl, width) == model_fuse_build(words, seed, sl, scl, width)

    @needs_c
    @settings(max_examples=150, deadline=None)
    @given(fuse_cases(), st.booleans())
    def test_c_and_numpy_identical(self, case: FuseCase, crowded: bool) -> None:
        """Both kernels build the same region, and fail on the same sets (crowded: fewer slots than keys need)."""
        assert _kernels_c is not None  # needs_c skips the test otherwise
        words, seed, sl, scl, width = case
        if crowded:
            scl = sl  # one segment for them all: peeling often stops
        assert run_fuse_build(_kernels_c, words, seed, sl, scl, width) == run_fuse_build(
            _kernels_py, words, seed, sl, scl, width
        )

    @both_kernels
    @settings(max_examples=40, deadline=None)
    @given(fuse_cases())
    def test_every_key_is_found(self, impl: Kernels, case: FuseCase) -> None:
        """No false negatives: every key the shard was built from is found, by the kernel and by the model."""
        words, seed, sl, scl, width = case
        region = run_fuse_build(impl, words, seed, sl, scl, width)
        if region is None:
            return
        directory = one_shard_directory(seed, sl, scl, len(words))
        keys = np.frombuffer(b"".join(key_of(w) for w in words), dtype=np.uint8).reshape(-1, 20)
        out = np.zeros(len(words), dtype=np.uint8)
        assert impl.fuse_contains_many(region, directory, 0, width, keys, 20, out) == len(words)
        entry = {"seed": seed, "sl": sl, "scl": scl}
        assert all(model_fuse_contains(region, entry, 0, width, key_of(w)) for w in words)
        assert all(impl.fuse_contains(region, directory, 0, width, key_of(w)) for w in words)

    @both_kernels
    def test_duplicate_words_never_peel(self, impl: Kernels) -> None:
        """Two equal words share all three slots: the build says so (the caller deduplicates), never a bad region."""
        sl, scl = fuse_shape(3, 3)
        assert run_fuse_build(impl, [7, 7, 9], 0, sl, scl, 8) is None

    @both_kernels
    def test_too_many_words_for_the_counts(self, impl: Kernels, tmp_path: Path) -> None:
        """More than 2^32 / 3 words (a slot's uint32 count could wrap) is a ValueError before any is read (the
        words here are a sparse file's map: nothing is allocated)."""
        path = tmp_path / "words"
        with open(path, "wb") as sparse:
            sparse.truncate(8 * (0x55555555 + 1))
        region = np.zeros(_kernels_py.fuse_region_bytes(24, 8), dtype=np.uint8)
        with (
            open(path, "rb") as fh,
            mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as words,
            pytest.raises(ValueError, match="at most 2\\^32 / 3"),
        ):
            impl.fuse_build(words, 0, 8, 8, 8, region)

    @both_kernels
    @pytest.mark.parametrize(
        ("sl", "scl", "width", "size", "message"),
        [
            (6, 12, 8, None, "impossible segment parameters"),
            (8, 12, 8, None, "impossible segment parameters"),
            (8, 0, 8, None, "impossible segment parameters"),
            (8, 8, 0, None, "width must be between 1 and 32"),
            (8, 8, 33, None, "width must be between 1 and 32"),
            (8, 8, 8, 7, "the output region has the wrong size"),
        ],
    )
    def test_bad_arguments(self, impl: Kernels, sl: int, scl: int, width: int, size: int | None, message: str) -> None:
        """Impossible parameters and a wrongly sized region are a ValueError, never a write out of bounds."""
        size = size if size is not None else 64
        with pytest.raises(ValueError, match=message):
            impl.fuse_build(np.array([1, 2], dtype=np.uint64), 0, sl, scl, width, np.zeros(size, dtype=np.uint8))


# body, directory, shard_bits, width, members, probes
ShardedFuseCase = tuple[np.ndarray, np.ndarray, int, int, int, list[bytes]]


@st.composite
def sharded_fuse_cases(draw: st.DrawFn) -> ShardedFuseCase:
    """A filter of 2^shard_bits shards built by the numpy kernel, and probes: its keys and random ones."""
    shard_bits = draw(st.integers(0, 3))
    width = draw(st.integers(1, 32))
    regions, entries, keys = [], [], []
    offset = 0
    for shard in range(1 << shard_bits):
        words = list(dict.fromkeys(draw(st.lists(st.integers(0, U64), max_size=40))))
        sl, scl = fuse_shape(len(words), 3)
        for seed in range(50):
            region = run_fuse_build(_kernels_py, words, seed, sl, scl, width)
            if region is not None:
                break
        assume(region is not None)
        assert region is not None  # assume() rejected the example otherwise
        lead = struct.pack(">I", shard << (32 - shard_bits)) if shard_bits else b"\x00" * 4
        keys += [key_of(w, lead) for w in words]
        entry = one_shard_directory(seed, sl, scl, len(words)).view(_kernels_py.FUSE_ENTRY_DTYPE)
        entry["offset"] = offset
        offset += len(region)
        regions.append(region)
        entries.append(entry)
    body = np.frombuffer(b"".join(regions), dtype=np.uint8)
    directory = np.concatenate(entries).view(np.uint8)
    probes = keys + draw(st.lists(st.binary(min_size=20, max_size=20), max_size=40))
    return body, directory, shard_bits, width, len(keys), probes


class TestFuseLookups:
    @both_kernels
    @settings(max_examples=40, deadline=None)
    @given(sharded_fuse_cases())
    def test_sharded_members_found_and_model_agrees(self, impl: Kernels, case: ShardedFuseCase) -> None:
        """Across shards every member is found, and every answer is the model's (the key's shard, its slots)."""
        body, directory, shard_bits, width, members, probes = case
        keys = np.frombuffer(b"".join(probes), dtype=np.uint8).reshape(-1, 20)
        out = np.full(len(probes), 7, dtype=np.uint8)
        impl.fuse_contains_many(body, directory, shard_bits, width, keys, 20, out)
        entries = directory.view(_kernels_py.FUSE_ENTRY_DTYPE)
        expected = []
        for key in probes:
            shard = int.from_bytes(key[:4], "big") >> (32 - shard_bits) if shard_bits else 0
            e = entries[shard]
            region = body.tobytes()[int(e["offset"]) :]
            entry = {"seed": int(e["seed"]), "sl": int(e["sl"]), "scl": int(e["scl"])}
            expected.append(model_fuse_contains(region, entry, shard_bits, width, key))
        assert out.tolist() == [int(x) for x in expected]
        assert all(expected[:members])
        assert [impl.fuse_contains(body, directory, shard_bits, width, key) for key in probes] == expected

    @needs_c
    @settings(max_examples=60, deadline=None)
    @given(sharded_fuse_cases(), st.sampled_from([16, 20, 24]))
    def test_c_and_numpy_identical(self, case: ShardedFuseCase, stride: int) -> None:
        """Both kernels give the same answers, whatever the key size (only bytes 0-3 and 8-15 count)."""
        assert _kernels_c is not None  # needs_c skips the test otherwise
        body, directory, shard_bits, width, _, probes = case
        keys = np.frombuffer(b"".join(p[:16].ljust(stride, b"\x01") for p in probes), dtype=np.uint8)
        outs = []
        for impl in (_kernels_c, _kernels_py):
            out = np.zeros(len(probes), dtype=np.uint8)
            found = impl.fuse_contains_many(body, directory, shard_bits, width, keys, stride, out)
            outs.append((found, out.tolist()))
        assert outs[0] == outs[1]

    @both_kernels
    @pytest.mark.parametrize(
        ("field", "value"),
        [("offset", 1 << 40), ("al", 99), ("sl", 6), ("scl", 0), ("offset", 9)],
    )
    def test_directory_pointing_outside_is_refused(self, impl: Kernels, field: str, value: int) -> None:
        """An entry whose region would lie outside the body (or whose slots do not fit) is a ValueError."""
        sl, scl = fuse_shape(4, 2)
        region = run_fuse_build(impl, [1, 2, 3, 4], 0, sl, scl, 8) or run_fuse_build(impl, [1, 2, 3, 4], 1, sl, scl, 8)
        assert region is not None
        directory = one_shard_directory(0, sl, scl, 4)
        directory.view(_kernels_py.FUSE_ENTRY_DTYPE)[field] = value
        keys = np.zeros((1, 20), dtype=np.uint8)
        with pytest.raises(ValueError, match="directory entry"):
            impl.fuse_contains_many(region, directory, 0, 8, keys, 20, np.zeros(1, dtype=np.uint8))
        with pytest.raises(ValueError, match="directory entry"):
            impl.fuse_contains(region, directory, 0, 8, bytes(20))

    @both_kernels
    def test_directory_size_and_short_keys(self, impl: Kernels) -> None:
        """A directory that is not 48 bytes a shard, or keys shorter than 16 bytes, are a ValueError."""
        sl, scl = fuse_shape(0, 2)
        region = run_fuse_build(impl, [], 0, sl, scl, 8)
        assert region is not None
        directory = one_shard_directory(0, sl, scl, 0)
        with pytest.raises(ValueError, match="48 bytes per shard"):
            impl.fuse_contains(region, directory, 1, 8, bytes(20))
        with pytest.raises(ValueError, match="at least 16 bytes"):
            impl.fuse_contains(region, directory, 0, 8, bytes(15))
        with pytest.raises(ValueError, match="at least 16 bytes"):
            impl.fuse_contains_many(region, directory, 0, 8, bytes(30), 15, np.zeros(2, dtype=np.uint8))


# -- an audit's account lines: parse_accounts and render_accounts ----------------------------------------

ACCOUNT_FORMATS = [_native.ACCOUNT_BARE, _native.ACCOUNT_USER, _native.ACCOUNT_PWDUMP]
NT = "8846F7EAEE8FB117AD06BDD830B7586C"
EMPTY_LM = "aad3b435b51404eeaad3b435b51404ee"
NO_PASSWORD = "NO PASSWORD" + "*" * 21
Fault = _native.AccountFault


def run_accounts(impl: Kernels, buf: bytes, fmt: int, hexlen: int = 32, max_line: int = 1024) -> tuple[Any, ...]:
    """Run a kernel's parse_accounts with room for every line: (lines, good), codes, spans, flags, digests."""
    room = buf.count(b"\n") + buf.count(b"\r") + 1
    rows = np.full((room, hexlen // 2), 0xAB, np.uint8)
    spans = np.full((room, 4), -7, np.int64)
    codes, flags = np.full(room, 0xEE, np.uint8), np.full(room, 0xEE, np.uint8)
    lines, good = impl.parse_accounts(buf, fmt, hexlen, max_line, rows, spans, codes, flags)
    return (lines, good), codes[:lines].tolist(), spans[:lines].tolist(), flags[:lines].tolist(), rows[:good].tobytes()


@st.composite
def account_lines(draw: st.DrawFn) -> bytes:
    """Lines that are nearly pwdump, account:hash or bare digests, and the ways they go wrong."""
    hexes = st.sampled_from([NT, NT.lower(), NT + "ABCD1234", NT[:31], NT[:-1] + "g", EMPTY_LM, EMPTY_LM.upper(), ""])
    names = st.one_of(
        st.sampled_from(["alice", "CONTOSO\\bob", 'q"uo\\te', "", " ", "é", "x:y", "a\tb", NT, NT + "ABCD1234"]),
        st.text(min_size=0, max_size=6),
    )
    parts = []
    for _ in range(draw(st.integers(1, 8))):
        name = draw(names).encode("utf-8", "surrogatepass")
        name = name + draw(st.sampled_from([b"", b"\xff", b"\x01", b"\x7f", b"\xed\xa0\x80", b"\xf0\x9f\x98\x80"]))
        hex1, hex2 = draw(hexes).encode(), draw(hexes).encode()
        rid = draw(st.sampled_from([b"500", b"1104", b"", b"12345678901", b"x"]))
        lm = draw(st.sampled_from([EMPTY_LM.encode(), hex1, NO_PASSWORD.encode()]))
        nt = draw(st.sampled_from([hex2, NO_PASSWORD.encode()]))
        line = draw(
            st.sampled_from(
                [
                    name + b":" + rid + b":" + lm + b":" + nt + b":::",
                    name + b":" + rid + b":" + lm + b":" + nt + b"::: (status=Enabled)",
                    name + b":" + rid + b":" + lm + b":" + nt,
                    name + draw(st.sampled_from([b":", b"\t", b": ", b"::"])) + hex2,
                    hex1,
                    b"",
                ]
            )
        )
        line = (
            draw(st.sampled_from([b"", b" ", b"\t "])) + line + draw(st.sampled_from([b"", b" \t", b"\x00", b"\x00 "]))
        )
        parts.append(line + draw(st.sampled_from([b"\n", b"\r\n", b"\r", b""])))
    return b"".join(parts)


class TestParseAccounts:
    @both_kernels
    @pytest.mark.parametrize(
        ("line", "fmt", "code", "flag"),
        [
            (f"CONTOSO\\alice:1104:{EMPTY_LM}:{NT}:::", _native.ACCOUNT_PWDUMP, Fault.OK, 0),
            (f"bob:500:{EMPTY_LM.upper()}:{NT.lower()}::: (status=Enabled)", _native.ACCOUNT_PWDUMP, Fault.OK, 0),
            (f"old:500:E52CAC67419A9A224A3B108F3FA6CB6D:{NT}:::", _native.ACCOUNT_PWDUMP, Fault.OK, _native.ACCOUNT_LM),
            (f"x:1:{NO_PASSWORD}:{NT}:::", _native.ACCOUNT_PWDUMP, Fault.OK, 0),
            (f"x:1:{EMPTY_LM}:{NO_PASSWORD}:::", _native.ACCOUNT_PWDUMP, Fault.NO_NT, 0),
            (f":1:{EMPTY_LM}:{NT}:::", _native.ACCOUNT_PWDUMP, Fault.EMPTY_NAME, 0),
            (f"x:r1:{EMPTY_LM}:{NT}:::", _native.ACCOUNT_PWDUMP, Fault.NOT_SHAPE, 0),
            (f"x:1:{EMPTY_LM}:{NT}", _native.ACCOUNT_PWDUMP, Fault.NOT_SHAPE, 0),
            (f"x\x1b[31m:1:{EMPTY_LM}:{NT}:::", _native.ACCOUNT_PWDUMP, Fault.NAME_CONTROL, 0),
            (f"alice:{NT}", _native.ACCOUNT_PWDUMP, Fault.NOT_SHAPE, 0),
            (f"alice:{NT}", _native.ACCOUNT_USER, Fault.OK, 0),
            (f"alice\t {NT} \x00", _native.ACCOUNT_USER, Fault.OK, 0),
            (f"{NT}:{NT}", _native.ACCOUNT_USER, Fault.OK, 0),
            (f"{NT}:{NT}", _native.ACCOUNT_USER | _native.ACCOUNT_AUTO, Fault.AMBIGUOUS, 0),
            (f"alice:{NT}ABCD1234", _native.ACCOUNT_USER, Fault.OTHER_WIDTH, 0),
            (f"alice:{NT}:", _native.ACCOUNT_USER, Fault.NOT_SHAPE, 0),
            (f" {NT}\t", _native.ACCOUNT_BARE, Fault.OK, 0),
            (f"{NT}ABCD1234", _native.ACCOUNT_BARE, Fault.OTHER_WIDTH, 0),
            (" \t\x00", _native.ACCOUNT_BARE, Fault.EMPTY, 0),
            ("x" * 1025, _native.ACCOUNT_BARE, Fault.TOO_LONG, 0),
        ],
    )
    def test_lines(self, impl: Kernels, line: str, fmt: int, code: int, flag: int) -> None:
        """Each shape's good lines and each fault, as _kernels.c lists them."""
        _, codes, _, flags, _ = run_accounts(impl, line.encode() + b"\r\n", fmt)
        assert (codes, flags) == ([code], [flag])

    @both_kernels
    def test_a_name_that_is_not_utf8(self, impl: Kernels) -> None:
        """An account name that Python's strict UTF-8 decoder refuses (here a surrogate) is NAME_NOT_UTF8."""
        _, codes, *_ = run_accounts(impl, b"x\xed\xa0\x80:1:" + f"{EMPTY_LM}:{NT}:::".encode(), _native.ACCOUNT_PWDUMP)
        assert codes == [Fault.NAME_NOT_UTF8]

    @both_kernels
    def test_spans_digests_and_line_ends(self, impl: Kernels) -> None:
        """Spans point at the account and the digest; LF, CRLF and a lone CR end lines; digests go out in order."""
        buf = f"a:{NT}\rbad\r\nb: {NT.lower()}\n".encode()
        counts, codes, spans, _, rows = run_accounts(impl, buf, _native.ACCOUNT_USER)
        assert counts == (3, 2) and codes == [Fault.OK, Fault.NOT_SHAPE, Fault.OK]
        assert [buf[s:e] for s, e, _, _ in spans] == [b"a", b"", b"b"]
        assert [buf[h:e].upper() for _, _, h, e in spans] == [NT.encode(), b"", NT.encode()]
        assert rows == 2 * bytes.fromhex(NT)

    @needs_c
    @settings(max_examples=400, deadline=None)
    @given(account_lines(), st.sampled_from(ACCOUNT_FORMATS), st.booleans(), st.sampled_from([32, 40]))
    def test_c_and_numpy_identical(self, buf: bytes, fmt: int, auto: bool, hexlen: int) -> None:
        """On near-miss account lines the C kernel and its twin give the same codes, spans, flags and digests."""
        assert _kernels_c is not None
        hexlen = 32 if fmt == _native.ACCOUNT_PWDUMP else hexlen
        fmt |= _native.ACCOUNT_AUTO if auto else 0
        assert run_accounts(_kernels_c, buf, fmt, hexlen, 60) == run_accounts(_kernels_py, buf, fmt, hexlen, 60)

    @needs_c
    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400), st.sampled_from(ACCOUNT_FORMATS))
    def test_c_and_numpy_identical_on_arbitrary_bytes(self, buf: bytes, fmt: int) -> None:
        """On arbitrary bytes the two agree too, and every line has a code."""
        assert _kernels_c is not None
        c = run_accounts(_kernels_c, buf, fmt)
        assert c == run_accounts(_kernels_py, buf, fmt)
        assert len(c[1]) == c[0][0] and c[1].count(Fault.OK) == c[0][1]

    @both_kernels
    @pytest.mark.parametrize(("fmt", "hexlen"), [(0, 32), (4, 32), (0x23, 32), (_native.ACCOUNT_PWDUMP, 40), (1, 30)])
    def test_bad_arguments(self, impl: Kernels, fmt: int, hexlen: int) -> None:
        """An unknown format, a width other than 32 or 40 (32 for pwdump) raise ValueError."""
        with pytest.raises(ValueError):
            run_accounts(impl, b"x\n", fmt, hexlen)

    @both_kernels
    @pytest.mark.parametrize("short", ["rows", "spans", "codes", "flags"])
    def test_buffers_too_small(self, impl: Kernels, short: str) -> None:
        """An output buffer with room for fewer lines (or digests) than there are raises ValueError."""
        buf = f"{NT}\n{NT}\n".encode()
        full: dict[str, np.ndarray[Any, Any]] = {
            "rows": np.zeros(32, np.uint8),
            "spans": np.zeros(8, np.int64),
            "codes": np.zeros(2, np.uint8),
            "flags": np.zeros(2, np.uint8),
        }
        rows, spans, codes, flags = (
            array[: len(array) // 2] if name == short else array for name, array in full.items()
        )
        with pytest.raises(ValueError):
            impl.parse_accounts(buf, _native.ACCOUNT_BARE, 32, 1024, rows, spans, codes, flags)


def run_render_accounts(
    impl: Kernels, buf: bytes, spans: list[list[int]], which: list[int], parts: list[bytes], flags: int
) -> bytes:
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(part) for part in parts], out=offsets[1:])
    out = np.full(4 * len(buf) + 64 * len(which) + 16, 0xEE, np.uint8)
    size = impl.render_accounts(
        buf,
        np.asarray(spans, np.int64).reshape(-1, 4),
        np.asarray(which, np.int64),
        b"".join(parts),
        offsets,
        flags,
        out,
    )
    return out[:size].tobytes()


class TestRenderAccounts:
    @both_kernels
    def test_lines(self, impl: Kernels) -> None:
        """Head, account (escaped for JSON), separator and upper-case digest (when shown), tail, LF."""
        buf = b'q"uo\\te:8846f7eaee8fb117ad06bdd830b7586c'
        spans = [[0, 7, 8, 40], [0, 0, 0, 0]]
        parts = [b'{"account": "', b'", "hash": "', b'", "x": 1}', b"error: bad", b"", b""]
        text = run_render_accounts(impl, buf, spans, [0, 1], parts, _native.RENDER_JSON | _native.RENDER_HASH)
        assert text == b'{"account": "q\\"uo\\\\te", "hash": "' + NT.encode() + b'", "x": 1}\nerror: bad\n'
        assert run_render_accounts(impl, buf, spans[:1], [0], parts[:3], 0) == b'{"account": "q"uo\\te", "x": 1}\n'

    @needs_c
    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=80), st.data())
    def test_c_and_numpy_identical(self, buf: bytes, data: st.DataObject) -> None:
        """On any spans, entries and flags the C kernel and its twin write the same bytes."""
        assert _kernels_c is not None
        n = data.draw(st.integers(0, 6))
        point = st.integers(0, len(buf))
        spans = [
            sorted(data.draw(st.lists(point, min_size=2, max_size=2)))
            + sorted(data.draw(st.lists(point, min_size=2, max_size=2)))
            for _ in range(n)
        ]
        parts = data.draw(st.lists(st.binary(max_size=5), min_size=3, max_size=9).filter(lambda p: len(p) % 3 == 0))
        which = data.draw(st.lists(st.integers(0, len(parts) // 3 - 1), min_size=n, max_size=n))
        flags = data.draw(st.integers(0, 3))
        assert run_render_accounts(_kernels_c, buf, spans, which, parts, flags) == run_render_accounts(
            _kernels_py, buf, spans, which, parts, flags
        )

    @both_kernels
    @pytest.mark.parametrize(
        ("spans", "which", "flags"),
        [([[0, 9, 0, 0]], [0], 0), ([[2, 1, 0, 0]], [0], 0), ([[0, 1, 0, 0]], [1], 0), ([[0, 1, 0, 0]], [0], 4)],
        ids=["span-past-end", "span-backwards", "no-such-entry", "unknown-flag"],
    )
    def test_bad_arguments(self, impl: Kernels, spans: list[list[int]], which: list[int], flags: int) -> None:
        """A span outside the buffer or backwards, an entry that is not there, an unknown flag: ValueError."""
        with pytest.raises(ValueError):
            run_render_accounts(impl, b"abc", spans, which, [b"h", b"s", b"t"], flags)

    @both_kernels
    def test_output_too_small(self, impl: Kernels) -> None:
        """The out buffer must hold the lines with every byte of every account escaped (JSON): one byte less raises
        ValueError before anything is written, never overflows."""
        args = (b"abc", np.array([0, 3, 0, 0], np.int64), np.zeros(1, np.int64), b"head", np.array([0, 4, 4, 4]))
        assert impl.render_accounts(*args, _native.RENDER_JSON, bytearray(4 + 6 + 1)) == 8
        with pytest.raises(ValueError):
            impl.render_accounts(*args, _native.RENDER_JSON, bytearray(4 + 6))
        with pytest.raises(ValueError):
            impl.render_accounts(*args, 0, bytearray(4 + 3))
