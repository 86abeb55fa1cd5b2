"""The server's logs, metrics, liveness and readiness (credcheck.server._telemetry, .logs, .metrics): in the app,
and end to end under `credcheck serve` with two workers of granian and of gunicorn."""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import credcheck
from credcheck.pairs._service import make_pair_service
from credcheck.pairs.build import build_pairs
from credcheck.pairs.keys import load_key, write_key
from credcheck.server import RangeApp, Telemetry, make_app
from credcheck.server._app import UNROUTED
from credcheck.server._logs import ACCESS_LOGGER, JsonLines
from credcheck.server._metrics import ENV, forget_dead_workers, multiprocess_directory
from credcheck.store import RangeStore

from .helpers import TINY, SerialExecutor, call, recording, write_combo
from .pairs_fixtures import LEAKED, environ, query_body

#: Prefixes no one would log by chance: each is asked for, and must appear in no log line and no metric.
PREFIXES = ("C0FFE", "DECAF", "BEEF5")
LEAKED_PASSWORD = "hunter2"
LEAKED_HASH = credcheck.sha1_hex(LEAKED_PASSWORD)
#: A bucket that is valid (16 bucket bits) and distinctive, and one far out of range.
BUCKET, BAD_BUCKET = 48879, 987654321
QUERY_SECRET = "token=SeCrEtQuErY"


def _metrics(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of a /metrics page, parsed by prometheus_client's own parser: name -> labels -> value."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = collections.defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _requests_by_route(samples: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> collections.Counter[Any]:
    counted: collections.Counter[Any] = collections.Counter()
    for labels, value in samples["credcheck_http_requests_total"].items():
        counted[(dict(labels)["route"], int(dict(labels)["status"]))] = int(value)
    return counted


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("telemetry")
    dump = folder / "pwned.txt"
    rows = [f"{LEAKED_HASH}:7", *(f"{prefix}{n:035X}:{n + 1}" for prefix in PREFIXES for n in range(3))]
    dump.write_text("\n".join(rows) + "\n")
    credcheck.build([dump], store=folder / "pwned.store")
    return folder / "pwned.store"


@pytest.fixture
def store(store_path: Path) -> Iterator[RangeStore]:
    with RangeStore(store_path) as opened:
        yield opened


class TestJsonLines:
    def test_a_record_is_one_json_line_with_its_fields(self) -> None:
        """A record is one JSON object on one line: time, level, logger, pid, its own fields and the message."""
        record = logging.LogRecord("credcheck.server", logging.WARNING, "", 0, "two\nlines %s", ("x",), None)
        record.event, record.store = "store_broken", "sha1"
        line = JsonLines().format(record)
        assert "\n" not in line
        fields = json.loads(line)
        assert fields["level"] == "warning" and fields["logger"] == "credcheck.server"
        assert fields["pid"] == os.getpid() and fields["event"] == "store_broken" and fields["store"] == "sha1"
        assert fields["msg"] == "two\nlines x"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["ts"])


class TestRoutes:
    @pytest.mark.parametrize(
        ("path", "template"),
        [
            ("/range/C0FFE", "/range/{prefix}"),
            ("/range/not-a-prefix/at/all", "/range/{prefix}"),
            ("/v1/pairs/config", "/v1/pairs/config"),
            ("/v1/pairs/query", "/v1/pairs/query"),
            ("/v1/pairs/C0FFE", "/v1/pairs/{other}"),
            ("/health", "/health"),
            ("/ready", "/ready"),
            ("/", "/"),
            ("/metrics", "/metrics"),
            ("/C0FFE", UNROUTED),
        ],
    )
    def test_a_request_is_named_by_its_route_template(
        self, store: RangeStore, caplog: pytest.LogCaptureFixture, path: str, template: str
    ) -> None:
        """The access record names a request by its route's template, never by its path."""
        app = make_app([store], telemetry=Telemetry())
        caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
        call(app, path)
        (record,) = caplog.records
        assert record.route == template  # type: ignore[attr-defined]


class TestAccessRecord:
    def record(self, app: RangeApp, caplog: pytest.LogCaptureFixture, path: str, **options: Any) -> dict[str, Any]:
        caplog.clear()
        caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
        call(app, path, **options)
        (record,) = caplog.records
        return json.loads(JsonLines().format(record))  # type: ignore[no-any-return]

    def test_fields(self, store: RangeStore, caplog: pytest.LogCaptureFixture) -> None:
        """One record a request: route, method, status, bytes, duration and pid; no client address."""
        app = make_app([store], telemetry=Telemetry())
        fields = self.record(app, caplog, "/health", method="HEAD")
        assert fields["event"] == "request" and fields["route"] == "/health" and fields["method"] == "HEAD"
        assert fields["status"] == 200 and fields["bytes"] == 0 and fields["duration_ms"] >= 0
        assert fields["pid"] == os.getpid() and "client" not in fields
        assert self.record(app, caplog, "/health", method="BREW")["method"] == "other"

    def test_bytes_exact_except_where_they_tell_the_key(
        self, store: RangeStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A status page's bytes are exact; a range body's are rounded up to a power of two, as its exact length
        narrows down its prefix."""
        app = make_app([store], telemetry=Telemetry())
        status = call(app, "/health")
        assert self.record(app, caplog, "/health")["bytes"] == len(status.body)
        body = call(app, "/range/C0FFE", headers={"Accept-Encoding": "identity"}).body
        assert len(body) & (len(body) - 1)  # not a power of two already
        logged = self.record(app, caplog, "/range/C0FFE", headers={"Accept-Encoding": "identity"})["bytes"]
        assert logged == 1 << (len(body) - 1).bit_length()

    @pytest.mark.parametrize(
        ("peer", "forwarded", "logged"),
        [
            ("198.51.100.7", None, "198.51.100.7"),
            ("198.51.100.7", "203.0.113.9", "198.51.100.7"),  # not a trusted proxy: the header is ignored
            ("192.0.2.1", "203.0.113.9", "203.0.113.9"),
            ("192.0.2.1", "not an address", "192.0.2.1"),
        ],
    )
    def test_client_address_only_when_asked(
        self, store: RangeStore, caplog: pytest.LogCaptureFixture, peer: str, forwarded: str | None, logged: str
    ) -> None:
        """With client_address the record holds the peer's address; behind a trusted proxy the forwarded one."""
        app = make_app([store], telemetry=Telemetry.of(client_address=True, trusted_proxies=["192.0.2.1"]))
        request = environ("GET", "/health", address=peer)
        if forwarded is not None:
            request["HTTP_X_FORWARDED_FOR"] = forwarded
        caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
        app(request, recording([]))
        (record,) = caplog.records
        assert record.client == logged  # type: ignore[attr-defined]

    def test_nothing_recorded_without_telemetry(self, store: RangeStore, caplog: pytest.LogCaptureFixture) -> None:
        """An app made without telemetry records nothing, and /metrics is a 404."""
        app = make_app([store])
        caplog.set_level(logging.DEBUG, logger="credcheck")
        call(app, "/range/C0FFE")
        assert caplog.records == []
        assert call(app, "/metrics").status == 404


class TestRobustness:
    def test_random_paths_and_methods_add_no_series(self, store: RangeStore) -> None:
        """Whatever paths and methods clients send, the metrics hold only the route table's templates and the
        app's statuses: a client cannot add series (nor a path to a label)."""
        app = make_app([store], telemetry=Telemetry(metrics=True))
        for number in range(200):
            call(app, f"/{number:x}/range/{number:05X}?q={number}", "GET" if number % 2 else f"M{number}")
            call(app, f"/v1/pairs/{number}", "POST")
        routes = set(_requests_by_route(_metrics(call(app, "/metrics").body.decode())))
        assert routes == {(UNROUTED, 404), ("/v1/pairs/{other}", 404)}

    def test_a_metric_that_cannot_be_counted_fails_no_request(
        self, store: RangeStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A metric whose value cannot be written (its file cannot grow) leaves the request answered, and is one
        error event, not one a request."""
        app = make_app([store], telemetry=Telemetry(metrics=True))
        assert app.recorder is not None and app.recorder.metrics is not None

        def full(*args: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(app.recorder.metrics, "request", full)
        monkeypatch.setattr(app.recorder.metrics, "body", full)
        caplog.set_level(logging.INFO, logger="credcheck.server")
        assert [call(app, "/range/C0FFE").status for _ in range(3)] == [200, 200, 200]
        assert [getattr(r, "event", None) for r in caplog.records].count("metrics_error") == 1


class TestReadiness:
    def test_health_is_live_while_ready_says_unavailable(self, store_path: Path, tmp_path: Path) -> None:
        """A store that cannot be served makes /ready (and /) a 503; /health stays 200 with the same document."""
        app = RangeApp([], pending=[("sha1", str(tmp_path / "missing.store"))])
        ready, root, health = call(app, "/ready"), call(app, "/"), call(app, "/health")
        assert (ready.status, root.status, health.status) == (503, 503, 200)
        assert json.loads(health.body)["status"] == "unavailable" == json.loads(ready.body)["status"]

    def test_ready_names_where_bodies_come_from(self, store: RangeStore) -> None:
        """A ready server's /ready is 200 and says, for each store, whether its bodies come from the side file."""
        reply = call(make_app([store]), "/ready")
        assert reply.status == 200
        assert json.loads(reply.body)["stores"]["sha1"]["bodies"] in (
            "rendered",
            "side file",
            "side file, being checked",
        )


class TestMetricsInOneProcess:
    def test_counts_by_route_status_and_body_source(self, store: RangeStore) -> None:
        """/metrics counts each request by route template and status (304s and 400s included) and each range
        body by where it came from; no label holds a prefix."""
        app = make_app([store], telemetry=Telemetry(metrics=True))
        etag = call(app, "/range/C0FFE").headers["etag"]
        call(app, "/range/C0FFE")
        assert call(app, "/range/DECAF", headers={"If-None-Match": etag}).status == 200
        assert call(app, "/range/C0FFE", headers={"If-None-Match": etag}).status == 304
        assert call(app, "/range/NOPE!").status == 400
        reply = call(app, "/metrics")
        assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = _metrics(reply.body.decode())
        assert _requests_by_route(samples) == {
            ("/range/{prefix}", 200): 3,
            ("/range/{prefix}", 304): 1,
            ("/range/{prefix}", 400): 1,
        }
        sources = {dict(k)["source"]: v for k, v in samples["credcheck_range_bodies_total"].items()}
        assert sources == {"rendered": 2, "cache": 1}
        assert samples["credcheck_store_verified"] == {(("store", "sha1"),): 1.0}
        assert samples["credcheck_store_generation"] == {(("store", "sha1"),): 0.0}
        assert not any(prefix.lower() in reply.body.decode().lower() for prefix in PREFIXES)

    def test_a_reload_is_counted_and_logged(
        self, store_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A new store renamed over the served path: the generation gauge goes to 1, a reload is counted as
        served, and the change is an event record naming the store's role."""
        served = tmp_path / "live.store"
        served.write_bytes(store_path.read_bytes())
        caplog.set_level(logging.INFO, logger="credcheck")
        app = make_app([served], telemetry=Telemetry(metrics=True))
        try:
            call(app, "/range/C0FFE")
            other = tmp_path / "other.txt"
            other.write_text(f"{LEAKED_HASH}:8\n")
            credcheck.build([other], store=tmp_path / "new.store")
            os.replace(tmp_path / "new.store", served)
            deadline = time.monotonic() + 30
            while _metrics(call(app, "/metrics").body.decode())["credcheck_store_generation"] != {
                (("store", "sha1"),): 1.0
            }:
                assert time.monotonic() < deadline, "the new store was never served"
                time.sleep(0.05)
            samples = _metrics(call(app, "/metrics").body.decode())
            assert samples["credcheck_store_reloads_total"] == {(("result", "served"), ("store", "sha1")): 1.0}
            events = [getattr(r, "event", None) for r in caplog.records if r.name == "credcheck.server"]
            assert "reload_started" in events and "reloaded" in events
            (reloaded,) = [r for r in caplog.records if getattr(r, "event", None) == "reloaded"]
            assert reloaded.store == "sha1"  # type: ignore[attr-defined]
        finally:
            app.close()

    def test_a_store_changed_in_place_turns_its_gauge_to_zero(self, store_path: Path, tmp_path: Path) -> None:
        """A served store truncated in place: its scheme answers 503, /ready 503 and the verified gauge 0."""
        served = tmp_path / "live.store"
        served.write_bytes(store_path.read_bytes())
        app = make_app([served], telemetry=Telemetry(metrics=True))
        try:
            call(app, "/range/C0FFE")
            os.truncate(served, 4096)
            assert call(app, "/range/C0FFE").status == 503
            assert call(app, "/ready").status == 503 and call(app, "/health").status == 200
            samples = _metrics(call(app, "/metrics").body.decode())
            assert samples["credcheck_store_verified"] == {(("store", "sha1"),): 0.0}
        finally:
            app.close()


class TestRateLimitEvents:
    def test_refusals_are_one_event_then_a_count(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The rate limit's first refusal is an event at once; later ones within the interval are counted into
        the next event, not logged one by one; no event names the address or the bucket."""
        write_key(tmp_path / "key")
        write_combo(tmp_path / "combo.txt", LEAKED)
        build_pairs(tmp_path / "combo.txt", tmp_path / "p", load_key(tmp_path / "key"), stretch=TINY,
                    executor=SerialExecutor())  # fmt: skip
        caplog.set_level(logging.INFO, logger="credcheck")
        with make_pair_service(tmp_path / "p", tmp_path / "key", rate=0.001, burst=1) as service:
            clock = [1000.0]
            monkeypatch.setattr("credcheck.pairs._service.time.monotonic", lambda: clock[0])
            codes = [service.respond(environ(body=query_body(7)))[0][:3] for _ in range(6)]
            assert codes == ["200"] + ["429"] * 5
            events = [r for r in caplog.records if getattr(r, "event", None) == "rate_limited"]
            assert [e.refused for e in events] == [1]  # type: ignore[attr-defined]
            clock[0] += 60
            service.respond(environ(body=query_body(7)))
            events = [r for r in caplog.records if getattr(r, "event", None) == "rate_limited"]
            assert [e.refused for e in events] == [1, 5]  # type: ignore[attr-defined]
        assert not any("192.0.2.1" in r.getMessage() or "192.0.2.1" in repr(vars(r)) for r in caplog.records)


class TestMultiprocessDirectory:
    def test_private_fresh_and_removed(self) -> None:
        """The directory is new, 0700, named in the environment while the server runs, and gone after."""
        before = os.environ.get(ENV)
        with multiprocess_directory() as path:
            assert os.environ[ENV] == path and os.listdir(path) == []
            assert os.stat(path).st_mode & 0o777 == 0o700
        assert not os.path.exists(path) and os.environ.get(ENV) == before

    def test_a_forked_worker_leaves_it_in_place(self) -> None:
        """A process forked inside the block that unwinds through it (a gunicorn worker) does not remove it."""
        pid = -1
        try:
            with multiprocess_directory() as path:
                pid = os.fork()
                if pid == 0:
                    raise SystemExit(0)  # the child unwinds through the block's exit ...
                os.waitpid(pid, 0)
                assert os.path.isdir(path)
        finally:
            if pid == 0:
                os._exit(0)  # ... and ends here, never back in pytest

    def test_dead_workers_gauges_go_counts_stay(self, tmp_path: Path) -> None:
        """The live gauges of a process that is gone are dropped; its counters stay."""
        child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead = int(child.stdout)
        (tmp_path / f"gauge_livemin_{dead}.db").write_bytes(b"")
        (tmp_path / f"counter_{dead}.db").write_bytes(b"")
        (tmp_path / f"gauge_livemin_{os.getpid()}.db").write_bytes(b"")
        forget_dead_workers(str(tmp_path))
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [f"counter_{dead}.db", f"gauge_livemin_{os.getpid()}.db"]
        )


# ----------------------------------------------------------------------------------------------------
# End to end: credcheck serve with two workers, every route and status, /metrics and every log line.


@dataclasses.dataclass
class Run:
    kind: str
    sent: collections.Counter[tuple[str, int]]
    metrics: str
    stdout: list[str]
    stderr: list[str]
    pids: set[int]


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("telemetry-pairs")
    write_key(folder / "key")
    write_combo(folder / "combo.txt", LEAKED)
    build_pairs(folder / "combo.txt", folder / "p", load_key(folder / "key"), stretch=TINY, bucket_bits=16,
                executor=SerialExecutor())  # fmt: skip
    return {"key": folder / "key", "pairs": folder / "p"}


_URL = re.compile(r"http://127\.0\.0\.1:\d+")


#: The worker processes each server runs here (wsgiref: one, threaded).
WORKERS = {"granian": 2, "gunicorn": 2, "wsgiref": 1}


@pytest.fixture(scope="module", params=list(WORKERS))
def run(
    request: pytest.FixtureRequest,
    store_path: Path,
    pair_files: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Run:
    """``credcheck serve --metrics`` with two workers (wsgiref: one process), a SHA-1 and an NTLM store and a pair
    store limited to a burst of 2: a request of every route and status (200, 204, 304, 400, 404, 405, 429, 503),
    counted as sent; then one scrape of /metrics; then the server stopped and its output kept."""
    kind = request.param
    if kind != "wsgiref":
        pytest.importorskip(kind)
    folder = tmp_path_factory.mktemp(f"telemetry-{kind}")
    ntlm_dump = folder / "ntlm.txt"
    ntlm_dump.write_text("".join(f"{prefix}{n:027X}:1\n" for prefix in PREFIXES for n in range(2)))
    credcheck.build([ntlm_dump], store=folder / "ntlm.store", scheme="ntlm")
    argv = [
        sys.executable, "-m", "credcheck", "serve", "--store", str(store_path), "--store", str(folder / "ntlm.store"),
        "--pairs", str(pair_files["pairs"]), "--key", str(pair_files["key"]), "--rate-limit", "0.001", "--burst", "2",
        "--server", kind, "--workers", "2", "--port", "0", "--metrics", "--bodies", "off",
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    stdout: list[str] = []
    stderr: list[str] = []
    seen: queue.Queue[str | None] = queue.Queue()

    def pump_out() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stdout.append(line)
            seen.put(line)
        seen.put(None)

    def pump_err() -> None:
        assert process.stderr is not None
        stderr.extend(process.stderr)

    pumps = [threading.Thread(target=f, daemon=True) for f in (pump_out, pump_err)]
    for pump in pumps:
        pump.start()
    sent: collections.Counter[tuple[str, int]] = collections.Counter()
    try:
        while (line := seen.get(timeout=60)) is not None and not _URL.search(line):
            pass
        assert line is not None, "".join(stderr)[-2000:]
        url = _URL.search(line).group(0)  # type: ignore[union-attr]

        def ask(method: str, path: str, route: str, status: int, **options: Any) -> requests.Response:
            # a new connection each time, so that both workers get some
            headers = {"Connection": "close", **options.pop("headers", {})}
            reply = requests.request(method, url + path, headers=headers, timeout=30, **options)
            assert reply.status_code == status, (method, path, reply.status_code, reply.text)
            sent[(route, status)] += 1
            return reply

        ranges = "/range/{prefix}"
        first = ask("GET", f"/range/{PREFIXES[0]}", ranges, 200)
        ask("GET", f"/range/{PREFIXES[0].lower()}", ranges, 304, headers={"If-None-Match": first.headers["ETag"]})
        ask("GET", f"/range/{LEAKED_HASH[:5]}", ranges, 200, headers={"Add-Padding": "true"})
        ask("HEAD", f"/range/{PREFIXES[1]}", ranges, 200)
        ask("GET", f"/range/{PREFIXES[2]}?mode=ntlm&{QUERY_SECRET}", ranges, 200)
        ask("GET", "/range/XYZ12", ranges, 400)
        ask("POST", f"/range/{PREFIXES[0]}", ranges, 405)
        ask("OPTIONS", f"/range/{PREFIXES[0]}", ranges, 204)
        ask("GET", f"/nowhere/{PREFIXES[0]}", UNROUTED, 404)
        ask("GET", f"/v1/pairs/{PREFIXES[1]}", "/v1/pairs/{other}", 404)
        ask("GET", "/v1/pairs/config", "/v1/pairs/config", 200)
        query = {"headers": {"Content-Type": "application/json"}}
        ask("POST", "/v1/pairs/query", "/v1/pairs/query", 200, data=query_body(BUCKET), **query)
        ask("POST", "/v1/pairs/query", "/v1/pairs/query", 400, data=query_body(BAD_BUCKET), **query)
        ask("POST", "/v1/pairs/query", "/v1/pairs/query", 429, data=query_body(BUCKET), **query)
        ask("GET", "/ready", "/ready", 200)
        # the NTLM store cut short under the server: its ranges and readiness answer 503, liveness 200
        os.truncate(folder / "ntlm.store", 4096)
        ask("GET", f"/range/{PREFIXES[2]}?mode=ntlm", ranges, 503)
        ask("GET", "/ready", "/ready", 503)
        ask("GET", "/", "/", 503)
        ask("GET", "/health", "/health", 200)
        # until the access log shows both workers answering (a fresh connection each: they share them out)
        pids: set[int] = set()
        for _ in range(400):
            ask("GET", "/health", "/health", 200)
            time.sleep(0.01)
            pids = {fields["pid"] for fields in map(json.loads, list(stderr)) if fields.get("event") == "request"}
            if len(pids) >= WORKERS[kind]:
                break
        metrics = requests.get(f"{url}/metrics", timeout=30).text
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pump in pumps:
            pump.join(10)
    return Run(kind, sent, metrics, stdout, stderr, pids)


class TestServeEndToEnd:
    def test_request_counts_add_up_across_workers(self, run: Run) -> None:
        """/metrics, read with prometheus_client's parser, counts exactly the requests sent, by route template
        and status, although two worker processes answered them (granian, gunicorn)."""
        assert len(run.pids) == WORKERS[run.kind]
        assert _requests_by_route(_metrics(run.metrics)) == run.sent

    def test_pair_queries_and_store_states(self, run: Run) -> None:
        """Pair queries are counted by outcome; the NTLM store cut short shows as not verified, the others as
        verified, each by its role."""
        samples = _metrics(run.metrics)
        outcomes = {dict(k)["result"]: v for k, v in samples["credcheck_pair_queries_total"].items()}
        assert outcomes == {"answered": 1, "refused": 1, "rate_limited": 1}
        verified = {dict(k)["store"]: v for k, v in samples["credcheck_store_verified"].items()}
        assert verified == {"sha1": 1.0, "ntlm": 0.0, "pairs": 1.0}

    def test_every_log_line_is_json_without_secrets(self, run: Run) -> None:
        """Every line on standard error is a JSON record, and none of them -- nor /metrics -- holds a prefix
        asked for, the leaked hash, the bucket, the query string or a client address."""
        records = [json.loads(line) for line in run.stderr]
        assert {"start", "store_verified", "worker_start", "request", "store_broken", "rate_limited"} <= {
            r.get("event") for r in records
        }
        assert not any("client" in r for r in records)
        secrets = [*PREFIXES, LEAKED_HASH, LEAKED_PASSWORD, str(BUCKET), str(BAD_BUCKET), QUERY_SECRET, "mode=ntlm"]
        for text in ("".join(run.stderr), "".join(run.stdout), run.metrics):
            found = [secret for secret in secrets if secret.lower() in text.lower()]
            assert found == []
        paths = {r["route"] for r in records if r.get("event") == "request"}
        assert paths <= {"/range/{prefix}", "/v1/pairs/{other}", "/v1/pairs/config", "/v1/pairs/query", UNROUTED,
                         "/ready", "/", "/health", "/metrics"}  # fmt: skip

    def test_the_first_line_stays_human(self, run: Run) -> None:
        """The banner on standard output is one human line naming the server, its workers and the URL."""
        assert run.stdout[0].startswith("credcheck: serving sha1, ntlm ranges and credential pairs on http://")
        assert f"({run.kind}, {'2 workers' if WORKERS[run.kind] == 2 else 'threaded'}" in run.stdout[0]
