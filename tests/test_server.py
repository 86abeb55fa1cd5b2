"""Tests for credcheck.server: the HIBP-compatible range API, in process (WSGI) and as a running server."""

from __future__ import annotations

import email.utils
import errno
import gzip
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import credcheck
from credcheck.server import RangeApp, Telemetry, make_app
from credcheck.store import RangeStore

from .helpers import (
    CLEAN,
    CROWDED,
    CROWDED_SUFFIXES,
    LEAKED,
    SERVE_SCRIPT,
    Reply,
    RunningServer,
    call,
    corpus,
    running_server,
    sha1,
)

# ----------------------------------------------------------------------------------------------------
# The corpus (tests/helpers.py) and the bodies it must give.

EMPTY_PREFIX = "00000"  # no hash in the corpus starts with it (checked in a fixture)
MAX_AGE = "2678400"


def expected_body(scheme: str, prefix: str) -> bytes:
    """The HIBP body for ``prefix`` computed from the corpus, independently of the store."""
    prefix = prefix.upper()
    lines = sorted(f"{h[5:]}:{n}" for h, n in corpus(scheme).items() if h.startswith(prefix))
    return "\r\n".join(lines).encode()


@pytest.fixture(scope="module")
def store_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A SHA-1 and an NTLM store built from the corpus (SHA-1 input given unsorted and partly lower case)."""
    root = tmp_path_factory.mktemp("stores")
    paths = {}
    for scheme in ("sha1", "ntlm"):
        assert not any(h.startswith(EMPTY_PREFIX) for h in corpus(scheme))
        lines = [f"{h.lower() if h.startswith(CROWDED) else h}:{n}" for h, n in corpus(scheme).items()]
        source = root / f"{scheme}.txt"
        source.write_text("\n".join(reversed(lines)) + "\n")
        paths[scheme] = root / f"{scheme}.store"
        credcheck.build([source], store=paths[scheme], scheme=scheme)
    return paths


@pytest.fixture(scope="module")
def stores(store_paths: dict[str, Path]) -> Iterator[dict[str, RangeStore]]:
    opened = {scheme: RangeStore(path) for scheme, path in store_paths.items()}
    yield opened
    for store in opened.values():
        store.close()


@pytest.fixture(scope="module")
def app(stores: dict[str, RangeStore]) -> RangeApp:
    return make_app([stores["sha1"], stores["ntlm"]])


# ----------------------------------------------------------------------------------------------------
# A tiny WSGI client: every call also goes through wsgiref's validator (PEP 3333 conformance).


def padding_lines(reply: Reply, real: bytes) -> list[bytes]:
    """The lines a padded reply appended after the real body (which it must start with)."""
    if not real:
        return reply.lines
    assert reply.body.startswith(real + b"\r\n")
    return reply.body[len(real) + 2 :].split(b"\r\n")


LEAKED_SHA1_PREFIXES = sorted({sha1(p)[:5] for p in LEAKED})
SCHEMES = pytest.mark.parametrize("scheme", ["sha1", "ntlm"])


def mode_query(scheme: str) -> str:
    return "mode=ntlm" if scheme == "ntlm" else ""


# ----------------------------------------------------------------------------------------------------
# The wire format


class TestRangeBody:
    @pytest.mark.parametrize("prefix", [*LEAKED_SHA1_PREFIXES, CROWDED])
    def test_body_is_the_hibp_body_byte_for_byte(self, app: RangeApp, prefix: str) -> None:
        """A range body is the prefix's SUFFIX:COUNT lines, sorted, CRLF-joined, nothing after the last."""
        reply = call(app, f"/range/{prefix}")
        assert reply.status == 200
        assert reply.body == expected_body("sha1", prefix)

    def test_lines_are_joined_by_crlf_with_none_after_the_last(self, app: RangeApp) -> None:
        """Several lines are separated by exactly CRLF: no bare LF, no trailing line break, no blank line."""
        body = call(app, f"/range/{CROWDED}").body
        assert body.count(b"\r\n") == len(CROWDED_SUFFIXES) - 1
        assert b"\n" not in body.replace(b"\r\n", b"")
        assert not body.endswith((b"\r\n", b"\n")) and b"\r\n\r\n" not in body

    def test_suffixes_are_upper_case_and_sorted(self, app: RangeApp) -> None:
        """Suffixes given in lower case come back upper case, in ascending order."""
        lines = call(app, f"/range/{CROWDED}").lines
        assert lines == sorted(lines)
        assert all(line == line.upper() and len(line.split(b":")[0]) == 35 for line in lines)

    def test_counts_are_plain_decimals(self, app: RangeApp) -> None:
        """Counts are plain decimal, up to the largest the store holds."""
        counts = [int(line.split(b":")[1]) for line in call(app, f"/range/{CROWDED}").lines]
        assert sorted(counts) == sorted(CROWDED_SUFFIXES.values())

    @pytest.mark.parametrize("spelling", ["abcde", "ABCDE", "aBcDe"])
    def test_prefix_is_case_insensitive(self, app: RangeApp, spelling: str) -> None:
        """Any case of the prefix gives the same body and the same ETag."""
        reply, upper = call(app, f"/range/{spelling}"), call(app, f"/range/{CROWDED}")
        assert (reply.body, reply.headers["etag"]) == (upper.body, upper.headers["etag"])

    def test_empty_prefix_is_200_with_an_empty_body(self, app: RangeApp) -> None:
        """A prefix no hash has answers 200 with an empty body, not 404."""
        reply = call(app, f"/range/{EMPTY_PREFIX}")
        assert (reply.status, reply.body, reply.headers["content-length"]) == (200, b"", "0")

    def test_content_type_is_utf8_text(self, app: RangeApp) -> None:
        """Range bodies are text/plain; charset=utf-8 with a Content-Length."""
        reply = call(app, f"/range/{CROWDED}")
        assert reply.headers["content-type"] == "text/plain; charset=utf-8"
        assert reply.headers["content-length"] == str(len(reply.body))

    def test_ntlm_mode_serves_the_ntlm_store(self, app: RangeApp) -> None:
        """?mode=ntlm answers from the NTLM store, with 27-character suffixes."""
        prefix = credcheck.ntlm_hex("Passw0rd!")[:5]
        reply = call(app, f"/range/{prefix}", query="mode=ntlm")
        assert reply.body == expected_body("ntlm", prefix)
        assert b"FC525C9683E8FE067095BA2DDC971889"[5:] + b":2024" in reply.lines

    @pytest.mark.parametrize("query", ["", "mode=NTLM", "mode=sha1", "mode=", "mode=ntlm2", "other=ntlm", "mode"])
    def test_any_other_mode_means_sha1(self, app: RangeApp, query: str) -> None:
        """Only the exact value mode=ntlm selects NTLM; anything else is SHA-1."""
        prefix = sha1("password")[:5]
        assert call(app, f"/range/{prefix}", query=query).body == expected_body("sha1", prefix)

    def test_first_mode_parameter_counts(self, app: RangeApp) -> None:
        """With several mode parameters the first decides, as HIBP's URLSearchParams.get does."""
        prefix = credcheck.ntlm_hex("password")[:5]
        assert call(app, f"/range/{prefix}", query="mode=ntlm&mode=sha1").body == expected_body("ntlm", prefix)

    @pytest.mark.parametrize(("present", "query"), [("sha1", "mode=ntlm"), ("ntlm", "")])
    def test_missing_scheme_is_404_with_a_reason(self, stores: dict[str, RangeStore], present: str, query: str) -> None:
        """Asking for a scheme the server has no store for is a 404 with a short plain-text reason."""
        reply = call(make_app([stores[present]]), f"/range/{CROWDED}", query=query)
        assert reply.status == 404
        assert reply.headers["content-type"].startswith("text/plain")
        assert b"store" in reply.body and len(reply.body) < 100

    @pytest.mark.parametrize("cache_size", [0, 1, 1024])
    def test_answers_do_not_depend_on_the_cache(self, stores: dict[str, RangeStore], cache_size: int) -> None:
        """Bodies are the same with no cache, a one-entry cache (constant eviction) and a large one."""
        small = make_app([stores["sha1"]], cache_size=cache_size)
        for prefix in [*LEAKED_SHA1_PREFIXES, CROWDED] * 2:
            assert call(small, f"/range/{prefix}").body == expected_body("sha1", prefix)


class TestPadding:
    @pytest.mark.parametrize("value", ["true", "TRUE", "True", " true "])
    def test_padding_appended_after_the_real_lines(self, app: RangeApp, value: str) -> None:
        """Add-Padding: true (any case) keeps the real lines unchanged and first, then appends padding."""
        real = expected_body("sha1", CROWDED)
        reply = call(app, f"/range/{CROWDED}", headers={"Add-Padding": value})
        assert reply.body.startswith(real + b"\r\n")
        assert padding_lines(reply, real)

    @SCHEMES
    def test_padding_lines_are_random_suffixes_with_count_zero(self, app: RangeApp, scheme: str) -> None:
        """Each padding line is an upper-case hex suffix of the scheme's length and the count 0."""
        prefix = CROWDED if scheme == "sha1" else credcheck.ntlm_hex("password")[:5]
        real = expected_body(scheme, prefix)
        reply = call(app, f"/range/{prefix}", headers={"Add-Padding": "true"}, query=mode_query(scheme))
        width = 35 if scheme == "sha1" else 27
        pattern = re.compile(rb"[0-9A-F]{%d}:0" % width)
        assert all(pattern.fullmatch(line) for line in padding_lines(reply, real))

    def test_padding_line_count_is_hibps_10_to_209(self, app: RangeApp) -> None:
        """Each padded response adds 10 to 209 lines, and the number varies between responses."""
        real = expected_body("sha1", CROWDED)
        counts = [
            len(padding_lines(call(app, f"/range/{CROWDED}", headers={"Add-Padding": "true"}), real)) for _ in range(60)
        ]
        assert all(10 <= count <= 209 for count in counts)
        assert len(set(counts)) > 5

    def test_padding_differs_between_responses(self, app: RangeApp) -> None:
        """Padding is drawn afresh for each response: it is never a cached body."""
        first, second = (call(app, f"/range/{CROWDED}", headers={"Add-Padding": "true"}).body for _ in range(2))
        assert first != second

    @pytest.mark.parametrize("value", ["false", "1", "yes", "", "true,true", "truee"])
    def test_other_header_values_do_not_pad(self, app: RangeApp, value: str) -> None:
        """Only the value 'true' (any case) pads."""
        reply = call(app, f"/range/{CROWDED}", headers={"Add-Padding": value})
        assert reply.body == expected_body("sha1", CROWDED)

    def test_no_padding_without_the_header(self, app: RangeApp) -> None:
        """Without Add-Padding the body is exactly the real lines, even right after a padded response."""
        call(app, f"/range/{CROWDED}", headers={"Add-Padding": "true"})
        assert call(app, f"/range/{CROWDED}").body == expected_body("sha1", CROWDED)

    def test_padded_empty_range_has_no_leading_blank_line(self, app: RangeApp) -> None:
        """An empty range padded is only padding lines: it does not start with CRLF."""
        reply = call(app, f"/range/{EMPTY_PREFIX}", headers={"Add-Padding": "true"})
        assert not reply.body.startswith(b"\r\n")
        assert reply.lines and all(line.endswith(b":0") for line in reply.lines)

    def test_padding_never_repeats_a_real_suffix(self, app: RangeApp, monkeypatch: pytest.MonkeyPatch) -> None:
        """A random padding suffix that equals a real hash's is drawn again (forced here with a rigged RNG)."""
        real_digest = bytes.fromhex(CROWDED + "F" * 35)
        rigged = iter([real_digest * 10])  # the first draw: ten copies of a real hash

        def token_bytes(size: int) -> bytes:
            return next(rigged, None) or os.urandom(size)

        monkeypatch.setattr("credcheck.server._app.secrets.randbelow", lambda n: 0)  # 10 lines
        monkeypatch.setattr("credcheck._padding.secrets.token_bytes", token_bytes)
        real = expected_body("sha1", CROWDED)
        padding = padding_lines(call(app, f"/range/{CROWDED}", headers={"Add-Padding": "true"}), real)
        real_suffixes = {line.split(b":")[0] for line in real.split(b"\r\n")}
        assert len(padding) == 10
        assert not real_suffixes & {line.split(b":")[0] for line in padding}

    def test_padded_response_is_private_with_a_weak_etag(self, app: RangeApp) -> None:
        """A padded body changes every time: Cache-Control private (never a shared object), weak ETag."""
        reply = call(app, f"/range/{CROWDED}", headers={"Add-Padding": "true"})
        assert reply.headers["cache-control"] == f"private, max-age={MAX_AGE}"
        assert reply.headers["etag"].startswith('W/"')
        assert "Add-Padding" in reply.headers["vary"]


class TestCaching:
    def test_cache_headers_as_hibp(self, app: RangeApp, stores: dict[str, RangeStore]) -> None:
        """Unpadded ranges are public for 31 days, with a strong ETag and the build time as Last-Modified."""
        headers = call(app, f"/range/{CROWDED}").headers
        assert headers["cache-control"] == f"public, max-age={MAX_AGE}"
        assert re.fullmatch(r'"[^"]+"', headers["etag"])
        assert headers["last-modified"] == email.utils.formatdate(stores["sha1"].created, usegmt=True)

    def test_vary_names_encoding_and_padding(self, app: RangeApp) -> None:
        """Range responses vary on Accept-Encoding and Add-Padding, so shared caches keep them apart."""
        vary = {v.strip() for v in call(app, f"/range/{CROWDED}").headers["vary"].split(",")}
        assert vary == {"Accept-Encoding", "Add-Padding"}

    @pytest.mark.parametrize(
        "request_headers",
        [{}, {"Add-Padding": "true"}, {"Accept-Encoding": "gzip"}, {"Add-Padding": "true", "Accept-Encoding": "gzip"}],
    )
    def test_if_none_match_gives_304_without_a_body(self, app: RangeApp, request_headers: dict[str, str]) -> None:
        """A request carrying the ETag it was given gets 304 with no body and no Content-Type."""
        etag = call(app, f"/range/{CROWDED}", headers=request_headers).headers["etag"]
        reply = call(app, f"/range/{CROWDED}", headers={**request_headers, "If-None-Match": etag})
        assert (reply.status, reply.body) == (304, b"")
        assert "content-type" not in reply.headers
        assert reply.headers["etag"] == etag

    @pytest.mark.parametrize("form", ["{tag}", "W/{tag}", '"other", {tag}', "*"])
    def test_if_none_match_forms(self, app: RangeApp, form: str) -> None:
        """If-None-Match matches weakly, in a list, and as '*'."""
        tag = call(app, f"/range/{CROWDED}").headers["etag"]
        assert call(app, f"/range/{CROWDED}", headers={"If-None-Match": form.format(tag=tag)}).status == 304

    def test_stale_etag_gives_200(self, app: RangeApp) -> None:
        """An ETag of another prefix does not match."""
        other = call(app, f"/range/{EMPTY_PREFIX}").headers["etag"]
        reply = call(app, f"/range/{CROWDED}", headers={"If-None-Match": other})
        assert (reply.status, reply.body) == (200, expected_body("sha1", CROWDED))

    def test_etag_differs_per_prefix(self, app: RangeApp) -> None:
        """Every prefix has its own ETag."""
        tags = {call(app, f"/range/{prefix}").headers["etag"] for prefix in [*LEAKED_SHA1_PREFIXES, CROWDED]}
        assert len(tags) == len(LEAKED_SHA1_PREFIXES) + 1

    def test_etag_follows_the_ranges_own_rows(self, tmp_path: Path) -> None:
        """A rebuild that adds one hash changes the ETag of its range only: the others revalidate with a 304."""
        first, second = tmp_path / "a.store", tmp_path / "b.store"
        old = sorted(f"{sha1(p)}:2" for p in ("alpha", "beta", "gamma"))
        (tmp_path / "a.txt").write_text("\n".join(old) + "\n")
        (tmp_path / "b.txt").write_text("\n".join(sorted([*old, f"{sha1('delta')}:1"])) + "\n")
        credcheck.build([tmp_path / "a.txt"], store=first)
        credcheck.build([tmp_path / "b.txt"], store=second)
        before, after = make_app([first]), make_app([second])
        try:
            for password in ("alpha", "beta", "gamma", "delta"):
                prefix = sha1(password)[:5]
                tag = call(before, f"/range/{prefix}").headers["etag"]
                reply = call(after, f"/range/{prefix}", headers={"If-None-Match": tag})
                assert reply.status == (200 if password == "delta" else 304)
        finally:
            before.close()
            after.close()

    def test_range_tag_is_the_rows_digest_computed_once(self, app: RangeApp, monkeypatch: pytest.MonkeyPatch) -> None:
        """The ETag's core is xxh3-64 of the range's rows and counts; a process hashes a range once, then reuses it."""
        import xxhash

        store = app.stores["sha1"]
        suffixes, counts = store.rows_of(int(CROWDED, 16))
        digest = xxhash.xxh3_64(suffixes.data)
        digest.update(counts.data)
        first = call(app, f"/range/{CROWDED}").headers["etag"]
        assert first == f'"{digest.hexdigest()}-{CROWDED}"'

        def no_rows(prefix: int) -> None:
            raise AssertionError("the range's rows were hashed again")

        monkeypatch.setattr(store, "rows_of", no_rows)
        assert call(app, f"/range/{CROWDED}").headers["etag"] == first
        assert call(app, f"/range/{CROWDED}", headers={"If-None-Match": first}).status == 304

    def test_etag_differs_per_mode(self, app: RangeApp) -> None:
        """The same prefix has different ETags in SHA-1 and NTLM mode."""
        sha, ntlm = (call(app, f"/range/{CROWDED}", query=q).headers["etag"] for q in ("", "mode=ntlm"))
        assert sha != ntlm

    def test_etag_differs_per_encoding(self, app: RangeApp) -> None:
        """The gzip representation has its own strong ETag."""
        plain = call(app, f"/range/{CROWDED}").headers["etag"]
        zipped = call(app, f"/range/{CROWDED}", headers={"Accept-Encoding": "gzip"}).headers["etag"]
        assert plain != zipped

    def test_etag_is_the_same_in_every_process(self, store_paths: dict[str, Path], app: RangeApp) -> None:
        """Two apps over the same store file (two workers) give the same ETag and gzip bytes."""
        other = make_app([store_paths["sha1"]])
        try:
            for request_headers in ({}, {"Accept-Encoding": "gzip"}):
                mine = call(app, f"/range/{CROWDED}", headers=request_headers)
                theirs = call(other, f"/range/{CROWDED}", headers=request_headers)
                assert (mine.headers["etag"], mine.body) == (theirs.headers["etag"], theirs.body)
        finally:
            other.close()

    @pytest.mark.parametrize(("offset", "status"), [(0, 304), (3600, 304), (-1, 200)])
    def test_if_modified_since(self, app: RangeApp, stores: dict[str, RangeStore], offset: int, status: int) -> None:
        """If-Modified-Since at or after the build time gives 304, before it 200."""
        since = email.utils.formatdate(stores["sha1"].created + offset, usegmt=True)
        assert call(app, f"/range/{CROWDED}", headers={"If-Modified-Since": since}).status == status

    def test_if_none_match_wins_over_if_modified_since(self, app: RangeApp, stores: dict[str, RangeStore]) -> None:
        """A non-matching If-None-Match gives 200 whatever If-Modified-Since says (RFC 9110)."""
        since = email.utils.formatdate(stores["sha1"].created, usegmt=True)
        headers = {"If-None-Match": '"nope"', "If-Modified-Since": since}
        assert call(app, f"/range/{CROWDED}", headers=headers).status == 200


class TestGzip:
    @pytest.mark.parametrize("accept", ["gzip", "gzip, deflate, br", "*", "deflate, gzip;q=0.5", "GZIP", "x-gzip"])
    @pytest.mark.parametrize("prefix", [CROWDED, EMPTY_PREFIX])
    def test_gzip_round_trip(self, app: RangeApp, accept: str, prefix: str) -> None:
        """Whenever gzip is acceptable the body is gzipped, whatever its size, and inflates to the real body."""
        reply = call(app, f"/range/{prefix}", headers={"Accept-Encoding": accept})
        assert reply.headers["content-encoding"] == "gzip"
        assert reply.headers["content-length"] == str(len(reply.body))
        assert gzip.decompress(reply.body) == expected_body("sha1", prefix)

    @pytest.mark.parametrize("accept", ["", "identity", "gzip;q=0", "br", "*;q=0", "gzip;q=0, *", "gzip;q=2"])
    def test_no_gzip_unless_accepted(self, app: RangeApp, accept: str) -> None:
        """Without an acceptable gzip the body is sent as is, with no Content-Encoding."""
        reply = call(app, f"/range/{CROWDED}", headers={"Accept-Encoding": accept})
        assert "content-encoding" not in reply.headers
        assert reply.body == expected_body("sha1", CROWDED)

    def test_gzip_of_a_padded_body(self, app: RangeApp) -> None:
        """A padded gzip body is one valid gzip member holding the real lines, then the padding."""
        reply = call(app, f"/range/{CROWDED}", headers={"Accept-Encoding": "gzip", "Add-Padding": "true"})
        inflated = gzip.decompress(reply.body)
        real = expected_body("sha1", CROWDED)
        assert inflated.startswith(real + b"\r\n")
        assert all(line.endswith(b":0") for line in inflated[len(real) + 2 :].split(b"\r\n"))

    def test_gzip_bytes_are_stable(self, app: RangeApp) -> None:
        """Repeated gzip responses are byte-identical (a strong ETag promises exactly that)."""
        bodies = {call(app, f"/range/{CROWDED}", headers={"Accept-Encoding": "gzip"}).body for _ in range(3)}
        assert len(bodies) == 1


class TestCors:
    @pytest.mark.parametrize("path", [f"/range/{CROWDED}", "/range/XYZ", "/nowhere"])
    def test_any_origin_may_read(self, app: RangeApp, path: str) -> None:
        """Every response, errors included, allows any origin."""
        assert call(app, path).headers["access-control-allow-origin"] == "*"

    @pytest.mark.parametrize(
        "headers",
        [{}, {"Add-Padding": "true"}, {"Accept-Encoding": "gzip"}, {"If-None-Match": "*"}],
        ids=["plain", "padded", "gzip", "304"],
    )
    def test_range_responses_expose_the_etag(self, app: RangeApp, headers: dict[str, str]) -> None:
        """Range responses (padded and 304 too) let browser scripts read the ETag, to revalidate."""
        reply = call(app, f"/range/{CROWDED}", headers=headers)
        assert reply.headers["access-control-expose-headers"] == "ETag, X-Credcheck-Corpus"
        assert "etag" in reply.headers

    def test_options_preflight(self, app: RangeApp) -> None:
        """OPTIONS answers 204 allowing GET/HEAD/OPTIONS and the Add-Padding and If-None-Match headers."""
        reply = call(
            app,
            f"/range/{CROWDED}",
            "OPTIONS",
            headers={"Origin": "https://example.org", "Access-Control-Request-Headers": "add-padding"},
        )
        assert (reply.status, reply.body) == (204, b"")
        assert reply.headers["access-control-allow-origin"] == "*"
        assert reply.headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
        assert reply.headers["access-control-allow-headers"] == "Add-Padding, If-None-Match"
        assert "content-length" not in reply.headers


class TestErrors:
    @pytest.mark.parametrize(
        "prefix",
        ["", "ABCD", "ABCDEF", "GHIJK", "ABCD ", "ABCDE/", "ABCDE/x", "ÀBCDE", "+1234", "0x123", "ABC\x00E", "١٢٣٤٥"],
    )
    def test_bad_prefix_is_400_with_a_reason(self, app: RangeApp, prefix: str) -> None:
        """A prefix that is not exactly 5 hex characters is a 400 with a short plain-text reason."""
        reply = call(app, f"/range/{prefix}")
        assert reply.status == 400
        assert reply.headers["content-type"].startswith("text/plain")
        assert reply.body.startswith(b"The hash prefix was not") and len(reply.body) < 100

    @pytest.mark.parametrize(
        "path", ["/range", "/ranges/ABCDE", "/RANGE/ABCDE", "/api/v3/range/ABCDE", "/favicon.ico", "//range/ABCDE"]
    )
    def test_unknown_path_is_404(self, app: RangeApp, path: str) -> None:
        """Paths other than /range/{P}, / and /health are 404."""
        reply = call(app, path)
        assert reply.status == 404 and reply.body

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "BREW"])
    @pytest.mark.parametrize("path", [f"/range/{CROWDED}", "/health"])
    def test_other_methods_are_405_with_allow(self, app: RangeApp, method: str, path: str) -> None:
        """Methods other than GET, HEAD and OPTIONS are 405 with an Allow header."""
        reply = call(app, path, method)
        assert reply.status == 405
        assert reply.headers["allow"] == "GET, HEAD, OPTIONS"

    @pytest.mark.parametrize("request_headers", [{}, {"Accept-Encoding": "gzip"}, {"Add-Padding": "true"}])
    @pytest.mark.parametrize("path", [f"/range/{CROWDED}", f"/range/{EMPTY_PREFIX}", "/range/XYZ", "/health"])
    def test_head_has_the_headers_and_no_body(self, app: RangeApp, request_headers: dict[str, str], path: str) -> None:
        """HEAD answers with GET's status and headers (Content-Length included) and an empty body."""
        head = call(app, path, "HEAD", headers=request_headers)
        get = call(app, path, headers=request_headers)
        assert head.body == b""
        assert head.status == get.status
        assert head.headers.keys() == get.headers.keys()
        if "add-padding" not in {k.lower() for k in request_headers}:
            assert head.headers == get.headers


class TestStatus:
    @pytest.mark.parametrize("path", ["/", "/health"])
    def test_status_document(self, app: RangeApp, stores: dict[str, RangeStore], path: str) -> None:
        """/ and /health answer a small JSON status: schemes and row counts, no paths."""
        reply = call(app, path)
        assert reply.status == 200 and reply.headers["content-type"] == "application/json"
        state = json.loads(reply.body)
        assert state["schemes"] == ["ntlm", "sha1"]
        assert state["stores"]["sha1"]["rows"] == stores["sha1"].rows
        assert b"/" not in reply.body


class TestPrivacy:
    def test_app_logs_no_prefix_header_or_query(
        self, stores: dict[str, RangeStore], caplog: pytest.LogCaptureFixture
    ) -> None:
        """At the most verbose level, its access log on, the app logs one record of a range request, naming its
        route's template: nothing of the prefix, the headers or the query string."""
        app = make_app([stores["sha1"]], telemetry=Telemetry(metrics=True))
        caplog.set_level("DEBUG", logger="credcheck")
        call(app, "/range/abcde", headers={"Add-Padding": "true", "User-Agent": "secret-agent"}, query="mode=x&t=s3")
        assert caplog.messages == ["GET /range/{prefix} 200"]
        logged = repr([vars(record) for record in caplog.records]).lower()
        assert not any(secret in logged for secret in ("abcde", "secret-agent", "s3", "mode=x"))

    def test_repr_names_schemes_and_rows_only(self, app: RangeApp, stores: dict[str, RangeStore]) -> None:
        """The app's repr shows its schemes and row counts, not file paths."""
        assert repr(app) == f"<RangeApp sha1: {stores['sha1'].rows} rows, ntlm: {stores['ntlm'].rows} rows>"


class TestMakeApp:
    def test_two_stores_of_one_scheme_rejected(self, stores: dict[str, RangeStore]) -> None:
        """At most one store per scheme: two SHA-1 stores are a ValueError naming the scheme."""
        with pytest.raises(ValueError, match="sha1"):
            make_app([stores["sha1"], stores["sha1"]])

    def test_no_store_rejected(self) -> None:
        """An empty list of stores is a ValueError."""
        with pytest.raises(ValueError, match="at least one"):
            make_app([])

    @pytest.mark.parametrize("cache_size", [-1, 1.5, True, "8"])
    def test_bad_cache_size_rejected(self, stores: dict[str, RangeStore], cache_size: Any) -> None:
        """cache_size must be a non-negative integer."""
        with pytest.raises(ValueError, match="cache_size"):
            make_app([stores["sha1"]], cache_size=cache_size)

    def test_bad_store_type_rejected(self) -> None:
        """Something that is neither a store nor a path is a TypeError."""
        with pytest.raises(TypeError, match="RangeStore or a path"):
            make_app([42])  # type: ignore[list-item]

    @pytest.mark.parametrize("as_str", [True, False])
    def test_paths_are_opened_and_closed(self, store_paths: dict[str, Path], as_str: bool) -> None:
        """Paths (str or PathLike, alone or in a list) are opened by the app and closed by close()."""
        path = str(store_paths["sha1"]) if as_str else store_paths["sha1"]
        single = make_app(path)
        assert call(single, f"/range/{CROWDED}").body == expected_body("sha1", CROWDED)
        single.close()
        assert single.stores["sha1"]._map is None

    def test_stores_passed_in_stay_open(self, stores: dict[str, RangeStore]) -> None:
        """close() leaves stores the caller opened alone."""
        make_app([stores["sha1"]]).close()
        assert stores["sha1"].range_body(int(CROWDED, 16)) == expected_body("sha1", CROWDED)

    def test_a_failing_path_closes_what_was_opened(
        self, store_paths: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If one path cannot be opened, the stores opened before it are closed and the error propagates."""
        closed: list[str] = []
        close = RangeStore.close

        def spy(store: RangeStore) -> None:
            closed.append(store.path)
            close(store)

        monkeypatch.setattr(RangeStore, "close", spy)
        bad = tmp_path / "bad.store"
        bad.write_bytes(b"not a store at all")
        with pytest.raises(credcheck.ArtifactError):
            make_app([store_paths["sha1"], bad])
        assert str(store_paths["sha1"]) in closed


class TestRobustness:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        path=st.one_of(
            st.text(st.characters(max_codepoint=255), max_size=20).map(lambda s: "/" + s),
            st.text("0123456789abcdefABCDEFGHXYZ/%.:", max_size=12).map(lambda s: "/range/" + s),
        ),
        method=st.sampled_from(["GET", "HEAD", "OPTIONS", "POST", "BREW", "get"]),
        query=st.text(st.characters(max_codepoint=255), max_size=20),
        padding=st.text(st.characters(max_codepoint=255), max_size=8),
        accept=st.text(st.characters(max_codepoint=255), max_size=30),
        match=st.text(st.characters(max_codepoint=255), max_size=30),
        since=st.text(st.characters(max_codepoint=255), max_size=40),
    )
    def test_arbitrary_requests_never_fail(
        self, app: RangeApp, path: str, method: str, query: str, padding: str, accept: str, match: str, since: str
    ) -> None:
        """Arbitrary paths, methods, queries and header values get a valid 2xx/3xx/4xx, never an exception."""
        headers = {
            "Add-Padding": padding,
            "Accept-Encoding": accept,
            "If-None-Match": match,
            "If-Modified-Since": since,
        }
        reply = call(app, path, method, headers=headers, query=query)
        assert 200 <= reply.status < 500


# ----------------------------------------------------------------------------------------------------
# The real thing: serve() in a subprocess, on a free port of 127.0.0.1

# serve() whose granian workers never finish starting (their app factory blocks), to stop one meanwhile
_WORKERS_NEVER_READY = SERVE_SCRIPT.replace(
    "from credcheck.server import serve\n",
    """from credcheck.server import serve
import time
import credcheck.server._runners as runners
def never_ready():
    print("test: a worker is starting", flush=True)
    while True:
        time.sleep(1)
runners._granian_app = never_ready
""",
)
# serve() whose wsgiref main thread stays in process_request after starting a connection's thread
_ACCEPT_NEVER_RETURNS = SERVE_SCRIPT.replace(
    "from credcheck.server import serve\n",
    """from credcheck.server import serve
import time
import credcheck.server._runners as runners
started = runners._ThreadingWSGIServer.process_request
def process_request(self, request, client_address):
    started(self, request, client_address)
    print("test: a connection's thread started", flush=True)
    while True:
        time.sleep(1)
runners._ThreadingWSGIServer.process_request = process_request
""",
)
KINDS = ["granian", "gunicorn", "wsgiref"]


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest, store_paths: dict[str, Path]) -> Iterator[RunningServer]:
    """serve() with both stores, under granian, gunicorn and the wsgiref fallback."""
    if request.param != "wsgiref":
        pytest.importorskip(request.param)
    with running_server(request.param, [store_paths["sha1"], store_paths["ntlm"]]) as running:
        yield running


class TestServe:
    def test_banner_names_the_server(self, server: RunningServer) -> None:
        """serve() prints the listening URL and which server runs it."""
        assert server.kind in server.banner
        assert "sha1" in server.banner and "ntlm" in server.banner

    def test_fallback_says_so_in_one_line(self, server: RunningServer) -> None:
        """Without granian or gunicorn, serve() explains the fallback in one line on standard error."""
        notices = [line for line in server.stderr if "neither granian nor gunicorn is installed" in line]
        assert len(notices) == (1 if server.kind == "wsgiref" else 0)

    @SCHEMES
    def test_leaked_passwords_found_with_exact_counts(self, server: RunningServer, scheme: str) -> None:
        """Through credcheck.open(url) (padding on), every leaked password is found with its exact count."""
        with credcheck.open(server.url, scheme=scheme) as checker:
            results = checker.check_many(list(LEAKED))
        assert [(r.compromised, r.count) for r in results] == [(True, count) for count in LEAKED.values()]

    @SCHEMES
    def test_clean_passwords_not_found(self, server: RunningServer, scheme: str) -> None:
        """Passwords outside the corpus, alone in their range or next to a neighbour, are not compromised."""
        with credcheck.open(server.url, scheme=scheme) as checker:
            assert not any(checker.check_many(CLEAN))

    def test_wire_bytes_through_the_server(self, server: RunningServer) -> None:
        """On the wire, the body and Content-Length are exactly those of the app (no server rewriting)."""
        connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=10)
        try:
            connection.request("GET", f"/range/{CROWDED.lower()}")
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200
            assert body == expected_body("sha1", CROWDED)
            assert response.getheader("Content-Length") == str(len(body))
            connection.request("HEAD", f"/range/{CROWDED}")
            head = connection.getresponse()
            assert (head.status, head.read(), head.getheader("Content-Length")) == (200, b"", str(len(body)))
        finally:
            connection.close()

    def test_gzip_and_304_through_the_server(self, server: RunningServer) -> None:
        """requests gets a gzip body it can inflate, then a 304 for the ETag it was given."""
        with requests.Session() as session:
            first = session.get(f"{server.url}/range/{CROWDED}", headers={"Accept-Encoding": "gzip"}, timeout=10)
            assert first.headers["Content-Encoding"] == "gzip"
            assert first.content == expected_body("sha1", CROWDED)
            again = session.get(
                f"{server.url}/range/{CROWDED}", headers={"If-None-Match": first.headers["ETag"]}, timeout=10
            )
            assert (again.status_code, again.content) == (304, b"")

    def test_concurrent_requests_all_succeed(self, server: RunningServer) -> None:
        """8 threads x 200 requests (mixed prefixes, modes, padding, gzip) all get the right answer."""
        prefixes = [(p, "sha1") for p in [*LEAKED_SHA1_PREFIXES, CROWDED, EMPTY_PREFIX]]
        prefixes += [(credcheck.ntlm_hex(p)[:5], "ntlm") for p in LEAKED]

        def worker(seed: int) -> int:
            rng = random.Random(seed)
            failures = 0
            with requests.Session() as session:
                for _ in range(200):
                    prefix, scheme = rng.choice(prefixes)
                    padded = rng.random() < 0.5
                    headers = {"Add-Padding": "true" if padded else "false"}
                    if rng.random() < 0.5:
                        headers["Accept-Encoding"] = "identity"
                    url = f"{server.url}/range/{prefix}" + ("?mode=ntlm" if scheme == "ntlm" else "")
                    response = session.get(url, headers=headers, timeout=10)
                    real = expected_body(scheme, prefix)
                    good = response.status_code == 200 and (
                        response.content.startswith(real) if padded else response.content == real
                    )
                    failures += not good
            return failures

        with ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(worker, range(8))) == 0


class TestServeLifecycle:
    @pytest.mark.parametrize(
        "signum", [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]
    )
    @pytest.mark.parametrize("kind", KINDS)
    def test_signal_stops_the_server_cleanly(self, store_paths: dict[str, Path], kind: str, signum: int) -> None:
        """SIGTERM or SIGINT makes serve() return: the process exits with status 0 and no traceback."""
        if kind != "wsgiref":
            pytest.importorskip(kind)
        with running_server(kind, [store_paths["sha1"]]) as running:
            assert requests.get(f"{running.url}/health", timeout=10).json()["schemes"] == ["sha1"]
            assert running.stop(signum) == 0
        assert "Traceback" not in "".join(running.stderr)

    @pytest.mark.parametrize("kind", KINDS)
    def test_serve_returns_once_in_the_calling_process(self, store_paths: dict[str, Path], kind: str) -> None:
        """After a stop, serve() returns in the process that called it, never in a worker process."""
        if kind != "wsgiref":
            pytest.importorskip(kind)
        with running_server(kind, [store_paths["sha1"]]) as running:
            running.stop(signal.SIGTERM)
        assert running.stdout.count("test: serve() returned\n") == 1

    def test_sigterm_stops_granian_workers_still_starting(self, store_paths: dict[str, Path]) -> None:
        """SIGTERM while the granian workers load the app stops them at once (none is killed after a wait)."""
        pytest.importorskip("granian")
        paths = [store_paths["sha1"]]
        with running_server("granian", paths, script=_WORKERS_NEVER_READY, wait_for="worker is starting") as running:
            assert running.stop(signal.SIGTERM) == 0
        # counted in the whole output: a worker's line may be cut into the parent's (they share the pipe)
        assert "".join(running.stdout).count("test: serve() returned") == 1
        assert "refused to gracefully stop" not in "".join(running.stdout + running.stderr)  # granian logs there

    def test_sigterm_stops_wsgiref_while_it_starts_a_connection(self, store_paths: dict[str, Path]) -> None:
        """SIGTERM while wsgiref's main thread hands a connection to its thread is not swallowed."""
        with running_server("wsgiref", [store_paths["sha1"]], script=_ACCEPT_NEVER_RETURNS) as running:
            port = int(running.url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                client.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                running.wait_for_line("connection's thread started")
                assert running.stop(signal.SIGTERM) == 0
        assert running.stdout.count("test: serve() returned\n") == 1
        assert "Traceback" not in "".join(running.stderr)

    @pytest.mark.parametrize("kind", KINDS)
    def test_port_in_use_fails_at_once(self, store_paths: dict[str, Path], kind: str) -> None:
        """A port already in use makes serve() raise OSError at once, before opening the stores."""
        if kind != "wsgiref":
            pytest.importorskip(kind)
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = taken.getsockname()[1]
            script = SERVE_SCRIPT.replace('"127.0.0.1", 0,', f'"127.0.0.1", {port},')
            done = subprocess.run(
                [sys.executable, "-c", script, kind, str(store_paths["sha1"])],
                capture_output=True,
                text=True,
                timeout=30,
            )
        assert done.returncode != 0
        assert f"OSError: [Errno {errno.EADDRINUSE}] cannot listen on http://127.0.0.1:{port}" in done.stderr

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"port": 70000}, "port"),
            ({"workers": 0}, "workers"),
            ({"threads": -1}, "threads"),
            ({"bodies": "x"}, "bodies"),
        ],
    )
    def test_bad_arguments_rejected_before_starting(
        self, store_paths: dict[str, Path], kwargs: dict[str, Any], match: str
    ) -> None:
        """A bad port, worker or thread count is a ValueError before anything listens."""
        from credcheck.server import serve

        with pytest.raises(ValueError, match=match):
            serve([store_paths["sha1"]], **kwargs)


def test_body_cache_is_bounded_in_bytes() -> None:
    """The body cache evicts the least recently used bodies once what they hold passes the byte cap."""
    from credcheck.server._bodies import Body as _Body
    from credcheck.server._bodies import BodyCache as _BodyCache

    cache = _BodyCache(size=1000, max_bytes=1000)
    for prefix in range(10):
        cache.put(("sha1", prefix), _Body(b"x" * 100))  # about 500 bytes each with the entry's overheads
    assert cache.bytes <= 1000
    assert cache.get(("sha1", 9)) is not None and cache.get(("sha1", 0)) is None
    cache.put(("sha1", 9), _Body(b"y" * 100))  # replacing an entry does not count it twice
    assert cache.bytes <= 1000


def test_body_cache_counts_the_overheads_of_tiny_bodies() -> None:
    """Empty and tiny bodies still count (objects, key, LRU entry): a million of them cannot pass the cap."""
    from credcheck.server._bodies import Body as _Body
    from credcheck.server._bodies import BodyCache as _BodyCache

    cache = _BodyCache(size=1 << 20, max_bytes=100_000)
    for prefix in range(10_000):
        cache.put(("sha1", prefix), _Body(b""))
    assert cache.bytes <= 100_000
    assert len(cache) * 100 <= 100_000  # each entry costs well over 100 bytes of memory


def test_body_cache_counts_the_gzip_encoding_once_made(stores: dict[str, RangeStore]) -> None:
    """A body's gzip encoding, made on a later request, is added to what the cache counts."""
    app = make_app([stores["sha1"]])
    call(app, f"/range/{CROWDED}", headers={"Accept-Encoding": "identity"})
    before = app._cache.bytes
    reply = call(app, f"/range/{CROWDED}", headers={"Accept-Encoding": "gzip"})
    assert app._cache.bytes >= before + len(reply.body)
