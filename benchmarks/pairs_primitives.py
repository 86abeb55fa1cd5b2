"""The raw-primitive ceiling of the pair tier: RFC 9497 VOPRF (ristretto255-SHA512) per-operation cost.

    .venv/bin/python benchmarks/pairs_primitives.py                  # 15 rounds of 200 calls per operation
    .venv/bin/python benchmarks/pairs_primitives.py --rounds 3 --calls 20   # a quick check that it runs

credcheck's ``credcheck.pairs._oprf`` (libsodium's ristretto255 through pysodium, the RFC's glue in Python)
beside the ``voprf`` wheel (Meta's Rust voprf crate over curve25519-dalek, behind a PyO3 binding), same inputs,
same process, interleaved round by round so that a load change on the machine hits both alike. Each side goes
bytes in, bytes out (the wheel's deserialize/serialize included, as a server would need them). Per operation it
prints the median µs per call over the rounds, calls per second on one core, and the ratio (wheel time / ours:
above 1 means ours is faster).

Operations: BlindEvaluate with its DLEQ proof for 1 and for 2 elements (one batched proof: a pair query's pair
and username elements), the client's VerifyProof alone and VerifyProof + Finalize (the wheel only offers both
together), Finalize alone, the server's known-input Evaluate (what a pair build does per entry), Blind, and one
bare libsodium scalar multiplication (the unit every operation above is made of).

BlindEvaluate for one element is the pair server's per-query ceiling: a server on 2 cores cannot answer more
than about twice its calls/s, whatever the HTTP layer does.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

from credcheck.pairs import _oprf as oprf

Op = Callable[[], object]


def _per_call_us(fn: Op, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def _ours() -> dict[str, Op]:
    sk, pk = oprf.generate_key_pair()
    value, other = os.urandom(32), os.urandom(32)
    blind_, blinded = oprf.blind(value)
    _, blinded2 = oprf.blind(other)
    evaluated, proof = oprf.blind_evaluate(sk, pk, [blinded])
    na = oprf._sodium()
    point, scalar = na.crypto_core_ristretto255_random(), na.crypto_core_ristretto255_scalar_random()

    def verify_finalize() -> bytes:
        oprf.verify_proof(pk, [blinded], evaluated, proof)
        return oprf.finalize(value, blind_, evaluated[0])

    return {
        "BlindEvaluate+proof, 1 element": lambda: oprf.blind_evaluate(sk, pk, [blinded]),
        "BlindEvaluate+proof, 2 elements": lambda: oprf.blind_evaluate(sk, pk, [blinded, blinded2]),
        "VerifyProof, 1 element": lambda: oprf.verify_proof(pk, [blinded], evaluated, proof),
        "VerifyProof+Finalize, 1 element": verify_finalize,
        "Finalize alone": lambda: oprf.finalize(value, blind_, evaluated[0]),
        "Evaluate (known input)": lambda: oprf.evaluate(sk, value),
        "Blind": lambda: oprf.blind(value),
        "libsodium scalarmult (unit)": lambda: na.crypto_scalarmult_ristretto255(scalar, point),
    }


def _wheel() -> dict[str, Op] | None:
    try:
        from voprf import ristretto as wheel
    except ImportError:
        print("the voprf wheel is not installed (it is in the dev extra); showing credcheck alone", file=sys.stderr)
        return None
    server = wheel.Evaluator.from_seed(os.urandom(32), b"bench")
    public = server.public_key
    value, other = os.urandom(32), os.urandom(32)
    client, blinded_input = wheel.Client.blind(value)
    blinded, blinded2 = blinded_input.serialize(), wheel.Client.blind(other)[1].serialize()
    response = server.evaluate(blinded_input).serialize()

    def evaluate_one() -> bytes:
        return server.evaluate(wheel.BlindedInput.deserialize(blinded)).serialize()

    def evaluate_two() -> bytes:
        batch = [wheel.BlindedInput.deserialize(blinded), wheel.BlindedInput.deserialize(blinded2)]
        return server.evaluate_batch(batch).serialize()

    def verify_finalize() -> bytes:
        return client.finalize(wheel.VerifiableOutput.deserialize(response), public)

    return {
        "BlindEvaluate+proof, 1 element": evaluate_one,
        "BlindEvaluate+proof, 2 elements": evaluate_two,
        "VerifyProof+Finalize, 1 element": verify_finalize,
        "Evaluate (known input)": lambda: server.evaluate_known_input(value),
        "Blind": lambda: wheel.Client.blind(value),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per operation (median taken)")
    parser.add_argument("--calls", type=int, default=200, help="calls per round")
    args = parser.parse_args(argv)

    ours, wheel = _ours(), _wheel()
    print(
        f"# RFC 9497 VOPRF ristretto255-SHA512, one core; {platform.python_implementation()} "
        f"{platform.python_version()}, libsodium {oprf._sodium().sodium.sodium_version_string().decode()}; "
        f"median of {args.rounds} rounds x {args.calls} calls"
    )
    print()
    print("| operation | credcheck µs | credcheck /s | voprf wheel µs | wheel /s | ratio (wheel/ours) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, fn in ours.items():
        peer = wheel.get(name) if wheel else None
        fn(), peer() if peer else None  # warm up
        mine: list[float] = []
        theirs: list[float] = []
        for _ in range(args.rounds):
            mine.append(_per_call_us(fn, args.calls))
            if peer:
                theirs.append(_per_call_us(peer, args.calls))
        m = statistics.median(mine)
        if theirs:
            t = statistics.median(theirs)
            print(f"| {name} | {m:.1f} | {1e6 / m:,.0f} | {t:.1f} | {1e6 / t:,.0f} | {t / m:.2f} |")
        else:
            print(f"| {name} | {m:.1f} | {1e6 / m:,.0f} | — | — | — |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
