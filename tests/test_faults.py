"""Client faults over real sockets on 127.0.0.1: each ends in a RemoteError (or the caller's policy), never "clean"."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

import credcheck
from credcheck import RemoteError, RemoteErrorCode
from credcheck.checker import RemoteChecker
from credcheck.client import RangeClient

PASSWORD = "password"  # SHA-1 prefix 5BAA6
GOOD_BODY = b"1E4C9B93F3F0682250B6CF8331B7EE68FD8:3"

Handler = Callable[[socket.socket], None]


@contextlib.contextmanager
def raw_server(handler: Handler) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that runs ``handler`` on each accepted connection (in a thread)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=_guarded, args=(handler, conn), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def _guarded(handler: Handler, conn: socket.socket) -> None:
    with contextlib.suppress(OSError), conn:
        conn.settimeout(30)
        conn.recv(65536)  # the request
        handler(conn)


def _reply(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _client(url: str, **options: object) -> RemoteChecker:
    opts: dict[str, Any] = {"timeout": (0.5, 0.5), "deadline": 1.5, "retries": 1}
    opts.update(options)
    return RemoteChecker(RangeClient(url, **opts))


def _expect(checker: RemoteChecker, code: RemoteErrorCode) -> RemoteError:
    with checker, pytest.raises(RemoteError) as info:
        checker.check(PASSWORD)
    assert info.value.code == code
    assert PASSWORD not in str(info.value) and "1E4C9B93F3F0682250B6CF8331B7EE68FD8" not in str(info.value)
    return info.value


class TestConnectionFaults:
    def test_connection_refused(self) -> None:
        """A closed port is a CONNECTION error."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        _expect(_client(f"http://127.0.0.1:{port}"), RemoteErrorCode.CONNECTION)

    def test_connection_reset(self) -> None:
        """A server that resets the connection (RST) is a CONNECTION error."""

        def reset(conn: socket.socket) -> None:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        with raw_server(reset) as url:
            _expect(_client(url), RemoteErrorCode.CONNECTION)

    def test_dns_failure(self) -> None:
        """A host name that does not resolve (.invalid never does) is a CONNECTION error."""
        _expect(_client("http://no-such-host.invalid"), RemoteErrorCode.CONNECTION)

    def test_closed_after_headers(self) -> None:
        """A body cut short of its Content-Length is an error, never a shorter range."""

        def cut(conn: socket.socket) -> None:
            conn.sendall(_reply("200 OK", GOOD_BODY)[:-10])

        with raw_server(cut) as url, _client(url) as checker, pytest.raises(RemoteError):
            checker.check(PASSWORD)


OTHER_LINE = b"0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n"  # a range's first line, before the password's


def _gzip_cut_after_first_line() -> bytes:
    """A gzip stream of OTHER_LINE + GOOD_BODY flushed after the first line and stopped there: no final block, no
    trailer; what it decodes to is a whole, shorter range."""
    encoder = zlib.compressobj(wbits=31)
    return encoder.compress(OTHER_LINE) + encoder.flush(zlib.Z_SYNC_FLUSH)


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)


class TestBodiesCutShort:
    """A body cut short must never parse as a shorter range (the password's line may be the part missing)."""

    def test_close_delimited_body_is_refused(self) -> None:
        """A Connection: close 200 without Content-Length (here cut after a CRLF) is a BAD_RESPONSE."""

        def close_delimited(conn: socket.socket) -> None:
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + OTHER_LINE)

        with raw_server(close_delimited) as url:
            _expect(_client(url), RemoteErrorCode.BAD_RESPONSE)

    def test_gzip_without_final_block_is_refused(self) -> None:
        """A gzip stream without its final block and trailer, inside a correct Content-Length, is a BAD_RESPONSE."""
        body = _gzip_cut_after_first_line()
        assert zlib.decompressobj(wbits=31).decompress(body) == OTHER_LINE  # it reads as a whole, shorter range

        def cut_gzip(conn: socket.socket) -> None:
            conn.sendall(_reply("200 OK", body, "Content-Encoding: gzip"))

        with raw_server(cut_gzip) as url:
            _expect(_client(url), RemoteErrorCode.BAD_RESPONSE)

    def test_data_after_gzip_stream_is_refused(self) -> None:
        """Bytes after the end of a gzip stream (a second member, garbage) are a BAD_RESPONSE."""
        body = gzip.compress(OTHER_LINE) + gzip.compress(GOOD_BODY)

        def two_members(conn: socket.socket) -> None:
            conn.sendall(_reply("200 OK", body, "Content-Encoding: gzip"))

        with raw_server(two_members) as url:
            _expect(_client(url), RemoteErrorCode.BAD_RESPONSE)

    def test_chunked_body_without_last_chunk_is_refused(self) -> None:
        """A chunked body that stops after a whole chunk, before the terminating 0 chunk, is an error."""

        def cut_chunked(conn: socket.socket) -> None:
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(OTHER_LINE))

        with raw_server(cut_chunked) as url:
            _expect(_client(url, retries=0), RemoteErrorCode.CONNECTION)

    def test_complete_chunked_gzip_body_is_read(self) -> None:
        """A complete chunked, gzip-encoded range is read whole (the framing checks accept what servers send)."""
        body = gzip.compress(OTHER_LINE + GOOD_BODY)

        def chunked_gzip(conn: socket.socket) -> None:
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\nConnection: close"
            conn.sendall(head + b"\r\n\r\n" + _chunked(body[:10], body[10:]) + b"0\r\n\r\n")

        with raw_server(chunked_gzip) as url, _client(url) as checker:
            assert checker.check(PASSWORD) == credcheck.Exposure(True, 3)

    def test_body_read_by_a_session_hook_is_refused(self) -> None:
        """A caller's session whose response hook consumed the body cannot pass its leftovers off as the range."""
        session = requests.Session()

        def read_body(response: requests.Response, *args: object, **kwargs: object) -> None:
            response.content  # noqa: B018 - the hook reads the body, as a logging hook might

        session.hooks["response"].append(read_body)

        def answer(conn: socket.socket) -> None:
            conn.sendall(_reply("200 OK", GOOD_BODY))

        with raw_server(answer) as url:
            _expect(_client(url, session=session), RemoteErrorCode.BAD_RESPONSE)


def test_cookies_set_by_a_range_server_are_not_sent_back() -> None:
    """A range server's Set-Cookie would link one client's requests: the client never sends it back."""
    cookies: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            cookies.append(self.headers.get("Cookie"))
            self.send_response(200)
            self.send_header("Set-Cookie", "tracker=abc123; Path=/")
            self.send_header("Content-Length", str(len(GOOD_BODY)))
            self.end_headers()
            self.wfile.write(GOOD_BODY)

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            with _client(f"http://127.0.0.1:{httpd.server_port}") as checker:
                for password in (PASSWORD, "another", "a third"):
                    checker.check(password)
        finally:
            httpd.shutdown()
    assert cookies == [None, None, None]


class TestSlowServers:
    @pytest.mark.parametrize("where", ["headers", "body"])
    def test_drip_feed_hits_the_overall_deadline(self, where: str) -> None:
        """A server that drips a byte every 0.3 s forever (each read within the read timeout) ends in TIMEOUT.

        Without an overall deadline the client would wait for ever; the check runs in a thread so that a
        regression fails the test instead of hanging it.
        """

        def drip(conn: socket.socket) -> None:
            head = b"HTTP/1.1 200 OK\r\n" + (b"Content-Length: 100000\r\n\r\n" if where == "body" else b"X-Drip: ")
            conn.sendall(head)
            while True:
                conn.sendall(b"1" if where == "headers" else b"A")
                time.sleep(0.3)

        outcome: list[BaseException] = []

        def run() -> None:
            try:
                _expect(_client(url, timeout=(0.5, 2.0), deadline=1.5, retries=0), RemoteErrorCode.TIMEOUT)
            except BaseException as exc:
                outcome.append(exc)
            else:
                outcome.append(StopIteration())

        with raw_server(drip) as url:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            worker.join(timeout=60)
        assert outcome, "the client was still reading the drip long after its deadline"
        if not isinstance(outcome[0], StopIteration):
            raise outcome[0]

    def test_silent_server_times_out(self) -> None:
        """A server that accepts and never answers is a TIMEOUT."""

        def silent(conn: socket.socket) -> None:
            time.sleep(5)

        with raw_server(silent) as url:
            _expect(_client(url, retries=0), RemoteErrorCode.TIMEOUT)


class TestHostileResponses:
    def test_redirect_to_another_host_is_refused(self) -> None:
        """A redirect to another host is not followed (the prefix would leak to a third party)."""
        hits: list[int] = []

        def other(conn: socket.socket) -> None:
            hits.append(1)
            conn.sendall(_reply("200 OK", GOOD_BODY))

        with raw_server(other) as elsewhere:
            target = elsewhere.replace("127.0.0.1", "localhost")

            def redirect(conn: socket.socket) -> None:
                conn.sendall(_reply("302 Found", b"", f"Location: {target}/range/5BAA6"))

            with raw_server(redirect) as url:
                _expect(_client(url), RemoteErrorCode.HTTP_STATUS)
        assert hits == []

    def test_enormous_response_is_refused(self) -> None:
        """A response far larger than any real range (here 64 MiB announced) is a BAD_RESPONSE."""

        def huge(conn: socket.socket) -> None:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\nConnection: close\r\n\r\n")
            line = GOOD_BODY + b"\r\n"
            with contextlib.suppress(OSError):
                for _ in range(67108864 // len(line)):
                    conn.sendall(line * 64)

        with raw_server(huge) as url:
            _expect(_client(url, deadline=10.0), RemoteErrorCode.BAD_RESPONSE)

    def test_html_error_page_with_200(self) -> None:
        """A captive-portal style HTML page served as 200 is a BAD_RESPONSE, not an empty range."""

        def portal(conn: socket.socket) -> None:
            conn.sendall(_reply("200 OK", b"<html><body>Please log in</body></html>", "Content-Type: text/html"))

        with raw_server(portal) as url:
            _expect(_client(url), RemoteErrorCode.BAD_RESPONSE)


def test_open_passes_deadline_through() -> None:
    """credcheck.open(url, deadline=...) builds a client with that deadline."""
    with credcheck.open("http://127.0.0.1:9", deadline=0.5, timeout=0.2) as checker:
        assert isinstance(checker, RemoteChecker) and isinstance(checker.client, RangeClient)
        assert checker.client.options.deadline == 0.5
