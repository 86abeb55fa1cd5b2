"""Readers for combo lists: ``username:password`` (``combo``) and ``username:SHA1HEX`` (``combo-sha1``).

A line is split at its first ``:`` or tab, whichever comes first (so a password may hold either; a username
cannot). CRLF or LF; a UTF-8 byte-order mark at the start of a line is dropped (a file's, or one of several
files concatenated); gzip, bzip2 and xz are recognised by their magic bytes; ``-`` is standard input. Lines
are read in bounded memory: one longer than :data:`MAX_LINE` bytes is a bad line, skipped without being
held. Bad lines (no separator, an empty username, bytes that are not UTF-8, a bad hex digest, an over-long
line) are counted with their line numbers and never quoted; ``strict`` stops at the first. Passwords are
never normalised.
"""

from __future__ import annotations

import dataclasses
import hashlib
import lzma
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Final

from ..corpus import OpenedSource, Source, SourceStats, source_name, source_size
from ..errors import InputError
from .names import canon

__all__ = ["FORMATS", "MAX_LINE", "ComboStats", "Pair", "parse_line", "read_pairs"]

FORMATS: Final = ("combo", "combo-sha1")
#: The longest line read, in bytes (before its LF); longer ones are bad lines.
MAX_LINE: Final = 16384
BLOCK: Final = 1 << 20
_BOM: Final = b"\xef\xbb\xbf"
_HEX: Final = frozenset("0123456789abcdefABCDEF")
#: progress(bytes_done, bytes_total or None, lines_done): called once per block read.
Progress = Callable[[int, int | None, int], None]


@dataclasses.dataclass(frozen=True, slots=True)
class Pair:
    """One good combo line: its number, the canonical username, SHA-1(password), and the password if known.

    The repr shows the line number only.
    """

    line: int
    canonical: bytes = dataclasses.field(repr=False)
    sha1: bytes = dataclasses.field(repr=False)
    password: str | None = dataclasses.field(repr=False, default=None)


@dataclasses.dataclass(slots=True)
class ComboStats(SourceStats):
    """A source's line counts, bad lines with their first numbers, and how many bad lines of each kind."""

    reasons: dict[str, int] = dataclasses.field(default_factory=dict)

    def bad(self, line: int, reason: str) -> None:
        """Count bad line number ``line`` for ``reason``."""
        self.note_bad(line, [0])
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def parse_line(line: bytes, input_format: str = "combo") -> tuple[bytes, bytes, str | None] | str:
    """Parse one line (no line ending) into ``(canonical username, SHA-1, password or None)``, or a reason.

    The reason names what is wrong, never what the line holds.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    colon, tab = text.find(":"), text.find("\t")
    cut = colon if tab < 0 else tab if colon < 0 else min(colon, tab)
    if cut < 0:
        return "no ':' or tab separator"
    try:
        name = canon(text[:cut])
    except InputError:
        return "empty username"
    secret = text[cut + 1 :]
    if input_format == "combo":
        return name, hashlib.sha1(secret.encode("utf-8")).digest(), secret
    if len(secret) != 40 or not _HEX.issuperset(secret):
        return "not a 40-digit SHA-1 hex digest"
    return name, bytes.fromhex(secret), None


def _lines(opened: OpenedSource, name: str, on_block: Callable[[], None], checksum: Any) -> Iterator[bytes | None]:
    """Each line without its LF (None for one longer than MAX_LINE), holding at most MAX_LINE + BLOCK bytes."""
    pending = b""
    skipping = False
    while True:
        try:
            block = opened.stream.read(BLOCK)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:  # a corrupt compressed stream
            raise InputError(f"{name}: cannot read: {exc}") from exc
        if checksum is not None:
            checksum.update(block)
        if not block:
            if skipping:
                yield None
            elif pending:
                yield pending
            return
        start = 0
        while True:
            end = block.find(b"\n", start)
            if end < 0:
                if not skipping:
                    pending += block[start:]
                    if len(pending) > MAX_LINE:
                        pending, skipping = b"", True
                break
            if skipping:
                skipping = False
                yield None
            else:
                line = pending + block[start:end] if pending else block[start:end]
                pending = b""
                yield None if len(line) > MAX_LINE else line
            start = end + 1
        on_block()


def read_pairs(
    source: Source,
    *,
    input_format: str = "combo",
    strict: bool = False,
    stats: ComboStats | None = None,
    progress: Progress | None = None,
    checksum: Any = None,
) -> Iterator[Pair]:
    """Yield the good lines of one combo source; bad ones are counted in ``stats`` (line numbers only).

    With ``strict`` the first bad line raises :class:`~credcheck.errors.InputError` naming its number and
    what is wrong with it. ``checksum`` (an object with ``update``, e.g. ``xxhash.xxh3_128()``) is fed every
    byte of text read, so that two reads of a source can be compared.
    """
    if input_format not in FORMATS:
        raise ValueError(f"unknown combo format {input_format!r}; expected one of {', '.join(FORMATS)}")
    name = source_name(source)
    stats = stats if stats is not None else ComboStats(name)
    stats.input_format = input_format
    total = source_size(source)
    opened = OpenedSource(source, name)

    def tick() -> None:
        if progress is not None:
            progress(opened.position(), total, stats.lines)

    try:
        for line in _lines(opened, name, tick, checksum):
            stats.lines += 1
            number = stats.lines
            if line is None:
                parsed: tuple[bytes, bytes, str | None] | str = f"longer than {MAX_LINE} bytes"
            else:
                if line.startswith(_BOM):  # a file's start, or one of several files concatenated
                    line = line[len(_BOM) :]
                if line.endswith(b"\r"):
                    line = line[:-1]
                parsed = parse_line(line, input_format)
            if isinstance(parsed, str):
                stats.bad(number, parsed)
                if strict:
                    line = None  # not kept alive by the traceback's frame
                    raise InputError(f"{name}:{number}: bad line ({parsed})")
                continue
            yield Pair(number, *parsed)
        tick()
    finally:
        opened.close()
