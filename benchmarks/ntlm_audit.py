"""An Active Directory audit: many NTLM hashes (an administrator's export) checked against leaked NTLM hashes.

Builds an NTLM range store from N random leaked hashes (HIBP's NTLM format, sorted), then checks an
"export" of M account hashes, a share of them leaked, through each path a defender would use:

- ``RangeStore.lookup_many`` on an array of raw digests (the vectorised core),
- ``Checker.check_hashes`` on hex strings (the library's audit call),
- ``credcheck check --store S --hashes`` on the same accounts as a pwdump file (``account:rid:lm:nt:::`` lines,
  DOMAIN\\name accounts): the command's whole path in this process (read, parse, ask, one answer line per account
  with its name written to a file, the summary), against ``check_hashes`` on the same digests in the same run;
  the target is at least 90% of its accounts/s,
- ``Checker.check_many`` on plaintext passwords (MD4 of each, then the store),
- the range API (``credcheck.open(url, scheme="ntlm")``) on a smaller sample: one request per distinct prefix.

    .venv/bin/python benchmarks/ntlm_audit.py [--leaked 10000000] [--accounts 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import credcheck
from credcheck._corpus import MAX_LINE_BYTES
from credcheck.cli import main
from credcheck.cli._audit import HashLines
from credcheck.cli._input import read_blocks
from credcheck.cli._passwords import HASH_BATCH
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


def run_command(argv: list[str], stdin: Path, stdout: Path) -> int:
    """``credcheck ARGV`` in this process, standard input read from one file and standard output written to another."""
    with stdin.open("rb") as given, stdout.open("wb") as written:
        inputs, outputs = io.TextIOWrapper(given), io.TextIOWrapper(written)
        with contextlib.redirect_stdout(outputs):
            saved, sys.stdin = sys.stdin, inputs
            try:
                return main(argv)
            finally:
                sys.stdin = saved
                outputs.flush()


def opened(store: Path, hexes: list[str]) -> None:
    """check_hashes as a program calls it: the store opened (and verified) first, as the command opens it."""
    with credcheck.open(store) as checker:
        checker.check_hashes(hexes)


def in_memory(store: Path, text: bytes) -> HashLines:
    """The command's path without its files: the pwdump text through check's reader (read_blocks), answered
    account by account (the answer lines made, not written) and summarised."""
    with HashLines(credcheck.open(store), batch=HASH_BATCH) as lines:
        first = 1
        for block in read_blocks(io.BytesIO(text), MAX_LINE_BYTES):
            first += lines.answer(block, first, False).lines
        lines.summary(False)
    return lines


def kept_bytes(lines: HashLines) -> int:
    """What the summary kept of the accounts (their lines, digests, name spans, LM flags), in bytes."""
    kept = lines.accounts
    return sum(len(b) for b in kept.blocks) + sum(a.nbytes for a in (*kept.rows, *kept.spans, *kept.lm))


def write_pwdump(path: Path, accounts: np.ndarray) -> None:
    """The accounts as pwdump lines (one in a hundred with an LM hash stored), as secretsdump writes an NTDS.dit's."""
    with path.open("wb") as fh:
        for start in range(0, len(accounts), 100_000):
            fh.write(
                b"".join(
                    b"CONTOSO\\user%07d:%d:%s:%s:::\r\n"
                    % (
                        i,
                        1000 + i,
                        b"E52CAC67419A9A224A3B108F3FA6CB6D" if i % 100 == 0 else EMPTY_LM,
                        row.hex().encode(),
                    )
                    for i, row in enumerate(map(bytes, accounts[start : start + 100_000]), start)
                )
            )


EMPTY_LM = b"aad3b435b51404eeaad3b435b51404ee"


def audit() -> None:
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
        pwdump, report_path = root / "ntds.pwdump", root / "audit.txt"
        write_pwdump(pwdump, accounts)
        argv = ["check", "--store", str(store_path), "--hashes"]
        # interleaved, each run once before (a warm-up), so that a noisy neighbour slows all alike; each opens (and
        # verifies) the store, as each must. Timed in CPU seconds of this process as well as on the wall clock: on a
        # shared machine the wall clock of a 2-second call swings with the neighbours, its CPU time far less (every
        # path runs in this one thread)
        text = pwdump.read_bytes()
        calls = {
            "command": lambda: run_command(argv, pwdump, report_path),
            "memory": lambda: in_memory(store_path, text),
            "hexed": lambda: opened(store_path, hexes),
            "open": lambda: credcheck.open(store_path).close(),
        }
        wall: dict[str, list[float]] = {name: [] for name in calls}
        cpu: dict[str, list[float]] = {name: [] for name in calls}
        for call in calls.values():
            call()
        for _ in range(args.repeat):
            for name, call in calls.items():
                started, used = time.perf_counter(), time.process_time()
                call()
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - used)
        seconds = {name: (statistics.median(cpu[name]), statistics.median(wall[name])) for name in calls}
        rate = {name: (len(hexes) / c, len(hexes) / w) for name, (c, w) in seconds.items()}
        kept = kept_bytes(in_memory(store_path, text))
        with credcheck.open(store_path) as checker:
            plain = median_rate(lambda: checker.check_many(passwords), len(passwords), args.repeat)
        answered = report_path.read_text().splitlines()
        named = sum(": compromised" in line for line in answered)
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
    print(f"kept for the audit's summary: {kept / 2**20:,.0f} MiB ({kept / args.accounts:,.0f} bytes an account)")
    print(f"{'path':58} {'accounts/s':>14}")
    print(f"{'RangeStore.lookup_many (raw 16-byte digests)':58} {raw:>14,.0f}")
    print(f"{'':58} {'CPU time':>14} {'wall clock':>14}")
    rows = [
        ("hexed", "credcheck.open + Checker.check_hashes (hex strings)"),
        ("command", "credcheck check --hashes, pwdump file in, named answers out"),
        ("memory", "  the same path in memory (no file read or written)"),
    ]
    for name, label in rows:
        (c, w), (bc, bw) = rate[name], rate["hexed"]
        ratio = "" if name == "hexed" else f"   {c / bc:.0%} / {w / bw:.0%} of check_hashes"
        print(f"{label:58} {c:>14,.0f} {w:>14,.0f}{ratio}")
    open_cpu, open_wall = seconds["open"]
    answering = (seconds["hexed"][0] - open_cpu) / (seconds["command"][0] - open_cpu)
    print(
        f"  target: the command >= 90% of check_hashes; {named:,} accounts named leaked. Each run opens and verifies"
        f" the store ({open_cpu:.2f} s CPU, {open_wall:.2f} s wall); without it, the command is {answering:.0%}"
    )
    print(f"{'Checker.check_many (plaintext passwords, MD4 each)':58} {plain:>14,.0f}")
    print(f"{'range API over loopback (wsgiref, one request per prefix)':58} {remote_rate:>14,.0f}")


if __name__ == "__main__":
    audit()
