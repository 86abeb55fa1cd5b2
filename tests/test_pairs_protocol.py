"""docs/PROTOCOL.md's worked vector, recomputed from the page's own definitions and by the library."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

import pytest

from credcheck.pairs import _oprf
from credcheck.pairs._entry import entry
from credcheck.pairs._names import bucket_of, canon
from credcheck.pairs.stretch import INTERACTIVE, pair_input, username_input

PROTOCOL = Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md"


def worked_vector() -> dict[str, str]:
    """The name/value lines of the worked vector's block (a value continued on the next line is joined)."""
    text = PROTOCOL.read_text(encoding="utf-8")
    block = text[text.index("## Worked vector") :].split("```")[1]
    values: dict[str, str] = {}
    last = ""
    for line in block.strip("\n").splitlines():
        if line.startswith(" "):
            values[last] += line.split()[0]
            continue
        name, rest = line.split(None, 1)
        quoted = re.match(r'"([^"]*)"', rest)
        values[name] = quoted.group(1) if quoted else rest.split()[0]
        last = name
    return values


V = worked_vector()


def lp(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def test_the_page_holds_the_vector() -> None:
    """The worked vector names every value this test checks."""
    assert {"username", "password", "sk", "canon", "bucket_20", "pair_stretch", "pair_entry", "user_entry"} <= set(V)


def test_key() -> None:
    """The key is DeriveKeyPair(a3 * 32, "test key"), with its public key and key id."""
    sk, pk = _oprf.derive_key_pair(bytes.fromhex("a3" * 32), b"test key")
    assert (sk.hex(), pk.hex(), _oprf.key_id(pk).hex()) == (V["sk"], V["pk"], V["key_id"])
    assert hashlib.sha256(pk).hexdigest()[:16] == V["key_id"]


def test_canonical_username() -> None:
    """canon = NFKC, strip, casefold, UTF-8: by the definition and by the library."""
    by_definition = unicodedata.normalize("NFKC", V["username"]).strip().casefold().encode()
    assert by_definition.hex() == V["canon"] == canon(V["username"]).hex()


@pytest.mark.parametrize("bits", [8, 16, 20])
def test_bucket(bits: int) -> None:
    """The bucket is the top B bits of SHA-256(lp(label) || lp(canon))."""
    name = bytes.fromhex(V["canon"])
    digest = hashlib.sha256(lp(b"credcheck-pairs-v1 bucket") + lp(name)).digest()
    assert digest.hex() == V["bucket_hash"]
    assert int.from_bytes(digest, "big") >> (256 - bits) == int(V[f"bucket_{bits}"]) == bucket_of(name, bits)


@pytest.mark.parametrize(("kind", "status"), [("pair", 1), ("user", 3)])
def test_stretch_oprf_entry(kind: str, status: int) -> None:
    """Input, interactive scrypt, VOPRF Evaluate and the entry, by the definitions and by the library."""
    name = bytes.fromhex(V["canon"])
    sha1 = hashlib.sha1(V["password"].encode()).digest() if kind == "pair" else bytes(20)
    assert sha1.hex() == V["sha1"] or kind == "user"
    data = bytes([1 if kind == "pair" else 2]) + lp(name) + sha1
    assert data.hex() == V[f"{kind}_input"]
    assert data == (pair_input(name, sha1) if kind == "pair" else username_input(name))
    stretched = hashlib.scrypt(data, salt=b"credcheck-pairs-v1", n=4096, r=8, p=1, dklen=32)
    assert stretched.hex() == V[f"{kind}_stretch"] == INTERACTIVE(data).hex()
    y = _oprf.evaluate(bytes.fromhex(V["sk"]), stretched)
    assert y.hex() == V[f"{kind}_y"]
    tag = hashlib.sha512(lp(b"credcheck-pairs-v1 tag") + y).digest()[:16]
    mask = hashlib.sha512(lp(b"credcheck-pairs-v1 status") + y).digest()[0]
    assert (tag + bytes([status ^ mask])).hex() == V[f"{kind}_entry"] == entry(y, status).hex()


def test_client_finalize_meets_the_build() -> None:
    """A client's Blind / BlindEvaluate / Finalize of the pair's stretch gives the y the build evaluated."""
    sk, pk = bytes.fromhex(V["sk"]), bytes.fromhex(V["pk"])
    stretched = bytes.fromhex(V["pair_stretch"])
    blind, blinded = _oprf.blind(stretched)
    (evaluated,), proof = _oprf.blind_evaluate(sk, pk, [blinded])
    _oprf.verify_proof(pk, [blinded], [evaluated], proof)
    assert _oprf.finalize(stretched, blind, evaluated).hex() == V["pair_y"]
