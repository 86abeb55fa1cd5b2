"""RFC 9497 OPRF / VOPRF / POPRF, suite ristretto255-SHA512, over libsodium (through pysodium). No I/O.

Every group operation is libsodium's (``crypto_core_ristretto255_*``, ``crypto_scalarmult_ristretto255*``) and
every hash is :mod:`hashlib`'s; what this module writes itself is the RFC's glue around them —
expand_message_xmd (RFC 9380 §5.3.1), HashToGroup / HashToScalar, DeriveKeyPair, the batched DLEQ proof
(ComputeComposites, GenerateProof, VerifyProof) and Blind / BlindEvaluate / Finalize / Evaluate — and all of it
is proven byte for byte by the RFCs' official vectors in ``tests/vectors/``.

Values are the RFC's serializations: 32-byte elements and scalars (scalars little-endian), a 64-byte proof
``c || s``, a 64-byte output. Modes: 0 OPRF, 1 VOPRF (the default, and what ``credcheck-pairs-v1`` uses),
2 POPRF (with ``info``). Anything malformed raises :class:`~credcheck.errors.CryptoError`, a proof that does
not verify :class:`~credcheck.errors.ProofError`; secrets passed in never stay in the frames of a traceback we
raise (:func:`credcheck._frames.entry_point`).

pysodium is imported on first use, so ``import credcheck`` never loads libsodium; a missing one raises
:class:`~credcheck.errors.DependencyError` naming what to install.
"""

from __future__ import annotations

import ctypes
import hashlib
import secrets
from collections.abc import Sequence
from types import ModuleType

from .._frames import entry_point
from ..errors import CryptoError, DependencyError, ProofError

__all__ = [
    "ELEMENT_SIZE",
    "MODE_OPRF",
    "MODE_POPRF",
    "MODE_VOPRF",
    "OUTPUT_SIZE",
    "PROOF_SIZE",
    "SCALAR_SIZE",
    "SUITE",
    "Evaluator",
    "blind",
    "blind_evaluate",
    "check_element",
    "derive_key_pair",
    "evaluate",
    "expand_message_xmd",
    "finalize",
    "generate_key_pair",
    "hash_to_group",
    "hash_to_scalar",
    "key_id",
    "public_key",
    "tweaked_key",
    "verify_proof",
]

SUITE = "ristretto255-SHA512"
MODE_OPRF, MODE_VOPRF, MODE_POPRF = 0, 1, 2
ELEMENT_SIZE = 32
SCALAR_SIZE = 32
PROOF_SIZE = 64
OUTPUT_SIZE = 64
MAX_BATCH = 0xFFFF  # ComputeComposites frames the element index in 2 bytes
MAX_INPUT = 0xFFFF  # Finalize frames input and info in 2 bytes

# the order of the ristretto255 group (RFC 9496 §4): 2^252 + 27742317777372353535851937790883648493
ORDER = 2**252 + 27742317777372353535851937790883648493
_IDENTITY = bytes(ELEMENT_SIZE)  # the identity's one canonical encoding; libsodium's is_valid_point accepts it

INSTALL_HINT = (
    "the credential-pair tier needs pysodium and the system libsodium: pip install 'credcheck[pairs]', and "
    "libsodium itself (Debian/Ubuntu: apt install libsodium23; Fedora: dnf install libsodium; "
    "macOS: brew install libsodium)"
)

_na: ModuleType | None = None
_lib: ctypes.CDLL | None = None  # libsodium itself (pysodium's handle), for the hot calls below


def _sodium() -> ModuleType:
    """pysodium, imported on first use; a missing package or library is one clear DependencyError."""
    global _na, _lib
    if _na is None:
        try:
            import pysodium
        except ImportError as exc:
            raise DependencyError(f"pysodium is not installed; {INSTALL_HINT}") from exc
        except (OSError, ValueError) as exc:  # pysodium raises ValueError when it cannot find libsodium
            raise DependencyError(f"libsodium could not be loaded ({exc}); {INSTALL_HINT}") from exc
        if not pysodium.sodium_version_check(1, 0, 18):  # ristretto255 arrived in libsodium 1.0.18
            raise DependencyError(f"libsodium is older than 1.0.18 (no ristretto255); {INSTALL_HINT}")
        _lib = pysodium.sodium
        _na = pysodium
    return _na


def _sodium_lib() -> ctypes.CDLL:
    """libsodium, called directly for the group operations on the query path.

    pysodium's wrappers re-check the library version and re-validate lengths on every call (about a
    microsecond each, a dozen calls a query); our callers pass only 32-byte values they have checked, and the
    functions below check the lengths once more, since a short buffer would be read past its end.
    """
    if _na is None or _lib is None:
        _sodium()
    assert _lib is not None
    return _lib


# ----------------------------------------------------------------------------------------------- the suite


def _context(mode: int) -> bytes:
    if mode not in (MODE_OPRF, MODE_VOPRF, MODE_POPRF):
        raise CryptoError(f"unknown RFC 9497 mode {mode!r} (0 OPRF, 1 VOPRF, 2 POPRF)")
    return b"OPRFV1-" + bytes([mode]) + b"-" + SUITE.encode()


def _i2osp2(n: int) -> bytes:
    return n.to_bytes(2, "big")


def _lp(data: bytes) -> bytes:
    return _i2osp2(len(data)) + data


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 §5.3.1 expand_message_xmd with SHA-512 (b_in_bytes 64, s_in_bytes 128)."""
    if len(dst) > 255:  # §5.3.3: an oversize DST is hashed first
        dst = hashlib.sha512(b"H2C-OVERSIZE-DST-" + dst).digest()
    ell = -(-length // 64)
    if ell > 255 or length > 0xFFFF or length <= 0:
        raise CryptoError(f"expand_message_xmd cannot produce {length} bytes")
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(bytes(128) + msg + _i2osp2(length) + b"\x00" + dst_prime).digest()
    blocks = [hashlib.sha512(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, blocks[-1], strict=True))
        blocks.append(hashlib.sha512(mixed + bytes([i]) + dst_prime).digest())
    return b"".join(blocks)[:length]


def hash_to_group(msg: bytes, mode: int = MODE_VOPRF) -> bytes:
    """HashToGroup: hash_to_ristretto255 (RFC 9380 App. B) with DST ``"HashToGroup-" || contextString``."""
    uniform = expand_message_xmd(msg, b"HashToGroup-" + _context(mode), 64)
    element = _from_hash(uniform)
    if element == _IDENTITY:
        raise CryptoError("the input hashes to the identity element")
    return element


def hash_to_scalar(msg: bytes, mode: int = MODE_VOPRF, dst: bytes | None = None) -> bytes:
    """HashToScalar: 64 uniform bytes reduced modulo the group order (DST ``"HashToScalar-" || ctx`` unless given)."""
    uniform = expand_message_xmd(msg, b"HashToScalar-" + _context(mode) if dst is None else dst, 64)
    out = ctypes.create_string_buffer(SCALAR_SIZE)
    _sodium_lib().crypto_core_ristretto255_scalar_reduce(out, uniform)  # uniform is 64 bytes (xmd above)
    return out.raw


def _scalar(data: object, what: str, *, nonzero: bool = True) -> bytes:
    """DeserializeScalar: 32 bytes, little-endian, below the group order (and not zero where that matters)."""
    if not isinstance(data, bytes) or len(data) != SCALAR_SIZE:
        raise CryptoError(f"{what} must be {SCALAR_SIZE} bytes")
    value = int.from_bytes(data, "little")
    if value >= ORDER:
        raise CryptoError(f"{what} is not a canonical scalar (not below the group order)")
    if nonzero and value == 0:
        raise CryptoError(f"{what} is zero")
    return data


def check_element(data: bytes) -> bytes:
    """DeserializeElement: 32 bytes, a canonical ristretto255 encoding, not the identity; else CryptoError."""
    if not isinstance(data, bytes) or len(data) != ELEMENT_SIZE:
        raise CryptoError(f"an element must be {ELEMENT_SIZE} bytes")
    if data == _IDENTITY:
        raise CryptoError("the identity element is not allowed")
    if _sodium_lib().crypto_core_ristretto255_is_valid_point(data) != 1:
        raise CryptoError("not a valid ristretto255 element encoding")
    return data


def _elements(data: Sequence[bytes], what: str) -> list[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)) or not isinstance(data, Sequence):
        raise CryptoError(f"{what} must be a sequence of elements")
    if not 1 <= len(data) <= MAX_BATCH:
        raise CryptoError(f"{what} must hold 1 to {MAX_BATCH} elements, not {len(data)}")
    return [check_element(e) for e in data]


def _bytes(data: object, what: str, limit: int = MAX_INPUT) -> bytes:
    if not isinstance(data, bytes):
        raise CryptoError(f"{what} must be bytes")
    if len(data) > limit:
        raise CryptoError(f"{what} is longer than {limit} bytes")
    return data


def _from_hash(uniform: bytes) -> bytes:
    if len(uniform) != 64:
        raise CryptoError("hash_to_ristretto255 needs 64 bytes")
    out = ctypes.create_string_buffer(ELEMENT_SIZE)
    if _sodium_lib().crypto_core_ristretto255_from_hash(out, uniform) != 0:
        raise CryptoError("hash_to_ristretto255 failed")  # pragma: no cover - libsodium never fails here
    return out.raw


def _mul(scalar: bytes, element: bytes) -> bytes:
    """scalar * element (libsodium refuses an identity result, which a sound run never meets)."""
    if len(scalar) != SCALAR_SIZE or len(element) != ELEMENT_SIZE:
        raise CryptoError("a scalar multiplication needs a 32-byte scalar and a 32-byte element")
    out = ctypes.create_string_buffer(ELEMENT_SIZE)
    if _sodium_lib().crypto_scalarmult_ristretto255(out, scalar, element) != 0:
        raise CryptoError("a scalar multiplication gave the identity element")
    return out.raw


def _mul_base(scalar: bytes) -> bytes:
    if len(scalar) != SCALAR_SIZE:
        raise CryptoError("a scalar multiplication needs a 32-byte scalar")
    out = ctypes.create_string_buffer(ELEMENT_SIZE)
    if _sodium_lib().crypto_scalarmult_ristretto255_base(out, scalar) != 0:
        raise CryptoError("a scalar multiplication gave the identity element")
    return out.raw


def _add(a: bytes, b: bytes) -> bytes:
    if len(a) != ELEMENT_SIZE or len(b) != ELEMENT_SIZE:
        raise CryptoError("an addition needs two 32-byte elements")
    out = ctypes.create_string_buffer(ELEMENT_SIZE)
    if _sodium_lib().crypto_core_ristretto255_add(out, a, b) != 0:
        raise CryptoError("an element to add is not a valid encoding")
    return out.raw


# ----------------------------------------------------------------------------------------------- keys


def derive_key_pair(seed: bytes, info: bytes, mode: int = MODE_VOPRF) -> tuple[bytes, bytes]:
    """DeriveKeyPair (RFC 9497 §3.2.1): ``(sk, pk)`` from a 32-byte seed and a public info string."""
    seed = _bytes(seed, "the seed")
    if len(seed) != 32:
        raise CryptoError("the seed must be 32 bytes")
    info = _bytes(info, "the key info", MAX_INPUT - 35)
    derive_input = seed + _lp(info)
    dst = b"DeriveKeyPair" + _context(mode)
    for counter in range(256):
        sk = hash_to_scalar(derive_input + bytes([counter]), mode, dst)
        if sk != bytes(SCALAR_SIZE):
            return sk, _mul_base(sk)
    raise CryptoError("DeriveKeyPair found no non-zero key in 256 tries")  # pragma: no cover - probability 2^-64k


def generate_key_pair(mode: int = MODE_VOPRF) -> tuple[bytes, bytes]:
    """A fresh random ``(sk, pk)``: DeriveKeyPair from a random 32-byte seed."""
    return derive_key_pair(secrets.token_bytes(32), b"credcheck-pairs-v1 key", mode)


@entry_point
def public_key(sk: bytes) -> bytes:
    """``pk = sk * G`` for a secret scalar."""
    return _mul_base(_scalar(sk, "the secret key"))


def key_id(pk: bytes) -> bytes:
    """The first 8 bytes of SHA-256 of the public key's serialization."""
    return hashlib.sha256(check_element(pk)).digest()[:8]


def _info_scalar(info: bytes, mode: int) -> bytes:
    """POPRF's ``m = HashToScalar("Info" || I2OSP(len(info), 2) || info)``."""
    return hash_to_scalar(b"Info" + _lp(_bytes(info, "the info")), mode)


def tweaked_key(pk: bytes, info: bytes) -> bytes:
    """POPRF's tweaked key ``m * G + pk`` that the client verifies against (mode 2 only)."""
    element = _add(_mul_base(_info_scalar(info, MODE_POPRF)), check_element(pk))
    if element == _IDENTITY:
        raise CryptoError("the info tweaks this public key to the identity")
    return element


# ----------------------------------------------------------------------------------------------- the proof


def _composite_seed(pk: bytes, mode: int) -> bytes:
    return hashlib.sha512(_lp(pk) + _lp(b"Seed-" + _context(mode))).digest()


def _composites(
    pk: bytes, c: Sequence[bytes], d: Sequence[bytes], mode: int, k: bytes | None, seed: bytes | None = None
) -> tuple[bytes, bytes]:
    """ComputeComposites (or ComputeCompositesFast when the key ``k`` is known): ``(M, Z)``.

    One scalar multiplication per element for ``M``, then ``Z = k * M`` (one more) when the key is known.
    """
    if seed is None:
        seed = _composite_seed(pk, mode)
    m = z = b""
    for i, (ci, di) in enumerate(zip(c, d, strict=True)):
        weight = hash_to_scalar(_lp(seed) + _i2osp2(i) + _lp(ci) + _lp(di) + b"Composite", mode)
        if weight == bytes(SCALAR_SIZE):
            raise CryptoError("a composite weight is zero")  # pragma: no cover - probability 2^-252
        term = _mul(weight, ci)
        m = term if not m else _add(m, term)
        if k is None:
            term = _mul(weight, di)
            z = term if not z else _add(z, term)
    if m == _IDENTITY:
        raise CryptoError("the composite element is the identity")  # pragma: no cover - probability 2^-252
    return m, (_mul(k, m) if k is not None else z)


def _challenge(pk: bytes, m: bytes, z: bytes, t2: bytes, t3: bytes, mode: int) -> bytes:
    return hash_to_scalar(_lp(pk) + _lp(m) + _lp(z) + _lp(t2) + _lp(t3) + b"Challenge", mode)


def _generate_proof(
    k: bytes, pk: bytes, c: Sequence[bytes], d: Sequence[bytes], mode: int, r: bytes | None, seed: bytes | None = None
) -> bytes:
    """GenerateProof (RFC 9497 §2.2.1) with A = G, B = pk: ``c || s`` proving log_G(pk) = log_C(D)."""
    na = _sodium()
    m, z = _composites(pk, c, d, mode, k, seed)
    r = na.crypto_core_ristretto255_scalar_random() if r is None else _scalar(r, "the proof nonce r")
    t2 = _mul_base(r)
    t3 = _mul(r, m)
    challenge = _challenge(pk, m, z, t2, t3, mode)
    s: bytes = na.crypto_core_ristretto255_scalar_sub(r, na.crypto_core_ristretto255_scalar_mul(challenge, k))
    return challenge + s


def _verify_proof(pk: bytes, c: Sequence[bytes], d: Sequence[bytes], proof: bytes, mode: int) -> None:
    """VerifyProof (RFC 9497 §2.2.2) with A = G, B = pk; raises ProofError unless it holds."""
    if not isinstance(proof, bytes) or len(proof) != PROOF_SIZE:
        raise ProofError(f"the proof must be {PROOF_SIZE} bytes")
    try:
        challenge = _scalar(proof[:32], "the proof's c", nonzero=False)
        s = _scalar(proof[32:], "the proof's s", nonzero=False)
        m, z = _composites(pk, c, d, mode, None)
        t2 = _add(_mul_base(s), _mul(challenge, pk))
        t3 = _add(_mul(s, m), _mul(challenge, z))
    except CryptoError as exc:
        raise ProofError(f"the proof does not verify ({exc})") from None
    if not secrets.compare_digest(_challenge(pk, m, z, t2, t3, mode), challenge):
        raise ProofError("the proof does not verify: the evaluation was not made with this public key")


# ----------------------------------------------------------------------------------------------- the protocol


@entry_point
def blind(input: bytes, *, mode: int = MODE_VOPRF, blind_scalar: bytes | None = None) -> tuple[bytes, bytes]:
    """Blind: ``(blind, blinded_element)`` for a client input (``blind_scalar`` fixes the blind, for vectors)."""
    na = _sodium()
    element = hash_to_group(_bytes(input, "the input"), mode)
    r = na.crypto_core_ristretto255_scalar_random() if blind_scalar is None else _scalar(blind_scalar, "the blind")
    return r, _mul(r, element)


@entry_point
def blind_evaluate(
    sk: bytes,
    pk: bytes,
    blinded: Sequence[bytes],
    *,
    mode: int = MODE_VOPRF,
    r: bytes | None = None,
    info: bytes = b"",
) -> tuple[list[bytes], bytes]:
    """BlindEvaluate: ``(evaluated, proof)``, one batched proof over all elements (``b""`` in mode 0).

    ``pk`` must be ``public_key(sk)``; ``r`` fixes the proof nonce (for vectors); ``info`` is POPRF's (mode 2).
    """
    _context(mode)
    sk = _scalar(sk, "the secret key")
    elements = _elements(blinded, "the blinded elements")
    if mode == MODE_OPRF:
        return [_mul(sk, e) for e in elements], b""
    pk = check_element(pk)
    if mode == MODE_VOPRF:
        evaluated = [_mul(sk, e) for e in elements]
        return evaluated, _generate_proof(sk, pk, elements, evaluated, mode, r)
    na = _sodium()
    t = na.crypto_core_ristretto255_scalar_add(sk, _info_scalar(info, mode))
    if t == bytes(SCALAR_SIZE):
        raise CryptoError("the info makes the tweaked key zero")
    inverse = na.crypto_core_ristretto255_scalar_invert(t)
    evaluated = [_mul(inverse, e) for e in elements]
    # POPRF proves log_G(tweakedKey) = log_evaluated(blinded): C and D swap places
    return evaluated, _generate_proof(t, _mul_base(t), evaluated, elements, mode, r)


class Evaluator:
    """A server's VOPRF key, prepared once: :meth:`blind_evaluate` is BlindEvaluate for a query's elements.

    What depends on the key alone is done here once — the key checked, ``pk = sk * G``, ComputeComposites'
    seed — so a query costs only what RFC 9497 needs for ``n`` elements: ``n`` evaluations, ``n``
    multiplications for the composite ``M``, ``Z = sk * M``, and the proof's ``t2 = r * G`` and ``t3 = r * M``.
    The secret never appears in a repr.
    """

    __slots__ = ("_seed", "_sk", "pk")

    def __init__(self, sk: bytes) -> None:
        self._sk = _scalar(sk, "the secret key")
        self.pk = _mul_base(self._sk)
        self._seed = _composite_seed(self.pk, MODE_VOPRF)

    def __repr__(self) -> str:
        return f"<Evaluator key_id={key_id(self.pk).hex()}>"

    def blind_evaluate(self, blinded: Sequence[bytes], *, r: bytes | None = None) -> tuple[list[bytes], bytes]:
        """``(evaluated, proof)`` as :func:`blind_evaluate` in mode 1; a bad element is a CryptoError naming it."""
        return _evaluate_prepared(self._sk, self.pk, self._seed, blinded, r)


@entry_point
def _evaluate_prepared(
    sk: bytes, pk: bytes, seed: bytes, blinded: Sequence[bytes], r: bytes | None
) -> tuple[list[bytes], bytes]:
    if isinstance(blinded, (bytes, bytearray, memoryview)) or not isinstance(blinded, Sequence):
        raise CryptoError("the blinded elements must be a sequence of elements")
    if not 1 <= len(blinded) <= MAX_BATCH:
        raise CryptoError(f"the blinded elements must hold 1 to {MAX_BATCH} elements, not {len(blinded)}")
    elements = []
    for number, element in enumerate(blinded, 1):
        try:
            elements.append(check_element(element))
        except CryptoError as exc:
            raise CryptoError(f"element {number}: {exc}") from None
    evaluated = [_mul(sk, e) for e in elements]
    return evaluated, _generate_proof(sk, pk, elements, evaluated, MODE_VOPRF, r, seed)


def verify_proof(
    pk: bytes,
    blinded: Sequence[bytes],
    evaluated: Sequence[bytes],
    proof: bytes,
    *,
    mode: int = MODE_VOPRF,
    info: bytes = b"",
) -> None:
    """VerifyProof for a batch: returns, or raises ProofError (a malformed element raises CryptoError)."""
    if mode == MODE_OPRF:
        raise CryptoError("mode 0 (OPRF) has no proof to verify")
    _context(mode)
    c = _elements(blinded, "the blinded elements")
    d = _elements(evaluated, "the evaluated elements")
    if len(c) != len(d):
        raise CryptoError(f"{len(c)} blinded elements but {len(d)} evaluated ones")
    if mode == MODE_VOPRF:
        _verify_proof(check_element(pk), c, d, proof, mode)
    else:
        _verify_proof(tweaked_key(pk, info), d, c, proof, mode)


def _output(input: bytes, info: bytes | None, element: bytes) -> bytes:
    framed_info = b"" if info is None else _lp(info)
    return hashlib.sha512(_lp(input) + framed_info + _lp(element) + b"Finalize").digest()


@entry_point
def finalize(input: bytes, blind: bytes, evaluated: bytes, *, mode: int = MODE_VOPRF, info: bytes = b"") -> bytes:
    """Finalize: the 64-byte output from one evaluated element (call :func:`verify_proof` first in modes 1, 2)."""
    _context(mode)
    input = _bytes(input, "the input")
    r = _scalar(blind, "the blind")
    element = check_element(evaluated)
    inverse = _sodium().crypto_core_ristretto255_scalar_invert(r)
    return _output(input, _bytes(info, "the info") if mode == MODE_POPRF else None, _mul(inverse, element))


@entry_point
def evaluate(sk: bytes, input: bytes, *, mode: int = MODE_VOPRF, info: bytes = b"") -> bytes:
    """Evaluate: the server's own 64-byte output for an input it knows (what a build computes)."""
    sk = _scalar(sk, "the secret key")
    input = _bytes(input, "the input")
    element = hash_to_group(input, mode)
    if mode != MODE_POPRF:
        return _output(input, None, _mul(sk, element))
    na = _sodium()
    t = na.crypto_core_ristretto255_scalar_add(sk, _info_scalar(info, mode))
    if t == bytes(SCALAR_SIZE):
        raise CryptoError("the info makes the tweaked key zero")
    return _output(input, info, _mul(na.crypto_core_ristretto255_scalar_invert(t), element))
