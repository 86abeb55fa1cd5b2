"""The range protocol without I/O (credcheck._http): body parsing, body framing, and the request/retry/
deadline/redirect/cache flow, driven by hand with a fake clock. No HTTP, no sockets.

The flow is driven as any driver drives it: each test scripts what "came back" for each Request, and checks
what the flow asked for (requests, waits) and what it returned or raised.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import gzip
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import credcheck._http
import credcheck.pairs._wire
from credcheck._http.body import MAX_BODY_BYTES, BodyReader, parse_range_body
from credcheck._http.events import DEADLINE_PASSED, Failure, Reply, Request, Response, Wait
from credcheck._http.options import ClientOptions, Timeout
from credcheck._http.ranges import Fetched, RangeProtocol
from credcheck._http.retrying import Retrying
from credcheck.errors import RemoteError, RemoteErrorCode

PASSWORD_SHA1 = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8"  # SHA-1("password")
PREFIX, SUFFIX = PASSWORD_SHA1[:5], PASSWORD_SHA1[5:]
NTLM_SUFFIX = "FC525C9683E8FE067095BA2DDC971889"[5:]
OTHER_SUFFIX = "0018A45C4D1DEF81644B54AB7F969B88D65"
PASSWORD_BODY = f"{OTHER_SUFFIX}:1\r\n{SUFFIX}:123\r\n1E4C9B93F3F0682250B6CF8331B7EE68FD9:7"
BASE = "https://ranges.example"
Code = RemoteErrorCode


def bad_response(code: RemoteErrorCode) -> Callable[[RemoteError], bool]:
    return lambda exc: exc.code is code


# ----------------------------------------------------------------------------------------------------------
# parse_range_body


class TestParseRangeBody:
    def test_hibp_vector(self) -> None:
        """The suffix of SHA-1("password") maps to the count on its line."""
        assert parse_range_body(PASSWORD_BODY, 35)[SUFFIX] == 123

    @pytest.mark.parametrize(
        "separator, ending",
        [("\r\n", ""), ("\n", ""), ("\r\n", "\r\n"), ("\n", "\n")],
        ids=["crlf", "lf", "crlf-trailing", "lf-trailing"],
    )
    def test_line_endings(self, separator: str, ending: str) -> None:
        """CRLF and LF line breaks, with or without one final line break, parse the same."""
        body = separator.join([f"{OTHER_SUFFIX}:1", f"{SUFFIX}:123"]) + ending
        assert parse_range_body(body, 35) == {OTHER_SUFFIX: 1, SUFFIX: 123}

    def test_bytes_and_str_agree(self) -> None:
        """A bytes body parses like its text."""
        assert parse_range_body(PASSWORD_BODY.encode(), 35) == parse_range_body(PASSWORD_BODY, 35)

    def test_suffix_case_is_normalised(self) -> None:
        """Lower-case suffixes come back upper-case."""
        assert parse_range_body(f"{SUFFIX.lower()}:5", 35) == {SUFFIX: 5}

    def test_padding_lines_dropped_wherever_they_are(self) -> None:
        """Count-0 lines, sorted or not, anywhere in the body, are not in the result."""
        body = "\r\n".join(["F" * 35 + ":0", f"{SUFFIX}:123", "0" * 35 + ":0", f"{OTHER_SUFFIX}:1", "A" * 35 + ":0"])
        assert parse_range_body(body, 35) == {SUFFIX: 123, OTHER_SUFFIX: 1}

    def test_padding_line_for_a_real_suffix_does_not_hide_it(self) -> None:
        """A padding line repeating a real suffix (before or after it) leaves the real count."""
        assert parse_range_body(f"{SUFFIX}:0\r\n{SUFFIX}:9\r\n{SUFFIX}:0", 35) == {SUFFIX: 9}

    def test_duplicate_suffix_keeps_largest_count(self) -> None:
        """A suffix listed twice keeps its largest count, whatever the order."""
        assert parse_range_body(f"{SUFFIX}:9\r\n{SUFFIX}:4", 35) == {SUFFIX: 9}
        assert parse_range_body(f"{SUFFIX}:4\r\n{SUFFIX}:9", 35) == {SUFFIX: 9}

    @pytest.mark.parametrize("body", ["", b""], ids=["str", "bytes"])
    def test_empty_body_is_empty_range(self, body: str | bytes) -> None:
        """An empty body means no hash has this prefix."""
        assert parse_range_body(body, 35) == {}

    def test_ntlm_suffix_length(self) -> None:
        """NTLM ranges carry 27-character suffixes."""
        assert parse_range_body(f"{NTLM_SUFFIX}:4", 27) == {NTLM_SUFFIX: 4}

    def test_leading_zeros_in_count(self) -> None:
        """A count is plain decimal; leading zeros do not change it."""
        assert parse_range_body(f"{SUFFIX}:007", 35) == {SUFFIX: 7}

    @pytest.mark.parametrize(
        "body, line",
        [
            ("<!DOCTYPE html><html><body>Not here</body></html>", 1),
            (f"{SUFFIX}:1\r\n\r\n{OTHER_SUFFIX}:2", 2),
            (f"{SUFFIX}:1\n\n", 2),
            ("\n", 1),
            ("\r\n", 1),
            (f"{SUFFIX}:123\r\n{OTHER_SUFFIX[:20]}", 2),
            (f"{SUFFIX}:123\r\n{OTHER_SUFFIX}:", 2),
            (f"{SUFFIX}:123\r\n{OTHER_SUFFIX}", 2),
            (f"{SUFFIX[:-1]}:1", 1),
            (f"{SUFFIX}0:1", 1),
            (f"{PASSWORD_SHA1}:1", 1),
            ("G" * 35 + ":1", 1),
            (f"{SUFFIX}:-1", 1),
            (f"{SUFFIX}:+1", 1),
            (f"{SUFFIX}:1.0", 1),
            (f"{SUFFIX}:0x10", 1),
            (f"{SUFFIX}: 1", 1),
            (f" {SUFFIX}:1", 1),
            (f"{SUFFIX}:1 ", 1),
            (f"{SUFFIX}:1:2", 1),
            (f"{SUFFIX};1", 1),
            (f"{SUFFIX}:\u0661\u0662", 1),
            (f"{SUFFIX}:" + "9" * 40, 1),
            (f"{OTHER_SUFFIX}:1\r{SUFFIX}:2", 1),
            (f"{SUFFIX}:1\r", 1),
            ("\ufeff" + f"{SUFFIX}:1", 1),
            (f"{OTHER_SUFFIX}:1\n{SUFFIX}:2\r\r\n", 2),
            (f"{OTHER_SUFFIX}:1\r\n".encode() + b"\xff\xfe:1", 2),
            (f"{OTHER_SUFFIX}:1\r\n{SUFFIX}:2\r\n".encode() + "é".encode(), 3),
        ],
        ids=[
            "html",
            "blank-line-inside",
            "two-trailing-breaks",
            "only-lf",
            "only-crlf",
            "truncated-suffix",
            "truncated-count",
            "missing-count",
            "suffix-too-short",
            "suffix-too-long",
            "full-hash",
            "non-hex",
            "negative",
            "plus-sign",
            "decimal-point",
            "hex-count",
            "space-in-line",
            "leading-space",
            "trailing-space",
            "two-counts",
            "wrong-separator",
            "unicode-digits",
            "huge-count",
            "cr-only-breaks",
            "final-lone-cr",
            "bom",
            "double-cr",
            "invalid-utf8",
            "non-ascii-utf8",
        ],
    )
    def test_malformed_body_rejected(self, body: str | bytes, line: int) -> None:
        """Anything that is not SUFFIX:COUNT raises BAD_RESPONSE naming the line, never an answer."""
        with pytest.raises(RemoteError, match=rf"\bline {line}\b") as caught:
            parse_range_body(body, 35)
        assert caught.value.code is Code.BAD_RESPONSE

    def test_error_never_quotes_the_line(self) -> None:
        """The message names the line number but not its content."""
        line = f"{SUFFIX}:secret-token"
        with pytest.raises(RemoteError) as caught:
            parse_range_body(f"{OTHER_SUFFIX}:1\r\n{line}", 35)
        assert "secret-token" not in str(caught.value)
        assert SUFFIX not in str(caught.value)

    def test_wrong_suffix_length_for_scheme(self) -> None:
        """A SHA-1 range read as NTLM (or the reverse) is malformed, not empty."""
        with pytest.raises(RemoteError):
            parse_range_body(PASSWORD_BODY, 27)
        with pytest.raises(RemoteError):
            parse_range_body(f"{NTLM_SUFFIX}:4", 35)

    @pytest.mark.parametrize("suffix_len", [0, -1, True, 35.0, "35"])
    def test_bad_suffix_len(self, suffix_len: Any) -> None:
        """suffix_len must be a positive int."""
        with pytest.raises(ValueError, match="suffix_len"):
            parse_range_body("", suffix_len)

    def test_body_of_wrong_type(self) -> None:
        """A body that is neither str nor bytes is a TypeError."""
        with pytest.raises(TypeError):
            parse_range_body(None, 35)  # type: ignore[arg-type]

    @given(body=st.binary(), suffix_len=st.sampled_from([27, 35]))
    def test_arbitrary_bytes_parse_or_raise_remote_error(self, body: bytes, suffix_len: int) -> None:
        """On any bytes the parser returns a dict of positive counts or raises RemoteError, nothing else."""
        try:
            counts = parse_range_body(body, suffix_len)
        except RemoteError as exc:
            assert exc.code is Code.BAD_RESPONSE
        else:
            assert all(len(key) == suffix_len and value > 0 for key, value in counts.items())

    @given(body=st.text(alphabet=st.sampled_from("0123456789abcdefABCDEFG:\r\n -x")))
    def test_near_miss_text_parses_or_raises_remote_error(self, body: str) -> None:
        """Text made of the format's own characters never escapes as anything but RemoteError."""
        try:
            parse_range_body(body, 35)
        except RemoteError as exc:
            assert exc.code is Code.BAD_RESPONSE

    @given(
        counts=st.dictionaries(
            st.text(alphabet="0123456789ABCDEF", min_size=35, max_size=35),
            st.integers(min_value=1, max_value=2**63 - 1),
        )
    )
    def test_crlf_round_trip(self, counts: dict[str, int]) -> None:
        """A dict written as a HIBP CRLF body (no trailing CRLF) parses back equal."""
        body = "\r\n".join(f"{suffix}:{count}" for suffix, count in sorted(counts.items()))
        assert parse_range_body(body.encode(), 35) == counts

    @given(
        counts=st.dictionaries(
            st.text(alphabet="0123456789abcdefABCDEF", min_size=27, max_size=27),
            st.integers(min_value=1, max_value=10**12),
            min_size=1,
        ),
        padding=st.lists(st.text(alphabet="0123456789ABCDEF", min_size=27, max_size=27), max_size=20),
        data=st.data(),
    )
    def test_padding_never_changes_the_answer(
        self, counts: dict[str, int], padding: list[str], data: st.DataObject
    ) -> None:
        """Padding lines shuffled anywhere into an LF body leave the parsed counts unchanged."""
        lines = [f"{suffix}:{count}" for suffix, count in counts.items()] + [f"{s}:0" for s in padding]
        shuffled = data.draw(st.permutations(lines))
        expected: dict[str, int] = {}
        for suffix, count in counts.items():
            expected[suffix.upper()] = max(count, expected.get(suffix.upper(), 0))
        assert parse_range_body("\n".join(shuffled) + "\n", 27) == expected


# ----------------------------------------------------------------------------------------------------------
# BodyReader


def _read(headers: dict[str, str], pieces: Iterable[bytes], *, chunked: bool = False) -> bytes | Failure:
    reader = BodyReader.start(headers, chunked=chunked)
    if isinstance(reader, Failure):
        return reader
    for piece in pieces:
        failure = reader.feed(piece)
        if failure is not None:
            return failure
    return reader.finish()


class TestBodyReader:
    def test_content_length_body_read_whole(self) -> None:
        """A body of exactly its Content-Length, in any pieces, comes back whole."""
        body = PASSWORD_BODY.encode()
        assert _read({"Content-Length": str(len(body))}, [body[:7], body[7:]]) == body

    def test_unframed_body_refused(self) -> None:
        """Neither Content-Length nor chunked: refused before a byte is read (a cut body would look whole)."""
        outcome = _read({}, [b"x"])
        assert isinstance(outcome, Failure) and outcome.code is Code.BAD_RESPONSE and not outcome.retryable

    def test_chunked_body_needs_no_length(self) -> None:
        """A chunked body (its terminator checked by the transport) needs no Content-Length."""
        assert _read({}, [b"abc", b"def"], chunked=True) == b"abcdef"

    def test_short_body_is_a_retryable_connection_failure(self) -> None:
        """Fewer bytes than Content-Length: a CONNECTION failure, retried."""
        outcome = _read({"Content-Length": "100"}, [b"x" * 99])
        assert isinstance(outcome, Failure) and outcome.code is Code.CONNECTION and outcome.retryable

    @pytest.mark.parametrize("value", ["12a", "-1", "1e3", ""])
    def test_malformed_content_length_refused(self, value: str) -> None:
        """A Content-Length that is not a plain decimal is a BAD_RESPONSE."""
        assert isinstance(_read({"Content-Length": value}, []), Failure)

    def test_gzip_decoded_to_its_end(self) -> None:
        """A whole gzip stream is decoded."""
        body = gzip.compress(PASSWORD_BODY.encode())
        assert _read({"Content-Encoding": "gzip"}, [body[:5], body[5:]], chunked=True) == PASSWORD_BODY.encode()

    def test_gzip_without_its_end_refused(self) -> None:
        """A gzip stream flushed but never finished (no final block, no trailer) is a BAD_RESPONSE."""
        encoder = zlib.compressobj(wbits=31)
        body = encoder.compress(b"line\r\n") + encoder.flush(zlib.Z_SYNC_FLUSH)
        outcome = _read({"Content-Encoding": "gzip", "Content-Length": str(len(body))}, [body])
        assert isinstance(outcome, Failure) and "cut short" in outcome.detail

    def test_data_after_gzip_refused(self) -> None:
        """Bytes after the end of the gzip stream are a BAD_RESPONSE."""
        body = gzip.compress(b"a") + b"extra"
        assert isinstance(_read({"Content-Encoding": "gzip"}, [body], chunked=True), Failure)

    @pytest.mark.parametrize("encoding", ["br", "deflate", "gzip, gzip", "compress"])
    def test_other_encodings_refused(self, encoding: str) -> None:
        """Only gzip (or identity) is accepted."""
        assert isinstance(_read({"Content-Encoding": encoding}, [b"x"], chunked=True), Failure)

    def test_gzip_bomb_stops_at_the_limit(self) -> None:
        """A small gzip body that inflates past the limit is refused without inflating it all."""
        bomb = gzip.compress(b"0" * (MAX_BODY_BYTES + 10))
        outcome = _read({"Content-Encoding": "gzip"}, [bomb], chunked=True)
        assert isinstance(outcome, Failure) and "larger than" in outcome.detail


# ----------------------------------------------------------------------------------------------------------
# The flow


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def protocol(**settings: Any) -> RangeProtocol:
    """A range protocol on BASE with these options (a flow is driven by one test at a time: no lock needed)."""
    settings.setdefault("user_agent", "test")
    return RangeProtocol(BASE, ClientOptions(**settings), lock=contextlib.nullcontext())


class Script:
    """Drives a flow: answers each Request from ``replies`` (a value, or a function of the request), sleeps a
    Wait on the fake clock, and records what the flow asked for."""

    def __init__(self, clock: Clock, replies: Iterable[Reply | Callable[[Request], Reply]]) -> None:
        self.clock = clock
        self.replies: Iterator[Reply | Callable[[Request], Reply]] = iter(replies)
        self.requests: list[Request] = []
        self.waits: list[float] = []

    def run(self, proto: RangeProtocol, prefix: str = PREFIX, scheme: str = "sha1") -> dict[str, int]:
        flow = proto.get_range(prefix, scheme, self.clock)
        try:
            event = next(flow)
            while True:
                if isinstance(event, Wait):
                    self.waits.append(event.seconds)
                    self.clock.now += event.seconds
                    event = flow.send(None)
                else:
                    self.requests.append(event)
                    reply = next(self.replies)
                    event = flow.send(reply(event) if callable(reply) else reply)
        except StopIteration as done:
            result: dict[str, int] = done.value
            return result


def ok(body: str = PASSWORD_BODY, **headers: str) -> Response:
    return Response(200, headers, body.encode())


DROPPED = Failure(Code.CONNECTION, "connection failed or dropped", retryable=True)


class TestFlowRequests:
    def test_one_get_with_padding_and_gzip(self) -> None:
        """The flow asks for GET BASE/range/PREFIX with Add-Padding and Accept-Encoding: gzip, and returns the range."""
        script = Script(Clock(), [ok()])
        assert script.run(protocol())[SUFFIX] == 123
        (request,) = script.requests
        assert request.url == f"{BASE}/range/{PREFIX}"
        assert request.headers["Add-Padding"] == "true" and request.headers["Accept-Encoding"] == "gzip"

    def test_ntlm_mode_and_no_padding(self) -> None:
        """NTLM asks with ?mode=ntlm; padding off sends no Add-Padding."""
        script = Script(Clock(), [ok(f"{NTLM_SUFFIX}:4")])
        assert script.run(protocol(padding=False), "FC525", "ntlm") == {NTLM_SUFFIX: 4}
        assert script.requests[0].url.endswith("/range/FC525?mode=ntlm")
        assert "Add-Padding" not in script.requests[0].headers

    def test_bad_prefix_refused_before_any_request(self) -> None:
        """A prefix that is not 5 hex characters is a ValueError, and nothing is asked."""
        script = Script(Clock(), [])
        with pytest.raises(ValueError):
            script.run(protocol(), PASSWORD_SHA1)
        assert script.requests == []

    def test_timeouts_shrink_to_the_time_left(self) -> None:
        """Each request's timeouts never exceed what is left of the deadline."""
        clock = Clock()

        def late(request: Request) -> Reply:
            clock.now = 4.5
            return DROPPED

        script = Script(clock, [late, ok()])
        script.run(protocol(backoff_factor=0.1))
        assert script.requests[0].timeout == Timeout(3.0) and script.requests[0].remaining == 5.0
        assert (script.requests[1].timeout.connect, script.requests[1].timeout.read) == pytest.approx((0.4, 0.4))
        assert script.requests[1].deadline == 5.0


class TestFlowRetries:
    def test_backoff_doubles_between_retries(self) -> None:
        """Retryable failures are retried with backoff 0.2, 0.4, 0.8 s, then succeed."""
        script = Script(Clock(), [DROPPED, DROPPED, DROPPED, ok()])
        assert script.run(protocol(deadline=10.0))[SUFFIX] == 123
        assert script.waits == [0.2, 0.4, 0.8]

    def test_retries_exhausted(self) -> None:
        """After retries + 1 attempts the last failure is raised, saying how many attempts were made."""
        script = Script(Clock(), [DROPPED] * 3)
        with pytest.raises(RemoteError, match=r"connection failed or dropped \(after 3 attempts\)") as info:
            script.run(protocol(retries=2, deadline=10.0))
        assert info.value.code is Code.CONNECTION

    def test_retry_after_is_honoured(self) -> None:
        """A 503 with Retry-After: 2 waits 2 s, not the backoff."""
        script = Script(Clock(), [Response(503, {"Retry-After": "2"}), ok()])
        script.run(protocol(deadline=10.0))
        assert script.waits == [2.0]

    def test_wait_past_the_deadline_is_not_taken(self) -> None:
        """A Retry-After that would pass the deadline ends the lookup at once, saying so."""
        script = Script(Clock(), [Response(429, {"Retry-After": "60"})])
        with pytest.raises(RemoteError, match="would pass the 5 s deadline"):
            script.run(protocol())
        assert script.waits == []

    @pytest.mark.parametrize("status", [400, 403, 404, 204])
    def test_client_errors_are_not_retried(self, status: int) -> None:
        """A 4xx (other than 429) or an unexpected 2xx is raised after one attempt."""
        script = Script(Clock(), [Response(status, {})])
        with pytest.raises(RemoteError, match=f"HTTP {status}"):
            script.run(protocol())
        assert len(script.requests) == 1

    def test_deadline_passed_is_not_retried(self) -> None:
        """DEADLINE_PASSED from the driver is a TIMEOUT naming the deadline, with no retry."""
        script = Script(Clock(), [DEADLINE_PASSED])
        with pytest.raises(RemoteError, match="within the 5 s deadline") as info:
            script.run(protocol())
        assert info.value.code is Code.TIMEOUT and len(script.requests) == 1

    def test_failure_cause_is_chained(self) -> None:
        """The driver's exception in a Failure becomes the RemoteError's __cause__."""
        cause = OSError("reset")
        script = Script(Clock(), [Failure(Code.CONNECTION, "connection failed or dropped", False, cause)])
        with pytest.raises(RemoteError) as info:
            script.run(protocol())
        assert info.value.__cause__ is cause

    def test_malformed_body_is_not_retried(self) -> None:
        """A 200 whose body is not SUFFIX:COUNT lines is a BAD_RESPONSE after one attempt."""
        script = Script(Clock(), [ok("<html>")])
        with pytest.raises(RemoteError, match="line 1") as info:
            script.run(protocol())
        assert info.value.code is Code.BAD_RESPONSE

    def test_a_flow_refuses_a_reply_it_cannot_read(self) -> None:
        """Sending the flow anything but a Response, a Failure or DEADLINE_PASSED is a driver bug: TypeError."""
        with pytest.raises(TypeError):
            Script(Clock(), ["200 OK"]).run(protocol())  # type: ignore[list-item]


class TestFlowRedirects:
    def test_same_origin_redirect_followed(self) -> None:
        """A same-origin redirect is a value: the flow asks for its target within the same attempt."""
        script = Script(Clock(), [Response(302, {"Location": "/v2/range/5BAA6"}), ok()])
        assert script.run(protocol())[SUFFIX] == 123
        assert script.requests[1].url == f"{BASE}/v2/range/5BAA6"

    @pytest.mark.parametrize(
        "location", ["https://elsewhere.example/range/5BAA6", "http://ranges.example/range/5BAA6", ""]
    )
    def test_other_origin_refused(self, location: str) -> None:
        """A redirect to another host or scheme (or without Location) is refused, not followed."""
        script = Script(Clock(), [Response(301, {"Location": location} if location else {})])
        with pytest.raises(RemoteError, match="HTTP 301"):
            script.run(protocol())
        assert len(script.requests) == 1

    def test_redirect_loop_stops(self) -> None:
        """More than 3 redirects is an HTTP_STATUS error."""
        script = Script(Clock(), [Response(307, {"Location": "/range/5BAA6"})] * 4)
        with pytest.raises(RemoteError, match="too many redirects"):
            script.run(protocol())


class TestFlowCache:
    def test_fresh_entry_answers_without_a_request(self) -> None:
        """Within max-age, the range comes from the cache and no request is yielded."""
        clock = Clock()
        proto = protocol(cache=4)
        Script(clock, [ok(**{"Cache-Control": "max-age=60"})]).run(proto)
        clock.now = 59.0
        script = Script(clock, [])
        assert script.run(proto)[SUFFIX] == 123 and script.requests == []

    def test_stale_entry_revalidated_with_etag(self) -> None:
        """After max-age, the flow asks with If-None-Match and a 304 keeps the cached range."""
        clock = Clock()
        proto = protocol(cache=4)
        Script(clock, [ok(**{"Cache-Control": "max-age=60", "ETag": '"v1"'})]).run(proto)
        clock.now = 61.0
        script = Script(clock, [Response(304, {"Cache-Control": "max-age=60"})])
        assert script.run(proto)[SUFFIX] == 123
        assert script.requests[0].headers["If-None-Match"] == '"v1"'

    def test_unasked_304_is_an_error(self) -> None:
        """A 304 to a request that was not conditional is an HTTP_STATUS error."""
        with pytest.raises(RemoteError, match="HTTP 304"):
            Script(Clock(), [Response(304, {})]).run(protocol(cache=4))

    def test_no_store_is_not_cached(self) -> None:
        """Cache-Control: no-store means the next lookup asks again."""
        clock = Clock()
        proto = protocol(cache=4)
        Script(clock, [ok(**{"Cache-Control": "no-store"})]).run(proto)
        script = Script(clock, [ok()])
        script.run(proto)
        assert len(script.requests) == 1

    def test_returned_range_is_a_copy(self) -> None:
        """Changing a returned range does not change the cache."""
        clock = Clock()
        proto = protocol(cache=4)
        Script(clock, [ok(**{"Cache-Control": "max-age=60"})]).run(proto)[SUFFIX] = 0
        assert Script(clock, []).run(proto)[SUFFIX] == 123


def jittered(proto: RangeProtocol, uniform: float) -> RangeProtocol:
    """``proto`` retrying with jitter whose random source always gives ``uniform``."""
    proto.retrying = Retrying(dataclasses.replace(proto.options, jitter=True), uniform=lambda: uniform)
    return proto


class TestFlowRetryOptions:
    """The options the mirror sets on the one retry mechanism (the clients keep the defaults)."""

    def test_attempt_deadline_is_retried_within_the_call(self) -> None:
        """An attempt that runs out of its own deadline is a TIMEOUT retried while the call's deadline is ahead."""
        script = Script(Clock(), [DEADLINE_PASSED, ok()])
        proto = protocol(deadline=None, attempt_deadline=2.0, retries=1, backoff_factor=0.5)
        assert script.run(proto)[SUFFIX] == 123
        assert [r.remaining for r in script.requests] == [2.0, 2.0] and script.waits == [0.5]
        assert script.requests[0].timeout == Timeout(2.0)

    def test_attempt_deadline_names_itself_when_retries_run_out(self) -> None:
        """The error of the last attempt that ran out of time names the per-attempt deadline."""
        script = Script(Clock(), [DEADLINE_PASSED] * 2)
        proto = protocol(deadline=None, attempt_deadline=2.0, retries=1, backoff_factor=0.5)
        with pytest.raises(RemoteError, match=r"within the 2 s deadline of an attempt \(after 2 attempts\)") as info:
            script.run(proto)
        assert info.value.code is Code.TIMEOUT

    def test_backoff_capped_and_jittered(self) -> None:
        """The backoff doubles up to max_backoff, each wait scaled by 0.5 + jitter/2."""
        script = Script(Clock(), [DROPPED] * 4 + [ok()])
        proto = jittered(protocol(deadline=1000.0, retries=4, backoff_factor=1.0, max_backoff=3.0), 0.5)
        script.run(proto)
        assert script.waits == [0.75, 1.5, 2.25, 2.25]

    def test_retry_after_capped_and_marked_as_asked(self) -> None:
        """A Retry-After beyond max_retry_after is cut to it, and the Wait says the server asked for it."""
        clock = Clock()
        proto = jittered(protocol(deadline=1000.0, retries=2, backoff_factor=1.0, max_retry_after=600.0), 0.0)
        flow = proto.get_range(PREFIX, "sha1", clock)
        next(flow)
        wait = flow.send(Response(429, {"Retry-After": "86400"}))
        assert wait == Wait(600.0, asked=True)
        next(flow)
        assert flow.send(DROPPED) == Wait(1.0, asked=False)  # 1.0 * 2**1, scaled by 0.5 + 0 / 2


def parse_rows(body: bytes) -> list[bytes]:
    if b"bad" in body:
        raise RemoteError("line 1 is not SUFFIX:COUNT", Code.BAD_RESPONSE)
    return body.split(b"\r\n")


def fetch(script: Script, proto: RangeProtocol, etag: str | None = None) -> Fetched[list[bytes]]:
    """Drive the mirror's flow as Script drives a lookup."""
    flow = proto.fetch(PREFIX, "sha1", script.clock, parse_rows, etag=etag)
    try:
        event = next(flow)
        while True:
            if isinstance(event, Wait):
                script.waits.append(event.seconds)
                event = flow.send(None)
            else:
                script.requests.append(event)
                reply = next(script.replies)
                event = flow.send(reply(event) if callable(reply) else reply)
    except StopIteration as done:
        result: Fetched[list[bytes]] = done.value
        return result


class TestFetchFlow:
    """RangeProtocol.fetch: a range for a copy kept elsewhere (the mirror), on the same rules as a lookup."""

    def test_body_parsed_with_its_etag(self) -> None:
        """A 200 returns what ``parse`` made of the decoded body, with the response's ETag; no padding asked."""
        script = Script(Clock(), [ok("a\r\nb", ETag='"v1"')])
        assert fetch(script, protocol(padding=False)) == Fetched([b"a", b"b"], '"v1"')
        assert "If-None-Match" not in script.requests[0].headers
        assert "Add-Padding" not in script.requests[0].headers

    def test_not_modified_keeps_the_stored_copy(self) -> None:
        """With a stored ETag the request is conditional, and a 304 returns no value and the (refreshed) ETag."""
        script = Script(Clock(), [Response(304, {}), Response(304, {"ETag": '"v2"'})])
        assert fetch(script, protocol(), etag='"v1"') == Fetched(None, '"v1"')
        assert fetch(script, protocol(), etag='"v1"') == Fetched(None, '"v2"')
        assert script.requests[0].headers["If-None-Match"] == '"v1"'

    def test_unasked_304_is_an_error(self) -> None:
        """A 304 to an unconditional request is an HTTP_STATUS error, never an empty range."""
        with pytest.raises(RemoteError, match="HTTP 304"):
            fetch(Script(Clock(), [Response(304, {})]), protocol())

    def test_a_body_parse_refuses_is_not_retried(self) -> None:
        """A RemoteError from ``parse`` is a BAD_RESPONSE naming the range, after one attempt."""
        script = Script(Clock(), [ok("bad")])
        with pytest.raises(RemoteError, match=f"range {PREFIX}: line 1") as info:
            fetch(script, protocol())
        assert info.value.code is Code.BAD_RESPONSE and len(script.requests) == 1

    def test_retries_and_redirects_as_a_lookup(self) -> None:
        """The same retries and same-origin redirects as get_range."""
        script = Script(Clock(), [DROPPED, Response(302, {"Location": "/v2/range/5BAA6"}), ok("a")])
        assert fetch(script, protocol(deadline=10.0)).value == [b"a"]
        assert script.requests[2].url == f"{BASE}/v2/range/5BAA6" and script.waits == [0.2]


class TestBaseURL:
    @pytest.mark.parametrize("url", ["http://h:99999", "http://h:port"])
    def test_invalid_port_refused(self, url: str) -> None:
        """A base URL whose port is not a port is a ValueError when the client is made."""
        with pytest.raises(ValueError, match="invalid port"):
            RangeProtocol(url, ClientOptions(), lock=contextlib.nullcontext())


PROTOCOL_MODULES = [*sorted(Path(credcheck._http.__file__).parent.glob("*.py")), Path(credcheck.pairs._wire.__file__)]
DRIVERS_ONLY = frozenset({"threading", "socket", "time", "asyncio", "anyio", "requests", "httpx", "urllib3", "http"})


class TestWithoutIO:
    @staticmethod
    def imported(path: Path) -> set[str]:
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
        return names

    @pytest.mark.parametrize("path", PROTOCOL_MODULES, ids=lambda path: path.name)
    def test_no_thread_socket_or_clock(self, path: Path) -> None:
        """No module of the protocol imports a thread, a socket, a clock or an HTTP library: the drivers do."""
        assert not self.imported(path) & DRIVERS_ONLY
