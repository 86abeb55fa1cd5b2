"""Pair service throughput and latency: `credcheck serve --pairs` against the raw cost of its own cryptography.

One run, one machine:

1. the raw-primitive ceiling: BlindEvaluate with its batched DLEQ proof over the query's elements (2: the pair
   and the username-only one) — the server's own call, ``Evaluator.blind_evaluate`` — in this process, calls/s
   on one core, times the server's workers;
2. `credcheck serve --pairs` (granian by default, ``--workers`` processes, no rate limit) loaded flat out by
   wrk with pre-built valid queries (random buckets, freshly blinded elements): queries/s, and that as a share
   of the ceiling;
3. at half of that rate, an open-loop load (each query is due at a fixed time, whatever the answers do, and its
   latency counts from when it was due: no coordinated omission), from ``benchmarks/openloop.c`` (a C epoll
   generator, compiled here with gcc, POSTing the same pre-built queries over keep-alive connections):
   p50 / p99, and the generator's own CPU;
4. one client check (``credcheck.open_pairs(url).check``) against a server whose store uses the ``interactive``
   stretch, beside the time of the stretches that check must compute itself;
5. the size of a query and of an answer.

    .venv/bin/python benchmarks/pairs_server.py [--pairs 200000] [--duration 15] [--workers 2]
    .venv/bin/python benchmarks/pairs_server.py --pairs 2000 --duration 2 --repeat 1   # does it run?

Needs ``wrk`` on PATH (``apt-get install wrk``) and ``gcc``. Load generators share the machine's cores with the
server: the CPU wrk itself used is measured and reported, and so is the ceiling of the cores it left to the
workers, so the row says which ceiling binds.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import credcheck
from credcheck.pairs import _oprf
from credcheck.pairs._names import canon
from credcheck.pairs.build import build_pairs
from credcheck.pairs.keys import write_key
from credcheck.pairs.stretch import INTERACTIVE, pair_input, username_input

LUA = """
local bodies = {{}}
for line in io.lines("{bodies}") do bodies[#bodies + 1] = line end
local headers = {{["Content-Type"] = "application/json"}}
request = function()
    return wrk.format("POST", "/v1/pairs/query", headers, bodies[math.random(#bodies)])
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                resp.read()
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


def combo(path: Path, pairs: int) -> Path:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(pairs):
            fh.write(f"user{i}@example.com:{rng.getrandbits(48):012x}\n")
    return path


def serve(root: Path, store: Path, key: Path, workers: int, server: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    argv = [sys.executable, "-m", "credcheck", "serve", "--pairs", str(store), "--key", str(key),
            "--port", str(port), "--workers", str(workers), "--server", server, "--rate-limit", "0",
            "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_up(f"{url}/v1/pairs/config")
    return url, proc


def ceiling(elements: int, seconds: float, repeat: int) -> float:
    """BlindEvaluate + proof over ``elements`` elements: calls/s on one core (median of ``repeat`` timings).

    The very call the server makes per query (``Evaluator.blind_evaluate``, which checks the elements too), on
    fresh elements each call, so nothing is cached between calls that a server could not cache.
    """
    evaluator = _oprf.Evaluator(_oprf.generate_key_pair()[0])
    pool = [[_oprf.blind(os.urandom(32))[1] for _ in range(elements)] for _ in range(64)]
    rates = []
    for _ in range(repeat):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for blinded in pool:
                evaluator.blind_evaluate(blinded)
            calls += len(pool)
        rates.append(calls / (time.perf_counter() - start))
    return statistics.median(rates)


def query_bodies(bits: int, elements: int, count: int) -> list[str]:
    out = []
    for _ in range(count):
        items = [_oprf.blind(os.urandom(32))[1].hex() for _ in range(elements)]
        out.append(json.dumps({"bucket": random.randrange(1 << bits), "elements": items}))
    return out


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(url: str, script: Path, duration: int, connections: int, threads: int) -> tuple[float, float]:
    """Flat-out load: (queries/s, wrk's own CPU in cores)."""
    cpu = children_cpu()
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} non-2xx responses")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rate, (children_cpu() - cpu) / duration


def open_loop(generator: Path, url: str, bodies: Path, rate: float, duration: int, conns: int) -> dict[str, float]:
    """``rate`` queries a second for ``duration`` s from openloop.c; its key=value line (latencies in ms)."""
    host, port = url.removeprefix("http://").split(":")
    paths = bodies.with_suffix(".paths")
    paths.write_text("/v1/pairs/query\n")
    argv = [str(generator), host, port, f"{rate:.1f}", str(duration), str(conns), "1",
            str(paths), "Content-Type: application/json\r\n", str(bodies)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    fields = {k: float(v) for k, v in (item.split("=") for item in out.split())}
    if fields["non200"] or fields["unanswered"]:
        raise SystemExit(f"open-loop load: {fields['non200']:.0f} non-200, {fields['unanswered']:.0f} unanswered")
    return fields


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200_000, help="leaked pairs in the store (about 32 a bucket)")
    parser.add_argument("--duration", type=int, default=15, help="seconds per load run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--server", default="granian", choices=("granian", "gunicorn", "wsgiref"))
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    parser.add_argument("--checks", type=int, default=30, help="client checks timed")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if shutil.which("gcc") is None:
        raise SystemExit("gcc is not installed (it compiles benchmarks/openloop.c)")

    root = Path(tempfile.mkdtemp(prefix="credcheck-pairbench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        key = root / "key"
        keypair = write_key(key)
        print(f"building a pair store of {args.pairs:,} pairs (username entries on, scrypt:16:1:1) ...", flush=True)
        store = root / "pairs"
        with cf.ProcessPoolExecutor(2) as pool:
            report = build_pairs(combo(root / "c.txt", args.pairs), store, keypair, stretch="scrypt:16:1:1",
                                 username_entries=True, executor=pool, workers=2)  # fmt: skip
        generator = root / "openloop"
        here = Path(__file__).resolve().parent
        subprocess.run(["gcc", "-O2", "-o", str(generator), str(here / "openloop.c")], check=True)
        url, proc = serve(root, store, key, args.workers, args.server)
        procs.append(proc)

        one_core = ceiling(2, 1.0, args.repeat)
        raw = one_core * args.workers
        bodies = query_bodies(report.bucket_bits, 2, 2000)
        body_file = root / "bodies.txt"
        body_file.write_text("\n".join(bodies) + "\n")
        script = root / "query.lua"
        script.write_text(LUA.format(bodies=body_file))
        flat = [wrk(url, script, args.duration, args.connections, args.threads) for _ in range(args.repeat)]
        peak = statistics.median(rate for rate, _ in flat)
        wrk_cpu = statistics.median(cpu for _, cpu in flat)
        runs = [open_loop(generator, url, body_file, peak / 2, args.duration, 64) for _ in range(args.repeat)]
        p50 = statistics.median(r["p50"] for r in runs)
        p99 = statistics.median(r["p99"] for r in runs)
        gen_cpu = statistics.median(r["cpu"] / r["elapsed"] for r in runs)
        sample = urllib.request.Request(
            f"{url}/v1/pairs/query", data=bodies[0].encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(sample) as resp:
            answer_size = len(resp.read())

        # the client: a second server whose store uses the interactive stretch
        print("building a small interactive-stretch store for the client check ...", flush=True)
        slow_store = root / "interactive"
        with cf.ProcessPoolExecutor(2) as pool:
            build_pairs(combo(root / "c2.txt", 64), slow_store, keypair, stretch="interactive",
                        username_entries=True, executor=pool, workers=2)  # fmt: skip
        slow_url, slow_proc = serve(root, slow_store, key, args.workers, args.server)
        procs.append(slow_proc)
        name = canon("someone@example.com")
        sha1 = bytes(20)
        stretch_ms, check_ms = [], []
        with credcheck.open_pairs(slow_url) as checker:
            checker.check("warm@example.com", "up")
            for i in range(args.checks):
                start = time.perf_counter()
                INTERACTIVE(pair_input(name, sha1))
                INTERACTIVE(username_input(name))
                stretch_ms.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                checker.check(f"user{i}@example.com", "not leaked")
                check_ms.append((time.perf_counter() - start) * 1000)
        stretch, check = statistics.median(stretch_ms), statistics.median(check_ms)

        print(f"\n{args.server}, {args.workers} workers; {args.pairs:,} pairs in 2^{report.bucket_bits} buckets; "
              f"wrk -c{args.connections} -t{args.threads}; median of {args.repeat} x {args.duration}s")  # fmt: skip
        print(f"{'raw BlindEvaluate+proof (2 elements), one core':58} {one_core:>10,.0f} /s")
        print(f"{f'raw-primitive ceiling, x {args.workers} workers':58} {raw:>10,.0f} /s")
        print(f"{'credcheck serve --pairs, flat out over HTTP':58} {peak:>10,.0f} /s   "
              f"{peak / raw:.0%} of the ceiling (target >= 75%)")  # fmt: skip
        left = max(0.01, min(args.workers, os.cpu_count() or 1) - wrk_cpu)
        print(f"{'  wrk itself used (cores)':58} {wrk_cpu:>10.2f}")
        print(f"{f'raw ceiling on the {left:.2f} cores wrk left':58} {one_core * left:>10,.0f} /s   "
              f"served {peak / (one_core * left):.0%} of it")  # fmt: skip
        print(f"{f'open loop at {peak / 2:,.0f} q/s: p50 / p99':58} {p50:>7.2f} / {p99:.2f} ms (target p99 <= 25 ms)")
        print(f"{'  the open-loop generator itself used (cores)':58} {gen_cpu:>10.3f}")
        print(f"{'client check (interactive stretch, 2 stretches + 1 query)':58} {check:>10.1f} ms")
        print(f"{'  of which its 2 stretches alone':58} {stretch:>10.1f} ms   check / stretch = "
              f"{check / stretch:.2f} (target <= 2)")  # fmt: skip
        print(f"{'query body / answer body':58} {len(bodies[0]):>6} / {answer_size} bytes")
        print("\nnote: wrk and the open-loop client run on the same cores as the server's workers.")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
