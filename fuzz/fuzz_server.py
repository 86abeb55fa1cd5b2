"""Fuzz target 4: the HTTP range service, called in process as a WSGI app.

At start-up: a SHA-1 store and an NTLM store, built with ``credcheck.build`` from HIBP-format files whose
hashes crowd a few prefixes (00000, 5BAA6, ABCDE, FFFFF, and the prefixes of real passwords), and two apps:
``credcheck.server.make_app([sha1_store_path])`` (the SHA-1-only app) and one serving both stores.

The fuzz input (through ``atheris.FuzzedDataProvider``) picks the app, the method (GET, HEAD, OPTIONS, POST,
or any string), ``PATH_INFO`` (``/range/`` + a fuzzed or a valid-looking prefix, ``/``, ``/health``, or
anything), ``QUERY_STRING`` and the header values ``HTTP_ADD_PADDING``, ``HTTP_IF_NONE_MATCH``,
``HTTP_ACCEPT_ENCODING``, ``HTTP_IF_MODIFIED_SINCE`` (each absent, a near-valid value, or fuzzed text: Latin-1
as WSGI servers pass it, sometimes any Unicode). Checked on every request:

- the app never raises, calls ``start_response`` once, and never answers 5xx;
- header names and values are ``str``, Latin-1-encodable, without CR or LF, and ``Content-Length`` (when
  sent) is the body's length; ``HEAD`` and 304/204 responses carry no body;
- a 200 on ``/range/{P}``: the body (gunzipped when ``Content-Encoding: gzip``, which must then be valid
  gzip) parses with ``parse_range_body`` at the scheme's suffix length and gives exactly the store's range
  for that prefix (padding lines have count 0); lines are joined by CRLF, none after the last, no blank
  line; the real lines come first and sorted; the prefix really is 5 hex characters of the request;
- a ``/range/`` request whose prefix is not 5 hex characters is a 4xx, never a 200.

Run:  .venv/bin/python fuzz/fuzz_server.py fuzz/corpus/server -max_total_time=240
"""

from __future__ import annotations

import atexit
import gzip
import hashlib
import os
import re
import shutil
import sys
import urllib.parse
import zlib

import _common
import atheris

with _common.instrument_credcheck():
    import numpy as np

    import credcheck
    from credcheck._http.body import parse_range_body
    from credcheck.hashing import ntlm_hex
    from credcheck.server import make_app

from _common import Finding

HARNESS = "server"
SCRATCH = _common.scratch_dir()
atexit.register(shutil.rmtree, SCRATCH, True)
CROWDED = ("00000", "5BAA6", "ABCDE", "FFFFF", "F4A69", "7C4A8")
PASSWORDS = ("password", "Passw0rd!", "123456", "letmein")
HEX5 = re.compile(r"[0-9A-Fa-f]{5}", re.ASCII)
METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "get", "")


def _corpus(width: int, real: list[str], seed: int) -> str:
    rng = np.random.default_rng(seed)
    lines = {h: 1 + int(rng.zipf(1.5)) % 10_000_000 for h in real}
    for prefix in CROWDED:
        for _ in range(int(rng.integers(1, 40))):
            tail = rng.integers(0, 16, size=width - 5)
            lines[prefix + "".join("0123456789ABCDEF"[int(d)] for d in tail)] = int(rng.integers(1, 1 << 32))
    for _ in range(500):
        lines["".join("0123456789ABCDEF"[int(d)] for d in rng.integers(0, 16, size=width))] = 1
    path = os.path.join(SCRATCH, f"corpus{width}.txt")
    with open(path, "w", newline="") as out:
        for h in sorted(lines):
            out.write(f"{h}:{lines[h]}\r\n")
    return path


def _setup() -> tuple[dict[str, object], dict[str, credcheck.RangeStore]]:
    sha1_text = _corpus(40, [hashlib.sha1(p.encode()).hexdigest().upper() for p in PASSWORDS], 1)
    ntlm_text = _corpus(32, [ntlm_hex(p) for p in PASSWORDS], 2)
    sha1_store, ntlm_store = os.path.join(SCRATCH, "sha1.store"), os.path.join(SCRATCH, "ntlm.store")
    credcheck.build([sha1_text], store=sha1_store)
    credcheck.build([ntlm_text], store=ntlm_store, scheme="ntlm")
    apps = {"sha1-only": make_app([sha1_store]), "both": make_app([sha1_store, ntlm_store])}
    return apps, {"sha1": credcheck.RangeStore(sha1_store), "ntlm": credcheck.RangeStore(ntlm_store)}


APPS, STORES = _setup()
SERVED = {"sha1-only": ("sha1",), "both": ("sha1", "ntlm")}
EXPECTED: dict[tuple[str, int], dict[str, int]] = {}


def expected_range(scheme: str, prefix: int) -> dict[str, int]:
    key = (scheme, prefix)
    if key not in EXPECTED:
        store = STORES[scheme]
        EXPECTED[key] = parse_range_body(store.range_body(prefix), store.suffix_length)
    return EXPECTED[key]


def _text(fdp: atheris.FuzzedDataProvider, limit: int = 40) -> str:
    n = fdp.ConsumeIntInRange(0, limit)
    if fdp.ConsumeIntInRange(0, 7) == 0:
        return fdp.ConsumeUnicode(n)  # a non-conforming server passing any Unicode
    return fdp.ConsumeBytes(n).decode("latin-1")


def _header(fdp: atheris.FuzzedDataProvider, near: tuple[str, ...]) -> str | None:
    choice = fdp.ConsumeIntInRange(0, 3)
    if choice == 0:
        return None
    if choice == 1:
        return near[fdp.ConsumeIntInRange(0, len(near) - 1)]
    if choice == 2:
        return near[fdp.ConsumeIntInRange(0, len(near) - 1)] + _text(fdp, 12)
    return _text(fdp)


def make_environ(fdp: atheris.FuzzedDataProvider) -> dict[str, object]:
    choice = fdp.ConsumeIntInRange(0, 5)
    if choice <= 2:
        prefix = CROWDED[fdp.ConsumeIntInRange(0, len(CROWDED) - 1)]
        if choice == 1:
            prefix = prefix.lower()
        elif choice == 2:
            prefix = _text(fdp, 8)
        path = "/range/" + prefix
    elif choice == 3:
        path = ("/", "/health", "/range", "/range/", "//range/ABCDE", "/range/ABCDE/")[fdp.ConsumeIntInRange(0, 5)]
    else:
        path = _text(fdp, 60)
    method_choice = fdp.ConsumeIntInRange(0, len(METHODS))
    method = METHODS[method_choice] if method_choice < len(METHODS) else _text(fdp, 10)
    query = ("", "mode=ntlm", "mode=sha1", "mode=NTLM", "mode=ntlm&mode=sha1", "x=1&mode=ntlm", None)[
        fdp.ConsumeIntInRange(0, 6)
    ]
    environ: dict[str, object] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": _text(fdp, 40) if query is None else query,
        "SERVER_NAME": "fuzz",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
    }
    for name, near in (
        ("HTTP_ADD_PADDING", ("true", "True", " TRUE ", "false", "1")),
        ("HTTP_IF_NONE_MATCH", ('"x"', "*", 'W/"', ", ,", '"sha1-')),
        ("HTTP_ACCEPT_ENCODING", ("gzip", "gzip;q=0", "*;q=0.5", "identity, gzip;q=1.0", "br, x-gzip;q=")),
        ("HTTP_IF_MODIFIED_SINCE", ("Sun, 06 Nov 1994 08:49:37 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "0")),
    ):
        value = _header(fdp, near)
        if value is not None:
            environ[name] = value
    return environ


def call(app: object, environ: dict[str, object]) -> tuple[list[str], list[tuple[str, str]], bytes]:
    calls: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> object:
        calls.append((status, headers))
        return lambda chunk: None

    chunks = app(environ, start_response)  # type: ignore[operator]
    body = b"".join(chunks)
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
    return [c[0] for c in calls], calls[-1][1] if calls else [], body


def check_response(
    served: tuple[str, ...],
    environ: dict[str, object],
    statuses: list[str],
    headers: list[tuple[str, str]],
    body: bytes,
) -> None:
    if len(statuses) != 1:
        raise Finding(f"start-response: called {len(statuses)} times")
    status = statuses[0]
    if not re.fullmatch(r"[1-5][0-9][0-9] .+", status):
        raise Finding("status-line: not 'NNN reason'")
    code = int(status[:3])
    if code >= 500:
        raise Finding("5xx: the server answered with a server error")
    names = {}
    for name, value in headers:
        if not isinstance(name, str) or not isinstance(value, str):
            raise Finding("header-type: a header name or value is not str")
        try:
            (name + value).encode("latin-1")
        except UnicodeEncodeError:
            raise Finding("header-encoding: a header is not Latin-1") from None
        if any(c in name + value for c in "\r\n"):
            raise Finding("header-injection: CR or LF in a header")
        names[name.lower()] = value
    method = environ["REQUEST_METHOD"]
    if (method == "HEAD" or code in (204, 304)) and body:
        raise Finding("body-not-allowed: a HEAD, 204 or 304 response has a body")
    if "content-length" in names and method != "HEAD" and int(names["content-length"]) != len(body):
        raise Finding("content-length: does not match the body")
    path = str(environ["PATH_INFO"])
    if not path.startswith("/range/"):
        return
    candidate = path[len("/range/") :]
    valid = HEX5.fullmatch(candidate) is not None
    if code == 200 and not valid:
        raise Finding("bad-prefix-200: a prefix that is not 5 hex characters answered 200")
    scheme = "sha1"
    for name, value in urllib.parse.parse_qsl(str(environ["QUERY_STRING"]), keep_blank_values=True):
        if name == "mode":
            scheme = "ntlm" if value == "ntlm" else "sha1"
            break
    if method in ("GET", "HEAD"):
        want_codes = (400,) if not valid else (200, 304) if scheme in served else (404,)
        if code not in want_codes:
            raise Finding(f"range-status: {code} where {want_codes} was expected")
    if code != 200 or method != "GET":
        return
    raw = body
    if names.get("content-encoding") == "gzip":
        try:
            raw = gzip.decompress(body)
        except (OSError, EOFError, zlib.error):
            raise Finding("gzip: the gzip body does not decompress") from None
    elif "content-encoding" in names:
        raise Finding("content-encoding: an encoding other than gzip")
    if raw.endswith(b"\r\n") or b"\n" in raw.replace(b"\r\n", b"") or b"\r\n\r\n" in raw or raw.startswith(b"\r\n"):
        raise Finding("line-endings: not CRLF-joined lines without a trailing or blank line")
    store = STORES[scheme]
    try:
        parsed = parse_range_body(raw, store.suffix_length)
    except credcheck.RemoteError:
        raise Finding("unparsable-200: a 200 range body parse_range_body refuses") from None
    prefix = int(candidate, 16)
    want = expected_range(scheme, prefix)
    if parsed != want:
        raise Finding("wrong-range: the body's real lines differ from the store's range")
    real = [line for line in raw.split(b"\r\n") if line and not line.endswith(b":0")]
    if len(real) != len(want) or raw.split(b"\r\n")[: len(real)] != real or real != sorted(real):
        raise Finding("order: real lines are not first and sorted")


def test_one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = ("sha1-only", "both")[fdp.ConsumeIntInRange(0, 1)]
    environ = make_environ(fdp)
    try:
        statuses, headers, body = call(APPS[which], environ)
        check_response(SERVED[which], environ, statuses, headers, body)
    except Exception as exc:
        _common.finding(HARNESS, f"{environ['REQUEST_METHOD']!r} {environ['PATH_INFO']!r}", exc, data)


def seeds() -> list[bytes]:
    return [bytes([i, j, k, 1, 2, 3, 4, 5, 6, 7]) for i in range(6) for j in range(4) for k in range(3)]


if __name__ == "__main__":
    _common.main(test_one, seeds)
    sys.exit(0)
