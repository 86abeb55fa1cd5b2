"""Readers for leaked sets: formats, compression, bad-line accounting."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import re
import tarfile
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credcheck import InputError
from credcheck._corpus import MAX_LINE_BYTES, Source, SourceStats, detect_format, read_source, split_combo_line
from credcheck.hashing import digest

from .conftest import LEAKED, sha1_upper
from .helpers import CANONICAL, DUMP_SHAPES, WITH_HEADER, editor_lines

# every reader parses through the line kernel: run them all on the C and the numpy kernels
pytestmark = pytest.mark.usefixtures("kernels")


def _read_all(source: Source, **kwargs: Any) -> tuple[list[bytes], list[int], SourceStats]:
    stats = SourceStats("test")
    digests: list[bytes] = []
    counts: list[int] = []
    for chunk in read_source(source, stats=stats, **kwargs):
        digests.extend(bytes(row) for row in chunk.digests)
        counts.extend(int(c) for c in chunk.counts)
    return digests, counts, stats


class TestDetect:
    @pytest.mark.parametrize(
        ("sample", "expected"),
        [
            (b"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:3\r\n", ("hibp", 40)),
            (b"fc525c9683e8fe067095ba2ddc971889:12\n", ("hibp", 32)),
            (b"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8\n", ("hash", 40)),
            (b"password\n123456\n", ("password", 0)),
            (b"", ("password", 0)),
            (b"SHA1:COUNT\r\n5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:3\r\n", ("hibp", 40)),
            (b"hash\n5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8\n", ("hash", 40)),
            (b"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:3  \n\n\n  \n", ("hibp", 40)),
        ],
    )
    def test_detects_format(self, sample: bytes, expected: tuple[str, int]) -> None:
        """The first lines decide the format, past a column header, blank lines and trailing whitespace."""
        detected = detect_format(sample, "sha1")
        assert (detected.input_format, detected.width) == expected

    def test_a_few_bad_lines_do_not_change_a_hash_dump(self) -> None:
        """One malformed line among twenty hash lines leaves the format hibp (the line is a bad line)."""
        lines = [f"{sha1_upper(str(i))}:{i + 1}" for i in range(20)]
        lines[7] = "garbage"
        assert detect_format("\n".join(lines).encode(), "sha1").input_format == "hibp"

    def test_a_hex_looking_password_does_not_make_a_hash_list(self) -> None:
        """One 40-hex line among two hundred passwords leaves the format password."""
        lines = [f"pass{i}" for i in range(200)] + [sha1_upper("x")]
        assert detect_format("\n".join(lines).encode(), "sha1").input_format == "password"

    @pytest.mark.parametrize(
        "sample",
        [
            b"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8\npassword\n",
            b"".join(f"{sha1_upper(str(i))}:1\nword{i}\n".encode() for i in range(10)),
        ],
    )
    def test_mixed_evidence_is_refused(self, sample: bytes) -> None:
        """Lines that are half hashes, half not, raise InputError naming --input-format instead of a guess."""
        with pytest.raises(InputError, match="--input-format"):
            detect_format(sample, "sha1", name="dump.txt")

    def test_strict_wants_unanimous_lines(self) -> None:
        """Under strict, a single non-hash line among hashes makes the format undecidable."""
        lines = [f"{sha1_upper(str(i))}:{i + 1}" for i in range(20)]
        lines[7] = "garbage"
        with pytest.raises(InputError, match="unanimous"):
            detect_format("\n".join(lines).encode(), "sha1", strict=True)


class TestRealDumps:
    """What real dumps carry in front of their hashes must not turn them into password lists."""

    @pytest.mark.parametrize(
        "prefix", [b"\xef\xbb\xbf", b"SHA1:COUNT\r\n", b"\xef\xbb\xbfhash:count\n"], ids=["bom", "header", "both"]
    )
    def test_dump_with_a_bom_or_header_is_read_as_hibp(self, tmp_path: Path, hibp_file: Path, prefix: bytes) -> None:
        """A UTF-8 BOM or a column header in front of a HIBP dump still gives every digest with its count."""
        path = tmp_path / "dump.txt"
        path.write_bytes(prefix + hibp_file.read_bytes())
        digests, counts, stats = _read_all(path)
        assert stats.input_format == "hibp"
        assert {d.hex().upper(): c for d, c in zip(digests, counts, strict=True)} == {
            sha1_upper(p): i + 1 for i, p in enumerate(LEAKED)
        }

    def test_header_does_not_stop_strict(self, tmp_path: Path, hibp_file: Path) -> None:
        """Under strict, a column header on line 1 is set aside (counted as a bad line), not an error."""
        path = tmp_path / "dump.txt"
        path.write_bytes(b"SHA1:COUNT\r\n" + hibp_file.read_bytes())
        digests, _, stats = _read_all(path, strict=True)
        assert len(digests) == len(LEAKED) and stats.header and stats.bad_line_numbers == [1]

    def test_trailing_whitespace_is_not_part_of_a_hash(self, tmp_path: Path) -> None:
        """Spaces or tabs after a hash line's count, and trailing blank lines, still give the digest."""
        path = tmp_path / "dump.txt"
        path.write_bytes(f"{sha1_upper('a')}:3 \t\r\n{sha1_upper('b')}:4  \n\n\n".encode())
        _, counts, stats = _read_all(path)
        assert (stats.input_format, counts, stats.bad_lines) == ("hibp", [3, 4], 2)

    @pytest.mark.parametrize("fmt", ["password", "hibp"])
    def test_bom_is_stripped_for_explicit_formats(self, tmp_path: Path, fmt: str) -> None:
        """With an explicit format, a UTF-8 BOM is not part of the first line."""
        path = tmp_path / "list.txt"
        line = f"{sha1_upper('a')}:1" if fmt == "hibp" else "password"
        path.write_bytes(b"\xef\xbb\xbf" + line.encode() + b"\n")
        digests, _, stats = _read_all(path, input_format=fmt)
        assert stats.bad_lines == 0
        assert digests == ([bytes.fromhex(sha1_upper("a"))] if fmt == "hibp" else [digest("password")])

    @pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
    @pytest.mark.parametrize("fmt", ["auto", "password"])
    def test_utf16_is_refused(self, tmp_path: Path, encoding: str, fmt: str) -> None:
        """A UTF-16 list (with a byte-order mark or without) is an InputError, never hashed as UTF-8."""
        path = tmp_path / "list.txt"
        path.write_bytes("\n".join(LEAKED).encode(encoding))
        with pytest.raises(InputError, match="UTF-16"):
            _read_all(path, input_format=fmt)

    @pytest.mark.parametrize("line", [b"0\x00\xf0\x90\x80\x80", b"pass\x00word", b"ab\x00"])
    def test_a_nul_in_one_utf8_password_is_not_utf16(self, tmp_path: Path, line: bytes) -> None:
        """A password holding a NUL (valid UTF-8) is hashed as it is, not taken for UTF-16 text."""
        path = tmp_path / "list.txt"
        path.write_bytes(line + b"\n")
        digests, _, stats = _read_all(path, input_format="password")
        assert stats.bad_lines == 0
        assert digests == [digest(line)]

    def test_mixed_source_is_refused_by_name(self, tmp_path: Path) -> None:
        """Through read_source, undecidable lines raise an InputError naming the source."""
        path = tmp_path / "mixed.txt"
        path.write_bytes(b"".join(f"{sha1_upper(str(i))}:1\nword{i}\n".encode() for i in range(10)))
        with pytest.raises(InputError, match=r"mixed\.txt: cannot tell"):
            _read_all(path)


class TestRead:
    def test_hibp_lines_give_digests_and_counts(self, hibp_file: Path) -> None:
        """A HIBP dump yields every digest with its count."""
        digests, counts, stats = _read_all(hibp_file)
        expected = {sha1_upper(p): i + 1 for i, p in enumerate(LEAKED)}
        assert {d.hex().upper(): c for d, c in zip(digests, counts, strict=True)} == expected
        assert (stats.input_format, stats.lines, stats.bad_lines) == ("hibp", len(LEAKED), 0)

    @pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
    def test_compressed_input_is_read_transparently(
        self, tmp_path: Path, hibp_file: Path, compress: Callable[[bytes], bytes]
    ) -> None:
        """gzip, bzip2 and xz files read the same as the plain file, whatever their name."""
        packed = tmp_path / "dump.bin"
        packed.write_bytes(compress(hibp_file.read_bytes()))
        assert _read_all(packed)[:2] == _read_all(hibp_file)[:2]

    def test_stdin_dash(self, hibp_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """'-' reads standard input."""
        fake = io.TextIOWrapper(io.BytesIO(hibp_file.read_bytes()))
        monkeypatch.setattr("sys.stdin", fake)
        assert _read_all("-")[:2] == _read_all(hibp_file)[:2]

    def test_passwords_are_hashed_and_bad_lines_counted(self, password_file: Path) -> None:
        """Plaintext lines are hashed with the scheme; undecodable lines are bad, with their number."""
        digests, counts, stats = _read_all(password_file)
        assert set(digests) == {digest(p) for p in LEAKED}
        assert len(digests) == len(LEAKED) + 1 and set(counts) == {1}
        assert (stats.input_format, stats.lines, stats.bad_lines) == ("password", len(LEAKED) + 2, 1)
        assert stats.bad_line_numbers == [len(LEAKED) + 2]

    def test_ntlm_passwords(self, password_file: Path) -> None:
        """With scheme ntlm, plaintext lines give NTLM digests."""
        digests, _, _ = _read_all(password_file, scheme="ntlm")
        assert set(digests) == {digest(p, "ntlm") for p in LEAKED}

    def test_bad_lines_are_numbered(self, tmp_path: Path) -> None:
        """Every malformed line is counted; the first ten line numbers (1-based) are kept."""
        good = f"{sha1_upper('x')}:1"
        lines = [good, "oops", good[:-2], "", f"{sha1_upper('y')}:-1", *(["zz"] * 20), good]
        path = tmp_path / "dirty.txt"
        path.write_text("\n".join(lines))
        _, counts, stats = _read_all(path, input_format="hibp")
        assert len(counts) == 2
        assert stats.bad_lines == len(lines) - 2
        assert stats.bad_line_numbers == list(range(2, 12))

    def test_strict_names_the_line_but_not_its_content(self, tmp_path: Path) -> None:
        """strict=True raises at the first bad line, naming its number only."""
        path = tmp_path / "dirty.txt"
        path.write_text(f"{sha1_upper('x')}:1\nhunter2-secret\n")
        with pytest.raises(InputError, match=r"dirty.txt:2: bad line") as info:
            _read_all(path, input_format="hibp", strict=True)
        assert "hunter2" not in str(info.value)

    @pytest.mark.parametrize("count", ["4294967296", "99999999999", "000000000001"])
    def test_count_too_large_is_an_error_under_strict(self, tmp_path: Path, count: str) -> None:
        """Under strict, a count above 2^32-1 (or longer than 10 digits) is an error naming its line, never wrapped."""
        path = tmp_path / "big.txt"
        path.write_text(f"{sha1_upper('a')}:1\n{sha1_upper('b')}:{count}\n")
        with pytest.raises(InputError, match=r"big.txt:2: count is larger"):
            _read_all(path, strict=True)

    @pytest.mark.parametrize("count", ["4294967296", "99999999999", "000000000001"])
    def test_count_too_large_is_a_bad_line(self, tmp_path: Path, count: str) -> None:
        """Leniently, a count too large for a store is a bad line with its number; the lines after it are read."""
        path = tmp_path / "big.txt"
        lines = [f"{sha1_upper(c)}:{i + 1}" for i, c in enumerate("abcdef")]
        lines[1] = f"{sha1_upper('b')}:{count}"
        lines[4] = f"{sha1_upper('e')}:{count}"
        path.write_text("\n".join(lines))
        _, counts, stats = _read_all(path, input_format="hibp")
        assert counts == [1, 3, 4, 6]
        assert (stats.lines, stats.bad_lines, stats.bad_line_numbers) == (6, 2, [2, 5])

    def test_count_too_large_on_the_last_line_without_newline(self, tmp_path: Path) -> None:
        """An overflowing count on a final line without a newline is a bad line too."""
        path = tmp_path / "big.txt"
        path.write_text(f"{sha1_upper('a')}:1\n{sha1_upper('b')}:4294967296")
        _, counts, stats = _read_all(path, input_format="hibp")
        assert (counts, stats.lines, stats.bad_line_numbers) == ([1], 2, [2])

    def test_largest_count_is_kept(self, tmp_path: Path) -> None:
        """2^32-1 itself is a valid count."""
        path = tmp_path / "max.txt"
        path.write_text(f"{sha1_upper('a')}:4294967295\n")
        assert _read_all(path)[1] == [4294967295]

    def test_other_scheme_is_refused_with_a_hint(self, ntlm_hibp_file: Path) -> None:
        """NTLM lines read as SHA-1 raise an InputError that says which --hash to use."""
        with pytest.raises(InputError, match="--hash ntlm"):
            _read_all(ntlm_hibp_file)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is an InputError naming it."""
        with pytest.raises(InputError, match=r"nope\.txt"):
            _read_all(tmp_path / "nope.txt")

    def test_chunking_does_not_change_the_result(self, tmp_path: Path) -> None:
        """Tiny chunks (lines split across reads) give the same digests, counts and line numbers."""
        rng = np.random.default_rng(3)
        lines = [f"{bytes(r).hex()}:{i}" for i, r in enumerate(rng.integers(0, 256, (500, 20), dtype=np.uint8))]
        lines[100] = "broken"
        path = tmp_path / "dump.txt"
        path.write_text("\r\n".join(lines) + "\r\n")
        whole = _read_all(path)
        small = _read_all(path, chunk_bytes=37)
        assert whole[:2] == small[:2]
        assert whole[2].bad_line_numbers == small[2].bad_line_numbers == [101]


class TestLongLines:
    @pytest.mark.parametrize("fmt", ["hibp", "password"])
    def test_huge_line_is_a_bad_line_read_in_bounded_memory(self, fmt: str) -> None:
        """A 32 MiB line is one bad line with its number, read with a few MiB at most, and the lines after it count."""
        good = f"{sha1_upper('a')}:1" if fmt == "hibp" else "password"
        data = io.BytesIO(f"{good}\n".encode() + b"7" * (32 << 20) + f"\n{good}\n{good}".encode())
        tracemalloc.start()
        try:
            digests, _, stats = _read_all(data, input_format=fmt, chunk_bytes=1 << 20)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert (len(digests), stats.lines, stats.bad_line_numbers) == (3, 4, [2])
        assert peak < 8 << 20

    @pytest.mark.parametrize("chunk_bytes", [64, 1 << 20])
    def test_a_long_run_of_trailing_blanks_is_bad_wherever_it_falls(self, chunk_bytes: int) -> None:
        """A hash line padded with 2,000 spaces is a bad line, in one chunk or across many (same answer)."""
        data = io.BytesIO(f"{sha1_upper('a')}:1{' ' * 2000}\n{sha1_upper('b')}:2 \n".encode())
        _, counts, stats = _read_all(data, input_format="hibp", chunk_bytes=chunk_bytes)
        assert (counts, stats.bad_line_numbers) == ([2], [1])

    def test_huge_last_line_without_newline(self) -> None:
        """A too-long final line without a newline is one bad line."""
        data = io.BytesIO(b"password\n" + b"x" * 5000)
        digests, _, stats = _read_all(data, input_format="password", chunk_bytes=100)
        assert (len(digests), stats.lines, stats.bad_line_numbers) == (1, 2, [2])

    @pytest.mark.parametrize("chunk_bytes", [64, 1 << 20])
    def test_password_line_limit_holds_wherever_the_line_falls(self, chunk_bytes: int) -> None:
        """A password of MAX_LINE_BYTES is hashed and one byte more is a bad line, whatever the chunking."""
        fits, too_long = b"p" * MAX_LINE_BYTES, b"q" * (MAX_LINE_BYTES + 1)
        data = io.BytesIO(fits + b"\n" + too_long + b"\n")
        digests, _, stats = _read_all(data, input_format="password", chunk_bytes=chunk_bytes)
        assert digests == [hashlib.sha1(fits).digest()] and stats.bad_line_numbers == [2]


class TestProperties:
    @settings(max_examples=200, deadline=None)
    @given(data=st.binary(max_size=2000), fmt=st.sampled_from(["hibp", "hash", "password", "auto"]))
    def test_reader_never_crashes_and_accounts_for_every_line(self, data: bytes, fmt: str) -> None:
        """On arbitrary bytes a reader returns chunks or raises InputError; lines = good + bad, and a line ends
        at LF, CRLF or a lone CR."""
        try:
            digests, _, stats = _read_all(io.BytesIO(data), input_format=fmt, chunk_bytes=64)
        except InputError:
            return
        assert stats.lines == len(digests) + stats.bad_lines
        text = data.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark is not a line
        assert stats.lines == len(editor_lines(text))


def test_corrupt_gzip_is_an_input_error(tmp_path: Path) -> None:
    """A gzip stream whose body is corrupt is an InputError naming the file (found by fuzzing)."""
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff")
    with pytest.raises(InputError, match=r"bad\.gz: cannot read"):
        _read_all(bad, input_format="hibp")


ROWS = sorted((sha1_upper(p), i + 1) for i, p in enumerate(LEAKED))
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


def _as_rows(digests: list[bytes], counts: list[int]) -> list[tuple[str, int]]:
    return sorted((d.hex().upper(), c) for d, c in zip(digests, counts, strict=True))


class TestShapes:
    """The shapes dumps come in are read as hashes with their counts, exactly as the HEX:COUNT text is."""

    @pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
    @pytest.mark.parametrize("shape", sorted(DUMP_SHAPES))
    def test_shape_reads_as_the_canonical_text(self, shape: str, strict: bool) -> None:
        """Each shape gives the digests and counts of its HEX:COUNT twin, read as hibp, with or without strict."""
        digests, counts, stats = _read_all(io.BytesIO(DUMP_SHAPES[shape](ROWS)), strict=strict)
        assert _as_rows(digests, counts) == ROWS
        assert stats.input_format == "hibp"
        assert (stats.lines, stats.bad_lines) == (len(ROWS) + (shape in WITH_HEADER), int(shape in WITH_HEADER))

    @pytest.mark.parametrize("compress", sorted(COMPRESSORS))
    @pytest.mark.parametrize("shape", sorted(DUMP_SHAPES))
    def test_compressed_shape(self, tmp_path: Path, shape: str, compress: str) -> None:
        """gzip, bzip2 and xz of each shape read as the shape does."""
        path = tmp_path / f"dump.{compress}"
        path.write_bytes(COMPRESSORS[compress](DUMP_SHAPES[shape](ROWS)))
        digests, counts, stats = _read_all(path)
        assert (_as_rows(digests, counts), stats.input_format) == (ROWS, "hibp")

    @pytest.mark.parametrize("shape", ["tab", "comma", "csv-quoted", "plus", "nul", "cr"])
    def test_explicit_hibp_takes_the_shape(self, shape: str) -> None:
        """With --input-format hibp named, the shape is still the one the lines have, not every line a bad one."""
        digests, counts, stats = _read_all(io.BytesIO(DUMP_SHAPES[shape](ROWS)), input_format="hibp")
        assert (_as_rows(digests, counts), stats.bad_lines) == (ROWS, 0)

    def test_quoted_digests_without_counts_are_a_hash_list(self) -> None:
        """A column of quoted digests ("HEX") is a hash list, count 1 each."""
        digests, counts, stats = _read_all(io.BytesIO(b"".join(f'"{h}"\r\n'.encode() for h, _ in ROWS)))
        assert (stats.input_format, _as_rows(digests, counts)) == ("hash", [(h, 1) for h, _ in ROWS])

    def test_summary_names_the_shape(self) -> None:
        """The stats name the shape they read, so the report can say it."""
        _, _, stats = _read_all(io.BytesIO(DUMP_SHAPES["csv-quoted"](ROWS)))
        assert stats.shape == '"HEX",COUNT'

    def test_a_line_in_another_shape_is_a_bad_line(self) -> None:
        """One HEX:COUNT line in a tab-separated dump is a bad line with its number, not a second shape."""
        data = DUMP_SHAPES["tab"](ROWS[:4]) + CANONICAL(ROWS[4:5]) + DUMP_SHAPES["tab"](ROWS[5:])
        digests, _, stats = _read_all(io.BytesIO(data))
        assert (len(digests), stats.bad_line_numbers) == (len(ROWS) - 1, [5])

    def test_strict_names_the_shape_of_a_bad_line(self) -> None:
        """Under strict, a bad line of a shaped dump is an error naming its line and the shape wanted."""
        data = DUMP_SHAPES["comma"](ROWS) + b"not a hash\n"
        with pytest.raises(InputError, match=rf":{len(ROWS) + 1}: bad line \(not a valid hibp line, HEX,COUNT\)"):
            _read_all(io.BytesIO(data), input_format="hibp", strict=True)

    @settings(max_examples=150, deadline=None)
    @given(
        rows=st.lists(st.tuples(st.binary(min_size=20, max_size=20), st.integers(0, 4294967295)), min_size=1,
                      max_size=40, unique_by=lambda r: r[0]),
        separator=st.sampled_from([":", "\t", ","]),
        quotes=st.tuples(st.booleans(), st.booleans()),
        plus=st.booleans(),
        nul=st.booleans(),
        ending=st.sampled_from(["\n", "\r\n", "\r"]),
        header=st.sampled_from(["", "hash:count", '"sha1","prevalence"']),
        bom=st.booleans(),
        case=st.sampled_from([str.upper, str.lower]),
        chunk=st.sampled_from([64, 1000, 1 << 20]),
    )  # fmt: skip
    def test_any_shape_reads_as_the_canonical_text(
        self,
        rows: list[tuple[bytes, int]],
        separator: str,
        quotes: tuple[bool, bool],
        plus: bool,
        nul: bool,
        ending: str,
        header: str,
        bom: bool,
        case: Callable[[str], str],
        chunk: int,
    ) -> None:
        """Any mix of separator, quotes, '+', NUL, line end, header and BOM reads as the HEX:COUNT text does."""
        quote_hex, quote_count = ('"' if q else "" for q in quotes)
        lines = [
            f"{quote_hex}{case(d.hex())}{quote_hex}{separator}{quote_count}{'+' if plus else ''}{c}{quote_count}"
            + ("\x00" if nul else "")
            for d, c in rows
        ]
        text = (header + ending if header else "") + ending.join(lines) + ending
        data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
        digests, counts, stats = _read_all(io.BytesIO(data), chunk_bytes=chunk)
        want_digests, want_counts, _ = _read_all(io.BytesIO(CANONICAL([(d.hex(), c) for d, c in rows])))
        assert (digests, counts) == (want_digests, want_counts)
        assert stats.bad_lines == bool(header) and stats.input_format == "hibp"


@st.composite
def digest_led_samples(draw: st.DrawFn) -> bytes:
    """Lines of which most (more than half) begin with a hex digest, followed by anything; the rest anything."""
    text = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=30)
    width = draw(st.sampled_from([32, 40, 40, 64]))
    led = draw(st.lists(st.tuples(st.text("0123456789abcdefABCDEF", min_size=width, max_size=width), text,
                                  st.booleans()), min_size=1, max_size=30))  # fmt: skip
    others = draw(st.lists(text, max_size=len(led) - 1))
    lines = [('"' if quoted else "") + digest + rest for digest, rest, quoted in led] + others
    order = draw(st.permutations(range(len(lines))))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return ending.join(lines[i] for i in order).encode()


class TestNeverPasswords:
    @settings(max_examples=300, deadline=None)
    @given(sample=digest_led_samples(), strict=st.booleans())
    def test_digest_led_lines_are_never_hashed_as_passwords(self, sample: bytes, strict: bool) -> None:
        """Lines that mostly begin with a hex digest are read as hashes or refused, never hashed as passwords."""
        try:
            _, _, stats = _read_all(io.BytesIO(sample), strict=strict)
        except InputError:
            return
        assert stats.input_format != "password"

    @pytest.mark.parametrize(
        ("line", "seen"),
        [
            (f"{sha1_upper('x')};3", "followed by ';'"),
            (f"{sha1_upper('x')} 3", "followed by ' '"),
            (f"{sha1_upper('x')}:hunter2", "HASH:PLAINTEXT"),
            (f"{sha1_upper('x')},3,extra", "followed by ','"),
            (hashlib.sha256(b"x").hexdigest(), "64 hex digits"),
        ],
        ids=["semicolon", "space", "potfile", "extra-field", "sha256"],
    )
    @pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
    def test_unread_shape_is_refused_saying_what_was_seen(self, line: str, seen: str, strict: bool) -> None:
        """A dump in a shape that is not read stops with what follows the digest, and never quotes a line."""
        data = "".join(f"{line}\n" for _ in range(20)).encode()
        with pytest.raises(InputError, match="not hashed as passwords") as info:
            _read_all(io.BytesIO(data), strict=strict)
        assert seen in str(info.value) and sha1_upper("x") not in str(info.value)

    def test_a_password_list_that_turns_into_hashes_is_refused_at_its_end(self) -> None:
        """Passwords for the first lines that auto reads, then hashes: the source is refused when read, not hashed."""
        data = "".join(f"pass{i}\n" for i in range(1500)) + "".join(f"{sha1_upper(str(i))}:1\n" for i in range(100))
        with pytest.raises(InputError, match="begin with a hex digest, though its first lines read as passwords"):
            _read_all(io.BytesIO(data.encode()), chunk_bytes=4096)
        digests, _, _ = _read_all(io.BytesIO(data.encode()), input_format="password", chunk_bytes=4096)
        assert len(digests) == 1600

    def test_hex_looking_passwords_are_a_hash_list_unless_named(self) -> None:
        """A list of 40-hex strings is a hash list under auto; named a password list, its lines are hashed as
        passwords, and the stats warn that they looked like digests."""
        data = "".join(f"{sha1_upper(p)}\n" for p in LEAKED).encode()
        assert _read_all(io.BytesIO(data))[2].input_format == "hash"
        digests, _, stats = _read_all(io.BytesIO(data), input_format="password")
        assert digests == [digest(sha1_upper(p)) for p in LEAKED]
        assert stats.warnings and "hex digest" in stats.warnings[0]


class TestLineEnds:
    def test_old_mac_dump_longer_than_a_chunk(self) -> None:
        """A CR-only dump far longer than a line may be (read in small chunks) gives every line, numbered."""
        rows = [(hashlib.sha1(str(i).encode()).hexdigest().upper(), i + 1) for i in range(3000)]
        data = DUMP_SHAPES["cr"](rows[:1500]) + b"garbage\r" + DUMP_SHAPES["cr"](rows[1500:])
        digests, counts, stats = _read_all(io.BytesIO(data), chunk_bytes=4096)
        assert _as_rows(digests, counts) == sorted(rows)
        assert (stats.lines, stats.bad_line_numbers) == (3001, [1501])

    @pytest.mark.parametrize("fmt", ["auto", "hibp", "password"])
    def test_mixed_line_ends_number_lines_as_an_editor_does(self, fmt: str) -> None:
        """LF, CRLF and lone CRs mixed: each ends one line, and a bad line's number is the one an editor shows."""
        good = [f"{sha1_upper(p)}:{i + 1}" if fmt != "password" else p for i, p in enumerate(LEAKED)]
        endings = ["\n", "\r\n", "\r"]
        text = "".join(line + endings[i % 3] for i, line in enumerate(good[:4])) + "\xff\r" + "\r\n".join(good[4:])
        digests, _, stats = _read_all(io.BytesIO(text.encode("latin-1")), input_format=fmt)
        assert (len(digests), stats.lines, stats.bad_line_numbers) == (len(LEAKED), len(LEAKED) + 1, [5])

    def test_password_list_with_lone_crs(self) -> None:
        """A CR-only password list hashes each password, not the whole file as one."""
        digests, _, stats = _read_all(io.BytesIO("\r".join(LEAKED).encode()))
        assert (stats.input_format, digests) == ("password", [digest(p) for p in LEAKED])


class TestArchives:
    @staticmethod
    def _tar(compress: Callable[[bytes], bytes] | None = None) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            payload = DUMP_SHAPES["tab"](ROWS)
            info = tarfile.TarInfo("pwned.txt")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        return out.getvalue() if compress is None else compress(out.getvalue())

    @staticmethod
    def _zip() -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("pwned.txt", DUMP_SHAPES["tab"](ROWS))
        return out.getvalue()

    @pytest.mark.parametrize("fmt", ["auto", "hibp", "password"])
    @pytest.mark.parametrize(
        ("kind", "data", "says"),
        [
            ("zip", None, "a ZIP archive"),
            ("tar", None, "a tar archive"),
            ("tar.gz", None, "a tar archive"),
            ("7z", b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 100, "a 7z archive"),
            ("rar", b"Rar!\x1a\x07\x01\x00" + b"\x00" * 100, "a RAR archive"),
            ("zstd", b"\x28\xb5\x2f\xfd" + b"\x00" * 100, "zstd-compressed"),
        ],
    )
    def test_archive_is_refused_saying_what_to_do(self, tmp_path: Path, kind: str, data: bytes | None, says: str,
                                                  fmt: str) -> None:  # fmt: skip
        """An archive (or zstd) is an InputError saying what it is and to extract it, never a pile of bad lines."""
        made: dict[str, Callable[[], bytes]] = {
            "zip": self._zip,
            "tar": self._tar,
            "tar.gz": lambda: self._tar(gzip.compress),
        }
        path = tmp_path / f"pwned.{kind}"
        path.write_bytes(data if data is not None else made[kind]())
        with pytest.raises(InputError, match=rf"pwned\.{re.escape(kind)}: this is {says}.*(extract|decompress) it"):
            _read_all(path, input_format=fmt)


class TestAttacks:
    def test_bom_and_csv_header_under_strict(self) -> None:
        """A BOM, then a CSV header, then quoted CRLF lines: a hibp dump, its header set aside, under strict."""
        data = b"\xef\xbb\xbf" + b'"hash","count"\r\n' + b"".join(f'"{h}",{c}\r\n'.encode() for h, c in ROWS)
        digests, counts, stats = _read_all(io.BytesIO(data), strict=True)
        assert (_as_rows(digests, counts), stats.header, stats.bad_line_numbers) == (ROWS, True, [1])

    def test_a_nul_in_one_password_keeps_a_password_list(self) -> None:
        """A NUL inside or at the end of one password of a real list leaves it a password list, hashed as written."""
        lines = [*LEAKED[:4], "end\x00", "pass\x00word", *LEAKED[4:]]
        digests, _, stats = _read_all(io.BytesIO("\n".join(lines).encode() + b"\n"))
        assert (stats.input_format, digests) == ("password", [digest(p) for p in lines])

    def test_nul_terminated_password_list_drops_the_terminators(self) -> None:
        """Passwords written with their C terminator (a NUL on every line) are hashed without it."""
        digests, _, stats = _read_all(io.BytesIO("".join(f"{p}\x00\n" for p in LEAKED).encode()))
        assert (stats.input_format, digests) == ("password", [digest(p) for p in LEAKED])

    def test_surrogate_bytes_are_bad_lines(self) -> None:
        """A line holding a UTF-8-encoded surrogate (not UTF-8) is a bad line of a password list, and of a dump."""
        digests, _, stats = _read_all(io.BytesIO("\n".join(LEAKED).encode() + b"\nab\xed\xa0\x80cd\n"))
        assert (stats.input_format, len(digests), stats.bad_line_numbers) == ("password", len(LEAKED), [9])
        dump = DUMP_SHAPES["tab"](ROWS) + b"\xed\xa0\x80\t3\n"
        digests, _, stats = _read_all(io.BytesIO(dump))
        assert (stats.input_format, len(digests), stats.bad_line_numbers) == ("hibp", len(ROWS), [9])

    @pytest.mark.parametrize("shape", ["csv-quoted", "tab-cr"])
    def test_two_megabyte_line_in_a_shaped_dump(self, shape: str) -> None:
        """A 2 MB line inside a shaped dump is one bad line, read in bounded memory; every other line is read."""
        head, tail = DUMP_SHAPES[shape](ROWS[:3]), DUMP_SHAPES[shape](ROWS[3:])
        ending = b"\r" if shape.endswith("cr") else b"\n"
        data = head + b"9" * (2 << 20) + ending + tail
        tracemalloc.start()
        try:
            digests, counts, stats = _read_all(io.BytesIO(data), chunk_bytes=1 << 18)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert (_as_rows(digests, counts), stats.bad_line_numbers) == (ROWS, [4])
        assert peak < 2 << 20

    @pytest.mark.parametrize("shape", ["tab", "csv-header"])
    def test_utf16_of_a_shape_is_refused(self, shape: str) -> None:
        """A shaped dump saved as UTF-16 is refused as UTF-16, never read as bad lines or passwords."""
        with pytest.raises(InputError, match="UTF-16"):
            _read_all(io.BytesIO(DUMP_SHAPES[shape](ROWS).decode().encode("utf-16")))


class TestCombos:
    """Combo lists under auto: noticed and refused, with what to pass."""

    @pytest.mark.parametrize(
        "lines",
        [
            [f"user{i}@example.com:{p}" for i, p in enumerate(LEAKED)],
            [f"user{i}:{p}" for i, p in enumerate(LEAKED)],
            [f"user{i}\t{p}" for i, p in enumerate(LEAKED)],
        ],
        ids=["email", "name", "tab"],
    )
    @pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
    def test_combo_list_is_refused_naming_the_formats(self, lines: list[str], strict: bool) -> None:
        """A combo list is not hashed line by line: auto stops, naming --input-format combo and password."""
        with pytest.raises(InputError, match=r"user:password.*--input-format combo.*--input-format password") as info:
            _read_all(io.BytesIO("\n".join(lines).encode()), strict=strict)
        assert "example" not in str(info.value) and "letmein" not in str(info.value)

    def test_combo_sha1_list_is_named_so(self) -> None:
        """user:SHA1HEX lines are refused naming --input-format combo-sha1."""
        data = "".join(f"user{i}:{sha1_upper(p)}\n" for i, p in enumerate(LEAKED)).encode()
        with pytest.raises(InputError, match="--input-format combo-sha1"):
            _read_all(io.BytesIO(data))

    @pytest.mark.parametrize("separator", [";", "|", ",", " "])
    def test_email_led_lines_with_another_separator_are_refused(self, separator: str) -> None:
        """``email;password`` (or '|', ',', a space) is a combo list too: auto refuses it rather than hash each whole
        line (every password then matched none), and says to rewrite it with ':' or a tab."""
        data = "".join(f"user{i}@example.com{separator}{p}\n" for i, p in enumerate(LEAKED)).encode()
        with pytest.raises(InputError, match=r"begin with an e-mail address.*--input-format combo") as info:
            _read_all(io.BytesIO(data))
        assert "example" not in str(info.value) and "letmein" not in str(info.value)

    @pytest.mark.parametrize("shape", ["{{SHA}}{}", "$sha1${}", "0x{}", "sha1 {}", "{}\x01"], ids=repr)
    def test_lines_that_carry_a_digest_after_other_text_are_refused(self, shape: str) -> None:
        """Lines made of a digest after (or before) a few other characters -- ``{SHA}HEX``, ``$sha1$HEX``,
        ``0xHEX`` -- are hashes in a shape not read: auto refuses them rather than hash them as passwords."""
        data = "".join(shape.format(sha1_upper(p)) + "\n" for p in LEAKED).encode()
        with pytest.raises(InputError, match=r"hex digest.*a shape credcheck does not read") as info:
            _read_all(io.BytesIO(data))
        assert sha1_upper(LEAKED[0]) not in str(info.value)

    def test_passwords_that_hold_an_email_or_a_digest_now_and_then_are_a_password_list(self) -> None:
        """A few passwords that are e-mail addresses, or hold a digest, leave a password list one."""
        lines = [*LEAKED, "me@example.com;x", f"0x{sha1_upper('x')}"]
        digests, _, stats = _read_all(io.BytesIO("\n".join(lines).encode()))
        assert (stats.input_format, digests) == ("password", [digest(p) for p in lines])

    def test_a_few_colons_leave_a_password_list(self) -> None:
        """Passwords that hold a ':' now and then (under half the lines) are still a password list."""
        lines = [*LEAKED, "pa:ss", "http://x"]
        digests, _, stats = _read_all(io.BytesIO("\n".join(lines).encode()))
        assert (stats.input_format, digests) == ("password", [digest(p) for p in lines])

    def test_named_password_list_of_combos_is_read_with_a_warning(self) -> None:
        """--input-format password on combo lines hashes whole lines, as asked, and the stats warn."""
        lines = [f"user{i}:{p}" for i, p in enumerate(LEAKED)]
        digests, _, stats = _read_all(io.BytesIO("\n".join(lines).encode()), input_format="password")
        assert digests == [digest(line) for line in lines]
        assert "user:password" in stats.warnings[0]


class TestComboLineRule:
    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            (b"alice:pa:ss", ("alice", "pa:ss")),
            (b"bob\tpw:x", ("bob", "pw:x")),
            (b"bob:pw\tx", ("bob", "pw\tx")),
            (b"user:", ("user", "")),
            (b" x :y", (" x ", "y")),
            (b":pw", "empty username"),
            (b" \t:pw", "empty username"),
            (b"\xe3\x80\x80:pw", "empty username"),
            (b"nothing", "no ':' or tab separator"),
            (b"", "no ':' or tab separator"),
            (b"u:\xff", "not UTF-8"),
            (b"u:\xed\xa0\x80", "not UTF-8"),
        ],
    )
    def test_split(self, line: bytes, expected: object) -> None:
        """The first ':' or tab splits a combo line; what is not one gives a reason that quotes nothing."""
        assert split_combo_line(line) == expected
