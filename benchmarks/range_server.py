"""Range server throughput: `credcheck serve` beside nginx serving the same store's static export, one run.

History: at 10 hashes a range every hot body sits in the server's cache, runs are not interleaved and
latency is closed-loop; benchmarks/range_density.py measures the real density fairly (docs/BENCHMARKS.md).

Builds a store of random SHA-1 hashes, exports the ranges a load will ask for (a random sample of
prefixes), starts nginx (Debian's package) on that export and `credcheck serve` on the store, both on
127.0.0.1, and loads each with wrk from a separate process: first flat out (requests/s, latency
percentiles), then at half of credcheck's peak rate (p99 latency at half load). Prints one table and
the ratios. Needs `nginx` and `wrk` on PATH (`apt-get install nginx-light wrk`).

    .venv/bin/python benchmarks/range_server.py [--hashes 10000000] [--duration 15] [--connections 64]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hashes", type=int, default=10_000_000, help="hashes in the store (10M: ~10 per range)")
    parser.add_argument("--prefixes", type=int, default=50_000, help="distinct prefixes the load asks for")
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="worker processes of each server")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration (median reported)")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install nginx-light wrk)")

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
        export([store], root / "export", prefixes=sample, gzip_twins=True)
        prefix_file = root / "prefixes.txt"
        prefix_file.write_text("\n".join(f"{p:05X}" for p in sample) + "\n")

        nginx_port, cc_port = free_port(), free_port()
        (root / "nginx.conf").write_text(
            NGINX_CONF.format(workers=args.workers, root=root, port=nginx_port, export=root / "export")
        )
        procs.append(subprocess.Popen(["nginx", "-c", str(root / "nginx.conf"), "-g", "daemon off;"]))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "credcheck", "serve", "--store", str(store), "--host", "127.0.0.1",
                 "--port", str(cc_port), "--workers", str(args.workers)],
                stdout=subprocess.DEVNULL,
            )
        )  # fmt: skip
        targets = {
            "nginx (static export)": f"http://127.0.0.1:{nginx_port}",
            "credcheck serve": f"http://127.0.0.1:{cc_port}",
        }
        for url in targets.values():
            wait_up(f"{url}/range/{sample[0]:05X}")

        rows: list[tuple[str, str, dict[str, float]]] = []
        peak: dict[tuple[str, str], float] = {}
        for encoding, headers in (("identity", "nil"), ("gzip", '{["Accept-Encoding"] = "gzip"}')):
            script = root / f"flat-{encoding}.lua"
            script.write_text(LUA.format(prefix_file=prefix_file, delay_ms=0, headers=headers))
            for name, url in targets.items():
                runs = [wrk(url, script, args.duration, args.connections, args.threads) for _ in range(args.repeat)]
                med = {k: statistics.median(r.get(k, float("nan")) for r in runs) for k in runs[0]}
                med["errors"] = sum(r["errors"] for r in runs)
                rows.append((name, f"flat out, {encoding}", med))
                peak[(name, encoding)] = med["rps"]
            # half of credcheck's peak: each connection waits ~2 ms between requests (wrk's delay() has 1 ms
            # steps), with enough connections to add up to the rate; the table shows the rate reached
            half = peak[("credcheck serve", encoding)] / 2
            conns = max(16, math.ceil(half / 500))
            delay = max(1, round(conns * 1000 / half))
            script = root / f"half-{encoding}.lua"
            script.write_text(LUA.format(prefix_file=prefix_file, delay_ms=delay, headers=headers))
            for name, url in targets.items():
                runs = [wrk(url, script, args.duration, conns, args.threads) for _ in range(args.repeat)]
                med = {k: statistics.median(r.get(k, float("nan")) for r in runs) for k in runs[0]}
                med["errors"] = sum(r["errors"] for r in runs)
                rows.append((name, f"~{half:,.0f} req/s ({encoding})", med))

        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
        print(
            f"\nmachine: {cpu}, {os.cpu_count()} cores; store {args.hashes:,} hashes; {args.prefixes:,} prefixes; "
            f"{args.workers} workers each; wrk -t{args.threads}; median of {args.repeat} x {args.duration}s"
        )
        print(f"{'server':24} {'load':26} {'req/s':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for name, load, med in rows:
            print(
                f"{name:24} {load:26} {med['rps']:>10,.0f} {med.get('p50', float('nan')):>8.2f} "
                f"{med.get('p90', float('nan')):>8.2f} {med.get('p99', float('nan')):>8.2f} {med['errors']:>7.0f}"
            )
        for encoding in ("identity", "gzip"):
            ratio = peak[("credcheck serve", encoding)] / peak[("nginx (static export)", encoding)]
            print(f"credcheck / nginx requests/s ({encoding}): {ratio:.2f}  (target >= 0.50)")
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
