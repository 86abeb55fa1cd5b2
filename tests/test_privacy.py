"""Privacy audit: drive every public path with DEBUG logging, forced errors and printed reprs, and look for
the password and its hashes in everything captured; check that only a 5-character prefix crosses the wire."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

import credcheck
import credcheck.hashing
from credcheck import BloomFilter, ClosedError, CredcheckError, build, ntlm_hex, sha1_hex
from credcheck.aio import AsyncRangeClient
from credcheck.checker import FilterChecker, StoreChecker
from credcheck.cli import main
from credcheck.client import RangeClient
from credcheck.pairs._service import make_pair_service
from credcheck.pairs.build import build_pairs
from credcheck.pairs.checker import PairExposure, PairStatus
from credcheck.server import make_app, serve_in_background

from .helpers import KEY, TINY, SerialExecutor, secrets_in_frames, write_combo

SECRET = "Zebra-Secret-7f3a9q!"  # the password under audit
SHA1 = sha1_hex(SECRET)
NTLM = ntlm_hex(SECRET)
# What must never show: the password, each full hash in either case, and the hashes without their prefix.
FORBIDDEN = [SECRET, SHA1, SHA1.lower(), NTLM, NTLM.lower(), SHA1[5:], SHA1[5:].lower(), NTLM[5:], NTLM[5:].lower()]


class Capture:
    """Everything a run shows: log records at DEBUG, texts of errors and tracebacks, reprs, printed output."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, *items: object) -> None:
        self.texts.extend(item if isinstance(item, str) else repr(item) for item in items)

    def error(self, exc: BaseException) -> None:
        self.add(str(exc), repr(exc), "".join(traceback.format_exception(exc)))

    def leaks(self) -> list[str]:
        return [f"{secret!r} in {text[:200]!r}" for text in self.texts for secret in FORBIDDEN if secret in text]


class _Recorder:
    """WSGI middleware that records everything a client sends: method, path, query, headers, body."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, str, dict[str, str], bytes]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
        self.seen.append(
            (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("QUERY_STRING", ""), headers, body)
        )
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serving(app: Any) -> Iterator[str]:
    """Any WSGI app on a free loopback port, from a background thread."""
    with make_server("127.0.0.1", 0, app, handler_class=_Quiet) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{httpd.server_port}"
        finally:
            httpd.shutdown()


@pytest.fixture
def capture(caplog: pytest.LogCaptureFixture) -> Iterator[Capture]:
    caplog.set_level(logging.DEBUG)
    found = Capture()
    yield found
    records = caplog.get_records("setup") + caplog.get_records("call")  # (caplog.records would be teardown's)
    found.add(*(record.getMessage() for record in records))
    found.add(*(logging.Formatter("%(name)s %(message)s %(args)s").format(record) for record in records))
    assert found.leaks() == []


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    """A plaintext leak that contains the secret (next to a bad line), built into every artefact."""
    plain = tmp_path / "leak.txt"
    plain.write_bytes(b"letmein\n" + SECRET.encode() + b"\n\xff\n" + SECRET.encode() + b"\n")
    paths = {
        "plain": plain,
        "filter": tmp_path / "f.bloom",
        "store": tmp_path / "s.store",
        "ntlm": tmp_path / "n.store",
    }
    build([plain], filter=paths["filter"], store=paths["store"])
    build([plain], store=paths["ntlm"], scheme="ntlm")
    return paths


class TestLocalPaths:
    def test_build_reports_and_errors(self, corpus: dict[str, Path], capture: Capture, tmp_path: Path) -> None:
        """Build reports, strict-mode errors and the CLI's output name lines, never the passwords on them."""
        report = build([corpus["plain"]], filter=tmp_path / "again.bloom")
        capture.add(report, report.summary(), report.as_dict())
        with pytest.raises(CredcheckError) as info:
            build([corpus["plain"]], filter=tmp_path / "x.bloom", strict=True)
        capture.error(info.value)

    @pytest.mark.parametrize("kind", ["filter", "store", "ntlm"])
    def test_checkers(self, corpus: dict[str, Path], capture: Capture, kind: str) -> None:
        """Local checkers: answers, reprs and the errors of malformed input carry no secret."""
        with credcheck.open(corpus[kind]) as checker:
            capture.add(checker, checker.check(SECRET), checker.check_many([SECRET, "x"]))
            full = NTLM if kind == "ntlm" else SHA1
            capture.add(checker.check_hash(full))
            for bad in (full + "0", full[:-1] + " ", full[:20]):
                with pytest.raises(ValueError) as info:
                    checker.check_hash(bad)
                capture.error(info.value)
            assert checker.check(SECRET).compromised
            if kind == "filter":
                assert isinstance(checker, FilterChecker)
                capture.add(checker.filter)
            else:
                assert isinstance(checker, StoreChecker)
                capture.add(checker.store)


class TestWire:
    @pytest.mark.parametrize("scheme", ["sha1", "ntlm"])
    def test_only_the_prefix_is_sent(self, corpus: dict[str, Path], capture: Capture, scheme: str) -> None:
        """Through a real server: the request carries the 5-character prefix and nothing else of the hash."""
        recorder = _Recorder(make_app([corpus["store"], corpus["ntlm"]]))
        with _serving(recorder) as url, credcheck.open(url, scheme=scheme) as checker:
            answer = checker.check(SECRET)
            capture.add(checker, answer, checker.check_many([SECRET, "other"]))
        assert answer.compromised and answer.count == 2
        full = SHA1 if scheme == "sha1" else NTLM
        for method, path, query, headers, body in recorder.seen:
            assert method == "GET" and body == b""
            assert path in (f"/range/{full[:5]}", f"/range/{(sha1_hex if scheme == 'sha1' else ntlm_hex)('other')[:5]}")
            assert query == ("mode=ntlm" if scheme == "ntlm" else "")
            capture.add(path, query, headers)
        assert any(full[:5] in text for text in capture.texts)  # the capture does see the wire

    def test_remote_errors(self, capture: Capture) -> None:
        """A server that fails or answers garbage: the errors and their tracebacks name only the prefix."""

        def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            if environ["PATH_INFO"].endswith(SHA1[:5]):
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [f"{SHA1[5:]}:12\r\n{SHA1[5:]}".encode()]  # a malformed last line holding the suffix
            start_response("500 Oops", [("Content-Type", "text/plain")])
            return [b"boom"]

        with _serving(broken) as url, credcheck.open(url, retries=0) as checker:
            for password in (SECRET, "another password"):
                with pytest.raises(CredcheckError) as info:
                    checker.check(password)
                capture.error(info.value)

    def test_server_logs(self, corpus: dict[str, Path], capture: Capture) -> None:
        """The server's own debug logging, for a query of the secret's prefix, shows the prefix only."""
        with serve_in_background([corpus["store"]]) as url, credcheck.open(url) as checker:
            capture.add(checker.check(SECRET))


class TestCli:
    def test_check_output(
        self,
        corpus: dict[str, Path],
        capture: Capture,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """credcheck check prints verdicts, never the password it read, in plain and JSON output."""
        for extra in ([], ["--json"]):
            monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(f"{SECRET}\n".encode())))
            assert main(["check", "--store", str(corpus["store"]), *extra]) == 1
            out = capsys.readouterr()
            capture.add(out.out, out.err)

    def test_cli_errors(
        self,
        corpus: dict[str, Path],
        capture: Capture,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A corrupt source, a dead API and a malformed hash line: one-line errors with no secret."""
        data = bytearray(corpus["filter"].read_bytes())
        data[-1] ^= 1
        corpus["filter"].write_bytes(bytes(data))
        runs = [
            (["check", "--filter", str(corpus["filter"])], SECRET),
            (["check", "--api", "http://127.0.0.1:9", "--min-count", "1"], SECRET),
            (["check", "--store", str(corpus["store"]), "--hashes"], SHA1[:-1] + " "),
            (["build", str(corpus["plain"]), "--filter", str(corpus["filter"]), "--strict", "-q"], ""),
        ]
        for argv, stdin in runs:
            monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(f"{stdin}\n".encode())))
            assert main(argv) == 2
            out = capsys.readouterr()
            capture.add(out.out, out.err)


# -- the locals of the frames attached to exceptions ---------------------------------------------------

_FORBIDDEN_BYTES = [s.encode() for s in FORBIDDEN] + [bytes.fromhex(SHA1), bytes.fromhex(NTLM)]


def frame_leaks(error: BaseException) -> list[str]:
    """Every place in ``error``, its chain and their frames' locals (the test's own frames aside) holding a secret."""
    return secrets_in_frames(error, [*FORBIDDEN, *_FORBIDDEN_BYTES])


def _raised(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError("the call did not fail")


class _Field:
    data = SECRET

    @staticmethod
    def gettext(text: str) -> str:
        return text

    @staticmethod
    def ngettext(singular: str, plural: str, n: int) -> str:
        return singular if n == 1 else plural


class TestFrameLocals:
    """An exception leaving a public entry point carries no frame whose locals hold a password or a full hash."""

    @pytest.mark.parametrize("kind", ["filter", "store", "ntlm"])
    def test_local_checkers(self, corpus: dict[str, Path], kind: str) -> None:
        """Local checkers' TypeError, ValueError, InputError and ClosedError frames hold no secret."""
        full = NTLM if kind == "ntlm" else SHA1
        checker = credcheck.open(corpus[kind])
        calls: list[Callable[[], object]] = [
            lambda: checker.check_many([SECRET, 42]),  # type: ignore[list-item]
            lambda: checker.check_hash(full + " "),
            lambda: checker.check_hashes([full, full[:-1] + "Z"]),
            lambda: checker.check(SECRET.encode() + b"\xff"),  # an InputError for NTLM, an answer for SHA-1
        ]
        errors = [_raised(call) for call in calls[:3]]
        if kind == "ntlm":
            errors.append(_raised(calls[3]))
        checker.close()
        errors.append(_raised(lambda: checker.check(SECRET)))
        assert [leak for error in errors for leak in frame_leaks(error)] == []

    def test_remote_checker(self, corpus: dict[str, Path]) -> None:
        """A dead API and a garbage body: RemoteError frames (and those they chain to) hold no secret."""

        def garbage(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [f"{SHA1[5:]}:12\r\n{SHA1[5:]}".encode()]

        errors = []
        for scheme in ("sha1", "ntlm"):
            with credcheck.open("http://127.0.0.1:9", retries=0, scheme=scheme) as dead:
                errors += [_raised(lambda: dead.check(SECRET)), _raised(lambda: dead.check_many([SECRET, "other"]))]
        with _serving(garbage) as url, credcheck.open(url, retries=0) as checker:
            errors += [_raised(lambda: checker.check(SECRET)), _raised(lambda: checker.check_hash(SHA1))]
        assert [leak for error in errors for leak in frame_leaks(error)] == []

    @pytest.mark.parametrize("fmt", ["password", "hibp"])
    def test_build(self, tmp_path: Path, fmt: str) -> None:
        """A strict build's InputError over a leak's lines carries no frame holding a line of the leak."""
        source = tmp_path / "leak.txt"
        if fmt == "password":  # a plaintext leak: its lines are passwords; the bad line is not UTF-8
            source.write_bytes(f"{SECRET}\n".encode() * 3 + b"\xff\xfe\n")
        else:  # a hash dump whose bad line holds a full hash
            source.write_bytes(f"{SHA1}:3\r\n{SHA1}:x\r\n".encode())
        error = _raised(
            lambda: credcheck.build([str(source)], store=tmp_path / "s.store", input_format=fmt, strict=True)
        )
        assert isinstance(error, credcheck.InputError)
        assert frame_leaks(error) == []

    def test_hashing(self) -> None:
        """The hashing helpers' errors hold no secret in their frames."""
        errors = [
            _raised(lambda: ntlm_hex(SECRET.encode() + b"\xff")),
            _raised(lambda: credcheck.hashing.digest(SECRET, "md5")),
            _raised(lambda: credcheck.hashing.hex_to_digest(SHA1 + "0")),
            _raised(lambda: credcheck.hashing.hex_to_digest(SHA1[:-1] + "Z")),
        ]
        assert [leak for error in errors for leak in frame_leaks(error)] == []

    def test_validators(self, corpus: dict[str, Path]) -> None:
        """Django's and Flask's ValidationErrors, and a configuration error inside a check, hold no secret."""
        from credcheck.contrib import _passwords, _policy
        from credcheck.contrib.django import CompromisedPasswordValidator
        from credcheck.contrib.flask import NotCompromised, check_password
        from tests import test_contrib_django  # noqa: F401 - configures Django's settings once

        store = str(corpus["store"])
        errors = [
            _raised(lambda: CompromisedPasswordValidator(source=store).validate(SECRET)),
            _raised(lambda: CompromisedPasswordValidator(source=store)(SECRET)),
            _raised(lambda: NotCompromised(source=store)(None, _Field())),  # type: ignore[arg-type]
            _raised(lambda: check_password(SECRET, source="http://127.0.0.1:9", bogus=1)),
            _raised(lambda: _passwords.CompromiseCheck("http://127.0.0.1:9", bogus=1).check(SECRET)),
        ]
        _policy.close_shared()
        assert [leak for error in errors for leak in frame_leaks(error)] == []


class TestValidators:
    def test_django(self, corpus: dict[str, Path], capture: Capture) -> None:
        """The Django validator's errors, its 'allow' log line and its error report hide the password."""
        from django.core.exceptions import ValidationError

        from credcheck.contrib.django import CompromisedPasswordValidator
        from tests import test_contrib_django  # noqa: F401 - configures Django's settings once

        for validator in (
            CompromisedPasswordValidator(source=str(corpus["store"])),
            CompromisedPasswordValidator(source=str(corpus["filter"]).replace(".bloom", ".missing")),
            CompromisedPasswordValidator(source="http://127.0.0.1:9", on_error="allow"),
            CompromisedPasswordValidator(
                source="http://127.0.0.1:9", on_error="fallback", fallback=str(corpus["store"])
            ),
        ):
            capture.add(validator, validator.get_help_text())
            try:
                validator.validate(SECRET)
            except ValidationError as exc:
                capture.error(exc)
                capture.add(*exc.messages)

    def test_flask(self, corpus: dict[str, Path], capture: Capture) -> None:
        """The Flask helpers' messages and logs hide the password."""
        from credcheck.contrib.flask import check_password

        capture.add(check_password(SECRET, source=str(corpus["store"])))
        capture.add(check_password(SECRET, source="http://127.0.0.1:9", on_error="allow"))
        capture.add(check_password(SECRET, source="http://127.0.0.1:9", on_error="reject"))


# -- every check path: after close, closed twice, after a with block, racing close -------------------

USER = "Zebra-User@Example.com"  # leaked together with SECRET
CANON = b"zebra-user@example.com"
PAIR_FORBIDDEN: list[str | bytes] = [*FORBIDDEN, *_FORBIDDEN_BYTES, USER, USER.encode(), CANON]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """SECRET (twice) in a filter, a store and an NTLM store; USER with SECRET in a pair store; the store and
    the pair store served on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("paths")
    plain = folder / "leak.txt"
    plain.write_text(f"letmein\n{SECRET}\n{SECRET}\n")
    build([plain], filter=folder / "f.bloom", store=folder / "s.store")
    combo = write_combo(folder / "combo.txt", [f"{USER}:{SECRET}", "someone:else"])
    build_pairs(combo, folder / "pairs", KEY, stretch=TINY, executor=SerialExecutor())
    with (
        make_pair_service(folder / "pairs", KEY, rate=0) as service,
        serve_in_background([folder / "s.store"], pairs=service) as url,
    ):
        yield {
            "filter": str(folder / "f.bloom"),
            "store": str(folder / "s.store"),
            "pairs": str(folder / "pairs"),
            "url": url,
        }


@dataclasses.dataclass
class Kind:
    """One checker to attack: how to open it, its check methods, the right answer to each."""

    open: Callable[[], Any]
    calls: list[Callable[[Any], object]]
    answer: object


PASSWORD_CALLS: list[Callable[[Any], object]] = [
    lambda c: c.check(SECRET),
    lambda c: c.check_many([SECRET, "letmein"])[0],
    lambda c: c.check_hash(SHA1),
    lambda c: c.check_hashes([SHA1])[0],
]
PAIR_CALLS: list[Callable[[Any], object]] = [
    lambda c: c.check(USER, SECRET),
    lambda c: c.check_many([(USER, SECRET)])[0],
    lambda c: c.check_hash(USER, SHA1),
    lambda c: c.check_canonical(CANON, bytes.fromhex(SHA1)),
]
KINDS = ["filter", "store", "range API", "pair store", "pair service"]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest, sources: dict[str, str]) -> Kind:
    url = sources["url"]
    return {
        "filter": Kind(lambda: credcheck.open(sources["filter"]), PASSWORD_CALLS, credcheck.Exposure(True, None)),
        "store": Kind(lambda: credcheck.open(sources["store"]), PASSWORD_CALLS, credcheck.Exposure(True, 2)),
        "range API": Kind(lambda: credcheck.open(url, retries=0), PASSWORD_CALLS, credcheck.Exposure(True, 2)),
        "pair store": Kind(
            lambda: credcheck.open_pairs(sources["pairs"], key=KEY), PAIR_CALLS, PairExposure(PairStatus.EXACT)
        ),
        "pair service": Kind(lambda: credcheck.open_pairs(url, retries=0), PAIR_CALLS, PairExposure(PairStatus.EXACT)),
    }[request.param]


class TestEveryCheckPath:
    """Every sync checker, every check method: a ClosedError once closed (however it was closed), with no secret
    in its frames; and racing close(), a right answer or a ClosedError, never another error."""

    @pytest.mark.parametrize("closing", ["close", "close twice", "with block"])
    @pytest.mark.parametrize("method", range(4))
    def test_after_close(self, kind: Kind, closing: str, method: int) -> None:
        """A check of a closed checker is a ClosedError whose frames hold no secret."""
        checker = kind.open()
        if closing == "with block":
            with checker:
                assert kind.calls[method](checker) == kind.answer
        else:
            checker.close()
            if closing == "close twice":
                checker.close()
        with pytest.raises(ClosedError) as caught:
            kind.calls[method](checker)
        assert frame_leaks_pairs(caught.value) == []

    def test_sixteen_threads_racing_close(self, kind: Kind) -> None:
        """16 threads check while another closes: each answers right or raises ClosedError (a check started
        after close() returned always does), never another error; close() itself never fails."""
        checker = kind.open()
        outcomes: list[object] = []
        closed = threading.Event()
        start = threading.Barrier(17)

        def worker(method: int) -> None:
            start.wait()
            while True:
                after_close = closed.is_set()
                try:
                    answer = kind.calls[method % 4](checker)
                except BaseException as exc:  # every error is an outcome: only ClosedError is right
                    outcomes.append(exc)
                    return
                if after_close:
                    outcomes.append(AssertionError("a check started after close() answered"))
                    return
                outcomes.append(answer)

        threads = [threading.Thread(target=worker, args=(method,)) for method in range(16)]
        for thread in threads:
            thread.start()
        start.wait()
        while len(outcomes) < 32:
            threading.Event().wait(0.001)
        checker.close()
        closed.set()
        for thread in threads:
            thread.join()
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert [type(e).__name__ for e in errors] == ["ClosedError"] * 16
        assert {str(o) for o in outcomes if not isinstance(o, BaseException)} == {str(kind.answer)}
        assert [leak for error in errors for leak in frame_leaks_pairs(error)] == []


def frame_leaks_pairs(error: BaseException) -> list[str]:
    """frame_leaks, with the pair's username (as given and canonical) among the secrets."""
    return secrets_in_frames(error, PAIR_FORBIDDEN)


class TestSecretTakingEntryPoints:
    """Entry points that take a secret (a password, a full hash) clear their frames on every way out."""

    @pytest.mark.parametrize(
        "call",
        [
            lambda url: RangeClient(url, retries=0).get_range(SHA1),
            lambda url: asyncio.run(AsyncRangeClient(url, retries=0).get_range(SHA1)),
        ],
        ids=["sync", "async"],
    )
    def test_range_client_given_a_full_hash(self, sources: dict[str, str], call: Callable[[str], object]) -> None:
        """get_range(full hash) by mistake: a ValueError that keeps the hash nowhere."""
        with pytest.raises(ValueError) as caught:
            call(sources["url"])
        assert frame_leaks(caught.value) == []

    @pytest.mark.parametrize(
        ("scheme", "call", "error"),
        [
            ("xxh3", lambda bf: bf.add(SECRET), CredcheckError),  # opened: read-only
            ("xxh3", lambda bf: bf.update([SECRET, SECRET + "2"]), CredcheckError),
            ("sha1", lambda bf: bf.add(SECRET), ValueError),  # a password where a digest goes
            ("sha1", lambda bf: bf.copy().update([SHA1, SECRET]), ValueError),
            ("sha1", lambda bf: SECRET in bf, ValueError),
            ("sha1", lambda bf: bf.contains_many([SHA1, SECRET]), ValueError),
            ("sha1", lambda bf: (bf.close(), bytes.fromhex(SHA1) in bf), ClosedError),
            ("sha1", lambda bf: (bf.close(), SHA1 in bf), ClosedError),
            ("sha1", lambda bf: (bf.close(), bf.contains_many([SHA1])), ClosedError),
        ],
    )
    def test_bloom_filter(
        self, tmp_path: Path, scheme: str, call: Callable[[BloomFilter], object], error: type[Exception]
    ) -> None:
        """BloomFilter's add, update, in and contains_many: their errors keep no password or full hash."""
        bf = BloomFilter.create(10, 1e-3, scheme=scheme)
        bf.add(SECRET if scheme == "xxh3" else SHA1)
        bf.save(tmp_path / "f.bloom")
        with BloomFilter.open(tmp_path / "f.bloom") as opened, pytest.raises(error) as caught:
            call(opened)
        assert frame_leaks(caught.value) == []
