"""The pair build against its ceiling: the bare stretch (hashlib.scrypt in a loop) of the same profile.

    .venv/bin/python benchmarks/pairs_build.py                          # interactive, 1 and 2 workers, ~2 min
    .venv/bin/python benchmarks/pairs_build.py --pairs 200 --quick      # a check that it runs (seconds)
    .venv/bin/python benchmarks/pairs_build.py --stretch strong --dask  # also on a Dask LocalCluster

What is measured, each on the same synthetic combo list (one pair per user, ``user{i}@example.com:pw...``):

1. **Bare stretch**, the ceiling: ``hashlib.scrypt`` of distinct 40-byte inputs in a loop, in 1 process and in
   ``w`` processes at once (the ceiling of ``w`` workers on this machine, shared caches and memory bandwidth
   included).
2. **The pair build**, end to end (``credcheck.pairs.build.build_pairs``: read, deduplicate, stretch on a process
   pool of ``w`` workers - or on a Dask LocalCluster of ``w`` worker processes with ``--dask`` - evaluate the
   VOPRF in the main process, assemble, write): entries stretched per second, per worker, and as a share of the
   bare per-process rate; with 0 and with 9 variants (10 entries a pair).
3. **Size**: bytes per real entry and per bucket of the store written (the index, and the padding to 16s).
4. **Projection** at the measured rate per worker: core-hours and store size for 24M pairs (Zappos) and 1B.

Targets (docs/DESIGN.md): the build reaches >= 90% of the bare stretch rate per worker, and 2 workers >= 1.8x one.
The machine must be quiet for figures; ``--quick`` only checks that the script runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from credcheck.pairs import _oprf
from credcheck.pairs.build import build_pairs
from credcheck.pairs.keys import KeyPair
from credcheck.pairs.names import default_bucket_bits
from credcheck.pairs.store import BUCKET_QUANTUM, PairStore
from credcheck.pairs.stretch import SALT, Stretch

ZAPPOS = 24_000_000
BILLION = 1_000_000_000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _bare(spec: str, count: int, seed: int) -> float:
    """Seconds for ``count`` scrypt calls of the profile (distinct inputs), in this process."""
    stretch = Stretch.parse(spec)
    inputs = [hashlib.sha256(f"{seed}:{i}".encode()).digest() + bytes(8) for i in range(count)]
    started = time.perf_counter()
    for data in inputs:
        hashlib.scrypt(
            data, salt=SALT, n=stretch.n, r=stretch.r, p=stretch.p, maxmem=stretch.memory + (1 << 20), dklen=32
        )
    return time.perf_counter() - started


def bare_rate(spec: str, count: int, processes: int) -> float:
    """Aggregate scrypt calls per second of ``processes`` processes running at once."""
    if processes == 1:
        return count / _bare(spec, count, 0)
    with cf.ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_bare, [spec] * processes, [1] * processes, range(processes)))  # start the workers
        started = time.perf_counter()
        list(pool.map(_bare, [spec] * processes, [count] * processes, range(processes)))
        return processes * count / (time.perf_counter() - started)


def write_combo(path: str, pairs: int) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for i in range(pairs):
            out.write(f"user{i}@example.com:Pw{i:07d}x\n")


def timed_build(
    combo: str, out: str, key: KeyPair, spec: str, variants: int, workers: int, dask: bool
) -> tuple[float, Any]:
    executor: cf.Executor | None = None
    cluster = client = None
    if dask:
        import distributed

        cluster = distributed.LocalCluster(
            n_workers=workers, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        )
        client = distributed.Client(cluster)
        executor = client.get_executor()
    else:
        executor = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        list(executor.map(abs, range(workers)))  # start the workers outside the timing, as Dask's are
    try:
        started = time.perf_counter()
        report = build_pairs(combo, out, key, stretch=spec, variants=variants, executor=executor, workers=workers)
        return time.perf_counter() - started, report
    finally:
        executor.shutdown()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2000, help="pairs in the combo list (default 2000)")
    parser.add_argument("--stretch", default="interactive", help="interactive, strong or scrypt:N:r:p")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure (default 1,2)")
    parser.add_argument("--dask", action="store_true", help="also build on a Dask LocalCluster of the same size")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    args = parser.parse_args()
    spec = Stretch.parse(args.stretch).spec
    worker_counts = [int(w) for w in args.workers.split(",")]
    pairs = args.pairs
    bare_count = max(20, pairs // 4)
    if args.quick:
        pairs, bare_count = min(pairs, 60), 10
    key = KeyPair.from_secret(_oprf.generate_key_pair()[0])
    workdir = tempfile.mkdtemp(prefix="credcheck-pairs-bench-")
    try:
        combo = os.path.join(workdir, "combo.txt")
        write_combo(combo, pairs)
        log(f"bare stretch {spec}: {bare_count} calls a process")
        bare = {w: bare_rate(spec, bare_count, w) for w in worker_counts}
        rows = []
        sizes: dict[int, tuple[int, int, int]] = {}
        for variants in (0, 9):
            n_pairs = pairs if variants == 0 else max(1, pairs // 10)  # about the same number of entries
            combo_v = combo if variants == 0 else os.path.join(workdir, "combo-v.txt")
            if variants:
                write_combo(combo_v, n_pairs)
            for engine in ["pool", "dask"] if args.dask else ["pool"]:
                for workers in worker_counts:
                    out = os.path.join(workdir, f"p-{variants}-{engine}-{workers}")
                    log(f"build: {n_pairs} pairs, {variants} variants, {workers} worker(s), {engine}")
                    seconds, report = timed_build(combo_v, out, key, spec, variants, workers, engine == "dask")
                    with PairStore(out) as store:
                        sizes[variants] = (os.path.getsize(out), report.entries_kept, store.buckets)
                    rate = report.stretched / seconds
                    rows.append((variants, engine, workers, n_pairs / seconds, rate, rate / workers / bare[1]))
        one = {(row[0], row[1]): row[4] for row in rows if row[2] == 1}
        print(f"\n## Pair build, {spec} ({os.cpu_count()} cores; {pairs} pairs)\n")
        print("| what | workers | pairs/s | entries/s | entries/s per worker | of bare per process | speed-up vs 1 |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for w in worker_counts:
            print(f"| bare scrypt (hashlib loop) | {w} | - | {bare[w]:,.1f} | {bare[w] / w:,.1f} | "
                  f"{bare[w] / w / bare[1]:.0%} | {bare[w] / bare[worker_counts[0]]:.2f}x |")  # fmt: skip
        for variants, engine, workers, pairs_rate, rate, share in rows:
            base = one.get((variants, engine))
            speedup = f"{rate / base:.2f}x" if base else "-"
            print(f"| build, {variants} variants, {engine} | {workers} | {pairs_rate:,.1f} | {rate:,.1f} | "
                  f"{rate / workers:,.1f} | {share:.0%} | {speedup} |")  # fmt: skip
        print("\n| store | bytes | real entries | buckets | bytes per entry | bytes per bucket |")
        print("|---|---:|---:|---:|---:|---:|")
        for variants, (size, entries, buckets) in sorted(sizes.items()):
            print(f"| {variants} variants | {size:,} | {entries:,} | {buckets:,} | {size / max(1, entries):,.1f} | "
                  f"{size / buckets:,.1f} |")  # fmt: skip
        per_worker = {row[0]: row[4] / row[2] for row in rows if row[1] == "pool" and row[2] == worker_counts[-1]}
        print(f"\n## Projection at the measured rate per worker ({worker_counts[-1]} workers, local pool)\n")
        print("| pairs | variants | entries | core-hours | store (GB, est.) |")
        print("|---:|---:|---:|---:|---:|")
        for total in (ZAPPOS, BILLION):
            bits = default_bucket_bits(total)
            for variants in (0, 9):
                entries = total * (1 + variants)
                padded = entries + (1 << bits) * BUCKET_QUANTUM / 2  # about half a quantum of dummies a bucket
                size = 128 + 8 * ((1 << bits) + 1) + 17 * padded
                hours = entries / per_worker[variants] / 3600
                print(f"| {total:,} | {variants} | {entries:,} | {hours:,.0f} | {size / 1e9:,.1f} |")
        print(f"\n(bucket bits at 24M: {default_bucket_bits(ZAPPOS)}, at 1B: {default_bucket_bits(BILLION)}; "
              f"bare {spec} here: {1000 / bare[1]:.1f} ms a call)")  # fmt: skip
        if not math.isfinite(sum(r[4] for r in rows)):
            raise SystemExit("a rate is not finite")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
