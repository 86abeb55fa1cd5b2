"""What a body is read into: the bytes of a 200 proven whole (:class:`BodyReader`), then a range parsed strictly
(:func:`parse_range_body`). A body that cannot be proven whole or parsed is a failure, never a shorter range."""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Mapping
from typing import Final

from .. import _args
from .._wire import MAX_COUNT_DIGITS
from ..errors import RemoteError, RemoteErrorCode
from .events import Failure, bad_response

__all__ = ["MAX_BODY_BYTES", "BodyReader", "parse_range_body"]

# A Pwned Passwords range is ~40 KB with padding; a self-hosted corpus of billions stays well under this.
MAX_BODY_BYTES: Final = 8 * 1024 * 1024


class BodyReader:
    """Reads a 200's body from the raw bytes (de-chunked, not decoded) and proves it whole, or says why not.

    The body must be framed by Content-Length (every byte of it received) or by chunked encoding (the
    driver's transport checks the terminating chunk); a close-delimited body ends the same way whether it
    was complete or cut short, so it is refused. A gzip body must reach the end of its stream (final block
    and trailer, checked by zlib) with nothing after it; any other content encoding is refused (only gzip is
    asked for). Decoded or not, a body over :data:`MAX_BODY_BYTES` is refused before it fills memory.
    Use :meth:`start`, then :meth:`feed` each raw piece and :meth:`finish`; each returns a :class:`Failure`
    when the body cannot be used.
    """

    def __init__(self, declared: int | None, decoder: zlib._Decompress | None) -> None:
        self._declared = declared
        self._decoder = decoder
        self._pieces: list[bytes] = []
        self._received = 0
        self._size = 0

    @classmethod
    def start(cls, headers: Mapping[str, str], *, chunked: bool) -> BodyReader | Failure:
        """A reader for a body with these headers, or the Failure its framing or encoding already is."""
        declared = None
        if not chunked:
            value = headers.get("Content-Length")
            if value is None:
                return bad_response(
                    "a 200 with neither Content-Length nor chunked framing (a cut body would look whole)"
                )
            value = value.strip()
            if not (value.isascii() and value.isdigit()):
                return bad_response("malformed Content-Length")
            declared = int(value)
            if declared > MAX_BODY_BYTES:
                return bad_response(f"response larger than {MAX_BODY_BYTES} bytes")
        codings = [c.strip().lower() for c in headers.get("Content-Encoding", "").split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if not codings:
            return cls(declared, None)
        if codings in (["gzip"], ["x-gzip"]):
            return cls(declared, zlib.decompressobj(16 + zlib.MAX_WBITS))
        return bad_response("unsupported content encoding (only gzip is accepted)")

    def feed(self, raw: bytes) -> Failure | None:
        self._received += len(raw)
        decoder = self._decoder
        if decoder is not None:
            if decoder.eof:
                return bad_response("data after the end of the gzip stream")
            try:
                raw = decoder.decompress(raw, MAX_BODY_BYTES + 1 - self._size)
            except zlib.error:
                return bad_response("undecodable content encoding")
            if decoder.unconsumed_tail:
                raw += b"x"  # more output is waiting: over the limit either way
        self._size += len(raw)
        if self._size > MAX_BODY_BYTES or self._received > MAX_BODY_BYTES:
            return bad_response(f"response larger than {MAX_BODY_BYTES} bytes")
        self._pieces.append(raw)
        return None

    def finish(self) -> bytes | Failure:
        if self._declared is not None and self._received != self._declared:
            # urllib3 2 enforces Content-Length itself; this holds for any transport.
            return Failure(RemoteErrorCode.CONNECTION, "body cut short of its Content-Length", retryable=True)
        decoder = self._decoder
        if decoder is not None and (not decoder.eof or decoder.unused_data):
            return bad_response("data after the end of the gzip stream" if decoder.eof else "gzip stream cut short")
        return b"".join(self._pieces)


def _malformed(line_number: int, suffix_len: int) -> RemoteError:
    # Never quote the line: an attacker-controlled body must not end up verbatim in logs and error pages.
    return RemoteError(
        f"range response line {line_number} is not SUFFIX:COUNT "
        f"(a {suffix_len}-character hex suffix, a colon and a decimal count)",
        RemoteErrorCode.BAD_RESPONSE,
    )


@functools.lru_cache(maxsize=8)
def _line_pattern(suffix_len: int) -> re.Pattern[str]:
    return re.compile(rf"([0-9A-Fa-f]{{{suffix_len}}}):([0-9]{{1,{MAX_COUNT_DIGITS}}})", re.ASCII)


def parse_range_body(body: str | bytes, suffix_len: int) -> dict[str, int]:
    """Parse a range response body into ``{SUFFIX: count}``, raising :class:`RemoteError` on any bad line.

    Every line must be ``SUFFIX:COUNT``: exactly ``suffix_len`` hex characters (35 for SHA-1, 27 for NTLM;
    any case, returned upper-case), a colon and a plain decimal count. Lines may end in CRLF or LF and the
    body may end with one line break; an empty body is an empty range. Padding lines (count 0) are dropped
    wherever they appear. If a suffix appears more than once the largest count wins, so the answer never
    depends on line order and never exceeds a count the server actually sent.

    Anything else — HTML, a blank line, a wrong length, a non-hex character, a missing or negative count,
    bytes that are not ASCII — raises ``RemoteError`` with code ``BAD_RESPONSE`` naming the line number (never
    its content): a body the client cannot read must never pass for "not found".
    """
    _args.positive_int("suffix_len", suffix_len)
    if isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise _malformed(raw.count(b"\n", 0, exc.start) + 1, suffix_len) from None
    elif isinstance(body, str):
        text = body
    else:
        raise TypeError(f"a range body must be str or bytes, not {type(body).__name__}")
    if not text:
        return {}

    lines = text.split("\n")
    terminated = len(lines) - 1  # lines followed by "\n", whose "\r" (if any) belongs to the line break
    if lines[-1] == "":
        lines.pop()  # the one optional line break at the very end
    pattern = _line_pattern(suffix_len)
    counts: dict[str, int] = {}
    for index, line in enumerate(lines):
        if index < terminated and line.endswith("\r"):
            line = line[:-1]
        match = pattern.fullmatch(line)
        if match is None:
            raise _malformed(index + 1, suffix_len)
        count = int(match[2])
        if count:
            suffix = match[1].upper()
            if count > counts.get(suffix, 0):
                counts[suffix] = count
    return counts
