"""Readers for leaked sets: HIBP ``HEX:COUNT`` dumps, plain hash lists and plaintext password lists.

Each source is read in chunks of whole lines and turned into arrays of raw digests and counts, with
every bad line counted and the first few line numbers kept. Compressed input (gzip, bzip2, xz) is
recognised by its magic bytes; ``-`` is standard input. Plaintext passwords are hashed here and never
kept, logged or echoed.
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
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt
import xxhash

from . import _native
from ._args import choice
from .errors import InputError
from .hashing import check_scheme, digest

__all__ = [
    "FORMATS",
    "MAX_LINE_BYTES",
    "Chunk",
    "Detected",
    "OpenedSource",
    "Source",
    "SourceStats",
    "SourcesPass",
    "detect_format",
    "looks_utf16",
    "read_source",
]

FORMATS: Final = ("auto", "hibp", "hash", "password")
CHUNK_BYTES: Final = 8 << 20
BAD_LINE_SAMPLES: Final = 10
#: The longest line read as a record. A hash line is at most 51 bytes; a password of 1,024 bytes (256
#: characters even in four-byte UTF-8) is far past what any site lets a user type (NIST SP 800-63B asks
#: for at least 64 characters), so a longer line is pasted junk (a record, markup, a blob): a bad line.
MAX_LINE_BYTES: Final = 1024
_HEAD_BYTES: Final = 4096  # what looks_utf16 looks at
_TOO_LONG: Final = b"\xff"  # what a too-long line becomes: neither hex nor UTF-8
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
#: Archives and compressors seen in leak dumps that are not read: said so, rather than every line a bad line
_NOT_READ: Final = {
    b"PK\x03\x04": ("a ZIP archive", "unzip -p FILE"),
    b"7z\xbc\xaf\x27\x1c": ("a 7-Zip archive", "7z x -so FILE"),
    b"Rar!\x1a\x07": ("a RAR archive", "unrar p -inul FILE"),
    b"\x28\xb5\x2f\xfd": ("zstd-compressed", "zstd -dc FILE"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Chunk:
    """Digests (n x digest-size uint8) and their counts (uint64) from a run of good lines."""

    digests: npt.NDArray[np.uint8]
    counts: npt.NDArray[np.uint64]


@dataclasses.dataclass(slots=True)
class SourceStats:
    """What reading one source found: its format, lines read, and bad lines (with the first few numbers).

    ``header`` says the first line was a column header (``SHA1:COUNT``): it is counted among the bad
    lines, so that the numbers add up, but ``strict`` does not stop at it.
    """

    name: str
    input_format: str = "auto"
    header: bool = False
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
        for magic, (kind, unpack) in _NOT_READ.items():
            if head.startswith(magic):
                self.close()
                shown = name or source_name(source)
                raise InputError(
                    f"{shown} is {kind}: credcheck reads text, gzip, bzip2 and xz; unpack it first "
                    f"(e.g. {unpack} | credcheck build - ...)"
                )

    def position(self) -> int:
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()


def _read_blocks(opened: OpenedSource, name: str, chunk_bytes: int) -> Iterator[bytes]:
    """Yield blocks of whole lines (the last block may end without a newline), in bounded memory.

    A line longer than :data:`MAX_LINE_BYTES` is longer than any valid record: its bytes are dropped as
    they arrive and it is handed on as one undecodable, non-hex byte, a bad line for every format.
    """
    tail = b""
    skipping = False  # inside a line that is too long: dropping it up to its newline
    first = True
    while True:
        try:
            # the first read is large enough to tell UTF-16 by its NULs, whatever the chunk size
            block = opened.stream.read(max(chunk_bytes, _HEAD_BYTES) if first else chunk_bytes)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:  # a corrupt compressed stream
            raise InputError(f"{name}: cannot read: {exc}") from exc
        if first and block:
            first = False
            while len(block) < _HEAD_BYTES:  # a short read (a pipe, a compressed stream): fill the head
                more = opened.stream.read(_HEAD_BYTES - len(block))
                if not more:
                    break
                block += more
            if looks_utf16(block):
                raise InputError(
                    f"{name}: the text is UTF-16, not UTF-8 (read as UTF-8 every password would hash wrongly); "
                    "convert it first, e.g. iconv -f UTF-16 -t UTF-8"
                )
            if block.startswith(UTF8_BOM):  # a byte-order mark is not part of the first line
                block = block[len(UTF8_BOM) :]
        if not block:
            if skipping:
                yield _TOO_LONG
            elif tail:
                yield tail
            return
        if skipping:
            end = block.find(b"\n")
            if end < 0:
                continue
            block, skipping = _TOO_LONG + block[end:], False
        data = tail + block if tail else block
        cut = data.rfind(b"\n")
        tail = data[cut + 1 :] if cut >= 0 else data
        if len(tail) > MAX_LINE_BYTES + 1:  # (+ 1: a CR that the line may still end with)
            tail, skipping = b"", True
        if cut >= 0:
            yield data[: cut + 1]


_HEX_LINE = re.compile(rb"([0-9A-Fa-f]+)(:[0-9]+)?")
# A column header such as ``SHA1:COUNT``, ``hash`` or ``Hash,Count``: words, no digits-only fields.
_HEADER_LINE = re.compile(rb"[A-Za-z][A-Za-z0-9_ -]{0,31}([:,;\t|][A-Za-z][A-Za-z0-9_ -]{0,31}){0,3}")
UTF8_BOM: Final = b"\xef\xbb\xbf"
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")


@dataclasses.dataclass(frozen=True, slots=True)
class Detected:
    """What the first lines of a source say: its format, hex digits per hash (0 for passwords), a header."""

    input_format: str
    width: int
    header: bool = False


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


def detect_format(sample: bytes, scheme: str, *, strict: bool = False, name: str = "input") -> Detected:
    """Decide the input format from the first lines of a source (a UTF-8 byte-order mark already removed).

    Blank lines are ignored, and a first line that is a column header (``SHA1:COUNT``) is set aside.
    The rest must agree: all hash-shaped lines of one shape (``hibp`` or ``hash``, 40 or 32 hex digits)
    but for a few bad ones (at most one in ten), or hardly any hash-shaped line at all (a password list:
    at most one in a hundred). Anything in between is refused with :class:`InputError` rather than
    guessed, since the wrong guess turns every leaked password into "not compromised". With ``strict``
    the lines must be unanimous.
    """
    lines = sample.split(b"\n", _DETECT_LINES)[:_DETECT_LINES]
    first = lines[0].strip() if lines else b""
    header = _HEADER_LINE.fullmatch(first) is not None and _HEX_LINE.fullmatch(first) is None
    shapes: dict[tuple[str, int], int] = {}
    other = 0
    for line in lines[1:] if header else lines:
        line = line.strip()
        if not line:
            continue
        match = _HEX_LINE.fullmatch(line)
        if match is None or len(match.group(1)) not in (32, 40):
            other += 1
            continue
        shape = ("hibp" if match.group(2) else "hash", len(match.group(1)))
        shapes[shape] = shapes.get(shape, 0) + 1
    hashes = sum(shapes.values())
    total = hashes + other
    if hashes == 0:
        return Detected("password", 0)
    (fmt, width), dominant = max(shapes.items(), key=lambda item: item[1])
    if dominant == total or (not strict and dominant >= 2 and total - dominant <= max(1, total // 10)):
        return Detected(fmt, width, header)
    if not strict and hashes <= total // 100:
        return Detected("password", 0)
    raise InputError(
        f"{name}: cannot tell the input format: of the first {total:,} lines, {hashes:,} look like hashes "
        f"and {total - hashes:,} do not{' (--strict wants them unanimous)' if strict else ''}; "
        "pass --input-format hibp, hash or password"
    )


def _check_width(seen: int, expected: int, scheme: str, name: str) -> None:
    """Refuse input whose hashes are of the other scheme (so a whole file is not read as bad lines)."""
    if seen and seen != expected:
        other = "ntlm" if seen == 32 else "sha1"
        raise InputError(
            f"{name}: the lines look like {other} hashes ({seen} hex digits) but the scheme is {scheme}; "
            f"pass --hash {other}"
        )


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
    above 2^32 - 1 (the largest a store holds) is a bad line, and under ``strict`` an error.
    ``checksum`` (an object with ``update``, e.g. ``xxhash.xxh3_128()``) is fed every byte of text
    read, so that two reads can be compared.
    """
    choice("input format", input_format, FORMATS)
    name = source_name(source)
    stats = stats if stats is not None else SourceStats(name)
    total = source_size(source)
    opened = OpenedSource(source)
    try:
        fmt = input_format
        width = 2 * check_scheme(scheme)
        for block in _read_blocks(opened, name, chunk_bytes):
            if checksum is not None:
                checksum.update(block)
            if fmt == "auto":
                sample = block[:_DETECT_BYTES]
                if len(block) > len(sample):
                    sample = sample[: sample.rfind(b"\n") + 1]
                detected = detect_format(sample, scheme, strict=strict, name=name)
                fmt, stats.header = detected.input_format, detected.header
                _check_width(detected.width, width, scheme, name)
            stats.input_format = fmt
            first_line = stats.lines + 1
            if fmt == "password":
                chunk, n_lines, bad = _parse_passwords(block, scheme)
            else:
                chunk, n_lines, bad = _parse_hashes(block, fmt == "hibp", width, name, first_line, strict)
            stats.lines += n_lines
            if len(bad):
                stats.note_bad(first_line, bad)
                # a column header on line 1 is counted as a bad line but is not one
                fault = bad[1:] if stats.header and first_line == 1 and bad[0] == 0 else bad
                if strict and len(fault):
                    raise InputError(f"{name}:{first_line + int(fault[0])}: bad line (not a valid {fmt} line)")
            if progress is not None:
                progress(opened.position(), total, stats.lines)
            if len(chunk.counts):
                yield chunk
    finally:
        opened.close()


# Only after a hex digit or a count's digit (a line of nothing but blanks stays a blank, bad line), and at
# most 16 (so no line longer than MAX_LINE_BYTES can become a good one, wherever it falls in a chunk).
_TRAILING_BLANKS = re.compile(rb"(?<=[0-9A-Za-z])[ \t]{1,16}(\r?)(?=\n|\Z)")


def _strip_trailing_blanks(block: bytes) -> bytes:
    """Drop spaces and tabs at the end of hash lines (they are not part of a hash; a password keeps them)."""
    if b" \n" in block or b"\t\n" in block or b" \r" in block or b"\t\r" in block or block.endswith((b" ", b"\t")):
        return _TRAILING_BLANKS.sub(rb"\1", block)
    return block


def _parse_hashes(
    block: bytes, with_counts: bool, width: int, name: str, first_line: int, strict: bool
) -> tuple[Chunk, int, npt.NDArray[np.int64]]:
    """Parse a block of hash lines; a count too large for a store is a bad line (under ``strict``, an error)."""
    block = _strip_trailing_blanks(block)
    max_lines = block.count(b"\n") + 1
    size = width // 2
    digests = np.empty((max_lines, size), dtype=np.uint8)
    counts = np.empty(max_lines, dtype=np.uint64)
    bad = np.empty(max_lines, dtype=np.int64)
    view = memoryview(block)
    newlines: npt.NDArray[np.int64] | None = None
    offset = lines = good = n_bad = 0
    while True:
        # the kernel stops at a count that overflows; go on after that line (buffers are views, not copies)
        n, g, b, overflow = _native.kernels.parse_lines(
            view[offset:], int(with_counts), width, digests[good:], counts[good:], bad[n_bad:]
        )
        bad[n_bad : n_bad + b] += lines
        lines, good, n_bad = lines + n, good + g, n_bad + b
        if overflow < 0:
            break
        if strict:
            raise InputError(f"{name}:{first_line + lines}: count is larger than 4294967295, the largest a store holds")
        bad[n_bad] = lines
        lines, n_bad = lines + 1, n_bad + 1
        if newlines is None:
            newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
        if lines > len(newlines):  # the overflowing line was the last, without a newline
            break
        offset = int(newlines[lines - 1]) + 1
        if offset >= len(block):
            break
    return Chunk(digests[:good], counts[:good]), lines, bad[:n_bad]


def _parse_passwords(block: bytes, scheme: str) -> tuple[Chunk, int, npt.NDArray[np.int64]]:
    lines = block.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    size = check_scheme(scheme)
    out = bytearray()
    bad: list[int] = []
    sha1 = hashlib.sha1
    for i, line in enumerate(lines):
        if line.endswith(b"\r"):
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


class SourcesPass:
    """One read of several sources in turn: each one's stats, a digest of its bytes, and the hashes read.

    Two passes over the same sources can be compared with :meth:`differs_from`, so that a build that
    counts in one pass and writes in another refuses a source that changed in between. A subclass reads
    another kind of source with the same bookkeeping, through :meth:`_stats_for` and :meth:`_chunks`
    (:class:`~credcheck.pairs.passwords.ComboPass`: the passwords of combo lists).
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

            chunks = self._chunks(source, stats, sums, tick, scheme=scheme, input_format=input_format, strict=strict)
            for chunk in chunks:
                self.hashes += len(chunk.counts)
                yield chunk
            done_before += own or 0

    def _chunks(
        self,
        source: Source,
        stats: Any,
        checksum: Any,
        tick: Callable[[int, int | None, int], None],
        *,
        scheme: str,
        input_format: str,
        strict: bool,
    ) -> Iterator[Chunk]:
        """One source's chunks: its bad lines counted in ``stats``, every byte read fed to ``checksum``."""
        return read_source(
            source, scheme=scheme, input_format=input_format, strict=strict, stats=stats, progress=tick,
            checksum=checksum,
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
