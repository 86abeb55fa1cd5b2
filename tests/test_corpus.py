"""Readers for leaked sets: formats, compression, bad-line accounting."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credcheck import InputError
from credcheck.corpus import MAX_LINE_BYTES, SourceStats, detect_format, read_source
from credcheck.hashing import digest

from .conftest import LEAKED, sha1_upper
from .helpers import editor_lines

# every reader parses through the line kernel: run them all on the C and the numpy kernels
pytestmark = pytest.mark.usefixtures("kernels")


def _read_all(source: object, **kwargs: object) -> tuple[list[bytes], list[int], SourceStats]:
    stats = SourceStats("test")
    digests: list[bytes] = []
    counts: list[int] = []
    for chunk in read_source(source, stats=stats, **kwargs):  # type: ignore[arg-type]
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
    def test_compressed_input_is_read_transparently(self, tmp_path: Path, hibp_file: Path, compress: object) -> None:
        """gzip, bzip2 and xz files read the same as the plain file, whatever their name."""
        packed = tmp_path / "dump.bin"
        packed.write_bytes(compress(hibp_file.read_bytes()))  # type: ignore[operator]
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
