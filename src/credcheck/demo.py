"""``credcheck demo``: the story end to end, offline, on the leaked-password hashes bundled with the package."""

from __future__ import annotations

import os
import tempfile
import time
from importlib import resources
from typing import IO

import numpy as np

from .bloom import KERNELS, BloomFilter
from .build import build
from .checker import FilterChecker

__all__ = ["BUNDLED_SHA1", "bundled_path", "run_demo"]

BUNDLED_SHA1 = "common-passwords.sha1.txt.gz"
BUNDLED_NTLM = "common-passwords.ntlm.txt.gz"

# A partner site's users at sign-up; some chose passwords that are on every leaked list.
USERS = [
    ("alice", "123456"),
    ("bob", "correct horse battery staple 1979!"),
    ("carol", "qwerty"),
    ("dave", "iloveyou"),
    ("erin", "k8#Vq2!zLw9@Rt"),
    ("frank", "dragon"),
]


def bundled_path(name: str = BUNDLED_SHA1) -> str:
    """The path of a data file bundled with the package."""
    return str(resources.files("credcheck").joinpath("data", name))


def _mask(password: str) -> str:
    return password[:2] + "*" * (len(password) - 2)


def run_demo(out: IO[str]) -> None:
    """Build a filter from the bundled data, then check a partner site's passwords against it."""

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    with tempfile.TemporaryDirectory(prefix="credcheck-demo-") as tmp:
        source = bundled_path()
        filter_path = os.path.join(tmp, "leaked.bloom")
        say("credcheck demo: a shop has leaked its users' password hashes; is your site exposed too?")
        say(f"\n1. Build a Bloom filter from the bundled leaked set ({os.path.basename(source)})")
        report = build([source], filter=filter_path, fp_rate=1e-6)
        for line in report.summary().splitlines():
            say("   " + line)

        say(f"\n2. A partner site checks its users' passwords against the local filter ({KERNELS} kernels)")
        with FilterChecker(BloomFilter.open(filter_path)) as checker:
            for user, password in USERS:
                started = time.perf_counter()
                exposure = checker.check(password)
                micros = (time.perf_counter() - started) * 1e6
                verdict = "LEAKED - ask for another password" if exposure.compromised else "not in the leaked set"
                say(f"   {user:6} {_mask(password):36} {verdict:34} {micros:7.1f} us")

            say("\n3. A bulk audit: 1,000,000 digests checked in one batch")
            rng = np.random.default_rng(0)
            probes = rng.integers(0, 256, size=(1_000_000, 20), dtype=np.uint8)
            started = time.perf_counter()
            hits = checker.filter.contains_many(probes)
            seconds = time.perf_counter() - started
            say(
                f"   {len(probes) / seconds / 1e6:.1f} M lookups/s; {int(hits.sum())} false positives among "
                f"1,000,000 random digests (designed rate {checker.filter.fp_rate:g})"
            )
        say("\nNo password left this process; the temporary filter is removed.")
