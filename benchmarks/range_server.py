"""Range server throughput: `credcheck serve` beside nginx serving the same store's static export, one run.

History: at 10 hashes a range every hot body sits in the server's cache, runs are not interleaved and
latency is closed-loop; benchmarks/range_density.py measures the real density fairly (docs/BENCHMARKS.md).

Builds a store of random SHA-1 hashes, exports the ranges a load will ask for (a random sample of
prefixes), starts nginx (Debian's package) on that export and `credcheck serve` on the store, both on
127.0.0.1, and loads each with wrk from a separate process: first flat out (requests/s, latency
percentiles), then at half of credcheck's peak rate (p99 latency at half load). Prints one table and
the ratios. Needs `nginx` and `wrk` on PATH (`apt-get install nginx-light wrk`).

    .venv/bin/python benchmarks/range_server.py [--hashes 10000000] [--duration 15] [--connections 64]

`credcheck serve` runs with `--no-access-log`, as nginx runs with `access_log off`. What a server option costs:
`--variant NAME=FLAGS` (repeatable) runs another `credcheck serve` with those flags instead, beside the first,
e.g. `--variant "access log="` (the defaults: an access record a request) and `--variant "access log and
metrics=--metrics"`; `--baseline-src DIR` runs `credcheck serve` from another source tree too (the code before
a change; `--baseline-flags` its flags), and `--no-nginx` leaves nginx out. Every configuration's runs are
interleaved (one run of each, then again), each server's log goes to a file, as under a service manager, and
each server's CPU time per request (its whole process tree, from /proc: the steadier figure on a shared
machine) is printed beside its requests/s. `--flat-only` leaves out the runs at half load.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np

import credcheck
from credcheck.export import export
from range_density import tree_cpu  # this directory's: a server's CPU time, its whole process tree

NGINX_CONF = """
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ }}
    default_type text/plain;
    gzip_static on;
    server {{
        listen 127.0.0.1:{port};
        root {export};
        add_header Cache-Control "public, max-age=2678400";
        add_header Access-Control-Allow-Origin "*";
        location /range/ {{ try_files $uri =404; }}
    }}
}}
"""

LUA = """
local prefixes = {{}}
for line in io.lines("{prefix_file}") do prefixes[#prefixes + 1] = line end
local delay_ms = {delay_ms}
request = function()
    return wrk.format("GET", "/range/" .. prefixes[math.random(#prefixes)], {headers})
end
function delay() return delay_ms end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                resp.read()
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


def wrk(url: str, script: Path, duration: int, connections: int, threads: int) -> dict[str, float]:
    """Run wrk; return requests/s, errors, and latency percentiles in ms."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    result["requests"] = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    if socket_errors:
        result["errors"] += sum(float(x) for x in socket_errors.groups())
    for pct in ("50", "90", "99"):
        match = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", out)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            result[f"p{pct}"] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return result


def interleaved(
    targets: dict[str, str], pids: dict[str, int], script: Path, args: argparse.Namespace, connections: int
) -> dict[str, dict[str, float]]:
    """``args.repeat`` rounds of one wrk run against each target in turn; each target's medians (errors summed),
    with its server's CPU microseconds per request."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for _ in range(args.repeat):
        for name, url in targets.items():
            before = tree_cpu(pids[name])
            result = wrk(url, script, args.duration, connections, args.threads)
            result["cpu_us"] = 1e6 * (tree_cpu(pids[name]) - before) / max(result["requests"], 1)
            runs[name].append(result)
    medians = {}
    for name, done in runs.items():
        med = {k: statistics.median(r.get(k, float("nan")) for r in done) for k in done[0]}
        med["errors"] = sum(r["errors"] for r in done)
        medians[name] = med
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hashes", type=int, default=10_000_000, help="hashes in the store (10M: ~10 per range)")
    parser.add_argument("--prefixes", type=int, default=50_000, help="distinct prefixes the load asks for")
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="worker processes of each server")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration (median reported)")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="another credcheck serve with these flags instead of --no-access-log (repeatable)",
    )
    parser.add_argument("--baseline-src", metavar="DIR", help="also run credcheck serve from this source tree")
    parser.add_argument(
        "--baseline-flags",
        default="--no-access-log",
        metavar="FLAGS",
        help="its flags (default: --no-access-log; '' for a tree from before that flag)",
    )
    parser.add_argument("--no-nginx", action="store_true", help="leave nginx out")
    parser.add_argument("--flat-only", action="store_true", help="leave out the runs at half load")
    args = parser.parse_args()
    for tool in ("wrk",) if args.no_nginx else ("nginx", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install nginx-light wrk)")
    # no access log, as nginx here: a variant with the defaults ("access log=") says what one costs
    variants: list[tuple[str, list[str], dict[str, str]]] = [("credcheck serve", ["--no-access-log"], {})]
    if args.baseline_src:
        variants.append(("baseline", args.baseline_flags.split(), {"PYTHONPATH": os.path.abspath(args.baseline_src)}))
    for spec in args.variant:
        name, _, flags = spec.partition("=")
        variants.append((name, flags.split(), {}))

    root = Path(tempfile.mkdtemp(prefix="credcheck-bench-"))
    root.chmod(0o755)  # nginx's workers run as an unprivileged user
    procs: list[subprocess.Popen[bytes]] = []
    try:
        print(f"building a store of {args.hashes:,} random SHA-1 hashes ...", flush=True)
        rng = np.random.default_rng(0)
        src = root / "hashes.txt"
        with open(src, "w") as fh:
            for start in range(0, args.hashes, 1_000_000):
                rows = rng.integers(0, 256, (min(1_000_000, args.hashes - start), 20), dtype=np.uint8)
                counts = rng.zipf(2.0, len(rows)).clip(1, 10**6)
                fh.write("\n".join(f"{bytes(r).hex().upper()}:{c}" for r, c in zip(rows, counts, strict=True)))
                fh.write("\n")
        store = root / "pwned.store"
        credcheck.build([src], store=store)
        src.unlink()
        sample = sorted(random.Random(1).sample(range(1 << 20), args.prefixes))
        prefix_file = root / "prefixes.txt"
        prefix_file.write_text("\n".join(f"{p:05X}" for p in sample) + "\n")

        targets: dict[str, str] = {}
        pids: dict[str, int] = {}
        if not args.no_nginx:
            export([store], root / "export", prefixes=sample, gzip_twins=True)
            nginx_port = free_port()
            (root / "nginx.conf").write_text(
                NGINX_CONF.format(workers=args.workers, root=root, port=nginx_port, export=root / "export")
            )
            procs.append(subprocess.Popen(["nginx", "-c", str(root / "nginx.conf"), "-g", "daemon off;"]))
            targets["nginx (static export)"] = f"http://127.0.0.1:{nginx_port}"
            pids["nginx (static export)"] = procs[-1].pid
        for number, (name, flags, env) in enumerate(variants):
            cc_port = free_port()
            log = open(root / f"serve-{number}.log", "wb")  # noqa: SIM115 - held by the server until the end
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "credcheck", "serve", "--store", str(store), "--host", "127.0.0.1",
                     "--port", str(cc_port), "--workers", str(args.workers), "--bodies", "wait", *flags],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    env={**os.environ, **env},
                )
            )  # fmt: skip
            targets[name] = f"http://127.0.0.1:{cc_port}"
            pids[name] = procs[-1].pid
            wait_up(f"{targets[name]}/range/{sample[0]:05X}", timeout=600)  # the first one makes the side file
        for url in targets.values():
            wait_up(f"{url}/range/{sample[0]:05X}")
        # each worker checks the side file in the background: a short load first, so that the runs see it ready
        warm = root / "warm.lua"
        warm.write_text(LUA.format(prefix_file=prefix_file, delay_ms=0, headers="nil"))
        for url in targets.values():
            wrk(url, warm, 5, args.connections, args.threads)

        rows: list[tuple[str, str, dict[str, float]]] = []
        peak: dict[tuple[str, str], float] = {}
        for encoding, headers in (("identity", "nil"), ("gzip", '{["Accept-Encoding"] = "gzip"}')):
            script = root / f"flat-{encoding}.lua"
            script.write_text(LUA.format(prefix_file=prefix_file, delay_ms=0, headers=headers))
            flat = interleaved(targets, pids, script, args, args.connections)
            for name, med in flat.items():
                rows.append((name, f"flat out, {encoding}", med))
                peak[(name, encoding)] = med["rps"]
            if args.flat_only:
                continue
            # half of credcheck's peak: each connection waits ~2 ms between requests (wrk's delay() has 1 ms
            # steps), with enough connections to add up to the rate; the table shows the rate reached
            half = peak[("credcheck serve", encoding)] / 2
            conns = max(16, math.ceil(half / 500))
            delay = max(1, round(conns * 1000 / half))
            script = root / f"half-{encoding}.lua"
            script.write_text(LUA.format(prefix_file=prefix_file, delay_ms=delay, headers=headers))
            for name, med in interleaved(targets, pids, script, args, conns).items():
                rows.append((name, f"~{half:,.0f} req/s ({encoding})", med))

        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
        print(
            f"\nmachine: {cpu}, {os.cpu_count()} cores; store {args.hashes:,} hashes; {args.prefixes:,} prefixes; "
            f"{args.workers} workers each; wrk -t{args.threads}; median of {args.repeat} x {args.duration}s"
        )
        print(
            f"{'server':24} {'load':26} {'req/s':>10} {'CPU us/req':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
            f"{'errors':>7}"
        )
        for name, load, med in rows:
            print(
                f"{name:24} {load:26} {med['rps']:>10,.0f} {med['cpu_us']:>10.1f} {med.get('p50', float('nan')):>8.2f} "
                f"{med.get('p90', float('nan')):>8.2f} {med.get('p99', float('nan')):>8.2f} {med['errors']:>7.0f}"
            )
        for encoding in ("identity", "gzip"):
            if not args.no_nginx:
                ratio = peak[("credcheck serve", encoding)] / peak[("nginx (static export)", encoding)]
                print(f"credcheck / nginx requests/s ({encoding}): {ratio:.2f}  (target >= 0.50)")
            first = next(med for name, load, med in rows if name == "credcheck serve" and encoding in load)
            for name, _, _ in variants[1:]:
                ratio = peak[(name, encoding)] / peak[("credcheck serve", encoding)]
                theirs = next(med for n, load, med in rows if n == name and load == f"flat out, {encoding}")
                cpu = theirs["cpu_us"] / first["cpu_us"]
                print(f"{name} / credcheck serve ({encoding}): requests/s {ratio:.3f}, CPU per request {cpu:.3f}")
        print(
            textwrap.dedent("""
            note: both servers and wrk share this machine's cores; nginx serves pre-built files (and
            pre-compressed .gz twins), credcheck serve renders each range from the store.""")
        )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
