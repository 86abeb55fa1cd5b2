"""Combo readers: username:password and username:SHA1HEX lines, bad-line accounting, compression, stdin."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credcheck._combolist import parse
from credcheck._corpus import looks_utf16
from credcheck.errors import InputError
from credcheck.pairs._combo import MAX_LINE, ComboStats, Pair, parse_line, read_pairs
from credcheck.pairs._names import canon

from .helpers import editor_lines


def sha1(text: str) -> bytes:
    return hashlib.sha1(text.encode()).digest()


def pairs_of(data: bytes, input_format: str = "combo", **options: Any) -> tuple[list[Pair], ComboStats]:
    stats = ComboStats("mem")
    got = list(read_pairs(io.BytesIO(data), input_format=input_format, stats=stats, **options))
    return got, stats


class TestCombo:
    def test_split_at_first_colon(self) -> None:
        """The password is everything after the first ':' (it may hold more of them)."""
        (pair,), _ = pairs_of(b"Alice@Example.com:pa:ss\n")
        assert (pair.username, pair.sha1, pair.password) == (b"alice@example.com", sha1("pa:ss"), "pa:ss")

    @pytest.mark.parametrize(("line", "password"), [(b"bob\tpw:x", "pw:x"), (b"bob:pw\tx", "pw\tx")])
    def test_split_at_first_of_colon_or_tab(self, line: bytes, password: str) -> None:
        """Whichever of ':' and tab comes first separates the username from the password."""
        (pair,), _ = pairs_of(line)
        assert (pair.username, pair.password) == (b"bob", password)

    def test_crlf_and_lf(self) -> None:
        """CRLF and LF lines read the same; the password keeps its spaces (never normalised)."""
        crlf, _ = pairs_of(b"a:x \r\nb: y\r\n")
        lf, _ = pairs_of(b"a:x \nb: y")
        assert [(p.username, p.password) for p in crlf] == [(p.username, p.password) for p in lf]
        assert [p.password for p in lf] == ["x ", " y"]

    def test_bom_dropped_at_start(self) -> None:
        """A UTF-8 byte-order mark before the first line is not part of the first username."""
        (pair,), _ = pairs_of(b"\xef\xbb\xbfalice:pw\n")
        assert pair.username == b"alice"

    def test_empty_password_is_a_pair(self) -> None:
        """``user:`` is the pair (user, empty password), not a bad line."""
        (pair,), _ = pairs_of(b"user:\n")
        assert pair.sha1 == sha1("")

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"no-separator\n", "no ':' or tab separator"),
            (b"\n", "no ':' or tab separator"),
            (b":password\n", "empty username"),
            (b" \t:password\n", "empty username"),
            (b"user:pass\xff\n", "not UTF-8"),
            (b"user:" + b"x" * MAX_LINE + b"\n", f"longer than {MAX_LINE} bytes"),
        ],
    )
    def test_bad_line_counted(self, data: bytes, reason: str) -> None:
        """A bad line is counted with its number and reason, and the next good line is still read."""
        good, stats = pairs_of(b"ok:1\n" + data + b"ok:2\n")
        assert [p.line for p in good] == [1, 3]
        assert (stats.lines, stats.bad_lines, stats.bad_line_numbers, stats.reasons) == (3, 1, [2], {reason: 1})

    def test_line_of_max_length_is_good(self) -> None:
        """A line of exactly MAX_LINE bytes is read; one byte more is a bad line."""
        line = b"u:" + b"p" * (MAX_LINE - 2)
        good, stats = pairs_of(line + b"\n" + line + b"p\n" + line)
        assert [p.line for p in good] == [1, 3] and stats.bad_line_numbers == [2]

    def test_overlong_line_across_blocks(self) -> None:
        """A line of several megabytes (longer than a read block) is one bad line, skipped without being held."""
        good, stats = pairs_of(b"a:1\nb:" + b"z" * (3 << 20) + b"\nc:3")
        assert [p.line for p in good] == [1, 3] and stats.bad_lines == 1
        tail, stats = pairs_of(b"a:1\nb:" + b"z" * (3 << 20))
        assert [p.line for p in tail] == [1] and stats.bad_line_numbers == [2]

    def test_strict_stops_at_first_bad_line(self) -> None:
        """With strict, the first bad line is an InputError naming the source, line and reason, not its text."""
        with pytest.raises(InputError, match=r"<stream>:2: bad line \(empty username\)") as info:
            pairs_of(b"ok:1\n:secretpw\n", strict=True)
        assert "secretpw" not in str(info.value)

    def test_messages_never_quote(self) -> None:
        """No reason or message holds any part of a bad line."""
        _, stats = pairs_of(b"secretname\nsecretname:secretpw\xff\n:secretpw\n")
        assert "secret" not in repr(stats)

    def test_repr_holds_no_secret(self) -> None:
        """A Pair's repr shows its line number, never the username, password or hash."""
        (pair,), _ = pairs_of(b"secretname:secretpw\n")
        text = repr(pair)
        assert "secret" not in text and sha1("secretpw").hex() not in text and "line=1" in text

    @given(st.binary(max_size=400).filter(lambda b: not b.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"))))
    def test_never_crashes_and_adds_up(self, data: bytes) -> None:
        """Any (uncompressed) bytes: every line (ended by LF, CRLF or a lone CR) is either a good pair or a counted
        bad line, or the whole is refused as UTF-16 or an archive."""
        try:
            good, stats = pairs_of(data)
        except InputError as exc:
            assert "UTF-16" in str(exc) or "archive" in str(exc) or "zstd" in str(exc)
            return
        assert len(good) + stats.bad_lines == stats.lines
        assert stats.lines == len(editor_lines(data.removeprefix(b"\xef\xbb\xbf")))

    @given(st.text(alphabet=st.characters(exclude_characters=":\t\r\n"), min_size=1), st.text(min_size=0))
    def test_round_trip(self, user: str, password: str) -> None:
        """Any username without a separator and any password without a line break read back as written."""
        password = password.replace("\n", "").replace("\r", "")
        try:
            name = canon(user)
        except InputError:
            return
        if user.startswith("\ufeff"):
            return  # a leading BOM is dropped by design
        data = f"{user}:{password}\n".encode("utf-8", "surrogatepass")
        if looks_utf16(data):
            return  # NULs in every other byte: refused as UTF-16 text, by design
        good, _ = pairs_of(data)
        if any("\ud800" <= ch <= "\udfff" for ch in user + password):
            assert good == []
            return
        assert [(p.username, p.sha1, p.password) for p in good] == [(name, sha1(password), password)]


class TestComboSha1:
    def test_hex_either_case(self) -> None:
        """username:SHA1HEX in upper or lower case gives the digest, no plaintext."""
        digest = sha1("hunter2")
        got, _ = pairs_of(b"bob:" + digest.hex().upper().encode() + b"\r\nbob:" + digest.hex().encode(), "combo-sha1")
        assert [(p.username, p.sha1, p.password) for p in got] == [(b"bob", digest, None)] * 2

    def test_twin_of_plaintext(self) -> None:
        """A combo-sha1 line yields what its plaintext twin yields, bar the password."""
        (plain,), _ = pairs_of(b"Bob:hunter2\n")
        (hashed,), _ = pairs_of(b"Bob:" + sha1("hunter2").hex().encode() + b"\n", "combo-sha1")
        assert (plain.username, plain.sha1) == (hashed.username, hashed.sha1)

    @pytest.mark.parametrize("secret", [b"abc", b"g" * 40, b"a" * 41, b"a" * 39, b" " + b"a" * 40, b"a" * 40 + b" "])
    def test_bad_hex(self, secret: bytes) -> None:
        """Anything but exactly 40 hex digits after the separator is a bad line."""
        good, stats = pairs_of(b"bob:" + secret + b"\n", "combo-sha1")
        assert good == [] and stats.reasons == {"not a 40-digit SHA-1 hex digest": 1}


class TestSources:
    @pytest.mark.parametrize(
        ("suffix", "compress"),
        [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress), (".txt", lambda b: b)],
    )
    def test_compressed_files(self, tmp_path: Path, suffix: str, compress: Callable[[bytes], bytes]) -> None:
        """gzip, bzip2 and xz files are read by their magic bytes, like plain ones."""
        path = tmp_path / f"combo{suffix}"
        path.write_bytes(compress(b"a:1\nb:2\n"))
        stats = ComboStats(str(path))
        assert [p.username for p in read_pairs(path, stats=stats)] == [b"a", b"b"]
        assert stats.name == str(path)

    def test_corrupt_gzip(self, tmp_path: Path) -> None:
        """A corrupt compressed file is an InputError naming it, never a short read taken as the whole list."""
        path = tmp_path / "combo.gz"
        path.write_bytes(gzip.compress(b"a:1\n" * 1000)[:-20])
        with pytest.raises(InputError, match=r"combo\.gz"):
            list(read_pairs(path))

    def test_stdin(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``-`` reads standard input."""
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a:1\n")))
        stats = ComboStats("-")
        assert [p.username for p in read_pairs("-", stats=stats)] == [b"a"]

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that cannot be opened is an InputError naming it."""
        with pytest.raises(InputError, match=r"nope\.txt"):
            list(read_pairs(tmp_path / "nope.txt"))

    def test_unknown_format(self) -> None:
        """An input format other than combo and combo-sha1 is a ValueError."""
        with pytest.raises(ValueError, match="hibp"):
            list(read_pairs(io.BytesIO(b""), input_format="hibp"))

    def test_progress(self) -> None:
        """progress is told the bytes read and lines so far."""
        calls: list[tuple[int, int | None, int]] = []
        list(read_pairs(io.BytesIO(b"a:1\nb:2\n"), progress=lambda *a: calls.append(a)))
        assert calls[-1][2] == 2


class TestConcatenated:
    def test_bom_at_line_start_dropped(self) -> None:
        """A byte-order mark at the start of a later line (files concatenated with cat) is dropped too."""
        good, _ = pairs_of(b"\xef\xbb\xbfa:1\n\xef\xbb\xbfbob:2\n")
        assert [p.username for p in good] == [b"a", b"bob"]


class TestOneRule:
    @given(st.binary(max_size=60))
    def test_both_tiers_split_alike(self, line: bytes) -> None:
        """The pair reader and the password build's combo reader split a line alike: the same SHA-1 and password,
        or the same reason (the pair tier may also refuse a username it cannot canonicalise)."""
        ours, theirs = parse(line), parse_line(line)
        if isinstance(ours, str):
            assert theirs == ours
        elif not isinstance(theirs, str):
            assert ours[1:] == theirs[1:]

    def test_lone_cr_ends_a_combo_line(self) -> None:
        """A lone CR ends a combo line, as it ends every line credcheck reads."""
        good, stats = pairs_of(b"a:1\rb:2\r\nc:3\r")
        assert ([p.username for p in good], stats.lines) == ([b"a", b"b", b"c"], 3)

    @pytest.mark.parametrize("data", ["a:1\nb:2\n".encode("utf-16"), b"PK\x03\x04" + b"\x00" * 60])
    def test_utf16_and_archives_are_refused(self, data: bytes) -> None:
        """A UTF-16 combo list or a ZIP is an InputError saying what it is, never a pile of bad lines."""
        with pytest.raises(InputError, match=r"UTF-16|ZIP archive"):
            pairs_of(data)
