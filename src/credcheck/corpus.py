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
from collections.abc import Callable, Iterator
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt

from ._native import kernels as _k
from .errors import InputError
from .hashing import check_scheme, digest

__all__ = ["FORMATS", "Chunk", "Source", "SourceStats", "detect_format", "read_source"]

FORMATS: Final = ("auto", "hibp", "hash", "password")
CHUNK_BYTES: Final = 8 << 20
BAD_LINE_SAMPLES: Final = 10
_DETECT_LINES: Final = 20

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
    """Digests (n x digest-size uint8) and their counts (uint64) from a run of good lines."""

    digests: npt.NDArray[np.uint8]
    counts: npt.NDArray[np.uint64]


@dataclasses.dataclass(slots=True)
class SourceStats:
    """What reading one source found: its format, lines read, and bad lines (with the first few numbers)."""

    name: str
    input_format: str = "auto"
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


class _Opened:
    """A source opened for reading: the decompressed stream and the raw stream whose position is progress."""

    def __init__(self, source: Source) -> None:
        self._owned: IO[bytes] | None = None
        if isinstance(source, str | os.PathLike):
            if os.fspath(source) == "-":
                raw: IO[bytes] = sys.stdin.buffer
            else:
                try:
                    raw = self._owned = open(source, "rb")  # noqa: SIM115 - closed in close()
                except OSError as exc:
                    raise InputError(f"cannot read {os.fspath(source)}: {exc.strerror or exc}") from exc
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


def _read_blocks(opened: _Opened, name: str, chunk_bytes: int) -> Iterator[bytes]:
    """Yield blocks of whole lines (the last block may end without a newline)."""
    tail = b""
    while True:
        try:
            block = opened.stream.read(chunk_bytes)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:  # a corrupt compressed stream
            raise InputError(f"{name}: cannot read: {exc}") from exc
        if not block:
            if tail:
                yield tail
            return
        data = tail + block if tail else block
        cut = data.rfind(b"\n")
        if cut < 0:
            tail = data
            continue
        tail = data[cut + 1 :]
        yield data[: cut + 1]


_HEX_LINE = re.compile(rb"([0-9A-Fa-f]+)(:[0-9]+)?\r?")


def detect_format(sample: bytes, scheme: str) -> tuple[str, int]:
    """Guess the input format from the first lines; return ``(format, hex digits per hash or 0)``."""
    lines = [line for line in sample.split(b"\n")[:_DETECT_LINES] if line.strip()]
    if not lines:
        return "password", 0
    shapes = set()
    for line in lines:
        match = _HEX_LINE.fullmatch(line)
        if match is None or len(match.group(1)) not in (32, 40):
            return "password", 0
        shapes.add(("hibp" if match.group(2) else "hash", len(match.group(1))))
    if len(shapes) != 1:
        return "password", 0
    ((fmt, width),) = shapes
    return fmt, width


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
) -> Iterator[Chunk]:
    """Read one leaked set and yield chunks of digests and counts; bad lines go into ``stats``.

    With ``strict`` the first bad line raises :class:`InputError` naming its line number.
    A count above 2^32 - 1 always raises :class:`InputError`.
    """
    if input_format not in FORMATS:
        raise ValueError(f"unknown input format {input_format!r}; expected one of {', '.join(FORMATS)}")
    name = source_name(source)
    stats = stats if stats is not None else SourceStats(name)
    total = source_size(source)
    opened = _Opened(source)
    try:
        fmt = input_format
        width = 2 * check_scheme(scheme)
        for block in _read_blocks(opened, name, chunk_bytes):
            if fmt == "auto":
                fmt, seen = detect_format(block[: 64 * 1024], scheme)
                _check_width(seen, width, scheme, name)
            stats.input_format = fmt
            first_line = stats.lines + 1
            if fmt == "password":
                chunk, n_lines, bad = _parse_passwords(block, scheme)
            else:
                chunk, n_lines, bad = _parse_hashes(block, fmt == "hibp", width, name, first_line)
            stats.lines += n_lines
            if len(bad):
                stats.note_bad(first_line, bad)
                if strict:
                    raise InputError(f"{name}:{first_line + int(bad[0])}: bad line (not a valid {fmt} line)")
            if progress is not None:
                progress(opened.position(), total, stats.lines)
            if len(chunk.counts):
                yield chunk
    finally:
        opened.close()


def _parse_hashes(
    block: bytes, with_counts: bool, width: int, name: str, first_line: int
) -> tuple[Chunk, int, npt.NDArray[np.int64]]:
    max_lines = block.count(b"\n") + 1
    size = width // 2
    digests = np.empty((max_lines, size), dtype=np.uint8)
    counts = np.empty(max_lines, dtype=np.uint64)
    bad = np.empty(max_lines, dtype=np.int64)
    n_lines, good, n_bad, overflow = _k.parse_lines(block, int(with_counts), width, digests, counts, bad)
    if overflow >= 0:
        raise InputError(f"{name}:{first_line + overflow}: count is larger than 4294967295, the largest a store holds")
    return Chunk(digests[:good], counts[:good]), n_lines, bad[:n_bad]


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
        if not line:
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
