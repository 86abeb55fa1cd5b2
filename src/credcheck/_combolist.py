"""Combo lists (``username:password`` or ``username:SHA1HEX`` lines): the reader both tiers share.

A line is split at its first ``:`` or tab (:func:`~credcheck._corpus.split_combo_line`: a password may hold
either, a username cannot). Lines end at LF, CRLF or a lone CR, as everywhere in :mod:`credcheck._corpus`,
whose line reader this uses: gzip, bzip2 and xz are read by their magic bytes, an archive or UTF-16 text is
refused, ``-`` is standard input. A UTF-8 byte-order mark at the start of a line is dropped (a file's, or
one of several files concatenated). Lines are read in bounded memory: one longer than :data:`MAX_LINE`
bytes is a bad line, skipped without being held. Bad lines (no separator, an empty username, bytes that
are not UTF-8, a bad hex digest, an over-long line) are counted with their line numbers and never quoted;
``strict`` stops at the first. Passwords are never normalised.

:class:`ComboPass` hands a password build (``--input-format combo`` with ``--filter``/``--store``) the
passwords' digests; the pair tier reads the same lines (:mod:`credcheck.pairs._combo`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, Final, Generic, TypeVar

import numpy as np

from ._corpus import (
    COMBO_FORMATS,
    UTF8_BOM,
    Chunk,
    OpenedSource,
    Progress,
    ReadSettings,
    Source,
    SourcesPass,
    SourceStats,
    line_blocks,
    source_name,
    source_size,
    split_combo_line,
    split_lone_crs,
)
from .errors import InputError
from .hashing import check_scheme, digest

__all__ = ["FORMATS", "MAX_LINE", "ComboLine", "ComboPass", "ComboStats", "check_scheme_for", "parse", "read_combo"]

FORMATS: Final = COMBO_FORMATS
#: The longest line read, in bytes (before its line ending); longer ones are bad lines.
MAX_LINE: Final = 16384
BLOCK: Final = 1 << 20
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_CHUNK_ROWS: Final = 1 << 16


_U = TypeVar("_U", str, bytes)


@dataclasses.dataclass(frozen=True, slots=True)
class ComboLine(Generic[_U]):
    """One good combo line: its number, the username (as written: ``str``; or in a tier's canonical form: the
    pair tier's ``bytes``), SHA-1(password), and the password if known.

    The repr shows the line number only.
    """

    line: int
    username: _U = dataclasses.field(repr=False)
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


def parse(line: bytes, input_format: str = "combo") -> tuple[str, bytes, str | None] | str:
    """Parse one line (no line ending) into ``(username, SHA-1, password or None)``, or a reason.

    The reason names what is wrong, never what the line holds.
    """
    parts = split_combo_line(line)
    if isinstance(parts, str):
        return parts
    username, secret = parts
    if input_format == "combo":
        return username, hashlib.sha1(secret.encode("utf-8")).digest(), secret
    if len(secret) != 40 or not _HEX.issuperset(secret):
        return "not a 40-digit SHA-1 hex digest"
    return username, bytes.fromhex(secret), None


def read_combo(
    source: Source,
    *,
    input_format: str = "combo",
    strict: bool = False,
    stats: ComboStats | None = None,
    progress: Progress | None = None,
    checksum: Any = None,
) -> Iterator[ComboLine[str]]:
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
    try:
        for block in line_blocks(opened, name, BLOCK, MAX_LINE):
            if checksum is not None:
                checksum.update(block)
            lines = split_lone_crs(block).split(b"\n")
            if lines[-1] == b"":
                lines.pop()
            for line in lines:
                stats.lines += 1
                line = line.removesuffix(b"\r").removeprefix(UTF8_BOM)  # a BOM: a file's start, or files concatenated
                parsed = f"longer than {MAX_LINE} bytes" if len(line) > MAX_LINE else parse(line, input_format)
                if isinstance(parsed, str):
                    stats.bad(stats.lines, parsed)
                    if strict:
                        del line, lines, block  # not kept alive by the traceback's frame
                        raise InputError(f"{name}:{stats.lines}: bad line ({parsed})")
                    continue
                yield ComboLine(stats.lines, *parsed)
            if progress is not None:
                progress(opened.position(), total, stats.lines)
    finally:
        opened.close()


def check_scheme_for(input_format: str, scheme: str) -> None:
    """Refuse a scheme the combo format cannot give: a ``combo-sha1`` line holds a SHA-1, never an NTLM hash."""
    if input_format not in FORMATS:
        raise InputError(f"the passwords of a pair build come from combo lists, not {input_format!r}")
    if input_format == "combo-sha1" and scheme != "sha1":
        raise InputError("combo-sha1 lines hold SHA-1 hashes: their filter or store can only be sha1, not " + scheme)


class ComboPass(SourcesPass):
    """One read of combo sources in turn, as the password build's engine reads a :class:`SourcesPass`: the
    same bookkeeping (stats, a digest of each source's bytes, the hashes read), the combo reader's lines.

    Each good line gives one digest, counted once: the password's SHA-1 or NTLM, hashed here in memory (a
    ``combo-sha1`` line's digest as it is). No password is written anywhere.
    """

    def __init__(self, sources: Sequence[Source], input_format: str) -> None:
        self.input_format = input_format
        super().__init__(sources)

    def _stats_for(self, source: Source) -> ComboStats:
        return ComboStats(source_name(source), self.input_format)

    def _chunks(self, source: Source, stats: Any, checksum: Any, tick: Progress, read: ReadSettings) -> Iterator[Chunk]:
        scheme, strict = read.scheme, read.strict
        check_scheme_for(self.input_format, scheme)
        size = check_scheme(scheme)
        out = bytearray()
        rows = 0
        lines = read_combo(
            source, input_format=self.input_format, strict=strict, stats=stats, progress=tick, checksum=checksum
        )
        for line in lines:
            if scheme == "sha1":
                out += line.sha1
            else:
                assert line.password is not None  # check_scheme_for: combo-sha1 is sha1 only
                out += digest(line.password, scheme)
            rows += 1
            if rows == _CHUNK_ROWS:
                yield _chunk(out, size)
                out, rows = bytearray(), 0
        if rows:
            yield _chunk(out, size)


def _chunk(out: bytearray, size: int) -> Chunk:
    digests = np.frombuffer(bytes(out), dtype=np.uint8).reshape(-1, size)
    return Chunk(digests, np.ones(len(digests), dtype=np.uint64))
