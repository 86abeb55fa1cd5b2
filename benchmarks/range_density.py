"""The range server at the corpus's real density, beside nginx, measured fairly (issue 14).

- Ranges as big as HIBP's: a store of ``--prefixes`` prefixes (default 5,000) with ``--per-prefix`` hashes each
  (default 1,430, so about 60 KB a range), built with credcheck's own build from generated digests; the load
  asks for all those prefixes uniformly, a hot set about ten times what the server's 64 MiB body cache holds.
- nginx as its users would set it up: the store's static export with its gzip twins (``gzip_static on``),
  ``open_file_cache``, ``sendfile``, no access log, as many workers as credcheck (``--workers``).
- credcheck and nginx interleaved round by round (the order alternating), both encodings in every round, so
  that a change in the machine's load hits both alike; the ratio is the median of the rounds' ratios.
- Each server's own CPU time (its whole process tree, from /proc) per request, and the load generator's CPU
  time, reported beside the requests/s: on a shared machine CPU per request is the steadier figure.
- Latency at a fixed rate, open-loop: half of **nginx's** peak, sent by ``benchmarks/openloop.c`` (compiled
  here with gcc), which charges each request from when it was due, not when a connection was free
  (no coordinated omission).
- The floor beside both (``benchmarks/granian_floor.py``, ``--no-floor`` to leave it out): granian run exactly as
  ``credcheck serve`` runs it, with the least app that sends the same bytes; floor / nginx is what any Python
  app under granian could reach in that run, credcheck / floor what credcheck's own per-request work costs.

Needs ``nginx``, ``wrk`` and ``gcc`` (``apt-get install -y nginx-light wrk gcc``). The store, export and side
file are made once in ``--workdir`` and reused by later runs::

    .venv/bin/python benchmarks/range_density.py --workdir /var/tmp/credcheck-density [--rounds 3] [--duration 10]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
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
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

import credcheck
from credcheck.export import export
from credcheck.server._bodyfile import BodyFile, bodies_path, build_bodies
from credcheck.store import RangeStore

HERE = Path(__file__).resolve().parent

NGINX_CONF = """
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    open_file_cache max=20000 inactive=120s;
    open_file_cache_valid 120s;
    open_file_cache_min_uses 1;
    open_file_cache_errors on;
    types {{ }}
    default_type "text/plain; charset=utf-8";
    gzip_static on;
    gzip_vary on;
    server {{
        listen 127.0.0.1:{port};
        root {export};
        add_header Cache-Control "public, max-age=2678400";
        add_header Access-Control-Allow-Origin "*";
        location /range/ {{ try_files $uri =404; }}
    }}
}}
"""

WRK_LUA = """
local paths = {{}}
for line in io.lines("{paths}") do paths[#paths + 1] = line end
math.randomseed(os.time())
request = function()
    return wrk.format("GET", paths[math.random(#paths)], {headers})
end
"""

ENCODINGS = {"identity": ("nil", ""), "gzip": ('{["Accept-Encoding"] = "gzip"}', "Accept-Encoding: gzip\r\n")}
NGINX, CREDCHECK, FLOOR = "nginx", "credcheck", "floor"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()


def wait_up(url: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            fetch(url)
            return
        time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


# ----------------------------------------------------------------------------------------------------
# The data: a store at HIBP's density on a few thousand prefixes, its export, its bodies side file.


def make_data(work: Path, prefixes: int, per_prefix: int) -> tuple[Path, Path, list[int]]:
    store, exported, chosen = work / "density.store", work / "export", work / "prefixes.json"
    if store.exists() and exported.exists() and chosen.exists():
        sample: list[int] = json.loads(chosen.read_text())
        print(f"reusing {store} and its export ({len(sample):,} prefixes)", flush=True)
        return store, exported, sample
    rng = np.random.default_rng(14)
    sample = sorted(int(p) for p in rng.choice(1 << 20, prefixes, replace=False))
    source = work / "hashes.txt"
    started = time.monotonic()
    print(f"writing {prefixes * per_prefix:,} SHA-1 hashes on {prefixes:,} prefixes ...", flush=True)
    with open(source, "wb") as fh:
        for lo in range(0, prefixes, 500):
            chunk = np.repeat(np.array(sample[lo : lo + 500], dtype=np.int64), per_prefix)
            digests = rng.integers(0, 256, (len(chunk), 20), dtype=np.uint8)
            digests[:, 0] = chunk >> 12
            digests[:, 1] = (chunk >> 4) & 0xFF
            digests[:, 2] = (digests[:, 2] & 0x0F) | ((chunk & 0x0F) << 4).astype(np.uint8)
            # counts shaped like HIBP's: most hashes seen a few times, a long tail (1 to 10 million)
            counts = np.minimum(rng.zipf(1.7, len(chunk)), 10_000_000)
            hexes = np.frombuffer(digests.tobytes().hex().upper().encode(), dtype="S40").tolist()
            fh.write(b"".join(b"%s:%d\n" % pair for pair in zip(hexes, counts.tolist(), strict=True)))
    print(f"building the store with credcheck.build ... ({time.monotonic() - started:.0f} s so far)", flush=True)
    tmp = work / "density.store.tmp"
    credcheck.build([source], store=tmp)
    source.unlink()
    print(f"exporting {prefixes:,} ranges with gzip twins ... ({time.monotonic() - started:.0f} s)", flush=True)
    if exported.exists():
        shutil.rmtree(exported)
    export([tmp], exported, prefixes=sample, gzip_twins=True)
    os.replace(tmp, store)
    chosen.write_text(json.dumps(sample))
    print(f"data ready in {time.monotonic() - started:.0f} s", flush=True)
    return store, exported, sample


def ensure_side_file(store: Path) -> None:
    with RangeStore(store) as opened:
        try:
            BodyFile(opened).close()
            return
        except (credcheck.CredcheckError, OSError):
            pass
        started = time.monotonic()
        build_bodies(opened)
        size = os.path.getsize(bodies_path(store)) / 2**20
        print(f"made the bodies side file in {time.monotonic() - started:.1f} s ({size:,.0f} MiB)", flush=True)


# ----------------------------------------------------------------------------------------------------
# CPU accounting from /proc: a server's whole process tree; the load generator's from its rusage.

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """User + system CPU seconds of ``root`` and every process under it (children that ended included)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        # utime, stime, cutime, cstime
        times[int(entry)] = sum(int(x) for x in fields[11:15]) / TICK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__().replace("'", "")


# ----------------------------------------------------------------------------------------------------
# The loads.


def run_wrk(url: str, script: Path, args: argparse.Namespace) -> dict[str, float]:
    """wrk flat out (closed loop: the peak, not a latency); requests/s, errors, wrk's own CPU seconds."""
    pin = ["taskset", "-c", args.wrk_cpus] if args.wrk_cpus else []
    command = [*pin, "wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{args.duration}s"]
    before = children_cpu()
    out = subprocess.run([*command, "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    wrk_cpu = children_cpu() - before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0.0
    if found := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += float(found.group(1))
    if found := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(float(x) for x in found.groups())
    return {"rps": rps, "requests": requests, "errors": errors, "gen_cpu": wrk_cpu}


def run_open_loop(port: int, rate: float, header: str, paths: Path, args: argparse.Namespace) -> dict[str, float]:
    pin = ["taskset", "-c", args.wrk_cpus] if args.wrk_cpus else []
    command = [*pin, str(args.openloop), "127.0.0.1", str(port), f"{rate:.1f}", str(args.open_duration)]
    command += [str(args.open_connections), str(args.open_warmup), str(paths), header]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in (item.split("=") for item in out.split())}


def measure(pid: int, run: Callable[[], dict[str, float]]) -> dict[str, float]:
    """``run()``, with the CPU seconds the server's process tree spent meanwhile."""
    before = tree_cpu(pid)
    result = run()
    result["server_cpu"] = tree_cpu(pid) - before
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/credcheck-density"))
    parser.add_argument("--prefixes", type=int, default=5_000, help="prefixes in the store, all of them hot")
    parser.add_argument("--per-prefix", type=int, default=1_430, help="hashes per prefix (HIBP: about 1,430)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="worker processes of each server")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each flat-out wrk run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (flat out)")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--wrk-cpus", default="", help="taskset CPU list for the load generators (default: none)")
    parser.add_argument("--open-duration", type=float, default=10.0, help="seconds of each open-loop run")
    parser.add_argument("--open-warmup", type=float, default=1.0, help="first seconds of it not counted")
    parser.add_argument("--open-connections", type=int, default=64, help="connections of the open-loop generator")
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="leave out the floor: granian as credcheck runs it with the least app (benchmarks/granian_floor.py)",
    )
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "gcc"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install -y nginx-light wrk gcc)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.workdir.chmod(0o755)  # nginx's workers run as an unprivileged user
    args.openloop = args.workdir / "openloop"
    subprocess.run(["gcc", "-O2", "-o", str(args.openloop), str(HERE / "openloop.c")], check=True)
    started = time.monotonic()
    load_at_start = loadavg()

    store, exported, sample = make_data(args.workdir, args.prefixes, args.per_prefix)
    ensure_side_file(store)
    paths = args.workdir / "paths.txt"
    paths.write_text("".join(f"/range/{p:05X}\n" for p in sample))
    scripts = {}
    for encoding, (lua_headers, _) in ENCODINGS.items():
        scripts[encoding] = args.workdir / f"wrk-{encoding}.lua"
        scripts[encoding].write_text(WRK_LUA.format(paths=paths, headers=lua_headers))

    ports = {NGINX: free_port(), CREDCHECK: free_port(), **({FLOOR: free_port()} if args.floor else {})}
    conf = args.workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=args.workers, root=args.workdir, port=ports[NGINX], export=exported))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs[NGINX] = subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"])
        serve = [sys.executable, "-m", "credcheck", "serve", "--store", str(store), "--host", "127.0.0.1"]
        # no access log, as nginx here (what one costs: benchmarks/range_server.py --variant "access log=")
        serve += ["--port", str(ports[CREDCHECK]), "--workers", str(args.workers), "--no-access-log"]
        procs[CREDCHECK] = subprocess.Popen(serve, stdout=subprocess.DEVNULL)
        if args.floor:
            floor = [sys.executable, str(HERE / "granian_floor.py"), str(store), str(ports[FLOOR]), str(args.workers)]
            procs[FLOOR] = subprocess.Popen(floor, stdout=subprocess.DEVNULL)
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        for url in urls.values():
            wait_up(f"{url}/range/{sample[0]:05X}")
        check_same_bytes(urls, sample)
        # warm up: page cache, nginx's open file cache, every credcheck worker's side file verified
        for url in urls.values():
            for encoding in ENCODINGS:
                subprocess.run(["wrk", "-t1", "-c16", "-d3s", "-s", str(scripts[encoding]), url], capture_output=True)
        health = json.loads(fetch(urls[CREDCHECK] + "/health")[2])
        print(f"credcheck /health: bodies from the {health['stores']['sha1'].get('bodies')}", flush=True)

        peaks: dict[tuple[str, str], list[dict[str, float]]] = {}
        loads = [loadavg()]
        for round_ in range(args.rounds):
            for encoding in ENCODINGS:
                for name in round_order(urls, round_):
                    url, script = urls[name], scripts[encoding]
                    result = measure(procs[name].pid, lambda: run_wrk(url, script, args))  # noqa: B023 (called at once)
                    peaks.setdefault((name, encoding), []).append(result)
                    print(
                        f"round {round_ + 1} flat out {encoding:8} {name:9} {result['rps']:>9,.0f} req/s  "
                        f"server CPU {result['server_cpu']:.1f} s  wrk CPU {result['gen_cpu']:.1f} s  "
                        f"load {loadavg()}",
                        flush=True,
                    )
            loads.append(loadavg())

        opens: dict[tuple[str, str], list[dict[str, float]]] = {}
        rates = {e: statistics.median(r["rps"] for r in peaks[(NGINX, e)]) / 2 for e in ENCODINGS}
        for round_ in range(args.rounds):
            for encoding, (_, header) in ENCODINGS.items():
                for name in round_order(urls, round_):
                    port, rate = ports[name], rates[encoding]
                    result = measure(procs[name].pid, lambda: run_open_loop(port, rate, header, paths, args))  # noqa: B023
                    opens.setdefault((name, encoding), []).append(result)
                    print(
                        f"round {round_ + 1} open loop {encoding:8} {name:9} {result['rate']:>9,.0f} req/s  "
                        f"p99 {result['p99']:.2f} ms  unanswered {result['unanswered']:.0f}  "
                        f"generator CPU {result['cpu']:.1f} s  load {loadavg()}",
                        flush=True,
                    )
            loads.append(loadavg())
        report(args, sample, peaks, opens, rates, [load_at_start, *loads], time.monotonic() - started)
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def round_order(urls: dict[str, str], round_: int) -> list[str]:
    """The servers in the order of one round: reversed every other round, so drifting load hits all alike."""
    order = [name for name in (NGINX, CREDCHECK, FLOOR) if name in urls]
    return order if round_ % 2 == 0 else order[::-1]


def check_same_bytes(urls: dict[str, str], sample: list[int]) -> None:
    """Both servers give the same range bodies (plain bytes equal; gzip decoding to them), so the race is fair."""
    for prefix in random.Random(0).sample(sample, 20):
        bodies = {}
        for name, url in urls.items():
            plain = fetch(f"{url}/range/{prefix:05X}")[2]
            _, headers, packed = fetch(f"{url}/range/{prefix:05X}", {"Accept-Encoding": "gzip"})
            if headers.get("content-encoding") != "gzip" or gzip.decompress(packed) != plain:
                raise SystemExit(f"{name} did not send range {prefix:05X} gzip-encoded as its plain body")
            bodies[name] = plain
        if any(body != bodies[NGINX] for body in bodies.values()):
            raise SystemExit(f"the servers disagree on range {prefix:05X}")


def versions() -> str:
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
    try:
        import granian

        granian_version = granian.__version__
    except ImportError:
        granian_version = "not installed"
    return f"granian {granian_version}, nginx {nginx}, {wrk}, Python {sys.version.split()[0]}"


def machine() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    cpu = fields.get("Model name", "?").strip()
    caches = ", ".join(f"{k.strip()} {fields[k].strip()}" for k in fields if k.strip().endswith("cache"))
    return f"{cpu}, {os.cpu_count()} CPUs; {caches}"


def report(
    args: argparse.Namespace,
    sample: list[int],
    peaks: dict[tuple[str, str], list[dict[str, float]]],
    opens: dict[tuple[str, str], list[dict[str, float]]],
    rates: dict[str, float],
    loads: list[str],
    elapsed: float,
) -> None:
    med = statistics.median
    print(f"\nmachine: {machine()}")
    print(f"versions: {versions()}")
    print(
        f"data: {len(sample):,} prefixes x {args.per_prefix:,} hashes (all hot, uniform); {args.workers} workers each; "
        f"{args.rounds} interleaved rounds; wrk -t{args.wrk_threads} -c{args.connections} {args.duration}s; "
        f"open loop {args.open_connections} connections {args.open_duration:g}s (first {args.open_warmup:g}s not "
        f"counted); load generators pinned to {args.wrk_cpus or 'nothing'}"
    )
    print(f"load average (1, 5, 15 min) at start, after each phase: {' -> '.join(loads)}")
    print(f"run took {elapsed / 60:.1f} min\n")
    print(f"{'flat out (closed loop)':24} {'req/s':>9} {'server CPU us/req':>18} {'wrk CPU/s':>10} {'errors':>7}")
    for encoding in ENCODINGS:
        for name in (NGINX, CREDCHECK, FLOOR):
            if (name, encoding) not in peaks:
                continue
            runs = peaks[(name, encoding)]
            rps = med(r["rps"] for r in runs)
            cpu = med(1e6 * r["server_cpu"] / r["requests"] for r in runs)
            gen = med(r["gen_cpu"] / args.duration for r in runs)
            errors = sum(r["errors"] for r in runs)
            print(f"{name + ' ' + encoding:24} {rps:>9,.0f} {cpu:>18.1f} {gen:>10.2f} {errors:>7.0f}")
    print(f"\n{'open loop at half nginx peak':30} {'asked':>8} {'got':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
          f"{'p99.9':>7} {'max ms':>7} {'unans.':>6} {'non200':>6} {'gen CPU/s':>9}")  # fmt: skip
    for encoding in ENCODINGS:
        for name in (NGINX, CREDCHECK, FLOOR):
            if (name, encoding) not in opens:
                continue
            runs = opens[(name, encoding)]
            row = {k: med(r[k] for r in runs) for k in runs[0]}
            print(
                f"{name + ' ' + encoding:30} {rates[encoding]:>8,.0f} {row['rate']:>8,.0f} {row['p50']:>7.2f} "
                f"{row['p90']:>7.2f} {row['p99']:>7.2f} {row['p999']:>7.2f} {row['max']:>7.2f} "
                f"{sum(r['unanswered'] for r in runs):>6.0f} {sum(r['non200'] for r in runs):>6.0f} "
                f"{med(r['cpu'] / r['elapsed'] for r in runs):>9.2f}"
            )
    print()
    targets = {"identity": 0.60, "gzip": 0.70}
    for encoding in ENCODINGS:
        ratios = per_round(peaks, CREDCHECK, NGINX, encoding)
        cpu_ratio = med(
            (c["server_cpu"] / c["requests"]) / (n["server_cpu"] / n["requests"])
            for c, n in zip(peaks[(CREDCHECK, encoding)], peaks[(NGINX, encoding)], strict=True)
        )
        p99 = med(r["p99"] for r in opens[(CREDCHECK, encoding)])
        verdict = "met" if med(ratios) >= targets[encoding] else "NOT met"
        print(
            f"credcheck / nginx requests/s ({encoding}): {med(ratios):.3f} (rounds: "
            f"{', '.join(f'{r:.3f}' for r in ratios)}; target >= {targets[encoding]:.2f}: {verdict}); "
            f"CPU per request {cpu_ratio:.3f} x nginx's; p99 at half nginx peak {p99:.2f} ms "
            f"(target <= 10 ms: {'met' if p99 <= 10 else 'NOT met'})"
        )
        if (FLOOR, encoding) in peaks:
            floor = per_round(peaks, FLOOR, NGINX, encoding)
            near = per_round(peaks, CREDCHECK, FLOOR, encoding)
            floor_p99 = med(r["p99"] for r in opens[(FLOOR, encoding)])
            print(
                f"  floor (granian as credcheck runs it, least app) / nginx ({encoding}): {med(floor):.3f} "
                f"(rounds: {', '.join(f'{r:.3f}' for r in floor)}); credcheck / floor: {med(near):.3f}; "
                f"floor's p99 at half nginx peak {floor_p99:.2f} ms"
            )


Peaks = dict[tuple[str, str], list[dict[str, float]]]


def per_round(peaks: Peaks, name: str, other: str, encoding: str) -> list[float]:
    """Each round's requests/s of ``name`` over ``other``'s, in one encoding."""
    return [a["rps"] / b["rps"] for a, b in zip(peaks[(name, encoding)], peaks[(other, encoding)], strict=True)]


if __name__ == "__main__":
    main()
