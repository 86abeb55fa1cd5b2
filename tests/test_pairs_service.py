"""The pair service called directly: the config byte for byte, strict queries (4xx, never 5xx), keys, rate limits."""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credcheck.errors import ArtifactError, StorageError
from credcheck.pairs import _oprf
from credcheck.pairs._ratelimit import RateLimiter, address_key
from credcheck.pairs._service import MAX_BODY, PairService, UnavailablePairs, make_pair_service
from credcheck.pairs.keys import load_key, write_key
from credcheck.pairs.store import PairStore, check_bucket

from .helpers import KEY
from .pairs_fixtures import OTHER_KEY, build_store, environ, query_body


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pairsvc")


@pytest.fixture(scope="module")
def store_path(folder: Path) -> Path:
    return build_store(folder)


@pytest.fixture(scope="module")
def plain_store_path(folder: Path) -> Path:
    return build_store(folder, username_entries=False, name="plain")


@pytest.fixture
def service(store_path: Path) -> Iterator[PairService]:
    svc = make_pair_service(store_path, KEY, rate=0)
    yield svc
    svc.close()


def status(response: tuple[str, list[tuple[str, str]], bytes]) -> int:
    return int(response[0].split()[0])


class TestConfig:
    def test_byte_exact(self, service: PairService) -> None:
        """GET /v1/pairs/config is DESIGN.md's object, field for field, in its order, as JSON."""
        code, headers, body = service.respond(environ("GET", "/v1/pairs/config"))
        expected = (
            '{"protocol": "credcheck-pairs-v1", "suite": "ristretto255-SHA512", "mode": "voprf", '
            f'"public_key": "{KEY.pk.hex()}", "key_id": "{KEY.key_id.hex()}", "bucket_bits": 8, '
            '"stretch": {"name": "scrypt", "n": 16, "r": 1, "p": 1}, "username_entries": true}'
        )
        assert code == "200 OK" and body.decode() == expected
        assert ("Content-Type", "application/json") in headers

    def test_key_id_is_sha256_of_public_key(self, service: PairService) -> None:
        """The config's key id is the first 8 bytes of SHA-256 of its public key."""
        import hashlib

        doc = json.loads(service.respond(environ("GET", "/v1/pairs/config"))[2])
        assert bytes.fromhex(doc["key_id"]) == hashlib.sha256(bytes.fromhex(doc["public_key"])).digest()[:8]


class TestQuery:
    def test_answer(self, service: PairService, store_path: Path) -> None:
        """A query is answered with the key id, one evaluation per element, a proof that verifies, the bucket."""
        _, blinded = _oprf.blind(b"x" * 32)
        body = json.dumps({"bucket": 7, "elements": [blinded.hex()]}).encode()
        code, headers, out = service.respond(environ(body=body))
        doc = json.loads(out)
        assert code == "200 OK" and list(doc) == ["key_id", "evaluated", "proof", "entries"]
        assert ("Content-Type", "application/json") in headers and ("Cache-Control", "no-store") in headers
        _oprf.verify_proof(KEY.pk, [blinded], [bytes.fromhex(doc["evaluated"][0])], bytes.fromhex(doc["proof"]))
        with PairStore(store_path) as store:
            assert base64.b64decode(doc["entries"]) == store.bucket(7)
        assert check_bucket(base64.b64decode(doc["entries"])) % 16 == 0

    def test_two_elements(self, service: PairService) -> None:
        """With username entries, a query of two elements gets two evaluations under one proof."""
        doc = json.loads(service.respond(environ(body=query_body(0, 2)))[2])
        assert len(doc["evaluated"]) == 2

    def test_upper_case_hex(self, service: PairService) -> None:
        """Elements may be upper-case hex."""
        body = json.dumps({"bucket": 1, "elements": [_oprf.blind(b"y")[1].hex().upper()]}).encode()
        assert status(service.respond(environ(body=body))) == 200


GOOD = _oprf.blind(b"z")[1].hex()
IDENTITY = "00" * 32
NOT_A_POINT = "ff" * 32


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"[]", "exactly"),
        (b'"x"', "exactly"),
        (b"null", "exactly"),
        (json.dumps({"bucket": 1}).encode(), "exactly"),
        (json.dumps({"elements": [GOOD]}).encode(), "exactly"),
        (json.dumps({"bucket": 1, "elements": [GOOD], "extra": 1}).encode(), "exactly"),
        (b'{"bucket": 1, "bucket": 2, "elements": ["' + GOOD.encode() + b'"]}', "twice"),
        (json.dumps({"bucket": True, "elements": [GOOD]}).encode(), "integer"),
        (json.dumps({"bucket": 1.0, "elements": [GOOD]}).encode(), "integer"),
        (json.dumps({"bucket": "1", "elements": [GOOD]}).encode(), "integer"),
        (json.dumps({"bucket": None, "elements": [GOOD]}).encode(), "integer"),
        (b'{"bucket": NaN, "elements": ["' + GOOD.encode() + b'"]}', "NaN"),
        (b'{"bucket": 1e400, "elements": ["' + GOOD.encode() + b'"]}', "integer"),
        (json.dumps({"bucket": 256, "elements": [GOOD]}).encode(), "from 0 to 255"),
        (json.dumps({"bucket": -1, "elements": [GOOD]}).encode(), "from 0 to 255"),
        (b'{"bucket": ' + b"9" * 900 + b', "elements": ["' + GOOD.encode() + b'"]}', "from 0 to 255"),
        (json.dumps({"bucket": 1, "elements": []}).encode(), "1 or 2 elements"),
        (json.dumps({"bucket": 1, "elements": [GOOD] * 3}).encode(), "1 or 2 elements"),
        (json.dumps({"bucket": 1, "elements": GOOD}).encode(), "1 or 2 elements"),
        (json.dumps({"bucket": 1, "elements": {"0": GOOD}}).encode(), "1 or 2 elements"),
        (json.dumps({"bucket": 1, "elements": [GOOD[:-2]]}).encode(), "64 hex digits"),
        (json.dumps({"bucket": 1, "elements": [GOOD + "00"]}).encode(), "64 hex digits"),
        (json.dumps({"bucket": 1, "elements": ["zz" * 32]}).encode(), "64 hex digits"),
        (json.dumps({"bucket": 1, "elements": [" " + GOOD[1:]]}).encode(), "64 hex digits"),
        (json.dumps({"bucket": 1, "elements": ["\u0660" * 64]}).encode(), "64 hex digits"),
        (json.dumps({"bucket": 1, "elements": [1]}).encode(), "64 hex digits"),
        (json.dumps({"bucket": 1, "elements": [IDENTITY]}).encode(), "identity"),
        (json.dumps({"bucket": 1, "elements": [NOT_A_POINT]}).encode(), "not a valid"),
        (json.dumps({"bucket": 1, "elements": [GOOD, IDENTITY]}).encode(), "element 2"),
        (b"\xef\xbb\xbf" + json.dumps({"bucket": 1, "elements": [GOOD]}).encode(), "not JSON"),
        (b'{"bucket": 1, "elements": ["\xff"]}', "not UTF-8"),
        (b"[" * 500 + b"]" * 500, "exactly"),
    ],
)
def test_malformed_query_is_400(service: PairService, body: bytes, reason: str) -> None:
    """A query body that is not exactly the documented JSON is a 400 with a short plain reason."""
    code, headers, out = service.respond(environ(body=body))
    assert code == "400 Bad Request", out
    assert reason in out.decode() and len(out) < 120
    assert ("Content-Type", "text/plain; charset=utf-8") in headers


def test_two_elements_without_username_entries(plain_store_path: Path) -> None:
    """A server with no username entries takes exactly one element."""
    with make_pair_service(plain_store_path, KEY, rate=0) as svc:
        code, _, out = svc.respond(environ(body=query_body(0, 2)))
    assert code == "400 Bad Request" and b"exactly 1 element" in out


class TestFraming:
    def test_too_large(self, service: PairService) -> None:
        """A Content-Length above the cap is a 400, refused before anything is read."""
        env = environ(body=b"", length=str(MAX_BODY + 1))
        env["wsgi.input"] = _Exploding()
        assert status(service.respond(env)) == 400

    def test_chunked_beyond_cap(self, service: PairService) -> None:
        """A chunked body (de-chunked by the server) longer than the cap is a 400."""
        env = environ(body=b"{" * (MAX_BODY + 10), HTTP_TRANSFER_ENCODING="chunked")
        assert status(service.respond(env)) == 400

    def test_chunked_within_cap(self, service: PairService) -> None:
        """A chunked body within the cap is read and answered."""
        env = environ(body=query_body(3), HTTP_TRANSFER_ENCODING="chunked")
        assert status(service.respond(env)) == 200

    def test_no_length(self, service: PairService) -> None:
        """A POST with neither Content-Length nor chunked framing is a 400."""
        env = environ(body=query_body(3))
        del env["CONTENT_LENGTH"]
        assert status(service.respond(env)) == 400

    @pytest.mark.parametrize("length", ["-1", "1e3", "0x10", "\uff11\uff12"])
    def test_bad_length(self, service: PairService, length: str) -> None:
        """A Content-Length that is not plain decimal is a 400."""
        assert status(service.respond(environ(body=b"{}", length=length))) == 400

    def test_short_body(self, service: PairService) -> None:
        """A body shorter than its Content-Length is a 400."""
        assert status(service.respond(environ(body=b"{}", length="50"))) == 400

    @pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
    def test_content_type(self, service: PairService, content_type: str | None) -> None:
        """A query that is not application/json is a 400."""
        assert status(service.respond(environ(body=query_body(1), content_type=content_type))) == 400

    def test_json_with_charset(self, service: PairService) -> None:
        """application/json with parameters is accepted."""
        env = environ(body=query_body(1), content_type="Application/JSON; charset=utf-8")
        assert status(service.respond(env)) == 200

    @pytest.mark.parametrize(
        ("method", "path", "code"),
        [
            ("GET", "/v1/pairs/query", 405),
            ("PUT", "/v1/pairs/query", 405),
            ("POST", "/v1/pairs/config", 405),
            ("GET", "/v1/pairs/", 404),
            ("GET", "/v1/pairs/config/", 404),
            ("OPTIONS", "/v1/pairs/query", 204),
            ("HEAD", "/v1/pairs/config", 200),
        ],
    )
    def test_methods(self, service: PairService, method: str, path: str, code: int) -> None:
        """Config answers GET and HEAD, query answers POST; anything else is a 4xx (OPTIONS a preflight)."""
        assert status(service.respond(environ(method, path, b""))) == code

    def test_read_error(self, service: PairService) -> None:
        """A body that cannot be read (the peer went away) is a 400, not a 500."""
        env = environ(body=b"", length="10")
        env["wsgi.input"] = _Exploding()
        assert status(service.respond(env)) == 400


class _Exploding:
    def read(self, size: int = -1) -> bytes:
        raise OSError("connection reset")


class TestKeys:
    def test_wrong_key(self, store_path: Path) -> None:
        """A key whose id is not the store's is refused at start-up."""
        with pytest.raises(ArtifactError, match="key id"):
            make_pair_service(store_path, OTHER_KEY, rate=0)

    def test_readable_key_file(self, store_path: Path, tmp_path: Path) -> None:
        """A key file that group or others can read is refused."""
        write_key(tmp_path / "k")
        os.chmod(tmp_path / "k", 0o644)
        with pytest.raises(StorageError, match="accessible to group or others"):
            make_pair_service(store_path, tmp_path / "k", rate=0)


class TestRateLimit:
    def test_burst_then_429_while_another_address_is_served(self, store_path: Path) -> None:
        """A burst from one address ends in 429 with Retry-After, while another address is still answered."""
        limiter = RateLimiter.create(rate=1, burst=3)
        svc = make_pair_service(store_path, KEY, limiter=limiter)
        try:
            codes = [status(svc.respond(environ(body=query_body(1), address="198.51.100.7"))) for _ in range(5)]
            assert codes == [200, 200, 200, 429, 429]
            code, headers, _ = svc.respond(environ(body=query_body(1), address="198.51.100.7"))
            assert code.startswith("429") and dict(headers)["Retry-After"] == "1"
            assert status(svc.respond(environ(body=query_body(1), address="198.51.100.8"))) == 200
        finally:
            svc.close()
            limiter.close()

    def test_refills(self) -> None:
        """Tokens come back at the configured rate."""
        limiter = RateLimiter.create(rate=2, burst=1)
        now = [100.0]
        limiter.clock = lambda: now[0]
        try:
            assert limiter.take("192.0.2.5") == 0
            assert limiter.take("192.0.2.5") == pytest.approx(0.5)
            now[0] += 0.5
            assert limiter.take("192.0.2.5") == 0
        finally:
            limiter.close()

    def test_shared_across_processes(self) -> None:
        """Tokens spent in a forked worker are spent for the parent too (one table, not one per process)."""
        limiter = RateLimiter.create(rate=0.001, burst=4)
        try:
            pid = os.fork()
            if pid == 0:  # the child spends three tokens and leaves at once
                code = 0 if all(limiter.take("192.0.2.9") == 0 for _ in range(3)) else 1
                os._exit(code)
            _, state = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(state) == 0
            assert limiter.take("192.0.2.9") == 0
            assert limiter.take("192.0.2.9") > 0
        finally:
            limiter.close()

    def test_opened_by_path(self) -> None:
        """A worker started from scratch attaches to the parent's table by its path and shares its buckets."""
        parent = RateLimiter.create(rate=0.001, burst=1)
        worker = RateLimiter.open(parent.path)
        try:
            assert worker.take("192.0.2.10") == 0
            assert parent.take("192.0.2.10") > 0
        finally:
            worker.close()
            parent.close()
        assert not os.path.exists(parent.path)

    def test_table_is_private(self) -> None:
        """The table file is readable by its owner only."""
        limiter = RateLimiter.create()
        try:
            assert os.stat(limiter.path).st_mode & 0o077 == 0
        finally:
            limiter.close()

    def test_table_space_is_reserved_when_it_is_made(self) -> None:
        """Every page of the table is allocated when it is made (not a sparse file): on a /dev/shm without room
        the service does not start (a clear StorageError), where a sparse table would kill a worker with SIGBUS
        at the first new page it touched."""
        limiter = RateLimiter.create()
        try:
            st = os.stat(limiter.path)
            assert st.st_blocks * 512 >= st.st_size  # nothing left as a hole
        finally:
            limiter.close()

    def test_a_short_write_where_fallocate_is_missing_is_a_start_up_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On a file system without fallocate the table's zeros are written: a write cut short by a full disk is
        a StorageError too (a table left partly a hole would kill a worker with SIGBUS later), and nothing stays."""

        def unsupported(fd: int, offset: int, length: int) -> None:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")

        real = os.pwrite
        cut: list[int] = []

        def half(fd: int, data: Any, offset: int) -> int:  # a nearly full disk: part of the zeros, then ENOSPC
            if len(data) <= 4096:
                return real(fd, data, offset)
            if cut:
                raise OSError(errno.ENOSPC, "No space left on device")
            cut.append(offset)
            return real(fd, memoryview(data)[: len(data) // 2], offset)

        monkeypatch.setattr(os, "posix_fallocate", unsupported)
        monkeypatch.setattr(os, "pwrite", half)
        with pytest.raises(StorageError, match="rate-limit table"):
            RateLimiter.create(directory=str(tmp_path))
        assert os.listdir(tmp_path) == []

    @pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a tmpfs needs root")
    def test_full_shared_memory_is_a_start_up_error(self, tmp_path: Path) -> None:
        """In a tmpfs with less room than the table, creating it is a StorageError naming the room it needs, and
        nothing is left behind."""
        import subprocess

        where = tmp_path / "shm"
        where.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], check=False).returncode:
            pytest.skip("cannot mount a tmpfs here")
        try:
            with pytest.raises(StorageError, match=r"rate-limit table .* needs 1,572,928 bytes"):
                RateLimiter.create(directory=str(where))
            assert os.listdir(where) == []
        finally:
            subprocess.run(["umount", "-l", str(where)], check=False)

    def test_ipv6_counts_by_64(self) -> None:
        """IPv6 addresses of one /64 share a bucket; IPv4-mapped ones count as IPv4."""
        assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1")
        assert address_key("2001:db8::1") != address_key("2001:db8:0:1::1")
        assert address_key("::ffff:192.0.2.1") == address_key("192.0.2.1")

    def test_eviction_keeps_busy_buckets(self) -> None:
        """A set full of idle buckets gives way to a new address; an active, empty bucket is not forgotten."""
        limiter = RateLimiter.create(rate=0.001, burst=1, sets=1)
        now = [0.0]
        limiter.clock = lambda: now[0]
        try:
            assert limiter.take("192.0.2.1") == 0
            for n in range(2, 40):  # many other addresses, later
                now[0] += 1
                limiter.take(f"192.0.2.{n}")
            now[0] += 1
            assert limiter.take("192.0.2.1") == 0  # forgotten only once it was idle the longest
        finally:
            limiter.close()


class TestForwardedFor:
    @pytest.fixture
    def proxied(self, store_path: Path) -> Iterator[PairService]:
        limiter = RateLimiter.create(rate=0.001, burst=1)
        svc = make_pair_service(store_path, KEY, limiter=limiter, trusted_proxies=["10.0.0.1"])
        yield svc
        svc.close()
        limiter.close()

    def test_from_the_proxy(self, proxied: PairService) -> None:
        """From the named proxy, the address counted is the rightmost one it forwards."""
        env = environ(address="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.5")
        assert proxied.client_address(env) == "203.0.113.5"

    def test_not_from_the_proxy(self, proxied: PairService) -> None:
        """From any other peer, X-Forwarded-For is ignored (a client cannot choose its own bucket)."""
        env = environ(address="203.0.113.9", HTTP_X_FORWARDED_FOR="203.0.113.5")
        assert proxied.client_address(env) == "203.0.113.9"

    def test_forged_header_does_not_reset_the_bucket(self, proxied: PairService) -> None:
        """Changing X-Forwarded-For from a direct peer does not get it a fresh bucket."""
        codes = [
            status(
                proxied.respond(environ(body=query_body(1), address="203.0.113.9", HTTP_X_FORWARDED_FOR=f"1.1.1.{n}"))
            )
            for n in range(3)
        ]
        assert codes == [200, 429, 429]

    @pytest.mark.parametrize(
        ("peer", "trusted"),
        [("::ffff:127.0.0.1", "127.0.0.1"), ("127.0.0.1", "::ffff:127.0.0.1"), ("::FFFF:10.0.0.1", "10.0.0.1")],
    )
    def test_ipv4_mapped_proxy_is_recognised(self, store_path: Path, peer: str, trusted: str) -> None:
        """A server listening on ``::`` sees an IPv4 proxy as ``::ffff:a.b.c.d``: it is the proxy named, so each
        client gets its own bucket (not the proxy's, shared by every user)."""
        limiter = RateLimiter.create(rate=0.001, burst=1)
        svc = make_pair_service(store_path, KEY, limiter=limiter, trusted_proxies=[trusted])
        try:
            codes = [
                status(svc.respond(environ(body=query_body(1), address=peer, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")))
                for n in range(3)
            ]
            assert codes == [200, 200, 200]
            assert svc.client_address(environ(address=peer, HTTP_X_FORWARDED_FOR="::ffff:198.51.100.7")) == (
                "198.51.100.7"
            )
        finally:
            svc.close()
            limiter.close()

    def test_garbage_header_from_proxy(self, proxied: PairService) -> None:
        """A forwarded address that is not an IP address is a 400."""
        env = environ(body=query_body(1), address="10.0.0.1", HTTP_X_FORWARDED_FOR="<script>")
        assert status(proxied.respond(env)) == 400


def test_no_address_or_bucket_in_logs(store_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Nothing the service logs, even at DEBUG, holds the client's address or the bucket asked for."""
    caplog.set_level(logging.DEBUG)
    limiter = RateLimiter.create(rate=0.001, burst=1)
    svc = make_pair_service(store_path, KEY, limiter=limiter)
    try:
        for _ in range(2):
            svc.respond(environ(body=query_body(201), address="203.0.113.77"))
        svc.respond(environ(body=b"{bad", address="203.0.113.78"))
    finally:
        svc.close()
        limiter.close()
    text = caplog.text + "".join(str(record.args) for record in caplog.records)
    assert "203.0.113.7" not in text and "201" not in text


def test_internal_error_is_a_bare_500(service: PairService, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug answers 500 with no traceback in the body (the fuzz harness hunts these)."""

    def broken(*args: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(_oprf, "_evaluate_prepared", broken)
    code, _, body = service.respond(environ(body=query_body(1)))
    assert code.startswith("500") and body == b"internal error"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=9), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=MAX_BODY + 8))
def test_arbitrary_bytes_never_5xx(store_path: Path, body: bytes) -> None:
    """Any body at all is answered with a 2xx or a 4xx, never a 5xx."""
    with make_pair_service(store_path, KEY, rate=0) as svc:
        assert status(svc.respond(environ(body=body))) < 500


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.fixed_dictionaries({}, optional={"bucket": _json_values, "elements": _json_values, "x": _json_values}))
def test_arbitrary_json_never_5xx(store_path: Path, doc: dict[str, Any]) -> None:
    """Any JSON object is a 200 only when it is a valid query, else a 400."""
    with make_pair_service(store_path, KEY, rate=0) as svc:
        code = status(svc.respond(environ(body=json.dumps(doc).encode())))
    assert code == 400  # no generated value is 64 hex digits of a valid element, so none is a valid query


class TestStoreChangedUnderTheService:
    """The pair store is watched as range stores are: a store overwritten in place is never answered from."""

    @pytest.fixture
    def served(self, tmp_path: Path) -> Iterator[tuple[PairService, Path, Path]]:
        path = build_store(tmp_path, name="served")
        other = build_store(tmp_path, key=OTHER_KEY, name="other")  # the same leak, another key: the same size
        assert path.stat().st_size == other.stat().st_size
        svc = make_pair_service(path, KEY, rate=0)
        yield svc, path, other
        svc.close()

    @pytest.mark.parametrize("times", ["new", "set back"])
    def test_overwritten_in_place_answers_503(self, served: tuple[PairService, Path, Path], times: str) -> None:
        """``cp`` of another key's store of the same size over the served one (its mtime set back too: only its
        ctime moves): queries get a 503, never entries that would all read "not found"."""
        svc, path, other = served
        assert status(svc.respond(environ(body=query_body(3)))) == 200
        before = os.stat(path)
        with open(path, "r+b") as fh:
            fh.write(other.read_bytes())
        if times == "set back":
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        codes: list[int] = []
        deadline = time.monotonic() + 30
        while len(codes) < 3 or codes[-3:] != [503] * 3:
            assert time.monotonic() < deadline, codes
            codes.append(status(svc.respond(environ(body=query_body(3)))))
            time.sleep(0.02)
        assert set(codes) <= {200, 503}
        assert 200 not in codes[codes.index(503) :]  # once refused, never answered from it again
        assert status(svc.respond(environ("GET", "/v1/pairs/config"))) == 503

    def test_replaced_by_a_store_of_this_key_is_served(
        self, served: tuple[PairService, Path, Path], tmp_path: Path
    ) -> None:
        """A new store of the same key renamed over the path is verified in the background, then served."""
        svc, path, _ = served
        fresh = build_store(tmp_path, name="fresh")
        os.replace(fresh, path)
        deadline = time.monotonic() + 30
        while svc.store is None or svc.store.identity.inode != os.stat(path).st_ino:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert status(svc.respond(environ(body=query_body(3)))) == 200

    def test_replaced_by_another_keys_store_keeps_the_old_one(
        self, served: tuple[PairService, Path, Path], tmp_path: Path
    ) -> None:
        """A store of another key renamed over the path is refused: the verified one goes on answering."""
        svc, path, other = served
        os.replace(other, path)
        for _ in range(20):
            assert status(svc.respond(environ(body=query_body(3)))) == 200
            time.sleep(0.02)
        assert svc.store is not None and svc.store.key_id == KEY.key_id


def test_a_worker_that_cannot_take_up_the_pair_service_answers_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A granian worker (spawned) whose key file changed since the service started -- mode widened, or a new key
    written before a rotation -- answers 503 for pair queries instead of failing (a crash loop ends the service)."""
    from credcheck.server import _runners as runners

    write_key(tmp_path / "key")
    path = build_store(tmp_path, key=load_key(tmp_path / "key"))
    with make_pair_service(path, tmp_path / "key", rate=0) as svc:
        monkeypatch.setenv(runners._PAIRS_ENV, runners._pairs_identity(svc))
    monkeypatch.setattr(runners, "_verified_pairs", None)
    os.chmod(tmp_path / "key", 0o644)
    worker = runners._granian_pairs()
    assert isinstance(worker, UnavailablePairs)
    assert status(worker.respond(environ(body=query_body(3)))) == 503 and worker.status() == {"state": "unavailable"}
    os.chmod(tmp_path / "key", 0o600)
    write_key(tmp_path / "new")
    os.replace(tmp_path / "new", tmp_path / "key")
    worker = runners._granian_pairs()
    assert isinstance(worker, UnavailablePairs)
    assert status(worker.respond(environ(body=query_body(3)))) == 503
    assert "holds another key" in worker.reason


def test_a_forked_worker_takes_the_parents_verified_service(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker forked from the serving process takes the very service it verified (the key in memory): whatever
    became of the files since, it answers."""
    from credcheck.server import _runners as runners

    with make_pair_service(store_path, KEY, rate=0) as svc:
        monkeypatch.setenv(runners._PAIRS_ENV, "{}")
        monkeypatch.setattr(runners, "_verified_pairs", (os.getpid() + 1, svc))  # made by another process
        assert runners._granian_pairs() is svc


def test_a_spawned_worker_verifies_a_store_renamed_over_the_one_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proof a spawned granian worker gets names the very file the parent verified and serves, not whatever
    the path holds when the workers start: a store with edited entries (its header intact) renamed over the path
    meanwhile is verified in the worker and refused (503), never mapped unverified."""
    from credcheck.server import _runners as runners

    write_key(tmp_path / "key")
    path = build_store(tmp_path, key=load_key(tmp_path / "key"))
    edited = bytearray(path.read_bytes())
    edited[-1] ^= 1  # an entry's last byte: the header and the index still parse
    (tmp_path / "edited").write_bytes(edited)
    with make_pair_service(path, tmp_path / "key", rate=0) as svc:
        os.replace(tmp_path / "edited", path)  # after the parent verified and opened the store
        monkeypatch.setenv(runners._PAIRS_ENV, runners._pairs_identity(svc))
    monkeypatch.setattr(runners, "_verified_pairs", None)
    worker = runners._granian_pairs()
    assert isinstance(worker, UnavailablePairs)
    assert status(worker.respond(environ(body=query_body(3)))) == 503
    worker.close()
