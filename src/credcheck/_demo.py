"""``credcheck demo``: the story end to end, offline, on the leaked-password hashes bundled with the package.

A shop has lost its users' password hashes; a partner site wants to know which of its own users reuse one
of them. The demo builds a filter and exact stores from the bundled leaked set, starts the k-anonymity
range service on a free loopback port, and plays the partner site: each password is checked through the
range API (only a 5-hex prefix crosses the wire) and against the local filter, with timings. Last, the
private tier: the shop's leaked username:password combo list built into a pair store, served as a pair
service on loopback, and another site's log-ins checked through it privately (only a bucket and blinded
elements cross the wire; with the ``pairs`` extra; skipped, saying so, without it).
"""

from __future__ import annotations

import os
import tempfile
import time
import urllib.request
from importlib import resources
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from . import open as open_source
from ._native import describe
from ._report import counted
from .build import BuildReport, build
from .hashing import ntlm_hex, sha1_hex
from .server import serve_in_background

if TYPE_CHECKING:
    import requests

    from .pairs.build import PairBuildReport
    from .pairs.keys import KeyPair

__all__ = ["BUNDLED_NTLM", "BUNDLED_SHA1", "build_leaked_pairs", "bundled_path", "run_demo"]

BUNDLED_SHA1 = "common-passwords.sha1.txt.gz"
BUNDLED_NTLM = "common-passwords.ntlm.txt.gz"

# The partner site's users; some chose passwords that are on every leaked list.
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


def _story(report: BuildReport) -> list[str]:
    """The build report as a person would tell it: only what happened, numbers with their nouns."""
    scheme = {"sha1": "SHA-1", "ntlm": "NTLM"}.get(report.scheme, report.scheme)
    kept = counted(report.kept, f"{scheme} hash", f"{scheme} hashes")
    done = f"Read {counted(report.lines_read, 'line')} in {report.seconds:.2f} s and kept {kept}"
    aside = []
    if report.duplicates_merged:
        aside.append(counted(report.duplicates_merged, "duplicate") + " merged")
    if report.below_min_count:
        rare = counted(report.below_min_count, "hash", "hashes")
        aside.append(f"{rare} seen fewer than {counted(report.min_count, 'time')} dropped")
    if report.bad_lines:
        aside.append(counted(report.bad_lines, "bad line"))
    lines = [done + (f" ({'; '.join(aside)})." if aside else ".")]
    for label, path in (("filter", report.filter_path), ("store", report.store_path)):
        if path:
            lines.append(f"Wrote the {label} {os.path.basename(path)} ({os.path.getsize(path):,} bytes).")
    return lines


def _mask(password: str) -> str:
    return password[:2] + "*" * (len(password) - 2)


class _Wire:
    """Records what the client sends (a response hook on its session; the body stays the client's to read)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, int]] = []

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = response.request
        self.requests.append((request.path_url, request.headers.get("Add-Padding", "-"), response.status_code))

    def lines(self, url: str, path: str, padding: str) -> tuple[int, int]:
        """The lines of the body the server sends for that request, and how many of them are padding."""
        headers = {"Add-Padding": padding} if padding != "-" else {}
        # urllib, so that the command does not load requests until a range API is opened
        with urllib.request.urlopen(urllib.request.Request(url + path, headers=headers), timeout=10) as reply:
            body = reply.read()
        lines = body.split(b"\r\n") if body else []
        return len(lines), sum(1 for line in lines if line.endswith(b":0"))


def run_demo(out: IO[str]) -> None:
    """Build, serve and check, printing what happens; everything lives in a temporary folder."""

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    with tempfile.TemporaryDirectory(prefix="credcheck-demo-") as tmp:
        filter_path = os.path.join(tmp, "leaked.bloom")
        store_path = os.path.join(tmp, "leaked.store")
        ntlm_path = os.path.join(tmp, "leaked-ntlm.store")
        say("credcheck demo: a shop has leaked its users' password hashes. Which of YOUR users reuse one?")

        say(f"\n1. Build a Bloom filter and an exact range store from the leaked set ({BUNDLED_SHA1})")
        report = build([bundled_path()], filter=filter_path, store=store_path, fp_rate=1e-6)
        for line in _story(report):
            say("   " + line)
        build([bundled_path(BUNDLED_NTLM)], store=ntlm_path, scheme="ntlm")

        with serve_in_background([store_path, ntlm_path]) as url:
            say(f"\n2. Start the k-anonymity range service (HIBP-compatible) on {url}")
            wire = _Wire()
            with open_source(url) as remote, open_source(filter_path) as local:
                remote.client.driver.session.hooks["response"].append(wire)  # type: ignore[attr-defined]
                say(f"\n3. The partner site checks its users' passwords (the filter runs on the {describe()})")
                say(f"   {'user':6} {'password':36} {'range API (exact count)':30} {'local filter':22}")
                for user, password in USERS:
                    started = time.perf_counter()
                    remote_answer = remote.check(password)
                    remote_ms = (time.perf_counter() - started) * 1e3
                    started = time.perf_counter()
                    local_answer = local.check(password)
                    local_us = (time.perf_counter() - started) * 1e6
                    seen = (
                        f"LEAKED, seen {counted(remote_answer.count or 0, 'time')}" if remote_answer else "not leaked"
                    )
                    flag = "LEAKED" if local_answer.compromised else "not leaked"
                    say(
                        f"   {user:6} {_mask(password):36} {seen + f' ({remote_ms:.1f} ms)':30} "
                        f"{flag + f' ({local_us:.0f} us)':22}"
                    )

            say("\n4. What crossed the wire (the server never saw a password or a whole hash):")
            for (path, padding, status), (_, password) in zip(wire.requests, USERS, strict=True):
                prefix = sha1_hex(password)[:5]
                lines, padded = wire.lines(url, path, padding)
                say(
                    f"   GET {path:14} Add-Padding: {padding:5} -> {status}, {lines:3} lines "
                    f"({padded} padding); sent {len(prefix)} of 40 hex digits"
                )

            say("\n5. An Active Directory audit: NTLM hashes checked in bulk against the NTLM range API")
            leaked_ntlm = ["password", "letmein", "monkey", "Summer2024!x", "Tr0ub4dor&3"]
            with open_source(url, scheme="ntlm") as ntlm:
                for account, answer in zip(leaked_ntlm, ntlm.check_many(leaked_ntlm), strict=True):
                    verdict = "LEAKED" if answer.compromised else "not leaked"
                    say(f"   {ntlm_hex(account)[:5]}... {verdict}")

        with open_source(filter_path) as local:
            say("\n6. Bulk screening: 1,000,000 random digests against the local filter in one batch")
            probes = np.random.default_rng(0).integers(0, 256, size=(1_000_000, 20), dtype=np.uint8)
            started = time.perf_counter()
            hits = local.filter.contains_many(probes)  # type: ignore[attr-defined]
            seconds = time.perf_counter() - started
            say(
                f"   {len(probes) / seconds / 1e6:.1f} M lookups/s; {counted(int(hits.sum()), 'false positive')} "
                f"(designed rate {local.filter.fp_rate:g})"  # type: ignore[attr-defined]
            )
        _pair_tier(say, tmp)
        say("\nThe server and the temporary files are gone; no password left this process.")


# The leak's combo list (username:password) and the partner site's own users' log-ins, for the pair tier.
LEAKED_COMBOS = ["alice@shop.example:123456", "carol@shop.example:Qwerty99", "erin@shop.example:hunter2"]
PAIR_LOGINS = [
    ("Alice@Shop.example", "123456"),
    ("carol@shop.example", "qwerty99"),
    ("erin@shop.example", "k8#Vq2!zLw9@Rt"),
    ("frank@shop.example", "123456"),
]


_VERDICTS = {
    "EXACT": "exact pair leaked",
    "SIMILAR": "a close password leaked",
    "USERNAME": "username leaked, not this password",
    "NOT_FOUND": "not in the leak",
}


def build_leaked_pairs(folder: str, key: KeyPair) -> tuple[str, PairBuildReport]:
    """Build the shop's leaked combo list (:data:`LEAKED_COMBOS`) into ``folder/leaked.pairs`` with ``key``,
    stretched with a small explicit scrypt so that it takes a second; return its path and the build report."""
    import concurrent.futures as cf

    from .pairs.build import build_pairs

    combo = os.path.join(folder, "combo.txt")
    with open(combo, "w", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in LEAKED_COMBOS))
    pairs = os.path.join(folder, "leaked.pairs")
    with cf.ThreadPoolExecutor(2) as pool:  # scrypt releases the GIL; a process pool would take longer to start
        report = build_pairs(
            combo, pairs, key, stretch="scrypt:1024:8:1", variants=9, username_entries=True, executor=pool, workers=2
        )
    return pairs, report


def _pair_tier(say: Any, tmp: str) -> None:
    """Step 7: the shop's combo list becomes a pair store; another site checks log-ins privately over loopback."""
    import json

    from .errors import DependencyError

    say("\n7. The private tier: did THIS user's username and password leak together? (the shop's combo list of 3")
    say("   pairs, stretched with a small explicit scrypt:1024:8:1 so the demo stays fast; real builds: 'interactive')")
    try:
        from ._sources import open_pairs
        from .pairs import _oprf
        from .pairs._service import make_pair_service
        from .pairs.keys import KeyPair

        key = KeyPair.from_secret(_oprf.generate_key_pair()[0])
    except DependencyError as exc:
        say(f"   (skipped: {exc})")
        return
    pairs, report = build_leaked_pairs(tmp, key)
    sent: list[bytes] = []
    with make_pair_service(pairs, key) as service, serve_in_background(pairs=service) as url:
        say(f"   {report.entries_kept} entries in 2^{report.bucket_bits} padded buckets (no username or password in "
            f"the file), served on {url}; the partner site asks:")  # fmt: skip
        with open_pairs(url) as checker:
            session = checker.client.driver.session  # type: ignore[attr-defined]
            session.hooks["response"].append(lambda response, *a, **k: sent.append(response.request.body or b""))
            for username, password in PAIR_LOGINS:
                answer = checker.check(username, password)
                say(f"   {username:20} {_mask(password):16} {_VERDICTS[answer.status.name]:36} {answer.status.name}")
    queries = [json.loads(body) for body in sent if body]
    say(f"   On the wire, per log-in: the bucket (1 of {1 << report.bucket_bits}) and "
        f"{len(queries[0]['elements'])} freshly blinded elements; a proven answer back.")  # fmt: skip
    say("   The service never saw a username, a password or a hash, nor learnt the answer.")
