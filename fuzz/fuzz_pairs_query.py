"""Fuzz target: the pair service's endpoints (``POST /v1/pairs/query``, ``GET /v1/pairs/config``), in process.

At start-up: a small pair store built with a fixed key (username entries on, so 1 or 2 elements are valid) and
the range app's route table serving it (``make_app([], pairs=...)``, no rate limit). The fuzz input (through
``atheris.FuzzedDataProvider``) builds a request: the method (POST mostly), the path (the query, the config,
something near them, anything), the content type, the framing (a right, wrong, huge, non-decimal or missing
``Content-Length``; chunked), and a body that is either raw fuzzed bytes or a near-valid query: a bucket
(in range, at the edges, beyond 2^B, negative, a boolean, a float, a string, a huge integer, null), 0-3
elements (a valid blinded element, the identity, a non-canonical encoding, too short, too long, upper-case,
non-hex, a number), extra or repeated keys, other JSON values. Checked on every request:

- the app never raises, calls ``start_response`` once, and never answers 5xx;
- header names and values are Latin-1 ``str`` without CR or LF; ``Content-Length`` is the body's length;
- a 200 to a query happens only when the request is valid by the documented rules (re-checked here
  independently), and its body is exactly ``{"key_id", "evaluated", "proof", "entries"}``: the key id of the
  key, one evaluation per element whose batched proof verifies, and the bucket's entries from the store;
- a malformed query is a 4xx with a ``text/plain`` reason.

Run:  .venv/bin/python fuzz/fuzz_pairs_query.py fuzz/corpus/pairs_query -max_total_time=240
"""

from __future__ import annotations

import atexit
import base64
import concurrent.futures
import io
import json
import os
import re
import shutil
import sys

import _common
import atheris

with _common.instrument_credcheck():
    from credcheck.pairs import _oprf
    from credcheck.pairs._service import MAX_BODY, make_pair_service
    from credcheck.pairs.build import build_pairs
    from credcheck.pairs.keys import KeyPair
    from credcheck.pairs.store import PairStore
    from credcheck.server import make_app

from _common import Finding

HARNESS = "pairs_query"
SCRATCH = _common.scratch_dir()
atexit.register(shutil.rmtree, SCRATCH, True)
KEY = KeyPair.from_secret(_oprf.derive_key_pair(b"fuzz".ljust(32, b"\x00"), b"fuzz")[0])
HEX64 = re.compile(r"[0-9A-Fa-f]{64}", re.ASCII)


def _setup() -> tuple[object, PairStore]:
    combo = os.path.join(SCRATCH, "combo.txt")
    with open(combo, "w", encoding="utf-8") as fh:
        fh.write("".join(f"user{i}@example.com:password{i}\n" for i in range(40)))
    path = os.path.join(SCRATCH, "pairs")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # no process pool under the fuzzer
        build_pairs(
            combo, path, KEY, stretch="scrypt:16:1:1", username_entries=True, bucket_bits=4, executor=pool, workers=1
        )
    service = make_pair_service(path, KEY, rate=0)
    return make_app([], pairs=service), PairStore(path)


APP, STORE = _setup()
BUCKETS = 1 << STORE.bucket_bits
GOOD = [_oprf.blind(bytes([n]))[1].hex() for n in range(4)]
ELEMENTS = (
    lambda fdp: GOOD[fdp.ConsumeIntInRange(0, 3)],
    lambda fdp: GOOD[0].upper(),
    lambda fdp: "00" * 32,  # the identity
    lambda fdp: "ff" * 32,  # not canonical
    lambda fdp: GOOD[1][:-2],
    lambda fdp: GOOD[1] + "0",
    lambda fdp: "zz" + GOOD[2][2:],
    lambda fdp: fdp.ConsumeIntInRange(0, 1 << 40),
    lambda fdp: fdp.ConsumeBytes(32).hex(),
    lambda fdp: fdp.ConsumeUnicode(64),
)
BUCKET_VALUES = (
    lambda fdp: fdp.ConsumeIntInRange(0, BUCKETS - 1),
    lambda fdp: BUCKETS,
    lambda fdp: -1,
    lambda fdp: True,
    lambda fdp: 1.0,
    lambda fdp: "1",
    lambda fdp: None,
    lambda fdp: 10**300,
    lambda fdp: fdp.ConsumeInt(8),
)


def _body(fdp: atheris.FuzzedDataProvider) -> bytes:
    choice = fdp.ConsumeIntInRange(0, 9)
    if choice == 0:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 1200))
    if choice == 1:
        depth = fdp.ConsumeIntInRange(0, 600)
        return b"[" * depth + b"]" * depth
    doc: dict[str, object] = {}
    if fdp.ConsumeIntInRange(0, 9):
        doc["bucket"] = BUCKET_VALUES[fdp.ConsumeIntInRange(0, len(BUCKET_VALUES) - 1)](fdp)
    if fdp.ConsumeIntInRange(0, 9):
        count = fdp.ConsumeIntInRange(0, 3)
        doc["elements"] = [ELEMENTS[fdp.ConsumeIntInRange(0, len(ELEMENTS) - 1)](fdp) for _ in range(count)]
    if fdp.ConsumeIntInRange(0, 7) == 0:
        doc[fdp.ConsumeUnicode(6)] = fdp.ConsumeIntInRange(0, 9)
    text = json.dumps(doc, ensure_ascii=bool(fdp.ConsumeIntInRange(0, 1)))
    if fdp.ConsumeIntInRange(0, 9) == 0:  # a key given twice
        text = text.replace("{", '{"bucket": 0, ', 1)
    if fdp.ConsumeIntInRange(0, 9) == 0:  # a cut or a tail
        cut = fdp.ConsumeIntInRange(0, len(text))
        text = text[:cut] + fdp.ConsumeUnicode(4)
    return text.encode("utf-8", "surrogatepass")


def make_environ(fdp: atheris.FuzzedDataProvider) -> tuple[dict[str, object], bytes]:
    path = ("/v1/pairs/query",) * 6 + ("/v1/pairs/config", "/v1/pairs/", "/v1/pairs/query/", "/v1/pairsquery")
    choice = fdp.ConsumeIntInRange(0, len(path))
    environ: dict[str, object] = {
        "REQUEST_METHOD": (("POST",) * 6 + ("GET", "HEAD", "OPTIONS", "PUT", "post"))[fdp.ConsumeIntInRange(0, 10)],
        "PATH_INFO": path[choice] if choice < len(path) else "/v1/pairs/" + fdp.ConsumeUnicode(12),
        "REMOTE_ADDR": "192.0.2.1",
        "SERVER_NAME": "fuzz",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
    }
    content_type = ("application/json",) * 4 + ("application/json; charset=utf-8", "text/plain", "", None)
    chosen = content_type[fdp.ConsumeIntInRange(0, len(content_type) - 1)]
    if chosen is not None:
        environ["CONTENT_TYPE"] = chosen
    body = _body(fdp)
    framing = fdp.ConsumeIntInRange(0, 9)
    if framing <= 5:
        environ["CONTENT_LENGTH"] = str(len(body))
    elif framing == 6:
        environ["CONTENT_LENGTH"] = str(fdp.ConsumeIntInRange(0, 1 << 31))
    elif framing == 7:
        environ["CONTENT_LENGTH"] = fdp.ConsumeUnicode(4)
    elif framing == 8:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input"] = io.BytesIO(body)
    return environ, body


def call(environ: dict[str, object]) -> tuple[list[str], list[tuple[str, str]], bytes]:
    calls: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> object:
        calls.append((status, headers))
        return lambda chunk: None

    body = b"".join(APP(environ, start_response))  # type: ignore[operator]
    return [c[0] for c in calls], calls[-1][1] if calls else [], body


def valid_query(environ: dict[str, object], body: bytes) -> tuple[int, list[bytes]] | None:
    """The bucket and elements of a query the documented rules accept, or None (checked independently)."""
    if environ["REQUEST_METHOD"] != "POST" or environ["PATH_INFO"] != "/v1/pairs/query":
        return None
    if str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower() != "application/json":
        return None
    length = str(environ.get("CONTENT_LENGTH", ""))
    if length:
        if not (length.isascii() and length.isdigit()) or int(length) != len(body) or len(body) > MAX_BODY:
            return None
    elif "HTTP_TRANSFER_ENCODING" not in environ or len(body) > MAX_BODY:
        return None
    keys: list[str] = []
    try:
        doc = json.loads(
            body.decode("utf-8"),
            object_pairs_hook=lambda pairs: (keys.extend(k for k, _ in pairs), dict(pairs))[1],
            parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)),
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or sorted(keys) != ["bucket", "elements"]:
        return None
    bucket, items = doc["bucket"], doc["elements"]
    if type(bucket) is not int or not 0 <= bucket < BUCKETS:
        return None
    if not isinstance(items, list) or not 1 <= len(items) <= 2:
        return None
    elements = []
    for item in items:
        if not isinstance(item, str) or HEX64.fullmatch(item) is None:
            return None
        try:
            elements.append(_oprf.check_element(bytes.fromhex(item)))
        except Exception:
            return None
    return bucket, elements


def check(
    environ: dict[str, object], body: bytes, statuses: list[str], headers: list[tuple[str, str]], out: bytes
) -> None:
    if len(statuses) != 1:
        raise Finding(f"start-response: called {len(statuses)} times")
    code = int(statuses[0][:3])
    if code >= 500:
        raise Finding("5xx: the pair service answered with a server error")
    names: dict[str, str] = {}
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
    if "content-length" in names and environ["REQUEST_METHOD"] != "HEAD" and int(names["content-length"]) != len(out):
        raise Finding("content-length: does not match the body")
    if environ["PATH_INFO"] != "/v1/pairs/query":
        return
    expected = valid_query(environ, body)
    if expected is None:
        if environ["REQUEST_METHOD"] == "POST" and code == 200:
            raise Finding("accepted: a malformed query answered 200")
        if code >= 400 and names.get("content-type") != "text/plain; charset=utf-8":
            raise Finding("reason: a refusal without a plain-text reason")
        return
    if code != 200:
        raise Finding(f"refused: a valid query answered {code}")
    doc = json.loads(out)
    if list(doc) != ["key_id", "evaluated", "proof", "entries"] or doc["key_id"] != KEY.key_id.hex():
        raise Finding("answer-shape: not the documented answer")
    bucket, elements = expected
    evaluated = [bytes.fromhex(e) for e in doc["evaluated"]]
    try:
        _oprf.verify_proof(KEY.pk, elements, evaluated, bytes.fromhex(doc["proof"]))
    except Exception:
        raise Finding("proof: the answer's proof does not verify") from None
    if base64.b64decode(doc["entries"], validate=True) != STORE.bucket(bucket):
        raise Finding("entries: not the bucket's entries")


def test_one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    environ, body = make_environ(fdp)
    try:
        statuses, headers, out = call(environ)
        check(environ, body, statuses, headers, out)
    except Exception as exc:
        _common.finding(HARNESS, f"{environ['REQUEST_METHOD']!r} {environ['PATH_INFO']!r}", exc, data)


def seeds() -> list[bytes]:
    return [bytes([i, j, k, 5, 1, 2, 3, 4, 5, 6, 7, 8]) for i in range(10) for j in range(10) for k in range(3)]


if __name__ == "__main__":
    _common.main(test_one, seeds)
    sys.exit(0)
