"""Readers for leaked sets: formats, compression, bad-line accounting."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credcheck import InputError
from credcheck.corpus import SourceStats, detect_format, read_source
from credcheck.hashing import digest

from .conftest import LEAKED, sha1_upper


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
            (b"5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8\npassword\n", ("password", 0)),
        ],
    )
    def test_detects_format(self, sample: bytes, expected: tuple[str, int]) -> None:
        """The first lines decide the format; any non-hash line means a password list."""
        assert detect_format(sample, "sha1") == expected


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
    def test_count_too_large_is_an_error(self, tmp_path: Path, count: str) -> None:
        """A count above 2^32-1 (or longer than 10 digits) is an error, never wrapped."""
        path = tmp_path / "big.txt"
        path.write_text(f"{sha1_upper('a')}:1\n{sha1_upper('b')}:{count}\n")
        with pytest.raises(InputError, match=r"big.txt:2: count is larger"):
            _read_all(path)

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


class TestProperties:
    @settings(max_examples=200, deadline=None)
    @given(data=st.binary(max_size=2000), fmt=st.sampled_from(["hibp", "hash", "password", "auto"]))
    def test_reader_never_crashes_and_accounts_for_every_line(self, data: bytes, fmt: str) -> None:
        """On arbitrary bytes a reader returns chunks or raises InputError; lines = good + bad."""
        try:
            digests, _, stats = _read_all(io.BytesIO(data), input_format=fmt, chunk_bytes=64)
        except InputError:
            return
        assert stats.lines == len(digests) + stats.bad_lines
        expected_lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        assert stats.lines == expected_lines


def test_corrupt_gzip_is_an_input_error(tmp_path: Path) -> None:
    """A gzip stream whose body is corrupt is an InputError naming the file (found by fuzzing)."""
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff")
    with pytest.raises(InputError, match=r"bad\.gz: cannot read"):
        _read_all(bad, input_format="hibp")
