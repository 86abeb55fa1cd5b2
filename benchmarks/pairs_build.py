"""The pair build against its ceiling (the bare stretch of the same profile), and at scale: memory, phases, disk.

    .venv/bin/python benchmarks/pairs_build.py                          # interactive, 1 and 2 workers, ~2 min
    .venv/bin/python benchmarks/pairs_build.py --pairs 200 --quick      # a check that it runs (seconds)
    .venv/bin/python benchmarks/pairs_build.py --stretch strong --dask  # also on a Dask LocalCluster
    .venv/bin/python benchmarks/pairs_build.py --scale 10000,200000 --max-memory 64MiB --repeat 3
    .venv/bin/python benchmarks/pairs_build.py --scale 2000000          # 20M entries at scrypt:16:1:1, ~1 h here

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

``--scale P1,P2,...`` measures instead what a build of that many pairs (each with ``--variants`` variants, 9 by
default, and the ``scrypt:16:1:1`` test stretch unless ``--stretch`` says otherwise, so that the run is about
everything but the stretch) costs besides the stretch: each build runs in a child process, which reports its
resident memory after its imports (the fixed cost) and its peak (``VmHWM``), its report's time per phase (read,
sort, stretch -- of which the OPRF and the workers' checks in the build's own process -- and assemble) and the most
it kept on disk beside the target; a thread here polls the spill directory's size and the workers' memory every
0.2 s. ``--repeat N`` runs each size N times and prints the medians; the load averages are printed beside them.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from credcheck.pairs import _oprf
from credcheck.pairs._names import default_bucket_bits
from credcheck.pairs.build import build_pairs
from credcheck.pairs.keys import KeyPair
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


# The build measured in a child process of its own: its memory is the build's alone (and its workers' are its
# children). It prints one JSON line: its resident memory once imported, its peak, and the build's report.
_SCALE_CHILD = """
import json, sys
from credcheck.pairs import _oprf
from credcheck.pairs.build import build_pairs
from credcheck.pairs.keys import KeyPair

def status(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0

args = json.loads(sys.argv[1])
key = KeyPair.from_secret(_oprf.generate_key_pair()[0])
_oprf.evaluate(key.sk, bytes(32))  # libsodium loaded before the baseline
base, base_peak = status("VmRSS"), status("VmHWM")
report = build_pairs(
    args["combo"], args["out"], key, stretch=args["stretch"], variants=args["variants"], workers=args["workers"],
    max_memory=args["max_memory"],
)
result = report.as_dict()
del result["sources"]
print(json.dumps({"base_rss": base, "base_peak": base_peak, "peak_rss": status("VmHWM"), "report": result}))
"""


class _Watch:
    """Polls, every 0.2 s while a build runs, the size of its spill directory and its workers' resident memory."""

    def __init__(self, folder: str, target: str, pid: int) -> None:
        self.folder, self.prefix, self.pid = folder, f".{os.path.basename(target)}.spill-", pid
        self.spill = self.workers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _spill(self) -> int:
        total = 0
        for entry in os.scandir(self.folder):
            if entry.name.startswith(self.prefix):
                for root, _, files in os.walk(entry.path):
                    for name in files:
                        with contextlib.suppress(OSError):  # a run merged away meanwhile
                            total += os.stat(os.path.join(root, name)).st_size
        return total

    def _workers(self) -> int:
        try:
            import psutil

            return sum(child.memory_info().rss for child in psutil.Process(self.pid).children(recursive=True))
        except Exception:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.spill = max(self.spill, self._spill())
            self.workers = max(self.workers, self._workers())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def scale_run(combo: str, folder: str, pairs: int, args: argparse.Namespace) -> dict[str, Any]:
    """One build in a child process: what it reports, with the polled spill and workers' memory and the load."""
    out = os.path.join(folder, f"scale-{pairs}")
    settings = {
        "combo": combo, "out": out, "stretch": args.stretch, "variants": args.variants, "workers": args.workers,
        "max_memory": args.max_memory,
    }  # fmt: skip
    load_before = os.getloadavg()
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", _SCALE_CHILD, json.dumps(settings)], stdout=subprocess.PIPE, text=True
    )
    watch = _Watch(folder, out, child.pid)
    stdout, _ = child.communicate()
    watch.stop()
    if child.returncode:
        raise SystemExit(f"the build of {pairs:,} pairs failed (exit {child.returncode})")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result.update(
        wall=time.perf_counter() - started, spill_polled=watch.spill, workers_rss=watch.workers,
        load=(load_before, os.getloadavg()), store=os.path.getsize(out),
    )  # fmt: skip
    os.unlink(out)
    return result


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def _scale_row(pairs: int, runs: list[dict[str, Any]]) -> str:
    """The table row of one size: medians over its runs, and each run's load average before and after."""

    def median(get: Any) -> float:
        return statistics.median(get(run) for run in runs)

    def phase(name: str) -> str:
        return f"{median(lambda run: run['report']['phase_seconds'].get(name, 0.0)):,.1f}"

    spill = (
        f"{median(lambda r: r['spill_polled']) / 1e6:,.0f} / {median(lambda r: r['report']['spill_bytes']) / 1e6:,.0f}"
    )
    loads = " / ".join(f"{r['load'][0][0]:.2f} → {r['load'][1][0]:.2f}" for r in runs)
    return (
        f"| {pairs:,} | {runs[0]['report']['entries_kept']:,} | {_mib(median(lambda r: r['base_rss']))} | "
        f"{_mib(median(lambda r: r['peak_rss']))} | {_mib(median(lambda r: r['peak_rss'] - r['base_rss']))} | "
        f"{_mib(median(lambda r: r['workers_rss']))} | {phase('read')} | {phase('sort')} | "
        f"{phase('stretch')} ({phase('oprf')}, {phase('check')}) | {phase('assemble')} | "
        f"{median(lambda r: r['report']['seconds']):,.1f} | {spill} | {median(lambda r: r['store']) / 1e6:,.0f} | "
        f"{loads} |"
    )


def scale_main(args: argparse.Namespace) -> None:
    sizes = [int(p) for p in args.scale.split(",")]
    folder = args.workdir or tempfile.mkdtemp(prefix="credcheck-pairs-scale-")
    os.makedirs(folder, exist_ok=True)
    print(f"\n## Pair build at scale: {args.stretch}, {args.variants} variants, --max-memory {args.max_memory}, "
          f"{args.workers} workers ({os.cpu_count()} cores); medians of {args.repeat}\n")  # fmt: skip
    print("| pairs | entries | RSS after imports (MiB) | peak RSS (MiB) | growth | workers' RSS | read s | sort s | "
          "stretch s (OPRF, checks) | assemble s | total s | spill peak (MB, polled / report) | store (MB) | "
          "load 1 min before → after |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    try:
        for pairs in sizes:
            combo = os.path.join(folder, f"combo-{pairs}.txt")
            write_combo(combo, pairs)
            runs = []
            for attempt in range(args.repeat):
                log(f"scale: {pairs:,} pairs x {args.variants} variants, run {attempt + 1} of {args.repeat}")
                runs.append(scale_run(combo, folder, pairs, args))
            os.unlink(combo)

            print(_scale_row(pairs, runs), flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2000, help="pairs in the combo list (default 2000)")
    parser.add_argument("--stretch", default="interactive", help="interactive, strong or scrypt:N:r:p")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure (default 1,2)")
    parser.add_argument("--dask", action="store_true", help="also build on a Dask LocalCluster of the same size")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    parser.add_argument("--scale", metavar="P1,P2,...", help="measure memory, phases and disk at these pair counts")
    parser.add_argument("--variants", type=int, default=9, help="with --scale: variants a pair (default 9)")
    parser.add_argument("--max-memory", default="1GiB", help="with --scale: the build's max_memory (default 1GiB)")
    parser.add_argument("--repeat", type=int, default=1, help="with --scale: runs of each size (medians printed)")
    parser.add_argument("--workdir", help="with --scale: where the combo lists and stores go (default: a new /tmp dir)")
    args = parser.parse_args()
    if args.scale:
        args.stretch = args.stretch if args.stretch != "interactive" else "scrypt:16:1:1"
        args.workers = int(args.workers.split(",")[-1])
        scale_main(args)
        return
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
