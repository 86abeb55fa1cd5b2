"""The httpx driver (credcheck.aio): the sync checker's answers and failures, from async code.

Unit tests run against ``httpx.MockTransport``; end-to-end tests against a real ``credcheck serve`` and a raw
socket server on 127.0.0.1 that writes cut, dripping or malformed responses byte by byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import hashlib
import re
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import anyio
import httpx
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import credcheck
from credcheck import open_async, open_async_pairs
from credcheck._http.options import default_user_agent
from credcheck._http.ranges import DEFAULT_BASE_URL
from credcheck.aio import AsyncRangeClient, AsyncRemoteChecker
from credcheck.checker import Exposure
from credcheck.errors import ClosedError, RemoteError, RemoteErrorCode
from credcheck.pairs import _oprf
from credcheck.pairs._service import PairService, make_pair_service
from credcheck.pairs.checker import PairExposure, PairStatus
from credcheck.pairs.stretch import Stretch
from credcheck.server import serve_in_background

from .helpers import CLEAN, KEY, LEAKED, corpus, hold_in_thread, secrets_in_frames, secrets_in_threads
from .helpers import call as wsgi_call
from .pairs_fixtures import OTHER_KEY, build_store

Code = RemoteErrorCode
_T = TypeVar("_T")

PASSWORD = "password"
PASSWORD_SHA1 = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8"
PREFIX, SUFFIX = PASSWORD_SHA1[:5], PASSWORD_SHA1[5:]
OTHER_SUFFIX = "0" * 35
NTLM_PASSWORD, NTLM_HASH = "Passw0rd!", "FC525C9683E8FE067095BA2DDC971889"
SECRET = "Zebra-Secret-7f3a9q!"


def run(coroutine: Awaitable[_T]) -> _T:
    async def main() -> _T:
        return await coroutine

    return asyncio.run(main())


Handler = Callable[[httpx.Request], httpx.Response]


class Mock:
    """A MockTransport that answers with ``handler`` and records every request it saw."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def session(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))

    def checker(self, url: str = DEFAULT_BASE_URL, **options: Any) -> AsyncRemoteChecker:
        return open_async(url, session=self.session(), **options)


def framed(raw: bytes, status: int = 200, /, **headers: str) -> httpx.Response:
    """A response as a server frames it: raw bytes not yet read, with their Content-Length (unless given)."""
    return httpx.Response(status, headers={"Content-Length": str(len(raw)), **headers}, stream=httpx.ByteStream(raw))


def body(text: str | bytes, status: int = 200, /, **headers: str) -> Handler:
    raw = text.encode() if isinstance(text, str) else text
    return lambda request: framed(raw, status, **headers)


def ask(mock: Mock, password: str = PASSWORD, **options: Any) -> Exposure:
    async def go() -> Exposure:
        async with mock.checker(**options) as checker:
            return await checker.check(password)

    return run(go())


def failure(mock: Mock, password: str = PASSWORD, **options: Any) -> RemoteError:
    options.setdefault("retries", 0)
    with pytest.raises(RemoteError) as caught:
        ask(mock, password, **options)
    return caught.value


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The driver's waits, recorded instead of slept."""
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(anyio, "sleep", sleep)
    return waited


class TestAnswers:
    def test_compromised_with_count(self) -> None:
        """'password' is compromised with the count of its suffix in the range."""
        assert ask(Mock(body(f"{OTHER_SUFFIX}:5\r\n{SUFFIX}:123"))) == Exposure(True, 123)

    def test_absent_suffix(self) -> None:
        """A suffix missing from its range is not compromised, with count 0."""
        assert ask(Mock(body(f"{OTHER_SUFFIX}:5"))) == Exposure(False, 0)

    def test_padding_line_is_not_a_hit(self) -> None:
        """A padding line (count 0) for the very suffix asked about is not a hit."""
        assert ask(Mock(body(f"{OTHER_SUFFIX}:5\r\n{SUFFIX}:0"))) == Exposure(False, 0)

    @pytest.mark.parametrize(
        ("count", "min_count", "compromised"), [(123, 1, True), (123, 123, True), (123, 124, False)]
    )
    def test_min_count(self, count: int, min_count: int, compromised: bool) -> None:
        """min_count decides as in the sync checker; the count is kept."""
        assert ask(Mock(body(f"{SUFFIX}:{count}")), min_count=min_count) == Exposure(compromised, count)

    def test_ntlm(self) -> None:
        """An NTLM checker asks for ?mode=ntlm and finds the HIBP NTLM vector."""
        mock = Mock(body(f"{NTLM_HASH[5:]}:42"))
        assert ask(mock, NTLM_PASSWORD, scheme="ntlm") == Exposure(True, 42)
        assert str(mock.requests[0].url) == f"{DEFAULT_BASE_URL}/range/{NTLM_HASH[:5]}?mode=ntlm"

    def test_check_hash_and_hashes(self) -> None:
        """check_hash and check_hashes look full hex digests up; a bad one is a ValueError naming its position."""

        async def go() -> None:
            async with Mock(body(f"{SUFFIX}:7")).checker() as checker:
                assert await checker.check_hash(PASSWORD_SHA1.lower()) == Exposure(True, 7)
                assert await checker.check_hashes([PASSWORD_SHA1, PREFIX + OTHER_SUFFIX]) == [
                    Exposure(True, 7),
                    Exposure(False, 0),
                ]
                with pytest.raises(ValueError, match="40 hex digits"):
                    await checker.check_hashes([PASSWORD_SHA1, "Z" * 40])

        run(go())

    def test_check_many_one_request_per_prefix(self) -> None:
        """A batch asks once per distinct prefix, concurrently, and answers in input order."""
        ranges = {PREFIX: f"{SUFFIX}:123"}
        mock = Mock(lambda r: framed(ranges.get(r.url.path[-5:], "").encode()))

        async def go() -> list[Exposure]:
            async with mock.checker() as checker:
                return await checker.check_many([PASSWORD, "letmein", PASSWORD, "dragon"])

        assert run(go()) == [Exposure(True, 123), Exposure(False, 0), Exposure(True, 123), Exposure(False, 0)]
        assert sorted(r.url.path[-5:] for r in mock.requests) == sorted(
            {PREFIX, credcheck.sha1_hex("letmein")[:5], credcheck.sha1_hex("dragon")[:5]}
        )

    def test_batch_fails_when_one_prefix_fails(self) -> None:
        """One unanswerable prefix fails the batch with its RemoteError itself (no exception group)."""
        mock = Mock(lambda r: framed(b"", 500 if r.url.path.endswith(PREFIX) else 200))

        async def go() -> None:
            async with mock.checker(retries=0) as checker:
                await checker.check_many(["letmein", PASSWORD, "dragon"])

        with pytest.raises(RemoteError) as caught:
            run(go())
        assert caught.value.code is Code.HTTP_STATUS

    def test_cache(self) -> None:
        """With cache=True a fresh range is asked for once."""
        mock = Mock(body(f"{SUFFIX}:3", **{"Cache-Control": "max-age=60"}))

        async def go() -> None:
            async with mock.checker(cache=True) as checker:
                assert await checker.check(PASSWORD) == await checker.check(PASSWORD) == Exposure(True, 3)

        run(go())
        assert len(mock.requests) == 1


class TestRequests:
    def test_padding_user_agent_and_encoding(self) -> None:
        """Add-Padding, the default User-Agent and Accept-Encoding: gzip are sent."""
        mock = Mock(body(f"{SUFFIX}:1"))
        ask(mock)
        (request,) = mock.requests
        assert request.headers["Add-Padding"] == "true"
        assert request.headers["User-Agent"] == default_user_agent()
        assert request.headers["Accept-Encoding"] == "gzip"

    def test_padding_off(self) -> None:
        """padding=False sends no Add-Padding header."""
        mock = Mock(body(""))
        ask(mock, padding=False)
        assert "Add-Padding" not in mock.requests[0].headers

    def test_only_the_prefix_leaves(self) -> None:
        """Every request is a bodiless GET of /range/ and 5 hex characters; nothing else of a hash is sent."""
        mock = Mock(body(""))

        async def go() -> None:
            # Not the public API's host: its name holds "password".
            async with mock.checker("https://ranges.example") as checker:
                await checker.check(SECRET)
                await checker.check_many([SECRET, PASSWORD])
                await checker.check_hash(PASSWORD_SHA1)
            async with mock.checker("https://ranges.example", scheme="ntlm") as checker:
                await checker.check(SECRET)

        run(go())
        digests = [credcheck.sha1_hex(SECRET), credcheck.ntlm_hex(SECRET), PASSWORD_SHA1]
        forbidden = [SECRET, PASSWORD, *digests, *(d[5:] for d in digests)]
        assert len(mock.requests) == 5
        for request in mock.requests:
            assert request.method == "GET" and request.content == b""
            assert re.fullmatch(r"/range/[0-9A-F]{5}", request.url.path)
            assert request.url.query in (b"", b"mode=ntlm")
            sent = " ".join([str(request.url), *request.headers.keys(), *request.headers.values()]).upper()
            assert not [secret for secret in forbidden if secret.upper() in sent]

    def test_redirect_within_origin_followed(self) -> None:
        """A same-origin redirect is followed by the flow (httpx follows none itself)."""

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.startswith("/range/"):
                return httpx.Response(302, headers={"Location": f"/v2/range/{PREFIX}"})
            return framed(f"{SUFFIX}:9".encode())

        mock = Mock(handler)
        assert ask(mock) == Exposure(True, 9)
        assert [r.url.path for r in mock.requests] == [f"/range/{PREFIX}", f"/v2/range/{PREFIX}"]

    def test_redirect_to_another_origin_refused(self) -> None:
        """A redirect to another host is an error, not followed."""
        mock = Mock(lambda r: httpx.Response(301, headers={"Location": "https://elsewhere.example/range/ABCDE"}))
        assert failure(mock).code is Code.HTTP_STATUS
        assert len(mock.requests) == 1


class TestFailures:
    @pytest.mark.parametrize(
        ("handler", "code"),
        [
            (body("<html>maintenance</html>"), Code.BAD_RESPONSE),
            (body("<html>maintenance</html>", **{"Content-Type": "text/html"}), Code.BAD_RESPONSE),
            (body(f"{SUFFIX}:1\r\n{SUFFIX[:10]}"), Code.BAD_RESPONSE),
            (body(f"{SUFFIX}:1", **{"Content-Length": "100"}), Code.CONNECTION),
            (lambda r: httpx.Response(200, stream=httpx.ByteStream(f"{SUFFIX}:1".encode())), Code.BAD_RESPONSE),
            (body(gzip.compress(f"{SUFFIX}:1".encode())[:-6], **{"Content-Encoding": "gzip"}), Code.BAD_RESPONSE),
            (body(b"not gzip at all", **{"Content-Encoding": "gzip"}), Code.BAD_RESPONSE),
            (body(f"{SUFFIX}:1", **{"Content-Encoding": "br"}), Code.BAD_RESPONSE),
            (body("", 404), Code.HTTP_STATUS),
            (body("", 500), Code.HTTP_STATUS),
            (lambda r: httpx.Response(200, content=f"{SUFFIX}:1".encode()), Code.BAD_RESPONSE),
        ],
        ids=[
            "html",
            "html-content-type",
            "cut-line",
            "content-length-shortfall",
            "unframed",
            "cut-gzip",
            "not-gzip",
            "brotli",
            "404",
            "500",
            "read-already",
        ],
    )
    def test_never_not_compromised(self, handler: Handler, code: RemoteErrorCode) -> None:
        """A body that cannot be proven whole and well-formed is a RemoteError, never "not compromised"."""
        assert failure(Mock(handler)).code is code

    def test_gzip_body_decoded(self) -> None:
        """A whole gzip body is decoded by the protocol (the driver reads raw bytes)."""
        assert ask(Mock(body(gzip.compress(f"{SUFFIX}:4".encode()), **{"Content-Encoding": "gzip"}))) == Exposure(
            True, 4
        )

    @pytest.mark.parametrize(
        ("error", "code", "attempts"),
        [
            (httpx.ConnectError("refused"), Code.CONNECTION, 3),
            (httpx.ReadTimeout("slow"), Code.TIMEOUT, 3),
            (httpx.ConnectTimeout("slow"), Code.TIMEOUT, 3),
            (httpx.RemoteProtocolError("peer closed"), Code.CONNECTION, 3),
            (httpx.ReadError("reset"), Code.CONNECTION, 3),
            (httpx.UnsupportedProtocol("gopher"), Code.CONNECTION, 1),
        ],
        ids=["connect", "read-timeout", "connect-timeout", "protocol", "read", "unsupported"],
    )
    def test_transport_errors_classified(
        self, sleeps: list[float], error: Exception, code: RemoteErrorCode, attempts: int
    ) -> None:
        """httpx's errors become the requests driver's kinds; the retryable ones are retried."""

        def handler(request: httpx.Request) -> httpx.Response:
            raise error

        mock = Mock(handler)
        assert failure(mock, retries=2).code is code
        assert len(mock.requests) == attempts

    def test_tls_failure_not_retried(self, sleeps: list[float]) -> None:
        """A certificate failure is a CONNECTION error that is not retried."""

        def handler(request: httpx.Request) -> httpx.Response:
            try:
                raise ssl.SSLCertVerificationError("certificate verify failed")
            except ssl.SSLError as exc:
                raise httpx.ConnectError("tls") from exc

        mock = Mock(handler)
        error = failure(mock, retries=3)
        assert error.code is Code.CONNECTION and "TLS" in str(error)
        assert len(mock.requests) == 1

    def test_5xx_retried_with_backoff(self, sleeps: list[float]) -> None:
        """A 503 is retried after backoff_factor * 2**n (the flow's Waits), then answered."""
        answers = iter([framed(b"", 503), framed(b"", 503), framed(f"{SUFFIX}:2".encode())])
        assert ask(Mock(lambda r: next(answers)), retries=3) == Exposure(True, 2)
        assert sleeps == [0.2, 0.4]

    def test_429_honours_retry_after(self, sleeps: list[float]) -> None:
        """A 429 with Retry-After is retried after exactly that wait."""
        answers = iter([framed(b"", 429, **{"Retry-After": "2"}), framed(b"")])
        assert ask(Mock(lambda r: next(answers)), deadline=10) == Exposure(False, 0)
        assert sleeps == [2.0]

    def test_retry_after_past_deadline_gives_up(self, sleeps: list[float]) -> None:
        """A Retry-After that would pass the deadline is not waited for."""
        mock = Mock(lambda r: httpx.Response(429, headers={"Retry-After": "30"}))
        error = failure(mock, retries=3, deadline=5)
        assert error.code is Code.HTTP_STATUS and "deadline" in str(error)
        assert sleeps == [] and len(mock.requests) == 1

    def test_message_names_the_prefix_only(self) -> None:
        """A RemoteError names the prefix, never the suffix or the password; its repr neither."""
        error = failure(Mock(body("<html/>")), SECRET)
        digest = credcheck.sha1_hex(SECRET)
        text = str(error) + repr(error)
        assert digest[:5] in text and digest[5:] not in text and SECRET not in text


class TestLifecycle:
    def test_closed_checker_refuses(self) -> None:
        """A check after aclose raises ClosedError; aclose is idempotent; an owned client is closed."""

        async def go() -> None:
            checker = open_async(DEFAULT_BASE_URL)
            await checker.aclose()
            await checker.aclose()
            assert checker.client.driver.session.is_closed
            with pytest.raises(ClosedError):
                await checker.check(PASSWORD)

        run(go())

    def test_injected_session_left_open(self) -> None:
        """A client passed in is the caller's: aclose leaves it open."""

        async def go() -> None:
            session = Mock(body("")).session()
            async with open_async(DEFAULT_BASE_URL, session=session) as checker:
                await checker.check(PASSWORD)
            assert not session.is_closed
            await session.aclose()

        run(go())

    def test_session_of_the_wrong_kind(self) -> None:
        """A requests.Session is refused with a TypeError naming the kind wanted."""
        with pytest.raises(TypeError, match=r"httpx\.AsyncClient"):
            open_async(DEFAULT_BASE_URL, session=requests.Session())

    @pytest.mark.parametrize(
        "options",
        [
            {"timeout": 0},
            {"timeout": (1, 2, 3)},
            {"deadline": -1},
            {"retries": -1},
            {"retries": True},
            {"cache": -3},
            {"max_workers": 0},
            {"min_count": 0},
            {"scheme": "md5"},
            {"hash": "ntlm"},
            {"colour": "blue"},
        ],
    )
    def test_options_checked_as_the_sync_ones(self, options: dict[str, Any]) -> None:
        """A bad option fails the same way, with the same message, as credcheck.open's."""
        with pytest.raises((TypeError, ValueError)) as sync:
            credcheck.open(DEFAULT_BASE_URL, **options)
        with pytest.raises(type(sync.value)) as async_:
            open_async(DEFAULT_BASE_URL, **options)
        assert str(async_.value) == str(sync.value)

    @pytest.mark.parametrize("url", ["ftp://example.com", "https://example.com/range", "/srv/pwned.store"])
    def test_bad_url(self, url: str) -> None:
        """Not an http(s) API root: a ValueError, as for the sync client."""
        with pytest.raises(ValueError):
            open_async(url)

    def test_repr_redacts_credentials(self) -> None:
        """The repr names the service without its user:password part."""
        text = repr(open_async("https://user:hunter2@ranges.example", scheme="ntlm", min_count=2))
        assert "ranges.example" in text and "hunter2" not in text and "min_count=2" in text

    def test_range_client_alone(self) -> None:
        """AsyncRangeClient.get_range answers {SUFFIX: count}, padding dropped."""

        async def go() -> dict[str, int]:
            async with AsyncRangeClient(session=Mock(body(f"{SUFFIX}:3\r\n{OTHER_SUFFIX}:0")).session()) as client:
                return await client.get_range(PREFIX.lower())

        assert run(go()) == {SUFFIX: 3}


FORBIDDEN: list[str | bytes] = [
    SECRET,
    credcheck.sha1_hex(SECRET),
    credcheck.sha1_hex(SECRET)[5:],
    credcheck.sha1_hex(SECRET).lower(),
    credcheck.ntlm_hex(SECRET),
    credcheck.ntlm_hex(SECRET)[5:],
    SECRET.encode(),
    bytes.fromhex(credcheck.sha1_hex(SECRET)),
    bytes.fromhex(credcheck.ntlm_hex(SECRET)),
]


class TestFrameLocals:
    @pytest.mark.parametrize("scheme", ["sha1", "ntlm"])
    def test_errors_hold_no_secret(self, scheme: str, dead_api: str) -> None:
        """RemoteError, ValueError and ClosedError leaving the async checker carry no frame holding a secret."""
        full = credcheck.sha1_hex(SECRET) if scheme == "sha1" else credcheck.ntlm_hex(SECRET)

        async def collect() -> list[BaseException]:
            errors: list[BaseException] = []
            calls: list[Callable[[AsyncRemoteChecker], Awaitable[object]]] = [
                lambda c: c.check(SECRET),
                lambda c: c.check_many([SECRET, "other"]),
                lambda c: c.check_hash(full),
                lambda c: c.check_hashes([full, full[:-1] + "Z"]),
                lambda c: c.check_many([SECRET, 42]),  # type: ignore[list-item]
            ]
            garbage = Mock(body(f"{full[5:]}:1\r\n{full[5:]}"))
            for checker in (open_async(dead_api, retries=0, scheme=scheme), garbage.checker(retries=0, scheme=scheme)):
                for call in calls:
                    try:
                        await call(checker)
                    except Exception as exc:
                        errors.append(exc)
                await checker.aclose()
                try:
                    await checker.check(SECRET)
                except ClosedError as exc:
                    errors.append(exc)
            return errors

        errors = run(collect())
        assert len(errors) == 12
        assert [leak for error in errors for leak in secrets_in_frames(error, FORBIDDEN)] == []
        assert not [e for e in errors if any(str(s) in str(e) or str(s) in repr(e) for s in FORBIDDEN[:6])]


# ----------------------------------------------------------------------------------------------------
# End to end: a real credcheck serve on 127.0.0.1


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The helpers' corpus as a SHA-1 and an NTLM store, served by credcheck on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("aio")
    stores = []
    for scheme in ("sha1", "ntlm"):
        dump = folder / f"{scheme}.txt"
        dump.write_text("\n".join(f"{h}:{n}" for h, n in corpus(scheme).items()))
        stores.append(folder / f"{scheme}.store")
        credcheck.build([dump], store=stores[-1], scheme=scheme)
    with serve_in_background(stores) as url:
        yield url


def both(url: str, passwords: list[str], **options: Any) -> tuple[list[Exposure], list[Exposure]]:
    """What the sync and the async checker answer for ``passwords`` against ``url`` with ``options``."""
    with credcheck.open(url, **options) as sync:
        expected = [sync.check(p) for p in passwords]

    async def go() -> list[Exposure]:
        async with open_async(url, **options) as checker:
            return [await checker.check(p) for p in passwords]

    return expected, run(go())


PASSWORDS = [*LEAKED, *CLEAN]


class TestAgainstServe:
    @pytest.mark.parametrize("scheme", ["sha1", "ntlm"])
    @pytest.mark.parametrize("min_count", [1, 7, 2_025])
    def test_same_answers_as_sync(self, served: str, scheme: str, min_count: int) -> None:
        """compromised, not compromised, min_count and NTLM: the async checker answers as the sync one."""
        expected, got = both(served, PASSWORDS, scheme=scheme, min_count=min_count)
        assert got == expected
        assert any(e.compromised for e in expected) and any(not e.compromised for e in expected)

    def test_check_many_as_sync(self, served: str) -> None:
        """A batch answers in input order, as the sync batch."""

        async def go() -> list[Exposure]:
            async with open_async(served, max_workers=3) as checker:
                return await checker.check_many(PASSWORDS * 2)

        with credcheck.open(served) as sync:
            assert run(go()) == sync.check_many(PASSWORDS * 2)

    def test_padding_requested_and_ignored(self, served: str) -> None:
        """Add-Padding goes out on the wire, the server pads, and the answers ignore the padding lines."""
        seen: list[httpx.Request] = []

        async def go() -> tuple[Exposure, bytes]:
            async with httpx.AsyncClient(event_hooks={"request": [_record(seen)]}) as session:
                checker = open_async(served, session=session)
                exposure = await checker.check("letmein")
                padded = await session.get(
                    f"{served}/range/{credcheck.sha1_hex('letmein')[:5]}", headers={"Add-Padding": "true"}
                )
                return exposure, padded.content

        exposure, padded = run(go())
        assert exposure == Exposure(True, LEAKED["letmein"])
        assert seen[0].headers["Add-Padding"] == "true"
        assert b":0\r\n" in padded + b"\r\n"

    def test_connection_refused(self, dead_api: str) -> None:
        """A closed port is a CONNECTION RemoteError, never "not compromised"."""

        async def go() -> None:
            async with open_async(dead_api, retries=0) as checker:
                await checker.check(PASSWORD)

        with pytest.raises(RemoteError) as caught:
            run(go())
        assert caught.value.code is Code.CONNECTION

    @settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        passwords=st.lists(st.one_of(st.sampled_from([*LEAKED, *CLEAN]), st.text(max_size=30)), min_size=1, max_size=6),
        scheme=st.sampled_from(["sha1", "ntlm"]),
        min_count=st.integers(1, 10),
    )
    def test_property_same_exposure(self, served: str, passwords: list[str], scheme: str, min_count: int) -> None:
        """For any passwords, scheme and threshold, async and sync give the same Exposures from the same store."""
        passwords = [p for p in passwords if not any(0xD800 <= ord(c) <= 0xDFFF for c in p)]
        expected, got = both(served, passwords, scheme=scheme, min_count=min_count)
        assert got == expected


def _record(seen: list[httpx.Request]) -> Callable[[httpx.Request], Awaitable[None]]:
    async def hook(request: httpx.Request) -> None:
        seen.append(request)

    return hook


# ----------------------------------------------------------------------------------------------------
# End to end: a raw socket server on 127.0.0.1 that writes exactly the bytes a test gives it

Script = bytes | Callable[[socket.socket, threading.Event], None]


@contextlib.contextmanager
def scripted(*scripts: Script) -> Iterator[tuple[str, list[bytes]]]:
    """Serve one script per connection (bytes written then closed, or a function of the socket); yield the base
    URL and the request heads received. Connections beyond the scripts are closed at once."""
    heads: list[bytes] = []
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]

    def serve() -> None:
        pending = list(scripts)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                head = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in head:
                        piece = conn.recv(4096)
                        if not piece:
                            break
                        head += piece
                heads.append(head)
                if pending:
                    script = pending.pop(0)
                    with contextlib.suppress(OSError):
                        if isinstance(script, bytes):
                            conn.sendall(script)
                        else:
                            script(conn, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", heads
    finally:
        stop.set()
        thread.join(10)
        listener.close()


def http_200(content: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in ("HTTP/1.1 200 OK", *headers))
    return head.encode() + b"\r\n" + content


def chunked(content: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(content[i : i + 7]), content[i : i + 7]) for i in range(0, len(content), 7))


RANGE = f"{OTHER_SUFFIX}:5\r\n{SUFFIX}:123".encode()


def drip(head: bytes) -> Callable[[socket.socket, threading.Event], None]:
    """Send ``head``, then one byte of a range line every 50 ms until the client goes or the test ends."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        for byte in head:
            conn.sendall(bytes([byte]))
            if stop.wait(0.05):
                return
        while not stop.wait(0.05):
            conn.sendall(b"0")

    return script


def remote_failure(url: str, **options: Any) -> RemoteError:
    async def go() -> None:
        async with open_async(url, retries=0, **options) as checker:
            await checker.check(PASSWORD)

    with pytest.raises(RemoteError) as caught:
        run(go())
    return caught.value


class TestHostileServer:
    def test_whole_response_answers(self) -> None:
        """The raw server itself: a well-framed chunked gzip body answers, and only a 5-hex prefix was sent."""
        zipped = gzip.compress(RANGE)
        with scripted(
            http_200(chunked(zipped) + b"0\r\n\r\n", "Transfer-Encoding: chunked", "Content-Encoding: gzip")
        ) as (
            url,
            heads,
        ):

            async def go() -> Exposure:
                async with open_async(url, retries=0) as checker:
                    return await checker.check(PASSWORD)

            assert run(go()) == Exposure(True, 123)
        (head,) = heads
        assert head.startswith(f"GET /range/{PREFIX} HTTP/1.1\r\n".encode())
        assert SUFFIX.encode() not in head.upper() and PASSWORD.encode() not in head

    @pytest.mark.parametrize(
        ("script", "code"),
        [
            (http_200(RANGE[:-10], f"Content-Length: {len(RANGE)}"), Code.CONNECTION),
            (http_200(chunked(RANGE)[:-3], "Transfer-Encoding: chunked"), Code.CONNECTION),
            (http_200(chunked(RANGE), "Transfer-Encoding: chunked"), Code.CONNECTION),
            (
                http_200(
                    chunked(gzip.compress(RANGE)[:-8]) + b"0\r\n\r\n",
                    "Transfer-Encoding: chunked",
                    "Content-Encoding: gzip",
                ),
                Code.BAD_RESPONSE,
            ),
            (http_200(RANGE, "Connection: close"), Code.BAD_RESPONSE),
            (http_200(b"<html>hello</html>", "Content-Length: 18", "Content-Type: text/html"), Code.BAD_RESPONSE),
            (b"HTTP/1.1 200 OK\r\nContent-Len", Code.CONNECTION),
            (b"", Code.CONNECTION),
        ],
        ids=[
            "content-length-shortfall",
            "cut-chunk",
            "no-last-chunk",
            "cut-gzip",
            "close-delimited",
            "html-200",
            "cut-head",
            "closed-at-once",
        ],
    )
    def test_cut_or_malformed_is_an_error(self, script: bytes, code: RemoteErrorCode) -> None:
        """A body cut short (by length, by chunk, by gzip stream), unframed or HTML: an error, never an answer."""
        with scripted(script) as (url, _):
            assert remote_failure(url).code is code

    @pytest.mark.parametrize(
        "head",
        [f"HTTP/1.1 200 OK\r\nContent-Length: {10 * len(RANGE)}\r\n\r\n".encode(), b"HTTP/1.1 200 OK\r\nX-Slow: "],
        ids=["body", "head"],
    )
    def test_dripping_server_hits_the_deadline(self, head: bytes) -> None:
        """A server that drips bytes within every read timeout is cut off at the deadline: a TIMEOUT."""
        with scripted(drip(head)) as (url, _):
            error = remote_failure(url, timeout=2.0, deadline=0.6)
        assert error.code is Code.TIMEOUT and "deadline" in str(error)

    def test_no_cookie_sent_back(self) -> None:
        """A cookie the server sets is not stored: the next request carries none."""
        setting = http_200(b"", "Content-Length: 0", "Set-Cookie: track=me; Path=/")
        with scripted(setting, setting) as (url, heads):

            async def go() -> None:
                async with open_async(url) as checker:
                    await checker.check(PASSWORD)
                    await checker.check("letmein")

            run(go())
        assert len(heads) == 2 and b"cookie" not in heads[1].lower()

    def test_429_then_success(self, sleeps: list[float]) -> None:
        """A real 429 with Retry-After is waited out (as the flow says), then the range answers."""
        too_many = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
        with scripted(too_many, http_200(RANGE, f"Content-Length: {len(RANGE)}")) as (url, heads):

            async def go() -> Exposure:
                async with open_async(url, retries=2) as checker:
                    return await checker.check(PASSWORD)

            assert run(go()) == Exposure(True, 123)
        assert sleeps == [1.0] and len(heads) == 2


def test_module_names() -> None:
    """The async openers are credcheck's, beside open and open_pairs; the httpx clients are credcheck.aio's."""
    import credcheck.aio

    assert {"open", "open_pairs", "open_async", "open_async_pairs"} <= set(credcheck.__all__)
    assert {"AsyncRangeClient", "AsyncPairClient", "AsyncRemoteChecker"} <= set(credcheck.aio.__all__)
    assert Path(credcheck.aio.__file__).name == "aio.py"


# ----------------------------------------------------------------------------------------------------
# The pair flow over httpx, against a real pair service on 127.0.0.1


@pytest.fixture(scope="module")
def pair_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PairService]:
    with make_pair_service(build_store(tmp_path_factory.mktemp("aio-pairs")), KEY, rate=0) as service:
        yield service


@pytest.fixture(scope="module")
def pair_url(pair_service: PairService) -> Iterator[str]:
    with serve_in_background(pairs=pair_service) as url:
        yield url


PAIR_FAST: dict[str, Any] = {"retries": 0, "timeout": 2.0, "deadline": 5.0}


class TestPairs:
    PAIRS: ClassVar = [
        ("Alice@Example.com", "Summer2019"),
        ("  ALICE@example.COM ", "Summer2019"),
        ("alice@example.com", "summer2019"),
        ("bob", "something else"),
        ("carol", "hunter2"),
    ]

    def test_same_answers_as_sync(self, pair_url: str) -> None:
        """Exact, similar, username only and not found: the async pair checker answers as the sync one."""
        with credcheck.open_pairs(pair_url, **PAIR_FAST) as sync:
            expected = sync.check_many(self.PAIRS)

        async def go() -> list[PairExposure]:
            async with open_async_pairs(pair_url, **PAIR_FAST) as checker:
                answers = await checker.check_many(self.PAIRS)
                assert await checker.check_hash("bob", credcheck.sha1_hex("hunter2")) == PairExposure(PairStatus.EXACT)
                assert (await checker.get_config()).key_id == KEY.key_id
                return answers

        assert run(go()) == expected
        assert {e.status for e in expected} == set(PairStatus)

    def test_wrong_pinned_key(self, pair_url: str) -> None:
        """A server whose key is not the pinned one is a RemoteError, never NOT_FOUND."""

        async def go() -> None:
            async with open_async_pairs(pair_url, public_key=OTHER_KEY.pk, **PAIR_FAST) as checker:
                await checker.check("bob", "hunter2")

        with pytest.raises(RemoteError) as caught:
            run(go())
        assert caught.value.code is Code.BAD_RESPONSE

    def test_dead_service(self, dead_api: str) -> None:
        """A closed port is a CONNECTION RemoteError whose traceback holds no frame with the username or password."""

        async def go() -> None:
            async with open_async_pairs(dead_api, **PAIR_FAST) as checker:
                await checker.check("carol@example.com", SECRET)

        with pytest.raises(RemoteError) as caught:
            run(go())
        assert caught.value.code is Code.CONNECTION
        assert secrets_in_frames(caught.value, [SECRET, "carol@example.com", SECRET.encode()]) == []
        assert SECRET not in str(caught.value)

    def test_options_checked(self) -> None:
        """The sync pair checker's option checks: a bad public key or timeout is a ValueError."""
        for options in ({"public_key": "zz"}, {"timeout": 0}, {"pool_size": 0}):
            with pytest.raises(ValueError):
                open_async_pairs("https://pairs.example", **options)


# ----------------------------------------------------------------------------------------------------
# Every check path ends in a CredcheckError (ClosedError once closed) or, cancelled, in the backend's own
# cancellation; either way no frame reachable from it, and no thread still running, holds a secret.

PAIR = ("Alice@Example.com", "Summer2019")  # EXACT in the served pair store
PAIR_SECRETS: list[str | bytes] = [
    *PAIR,
    b"Summer2019",
    b"alice@example.com",  # the canonical username: in the bucket hash's and the stretch's input
    hashlib.sha1(b"Summer2019").digest(),
]
RANGE_PASSWORD = "Passw0rd!"  # in the served corpus
RANGE_SECRETS: list[str | bytes] = [
    RANGE_PASSWORD,
    RANGE_PASSWORD.encode(),
    *(
        form
        for full in (credcheck.sha1_hex(RANGE_PASSWORD), credcheck.ntlm_hex(RANGE_PASSWORD))
        for form in (full, full.lower(), full[5:], bytes.fromhex(full))
    ),
]


@dataclasses.dataclass
class Kind:
    """One async checker to attack: how to open it, its check methods, the right answer, what must not leak."""

    open: Callable[[], Any]
    calls: list[Callable[[Any], Awaitable[object]]]
    answer: object
    secrets: list[str | bytes]


@pytest.fixture(params=["range", "pairs"])
def kind(request: pytest.FixtureRequest) -> Kind:
    if request.param == "range":
        url = request.getfixturevalue("served")
        full = credcheck.sha1_hex(RANGE_PASSWORD)
        return Kind(
            lambda: open_async(url, retries=0),
            [
                lambda c: c.check(RANGE_PASSWORD),
                lambda c: c.check_many([RANGE_PASSWORD, "other"]),
                lambda c: c.check_hash(full),
                lambda c: c.check_hashes([full]),
            ],
            Exposure(True, 2_024),
            RANGE_SECRETS,
        )
    url = request.getfixturevalue("pair_url")
    return Kind(
        lambda: open_async_pairs(url, **PAIR_FAST),
        [
            lambda c: c.check(*PAIR),
            lambda c: c.check_many([PAIR]),
            lambda c: c.check_hash(PAIR[0], credcheck.sha1_hex(PAIR[1])),
            lambda c: c.check_canonical(b"alice@example.com", hashlib.sha1(b"Summer2019").digest()),
        ],
        PairExposure(PairStatus.EXACT),
        PAIR_SECRETS,
    )


def _first(answer: object) -> object:
    return answer[0] if isinstance(answer, list) else answer


class TestEveryCheckPath:
    @pytest.mark.parametrize("closing", ["aclose", "aclose twice", "async with"])
    @pytest.mark.parametrize("method", range(4))
    def test_after_close(self, kind: Kind, closing: str, method: int) -> None:
        """Each check method of a closed checker raises ClosedError, whose frames hold no secret."""

        async def go() -> BaseException:
            checker = kind.open()
            if closing == "async with":
                async with checker:
                    pass
            else:
                await checker.aclose()
                if closing == "aclose twice":
                    await checker.aclose()
            with pytest.raises(ClosedError) as caught:
                await kind.calls[method](checker)
            return caught.value

        assert secrets_in_frames(run(go()), kind.secrets) == []

    def test_checks_racing_aclose(self, kind: Kind) -> None:
        """16 tasks check while another closes: each check answers right or raises ClosedError (one that starts
        after aclose returned always does), never another error."""
        outcomes: list[object] = []

        async def go() -> None:
            checker = kind.open()
            closed = False

            async def worker(method: int) -> None:
                while True:
                    after_close = closed
                    try:
                        answer = await kind.calls[method % 4](checker)
                    except ClosedError as exc:
                        outcomes.append(exc)
                        return
                    if after_close:
                        outcomes.append(AssertionError("a check started after aclose() answered"))
                        return
                    outcomes.append(_first(answer))

            async def closer() -> None:
                nonlocal closed
                while len(outcomes) < 16:
                    await anyio.sleep(0.001)
                await checker.aclose()
                closed = True

            async with anyio.create_task_group() as group:
                for method in range(16):
                    group.start_soon(worker, method)
                group.start_soon(closer)

        run(go())
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert [type(e).__name__ for e in errors] == ["ClosedError"] * 16
        assert {str(o) for o in outcomes if not isinstance(o, BaseException)} == {str(kind.answer)}
        assert [leak for error in errors for leak in secrets_in_frames(error, kind.secrets)] == []


class TestCancelled:
    """A cancelled check: the CancelledError's frames are cleared, and no thread of the check outlives it."""

    @pytest.mark.parametrize(("owner", "name"), [(Stretch, "__call__"), (_oprf, "verify_proof")])
    def test_cancelled_in_the_worker_thread(
        self, pair_url: str, monkeypatch: pytest.MonkeyPatch, owner: object, name: str
    ) -> None:
        """task.cancel() while the stretch (or the proof check) runs in its thread: the CancelledError reaches
        the caller only once that step is done, and neither it nor any thread holds the username or password."""
        entered, release, done = hold_in_thread(monkeypatch, owner, name)

        async def go() -> tuple[BaseException, bool, list[str]]:
            async with open_async_pairs(pair_url, **PAIR_FAST) as checker:
                await checker.get_config()
                task = asyncio.ensure_future(checker.check(*PAIR))
                await anyio.to_thread.run_sync(entered.wait)
                task.cancel()
                threading.Timer(0.2, release.set).start()  # the step goes on in its thread meanwhile
                with pytest.raises(asyncio.CancelledError) as caught:
                    await task
                return caught.value, done.is_set(), secrets_in_threads(PAIR_SECRETS)

        error, step_done, in_threads = run(go())
        assert step_done, "the CancelledError reached the caller while the step still ran in its thread"
        assert in_threads == []
        assert secrets_in_frames(error, PAIR_SECRETS) == []

    def test_cancelled_during_the_exchange(self, pair_service: PairService) -> None:
        """task.cancel() while the query is on the wire: a CancelledError with its frames cleared."""
        entered = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/config"):
                reply = wsgi_call(pair_service, "/v1/pairs/config")
                return framed(reply.body, **{"Content-Type": "application/json"})
            entered.set()
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async def go() -> BaseException:
            session = httpx.AsyncClient(transport=httpx.MockTransport(handler))
            async with open_async_pairs("https://pairs.example", session=session, **PAIR_FAST) as checker:
                task = asyncio.ensure_future(checker.check(*PAIR))
                await entered.wait()
                task.cancel()
                with pytest.raises(asyncio.CancelledError) as caught:
                    await task
            await session.aclose()
            return caught.value

        assert secrets_in_frames(run(go()), PAIR_SECRETS) == []

    @settings(max_examples=25, deadline=None)
    @given(delay=st.floats(0.0, 0.05))
    def test_wait_for_at_any_point(self, pair_url: str, delay: float) -> None:
        """asyncio.wait_for shorter than the check, cut anywhere: the answer, or a TimeoutError whose chain
        (the CancelledError) holds no secret, with no thread left holding one."""

        async def go() -> tuple[object, list[str]]:
            async with open_async_pairs(pair_url, **PAIR_FAST) as checker:
                try:
                    answer: object = await asyncio.wait_for(checker.check(*PAIR), delay)
                except TimeoutError as exc:
                    answer = exc
                return answer, secrets_in_threads(PAIR_SECRETS)

        answer, in_threads = run(go())
        assert in_threads == []
        if isinstance(answer, TimeoutError):
            assert isinstance(answer.__cause__, asyncio.CancelledError)
            assert secrets_in_frames(answer, PAIR_SECRETS) == []
        else:
            assert answer == PairExposure(PairStatus.EXACT)

    @pytest.mark.parametrize("how", ["wait_for 0", "task.cancel()"])
    @pytest.mark.parametrize("method", range(4))
    def test_cancelled_before_it_ran(self, kind: Kind, how: str, method: int) -> None:
        """Cancelled before its first step (so the coroutine never ran to clear anything itself): the error's
        frames hold no secret either."""

        async def go() -> BaseException:
            async with kind.open() as checker:
                if how == "wait_for 0":
                    with pytest.raises(TimeoutError) as timed_out:
                        await asyncio.wait_for(kind.calls[method](checker), 0)
                    return timed_out.value
                task = asyncio.ensure_future(kind.calls[method](checker))
                task.cancel()
                with pytest.raises(asyncio.CancelledError) as cancelled:
                    await task
                return cancelled.value

        assert secrets_in_frames(run(go()), kind.secrets) == []

    @pytest.mark.parametrize("where", ["exchange", "backoff"])
    def test_range_check_cancelled(self, where: str) -> None:
        """A range check cancelled on the wire or while it waits to retry: its frames hold no secret."""
        entered = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            entered.set()
            if where == "exchange":
                await anyio.sleep_forever()
            return framed(b"", 503, **{"Retry-After": "60"})

        async def go() -> BaseException:
            session = httpx.AsyncClient(transport=httpx.MockTransport(handler))
            async with open_async(DEFAULT_BASE_URL, session=session, deadline=120) as checker:
                task = asyncio.ensure_future(checker.check_many([RANGE_PASSWORD, "other"]))
                await entered.wait()
                await asyncio.sleep(0.01)
                task.cancel()
                with pytest.raises(asyncio.CancelledError) as caught:
                    await task
            await session.aclose()
            return caught.value

        assert secrets_in_frames(run(go()), RANGE_SECRETS) == []
