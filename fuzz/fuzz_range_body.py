"""Fuzz target 2: range-response bodies (what a range API, or anything pretending to be one, sends back).

The whole input is the body. For ``suffix_len`` 35 (SHA-1) and 27 (NTLM), as ``bytes`` and as ``str``
(the bytes read as Latin-1), ``credcheck._http.body.parse_range_body(body, suffix_len)`` must either raise
``credcheck.RemoteError`` or return a dict that:

- equals the answer of a character-by-character reference parser written from the function's documented
  rules (ASCII only; CRLF or LF; one optional final line break; every line ``SUFFIX:COUNT`` with a hex
  suffix of exactly ``suffix_len`` characters and 1-19 decimal digits; count 0 dropped; largest count wins;
  suffixes upper-cased) -- in particular it raises exactly when the reference rejects the body;
- holds only upper-case hex suffixes of ``suffix_len`` characters and positive int counts;
- survives a round trip: re-serialised as ``SUFFIX:COUNT`` lines joined by CRLF (HIBP's own format) and
  parsed again, it gives the same dict.

Run:  .venv/bin/python fuzz/fuzz_range_body.py fuzz/corpus/range_body -max_total_time=180
"""

from __future__ import annotations

import sys

import _common

with _common.instrument_credcheck():
    import credcheck
    from credcheck._http.body import parse_range_body

from _common import Finding

HARNESS = "range_body"
HEX = frozenset("0123456789abcdefABCDEF")
DIGITS = frozenset("0123456789")


class Rejected(Exception):
    pass


def reference(text: str, suffix_len: int) -> dict[str, int]:
    if not text.isascii():
        raise Rejected
    if text == "":
        return {}
    lines = text.split("\n")
    terminated = len(lines) - 1
    if lines[-1] == "":
        lines.pop()
    out: dict[str, int] = {}
    for index, line in enumerate(lines):
        if index < terminated and line.endswith("\r"):
            line = line[:-1]
        suffix, colon, count = line[:suffix_len], line[suffix_len : suffix_len + 1], line[suffix_len + 1 :]
        if len(suffix) != suffix_len or not set(suffix) <= HEX or colon != ":":
            raise Rejected
        if not 1 <= len(count) <= 19 or not set(count) <= DIGITS:
            raise Rejected
        value = int(count)
        if value:
            out[suffix.upper()] = max(value, out.get(suffix.upper(), 0))
    return out


def check(data: bytes, body: bytes | str, suffix_len: int, label: str) -> dict[str, int] | None:
    got = _common.guard(HARNESS, label, data, lambda: parse_range_body(body, suffix_len), (credcheck.RemoteError,))
    if isinstance(got, BaseException):
        if isinstance(got, credcheck.RemoteError) and got.code is not credcheck.RemoteErrorCode.BAD_RESPONSE:
            _common.finding(HARNESS, label, Finding(f"error-code: RemoteError with code {got.code}"), data)
        got = None
    text = body.decode("latin-1") if isinstance(body, bytes) else body
    try:
        want: dict[str, int] | None = reference(text, suffix_len)
    except Rejected:
        want = None
    if got != want:
        what = "accepted a body the rules reject" if want is None else "rejected or misread a valid body"
        _common.finding(HARNESS, label, Finding(f"vs-reference: parse_range_body {what}"), data)
        return None
    if got is None:
        return None
    for suffix, count in got.items():
        if not (
            isinstance(suffix, str)
            and len(suffix) == suffix_len
            and set(suffix) <= set("0123456789ABCDEF")
            and type(count) is int
            and count > 0
        ):
            _common.finding(HARNESS, label, Finding("result-shape: a key or count of the wrong form"), data)
            return None
    again = "\r\n".join(f"{s}:{c}" for s, c in got.items())
    for form in (again, again.encode("ascii")):
        back = _common.guard(HARNESS, label + "-roundtrip", data, lambda f=form: parse_range_body(f, suffix_len), ())
        if back != got:
            _common.finding(HARNESS, label, Finding("round-trip: re-serialised body parses differently"), data)
    return got


def test_one(data: bytes) -> None:
    for suffix_len in (35, 27):
        as_bytes = check(data, data, suffix_len, f"bytes/{suffix_len}")
        as_text = check(data, data.decode("latin-1"), suffix_len, f"str/{suffix_len}")
        if as_bytes != as_text:
            _common.finding(
                HARNESS, f"{suffix_len}", Finding("str-vs-bytes: the same body as str and bytes differs"), data
            )


def seeds() -> list[bytes]:
    s35 = "1E4C9B93F3F0682250B6CF8331B7EE68FD8"
    s27 = "C5C9683E8FE067095BA2DDC971889"[:27]
    return [
        f"{s35}:3861493\r\n{s35.lower()[:-1]}0:2\r\n{'0' * 35}:0".encode(),
        f"{s35}:1\n{'F' * 35}:0\n".encode(),
        f"{s27}:7\r\n{'A' * 27}:0\r\n".encode(),
        b"",
        b"\r\n",
        b"<html><body>Service Unavailable</body></html>",
        f"{s35}:99999999999999999999".encode(),
        f"{s35}:-1\r\n{s35}:+1".encode(),
        f"{s35}:\u0661".encode(),
    ]


if __name__ == "__main__":
    _common.main(test_one, seeds)
    sys.exit(0)
