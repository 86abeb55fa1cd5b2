"""Tests for credcheck.client: the range wire format, RangeClient over HTTP (mocked), RemoteChecker."""

from __future__ import annotations

import ast
import functools
import gzip
import hashlib
import inspect
import io
import logging
import re
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from responses import matchers

import credcheck
from credcheck import Timeout
from credcheck.checker import Exposure, RemoteChecker
from credcheck.client import DEFAULT_BASE_URL, RangeClient
from credcheck.errors import CredcheckError, RemoteError, RemoteErrorCode

# HIBP's published test vectors.
PASSWORD = "password"
PASSWORD_SHA1 = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8"
PREFIX, SUFFIX = PASSWORD_SHA1[:5], PASSWORD_SHA1[5:]
NTLM_PASSWORD = "Passw0rd!"
NTLM_HASH = "FC525C9683E8FE067095BA2DDC971889"
NTLM_PREFIX, NTLM_SUFFIX = NTLM_HASH[:5], NTLM_HASH[5:]

RANGE_URL = f"{DEFAULT_BASE_URL}/range/{PREFIX}"
ANY_RANGE = re.compile(re.escape(DEFAULT_BASE_URL) + r"/range/.*")
OTHER_SUFFIX = "0018A45C4D1DEF81644B54AB7F969B88D65"
PASSWORD_BODY = f"{OTHER_SUFFIX}:1\r\n{SUFFIX}:123\r\n1E4C9B93F3F0682250B6CF8331B7EE68FD9:7"

Code = RemoteErrorCode


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest().upper()


@functools.cache
def passwords_sharing_a_prefix() -> tuple[str, str]:
    """Two distinct passwords whose SHA-1s share the first 5 hex characters (a birthday search)."""
    seen: dict[str, str] = {}
    for number in range(1_000_000):
        candidate = f"pw-{number}"
        prefix = sha1(candidate)[:5]
        if prefix in seen:
            return seen[prefix], candidate
        seen[prefix] = candidate
    raise AssertionError("no shared prefix found")


class _FramedMock(responses.RequestsMock):
    """Real range servers frame every body (Content-Length or chunked) and the client refuses one that is not
    (it could not tell a whole body from one cut short), so the mock sends a Content-Length too."""

    def add(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("auto_calculate_content_length", True)
        return super().add(*args, **kwargs)

    def replace(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("auto_calculate_content_length", True)
        return super().replace(*args, **kwargs)

    get = functools.partialmethod(add, responses.GET)


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """Every HTTP call goes to the mock; an unregistered URL is a connection error, never the internet."""
    with _FramedMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the client's backoff waits instead of sleeping."""
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    return waits


@pytest.fixture
def client() -> Iterator[RangeClient]:
    with RangeClient(retries=2, backoff_factor=0.1) as range_client:
        yield range_client


def bad_response(code: RemoteErrorCode) -> Callable[[RemoteError], bool]:
    return lambda exc: exc.code is code


# ----------------------------------------------------------------------------------------------------------
# RangeClient


class TestRangeClientRequests:
    def test_sha1_range(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """get_range fetches /range/{PREFIX} and returns the parsed suffixes."""
        mocked.get(RANGE_URL, body=PASSWORD_BODY)
        assert client.get_range(PREFIX)[SUFFIX] == 123
        assert mocked.calls[0].request.url == RANGE_URL

    def test_ntlm_mode_adds_query(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """NTLM ranges are asked for with ?mode=ntlm and carry 27-character suffixes."""
        mocked.get(
            f"{DEFAULT_BASE_URL}/range/{NTLM_PREFIX}",
            body=f"{NTLM_SUFFIX}:4",
            match=[matchers.query_string_matcher("mode=ntlm")],
        )
        assert client.get_range(NTLM_PREFIX, "ntlm") == {NTLM_SUFFIX: 4}
        assert mocked.calls[0].request.url == f"{DEFAULT_BASE_URL}/range/{NTLM_PREFIX}?mode=ntlm"

    def test_prefix_is_upper_cased(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """A lower-case prefix is sent upper-case."""
        mocked.get(RANGE_URL, body="")
        client.get_range(PREFIX.lower())
        assert mocked.calls[0].request.url == RANGE_URL

    def test_base_url_with_path(self, mocked: responses.RequestsMock) -> None:
        """A base URL with a path (a static export under a folder) keeps it, trailing slash or not."""
        mocked.get(f"https://cdn.example/hibp/range/{PREFIX}", body="")
        with RangeClient("https://cdn.example/hibp/") as range_client:
            assert range_client.get_range(PREFIX) == {}

    @pytest.mark.parametrize("prefix", ["5BAA", "5BAA61", "5BAG6", "", PASSWORD_SHA1, " 5BAA", "\uff15BAA6"])
    def test_bad_prefix(self, client: RangeClient, prefix: str) -> None:
        """Anything but exactly 5 hex characters is a ValueError that does not echo the argument."""
        with pytest.raises(ValueError) as caught:
            client.get_range(prefix)
        assert PASSWORD_SHA1 not in str(caught.value)
        assert SUFFIX not in str(caught.value)

    def test_prefix_of_wrong_type(self, client: RangeClient) -> None:
        """A bytes prefix is a TypeError."""
        with pytest.raises(TypeError):
            client.get_range(b"5BAA6")  # type: ignore[arg-type]

    @pytest.mark.parametrize("scheme", ["SHA1", "md5", "", "NTLM"])
    def test_bad_scheme(self, client: RangeClient, scheme: str) -> None:
        """Only 'sha1' and 'ntlm' are range schemes."""
        with pytest.raises(ValueError, match="scheme"):
            client.get_range(PREFIX, scheme)

    def test_add_padding_sent_by_default(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """Padding is on by default: Add-Padding: true goes with every request."""
        mocked.get(RANGE_URL, body="")
        client.get_range(PREFIX)
        assert mocked.calls[0].request.headers["Add-Padding"] == "true"

    def test_add_padding_not_sent_when_disabled(self, mocked: responses.RequestsMock) -> None:
        """padding=False sends no Add-Padding header."""
        mocked.get(RANGE_URL, body="")
        with RangeClient(padding=False) as range_client:
            range_client.get_range(PREFIX)
        assert "Add-Padding" not in mocked.calls[0].request.headers

    def test_user_agent(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """Requests identify themselves as credcheck/<version>."""
        mocked.get(RANGE_URL, body="")
        client.get_range(PREFIX)
        agent = mocked.calls[0].request.headers["User-Agent"]
        assert re.fullmatch(r"credcheck/\S+ \(k-anonymity range client\)", agent)

    def test_custom_user_agent(self, mocked: responses.RequestsMock) -> None:
        """user_agent replaces the default."""
        mocked.get(RANGE_URL, body="")
        with RangeClient(user_agent="shop-signup/2") as range_client:
            range_client.get_range(PREFIX)
        assert mocked.calls[0].request.headers["User-Agent"] == "shop-signup/2"

    @pytest.mark.parametrize(
        "content_type", ["application/octet-stream", "text/plain; charset=utf-8", "binary/octet-stream"]
    )
    def test_any_content_type_accepted(
        self, mocked: responses.RequestsMock, client: RangeClient, content_type: str
    ) -> None:
        """The body is validated line by line; the content type (static hosts vary) is not insisted on."""
        mocked.get(RANGE_URL, body=PASSWORD_BODY, content_type=content_type)
        assert client.get_range(PREFIX)[SUFFIX] == 123

    def test_gzip_body_decoded(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """A gzip-encoded response is decoded before parsing."""
        mocked.get(RANGE_URL, body=gzip.compress(PASSWORD_BODY.encode()), headers={"Content-Encoding": "gzip"})
        assert client.get_range(PREFIX)[SUFFIX] == 123

    def test_redirect_within_origin_followed(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """A redirect to the same scheme, host and port is followed."""
        mocked.get(RANGE_URL, status=301, headers={"Location": f"/v2/range/{PREFIX}"})
        mocked.get(f"{DEFAULT_BASE_URL}/v2/range/{PREFIX}", body=PASSWORD_BODY)
        assert client.get_range(PREFIX)[SUFFIX] == 123


class TestRangeClientFailures:
    @pytest.mark.parametrize(
        "register, code, calls",
        [
            (dict(status=500), Code.HTTP_STATUS, 3),
            (dict(status=503), Code.HTTP_STATUS, 3),
            (dict(status=404), Code.HTTP_STATUS, 1),
            (dict(status=403), Code.HTTP_STATUS, 1),
            (dict(status=204), Code.HTTP_STATUS, 1),
            (dict(status=304), Code.HTTP_STATUS, 1),
            (
                dict(status=301, headers={"Location": f"https://evil.example/range/{PREFIX}"}),
                Code.HTTP_STATUS,
                1,
            ),
            (
                dict(status=302, headers={"Location": f"http://api.pwnedpasswords.com/range/{PREFIX}"}),
                Code.HTTP_STATUS,
                1,
            ),
            (dict(status=301), Code.HTTP_STATUS, 1),
            (dict(body=requests.ConnectionError("refused")), Code.CONNECTION, 3),
            (dict(body=requests.ConnectTimeout("slow")), Code.TIMEOUT, 3),
            (dict(body=requests.ReadTimeout("slow")), Code.TIMEOUT, 3),
            (dict(body=requests.exceptions.SSLError("bad cert")), Code.CONNECTION, 1),
            (dict(body="<html><body>Service Unavailable</body></html>"), Code.BAD_RESPONSE, 1),
            (dict(body=f"{SUFFIX}:123\r\n1E4C9B93F3F06822"), Code.BAD_RESPONSE, 1),
            (dict(body=f"{SUFFIX}:1\r\n\r\n{OTHER_SUFFIX}:1"), Code.BAD_RESPONSE, 1),
            (dict(body=f"{SUFFIX}:lots"), Code.BAD_RESPONSE, 1),
            (dict(body=b"\x1f\x8b garbage", headers={"Content-Encoding": "gzip"}), Code.BAD_RESPONSE, 1),
            (
                dict(body=f"{SUFFIX}:123\r\n{OTHER_SUFFIX}:1", headers={"Content-Length": "200"}),
                Code.CONNECTION,
                3,
            ),
        ],
        ids=[
            "500",
            "503",
            "404",
            "403",
            "204",
            "304-unasked",
            "301-other-host",
            "302-downgrade-to-http",
            "301-no-location",
            "connection-error",
            "connect-timeout",
            "read-timeout",
            "tls-error",
            "html-page",
            "truncated-last-line",
            "blank-line",
            "malformed-line",
            "bad-gzip",
            "body-shorter-than-content-length",
        ],
    )
    def test_failure_raises_with_code(
        self,
        mocked: responses.RequestsMock,
        client: RangeClient,
        register: dict[str, Any],
        code: RemoteErrorCode,
        calls: int,
    ) -> None:
        """Each way a range can fail raises RemoteError with its code after the right number of attempts."""
        mocked.get(RANGE_URL, **register)
        with pytest.raises(RemoteError) as caught:
            client.get_range(PREFIX)
        assert caught.value.code is code
        assert isinstance(caught.value, CredcheckError)
        assert len(mocked.calls) == calls

    def test_redirect_loop_is_an_error(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """Redirects within the origin are followed only a few times."""
        mocked.get(RANGE_URL, status=302, headers={"Location": f"/range/{PREFIX}"})
        with pytest.raises(RemoteError) as caught:
            client.get_range(PREFIX)
        assert caught.value.code is Code.HTTP_STATUS
        assert len(mocked.calls) == 4

    def test_unregistered_host_is_a_connection_error(self, mocked: responses.RequestsMock) -> None:
        """A host that does not answer is a CONNECTION error (and the test never leaves the machine)."""
        with (
            RangeClient("https://nowhere.invalid", retries=0) as range_client,
            pytest.raises(RemoteError) as caught,
        ):
            range_client.get_range(PREFIX)
        assert caught.value.code is Code.CONNECTION

    def test_5xx_retried_with_exponential_backoff(
        self, mocked: responses.RequestsMock, client: RangeClient, sleeps: list[float]
    ) -> None:
        """5xx answers are retried after backoff_factor * 2**n seconds, then the good answer is used."""
        mocked.get(RANGE_URL, status=502)
        mocked.get(RANGE_URL, status=503)
        mocked.get(RANGE_URL, body=PASSWORD_BODY)
        assert client.get_range(PREFIX)[SUFFIX] == 123
        assert sleeps == [0.1, 0.2]

    def test_connection_error_retried(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """A dropped connection is retried."""
        mocked.get(RANGE_URL, body=requests.ConnectionError("reset"))
        mocked.get(RANGE_URL, body=PASSWORD_BODY)
        assert client.get_range(PREFIX)[SUFFIX] == 123
        assert len(mocked.calls) == 2

    def test_429_honours_retry_after(
        self, mocked: responses.RequestsMock, client: RangeClient, sleeps: list[float]
    ) -> None:
        """429 with Retry-After waits that many seconds, then retries and succeeds."""
        mocked.get(RANGE_URL, status=429, headers={"Retry-After": "2"})
        mocked.get(RANGE_URL, body=PASSWORD_BODY)
        assert client.get_range(PREFIX)[SUFFIX] == 123
        assert sleeps == [2.0]

    def test_retry_after_past_deadline_gives_up(
        self, mocked: responses.RequestsMock, client: RangeClient, sleeps: list[float]
    ) -> None:
        """A Retry-After longer than the deadline allows is not waited for: the error comes at once."""
        mocked.get(RANGE_URL, status=429, headers={"Retry-After": "3600"})
        with pytest.raises(RemoteError) as caught:
            client.get_range(PREFIX)
        assert caught.value.code is Code.HTTP_STATUS
        assert sleeps == []
        assert len(mocked.calls) == 1

    def test_no_retries(self, mocked: responses.RequestsMock) -> None:
        """retries=0 makes exactly one attempt."""
        mocked.get(RANGE_URL, status=503)
        with RangeClient(retries=0) as range_client, pytest.raises(RemoteError):
            range_client.get_range(PREFIX)
        assert len(mocked.calls) == 1

    def test_deadline_bounds_a_slow_body(self, mocked: responses.RequestsMock) -> None:
        """A body that trickles in past the overall deadline is a TIMEOUT, not a partial answer."""
        now = [0.0]

        class Trickle(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                now[0] += 3.0  # each read takes 3 s of the 5 s deadline
                buffer[: len(buffer)] = b"0" * len(buffer)
                return len(buffer)

        mocked.get(RANGE_URL, body=io.BufferedReader(Trickle()), headers={"Content-Length": "1000000"})
        with RangeClient(deadline=5.0) as range_client:
            range_client.driver.clock = lambda: now[0]
            with pytest.raises(RemoteError) as caught:
                range_client.get_range(PREFIX)
        assert caught.value.code is Code.TIMEOUT

    def test_oversized_body_rejected(self, mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch) -> None:
        """A body beyond the size limit is BAD_RESPONSE rather than read into memory."""
        monkeypatch.setattr("credcheck._http.body.MAX_BODY_BYTES", 100)
        mocked.get(RANGE_URL, body=(f"{SUFFIX}:1\r\n" * 10).encode())
        with RangeClient() as range_client, pytest.raises(RemoteError) as caught:
            range_client.get_range(PREFIX)
        assert caught.value.code is Code.BAD_RESPONSE

    def test_error_message_names_prefix_only(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """A failure names the 5-character prefix, and its traceback holds nothing longer."""
        mocked.get(RANGE_URL, body=f"{SUFFIX}:oops")
        with pytest.raises(RemoteError) as caught:
            client.get_range(PREFIX)
        text = "".join(traceback.format_exception(caught.value))
        assert PREFIX in str(caught.value)
        assert SUFFIX not in text and "oops" not in text


class TestRangeClientSettings:
    @pytest.mark.parametrize(
        "base_url",
        ["ftp://example.com", "example.com", "https://", "https://x.example/?a=1", "https://x.example/#f"],
    )
    def test_bad_base_url(self, base_url: str) -> None:
        """Only http(s) URLs with a host and no query or fragment are base URLs."""
        with pytest.raises(ValueError):
            RangeClient(base_url)

    @pytest.mark.parametrize(
        "options",
        [
            dict(timeout=0),
            dict(timeout=(1, 0)),
            dict(timeout=(1, 2, 3)),
            dict(deadline=-1),
            dict(retries=-1),
            dict(retries=1.5),
            dict(backoff_factor=-0.1),
            dict(cache=-1),
            dict(cache="yes"),
            dict(pool_size=0),
        ],
    )
    def test_bad_option(self, options: dict[str, Any]) -> None:
        """A nonsensical setting is a ValueError at construction."""
        with pytest.raises(ValueError):
            RangeClient(**options)

    def test_single_number_timeout(self) -> None:
        """A single timeout applies to both connect and read."""
        assert RangeClient(timeout=1.5).options.timeout == Timeout(1.5, 1.5)

    def test_repr_redacts_credentials(self) -> None:
        """The repr shows the base URL without any user:password part."""
        text = repr(RangeClient("https://user:hunter2@ranges.example"))
        assert "hunter2" not in text and "ranges.example" in text

    def test_close_closes_owned_session(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """close() closes the session the client created."""
        range_client = RangeClient()
        closed: list[bool] = []
        monkeypatch.setattr(range_client.driver.session, "close", lambda: closed.append(True))
        range_client.close()
        assert closed == [True]

    def test_close_leaves_injected_session_open(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A session passed in is the caller's: close() leaves it open."""
        session = requests.Session()
        closed: list[bool] = []
        monkeypatch.setattr(session, "close", lambda: closed.append(True))
        RangeClient(session=session).close()
        assert closed == []

    def test_injected_session_is_used(self, mocked: responses.RequestsMock) -> None:
        """Requests go through the injected session (its headers included)."""
        session = requests.Session()
        session.headers["X-Tenant"] = "shop"
        mocked.get(RANGE_URL, body="")
        RangeClient(session=session).get_range(PREFIX)
        assert mocked.calls[0].request.headers["X-Tenant"] == "shop"

    def test_pool_sized_for_concurrency(self) -> None:
        """The client's own session pools pool_size connections per host."""
        adapter = RangeClient(pool_size=16).driver.session.get_adapter("https://api.pwnedpasswords.com")
        assert adapter._pool_maxsize == 16  # type: ignore[attr-defined]


class TestRangeClientCache:
    def test_no_cache_by_default(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """Without a cache every call asks the server, whatever Cache-Control says."""
        mocked.get(RANGE_URL, body=PASSWORD_BODY, headers={"Cache-Control": "public, max-age=2678400"})
        client.get_range(PREFIX)
        client.get_range(PREFIX)
        assert len(mocked.calls) == 2

    def test_fresh_entry_served_from_cache(self, mocked: responses.RequestsMock) -> None:
        """Within max-age a range is answered from memory."""
        mocked.get(RANGE_URL, body=PASSWORD_BODY, headers={"Cache-Control": "public, max-age=2678400"})
        with RangeClient(cache=True) as range_client:
            first = range_client.get_range(PREFIX)
            assert range_client.get_range(PREFIX) == first
        assert len(mocked.calls) == 1

    def test_modes_cached_separately(self, mocked: responses.RequestsMock) -> None:
        """The same prefix in SHA-1 and NTLM mode are different ranges."""
        mocked.get(
            RANGE_URL,
            body=PASSWORD_BODY,
            headers={"Cache-Control": "max-age=60"},
            match=[matchers.query_param_matcher({})],
        )
        mocked.get(
            f"{DEFAULT_BASE_URL}/range/{PREFIX}",
            body=f"{NTLM_SUFFIX}:1",
            headers={"Cache-Control": "max-age=60"},
            match=[matchers.query_string_matcher("mode=ntlm")],
        )
        with RangeClient(cache=True) as range_client:
            assert range_client.get_range(PREFIX, "ntlm") == {NTLM_SUFFIX: 1}
            assert range_client.get_range(PREFIX, "sha1")[SUFFIX] == 123

    def test_stale_entry_revalidated_with_etag(self, mocked: responses.RequestsMock) -> None:
        """After max-age the client sends If-None-Match and uses its copy on 304."""
        now = [0.0]
        mocked.get(RANGE_URL, body=PASSWORD_BODY, headers={"Cache-Control": "max-age=60", "ETag": '"v1"'})
        with RangeClient(cache=True) as range_client:
            range_client.driver.clock = lambda: now[0]
            range_client.get_range(PREFIX)
            now[0] = 61.0
            mocked.replace(responses.GET, RANGE_URL, status=304, headers={"Cache-Control": "max-age=60"})
            assert range_client.get_range(PREFIX)[SUFFIX] == 123
            now[0] = 100.0
            assert range_client.get_range(PREFIX)[SUFFIX] == 123  # fresh again after the 304
        assert len(mocked.calls) == 2
        assert mocked.calls[1].request.headers["If-None-Match"] == '"v1"'

    def test_stale_entry_replaced_by_new_body(self, mocked: responses.RequestsMock) -> None:
        """A 200 on revalidation replaces the cached range."""
        now = [0.0]
        mocked.get(RANGE_URL, body=PASSWORD_BODY, headers={"Cache-Control": "max-age=60", "ETag": '"v1"'})
        with RangeClient(cache=True) as range_client:
            range_client.driver.clock = lambda: now[0]
            range_client.get_range(PREFIX)
            now[0] = 61.0
            mocked.replace(responses.GET, RANGE_URL, body=f"{SUFFIX}:124", headers={"ETag": '"v2"'})
            assert range_client.get_range(PREFIX) == {SUFFIX: 124}

    @pytest.mark.parametrize("cache_control", ["no-store", "max-age=0", "private, no-store, max-age=60"])
    def test_uncacheable_responses_not_reused(self, mocked: responses.RequestsMock, cache_control: str) -> None:
        """no-store, or no lifetime and no validator, means every call asks again."""
        mocked.get(RANGE_URL, body=PASSWORD_BODY, headers={"Cache-Control": cache_control})
        with RangeClient(cache=True) as range_client:
            range_client.get_range(PREFIX)
            range_client.get_range(PREFIX)
        assert len(mocked.calls) == 2
        assert "If-None-Match" not in mocked.calls[1].request.headers

    def test_revalidated_with_last_modified(self, mocked: responses.RequestsMock) -> None:
        """Without an ETag, revalidation sends If-Modified-Since from Last-Modified."""
        stamp = "Wed, 01 Jan 2025 00:00:00 GMT"
        mocked.get(RANGE_URL, body=PASSWORD_BODY, headers={"Cache-Control": "no-cache", "Last-Modified": stamp})
        with RangeClient(cache=True) as range_client:
            range_client.get_range(PREFIX)
            mocked.replace(responses.GET, RANGE_URL, status=304)
            assert range_client.get_range(PREFIX)[SUFFIX] == 123
        assert mocked.calls[1].request.headers["If-Modified-Since"] == stamp
        assert "If-None-Match" not in mocked.calls[1].request.headers

    def test_age_shortens_freshness(self, mocked: responses.RequestsMock) -> None:
        """A response already Age seconds old is fresh only for max-age minus Age."""
        now = [0.0]
        mocked.get(RANGE_URL, body=PASSWORD_BODY, headers={"Cache-Control": "max-age=60", "Age": "50"})
        with RangeClient(cache=True) as range_client:
            range_client.driver.clock = lambda: now[0]
            range_client.get_range(PREFIX)
            now[0] = 9.0
            range_client.get_range(PREFIX)
            now[0] = 11.0
            range_client.get_range(PREFIX)
        assert len(mocked.calls) == 2

    def test_caller_cannot_change_the_cache(self, mocked: responses.RequestsMock) -> None:
        """Changing a returned range does not change the cached one."""
        mocked.get(RANGE_URL, body=PASSWORD_BODY, headers={"Cache-Control": "max-age=60"})
        with RangeClient(cache=True) as range_client:
            range_client.get_range(PREFIX).clear()
            assert range_client.get_range(PREFIX)[SUFFIX] == 123

    def test_least_recently_used_entry_evicted(self, mocked: responses.RequestsMock) -> None:
        """A cache of one entry keeps only the latest range."""
        for prefix in ("00000", "11111"):
            mocked.get(f"{DEFAULT_BASE_URL}/range/{prefix}", body="", headers={"Cache-Control": "max-age=60"})
        with RangeClient(cache=1) as range_client:
            for prefix in ("00000", "11111", "11111", "00000"):
                range_client.get_range(prefix)
        assert [str(call.request.url)[-5:] for call in mocked.calls] == ["00000", "11111", "00000"]

    def test_failure_never_served_as_cached_empty(self, mocked: responses.RequestsMock) -> None:
        """An error is not cached: the next call asks again."""
        mocked.get(RANGE_URL, status=404)
        with RangeClient(cache=True, retries=0) as range_client:
            for _ in range(2):
                with pytest.raises(RemoteError):
                    range_client.get_range(PREFIX)
        assert len(mocked.calls) == 2


# ----------------------------------------------------------------------------------------------------------
# RemoteChecker


@pytest.fixture
def checker(client: RangeClient) -> RemoteChecker:
    return RemoteChecker(client)


def serve_ranges(mocked: responses.RequestsMock, ranges: dict[str, str] | None = None) -> None:
    """Answer every /range/ URL: the given bodies by prefix, an empty range otherwise."""

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        prefix = (request.path_url.split("/range/")[1])[:5]
        body = (ranges or {}).get(prefix, "")
        return 200, {"Content-Length": str(len(body))}, body

    mocked.add_callback(responses.GET, ANY_RANGE, callback=answer)


class TestBaseUrlMistakes:
    def test_404_hints_at_the_api_root(self, mocked: responses.RequestsMock) -> None:
        """A 404 for the range says the base URL may not be the API's root."""
        mocked.get(re.compile(r"https://ranges\.example/api/range/.*"), status=404)
        with RangeClient("https://ranges.example/api", retries=0) as range_client, pytest.raises(RemoteError) as info:
            range_client.get_range(PREFIX)
        assert "API's root" in str(info.value) and info.value.code is Code.HTTP_STATUS

    @pytest.mark.parametrize("url", ["https://ranges.example/range", "https://ranges.example/v1/range/"])
    def test_range_path_refused(self, url: str) -> None:
        """A base URL that already ends in /range is refused when the client is made."""
        with pytest.raises(ValueError, match="without /range"):
            RangeClient(url)


class TestRemoteChecker:
    def test_hibp_vector(self, mocked: responses.RequestsMock, checker: RemoteChecker) -> None:
        """'password' is compromised with the count from its range."""
        mocked.get(RANGE_URL, body=PASSWORD_BODY)
        assert checker.check(PASSWORD) == Exposure(True, 123)

    def test_absent_suffix_not_compromised(self, mocked: responses.RequestsMock, checker: RemoteChecker) -> None:
        """A suffix missing from its range is not compromised, with count 0."""
        mocked.get(RANGE_URL, body=f"{OTHER_SUFFIX}:5")
        assert checker.check(PASSWORD) == Exposure(False, 0)

    def test_padding_line_is_not_a_hit(self, mocked: responses.RequestsMock, checker: RemoteChecker) -> None:
        """A padding line (count 0) for the very suffix asked about is not a hit."""
        mocked.get(RANGE_URL, body=f"{OTHER_SUFFIX}:5\r\n{SUFFIX}:0")
        assert checker.check(PASSWORD) == Exposure(False, 0)

    def test_check_hash(self, mocked: responses.RequestsMock, checker: RemoteChecker) -> None:
        """check_hash looks a full hex digest up the same way."""
        mocked.get(RANGE_URL, body=PASSWORD_BODY)
        assert checker.check_hash(PASSWORD_SHA1.lower()) == Exposure(True, 123)

    def test_ntlm(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """An NTLM checker asks for mode=ntlm ranges and finds the HIBP NTLM vector."""
        mocked.get(
            f"{DEFAULT_BASE_URL}/range/{NTLM_PREFIX}",
            body=f"{NTLM_SUFFIX}:42",
            match=[matchers.query_string_matcher("mode=ntlm")],
        )
        assert RemoteChecker(client, scheme="ntlm").check(NTLM_PASSWORD) == Exposure(True, 42)

    @pytest.mark.parametrize(
        "count, min_count, compromised",
        [(123, 1, True), (123, 123, True), (123, 124, False), (1, 2, False)],
    )
    def test_min_count(
        self,
        mocked: responses.RequestsMock,
        client: RangeClient,
        count: int,
        min_count: int,
        compromised: bool,
    ) -> None:
        """A password counts as compromised only when seen at least min_count times; the count is kept."""
        mocked.get(RANGE_URL, body=f"{SUFFIX}:{count}")
        assert RemoteChecker(client, min_count=min_count).check(PASSWORD) == Exposure(compromised, count)

    def test_check_many_one_request_per_prefix_in_input_order(
        self, mocked: responses.RequestsMock, checker: RemoteChecker
    ) -> None:
        """A batch asks once per distinct prefix and answers in input order."""
        first, second = passwords_sharing_a_prefix()
        shared = sha1(first)[:5]
        serve_ranges(
            mocked,
            {PREFIX: f"{SUFFIX}:123", shared: f"{sha1(second)[5:]}:2", sha1("letmein")[:5]: ""},
        )
        answers = checker.check_many([first, PASSWORD, second, "letmein", PASSWORD, first])
        assert answers == [
            Exposure(False, 0),
            Exposure(True, 123),
            Exposure(True, 2),
            Exposure(False, 0),
            Exposure(True, 123),
            Exposure(False, 0),
        ]
        asked = sorted(str(call.request.url).rsplit("/", 1)[1] for call in mocked.calls)
        assert asked == sorted({PREFIX, shared, sha1("letmein")[:5]})

    def test_check_many_of_nothing(self, mocked: responses.RequestsMock, checker: RemoteChecker) -> None:
        """An empty batch makes no request."""
        assert checker.check_many([]) == []
        assert len(mocked.calls) == 0

    def test_single_worker_batch(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """max_workers=1 fetches a batch one prefix after another, same answers."""
        serve_ranges(mocked, {PREFIX: f"{SUFFIX}:123"})
        answers = RemoteChecker(client, max_workers=1).check_many(["letmein", PASSWORD])
        assert answers == [Exposure(False, 0), Exposure(True, 123)]

    def test_batch_fails_when_one_prefix_fails(self, mocked: responses.RequestsMock, checker: RemoteChecker) -> None:
        """One unanswerable prefix fails the whole batch: no partial "not compromised" answers."""
        mocked.get(RANGE_URL, status=404)
        mocked.get(f"{DEFAULT_BASE_URL}/range/{sha1('letmein')[:5]}", body="")
        with pytest.raises(RemoteError) as caught:
            checker.check_many(["letmein", PASSWORD])
        assert caught.value.code is Code.HTTP_STATUS

    @pytest.mark.parametrize(
        "register, code",
        [
            (dict(status=500), Code.HTTP_STATUS),
            (dict(status=404), Code.HTTP_STATUS),
            (dict(body=requests.ConnectionError("down")), Code.CONNECTION),
            (dict(body=requests.ReadTimeout("slow")), Code.TIMEOUT),
            (dict(body="<html>maintenance</html>"), Code.BAD_RESPONSE),
            (dict(body=f"{OTHER_SUFFIX}:1\r\n{SUFFIX}:1\r\n{SUFFIX[:10]}"), Code.BAD_RESPONSE),
        ],
        ids=["500", "404", "connection", "timeout", "html", "truncated"],
    )
    def test_failure_is_never_not_compromised(
        self,
        mocked: responses.RequestsMock,
        checker: RemoteChecker,
        register: dict[str, Any],
        code: RemoteErrorCode,
    ) -> None:
        """When the range cannot be read the checker raises; it never answers "not compromised"."""
        mocked.get(RANGE_URL, **register)
        with pytest.raises(RemoteError) as caught:
            checker.check(PASSWORD)
        assert caught.value.code is code

    @pytest.mark.parametrize("max_workers", [0, -1, 1.5, True])
    def test_bad_max_workers(self, client: RangeClient, max_workers: Any) -> None:
        """max_workers must be a positive integer."""
        with pytest.raises(ValueError, match="max_workers"):
            RemoteChecker(client, max_workers=max_workers)

    def test_close_closes_client(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Closing the checker (or leaving its with-block) closes its client."""
        range_client = RangeClient()
        closed: list[bool] = []
        monkeypatch.setattr(range_client, "close", lambda: closed.append(True))
        with RemoteChecker(range_client):
            pass
        assert closed == [True]

    def test_repr(self, client: RangeClient) -> None:
        """The repr names the service and settings."""
        text = repr(RemoteChecker(client, scheme="ntlm", min_count=3))
        assert "api.pwnedpasswords.com" in text and "ntlm" in text and "min_count=3" in text


class TestPrivacy:
    SECRET = "correct horse battery staple"

    def test_only_the_prefix_leaves(self, mocked: responses.RequestsMock, checker: RemoteChecker) -> None:
        """No request carries the password, the full hash or the suffix: only a 5-hex prefix in the path."""
        serve_ranges(mocked)
        checker.check(PASSWORD)
        checker.check(self.SECRET)
        checker.check_many([PASSWORD, self.SECRET, "letmein"])
        checker.check_hash(PASSWORD_SHA1)
        secrets = [PASSWORD, self.SECRET, PASSWORD_SHA1, SUFFIX, sha1(self.SECRET), sha1(self.SECRET)[5:]]
        assert len(mocked.calls) == 6
        for call in mocked.calls:
            request = call.request
            assert re.fullmatch(re.escape(DEFAULT_BASE_URL) + r"/range/[0-9A-F]{5}", str(request.url))
            assert request.body is None
            # The path, not the URL: the public host's name itself contains "password".
            sent = " ".join([request.path_url, *request.headers.keys(), *request.headers.values()]).upper()
            for secret in secrets:
                assert secret.upper() not in sent

    def test_ntlm_only_the_prefix_leaves(self, mocked: responses.RequestsMock, client: RangeClient) -> None:
        """An NTLM check sends the 5-hex prefix and mode=ntlm, nothing of the rest of the hash."""
        serve_ranges(mocked)
        RemoteChecker(client, scheme="ntlm").check(NTLM_PASSWORD)
        (call,) = mocked.calls
        assert call.request.url == f"{DEFAULT_BASE_URL}/range/{NTLM_PREFIX}?mode=ntlm"
        sent = " ".join([*call.request.headers.keys(), *call.request.headers.values()]).upper()
        assert NTLM_SUFFIX not in sent and NTLM_PASSWORD.upper() not in sent

    def test_logs_and_errors_hold_no_secret(
        self, mocked: responses.RequestsMock, checker: RemoteChecker, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Debug logs, error messages, tracebacks and reprs carry no password, hash or suffix."""
        full = sha1(self.SECRET)
        prefix, suffix = full[:5], full[5:]
        url = f"{DEFAULT_BASE_URL}/range/{prefix}"
        caplog.set_level(logging.DEBUG)
        mocked.get(url, status=503)
        mocked.get(url, body=f"{suffix}:x")
        with pytest.raises(RemoteError) as caught:
            checker.check(self.SECRET)
        mocked.replace(responses.GET, url, body=f"{suffix}:3")
        assert checker.check(self.SECRET) == Exposure(True, 3)
        shown = "\n".join(
            [
                caplog.text,
                "".join(traceback.format_exception(caught.value)),
                repr(checker),
                repr(checker.client),
            ]
        )
        assert prefix in caplog.text
        for secret in (self.SECRET, full, suffix):
            assert secret not in shown


# ----------------------------------------------------------------------------------------------------------
# credcheck.open on a range API


def open_remote(url: str, **options: Any) -> RemoteChecker:
    """credcheck.open on a range API URL: a RemoteChecker."""
    opened = credcheck.open(url, **options)
    assert isinstance(opened, RemoteChecker)
    return opened


class TestOpenRemote:
    def test_defaults(self) -> None:
        """open builds a SHA-1 RemoteChecker on the given base URL."""
        with open_remote("https://ranges.example/") as opened:
            assert isinstance(opened, RemoteChecker)
            assert opened.scheme == "sha1" and opened.min_count == 1
            assert isinstance(opened.client, RangeClient)
            assert opened.client.base_url == "https://ranges.example"

    def test_scheme(self) -> None:
        """scheme= selects the scheme."""
        assert open_remote("https://ranges.example", scheme="ntlm").scheme == "ntlm"

    def test_unknown_scheme(self) -> None:
        """An unknown scheme is a ValueError."""
        with pytest.raises(ValueError):
            open_remote("https://ranges.example", scheme="md5")

    def test_unknown_option(self) -> None:
        """An option a range API does not take is a TypeError."""
        with pytest.raises(TypeError):
            open_remote("https://ranges.example", fp_rate=0.1)

    def test_options_reach_client_and_checker(self, mocked: responses.RequestsMock) -> None:
        """timeout, padding, retries, cache, min_count and max_workers are applied."""
        mocked.get(RANGE_URL, body=f"{SUFFIX}:3", headers={"Cache-Control": "max-age=60"})
        opened = open_remote(
            DEFAULT_BASE_URL, timeout=1.0, padding=False, retries=0, cache=True, min_count=5, max_workers=2
        )
        assert isinstance(opened.client, RangeClient)
        assert opened.client.options.timeout == Timeout(1.0) and opened.client.options.retries == 0
        assert opened.max_workers == 2
        assert opened.check(PASSWORD) == Exposure(False, 3)
        assert opened.check(PASSWORD) == Exposure(False, 3)
        assert len(mocked.calls) == 1
        assert "Add-Padding" not in mocked.calls[0].request.headers

    def test_session_passed_through(self) -> None:
        """A session given to open is the one the client uses."""
        session = requests.Session()
        assert open_remote(DEFAULT_BASE_URL, session=session).client.driver.session is session  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------------------
# The drivers' surface


def _private_members(kind: type) -> set[str]:
    """The private names a driver class defines: its methods and the attributes its methods set on self."""
    names = {name for name in vars(kind) if name.startswith("_")}
    for node in ast.walk(ast.parse(inspect.getsource(kind))):
        if isinstance(node, ast.Attribute) and _on_self(node) and node.attr.startswith("_"):
            names.add(node.attr)
    return {name for name in names if not name.startswith("__")}


def _on_self(node: ast.Attribute) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id == "self"


def test_nothing_reaches_into_a_driver() -> None:
    """No module reads a driver's private members (drive, clock and close are its surface), only the driver."""
    from credcheck._keepalive import KeepAliveDriver
    from credcheck.aio import AsyncFlowDriver
    from credcheck.client import FlowDriver

    private = set().union(*(_private_members(kind) for kind in (FlowDriver, AsyncFlowDriver, KeepAliveDriver)))
    reaching = []
    for path in sorted(Path(credcheck.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in private and not _on_self(node):
                reaching.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert reaching == []
