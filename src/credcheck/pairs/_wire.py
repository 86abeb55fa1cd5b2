"""The pair service's protocol without I/O: the config, a blinded query, and every check on what comes back.

Like the range flow in :mod:`credcheck._http` (whose :class:`~credcheck._http.retrying.Retrying` it runs on,
so timeouts, the deadline, retries, backoff and ``Retry-After`` are the same code), :meth:`PairProtocol.check`
is a generator that yields :class:`~credcheck._http.events.Request` and ``Wait`` and is sent ``Response``,
``Failure`` or ``DEADLINE_PASSED``; any driver of the range flow drives it (``credcheck.client.FlowDriver``).
It returns the status the server's bucket holds for the pair, or None, or raises
:class:`~credcheck.errors.RemoteError` — never a "not found" for an answer it could not verify.

One check: the config is fetched once per protocol object and kept (its public key, or one pinned by the
caller, is the only key any later answer may be proven with); the bucket of the canonical username; the
stretch of the pair (and of the username alone, when the server has username entries); a fresh blind for
each (so two checks of one pair send unrelated elements); one POST; then a strict parse of the answer, the
key id compared with the pinned one, the batched DLEQ proof verified, the bucket checked (whole 17-byte
entries, a positive multiple of 16, tags strictly ascending), and only then Finalize and the tag looked up.
"""

from __future__ import annotations

import binascii
import dataclasses
import json
import re
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager
from typing import Any, Final

from .._http.corpus import CorpusFlow, corpus_flow
from .._http.events import Reply, Request, Response, Wait
from .._http.options import ClientKeywords, ClientOptions
from .._http.retrying import Failed, Retrying
from .._http.urls import check_base_url
from ..errors import CredcheckError, RemoteError, RemoteErrorCode
from . import _oprf
from ._entry import Status, mask, tag
from ._names import MAX_BUCKET_BITS, PROTOCOL, bucket_of
from .store import check_bucket, find_entry
from .stretch import Stretch, pair_input, username_input

__all__ = [
    "DEFAULT_MAX_STRETCH_MEMORY",
    "PairConfig",
    "PairFlow",
    "PairKeywords",
    "PairProtocol",
    "parse_answer",
    "parse_config",
]

#: The most memory a server's stretch may ask of a client (``strong`` needs 16 MiB).
DEFAULT_MAX_STRETCH_MEMORY: Final = 64 << 20
CONFIG_KEYS: Final = frozenset(
    {"protocol", "suite", "mode", "public_key", "key_id", "bucket_bits", "stretch", "username_entries"}
)
ANSWER_KEYS: Final = frozenset({"key_id", "evaluated", "proof", "entries"})
_HEX = re.compile(r"[0-9A-Fa-f]*", re.ASCII)
_STATUSES: Final = frozenset({Status.EXACT, Status.SIMILAR, Status.USERNAME})

PairFlow = Generator[Request | Wait, Reply, Status | None]


class PairKeywords(ClientKeywords, total=False):
    """The keywords of a pair client: a client's, with the service's key pinned and its stretch bounded."""

    public_key: bytes | str | None
    max_stretch_memory: int


def _bad(what: str) -> RemoteError:
    return RemoteError(f"pair service: {what}", RemoteErrorCode.BAD_RESPONSE)


@dataclasses.dataclass(frozen=True, slots=True)
class PairConfig:
    """What ``GET /v1/pairs/config`` says, checked: the key, the bucket bits, the stretch, username entries."""

    public_key: bytes
    key_id: bytes
    bucket_bits: int
    stretch: Stretch
    username_entries: bool


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for name, value in pairs:
        if name in seen:
            raise _bad("a key appears twice in a JSON object")
        seen[name] = value
    return seen


def _no_constant(name: str) -> Any:
    raise _bad("NaN or Infinity in the JSON")


def _json(body: bytes, what: str, keys: frozenset[str]) -> dict[str, Any]:
    try:
        doc = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad(f"the {what} is not JSON") from None
    if not isinstance(doc, dict) or set(doc) != keys:
        raise _bad(f"the {what} is not the documented JSON object (fields {', '.join(sorted(keys))})")
    return doc


def _hex(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size or _HEX.fullmatch(value) is None:
        raise _bad(f"{what} is not {2 * size} hex digits")
    return bytes.fromhex(value)


def _element(value: object, what: str) -> bytes:
    try:
        return _oprf.check_element(_hex(value, _oprf.ELEMENT_SIZE, what))
    except CredcheckError as exc:
        if isinstance(exc, RemoteError):
            raise
        raise _bad(f"{what}: {exc}") from None


def parse_config(body: bytes, *, max_stretch_memory: int = DEFAULT_MAX_STRETCH_MEMORY) -> PairConfig:
    """The config a server sent, or RemoteError (BAD_RESPONSE) naming what is wrong with it."""
    doc = _json(body, "config", CONFIG_KEYS)
    if doc["protocol"] != PROTOCOL or doc["suite"] != _oprf.SUITE or doc["mode"] != "voprf":
        raise _bad(f"the server does not speak {PROTOCOL} (VOPRF, {_oprf.SUITE})")
    public_key = _element(doc["public_key"], "the public key")
    key_id = _hex(doc["key_id"], 8, "the key id")
    if key_id != _oprf.key_id(public_key):
        raise _bad("the config's key id is not the id of its public key")
    bits = doc["bucket_bits"]
    if type(bits) is not int or not 0 <= bits <= MAX_BUCKET_BITS:
        raise _bad(f"bucket_bits must be an integer from 0 to {MAX_BUCKET_BITS}")
    stretch = doc["stretch"]
    if not isinstance(stretch, dict) or set(stretch) != {"name", "n", "r", "p"} or stretch["name"] != "scrypt":
        raise _bad('the stretch must be {"name": "scrypt", "n": N, "r": r, "p": p}')
    if any(type(stretch[field]) is not int for field in ("n", "r", "p")):
        raise _bad("the stretch's n, r and p must be integers")
    try:
        params = Stretch(stretch["n"], stretch["r"], stretch["p"])
    except ValueError as exc:
        raise _bad(f"impossible stretch: {exc}") from None
    if params.memory > max_stretch_memory:
        raise _bad(f"the stretch needs {params.memory:,} bytes, more than this client allows ({max_stretch_memory:,})")
    if not isinstance(doc["username_entries"], bool):
        raise _bad("username_entries must be true or false")
    return PairConfig(public_key, key_id, bits, params, doc["username_entries"])


def parse_answer(body: bytes, elements: int, key_id: bytes) -> tuple[list[bytes], bytes, bytes]:
    """``(evaluated, proof, entries)`` of a query's answer, strictly parsed (the proof not yet verified)."""
    doc = _json(body, "answer", ANSWER_KEYS)
    if _hex(doc["key_id"], 8, "the answer's key id") != key_id:
        raise _bad("the answer names another key id than the pinned key's (the server's key changed)")
    evaluated = doc["evaluated"]
    if not isinstance(evaluated, list) or len(evaluated) != elements:
        raise _bad(f"evaluated must be a list of {elements} element(s)")
    points = [_element(item, f"evaluated element {number}") for number, item in enumerate(evaluated, 1)]
    proof = _hex(doc["proof"], _oprf.PROOF_SIZE, "the proof")
    text = doc["entries"]
    if not isinstance(text, str) or not text.isascii():
        raise _bad("entries must be a base64 string")
    try:
        entries = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise _bad("entries is not standard base64") from None
    try:
        check_bucket(entries)
    except ValueError as exc:
        raise _bad(f"the bucket does not parse: {exc}") from None
    return points, proof, entries


class PairProtocol:
    """Every decision of a pair check against one service, for any driver (see the module docs).

    ``options`` are the client's (padding and the cache do not apply). ``public_key`` (32 bytes, or 64 hex
    digits) pins the key; otherwise the config's is taken on first use and kept, under ``lock`` (the driver's:
    two first checks at once must agree on it). ``max_stretch_memory`` refuses a server whose stretch would
    need more memory than that per check.
    """

    def __init__(
        self,
        base_url: str,
        options: ClientOptions,
        *,
        lock: AbstractContextManager[object],
        public_key: bytes | str | None = None,
        max_stretch_memory: int = DEFAULT_MAX_STRETCH_MEMORY,
    ) -> None:
        check_base_url(base_url)
        pinned = _public_key(public_key)
        self.base_url = base_url.rstrip("/")
        self.options = options
        self.user_agent = options.agent("credential-pair client")
        self.retrying = Retrying(options)
        self.pinned = None if pinned is None else _oprf.check_element(pinned)
        self.max_stretch_memory = max_stretch_memory
        self.config: PairConfig | None = None
        self._lock = lock

    def get_config(self, clock: Callable[[], float]) -> Generator[Request | Wait, Reply, PairConfig]:
        """The config: fetched on the first call only, and refused if it names another key than the pinned one."""
        if self.config is not None:
            return self.config
        url = f"{self.base_url}/v1/pairs/config"
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}

        def attempt(deadline: float) -> Generator[Request, Reply, PairConfig | Failed]:
            reply = yield from self.retrying.send(url, headers, deadline, clock, "pair config")
            if isinstance(reply, Failed):
                return reply
            if reply.status != 200:
                hint = " (is the base URL the pair service's root?)" if reply.status in (400, 404, 405) else ""
                return Retrying.status_failure(reply, "pair config", hint)
            try:
                return parse_config(reply.body, max_stretch_memory=self.max_stretch_memory)
            except RemoteError as exc:
                return Failed(exc, retryable=False)

        config = yield from self.retrying.run(attempt, clock, "pair config")
        if self.pinned is not None and config.public_key != self.pinned:
            raise _bad("the server's public key is not the pinned one")
        with self._lock:
            if self.config is None:
                self.config = config
            elif self.config.public_key != config.public_key:  # two first checks at once, two answers
                raise _bad("the server's public key changed between two requests")
        return self.config

    def corpus(self, clock: Callable[[], float]) -> CorpusFlow:
        """The flow of one look at the service's corpus versions (``credcheck._http.corpus``)."""
        return corpus_flow(self.base_url, self.user_agent, self.retrying, clock)

    def check(self, canonical: bytes, sha1: bytes, clock: Callable[[], float]) -> PairFlow:
        """The flow of one check of a canonical username and a password's raw SHA-1: the status found, or None."""
        config = yield from self.get_config(clock)
        bucket = bucket_of(canonical, config.bucket_bits)
        inputs = [config.stretch(pair_input(canonical, sha1))]
        if config.username_entries:
            inputs.append(config.stretch(username_input(canonical)))
        blinds, blinded = zip(*(_oprf.blind(data) for data in inputs), strict=True)
        body = json.dumps({"bucket": bucket, "elements": [element.hex() for element in blinded]}).encode()
        url = f"{self.base_url}/v1/pairs/query"
        headers = {"User-Agent": self.user_agent, "Content-Type": "application/json", "Accept": "application/json"}

        def attempt(deadline: float) -> Generator[Request, Reply, tuple[list[bytes], bytes] | Failed]:
            reply = yield from self.retrying.send(url, headers, deadline, clock, "pair query", method="POST", body=body)
            if isinstance(reply, Failed):
                return reply
            if reply.status != 200:
                return Retrying.status_failure(reply, "pair query")
            return self._judge(reply, list(blinded), config)

        evaluated, entries = yield from self.retrying.run(attempt, clock, "pair query")
        found: Status | None = None
        for data, blind, element in zip(inputs, blinds, evaluated, strict=True):
            y = _oprf.finalize(data, blind, element)
            masked = find_entry(entries, tag(y))
            if masked is not None:
                status = masked ^ mask(y)
                if status not in _STATUSES:
                    raise _bad("an entry's status does not unmask to 1, 2 or 3")
                found = Status(status)
                break
        return found

    @staticmethod
    def _judge(reply: Response, blinded: list[bytes], config: PairConfig) -> tuple[list[bytes], bytes] | Failed:
        try:
            evaluated, proof, entries = parse_answer(reply.body, len(blinded), config.key_id)
            try:
                _oprf.verify_proof(config.public_key, blinded, evaluated, proof)
            except CredcheckError as exc:  # ProofError, or a CryptoError on a degenerate batch
                raise _bad(f"the proof does not verify with the pinned key ({type(exc).__name__})") from None
        except RemoteError as exc:
            return Failed(exc, retryable=False)
        return evaluated, entries


def _public_key(value: bytes | str | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ValueError("public_key must be 64 hex digits (or 32 bytes)") from None
    raise TypeError(f"public_key must be bytes or hex, not {type(value).__name__}")
