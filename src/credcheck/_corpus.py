"""Readers for leaked sets: HIBP ``HEX:COUNT`` dumps, plain hash lists and plaintext password lists.

Each source is read in chunks of whole lines and turned into arrays of raw digests and counts, with
every bad line counted and the first few line numbers kept. A line ends at LF, CRLF or a lone CR.
Compressed input (gzip, bzip2, xz) is recognised by its magic bytes, and an archive (ZIP, 7z, RAR, tar)
or a zstd stream is refused; ``-`` is standard input. Plaintext passwords are hashed here and never
kept, logged or echoed.

Dumps come in more shapes than ``HEX:COUNT``: the count after a tab or a comma, quoted CSV (``"HEX",N``,
with a header row or not), a ``+`` before the count, a NUL before each line end. :func:`detect_format`
tells them from the first lines and the line kernel reads them; a source whose lines mostly begin with a
hex digest is never hashed as plaintext, and one whose lines mostly look like ``user:password`` is
refused unless its format is named. The combo line rule (:func:`split_combo_line`) lives here too, for
the combo reader of both tiers.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import hashlib
import io
import lzma
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Final, NamedTuple, cast

import numpy as np
import numpy.typing as npt
import xxhash

from . import _native
from ._args import choice
from .errors import InputError
from .hashing import DIGEST_SIZES, check_scheme, digest

__all__ = [
    "COMBO_FORMATS",
    "FORMATS",
    "MAX_LINE_BYTES",
    "UTF8_BOM",
    "Chunk",
    "Detected",
    "OpenedSource",
    "Progress",
    "ReadSettings",
    "Source",
    "SourceStats",
    "SourcesPass",
    "archive_kind",
    "checked_head",
    "detect_format",
    "line_blocks",
    "looks_utf16",
    "read_source",
    "scheme_hint",
    "sources_of",
    "split_combo_line",
    "split_lone_crs",
    "too_long_line",
]

FORMATS: Final = ("auto", "hibp", "hash", "password")
#: Combo lists: ``username:password`` lines (``combo``) and ``username:SHA1HEX`` lines (``combo-sha1``).
COMBO_FORMATS: Final = ("combo", "combo-sha1")
CHUNK_BYTES: Final = 8 << 20
BAD_LINE_SAMPLES: Final = 10
#: The longest line read as a record. A hash line is at most 51 bytes; a password of 1,024 bytes (256
#: characters even in four-byte UTF-8) is far past what any site lets a user type (NIST SP 800-63B asks
#: for at least 64 characters), so a longer line is pasted junk (a record, markup, a blob): a bad line.
MAX_LINE_BYTES: Final = 1024
_HEAD_BYTES: Final = 4096  # what looks_utf16 and archive_kind look at
_DETECT_LINES: Final = 1000
_DETECT_BYTES: Final = 256 << 10

#: A source: a path, ``-`` for standard input, or an open binary file.
Source = str | os.PathLike[str] | IO[bytes]
#: progress(bytes_done, bytes_total or None, lines_done): called once per chunk.
Progress = Callable[[int, int | None, int], None]

_COMPRESSED: Final[dict[bytes, Callable[[IO[bytes]], Any]]] = {
    b"\x1f\x8b": lambda f: gzip.GzipFile(fileobj=f, mode="rb"),
    b"BZh": lambda f: bz2.BZ2File(f, "rb"),
    b"\xfd7zXZ\x00": lambda f: lzma.LZMAFile(f, "rb"),  # noqa: SIM115 - closed with the source
}


@dataclasses.dataclass(frozen=True, slots=True)
class Chunk:
    """Digests (n x digest-size uint8) and their counts (uint64) from a run of good lines.

    The sort-merge engine moves other fixed-width rows in the same shape: keys in ``digests``, the value each row
    carries in ``counts`` (:class:`credcheck._sortmerge.Layout`).
    """

    digests: npt.NDArray[np.uint8]
    counts: npt.NDArray[np.uint64]


@dataclasses.dataclass(slots=True)
class SourceStats:
    """What reading one source found: its format, lines read, and bad lines (with the first few numbers).

    ``header`` says the first line was a column header (``SHA1:COUNT``): it is counted among the bad
    lines, so that the numbers add up, but ``strict`` does not stop at it. ``shape`` names the shape of
    the lines when it is not the format's plain one (``HEX<TAB>COUNT``, ``"HEX",COUNT``, ...); ``warnings``
    say what the reader decided that a person should know.
    """

    name: str
    input_format: str = "auto"
    header: bool = False
    shape: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)
    lines: int = 0
    bad_lines: int = 0
    bad_line_numbers: list[int] = dataclasses.field(default_factory=list)

    def note_bad(self, first_line: int, indices: npt.NDArray[np.int64] | list[int]) -> None:
        """Record bad lines given as 0-based indices relative to line number ``first_line``."""
        self.bad_lines += len(indices)
        room = BAD_LINE_SAMPLES - len(self.bad_line_numbers)
        if room > 0:
            self.bad_line_numbers.extend(first_line + int(i) for i in indices[:room])


def source_name(source: Source) -> str:
    """A printable name for a source (a path, ``<stdin>``, or the file object's name)."""
    if isinstance(source, str | os.PathLike):
        name = os.fspath(source)
        return "<stdin>" if name == "-" else name
    return str(getattr(source, "name", "<stream>"))


def sources_of(sources: Source | Sequence[Source]) -> tuple[Source, ...]:
    """One source or several, as a tuple."""
    if isinstance(sources, str | os.PathLike) or hasattr(sources, "read"):
        return (cast(Source, sources),)
    return tuple(sources)


def source_size(source: Source) -> int | None:
    """The size in bytes of a file source on disk, or None when it cannot be known."""
    if isinstance(source, str | os.PathLike) and os.fspath(source) != "-":
        try:
            return os.path.getsize(source)
        except OSError:
            return None
    return None


def reopenable(source: Source) -> bool:
    """True when a source can be read twice: a regular file (not stdin, a pipe or a stream)."""
    return isinstance(source, str | os.PathLike) and os.fspath(source) != "-" and os.path.isfile(source)


class OpenedSource:
    """A source opened for reading: the decompressed stream and the raw stream whose position is progress.

    gzip, bzip2 and xz are recognised by their magic bytes. The pair tier's combo reader opens its sources
    with it too; ``name`` is what an error calls the source (its path by default).
    """

    def __init__(self, source: Source, name: str | None = None) -> None:
        self._owned: IO[bytes] | None = None
        if isinstance(source, str | os.PathLike):
            if os.fspath(source) == "-":
                raw: IO[bytes] = sys.stdin.buffer
            else:
                try:
                    raw = self._owned = open(source, "rb")  # noqa: SIM115 - closed in close()
                except OSError as exc:
                    shown = os.fspath(source) if name is None else name
                    raise InputError(f"cannot read {shown}: {exc.strerror or exc}") from exc
        else:
            raw = source
        buffered: Any = raw if hasattr(raw, "peek") else io.BufferedReader(raw)
        self.raw: IO[bytes] = buffered
        head = buffered.peek(6)[:6]
        self.stream: IO[bytes] = buffered
        for magic, opener in _COMPRESSED.items():
            if head.startswith(magic):
                self.stream = opener(buffered)
                break

    def position(self) -> int:
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()


#: Archives and a compressed format this reader does not open: (offset, magic, what it is, what to do).
_ARCHIVES: Final = (
    (0, b"PK\x03\x04", "a ZIP archive", "extract it first (unzip FILE) and give the files inside"),
    (0, b"PK\x05\x06", "an empty ZIP archive", "extract it first (unzip FILE) and give the files inside"),
    (0, b"PK\x07\x08", "a spanned ZIP archive", "extract it first (unzip FILE) and give the files inside"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7z archive", "extract it first (7z x FILE) and give the files inside"),
    (0, b"Rar!\x1a\x07", "a RAR archive", "extract it first (unrar x FILE) and give the files inside"),
    (257, b"ustar", "a tar archive", "extract it first (tar -xf FILE) and give the files inside"),
    (
        0,
        b"\x28\xb5\x2f\xfd",
        "zstd-compressed",
        "decompress it first (zstd -d FILE); gzip, bzip2 and xz are read as they are",
    ),
)


def archive_kind(head: bytes) -> tuple[str, str] | None:
    """What archive a source's first (decompressed) bytes begin, and what to do; None for anything else."""
    for offset, magic, kind, advice in _ARCHIVES:
        if head[offset : offset + len(magic)] == magic:
            return kind, advice
    return None


_LONE_CR = re.compile(rb"\r(?!\n)")


def split_lone_crs(block: bytes) -> bytes:
    """``block`` with every lone CR (one not followed by LF) turned into an LF; ``block`` itself if it has none.

    A line ends at LF, CRLF or a lone CR (old Mac files, and text pasted between them), as an editor shows it.
    """
    if b"\r" in block and _LONE_CR.search(block) is not None:
        return _LONE_CR.sub(b"\n", block)
    return block


def too_long_line(max_line: int) -> bytes:
    """What a line longer than ``max_line`` becomes: longer than ``max_line`` still, neither hex nor UTF-8."""
    return b"\xff" * (max_line + 1)


def _read(opened: OpenedSource, name: str, size: int) -> bytes:
    try:
        return opened.stream.read(size)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:  # a corrupt compressed stream
        raise InputError(f"{name}: cannot read: {exc}") from exc


def _head(opened: OpenedSource, name: str, block: bytes) -> bytes:
    """The first block read, at least _HEAD_BYTES long where the source has them, checked, its BOM removed."""
    while len(block) < _HEAD_BYTES:  # a short read (a pipe, a compressed stream): fill the head
        more = _read(opened, name, _HEAD_BYTES - len(block))
        if not more:
            break
        block += more
    return checked_head(block, name)


def checked_head(block: bytes, name: str) -> bytes:
    """A source's first bytes without their UTF-8 byte-order mark, or an InputError naming the source.

    An archive, a zstd stream and UTF-16 text are refused: read as lines, each would be only bad lines
    (or, for UTF-16, passwords that all hash wrongly). The more of the first _HEAD_BYTES it is given, the
    surer the UTF-16 test.
    """
    archive = archive_kind(block)
    if archive is not None:
        kind, advice = archive
        raise InputError(f"{name}: this is {kind}, not a text list of lines; {advice}")
    if looks_utf16(block):
        raise InputError(
            f"{name}: the text is UTF-16, not UTF-8 (read as UTF-8 every password would hash wrongly); "
            "convert it first, e.g. iconv -f UTF-16 -t UTF-8"
        )
    return block.removeprefix(UTF8_BOM)  # a byte-order mark is not part of the first line


def line_blocks(
    opened: OpenedSource, name: str, chunk_bytes: int = CHUNK_BYTES, max_line: int = MAX_LINE_BYTES
) -> Iterator[bytes]:
    """Yield blocks of whole lines (the last block may end without a newline), in bounded memory.

    A line longer than ``max_line`` bytes is longer than any valid record: its bytes are dropped as they
    arrive and it is handed on as a line of ``max_line + 1`` bytes that are neither hex nor UTF-8, a bad
    line for every format. Lone CRs inside a block are the reader's to split (:func:`split_lone_crs`); a
    run of lone-CR lines too long to hold as one line (an old Mac file), or a lone CR where a too-long line
    is being skipped, makes this turn every lone CR into an LF as it reads, from there on.
    """
    tail = b""
    skipping = False  # inside a line that is too long: dropping it up to its newline
    lone_crs = False  # lone CRs end lines here: turned into LFs as they are read
    held_cr = False  # a CR that ended the last read (an LF may begin the next one)
    first = True
    while True:
        # the first read is large enough to tell UTF-16 by its NULs, whatever the chunk size
        block = _read(opened, name, max(chunk_bytes, _HEAD_BYTES) if first else chunk_bytes)
        if first and block:
            first = False
            block = _head(opened, name, block)
        eof = not block
        if lone_crs:
            block, held_cr = _crs_to_lfs(block, held_cr, eof)
        if skipping and not lone_crs and _LONE_CR.search(block) is not None:  # a lone CR may end the long line
            lone_crs = True
            block, held_cr = _crs_to_lfs(block, False, eof)
        if skipping:
            end = block.find(b"\n")
            if end < 0:
                if eof:
                    yield too_long_line(max_line)
                    return
                continue
            block, skipping = too_long_line(max_line) + block[end:], False
        data = tail + block if tail else block
        cut = data.rfind(b"\n")
        tail = data[cut + 1 :] if cut >= 0 else data
        if len(tail) > max_line + 1 and not lone_crs and _LONE_CR.search(tail) is not None:
            lone_crs = True
            tail, held_cr = _crs_to_lfs(tail, False, eof)
            data = data[: cut + 1] + tail
            cut = data.rfind(b"\n")
            tail = data[cut + 1 :] if cut >= 0 else data
        if len(tail) > max_line + 1:  # (+ 1: a CR that the line may still end with)
            tail, skipping = b"", True
        if cut >= 0:
            yield data[: cut + 1]
        if eof:
            if skipping:
                yield too_long_line(max_line)
            elif tail:
                yield tail
            return


def _crs_to_lfs(block: bytes, held_cr: bool, eof: bool) -> tuple[bytes, bool]:
    """One read with its lone CRs made LFs: a CR held from the read before goes first, one ending it is held."""
    if held_cr:
        block = b"\r" + block
    hold = not eof and block.endswith(b"\r")
    return split_lone_crs(block[:-1] if hold else block), hold


# A column header such as ``SHA1:COUNT``, ``hash``, ``Hash,Count`` or ``"hash","count"``: words, no numbers.
_HEADER_LINE = re.compile(rb'("?)[A-Za-z][A-Za-z0-9_ -]{0,31}\1(?:[:,;\t|]("?)[A-Za-z][A-Za-z0-9_ -]{0,31}\2){0,3}')
#: A line that begins with a hex digest (or what looks like one): an optional quote, 32 hex digits or more.
_DIGEST_START = re.compile(rb'"?([0-9A-Fa-f]{32,})')
#: The hash lines the line kernel reads: a digest, quoted or not; then, or not, a separator (':', tab or
#: ',') and a count, quoted or not, a '+' before it or not; and a NUL before the line end, or not.
_HASH_LINE = re.compile(
    rb'(?P<q>"?)(?P<hex>[0-9A-Fa-f]+)(?P=q)(?:(?P<sep>[:\t,])(?P<cq>"?)(?P<plus>\+?)[0-9]+(?P=cq))?(?P<nul>\x00?)'
)
#: A line after the first of a block that begins with a digest (the password reader counts them; a literal LF
#: first lets the regex engine skip to each line, several times faster than ^ in MULTILINE mode).
_DIGEST_LED = re.compile(rb'\n"?[0-9A-Fa-f]{32}')
#: A line that ends with a whole hex digest after other text (``{SHA}HEX``, ``$sha1$HEX``, ``0xHEX``): a hash in a
#: shape that is not read, never a password.
_DIGEST_END = re.compile(rb'[^0-9A-Fa-f](?:[0-9A-Fa-f]{40}|[0-9A-Fa-f]{32})"?\x00?\Z')
#: A line that begins with an e-mail address and a separator other than ':' or a tab (``email;password``): a combo
#: list that split_combo_line does not split, never a password.
_EMAIL_LED = re.compile(rb"[^@\s:;|,]+@[^@\s:;|,]+\.[A-Za-z]{2,}[;|, ]")
_SEPARATOR_NAMES: Final = {b":": ":", b"\t": "<TAB>", b",": ","}
UTF8_BOM: Final = b"\xef\xbb\xbf"
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
_WIDTHS: Final = (32, 40)


@dataclasses.dataclass(frozen=True, slots=True)
class Detected:
    """What the first lines of a source say: its format, hex digits per hash (0 for passwords), a header,
    the line kernel's ``shape`` (0: the plain ``HEX`` / ``HEX:COUNT``; for passwords, only SHAPE_NUL), the
    shape's name when it is not the plain one, and a warning for the report."""

    input_format: str
    width: int
    header: bool = False
    shape: int = 0
    shape_name: str = ""
    warning: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class _Shape:
    """One shape of hash line: its width, whether it counts, the count's separator, the quotes."""

    width: int
    counted: bool
    separator: bytes
    quoted_hex: bool
    quoted_count: bool

    def detected(self, input_format: str, header: bool, seen: _Seen) -> Detected:
        """What lines of this shape are read as: the kernel's ``shape`` (a '+' or a NUL allowed on every line
        when the sample showed one) and the shape's name ("" for plain HEX and HEX:COUNT)."""
        plus, nul = self.counted and seen.plus > 0, seen.nul > 0
        kernel = ord(self.separator) if self.counted and self.separator != b":" else 0
        kernel |= _native.SHAPE_QUOTED_HEX * self.quoted_hex | _native.SHAPE_QUOTED_COUNT * self.quoted_count
        kernel |= _native.SHAPE_PLUS * plus | _native.SHAPE_NUL * nul
        text = '"HEX"' if self.quoted_hex else "HEX"
        if self.counted:
            number = ("+" if plus else "") + "COUNT"
            text += _SEPARATOR_NAMES[self.separator] + (f'"{number}"' if self.quoted_count else number)
        text += "<NUL>" if nul else ""
        name = "" if text in ("HEX", "HEX:COUNT") else text
        return Detected(input_format, self.width, header, kernel, name)


@dataclasses.dataclass(slots=True)
class _Seen:
    """How many sample lines had a shape, and how many of them had a '+' before the count, a NUL at the end."""

    lines: int = 0
    plus: int = 0
    nul: int = 0


@dataclasses.dataclass(slots=True)
class _Lines:
    """How the first lines of a source look: the hash shapes seen, lines that begin with a digest in a shape
    that is not read (by width and the byte after it), and the rest."""

    total: int = 0
    shapes: dict[_Shape, _Seen] = dataclasses.field(default_factory=dict)
    unread: dict[tuple[int, bytes], int] = dataclasses.field(default_factory=dict)
    others: list[bytes] = dataclasses.field(default_factory=list)

    @property
    def digest_led(self) -> int:
        """Lines that begin with a hex digest, in a shape that is read or not."""
        return sum(seen.lines for seen in self.shapes.values()) + sum(self.unread.values())


def _survey(lines: Sequence[bytes]) -> _Lines:
    """Sort sample lines (stripped, blank ones skipped) into hash shapes, digest-led lines not read, others."""
    survey = _Lines()
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        survey.total += 1
        match = _HASH_LINE.fullmatch(line)
        if match is not None and len(match["hex"]) in _WIDTHS:
            sep = match["sep"]
            shape = _Shape(len(match["hex"]), sep is not None, sep or b"", bool(match["q"]), bool(match["cq"]))
            seen = survey.shapes.setdefault(shape, _Seen())
            seen.lines += 1
            seen.plus += bool(match["plus"])
            seen.nul += bool(match["nul"])
            continue
        start = _DIGEST_START.match(line)
        if start is not None:
            key = (len(start[1]), line[start.end() : start.end() + 1])
            survey.unread[key] = survey.unread.get(key, 0) + 1
            continue
        survey.others.append(line)
    return survey


def _header(lines: list[bytes]) -> bool:
    """True when the first line is a column header (``SHA1:COUNT``, ``"hash","count"``), not a record."""
    first = lines[0].strip() if lines else b""
    return _HEADER_LINE.fullmatch(first) is not None and _HASH_LINE.fullmatch(first) is None


def detect_format(
    sample: bytes, scheme: str, *, strict: bool = False, name: str = "input", input_format: str = "auto"
) -> Detected:
    """Decide the input format and the lines' shape from the first lines of a source (its BOM removed).

    Blank lines are ignored, and a first line that is a column header (``SHA1:COUNT``) is set aside.
    Under ``auto`` the rest must agree: hash lines of one shape (40 or 32 hex digits, plain or in one of
    the other shapes the kernel reads) but for a few bad ones (at most one in ten; ``strict``: none), or
    hardly any line that begins with a digest (at most one in a hundred; ``strict``: none), which makes a
    password list. Anything in between is refused with :class:`InputError` rather than guessed, since the
    wrong guess turns every leaked password into "not compromised": so is a source whose lines mostly
    begin with a digest in a shape that is not read, and one whose lines mostly look like
    ``user:password`` (a combo list: at least half split by :func:`split_combo_line`). With ``hibp`` or
    ``hash`` named, the shape is the commonest of that kind; with ``password``, the lines are passwords
    whatever they look like, and a warning says so when they look like hashes or combos.
    """
    lines = split_lone_crs(sample).split(b"\n", _DETECT_LINES)[:_DETECT_LINES]
    header = _header(lines)
    survey = _survey(lines[1:] if header else lines)
    if input_format == "password":
        return _passwords(survey, name, explicit=True)
    if input_format in ("hibp", "hash"):
        counted = input_format == "hibp"
        mine = {shape: seen for shape, seen in survey.shapes.items() if shape.counted == counted}
        if not mine:
            return Detected(input_format, 0, header)
        shape, seen = max(mine.items(), key=lambda item: item[1].lines)
        return shape.detected(input_format, header, seen)
    total = survey.total
    if survey.shapes:
        shape, seen = max(survey.shapes.items(), key=lambda item: item[1].lines)
        dominant = seen.lines
        if dominant == total or (not strict and dominant >= 2 and total - dominant <= max(1, total // 10)):
            return shape.detected("hibp" if shape.counted else "hash", header, seen)
    digest_led = survey.digest_led
    if digest_led == 0 or (not strict and digest_led <= total // 100):
        return _passwords(survey, name, explicit=False)
    unread = sum(survey.unread.values())
    if 2 * unread >= total:
        (width, after), _ = max(survey.unread.items(), key=lambda item: item[1])
        raise InputError(
            f"{name}: {unread:,} of the first {total:,} lines begin with {_unread_shape(width, after)}, a shape "
            "credcheck does not read; they are not hashed as passwords. Rewrite them as HEX or HEX:COUNT "
            "lines (HEX<TAB>COUNT, HEX,COUNT and quoted CSV are read too)"
        )
    raise InputError(
        f"{name}: cannot tell the input format: of the first {total:,} lines, {digest_led:,} begin with a "
        f"hex digest and {total - digest_led:,} do not{' (--strict wants them unanimous)' if strict else ''}; "
        "pass --input-format hibp, hash or password"
    )


def _unread_shape(width: int, after: bytes) -> str:
    """What a line that begins with a digest in a shape not read looks like, in words (no line quoted)."""
    if width not in _WIDTHS:
        return f"{width} hex digits (neither a SHA-1, 40, nor an NTLM hash, 32)"
    if not after:
        return f"a {width}-digit hex digest in quotes that do not close"
    shown = "a tab" if after == b"\t" else f"'{after.decode()}'" if 32 <= after[0] < 127 else f"byte 0x{after[0]:02x}"
    if after == b":":
        return f"a {width}-digit hex digest, ':' and something that is not a count (HASH:PLAINTEXT, cracked?)"
    return f"a {width}-digit hex digest followed by {shown} and something that is not a count"


def _passwords(survey: _Lines, name: str, *, explicit: bool) -> Detected:
    """The lines as passwords, or (under auto) a refusal of lines that mostly look like ``user:password``.

    When the lines end with a NUL (strings written with their terminator: two lines at least, and all but
    one in ten), each line drops it; a NUL in a few passwords is theirs.
    """
    lines = survey.others
    total = max(survey.total, 1)
    ended = sum(line.endswith(b"\x00") for line in lines)
    nul = ended >= 2 and total - ended <= max(1, total // 10)
    combos = [parts for parts in map(split_combo_line, lines) if not isinstance(parts, str)]
    shape = _native.SHAPE_NUL if nul else 0
    shape_name = "PASSWORD<NUL>" if nul else ""
    looks_combo = 2 * len(combos) >= total and len(combos) > 0
    if looks_combo and not explicit:
        sha1 = 2 * sum(len(secret) == 40 and _is_hex(secret) for _, secret in combos) >= len(combos)
        named = "user:SHA1HEX (a combo list of SHA-1 hashes)" if sha1 else "user:password (a combo list)"
        raise InputError(
            f"{name}: {len(combos):,} of the first {survey.total:,} lines look like {named}; hashed whole, "
            f"each line would match no password. Pass --input-format {'combo-sha1' if sha1 else 'combo'} to "
            "read what follows each line's first ':' or tab, or --input-format password to hash whole lines"
        )
    if not explicit:
        _refuse_other_shapes(lines, survey.total, name)
    warning = ""
    if explicit and 2 * survey.digest_led >= total and survey.digest_led:
        warning = (
            f"{survey.digest_led:,} of the first {survey.total:,} lines begin with a hex digest; they were hashed "
            "as passwords, as --input-format password asked"
        )
    elif explicit and looks_combo:
        warning = (
            f"{len(combos):,} of the first {survey.total:,} lines look like user:password; each whole line was "
            "hashed, as --input-format password asked (--input-format combo reads the part after the first "
            "':' or tab)"
        )
    return Detected("password", 0, shape=shape, shape_name=shape_name, warning=warning)


def _refuse_other_shapes(lines: list[bytes], total: int, name: str) -> None:
    """Under auto, refuse lines that are mostly (half or more) hashes or combos in a shape that is not read: a
    digest after other text, or an e-mail address and another separator than ':' or a tab. Hashed whole, each
    line would match no password."""
    shapes = (
        (
            sum(_DIGEST_END.search(line) is not None for line in lines),
            "end with a hex digest after other text ({SHA}HEX, $sha1$HEX, 0xHEX?), a shape credcheck does not read; "
            "they are not hashed as passwords. Rewrite them as HEX or HEX:COUNT lines",
        ),
        (
            sum(_EMAIL_LED.match(line) is not None for line in lines),
            "begin with an e-mail address and a separator other than ':' or a tab (a combo list); hashed whole, each "
            "line would match no password. Rewrite them as user:password lines and pass --input-format combo",
        ),
    )
    for found, what in shapes:
        if found and 2 * found >= total:
            raise InputError(
                f"{name}: {found:,} of the first {total:,} lines {what}, or pass --input-format password to hash "
                "whole lines"
            )


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def split_combo_line(line: bytes) -> tuple[str, str] | str:
    """Split a combo line (without its line ending) at its first ':' or tab into ``(username, secret)``.

    The username can hold neither, the secret either. What is not a combo line gives the reason instead,
    which names what is wrong and never what the line holds: ``"not UTF-8"``, ``"no ':' or tab
    separator"``, ``"empty username"`` (nothing but whitespace before the separator; NFKC, which the pair
    tier applies before it strips, turns no other character into whitespace).
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    colon, tab = text.find(":"), text.find("\t")
    cut = colon if tab < 0 else tab if colon < 0 else min(colon, tab)
    if cut < 0:
        return "no ':' or tab separator"
    if not text[:cut].strip():
        return "empty username"
    return text[:cut], text[cut + 1 :]


def looks_utf16(head: bytes) -> bool:
    """True when a source's first bytes are UTF-16 (or UTF-32): a UTF-16 byte-order mark or NULs in every other byte.

    A NUL is valid UTF-8 but hardly ever in a password list, while UTF-16 text that is mostly ASCII has one
    in every other byte; so a list with NULs at half or more of its even or odd offsets (two at least) is
    taken as UTF-16: read as UTF-8 it would hash every password wrongly. (A quarter was too few: one short
    line holding a NUL looked like UTF-16.)
    """
    if head.startswith(_UTF16_BOMS):
        return True
    sample = head[:_HEAD_BYTES]
    half = len(sample) // 2
    return max(sample[0::2].count(0), sample[1::2].count(0)) >= max(2, half // 2)


def scheme_hint(width: int, scheme: str) -> str | None:
    """What to tell someone whose hex digests are ``width`` digits long where ``scheme`` is expected: the scheme
    they look like and the flag that names it ("look like ntlm hashes (32 hex digits) but the scheme is sha1;
    pass --hash ntlm"); None when they fit ``scheme``, or no scheme."""
    other = next((name for name, size in DIGEST_SIZES.items() if 2 * size == width), None)
    if other is None or other == scheme:
        return None
    return f"look like {other} hashes ({width} hex digits) but the scheme is {scheme}; pass --hash {other}"


def _check_width(seen: int, expected: int, scheme: str, name: str) -> None:
    """Refuse input whose hashes are of the other scheme (so a whole file is not read as bad lines)."""
    hint = scheme_hint(seen, scheme) if seen and seen != expected else None
    if hint is not None:
        raise InputError(f"{name}: the lines {hint}")


def read_source(
    source: Source,
    *,
    scheme: str = "sha1",
    input_format: str = "auto",
    strict: bool = False,
    stats: SourceStats | None = None,
    progress: Progress | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    checksum: Any = None,
) -> Iterator[Chunk]:
    """Read one leaked set and yield chunks of digests and counts; bad lines go into ``stats``.

    With ``strict`` the first bad line raises :class:`InputError` naming its line number. A count
    above 2^32 - 1 (the largest a store holds) is a bad line, and under ``strict`` an error. A source
    that ``auto`` read as passwords from its first lines and whose lines turn out, in the first 256 KiB
    of every block read, to begin with a hex digest more than once in a hundred is an
    :class:`InputError` at its end.
    ``checksum`` (an object with ``update``, e.g. ``xxhash.xxh3_128()``) is fed every byte of text
    read, so that two reads can be compared.
    """
    choice("input format", input_format, FORMATS)
    name = source_name(source)
    stats = stats if stats is not None else SourceStats(name)
    total = source_size(source)
    opened = OpenedSource(source)
    try:
        detected: Detected | None = None
        width = 2 * check_scheme(scheme)
        digest_led = sampled = 0  # lines of a password list told by auto: sampled, and of them digest-led
        for block in line_blocks(opened, name, chunk_bytes):
            if checksum is not None:
                checksum.update(block)
            if detected is None:
                sample = block[:_DETECT_BYTES]
                if len(block) > len(sample):
                    sample = sample[: sample.rfind(b"\n") + 1]
                detected = detect_format(sample, scheme, strict=strict, name=name, input_format=input_format)
                stats.input_format, stats.header, stats.shape = (
                    detected.input_format, detected.header, detected.shape_name,
                )  # fmt: skip
                if detected.warning:
                    stats.warnings.append(detected.warning)
                _check_width(detected.width, width, scheme, name)
            first_line = stats.lines + 1
            too_large = -1
            if detected.input_format == "password":
                chunk, n_lines, bad = _parse_passwords(block, scheme, detected.shape)
                if input_format == "auto":  # the head of every block: the whole would cost 5% of the read
                    head = block[:_DETECT_BYTES]
                    digest_led += len(_DIGEST_LED.findall(head)) + (_DIGEST_START.match(head) is not None)
                    sampled += head.count(b"\n") + (not head.endswith(b"\n"))
            else:
                with_counts = detected.input_format == "hibp"
                chunk, n_lines, bad, too_large = _parse_hashes(block, with_counts, width, detected.shape)
            stats.lines += n_lines
            if len(bad):
                stats.note_bad(first_line, bad)
                # a column header on line 1 is counted as a bad line but is not one
                fault = bad[1:] if stats.header and first_line == 1 and bad[0] == 0 else bad
                if strict and len(fault):
                    number = first_line + int(fault[0])
                    if fault[0] == too_large:
                        raise InputError(f"{name}:{number}: count is larger than 4294967295, the largest a store holds")
                    shape = f", {detected.shape_name}" if detected.shape_name else ""
                    raise InputError(f"{name}:{number}: bad line (not a valid {detected.input_format} line{shape})")
            if progress is not None:
                progress(opened.position(), total, stats.lines)
            if len(chunk.counts):
                yield chunk
        if digest_led > sampled // 100:  # the rule of detect_format, over samples of the whole source
            raise InputError(
                f"{name}: {digest_led:,} of {sampled:,} lines sampled through it begin with a hex digest, though its "
                "first lines read as passwords: hashes and passwords mixed. Pass --input-format password to hash "
                "every line as a password, or split the file"
            )
    finally:
        opened.close()


# Only after a hex digit, a count's digit or a closing quote (a line of nothing but blanks stays a blank,
# bad line), and at most 16 (so no line longer than MAX_LINE_BYTES can become a good one, wherever it falls
# in a chunk).
_TRAILING_BLANKS = re.compile(rb'(?<=[0-9A-Za-z"])[ \t]{1,16}(\r?)(?=\n|\Z)')


def _strip_trailing_blanks(block: bytes) -> bytes:
    """Drop spaces and tabs at the end of hash lines (they are not part of a hash; a password keeps them)."""
    if b" \n" in block or b"\t\n" in block or b" \r" in block or b"\t\r" in block or block.endswith((b" ", b"\t")):
        return _TRAILING_BLANKS.sub(rb"\1", block)
    return block


def _parse_hashes(
    block: bytes, with_counts: bool, width: int, shape: int
) -> tuple[Chunk, int, npt.NDArray[np.int64], int]:
    """Parse a block of hash lines: the chunk, the lines read, the bad lines' indices, and the index of the
    first count too large for a store (a bad line too), or -1.

    Lone CRs end lines: a line that holds one is always bad, so a block is split at them (and parsed
    again) only when it has bad lines; a clean block costs nothing more.
    """
    parsed = _parse_hash_lines(_strip_trailing_blanks(block), with_counts, width, shape)
    if len(parsed[2]):
        split = split_lone_crs(block)
        if split is not block:
            parsed = _parse_hash_lines(_strip_trailing_blanks(split), with_counts, width, shape)
    return parsed


def _parse_hash_lines(
    block: bytes, with_counts: bool, width: int, shape: int
) -> tuple[Chunk, int, npt.NDArray[np.int64], int]:
    max_lines = block.count(b"\n") + 1
    size = width // 2
    digests = np.empty((max_lines, size), dtype=np.uint8)
    counts = np.empty(max_lines, dtype=np.uint64)
    bad = np.empty(max_lines, dtype=np.int64)
    view = memoryview(block)
    newlines: npt.NDArray[np.int64] | None = None
    offset = lines = good = n_bad = 0
    too_large = -1
    while True:
        # the kernel stops at a count that overflows; go on after that line (buffers are views, not copies)
        n, g, b, overflow = _native.kernels.parse_lines(
            view[offset:], int(with_counts), width, digests[good:], counts[good:], bad[n_bad:], shape
        )
        bad[n_bad : n_bad + b] += lines
        lines, good, n_bad = lines + n, good + g, n_bad + b
        if overflow < 0:
            break
        if too_large < 0:
            too_large = lines
        bad[n_bad] = lines
        lines, n_bad = lines + 1, n_bad + 1
        if newlines is None:
            newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
        if lines > len(newlines):  # the overflowing line was the last, without a newline
            break
        offset = int(newlines[lines - 1]) + 1
        if offset >= len(block):
            break
    return Chunk(digests[:good], counts[:good]), lines, bad[:n_bad], too_large


def _parse_passwords(block: bytes, scheme: str, shape: int = 0) -> tuple[Chunk, int, npt.NDArray[np.int64]]:
    """Hash a block of password lines (split at lone CRs too; with SHAPE_NUL, a NUL before the line end dropped)."""
    lines = split_lone_crs(block).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    size = check_scheme(scheme)
    nul = bool(shape & _native.SHAPE_NUL)
    out = bytearray()
    bad: list[int] = []
    sha1 = hashlib.sha1
    for i, line in enumerate(lines):
        if line.endswith(b"\r"):
            line = line[:-1]
        if nul and line.endswith(b"\x00"):
            line = line[:-1]
        if not line or len(line) > MAX_LINE_BYTES:
            bad.append(i)
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(i)
            continue
        out += sha1(line).digest() if scheme == "sha1" else digest(text, scheme)
    digests = np.frombuffer(bytes(out), dtype=np.uint8).reshape(-1, size)
    counts = np.ones(len(digests), dtype=np.uint64)
    return Chunk(digests, counts), len(lines), np.asarray(bad, dtype=np.int64)


class ReadSettings(NamedTuple):
    """How a pass reads its sources: the hash scheme, the input format, whether a bad line stops it."""

    scheme: str
    input_format: str
    strict: bool


class SourcesPass:
    """One read of several sources in turn: each one's stats, a digest of its bytes, and the hashes read.

    Two passes over the same sources can be compared with :meth:`differs_from`, so that a build that
    counts in one pass and writes in another refuses a source that changed in between. A subclass reads
    another kind of source with the same bookkeeping, through :meth:`_stats_for` and :meth:`_chunks`
    (:class:`~credcheck._combolist.ComboPass`: the passwords of combo lists).
    """

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = list(sources)
        self.stats = [self._stats_for(s) for s in self.sources]
        self.checksums = [xxhash.xxh3_128() for _ in self.sources]
        self.hashes = 0

    def _stats_for(self, source: Source) -> SourceStats:
        return SourceStats(source_name(source))

    @property
    def lines(self) -> int:
        """Lines read so far, over every source."""
        return sum(s.lines for s in self.stats)

    def read(
        self,
        *,
        scheme: str,
        input_format: str,
        strict: bool,
        progress: Callable[[int, int | None, int], None] | None = None,
    ) -> Iterator[Chunk]:
        """Every source's chunks in turn; ``progress(bytes done, bytes in all or None, lines)`` per chunk."""
        totals = [source_size(s) for s in self.sources]
        total = None if None in totals else sum(t or 0 for t in totals)
        done_before = 0
        for source, stats, own, sums in zip(self.sources, self.stats, totals, self.checksums, strict=True):

            def tick(done: int, _total: int | None, _lines: int, base: int = done_before) -> None:
                if progress is not None:
                    progress(base + done, total, self.lines)

            chunks = self._chunks(source, stats, sums, tick, ReadSettings(scheme, input_format, strict))
            for chunk in chunks:
                self.hashes += len(chunk.counts)
                yield chunk
            done_before += own or 0

    def _chunks(self, source: Source, stats: Any, checksum: Any, tick: Progress, read: ReadSettings) -> Iterator[Chunk]:
        """One source's chunks: its bad lines counted in ``stats``, every byte read fed to ``checksum``."""
        return read_source(
            source, scheme=read.scheme, input_format=read.input_format, strict=read.strict, stats=stats,
            progress=tick, checksum=checksum,
        )  # fmt: skip

    def digests(self) -> list[bytes]:
        """The xxh3-128 digest of each source's bytes as this pass read them (once :meth:`read` is done)."""
        return [checksum.digest() for checksum in self.checksums]

    def differs_from(self, other: SourcesPass) -> str | None:
        """The name of the first source whose bytes differ between this pass and ``other``, or None."""
        return first_changed(self.stats, self.digests(), other.digests())


def first_changed(stats: Sequence[SourceStats], digests: Sequence[bytes], others: Sequence[bytes]) -> str | None:
    """The name of the first source whose digest differs between two reads (``stats`` names them), or None."""
    for source, mine, theirs in zip(stats, digests, others, strict=True):
        if mine != theirs:
            return source.name
    return None
