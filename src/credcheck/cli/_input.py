"""The bulk-input rule of ``credcheck check``, one for both tiers: every line of standard input gets an answer,
or an ``error:`` line, in its place.

Standard input is read as a build reads a source (:mod:`credcheck._corpus`'s line rules): lines end at LF, CRLF
or a lone CR; a UTF-8 byte-order mark before the first one is dropped, and an archive or UTF-16 text is refused
as a whole; a line longer than the tier's limit is an error line, its bytes dropped as they arrive (memory stays
bounded whatever the input). Each line is answered as soon as it has arrived (a person typing, a slow pipe),
while a file is asked about in batches. A line that cannot be checked — it is not a password, a digest, an
account or a pair, or the source could not answer for it — gets ``error: REASON`` (``{"error": REASON}`` with
``--json``) in its place and its number on standard error, and checking goes on. The exit status is then 2 at
the end, else 1 if any line is compromised, else 0. Reasons name what was wrong, never what the line holds.

A check answers a block of whole lines at a time (:class:`Answering`): line by line (:class:`LineCheck`, the
passwords and the pairs) or a block at once (the hashes of an audit, ``cli._audit``); both ask their source
by one rule (:func:`asked`).
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Final, NamedTuple, Protocol, TypeVar

from .._corpus import UTF8_BOM, checked_head, too_long_line
from ..errors import CryptoError, InputError, RemoteError, RemoteErrorCode
from ._runner import EXIT_COMPROMISED, EXIT_ERROR, EXIT_OK

__all__ = ["Answered", "Answering", "LineCheck", "Unchecked", "answer_lines", "asked", "lines_of", "read_blocks"]

READ_BYTES: Final = 1 << 20
#: What standard input is called in messages.
STDIN: Final = "standard input"
_LINE_END: Final = re.compile(rb"\r\n?|\n")
#: Byte-order marks whose first bytes may arrive alone: the head waits for the rest before it is checked
_BOMS: Final = (UTF8_BOM, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
#: What a source raises when it could not answer for these lines (as opposed to being unusable as a whole)
_UNANSWERED: Final = (RemoteError, CryptoError, InputError)
#: A service that did not answer at all: the other lines read with this one are not sent to it
_UNREACHABLE: Final = (RemoteErrorCode.CONNECTION, RemoteErrorCode.TIMEOUT)

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class Unchecked:
    """A line that gets no answer, and why (never what the line holds)."""

    reason: str


class Answered(NamedTuple):
    """What a check made of a block of lines: its output lines (a view valid until the check answers again), how
    many lines it read, the numbers and reasons of those that got an error line, and whether any was compromised."""

    text: bytes | memoryview
    lines: int
    unchecked: list[tuple[int, str]]
    compromised: bool


class Answering(Protocol):
    """How a check answers standard input: a block of whole lines at a time."""

    @property
    def max_line(self) -> int:
        """Lines longer than this many bytes are not read."""
        ...

    def answer(self, block: bytes, first: int, json_output: bool) -> Answered:
        """Answer the lines of ``block`` (the first one is line number ``first``), in order."""
        ...


def read_blocks(stream: IO[bytes], max_line: int) -> Iterator[bytes]:
    """The text of ``stream`` in blocks of whole lines, each yielded as soon as a read completes a line.

    A line keeps its end (LF, CRLF or a lone CR) in its block; only the last line of the stream may have none.
    A line longer than ``max_line`` bytes that spans reads is dropped as it arrives and stands in its block as
    :func:`credcheck._corpus.too_long_line` (longer than ``max_line``, neither hex nor UTF-8); one that a single
    read holds is left whole (a block is at most one read and one line long). The first bytes are checked as a
    build checks a source's (:func:`credcheck._corpus.checked_head`).
    """
    read = getattr(stream, "read1", None) or stream.read  # what is there now, not a full buffer's worth
    head: bytes | None = b""  # the first bytes, until they are checked
    tail = b""  # the start of the line being read
    skipping = False  # the line being read is too long: its bytes are dropped up to its end
    after_cr = False  # the last read ended with CR: an LF at the start of the next one completes a CRLF
    while True:
        data = read(READ_BYTES)
        at_end = not data
        if head is not None:
            head += data
            if not at_end and any(len(head) < len(bom) and bom.startswith(head) for bom in _BOMS):
                continue  # a byte-order mark still arriving
            data, head = checked_head(head, STDIN), None
        if after_cr and data.startswith(b"\n"):
            data = data[1:]
        after_cr = data.endswith(b"\r")
        if skipping:
            end = _LINE_END.search(data)
            if end is None:
                if at_end:
                    break
                continue
            data, skipping = too_long_line(max_line) + data[end.start() :], False
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1  # after the last line end (0: none)
        if cut:
            # one copy of the read at most: the line begun before it, and its lines up to the last end
            block = b"".join((tail, memoryview(data)[:cut])) if tail or cut < len(data) else data
            tail = data[cut:]
            yield block
        else:
            tail += data
        if len(tail) > max_line:
            tail, skipping = b"", True
        if at_end:
            break
    if skipping:
        yield too_long_line(max_line)
    elif tail:
        yield tail


def lines_of(block: bytes) -> list[bytes]:
    """The lines of a block from :func:`read_blocks`, without their ends."""
    lines = _LINE_END.split(block)
    if lines[-1] == b"":
        lines.pop()
    return lines


def asked(
    ask: Callable[[int, int], _T], count: int, batch: int, line_of: Callable[[int], int]
) -> Iterator[tuple[int, int, _T | Unchecked]]:
    """Ask a source about items 0 .. count - 1 in batches: ``(lo, hi, ask(lo, hi))`` for items lo .. hi - 1, or
    ``(lo, hi, Unchecked)`` for items that get no answer, in order.

    When the source cannot answer a batch, each of its items is asked alone, so the others still get their
    answers. Once a service has not answered at all, the remaining items are not sent to it (a dead service
    would otherwise cost every line its full deadline); ``line_of(i)`` is item i's line number.
    """
    down: Unchecked | None = None
    for start in range(0, count, batch):
        stop = min(start + batch, count)
        if down is None and stop - start > 1:
            try:
                answers = ask(start, stop)
            except _UNANSWERED:
                pass  # one of them could not be answered: each is asked alone below
            else:
                yield start, stop, answers
                continue
        for i in range(start, stop):
            if down is not None:
                yield i, stop, down
                break
            try:
                answer: _T | Unchecked = ask(i, i + 1)
            except _UNANSWERED as exc:
                answer = Unchecked(str(exc))
                if isinstance(exc, RemoteError) and exc.code in _UNREACHABLE:
                    down = Unchecked(f"not checked: the service did not answer for line {line_of(i)}")
            yield i, i + 1, answer


def error_line(reason: str, json_output: bool) -> str:
    """The output line of a line that could not be checked."""
    return json.dumps({"error": reason}) if json_output else f"error: {reason}"


@dataclasses.dataclass(frozen=True)
class LineCheck:
    """How a tier checks lines of standard input one by one.

    ``parse`` turns a line into what ``ask`` takes, or into the :class:`Unchecked` reason it cannot be
    checked; ``ask`` answers up to ``batch`` parsed lines at once (each answer has ``compromised``), raising
    a RemoteError, CryptoError or InputError when it could not answer one of them; ``show`` renders an
    answer as its output line. Lines longer than ``max_line`` bytes are not read.
    """

    parse: Callable[[bytes], Any]
    ask: Callable[[list[Any]], Sequence[Any]]
    show: Callable[[Any], str]
    batch: int
    max_line: int

    def answer(self, block: bytes, first: int, json_output: bool) -> Answered:
        """Answer the lines of ``block`` one by one, asking the source in batches."""
        outcomes: list[Any] = [
            Unchecked(f"longer than {self.max_line:,} bytes") if len(line) > self.max_line else self.parse(line)
            for line in lines_of(block)
        ]
        todo = [i for i, outcome in enumerate(outcomes) if not isinstance(outcome, Unchecked)]
        parsed = [outcomes[i] for i in todo]
        for start, stop, answers in asked(
            lambda lo, hi: self.ask(parsed[lo:hi]), len(todo), self.batch, lambda j: first + todo[j]
        ):
            for j in range(start, stop):
                outcomes[todo[j]] = answers if isinstance(answers, Unchecked) else answers[j - start]
        shown, unchecked, compromised = [], [], False
        for number, outcome in enumerate(outcomes, first):
            if isinstance(outcome, Unchecked):
                unchecked.append((number, outcome.reason))
                shown.append(error_line(outcome.reason, json_output))
            else:
                compromised = compromised or bool(outcome.compromised)
                shown.append(self.show(outcome))
        text = "".join(f"{line}\n" for line in shown).encode()
        return Answered(text, len(outcomes), unchecked, compromised)


def answer_lines(stream: IO[bytes], check: Answering, *, json_output: bool) -> int:
    """Answer every line of ``stream`` on standard output, in order and as it arrives; return the exit status."""
    number = 0
    unchecked = compromised = False
    for block in read_blocks(stream, check.max_line):
        answered = check.answer(block, number + 1, json_output)
        for line, reason in answered.unchecked:
            print(f"credcheck: error: standard input line {line}: {reason}", file=sys.stderr)
        write_out(answered.text)  # answered as soon as the lines arrived, through a pipe too
        number += answered.lines
        unchecked = unchecked or bool(answered.unchecked)
        compromised = compromised or answered.compromised
    return EXIT_ERROR if unchecked else EXIT_COMPROMISED if compromised else EXIT_OK


def write_out(text: bytes | memoryview) -> None:
    """Write UTF-8 text to standard output at once, and flush it."""
    sys.stdout.flush()
    binary = getattr(sys.stdout, "buffer", None)
    if binary is None:  # a text-only stand-in (a test's, an embedding program's)
        sys.stdout.write(bytes(text).decode())
    else:
        binary.write(text)
        binary.flush()
