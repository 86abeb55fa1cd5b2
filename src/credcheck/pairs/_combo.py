"""Combo lists for the pair tier: each good line of :mod:`credcheck._combolist` with its canonical username.

``combo`` lines are ``username:password``, ``combo-sha1`` lines ``username:SHA1HEX``; the line rule, the line
endings, compression, bad-line accounting and ``strict`` are the shared reader's
(:func:`credcheck._combolist.read_combo`). Here each username is canonicalised (NFKC, stripped, casefolded:
:func:`~credcheck.pairs._names.canon`); a username that cannot be (its canonical form too long) is a bad line
too. Passwords are never normalised.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeAlias

from .._combolist import FORMATS, MAX_LINE, ComboLine, ComboStats, parse, read_combo
from .._corpus import Source, source_name
from ..errors import InputError
from ._names import canon

__all__ = ["FORMATS", "MAX_LINE", "ComboStats", "Pair", "parse_line", "read_pairs"]


#: A good combo line with its canonical username (the pair tier's form of it).
Pair: TypeAlias = ComboLine[bytes]


def _canonical(username: str) -> bytes | str:
    """The canonical username, or the reason it has none (never quoting it)."""
    try:
        return canon(username)
    except InputError:
        return "username too long once canonicalised"


def parse_line(line: bytes, input_format: str = "combo") -> tuple[bytes, bytes, str | None] | str:
    """Parse one line (no line ending) into ``(canonical username, SHA-1, password or None)``, or a reason.

    The reason names what is wrong, never what the line holds.
    """
    parsed = parse(line, input_format)
    if isinstance(parsed, str):
        return parsed
    username, sha1, password = parsed
    canonical = _canonical(username)
    return canonical if isinstance(canonical, str) else (canonical, sha1, password)


def read_pairs(
    source: Source, *, strict: bool = False, stats: ComboStats | None = None, **options: Any
) -> Iterator[Pair]:
    """:func:`~credcheck._combolist.read_combo`'s good lines as pairs, each with its canonical username (``options``:
    ``input_format``, ``progress``, ``checksum``, as there); a username that cannot be canonicalised is a bad line
    too, counted in ``stats`` (and under ``strict`` an :class:`~credcheck.errors.InputError`)."""
    name = source_name(source)
    stats = stats if stats is not None else ComboStats(name)
    lines = read_combo(source, strict=strict, stats=stats, **options)
    for line in lines:
        canonical = _canonical(line.username)
        if isinstance(canonical, str):
            number = line.line
            stats.bad(number, canonical)
            if strict:
                del line  # not kept alive by the traceback's frame
                raise InputError(f"{name}:{number}: bad line ({canonical})")
            continue
        yield ComboLine(line.line, canonical, line.sha1, line.password)
