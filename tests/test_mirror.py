"""credcheck mirror: real range servers on 127.0.0.1, counted and faulted by a small WSGI wrapper."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import gzip
import hashlib
import http.server
import json
import os
import random
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

import credcheck
import credcheck.mirror as mirror_module
from credcheck import _atomic, _mirrorfiles, cli
from credcheck._http.body import parse_range_body
from credcheck.errors import InputError, RemoteError, RemoteErrorCode, StorageError, UsageError
from credcheck.export import export
from credcheck.fuse import FuseFilter
from credcheck.mirror import ETAGS_SUFFIX, JOURNAL_SUFFIX, mirror
from credcheck.server import make_app
from credcheck.store import RangeStore

from .helpers import recording

SHARD = range(0x00000, 0x00100)  # 256 ranges: what most tests mirror
SHARD_ARG = "00000-000FF"


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mirror_module, "MIRROR_OPTIONS", mirror_options(backoff_factor=0.001))


def mirror_options(**changes: Any) -> credcheck.ClientOptions:
    """The mirror's HTTP options with these changes."""
    return dataclasses.replace(mirror_module.MIRROR_OPTIONS, **changes)


# -- corpora --------------------------------------------------------------------------------------------


def _hashes(seed: int, n: int, size: int, top: int) -> dict[str, int]:
    """n random digests (hex) whose 20-bit prefix lies below ``top``, with counts."""
    rnd = random.Random(seed)
    out: dict[str, int] = {}
    while len(out) < n:
        prefix = rnd.randrange(top)
        rest = rnd.getrandbits(8 * size - 20)
        out[f"{(prefix << (8 * size - 20)) | rest:0{2 * size}X}"] = rnd.randrange(1, 10_000)
    return out


def _dump(path: Path, hashes: dict[str, int]) -> Path:
    path.write_text("\n".join(f"{h}:{c}" for h, c in sorted(hashes.items())) + "\n")
    return path


def _store(folder: Path, name: str, hashes: dict[str, int], scheme: str = "sha1") -> str:
    credcheck.build([_dump(folder / f"{name}.txt", hashes)], store=folder / f"{name}.store", scheme=scheme)
    return str(folder / f"{name}.store")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """SHA-1 and NTLM stores dense in SHARD (and a few hashes everywhere), and a SHA-1 store after a breach."""
    folder = tmp_path_factory.mktemp("sources")
    sha1 = _hashes(1, 1500, 20, SHARD.stop) | _hashes(2, 500, 20, 1 << 20)
    ntlm = _hashes(3, 1500, 16, SHARD.stop) | _hashes(4, 500, 16, 1 << 20)
    # the breach: new hashes in some ranges, raised counts and a few removals in others
    after = dict(sha1)
    rnd = random.Random(5)
    in_shard = sorted(h for h in sha1 if int(h[:5], 16) in SHARD)
    for h in rnd.sample(in_shard, 30):
        after[h] += 7
    for h in rnd.sample(in_shard, 5):
        del after[h]
    after |= _hashes(6, 40, 20, 0x00040)  # new hashes, all in the first quarter of the shard
    return {
        "sha1": sha1,
        "ntlm": ntlm,
        "after": after,
        "sha1_store": _store(folder, "sha1", sha1),
        "ntlm_store": _store(folder, "ntlm", ntlm, "ntlm"),
        "after_store": _store(folder, "after", after),
        "folder": folder,
    }


# -- the servers ----------------------------------------------------------------------------------------


class Source:
    """credcheck's range app behind a wrapper that counts requests and can break chosen ranges.

    ``etags``: "server" (the app's own), "content" (one per range's content, as a CDN in front of
    unchanged files gives) or "none" (no validators at all).
    """

    def __init__(self, stores: list[str], etags: str = "server") -> None:
        self.app = make_app(stores)
        self.etags = etags
        self.requests: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.faults: dict[str, tuple[str, int | None]] = {}
        self.lock = threading.Lock()
        self.delay = 0.0  # seconds before each answer (a slow server)

    def publish(self, stores: list[str]) -> None:
        """Serve these stores from now on (the source gained a breach), with fresh counts."""
        self.app = make_app(stores)
        self.requests.clear()
        self.statuses.clear()

    def fault(self, prefix: str, kind: str, times: int | None = None) -> None:
        """Break ``prefix``'s answers (the first ``times`` of them, or all)."""
        self.faults[prefix] = (kind, times)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        prefix = environ["PATH_INFO"].rsplit("/", 1)[-1].upper()
        with self.lock:
            self.requests[prefix] += 1
            seen = self.requests[prefix]
        time.sleep(self.delay)
        kind, times = self.faults.get(prefix, ("", None))
        if kind and (times is None or seen <= times):
            status, headers, body = self._broken(kind, prefix, environ)
        else:
            status, headers, body = self._answer(prefix, environ)
        with self.lock:
            self.statuses[int(status[:3])] += 1
        start_response(status, headers)
        if kind == "drip" and (times is None or seen <= times):
            return self._drip(body)
        return [body]

    @staticmethod
    def _drip(body: bytes) -> Iterator[bytes]:
        for byte in body:  # a byte every 0.2 s: each read gets something before its timeout
            time.sleep(0.2)
            yield bytes([byte])

    def _answer(self, prefix: str, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        if self.etags == "server":
            started: list[tuple[str, list[tuple[str, str]]]] = []
            body = b"".join(self.app(environ, recording(started)))
            return *started[0], body
        scheme = "ntlm" if "mode=ntlm" in environ.get("QUERY_STRING", "") else "sha1"
        raw = self.app.stores[scheme].range_body(int(prefix, 16))
        headers = [("Content-Type", "text/plain")]
        if self.etags == "content":
            tag = f'"{xxhash.xxh3_64_hexdigest(raw)}"'
            headers.append(("ETag", tag))
            if environ.get("HTTP_IF_NONE_MATCH") == tag:
                return "304 Not Modified", headers, b""
        return "200 OK", [*headers, ("Content-Length", str(len(raw)))], raw

    def _broken(self, kind: str, prefix: str, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        raw = self._answer(prefix, {**environ, "HTTP_ACCEPT_ENCODING": "", "HTTP_IF_NONE_MATCH": ""})[2]
        assert raw, "break a range that has lines"
        plain = [("Content-Type", "text/plain")]
        if kind == "truncated":  # announces more than it sends, and what it sends ends with a whole line
            return "200 OK", [*plain, ("Content-Length", str(len(raw)))], raw[: raw.rindex(b"\r\n")]
        if kind == "truncated-mid-count":  # "…:123" arrives as "…:12"
            return "200 OK", [*plain, ("Content-Length", str(len(raw)))], raw[:-1]
        if kind == "gzip-no-trailer":
            body = gzip.compress(raw)[:-8]
            return "200 OK", [*plain, ("Content-Encoding", "gzip"), ("Content-Length", str(len(body)))], body
        if kind == "corrupt":
            body = raw.replace(b":", b";", 1)
            return "200 OK", [*plain, ("Content-Length", str(len(body)))], body
        if kind == "bom":
            body = b"\xef\xbb\xbf" + raw
            return "200 OK", [*plain, ("Content-Length", str(len(body)))], body
        if kind == "lax":  # what the parser accepts beyond HIBP's own form: any case, LF, padding, a final LF
            pad = b"\n".join(b"%s:0" % os.urandom(18).hex()[:35].encode() for _ in range(5))
            body = raw.lower().replace(b"\r\n", b"\n") + b"\n" + pad + b"\n"
            return "200 OK", [*plain, ("Content-Length", str(len(body)))], body
        if kind == "drip":
            return "200 OK", [*plain, ("Content-Length", str(len(raw)))], raw
        if kind == "html":
            body = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"
            return "200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))], body
        if kind == "429":
            return "429 Too Many Requests", [("Retry-After", "0"), ("Content-Length", "0")], b""
        if kind == "404":
            return "404 Not Found", [("Content-Length", "0")], b""
        raise AssertionError(kind)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadedWSGI(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve a WSGI app on 127.0.0.1 from a background thread; yield its base URL."""
    with make_server("127.0.0.1", 0, app, server_class=_ThreadedWSGI, handler_class=_Quiet) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_port}"
        finally:
            httpd.shutdown()
            thread.join()


class _StaticHandler(http.server.SimpleHTTPRequestHandler):
    """A plain file server over a credcheck export, mapping ?mode=ntlm to ntlm/range/ as docs/DEPLOY.md does."""

    map_ntlm = True

    def translate_path(self, path: str) -> str:
        if self.map_ntlm and path.endswith("?mode=ntlm"):
            path = "/ntlm" + path[: -len("?mode=ntlm")]
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def static_server(directory: Path, map_ntlm: bool = True) -> Iterator[str]:
    handler = functools.partial(type("H", (_StaticHandler,), {"map_ntlm": map_ntlm}), directory=str(directory))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_port}"
        finally:
            httpd.shutdown()
            thread.join()


def same_ranges(mirrored: str, source: str, prefixes: Iterable[int]) -> None:
    """Every range body of the mirrored store equals the source's, byte for byte."""
    with RangeStore(mirrored) as ours, RangeStore(source) as theirs:
        for prefix in prefixes:
            assert ours.range_body(prefix) == theirs.range_body(prefix), f"{prefix:05X}"


def files(*paths: str) -> dict[str, bytes | None]:
    return {p: (Path(p).read_bytes() if os.path.exists(p) else None) for p in paths}


# -- a mirror -------------------------------------------------------------------------------------------


class TestMirror:
    @pytest.mark.parametrize("scheme", ["sha1", "ntlm"])
    def test_shard_is_byte_identical(self, corpora: dict[str, Any], tmp_path: Path, scheme: str) -> None:
        """Every mirrored range body is byte-identical to the source's, and ranges outside the shard are empty."""
        source = corpora[f"{scheme}_store"]
        with serving(Source([corpora["sha1_store"], corpora["ntlm_store"]])) as url:
            report = mirror(url, store=tmp_path / "m.store", scheme=scheme, prefixes=SHARD, workers=4)
        same_ranges(str(tmp_path / "m.store"), source, SHARD)
        expected = {h: c for h, c in corpora[scheme].items() if int(h[:5], 16) in SHARD}
        with RangeStore(tmp_path / "m.store") as store:
            assert store.rows == len(expected) == report.hashes
        assert (report.ranges, report.fetched, report.resumed) == (len(SHARD), len(SHARD), 0)
        assert report.reconciles()
        assert not os.path.exists(str(tmp_path / "m.store") + JOURNAL_SUFFIX)

    def test_filter_holds_every_hash(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """The filter written beside the store holds every mirrored hash, sized for what was fetched."""
        with serving(Source([corpora["sha1_store"]])) as url:
            mirror(url, store=tmp_path / "m.store", filter=tmp_path / "m.bloom", prefixes=SHARD, fp_rate=1e-4)
        expected = [h for h in corpora["sha1"] if int(h[:5], 16) in SHARD]
        with credcheck.BloomFilter.open(tmp_path / "m.bloom") as bloom:
            assert bloom.capacity == len(expected) and bloom.fp_rate == 1e-4
            assert all(bytes.fromhex(h) in bloom for h in expected)

    def test_fuse_filter_holds_every_hash(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """layout='fuse' writes a fuse filter of every mirrored hash at the rate asked, and a later --update
        replaces it (the mirror wrote it with this store), leaving no partial file behind."""
        store, target = tmp_path / "m.store", tmp_path / "m.fuse"
        with serving(Source([corpora["sha1_store"]])) as url:
            mirror(url, store=store, filter=target, layout="fuse", prefixes=SHARD, fp_rate=1e-4)
            first = target.read_bytes()
            mirror(url, store=store, filter=target, layout="fuse", prefixes=SHARD, fp_rate=1e-4, update=True)
        expected = [h for h in corpora["sha1"] if int(h[:5], 16) in SHARD]
        with FuseFilter(target) as fuse:
            assert (fuse.items, fuse.width) == (len(expected), 14)
            assert all(bytes.fromhex(h) in fuse for h in expected)
        assert target.read_bytes() == first  # the same hashes: the same filter, byte for byte
        assert not [p for p in tmp_path.iterdir() if p.name.endswith("fuse-partial")]

    def test_ntlm_from_a_static_export(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """NTLM ranges (?mode=ntlm) mirror byte-identically from a static export behind a plain file server."""
        export([corpora["ntlm_store"]], tmp_path / "export", prefixes=SHARD)
        with static_server(tmp_path / "export") as url:
            report = mirror(url, store=tmp_path / "n.store", scheme="ntlm", prefixes=SHARD, workers=4)
        same_ranges(str(tmp_path / "n.store"), corpora["ntlm_store"], SHARD)
        assert report.without_etag == len(SHARD)  # a plain file server sends no ETag: said so
        assert any("without an ETag" in note for note in report.notes)

    def test_sha1_body_for_ntlm_is_refused(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """A server that ignores ?mode=ntlm (SHA-1 lines for an NTLM mirror) fails the mirror, naming a prefix."""
        export([corpora["sha1_store"]], tmp_path / "export", prefixes=SHARD)
        with (
            static_server(tmp_path / "export", map_ntlm=False) as url,
            pytest.raises(RemoteError, match=r"range 000[0-9A-F]{2}: .*line 1 is not SUFFIX:COUNT"),
        ):
            mirror(url, store=tmp_path / "n.store", scheme="ntlm", prefixes=SHARD, options=mirror_options(retries=0))

    def test_cli_json_report(self, corpora: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """credcheck mirror URL --store --prefixes --json prints the report as JSON and exits 0."""
        with serving(Source([corpora["sha1_store"]])) as url:
            status = cli.main(["mirror", url, "--store", str(tmp_path / "m.store"), "--prefixes", SHARD_ARG, "--json"])
        assert status == 0
        report = json.loads(capsys.readouterr().out)
        assert report["ranges"] == report["fetched"] == len(SHARD)

    def test_cli_summary(self, corpora: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without --json the command prints a summary whose numbers are the report's."""
        with serving(Source([corpora["sha1_store"]])) as url:
            assert cli.main(["mirror", url, "--store", str(tmp_path / "m.store"), "--prefixes", SHARD_ARG]) == 0
        out = capsys.readouterr().out
        assert f"mirrored {len(SHARD)} sha1 ranges from {url}" in out and f"{len(SHARD)} fetched" in out

    @pytest.mark.parametrize(
        "url", ["ftp://127.0.0.1/", "http://", "http://127.0.0.1/?x=1", "http://u:secret@127.0.0.1", "http://h:99999"]
    )
    def test_bad_url(self, url: str, tmp_path: Path) -> None:
        """A URL that is not http(s)://host[:port][/path] is refused before anything is written."""
        with pytest.raises(ValueError, match="base_url") as info:
            mirror(url, store=tmp_path / "m.store", prefixes=SHARD)
        assert "secret" not in str(info.value)
        assert not list(tmp_path.iterdir())


class TestProgress:
    def test_progress_reaches_the_total(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """The progress callback ends at (ranges, ranges, bytes received)."""
        calls: list[tuple[int, int, int]] = []
        with serving(Source([corpora["sha1_store"]])) as url:
            report = mirror(url, store=tmp_path / "m.store", prefixes=SHARD, progress=lambda *a: calls.append(a))
        assert calls[-1] == (len(SHARD), len(SHARD), report.bytes_received) and report.bytes_received > 0

    def test_ctrl_c_keeps_the_journal(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """Ctrl-C stops the mirror with the journal kept; a resume fetches only what it lacks."""
        store = str(tmp_path / "m.store")
        source = Source([corpora["sha1_store"]])
        source.delay = 0.01

        def interrupt(done: int, total: int, received: int) -> None:
            if done:
                raise KeyboardInterrupt

        with serving(source) as url:
            with pytest.raises(KeyboardInterrupt):
                mirror(url, store=store, prefixes=range(0x400), workers=2, progress=interrupt)
            held = _journaled(store + JOURNAL_SUFFIX)
            assert 0 < len(held) < 0x400 and not os.path.exists(store)
            source.delay = 0.0
            before = source.requests.copy()
            mirror(url, store=store, prefixes=range(0x400), resume=True)
        assert not {int(p, 16) for p in source.requests - before} & held
        same_ranges(store, corpora["sha1_store"], range(0x400))


# -- failures -------------------------------------------------------------------------------------------


def _leaked_prefix(hashes: dict[str, int]) -> str:
    """A prefix of SHARD whose range has several lines."""
    lines = collections.Counter(h[:5] for h in hashes if int(h[:5], 16) in SHARD)
    return min(p for p, n in lines.items() if n >= 3 and int(p, 16) > 0x10)


class TestBadRanges:
    @pytest.mark.parametrize("kind", ["truncated", "truncated-mid-count", "gzip-no-trailer", "corrupt", "html", "bom"])
    def test_broken_range_exits_2_naming_the_prefix(
        self, corpora: dict[str, Any], tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A range that stays broken fails the mirror (exit 2, prefix named), old store untouched: a body cut short
        of its length is retried (the connection dropped), a body that arrived whole and is wrong is not."""
        store = str(tmp_path / "m.store")
        source = Source([corpora["sha1_store"]])
        with serving(source) as url:
            assert cli.main(["mirror", url, "--store", store, "--filter", store + ".bloom", "-q",
                             "--prefixes", SHARD_ARG]) == 0  # fmt: skip
            before = files(store, store + ETAGS_SUFFIX, store + ".bloom")
            bad = _leaked_prefix(corpora["sha1"])
            source.fault(bad, kind)
            source.requests.clear()
            status = cli.main(["mirror", url, "--store", store, "--filter", store + ".bloom", "--update", "-q",
                               "--prefixes", SHARD_ARG])  # fmt: skip
        assert status == 2
        err = capsys.readouterr().err
        assert f"range {bad}:" in err
        if kind.startswith("truncated"):
            assert "cut short of its Content-Length (after 6 attempts)" in err
            assert source.requests[bad] == 1 + mirror_module.MIRROR_OPTIONS.retries
        else:
            assert source.requests[bad] == 1
        assert files(store, store + ETAGS_SUFFIX, store + ".bloom") == before

    def test_a_lax_body_is_stored_in_hibp_form(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """Lower case, LF line ends, padding lines and a final line break are accepted and stored canonically."""
        source = Source([corpora["sha1_store"]])
        for prefix in {h[:5] for h in corpora["sha1"] if int(h[:5], 16) in SHARD}:
            source.fault(prefix, "lax")
        with serving(source) as url:
            report = mirror(url, store=tmp_path / "m.store", prefixes=SHARD)
        assert report.retries == 0
        same_ranges(str(tmp_path / "m.store"), corpora["sha1_store"], SHARD)

    def test_a_transient_fault_is_retried(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """A range that is truncated twice and then whole is mirrored, and the report counts the retries."""
        source = Source([corpora["sha1_store"]])
        bad = _leaked_prefix(corpora["sha1"])
        source.fault(bad, "truncated", times=2)
        with serving(source) as url:
            report = mirror(url, store=tmp_path / "m.store", prefixes=SHARD)
        assert report.retries == 2 and source.requests[bad] == 3
        same_ranges(str(tmp_path / "m.store"), corpora["sha1_store"], SHARD)

    def test_429_retry_after_is_honoured(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """A 429 with Retry-After is waited out and asked again."""
        source = Source([corpora["sha1_store"]])
        bad = _leaked_prefix(corpora["sha1"])
        source.fault(bad, "429", times=1)
        with serving(source) as url:
            report = mirror(url, store=tmp_path / "m.store", prefixes=SHARD)
        assert report.retries == 1 and source.statuses[429] == 1
        same_ranges(str(tmp_path / "m.store"), corpora["sha1_store"], SHARD)

    def test_keep_alive_closed_while_idle_is_no_failure(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """A server that silently drops each kept-alive connection after one answer costs no retry."""
        with RangeStore(corpora["sha1_store"]) as served:

            class OneShot(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"  # promises keep-alive ...

                def handle(self) -> None:
                    self.handle_one_request()  # ... and closes after one request anyway

                def do_GET(self) -> None:
                    body = served.range_body(int(self.path.rsplit("/", 1)[-1], 16))
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                def log_message(self, format: str, *args: Any) -> None:
                    pass

            with http.server.ThreadingHTTPServer(("127.0.0.1", 0), OneShot) as httpd:
                thread = threading.Thread(target=httpd.serve_forever, daemon=True)
                thread.start()
                try:
                    report = mirror(f"http://127.0.0.1:{httpd.server_port}", store=tmp_path / "m.store", prefixes=SHARD)
                finally:
                    httpd.shutdown()
                    thread.join()
        assert report.retries == 0 and report.fetched == len(SHARD)
        same_ranges(str(tmp_path / "m.store"), corpora["sha1_store"], SHARD)

    def test_a_dripping_server_meets_the_deadline(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """A body sent a byte at a time (never idle for a whole read timeout) is cut off at the attempt deadline."""
        source = Source([corpora["sha1_store"]])
        bad = _leaked_prefix(corpora["sha1"])
        source.fault(bad, "drip")
        with (
            serving(source) as url,
            pytest.raises(
                RemoteError, match=f"range {bad} .*no complete answer within the 1.5 s deadline of an"
            ) as info,
        ):
            mirror(
                url,
                store=tmp_path / "m.store",
                prefixes=SHARD,
                options=mirror_options(timeout=1.0, attempt_deadline=1.5, retries=0),
            )
        assert info.value.code.value == "timeout"

    def test_404_fails_at_once(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """A 404 for a range is not retried: the source has no such range, and the mirror says which."""
        source = Source([corpora["sha1_store"]])
        bad = _leaked_prefix(corpora["sha1"])
        source.fault(bad, "404")
        with serving(source) as url, pytest.raises(RemoteError, match=f"range {bad}: HTTP 404 \\(is the base URL"):
            mirror(url, store=tmp_path / "m.store", prefixes=SHARD)
        assert source.requests[bad] == 1
        assert not os.path.exists(tmp_path / "m.store")

    def test_dead_server(self, dead_api: str, tmp_path: Path) -> None:
        """A server that is not there fails the mirror with a connection error naming the first prefix."""
        with pytest.raises(RemoteError, match=r"range 00000: connection failed"):
            mirror(dead_api, store=tmp_path / "m.store", prefixes=range(1), options=mirror_options(retries=1))


# -- resuming -------------------------------------------------------------------------------------------


def _journaled(path: str, scheme: str = "sha1") -> set[int]:
    """The prefixes a journal holds whole records for."""
    journal = _mirrorfiles.Journal(path, {})
    journal.reopen(credcheck.hashing.DIGEST_SIZES[scheme])
    try:
        return {int(p) for p in (journal.offsets >= 0).nonzero()[0]}
    finally:
        journal.close()


class TestResume:
    def test_killed_at_random_points_and_resumed(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """SIGKILLed mirrors resumed: the same store, and no range the journal held was asked for again."""
        store = str(tmp_path / "m.store")
        shard = range(0x00000, 0x00400)
        source = Source([corpora["sha1_store"]])
        rnd = random.Random(7)
        command = [sys.executable, "-m", "credcheck", "mirror", "--store", store, "--prefixes", "00000-003FF",
                   "--connections", "4", "-q"]  # fmt: skip
        held: set[int] = set()
        kills = 0
        finished = False
        with serving(source) as url:
            for _ in range(4):
                before = source.requests.copy()
                proc = subprocess.Popen([*command[:4], url, *command[4:], *(["--resume"] if kills else [])])
                target = sum(before.values()) + rnd.randrange(20, 200)
                deadline = time.monotonic() + 60
                while sum(source.requests.values()) < target and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.002)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                finished = proc.wait() == 0
                assert not {int(p, 16) for p in source.requests - before} & held, "a journaled range was asked again"
                if finished:
                    break
                kills += 1
                held = _journaled(store + JOURNAL_SUFFIX)
            if not finished:
                before = source.requests.copy()
                assert cli.main(["mirror", url, "--store", store, "--prefixes", "00000-003FF", "--resume", "-q"]) == 0
                assert not {int(p, 16) for p in source.requests - before} & held
        assert kills >= 1
        same_ranges(store, corpora["sha1_store"], shard)
        # a range is asked for twice only if it was in flight at a kill (at most one per worker)
        assert sum(source.requests.values()) <= len(shard) + 4 * kills
        assert not os.path.exists(store + JOURNAL_SUFFIX)

    def test_a_journal_through_a_planted_symlink_is_refused(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """A dangling symlink where the journal goes is not followed: the mirror fails before fetching, and no
        file appears where it points."""
        store = str(tmp_path / "m.store")
        os.symlink(tmp_path / "elsewhere", store + JOURNAL_SUFFIX)
        source = Source([corpora["sha1_store"]])
        with serving(source) as url, pytest.raises(StorageError, match="cannot write the journal"):
            mirror(url, store=store, prefixes=SHARD, workers=1)
        assert not (tmp_path / "elsewhere").exists() and not source.requests

    def test_torn_last_record_is_dropped_and_fetched_again(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """A journal whose last record was cut short resumes from the whole records and re-fetches the torn one."""
        store = str(tmp_path / "m.store")
        source = Source([corpora["sha1_store"]])
        source.fault("00080", "404")
        with serving(source) as url:
            with pytest.raises(RemoteError):
                mirror(url, store=store, prefixes=SHARD, workers=1)
            held = _journaled(store + JOURNAL_SUFFIX)
            assert held == set(range(0x80))
            with open(store + JOURNAL_SUFFIX, "r+b") as fh:
                fh.truncate(os.path.getsize(store + JOURNAL_SUFFIX) - 3)  # tear the last record
            assert _journaled(store + JOURNAL_SUFFIX) == set(range(0x7F))
            del source.faults["00080"]
            source.requests.clear()
            report = mirror(url, store=store, prefixes=SHARD, resume=True)
        assert report.resumed == 0x7F and report.fetched == len(SHARD) - 0x7F
        assert source.requests["0007F"] == 1 and source.requests["0007E"] == 0
        same_ranges(store, corpora["sha1_store"], SHARD)

    def test_journal_without_resume_is_refused(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """An interrupted mirror's journal is never thrown away silently: without resume the mirror stops."""
        store = str(tmp_path / "m.store")
        source = Source([corpora["sha1_store"]])
        source.fault("00080", "404")
        with serving(source) as url:
            with pytest.raises(RemoteError):
                mirror(url, store=store, prefixes=SHARD, workers=1)
            with pytest.raises(InputError, match=r"interrupted mirror.*--resume"):
                mirror(url, store=store, prefixes=SHARD)

    def test_journal_of_another_mirror_is_refused(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """Resuming with other prefixes (or scheme, URL, mode) than the journal's is an error naming what differs."""
        store = str(tmp_path / "m.store")
        source = Source([corpora["sha1_store"]])
        source.fault("00080", "404")
        with serving(source) as url:
            with pytest.raises(RemoteError):
                mirror(url, store=store, prefixes=SHARD, workers=1)
            with pytest.raises(InputError, match="its prefixes differs"):
                mirror(url, store=store, prefixes=range(0x200), resume=True)

    def test_two_mirrors_of_one_store_are_refused(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """While one mirror runs, another of the same store fails at once (the lock every writer takes)."""
        store = str(tmp_path / "m.store")
        source = Source([corpora["sha1_store"]])
        source.delay = 0.01
        started = threading.Event()
        outcome: list[BaseException | None] = []

        def first() -> None:
            try:
                mirror(url, store=store, prefixes=range(0x200), workers=1, progress=lambda *a: started.set())
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        with serving(source) as url:
            thread = threading.Thread(target=first)
            thread.start()
            assert started.wait(30)
            with pytest.raises(StorageError, match="is writing it"):
                mirror(url, store=store, prefixes=SHARD)
            thread.join()
        assert outcome == [None]
        same_ranges(store, corpora["sha1_store"], range(0x200))

    @pytest.mark.parametrize("holder", ["store", "filter"])
    def test_a_build_and_a_mirror_of_one_store_exclude_each_other(
        self, corpora: dict[str, Any], tmp_path: Path, holder: str
    ) -> None:
        """A mirror takes the lock credcheck build takes on the store and the filter: while a build holds either,
        the mirror fails at once (its rename would drop what the build merged), and nothing is written."""
        store, bloom = str(tmp_path / "m.store"), str(tmp_path / "m.bloom")
        with (
            _atomic.lock_beside([store if holder == "store" else bloom]),
            pytest.raises(StorageError, match="is writing"),
        ):
            mirror("http://127.0.0.1:9", store=store, filter=bloom, prefixes=SHARD)
        assert sorted(p.name for p in tmp_path.iterdir()) == []


@given(cut=st.integers(min_value=0, max_value=10_000))
def test_a_journal_cut_anywhere_keeps_its_whole_records(tmp_path_factory: pytest.TempPathFactory, cut: int) -> None:
    """Reopening a journal cut at any byte finds exactly the records that lie wholly before the cut."""
    folder = tmp_path_factory.mktemp("journal")
    path = str(folder / "j")
    journal = _mirrorfiles.Journal(path, {"x": 1})
    journal.create()
    ends = []
    for prefix in range(20):
        rows = prefix % 4
        item = _mirrorfiles.Range(prefix, 1, b'"e%d"' % prefix, bytes(18 * rows), bytes(4 * rows), rows)
        journal.append(item)
        ends.append(journal._end)
    journal.close()
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(min(cut, size))
    if cut < len(_mirrorfiles.Journal._encode_header({"x": 1})):
        with pytest.raises(StorageError):
            _journaled(path)
        return
    assert _journaled(path) == {p for p, end in enumerate(ends) if end <= cut}


@given(at=st.integers(min_value=0, max_value=10_000), flip=st.integers(min_value=1, max_value=255))
def test_a_damaged_record_ends_the_journal(tmp_path_factory: pytest.TempPathFactory, at: int, flip: int) -> None:
    """A byte changed anywhere in the records keeps exactly the records before the damaged one."""
    path = str(tmp_path_factory.mktemp("journal") / "j")
    journal = _mirrorfiles.Journal(path, {"x": 1})
    journal.create()
    starts = []
    for prefix in range(20):
        starts.append(journal._end)
        rows = prefix % 4
        journal.append(_mirrorfiles.Range(prefix, 1, b'"e%d"' % prefix, bytes(18 * rows), bytes(4 * rows), rows))
    journal.close()
    data = bytearray(Path(path).read_bytes())
    at = starts[0] + at % (len(data) - starts[0])
    data[at] ^= flip
    Path(path).write_bytes(bytes(data))
    assert _journaled(path) == {p for p, start in enumerate(starts) if p + 1 < len(starts) and starts[p + 1] <= at}


def _strict_rows(prefix: int, body: bytes, size: int) -> tuple[bytes, bytes] | None:
    """What the strict parser makes of a body (None where it refuses it)."""
    try:
        return mirror_module._rows_of(prefix, parse_range_body(body, 2 * size - 5), size)
    except RemoteError:
        return None


_SUFFIX_CHARS = "0123456789ABCDEFabcdef"
_line = st.tuples(
    st.text(_SUFFIX_CHARS, min_size=35, max_size=35),
    st.one_of(st.integers(0, 2**32 + 5), st.integers(0, 10**19 - 1)),
    st.sampled_from(["\r\n", "\n"]),
)
_junk = st.sampled_from(["", "\r", "\n", "\r\n", " ", ":", "+", "0", "\x00", "\u00e9", "\ufeff", "x" * 40])


@given(
    lines=st.lists(_line, max_size=12),
    cut=st.integers(0, 2000),
    junk=_junk,
    repeat=st.booleans(),
    last=st.sampled_from(["", "\r\n", "\n", "\r", "\r\n\r\n"]),
    prefix=st.integers(0, (1 << 20) - 1),
    size=st.sampled_from([20, 16]),
)
def test_fast_rows_agree_with_the_strict_parser(
    lines: list[tuple[str, int, str]], cut: int, junk: str, repeat: bool, last: str, prefix: int, size: int
) -> None:
    """Whatever the body, the fast path either defers to the strict parser or gives exactly its rows."""
    if repeat and lines:
        lines = [*lines, lines[0]]
    text = "".join(f"{suffix[: 2 * size - 5]}:{count}{end}" for suffix, count, end in lines)
    text = text.rstrip("\r\n") + last
    at = cut % (len(text) + 1)
    body = (text[:at] + junk + text[at:]).encode("utf-8")
    strict = _strict_rows(prefix, body, size)
    fast = mirror_module._fast_rows(prefix, body, size)
    assert fast is None or fast == strict
    if strict is None:
        with pytest.raises(RemoteError):
            mirror_module._parsed_rows(prefix, body, size)
    else:
        assert mirror_module._parsed_rows(prefix, body, size) == strict


# -- updating -------------------------------------------------------------------------------------------


class TestUpdate:
    def test_only_changed_ranges_are_fetched(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """After a breach, --update re-fetches only the changed ranges (the rest are 304) and reports the numbers."""
        store = str(tmp_path / "m.store")
        before = {h: c for h, c in corpora["sha1"].items() if int(h[:5], 16) in SHARD}
        after = {h: c for h, c in corpora["after"].items() if int(h[:5], 16) in SHARD}
        changed = {h[:5] for h in before.keys() ^ after.keys()} | {
            h[:5] for h in before.keys() & after.keys() if before[h] != after[h]
        }
        source = Source([corpora["sha1_store"]], etags="content")
        with serving(source) as url:
            mirror(url, store=store, prefixes=SHARD)
            source.publish([corpora["after_store"]])
            report = mirror(url, store=store, prefixes=SHARD, update=True)
        assert source.statuses[200] == len(changed) == report.fetched == report.ranges_changed
        assert source.statuses[304] == len(SHARD) - len(changed) == report.not_modified
        assert report.hashes_added == len(after.keys() - before.keys())
        assert report.hashes_removed == len(before.keys() - after.keys()) == 5
        assert report.counts_changed == sum(before[h] != after[h] for h in before.keys() & after.keys()) == 30
        assert report.hashes == len(after) and report.reconciles()
        same_ranges(store, corpora["after_store"], SHARD)

    def test_nothing_changed_costs_only_304s(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """--update against an unchanged credcheck serve gets a 304 for every range and leaves the store alone."""
        store = str(tmp_path / "m.store")
        source = Source([corpora["sha1_store"]])
        with serving(source) as url:
            mirror(url, store=store, prefixes=SHARD)
            source.statuses.clear()
            inode = os.stat(store).st_ino
            report = mirror(url, store=store, prefixes=SHARD, update=True)
        assert os.stat(store).st_ino == inode and report.store_kept  # not even rewritten
        assert source.statuses == {304: len(SHARD)}
        assert report.etags_sent == report.not_modified == len(SHARD)
        assert (report.ranges_changed, report.hashes_added, report.hashes_removed, report.counts_changed) == (0,) * 4
        same_ranges(store, corpora["sha1_store"], SHARD)

    def test_a_server_without_etags_is_fetched_in_full(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """Without ETags an update fetches every range, still gets it right, and says so."""
        store = str(tmp_path / "m.store")
        source = Source([corpora["sha1_store"]], etags="none")
        with serving(source) as url:
            mirror(url, store=store, prefixes=SHARD)
            source.publish([corpora["after_store"]])
            report = mirror(url, store=store, prefixes=SHARD, update=True)
        assert source.statuses == {200: len(SHARD)} and report.etags_sent == 0
        assert any("fetched in full" in note for note in report.notes)
        assert report.ranges_same == len(SHARD) - report.ranges_changed
        same_ranges(store, corpora["after_store"], SHARD)

    def test_etags_of_another_build_are_not_used(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """With --replace, ETags kept beside a store since rebuilt by other means are not used (a 304 would keep
        wrong rows): every range is fetched in full, and the report says why."""
        store = str(tmp_path / "m.store")
        with serving(Source([corpora["sha1_store"]], etags="content")) as url:
            mirror(url, store=store, prefixes=SHARD)
            etags = Path(store + ETAGS_SUFFIX).read_bytes()
            credcheck.build([_dump(tmp_path / "other.txt", corpora["after"])], store=store)
            Path(store + ETAGS_SUFFIX).write_bytes(etags)
            report = mirror(url, store=store, prefixes=SHARD, update=True, replace=True)
        assert report.etags_sent == 0 and any("other contents" in note for note in report.notes)
        same_ranges(store, corpora["sha1_store"], SHARD)

    def test_filter_rebuilt_when_nothing_changed(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """An update that changed no range still writes the filter it was asked for, from the store's rows."""
        store = str(tmp_path / "m.store")
        with serving(Source([corpora["sha1_store"]])) as url:
            mirror(url, store=store, prefixes=SHARD)
            mirror(url, store=store, prefixes=SHARD, update=True, filter=tmp_path / "m.bloom")
        expected = [h for h in corpora["sha1"] if int(h[:5], 16) in SHARD]
        with credcheck.BloomFilter.open(tmp_path / "m.bloom") as bloom:
            assert bloom.capacity == len(expected) and all(bytes.fromhex(h) in bloom for h in expected)

    def test_ranges_outside_the_shard_are_kept(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """An update of one shard keeps the store's other ranges (and their ETags) as they were."""
        store = str(tmp_path / "m.store")
        source = Source([corpora["sha1_store"]], etags="content")
        with serving(source) as url:
            mirror(url, store=store, prefixes=SHARD)
            mirror(url, store=store, prefixes=range(0x100, 0x140), update=True)
            source.publish([corpora["sha1_store"]])
            report = mirror(url, store=store, prefixes=range(0x140), update=True)
        assert report.not_modified == 0x140
        same_ranges(store, corpora["sha1_store"], range(0x140))


# -- all 16^5 ranges ------------------------------------------------------------------------------------

FULL = pytest.mark.skipif(
    os.environ.get("CREDCHECK_FULL_MIRROR") != "1",
    reason="a full mirror makes 1,048,576 requests (minutes on two shared cores): set CREDCHECK_FULL_MIRROR=1",
)


@contextlib.contextmanager
def credcheck_serve(store: str) -> Iterator[str]:
    """``credcheck serve`` in a subprocess on a free port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "credcheck", "serve", "--store", store, "--port", str(port), "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline().decode()
        assert "serving" in banner, banner
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


@FULL
@pytest.mark.parametrize("scheme", ["sha1", "ntlm"])
def test_full_mirror_is_byte_identical(corpora: dict[str, Any], tmp_path: Path, scheme: str) -> None:
    """A mirror of all 16^5 ranges of credcheck serve gives a store whose every range body is the source's."""
    source = corpora[f"{scheme}_store"]
    with credcheck_serve(source) as url:
        report = mirror(url, store=tmp_path / "full.store", scheme=scheme, workers=4)
    assert report.fetched == 1 << 20 and report.reconciles()
    same_ranges(str(tmp_path / "full.store"), source, range(1 << 20))
    assert (
        hashlib.sha256(Path(tmp_path / "full.store").read_bytes()[128:]).digest()
        == hashlib.sha256(Path(source).read_bytes()[128:]).digest()
    )


# -- a store the mirror did not write -------------------------------------------------------------------


def _private_breach(corpora: dict[str, Any], folder: Path) -> dict[str, int]:
    """Hashes of a private breach in SHARD's ranges (none of them in the source)."""
    breach = _hashes(7, 25, 20, SHARD.stop)
    assert not breach.keys() & corpora["sha1"].keys()
    return breach


class TestStoresNotWrittenByTheMirror:
    def test_update_refuses_a_store_with_a_merged_breach(
        self, corpora: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A breach merged into a mirrored store (build --update) makes mirror --update exit 2 saying what to do,
        with the store and the breach kept, instead of replacing its ranges whole."""
        store = str(tmp_path / "m.store")
        breach = _private_breach(corpora, tmp_path)
        with serving(Source([corpora["sha1_store"]])) as url:
            mirror(url, store=store, prefixes=SHARD)
            credcheck.build([_dump(tmp_path / "breach.txt", breach)], store=store, update=True)
            before = files(store, store + ETAGS_SUFFIX)
            status = cli.main(["mirror", url, "--store", store, "--prefixes", SHARD_ARG, "--update", "-q"])
        assert status == 2
        err = capsys.readouterr().err
        assert "not as a mirror wrote it" in err and "--replace" in err and "build --update" in err
        assert files(store, store + ETAGS_SUFFIX) == before
        with credcheck.open(store) as checker:
            assert all(checker.check_hash(h).compromised for h in breach)

    @pytest.mark.parametrize("update", [False, True])
    def test_replace_drops_what_it_did_not_write_and_says_so(
        self, corpora: dict[str, Any], tmp_path: Path, update: bool
    ) -> None:
        """With replace=True the mirror replaces the ranges of such a store, and the report notes it."""
        store = str(tmp_path / "m.store")
        breach = _private_breach(corpora, tmp_path)
        with serving(Source([corpora["sha1_store"]])) as url:
            mirror(url, store=store, prefixes=SHARD)
            credcheck.build([_dump(tmp_path / "breach.txt", breach)], store=store, update=True)
            report = mirror(url, store=store, prefixes=SHARD, update=update, replace=True)
        assert any("no mirror wrote" in note for note in report.notes)
        same_ranges(store, corpora["sha1_store"], SHARD)

    def test_update_refuses_a_filter_with_a_merged_breach(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """A filter a mirror wrote, then written again by credcheck build from a breach, makes the next mirror into
        that filter refuse, the breach kept; one the mirror wrote itself is refreshed as before."""
        store, bloom = str(tmp_path / "m.store"), str(tmp_path / "m.filter")
        breach = _private_breach(corpora, tmp_path)
        with serving(Source([corpora["sha1_store"]])) as url:
            mirror(url, store=store, filter=bloom, prefixes=SHARD)
            mirror(url, store=store, filter=bloom, prefixes=SHARD, update=True)  # its own filter: refreshed
            credcheck.build([_dump(tmp_path / "breach.txt", breach)], filter=bloom)  # written by a build now
            before = files(store, bloom, store + ETAGS_SUFFIX)
            with pytest.raises(UsageError, match=r"m\.filter is not as a mirror wrote it"):
                mirror(url, store=store, filter=bloom, prefixes=SHARD, update=True)
            assert files(store, bloom, store + ETAGS_SUFFIX) == before
            with credcheck.open(bloom) as checker:
                assert all(checker.check_hash(h).compromised for h in breach)
            report = mirror(url, store=store, filter=bloom, prefixes=SHARD, update=True, replace=True)
        assert any("replaced a filter" in note for note in report.notes)

    def test_a_filter_from_elsewhere_is_not_overwritten(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """A first mirror given --filter where another filter already is (no mirror wrote it) refuses."""
        store, bloom = str(tmp_path / "m.store"), tmp_path / "other.filter"
        credcheck.build([_dump(tmp_path / "breach.txt", _private_breach(corpora, tmp_path))], filter=bloom)
        before = files(str(bloom))
        with serving(Source([corpora["sha1_store"]])) as url, pytest.raises(UsageError, match=r"other\.filter"):
            mirror(url, store=store, filter=bloom, prefixes=SHARD)
        assert files(str(bloom)) == before and not os.path.exists(store)

    def test_a_store_built_by_credcheck_build_is_not_overwritten(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """A mirror (without --update) into a store that credcheck build wrote is refused: no ETags file names it."""
        store = _store(tmp_path, "built", corpora["after"])
        before = files(store)
        with serving(Source([corpora["sha1_store"]])) as url, pytest.raises(UsageError, match="ETags file"):
            mirror(url, store=store, prefixes=SHARD)
        assert files(store) == before and not os.path.exists(store + ETAGS_SUFFIX)

    def test_etags_copied_from_another_store_of_the_same_size(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """An ETags file copied from another mirrored store (same size, same URL) does not vouch for this one."""
        one, two = str(tmp_path / "one.store"), str(tmp_path / "two.store")
        breach = _private_breach(corpora, tmp_path)
        with serving(Source([corpora["sha1_store"]], etags="content")) as url:
            mirror(url, store=one, prefixes=SHARD)
            mirror(url, store=two, prefixes=SHARD)
            credcheck.build([_dump(tmp_path / "breach.txt", breach)], store=two, update=True)
            shutil.copyfile(one, two + ".same-size")
            assert os.path.getsize(two + ".same-size") == os.path.getsize(one)
            shutil.copyfile(one + ETAGS_SUFFIX, two + ETAGS_SUFFIX)
            with pytest.raises(UsageError, match="other contents of the store"):
                mirror(url, store=two, prefixes=SHARD, update=True)
        with credcheck.open(two) as checker:
            assert all(checker.check_hash(h).compromised for h in breach)

    def test_a_journal_from_a_mirror_of_another_store_is_refused(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """The journal of an interrupted mirror into another store (same URL, prefixes and mode) is not resumed."""
        one, two = str(tmp_path / "one.store"), str(tmp_path / "two.store")
        source = Source([corpora["sha1_store"]])
        with serving(source) as url:
            mirror(url, store=one, prefixes=SHARD)
            mirror(url, store=two, prefixes=range(0x10))
            source.fault("00080", "404")
            with pytest.raises(RemoteError):
                mirror(url, store=one, prefixes=SHARD, workers=1)
            shutil.copyfile(one + JOURNAL_SUFFIX, two + JOURNAL_SUFFIX)
            del source.faults["00080"]
            with pytest.raises(InputError, match="its base differs"):
                mirror(url, store=two, prefixes=SHARD, resume=True)


# -- hostile servers on raw sockets ---------------------------------------------------------------------

Fault = Callable[[bytes], "bytes | Callable[[socket.socket], None]"]


class RawRanges:
    """A keep-alive HTTP/1.1 range server on raw sockets: each ``GET .../range/PREFIX`` gets the store's body
    with its Content-Length, except that ``broken`` gets what ``fault(body)`` gives (bytes, or a function of the
    socket) for its first ``times`` requests (all if None), and the connection is then closed."""

    def __init__(self, store: str, broken: str, fault: Fault, times: int | None = None) -> None:
        self.store = RangeStore(store)
        self.broken, self.fault, self.times = broken, fault, times
        self.requests: collections.Counter[str] = collections.Counter()
        self.stop = threading.Event()

    def handle(self, conn: socket.socket) -> None:
        pending = b""
        while not self.stop.is_set():
            while b"\r\n\r\n" not in pending:
                piece = conn.recv(65536)
                if not piece:
                    return
                pending += piece
            head, _, pending = pending.partition(b"\r\n\r\n")
            prefix = head.split(b" ")[1].decode().split("?")[0].rsplit("/", 1)[-1].upper()
            self.requests[prefix] += 1
            body = self.store.range_body(int(prefix, 16))
            if prefix == self.broken and (self.times is None or self.requests[prefix] <= self.times):
                answer = self.fault(body)
                if callable(answer):
                    answer(conn)
                else:
                    conn.sendall(answer)
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    @contextlib.contextmanager
    def serving(self) -> Iterator[str]:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.2)

        def accept() -> None:
            while not self.stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._guarded, args=(conn,), daemon=True).start()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{listener.getsockname()[1]}"
        finally:
            self.stop.set()
            thread.join(10)
            listener.close()
            self.store.close()

    def _guarded(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(30)
            self.handle(conn)


def _first_lines(body: bytes) -> bytes:
    """The body without its last line: whole lines, a shorter range."""
    return body[: body.rindex(b"\r\n")]


def _chunks(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)


def _gzip_cut(body: bytes) -> bytes:
    encoder = zlib.compressobj(wbits=31)
    return encoder.compress(_first_lines(body)) + encoder.flush(zlib.Z_SYNC_FLUSH)  # no final block, no trailer


def _drip(body: bytes) -> Callable[[socket.socket], None]:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        for byte in body:  # a byte every 50 ms: every read gets something long before its timeout
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    return script


def _silent(body: bytes) -> Callable[[socket.socket], None]:
    return lambda conn: time.sleep(5)  # reads the request, never answers


CUT_SHORT: dict[str, tuple[Fault, RemoteErrorCode, int]] = {
    # fault, the error it ends in, the requests it costs with retries=2
    "close-delimited 200 cut short": (
        lambda body: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + _first_lines(body),
        RemoteErrorCode.BAD_RESPONSE,
        1,
    ),
    "HTTP/1.0 200 without a length": (
        lambda body: b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + _first_lines(body),
        RemoteErrorCode.BAD_RESPONSE,
        1,
    ),
    "chunked body without its last chunk": (
        lambda body: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunks(_first_lines(body)),
        RemoteErrorCode.CONNECTION,
        3,
    ),
    "gzip stream without its end": (
        lambda body: (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
            % (len(_gzip_cut(body)), _gzip_cut(body))
        ),
        RemoteErrorCode.BAD_RESPONSE,
        1,
    ),
    "a drip past the deadline": (_drip, RemoteErrorCode.TIMEOUT, 3),
    "a server that never answers": (_silent, RemoteErrorCode.TIMEOUT, 3),
}


class TestHostileServers:
    @pytest.mark.parametrize("kind", list(CUT_SHORT))
    def test_a_range_that_cannot_be_proven_whole_is_never_written(
        self, corpora: dict[str, Any], tmp_path: Path, kind: str
    ) -> None:
        """Each answer that may be cut short fails its range (RemoteError naming it) after the protocol's retries;
        the store, its ETags and the filter stay as they were, and the journal does not hold that range."""
        fault, code, requests = CUT_SHORT[kind]
        store, bloom = str(tmp_path / "m.store"), str(tmp_path / "m.bloom")
        bad = _leaked_prefix(corpora["sha1"])
        server = RawRanges(corpora["sha1_store"], bad, fault)
        with server.serving() as url:
            server.times = 0  # a first mirror from the same server, whole
            mirror(url, store=store, filter=bloom, prefixes=SHARD, workers=4)
            before = files(store, store + ETAGS_SUFFIX, bloom)
            server.times, server.requests = None, collections.Counter()
            with pytest.raises(RemoteError, match=f"range {bad}") as info:
                mirror(url, store=store, filter=bloom, prefixes=SHARD, update=True, workers=4,
                       options=mirror_options(retries=2, timeout=0.5, attempt_deadline=1.0))  # fmt: skip
        assert info.value.code == code
        assert server.requests[bad] == requests
        assert files(store, store + ETAGS_SUFFIX, bloom) == before
        assert int(bad, 16) not in _journaled(store + JOURNAL_SUFFIX)

    def test_429_with_retry_after_then_success(self, corpora: dict[str, Any], tmp_path: Path) -> None:
        """A 429 with Retry-After is waited out (the protocol's rule) and the range asked again, then mirrored."""
        store = str(tmp_path / "m.store")
        bad = _leaked_prefix(corpora["sha1"])
        answer = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 2\r\n\r\nno"
        server = RawRanges(corpora["sha1_store"], bad, lambda body: answer, times=1)
        with server.serving() as url:
            report = mirror(url, store=store, prefixes=SHARD, workers=4)
        assert server.requests[bad] == 2 and report.retries == 1
        same_ranges(store, corpora["sha1_store"], SHARD)

    def test_a_complete_http_1_0_answer_with_a_length_is_mirrored(
        self, corpora: dict[str, Any], tmp_path: Path
    ) -> None:
        """An HTTP/1.0 server that frames its bodies by Content-Length is mirrored whole (a new connection each)."""
        store = str(tmp_path / "m.store")
        bad = _leaked_prefix(corpora["sha1"])
        server = RawRanges(
            corpora["sha1_store"],
            bad,
            lambda body: b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        )
        with server.serving() as url:
            report = mirror(url, store=store, prefixes=SHARD, workers=4)
        assert report.retries == 0
        same_ranges(store, corpora["sha1_store"], SHARD)
