"""An Active Directory audit: many NTLM hashes (an administrator's export) checked against leaked NTLM hashes.

Builds an NTLM range store from N random leaked hashes (HIBP's NTLM format, sorted), then checks an
"export" of M account hashes, a share of them leaked, through each path a defender would use:

- ``RangeStore.lookup_many`` on an array of raw digests (the vectorised core),
- ``Checker.check_hashes`` on hex strings (what ``credcheck check --store S --hashes`` does),
- ``Checker.check_many`` on plaintext passwords (MD4 of each, then the store),
- the range API (``credcheck.open(url, scheme="ntlm")``) on a smaller sample: one request per distinct prefix.

    .venv/bin/python benchmarks/ntlm_audit.py [--leaked 10000000] [--accounts 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import credcheck
from credcheck.server import serve_in_background
from credcheck.store import RangeStore


def median_rate(fn: Callable[[], Any], items: int, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return items / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaked", type=int, default=10_000_000, help="leaked NTLM hashes in the store")
    parser.add_argument("--accounts", type=int, default=1_000_000, help="account hashes in the audit")
    parser.add_argument("--leaked-share", type=float, default=0.1, help="share of accounts with a leaked hash")
    parser.add_argument("--remote-accounts", type=int, default=5_000, help="accounts checked over the range API")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory(prefix="credcheck-ntlm-") as tmp:
        root = Path(tmp)
        leaked = rng.integers(0, 256, (args.leaked, 16), dtype=np.uint8)
        order = np.argsort(leaked.view("S16").ravel(), kind="stable")
        leaked = leaked[order]
        src = root / "pwned-passwords-ntlm-ordered-by-hash.txt"
        with open(src, "wb") as fh:
            for start in range(0, args.leaked, 1_000_000):
                block = leaked[start : start + 1_000_000]
                counts = rng.geometric(0.05, len(block))
                fh.write(
                    b"".join(
                        b"%s:%d\r\n" % (bytes(r).hex().upper().encode(), c) for r, c in zip(block, counts, strict=True)
                    )
                )
        store_path = root / "ntlm.store"
        started = time.perf_counter()
        report = credcheck.build([src], store=store_path, scheme="ntlm")
        build_s = time.perf_counter() - started
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        n_hit = int(args.accounts * args.leaked_share)
        accounts = np.concatenate(
            [leaked[rng.integers(0, args.leaked, n_hit)], rng.integers(0, 256, (args.accounts - n_hit, 16), np.uint8)]
        )
        rng.shuffle(accounts)
        hexes = [bytes(r).hex().upper() for r in accounts]
        passwords = [f"account-{i}-Winter2024!" for i in range(min(args.accounts, 200_000))]

        with RangeStore(store_path) as store:
            found = int((store.lookup_many(accounts) > 0).sum())
            raw = median_rate(lambda: store.lookup_many(accounts), len(accounts), args.repeat)
        with credcheck.open(store_path) as checker:
            hexed = median_rate(lambda: checker.check_hashes(hexes), len(hexes), args.repeat)
            plain = median_rate(lambda: checker.check_many(passwords), len(passwords), args.repeat)
        remote_hexes = hexes[: args.remote_accounts]
        with serve_in_background([store_path]) as url, credcheck.open(url, scheme="ntlm", padding=False) as remote:
            remote_rate = median_rate(lambda: remote.check_hashes(remote_hexes), len(remote_hexes), 1)

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores; median of {args.repeat} runs")
    print(
        f"store: {args.leaked:,} leaked NTLM hashes, built in {build_s:.1f} s "
        f"({report.lines_read / build_s:,.0f} lines/s; peak RSS of this process {rss_mib:,.0f} MiB)"
    )
    print(f"audit: {args.accounts:,} accounts, {found:,} found leaked (expected {n_hit:,} + false none)")
    print(f"{'path':58} {'accounts/s':>14}")
    print(f"{'RangeStore.lookup_many (raw 16-byte digests)':58} {raw:>14,.0f}")
    print(f"{'Checker.check_hashes (hex strings; credcheck check --hashes)':58} {hexed:>14,.0f}")
    print(f"{'Checker.check_many (plaintext passwords, MD4 each)':58} {plain:>14,.0f}")
    print(f"{'range API over loopback (wsgiref, one request per prefix)':58} {remote_rate:>14,.0f}")


if __name__ == "__main__":
    main()
