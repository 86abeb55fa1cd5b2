"""The bulk-input rule of ``credcheck check``, one for both tiers: every line of standard input gets an answer,
or an ``error:`` line, in its place.

Lines end at LF, CRLF or a lone CR; a UTF-8 byte-order mark before the first one is dropped; a line longer
than the tier's limit is an error line, its bytes dropped as they arrive (memory stays bounded whatever the
input). Each line is answered as soon as it has arrived (a person typing, a slow pipe), while a file is
asked about in batches. A line that cannot be checked — it is not a password, a digest or a pair, or the
source could not answer for it — gets ``error: REASON`` (``{"error": REASON}`` with ``--json``) in its place
and its number on standard error, and checking goes on. The exit status is then 2 at the end, else 1 if any
line is compromised, else 0. Reasons name what was wrong, never what the line holds.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Final

from ..errors import CryptoError, InputError, RemoteError, RemoteErrorCode
from ._runner import EXIT_COMPROMISED, EXIT_ERROR, EXIT_OK

__all__ = ["LineCheck", "Unchecked", "answer_lines", "read_lines"]

READ_BYTES: Final = 1 << 20
_LINE_END: Final = re.compile(rb"\r\n?|\n")
_BOM: Final = codecs.BOM_UTF8
#: What a source raises when it could not answer for these lines (as opposed to being unusable as a whole)
_UNANSWERED: Final = (RemoteError, CryptoError, InputError)
#: A service that did not answer at all: the other lines read with this one are not sent to it
_UNREACHABLE: Final = (RemoteErrorCode.CONNECTION, RemoteErrorCode.TIMEOUT)


@dataclasses.dataclass(frozen=True, slots=True)
class Unchecked:
    """A line that gets no answer, and why (never what the line holds)."""

    reason: str


@dataclasses.dataclass(frozen=True)
class LineCheck:
    """How a tier checks lines of standard input.

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


def read_lines(stream: IO[bytes], max_line: int) -> Iterator[list[bytes | None]]:
    """The lines of ``stream`` without their ends, in the batches that each read completes; None stands for a
    line longer than ``max_line`` bytes."""
    read = getattr(stream, "read1", None) or stream.read  # what is there now, not a full buffer's worth
    first, head = True, b""  # the first bytes, until they are known to start with a BOM or not
    tail = b""  # the start of the line being read
    skipping = False  # the line being read is too long: its bytes are dropped up to its end
    after_cr = False  # the last read ended with CR: an LF at the start of the next one completes a CRLF
    while True:
        data = read(READ_BYTES)
        at_end = not data
        if first:
            head += data
            if not at_end and len(head) < len(_BOM) and _BOM.startswith(head):
                continue  # a BOM still arriving
            data, first = head.removeprefix(_BOM), False
        if after_cr and data.startswith(b"\n"):
            data = data[1:]
        after_cr = data.endswith(b"\r")
        if data:
            *ended, rest = _LINE_END.split(data)
            lines: list[bytes | None] = []
            for part in ended:
                lines.append(None if skipping or len(tail) + len(part) > max_line else tail + part)
                tail, skipping = b"", False
            if not skipping:
                tail += rest
                if len(tail) > max_line:
                    tail, skipping = b"", True
            if lines:
                yield lines
        if at_end:
            break
    if skipping:
        yield [None]
    elif tail:
        yield [tail]


def answer_lines(stream: IO[bytes], check: LineCheck, *, json_output: bool) -> int:
    """Answer every line of ``stream`` on standard output, in order and as it arrives; return the exit status."""
    number = 0
    unchecked = compromised = False
    for lines in read_lines(stream, check.max_line):
        for outcome in _outcomes(check, lines, number + 1):
            number += 1
            if isinstance(outcome, Unchecked):
                unchecked = True
                print(f"credcheck: error: standard input line {number}: {outcome.reason}", file=sys.stderr)
                print(json.dumps({"error": outcome.reason}) if json_output else f"error: {outcome.reason}")
            else:
                compromised = compromised or bool(outcome.compromised)
                print(check.show(outcome))
        sys.stdout.flush()  # answered as soon as the lines arrived, through a pipe too
    return EXIT_ERROR if unchecked else EXIT_COMPROMISED if compromised else EXIT_OK


def _outcomes(check: LineCheck, lines: list[bytes | None], first: int) -> list[Any]:
    """The answer, or the Unchecked reason, of each line read together (numbered from ``first``), in order.

    The lines are asked about in batches; when the source cannot answer a batch, each of its lines is asked
    alone, so the others still get their answers. Once a service has not answered at all, the remaining lines
    of the read are not sent to it (a dead service would otherwise cost every line its full deadline);
    the next read asks again.
    """
    outcomes: list[Any] = [
        Unchecked(f"longer than {check.max_line:,} bytes") if line is None else check.parse(line) for line in lines
    ]
    todo = [i for i, outcome in enumerate(outcomes) if not isinstance(outcome, Unchecked)]
    down: Unchecked | None = None
    for start in range(0, len(todo), check.batch):
        group = todo[start : start + check.batch]
        if down is None and len(group) > 1:
            try:
                answers = check.ask([outcomes[i] for i in group])
            except _UNANSWERED:
                pass  # one of them could not be answered: each is asked alone below
            else:
                for i, answer in zip(group, answers, strict=True):
                    outcomes[i] = answer
                continue
        for i in group:
            if down is not None:
                outcomes[i] = down
                continue
            try:
                outcomes[i] = check.ask([outcomes[i]])[0]
            except _UNANSWERED as exc:
                outcomes[i] = Unchecked(str(exc))
                if isinstance(exc, RemoteError) and exc.code in _UNREACHABLE:
                    down = Unchecked(f"not checked: the service did not answer for line {first + i}")
    return outcomes
