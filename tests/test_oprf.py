"""RFC 9497 ristretto255-SHA512 (credcheck.pairs._oprf): the official vectors, then what it must refuse."""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credcheck.errors import CredcheckError, CryptoError, DependencyError, ProofError
from credcheck.pairs import _oprf as oprf

VECTORS = Path(__file__).parent / "vectors"
RFC9497 = json.loads((VECTORS / "rfc9497-ristretto255.json").read_text())
RFC9380 = json.loads((VECTORS / "rfc9380-expand-message-xmd-sha512.json").read_text())
SUITES = {suite["mode"]: suite for suite in RFC9497["suites"]}


def cases(keep: Callable[[int], bool] = lambda mode: True) -> list[object]:
    """The RFC's (suite, vector) cases of the modes ``keep`` takes, as pytest params."""
    return [
        pytest.param(suite, vector, id=f"mode{suite['mode']}-{n}-batch{vector['Batch']}")
        for suite in RFC9497["suites"]
        if keep(suite["mode"])
        for n, vector in enumerate(suite["vectors"])
    ]


CASES = cases()
ORDER_BYTES = oprf.ORDER.to_bytes(32, "little")


def _split(vector: dict[str, Any], field: str) -> list[bytes]:
    return [bytes.fromhex(part) for part in vector[field].split(",")]


def _key(suite: dict[str, Any]) -> tuple[bytes, bytes]:
    return oprf.derive_key_pair(bytes.fromhex(suite["seed"]), bytes.fromhex(suite["keyInfo"]), suite["mode"])


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    return oprf.generate_key_pair()


def _query(keys: tuple[bytes, bytes], inputs: list[bytes]) -> tuple[list[bytes], list[bytes], list[bytes], bytes]:
    sk, pk = keys
    blinds, blinded = zip(*(oprf.blind(i) for i in inputs), strict=True)
    evaluated, proof = oprf.blind_evaluate(sk, pk, list(blinded))
    return list(blinds), list(blinded), evaluated, proof


class TestVectors:
    def test_every_mode_and_batch_is_covered(self) -> None:
        """The vector file holds modes 0, 1, 2 and batched vectors, so the parametrised tests below see them all."""
        assert sorted(SUITES) == [0, 1, 2]
        assert {v["Batch"] for v in SUITES[1]["vectors"]} == {1, 2}
        assert all(suite["identifier"] == oprf.SUITE for suite in RFC9497["suites"])

    @pytest.mark.parametrize("suite", RFC9497["suites"], ids=lambda s: f"mode{s['mode']}")
    def test_derive_key_pair(self, suite: dict[str, Any]) -> None:
        """DeriveKeyPair gives the RFC's skSm (and pkSm) from its seed and key info."""
        sk, pk = _key(suite)
        assert sk.hex() == suite["skSm"]
        assert pk == oprf.public_key(sk)
        if "pkSm" in suite:
            assert pk.hex() == suite["pkSm"]

    def test_documented_key_id(self) -> None:
        """The key id docs/PROTOCOL.md gives for the RFC's VOPRF public key."""
        assert oprf.key_id(bytes.fromhex(SUITES[1]["pkSm"])).hex() == "bc68814ba180bc94"

    @pytest.mark.parametrize("suite", RFC9497["suites"], ids=lambda s: f"mode{s['mode']}")
    def test_group_dst(self, suite: dict[str, Any]) -> None:
        """HashToGroup's DST is the RFC's groupDST for the mode."""
        assert b"HashToGroup-" + oprf._context(suite["mode"]) == bytes.fromhex(suite["groupDST"])

    @pytest.mark.parametrize(("suite", "vector"), CASES)
    def test_blind(self, suite: dict[str, Any], vector: dict[str, Any]) -> None:
        """Blind with the RFC's blind gives its BlindedElement."""
        for value, blind_, expected in zip(
            _split(vector, "Input"), _split(vector, "Blind"), _split(vector, "BlindedElement"), strict=True
        ):
            assert oprf.blind(value, mode=suite["mode"], blind_scalar=blind_) == (blind_, expected)

    @pytest.mark.parametrize(("suite", "vector"), CASES)
    def test_blind_evaluate(self, suite: dict[str, Any], vector: dict[str, Any]) -> None:
        """BlindEvaluate with the RFC's nonce gives its EvaluationElement(s) and its batched proof."""
        sk, pk = _key(suite)
        r = bytes.fromhex(vector["Proof"]["r"]) if "Proof" in vector else None
        info = bytes.fromhex(vector.get("Info", ""))
        evaluated, proof = oprf.blind_evaluate(
            sk, pk, _split(vector, "BlindedElement"), mode=suite["mode"], r=r, info=info
        )
        assert evaluated == _split(vector, "EvaluationElement")
        assert proof == (bytes.fromhex(vector["Proof"]["proof"]) if r else b"")

    @pytest.mark.parametrize(("suite", "vector"), cases(lambda mode: mode == 1))
    def test_prepared_evaluator(self, suite: dict[str, Any], vector: dict[str, Any]) -> None:
        """The per-key Evaluator (what the server uses) gives the RFC's EvaluationElement(s) and proof too."""
        sk, pk = _key(suite)
        evaluator = oprf.Evaluator(sk)
        assert evaluator.pk == pk and sk.hex() not in repr(evaluator)
        evaluated, proof = evaluator.blind_evaluate(
            _split(vector, "BlindedElement"), r=bytes.fromhex(vector["Proof"]["r"])
        )
        assert evaluated == _split(vector, "EvaluationElement")
        assert proof == bytes.fromhex(vector["Proof"]["proof"])

    def test_prepared_evaluator_names_the_bad_element(self) -> None:
        """An invalid second element is a CryptoError naming element 2, not an evaluation."""
        evaluator = oprf.Evaluator(oprf.generate_key_pair()[0])
        good = oprf.blind(b"x")[1]
        with pytest.raises(CryptoError, match="element 2: the identity"):
            evaluator.blind_evaluate([good, bytes(32)])

    @pytest.mark.parametrize(("suite", "vector"), cases(lambda mode: mode != 0))
    def test_verify_proof(self, suite: dict[str, Any], vector: dict[str, Any]) -> None:
        """VerifyProof accepts the RFC's proof over its blinded and evaluated elements."""
        oprf.verify_proof(
            _key(suite)[1],
            _split(vector, "BlindedElement"),
            _split(vector, "EvaluationElement"),
            bytes.fromhex(vector["Proof"]["proof"]),
            mode=suite["mode"],
            info=bytes.fromhex(vector.get("Info", "")),
        )

    @pytest.mark.parametrize(("suite", "vector"), CASES)
    def test_finalize(self, suite: dict[str, Any], vector: dict[str, Any]) -> None:
        """Finalize gives the RFC's Output for each element of the batch."""
        info = bytes.fromhex(vector.get("Info", ""))
        outputs = [
            oprf.finalize(value, blind_, element, mode=suite["mode"], info=info)
            for value, blind_, element in zip(
                _split(vector, "Input"), _split(vector, "Blind"), _split(vector, "EvaluationElement"), strict=True
            )
        ]
        assert outputs == _split(vector, "Output")

    @pytest.mark.parametrize(("suite", "vector"), CASES)
    def test_evaluate(self, suite: dict[str, Any], vector: dict[str, Any]) -> None:
        """The server's own Evaluate of a known input gives the RFC's Output."""
        sk, _ = _key(suite)
        info = bytes.fromhex(vector.get("Info", ""))
        outputs = [oprf.evaluate(sk, value, mode=suite["mode"], info=info) for value in _split(vector, "Input")]
        assert outputs == _split(vector, "Output")

    @pytest.mark.parametrize("case", RFC9380["tests"], ids=lambda t: f"{t['len_in_bytes']}-{len(t['msg'])}")
    def test_expand_message_xmd(self, case: dict[str, str]) -> None:
        """expand_message_xmd(SHA-512) gives RFC 9380's uniform_bytes."""
        out = oprf.expand_message_xmd(case["msg"].encode(), RFC9380["DST"].encode(), int(case["len_in_bytes"], 16))
        assert out.hex() == case["uniform_bytes"]

    def test_expand_message_xmd_oversize_dst(self) -> None:
        """A DST over 255 bytes is replaced by its H2C-OVERSIZE-DST- hash (RFC 9380 §5.3.3)."""
        import hashlib

        long_dst = b"d" * 300
        short = hashlib.sha512(b"H2C-OVERSIZE-DST-" + long_dst).digest()
        assert oprf.expand_message_xmd(b"m", long_dst, 64) == oprf.expand_message_xmd(b"m", short, 64)

    @pytest.mark.parametrize("length", [0, 255 * 64 + 1])
    def test_expand_message_xmd_refuses_lengths(self, length: int) -> None:
        """expand_message_xmd refuses an output length outside 1..255 blocks."""
        with pytest.raises(CryptoError):
            oprf.expand_message_xmd(b"m", b"dst", length)


class TestRoundTrip:
    @given(inputs=st.lists(st.binary(max_size=64), min_size=1, max_size=3))
    def test_client_output_equals_server_evaluate(self, keys: tuple[bytes, bytes], inputs: list[bytes]) -> None:
        """Blind → BlindEvaluate → VerifyProof → Finalize gives the server's Evaluate of the same input."""
        blinds, blinded, evaluated, proof = _query(keys, inputs)
        oprf.verify_proof(keys[1], blinded, evaluated, proof)
        for value, blind_, element in zip(inputs, blinds, evaluated, strict=True):
            assert oprf.finalize(value, blind_, element) == oprf.evaluate(keys[0], value)

    def test_sizes(self, keys: tuple[bytes, bytes]) -> None:
        """Elements and scalars are 32 bytes, the proof 64, the output 64, the key id 8."""
        blinds, blinded, evaluated, proof = _query(keys, [b"x"])
        assert len(blinds[0]) == oprf.SCALAR_SIZE and len(blinded[0]) == len(evaluated[0]) == oprf.ELEMENT_SIZE
        assert len(proof) == oprf.PROOF_SIZE
        assert len(oprf.finalize(b"x", blinds[0], evaluated[0])) == oprf.OUTPUT_SIZE
        assert len(oprf.key_id(keys[1])) == 8

    def test_key_id_is_sha256_prefix(self, keys: tuple[bytes, bytes]) -> None:
        """key_id is the first 8 bytes of SHA-256 of the public key."""
        import hashlib

        assert oprf.key_id(keys[1]) == hashlib.sha256(keys[1]).digest()[:8]

    def test_blinds_are_fresh(self) -> None:
        """Two blinds of one input differ, so a server cannot link them."""
        assert oprf.blind(b"same")[1] != oprf.blind(b"same")[1]

    def test_generated_keys_differ(self) -> None:
        """generate_key_pair draws a new random key each call."""
        assert oprf.generate_key_pair()[0] != oprf.generate_key_pair()[0]

    def test_modes_give_different_outputs(self, keys: tuple[bytes, bytes]) -> None:
        """The mode is part of every DST, so OPRF and VOPRF outputs of one key and input differ."""
        assert oprf.evaluate(keys[0], b"x", mode=0) != oprf.evaluate(keys[0], b"x", mode=1)


class TestRefusals:
    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(bytes(32), id="identity"),
            pytest.param(b"\x01" + bytes(31), id="non-canonical"),
            pytest.param(b"\xff" * 32, id="above-field"),
            pytest.param(bytes(31), id="short"),
            pytest.param(bytes(33), id="long"),
            pytest.param("00" * 32, id="str"),
        ],
    )
    def test_check_element_refuses(self, data: Any) -> None:
        """check_element refuses the identity, invalid or non-canonical encodings and wrong sizes."""
        with pytest.raises(CryptoError):
            oprf.check_element(data)

    @given(data=st.binary(min_size=32, max_size=32))
    def test_check_element_never_crashes(self, data: bytes) -> None:
        """Arbitrary 32 bytes are returned unchanged or refused with CryptoError, nothing else."""
        with contextlib.suppress(CryptoError):
            assert oprf.check_element(data) == data

    @pytest.mark.parametrize(
        "sk",
        [
            pytest.param(bytes(32), id="zero"),
            pytest.param(ORDER_BYTES, id="order"),
            pytest.param(b"\xff" * 32, id="above-order"),
            pytest.param(bytes(31), id="short"),
        ],
    )
    def test_bad_secret_key_refused(self, sk: bytes) -> None:
        """A secret key that is zero, not below the order, or the wrong size is refused."""
        with pytest.raises(CryptoError):
            oprf.public_key(sk)

    def test_blind_evaluate_refuses_identity(self, keys: tuple[bytes, bytes]) -> None:
        """BlindEvaluate refuses an identity element among the blinded ones."""
        with pytest.raises(CryptoError, match="identity"):
            oprf.blind_evaluate(*keys, [oprf.blind(b"x")[1], bytes(32)])

    @pytest.mark.parametrize("blinded", [[], b"\x00" * 32], ids=["empty", "bytes-not-list"])
    def test_blind_evaluate_refuses_bad_batches(self, keys: tuple[bytes, bytes], blinded: Any) -> None:
        """BlindEvaluate refuses an empty batch or a bare bytes object in place of a list."""
        with pytest.raises(CryptoError):
            oprf.blind_evaluate(*keys, blinded)

    def test_finalize_refuses_identity(self) -> None:
        """Finalize refuses an identity evaluated element (a server answering 0 for everything)."""
        with pytest.raises(CryptoError):
            oprf.finalize(b"x", oprf.blind(b"x")[0], bytes(32))

    def test_blind_scalar_at_order_refused(self) -> None:
        """A fixed blind equal to the group order is not a canonical scalar."""
        with pytest.raises(CryptoError, match="canonical"):
            oprf.blind(b"x", blind_scalar=ORDER_BYTES)

    def test_oversize_input_refused(self) -> None:
        """An input longer than 65535 bytes (Finalize frames it in 2 bytes) is refused."""
        with pytest.raises(CryptoError):
            oprf.blind(b"x" * 65536)

    @pytest.mark.parametrize("mode", [3, -1])
    def test_unknown_mode_refused(self, mode: int) -> None:
        """A mode other than 0, 1, 2 is refused."""
        with pytest.raises(CryptoError, match="mode"):
            oprf.blind(b"x", mode=mode)


class TestProof:
    def test_other_key_fails(self, keys: tuple[bytes, bytes]) -> None:
        """A proof checked against another server's public key fails: a wrong key never reads as "not found"."""
        _, blinded, evaluated, proof = _query(keys, [b"x", b"y"])
        with pytest.raises(ProofError):
            oprf.verify_proof(oprf.generate_key_pair()[1], blinded, evaluated, proof)

    def test_evaluation_under_other_key_fails(self, keys: tuple[bytes, bytes]) -> None:
        """Elements evaluated with one key and proven with another fail against the advertised key."""
        other_sk, other_pk = oprf.generate_key_pair()
        _, blinded, _, _ = _query(keys, [b"x"])
        evaluated, proof = oprf.blind_evaluate(other_sk, other_pk, blinded)
        with pytest.raises(ProofError):
            oprf.verify_proof(keys[1], blinded, evaluated, proof)

    def test_swapped_elements_fail(self, keys: tuple[bytes, bytes]) -> None:
        """A batched proof does not verify once the evaluated elements are swapped."""
        _, blinded, evaluated, proof = _query(keys, [b"x", b"y"])
        with pytest.raises(ProofError):
            oprf.verify_proof(keys[1], blinded, evaluated[::-1], proof)

    @given(position=st.integers(0, 63), bit=st.integers(0, 7))
    def test_any_flipped_bit_fails(self, keys: tuple[bytes, bytes], position: int, bit: int) -> None:
        """Flipping any bit of the proof makes it fail (as ProofError, also for a non-canonical scalar)."""
        _, blinded, evaluated, proof = _query(keys, [b"x"])
        bad = bytearray(proof)
        bad[position] ^= 1 << bit
        with pytest.raises(ProofError):
            oprf.verify_proof(keys[1], blinded, evaluated, bytes(bad))

    @pytest.mark.parametrize("size", [0, 63, 65])
    def test_wrong_size_fails(self, keys: tuple[bytes, bytes], size: int) -> None:
        """A proof that is not 64 bytes is a ProofError."""
        _, blinded, evaluated, _ = _query(keys, [b"x"])
        with pytest.raises(ProofError):
            oprf.verify_proof(keys[1], blinded, evaluated, bytes(size))

    def test_count_mismatch_refused(self, keys: tuple[bytes, bytes]) -> None:
        """More evaluated elements than blinded ones is refused."""
        _, blinded, evaluated, proof = _query(keys, [b"x"])
        with pytest.raises(CryptoError):
            oprf.verify_proof(keys[1], blinded, evaluated * 2, proof)

    def test_mode_zero_has_no_proof(self, keys: tuple[bytes, bytes]) -> None:
        """Asking to verify a mode-0 proof is an error, never a silent pass."""
        with pytest.raises(CryptoError):
            oprf.verify_proof(keys[1], [oprf.blind(b"x")[1]], [oprf.blind(b"y")[1]], bytes(64), mode=0)


class TestSecrets:
    def test_traceback_holds_no_key(self, keys: tuple[bytes, bytes]) -> None:
        """An error from BlindEvaluate carries no frame whose locals hold the secret key."""
        try:
            oprf.blind_evaluate(keys[0], keys[1], [bytes(32)])
        except CryptoError as exc:
            frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)][1:]  # [0] is this test
            assert exc.__context__ is None and exc.__cause__ is None
        else:  # pragma: no cover
            pytest.fail("no error")
        assert frames
        assert all(keys[0] not in frame.f_locals.values() for frame in frames)

    def test_traceback_holds_no_input(self) -> None:
        """An error from Finalize carries no frame whose locals hold the (password-derived) input."""
        secret = b"stretch-of-a-password-0123456789"
        try:
            oprf.finalize(secret, oprf.blind(secret)[0], bytes(32))
        except CryptoError as exc:
            frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)][1:]  # [0] is this test
        assert frames
        assert all(secret not in frame.f_locals.values() for frame in frames)


class TestDependency:
    def test_missing_pysodium_is_one_clear_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without pysodium, the first use raises DependencyError naming the extra and the system package."""
        monkeypatch.setattr(oprf, "_na", None)
        monkeypatch.setitem(sys.modules, "pysodium", None)  # makes `import pysodium` raise ImportError
        with pytest.raises(DependencyError) as info:
            oprf.generate_key_pair()
        assert isinstance(info.value, CredcheckError) and isinstance(info.value, ImportError)
        assert "pip install 'credcheck[pairs]'" in str(info.value) and "libsodium23" in str(info.value)

    def test_missing_libsodium_is_one_clear_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """pysodium present but no libsodium (pysodium raises ValueError on import): DependencyError, same hint."""
        import builtins

        real_import = builtins.__import__

        def no_libsodium(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "pysodium":
                raise ValueError("Unable to find libsodium")
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(oprf, "_na", None)
        monkeypatch.setattr(builtins, "__import__", no_libsodium)
        with pytest.raises(DependencyError, match="libsodium could not be loaded") as info:
            oprf.check_element(bytes.fromhex(SUITES[1]["pkSm"]))
        assert "brew install libsodium" in str(info.value) and "pip install 'credcheck[pairs]'" in str(info.value)

    def test_import_credcheck_does_not_load_pysodium(self) -> None:
        """`import credcheck` (and the _oprf module itself) never imports pysodium."""
        import subprocess

        code = "import sys, credcheck, credcheck.pairs._oprf; print('pysodium' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "False"


class TestInteropWithTheWheel:
    """Cross-checks against the voprf wheel (Meta's voprf crate; a dev-only benchmark peer)."""

    def test_wheel_proof_verifies_here(self) -> None:
        """A proof the wheel's server makes verifies with ours, and our Finalize equals the wheel's Evaluate."""
        wheel = pytest.importorskip("voprf").ristretto
        suite = SUITES[1]
        server = wheel.Evaluator.from_seed(bytes.fromhex(suite["seed"]), bytes.fromhex(suite["keyInfo"]))
        blind_, blinded = oprf.blind(b"interop")
        response = server.evaluate(wheel.BlindedInput.deserialize(blinded)).serialize()
        proof, evaluated = response[:64], response[64:]  # the wheel serializes proof || element
        oprf.verify_proof(bytes.fromhex(suite["pkSm"]), [blinded], [evaluated], proof)
        assert oprf.finalize(b"interop", blind_, evaluated) == server.evaluate_known_input(b"interop")

    def test_our_proof_verifies_in_the_wheel(self) -> None:
        """The wheel's client accepts our server's evaluation and proof and finalizes to our Evaluate output."""
        wheel = pytest.importorskip("voprf").ristretto
        sk, pk = _key(SUITES[1])
        client, blinded_input = wheel.Client.blind(b"interop")
        evaluated, proof = oprf.blind_evaluate(sk, pk, [blinded_input.serialize()])
        output = client.finalize(
            wheel.VerifiableOutput.deserialize(proof + evaluated[0]), wheel.PublicKey.deserialize(pk)
        )
        assert output == oprf.evaluate(sk, b"interop")
