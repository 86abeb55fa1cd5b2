"""The range server under abuse and sustained load: malformed requests, thousands of connections, RSS.

Starts `credcheck serve` (the default server: granian when installed) on a store of random hashes, then:

1. abuse — sends malformed and hostile requests over raw sockets (oversized paths and headers, path tricks,
   bad methods, broken HTTP, slow clients) and checks that each gets a 4xx (or a closed connection), never a
   5xx or a crash, and that valid requests still succeed afterwards;
2. connections — opens thousands of concurrent keep-alive connections with wrk;
3. soak — a sustained load of a few hundred thousand requests with wrk, counting failed requests;
4. slowloris — holds a few thousand idle half-open connections from 127.0.0.2 (each sends half a request's
   headers, trickles a header line every 5 s, and is reopened as soon as the server closes it) while a probe
   from 127.0.0.1 asks for a range every 0.1 s with a fresh connection and a 2 s timeout; reports the share
   of probes answered (target: at least 99%);
5. sweep — requests every one of the 2^20 prefixes in order (gzip), and samples each worker's RSS and its
   anonymous part (what the worker itself allocated; the rest is the store's shared page-cache pages) as it
   goes: with the body cache bounded by what it really holds, the anonymous memory levels off;

and reports the server's resident memory (all its processes) before, between and after, so that growth
shows. Needs `wrk` on PATH (`apt-get install wrk`).

    .venv/bin/python benchmarks/server_soak.py [--hashes 2000000] [--requests 300000] [--connections 2000]
        [--slowloris 3000] [--sweep-seconds 120] [--server auto|granian|gunicorn|wsgiref] [--only slowloris|sweep]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

import credcheck

LUA = """
local prefixes = {{}}
for line in io.lines("{prefix_file}") do prefixes[#prefixes + 1] = line end
local modes = {{"", "", "", "?mode=ntlm"}}
local paddings = {{"true", "false"}}
request = function()
    local headers = {{["Add-Padding"] = paddings[math.random(2)], ["Accept-Encoding"] = "gzip"}}
    return wrk.format("GET", "/range/" .. prefixes[math.random(#prefixes)] .. modes[math.random(4)], headers)
end
"""

ABUSE: list[tuple[str, bytes]] = [
    ("path of 100 KB", b"GET /range/" + b"A" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("header of 1 MB", b"GET /range/5BAA6 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"),
    ("10,000 headers", b"GET /range/5BAA6 HTTP/1.1\r\nHost: x\r\n" + b"X-H: 1\r\n" * 10_000 + b"\r\n"),
    ("path traversal", b"GET /range/../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("encoded traversal", b"GET /range/%2e%2e%2f%2e%2e%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("NUL in path", b"GET /range/5BA%00A6 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("non-ASCII path", "GET /range/5BÄA6 HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
    ("6-hex prefix", b"GET /range/5BAA61 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("extra segment", b"GET /range/5BAA6/x HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("POST with body", b"POST /range/5BAA6 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
    ("DELETE", b"DELETE /range/5BAA6 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("unknown method", b"BREW /range/5BAA6 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("garbage request line", b"\x00\x01\x02 nonsense\r\n\r\n"),
    ("HTTP/0.9 style", b"GET /range/5BAA6\r\n\r\n"),
    ("bad If-None-Match", b'GET /range/5BAA6 HTTP/1.1\r\nHost: x\r\nIf-None-Match: """,,,W/\r\n\r\n'),
    ("bad Accept-Encoding", b"GET /range/5BAA6 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=nan, *;q=-1\r\n\r\n"),
    ("huge query", b"GET /range/5BAA6?" + b"mode=ntlm&" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("chunked body on GET", b"GET /range/5BAA6 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, AttributeError):
            continue
    return total / 1024


def send_raw(port: int, payload: bytes, timeout: float = 10.0) -> str:
    """Send bytes, return the status line (or how the connection ended)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(payload)  # (no half-close: some servers drop a request whose client stopped sending)
            data = s.recv(256)
        except (ConnectionResetError, BrokenPipeError):
            return "connection reset"
        except TimeoutError:
            return "timeout"
    if not data:
        return "connection closed"
    return data.split(b"\r\n", 1)[0].decode("latin-1")


class Slowloris:
    """Holds ``count`` half-open connections from ``source`` (another loopback address than the probes'):
    each sends part of a request's headers, then one more header line every ``trickle`` seconds (or, with
    ``silent``, nothing at all), and is opened again as soon as the server closes it."""

    def __init__(
        self, port: int, count: int, *, source: str = "127.0.0.2", trickle: float = 5.0, silent: bool = False
    ) -> None:
        self.port, self.count, self.source, self.trickle, self.silent = port, count, source, trickle, silent
        self.open = self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self) -> socket.socket | None:
        s = socket.socket()
        s.setblocking(False)
        try:
            s.bind((self.source, 0))
            s.connect_ex(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return None
        return s

    def _run(self) -> None:
        held: dict[socket.socket, float] = {}  # socket -> when it next sends a line
        watch = selectors.DefaultSelector()  # epoll: thousands of sockets (select() stops at 1024)

        def drop(s: socket.socket) -> None:
            watch.unregister(s)
            s.close()
            del held[s]
            self.reopened += 1

        while not self._stop.is_set():
            while len(held) < self.count and not self._stop.is_set():
                s = self._connect()
                if s is None:
                    break
                held[s] = 0.0
                watch.register(s, selectors.EVENT_READ)
            now = time.monotonic()
            for s, due in list(held.items()):
                if due > now or self.silent:
                    continue
                try:
                    s.send(b"GET /range/00000 HTTP/1.1\r\nHost: x\r\n" if due == 0.0 else b"X-Wait: 1\r\n")
                    held[s] = now + self.trickle
                except BlockingIOError:
                    held[s] = now + 0.2  # still connecting (the server has not accepted it yet)
                except OSError:
                    drop(s)
            # a server that closes an idle connection shows as readable (EOF, or its 408 / 503): reopen
            for key, _ in watch.select(0.2):
                s = key.fileobj  # type: ignore[assignment]
                with contextlib.suppress(OSError):
                    s.recv(4096)
                drop(s)
            self.open = len(held)
        for s in held:
            s.close()
        watch.close()

    def __enter__(self) -> Slowloris:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def probe(url: str, seconds: float, interval: float = 0.1, timeout: float = 2.0) -> tuple[int, int]:
    """Fresh-connection GETs from 127.0.0.1 for ``seconds``: (answered 200, asked)."""
    ok = asked = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        asked += 1
        try:
            with urllib.request.urlopen(f"{url}/range/5BAA6", timeout=timeout) as reply:
                reply.read()
                ok += reply.status == 200
        except OSError:
            pass
        time.sleep(interval)
    return ok, asked


def slowloris_phase(port: int, url: str, count: int, seconds: float) -> float:
    """Probe success (%) while ``count`` slowloris connections are held open."""
    with Slowloris(port, count) as attack:
        time.sleep(3)  # let the connections pile up
        ok, asked = probe(url, seconds)
        held, reopened = attack.open, attack.reopened
    share = 100.0 * ok / max(asked, 1)
    print(f"   {held:,} idle half-open connections held from 127.0.0.2 ({reopened:,} reopened after the server "
          f"closed them): probes answered {ok}/{asked} = {share:.1f}%")  # fmt: skip
    return share


SWEEP_LUA = """
local counter, step = 0, 1
function setup(thread)
    thread:set("first", setup_id or 0)
    setup_id = (setup_id or 0) + 1
end
function init(args)
    counter, step = tonumber(wrk.thread:get("first")), tonumber(args[1])
end
request = function()
    local prefix = string.format("%05X", counter % 1048576)
    counter = counter + step
    return wrk.format("GET", "/range/" .. prefix, {["Accept-Encoding"] = "gzip"})
end
"""


def worker_memory(pid: int) -> dict[int, tuple[float, float]]:
    """(RSS, anonymous RSS) in MiB of each process under ``pid`` (the workers; the parent too, if alone).

    The anonymous part is what a worker allocated itself; the rest of RSS is mostly the store's pages in
    the page cache, mapped by every worker and counted in each.
    """
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
            anon = int(re.search(r"RssAnon:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
            tasks = Path(f"/proc/{p}/task").iterdir()
            children = [int(c) for task in tasks for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
        if not children or p != pid:
            out[p] = (rss, anon)
        todo.extend(children)
    return out


def sweep_phase(url: str, pid: int, root: Path, seconds: int) -> None:
    """Every one of the 2^20 prefixes, in order (gzip), for ``seconds``; each worker's memory as it goes."""
    script = root / "sweep.lua"
    script.write_text(SWEEP_LUA)
    samples: list[tuple[float, dict[int, tuple[float, float]]]] = [(0.0, worker_memory(pid))]
    done = threading.Event()

    def sample() -> None:
        start = time.monotonic()
        while not done.wait(seconds / 6):
            samples.append((time.monotonic() - start, worker_memory(pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", "-c32", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url, "--",
         str(threads)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    done.set()
    sampler.join()
    samples.append((float(seconds), worker_memory(pid)))
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    print(f"   {total:,} requests = {total / (1 << 20):.2f} sweeps of all 2^20 prefixes")
    workers = sorted(samples[0][1])
    print("   s    " + "".join(f"  worker {i + 1}: RSS / anon MiB" for i in range(len(workers))))
    for at, memory in samples:
        cells = "".join(
            f"  {memory.get(w, (0.0, 0.0))[0]:14,.0f} / {memory.get(w, (0.0, 0.0))[1]:6,.0f}" for w in workers
        )
        print(f"   {at:4.0f} {cells}")


def wrk(url: str, script: Path, connections: int, duration: int, threads: int = 2) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": total,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hashes", type=int, default=2_000_000)
    parser.add_argument("--requests", type=int, default=300_000, help="requests in the sustained load (about)")
    parser.add_argument("--connections", type=int, default=2000, help="concurrent connections in phase 2")
    parser.add_argument("--server", default="auto", help="credcheck serve --server")
    parser.add_argument("--slowloris", type=int, default=3000, help="idle half-open connections in phase 4")
    parser.add_argument("--slowloris-seconds", type=float, default=30.0, help="probing time in phase 4")
    parser.add_argument("--sweep-seconds", type=int, default=120, help="length of the prefix sweep, phase 5")
    parser.add_argument("--only", choices=["slowloris", "sweep"], help="run one phase (after the start-up)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # wrk and the server inherit it

    root = Path(tempfile.mkdtemp(prefix="credcheck-soak-"))
    proc = None
    try:
        rng = np.random.default_rng(0)
        for scheme, width in (("sha1", 20), ("ntlm", 16)):
            rows = rng.integers(0, 256, (args.hashes, width), dtype=np.uint8)
            src = root / f"{scheme}.txt"
            src.write_text("\n".join(f"{bytes(r).hex()}:{i % 1000 + 1}" for i, r in enumerate(rows)))
            credcheck.build([src], store=root / f"{scheme}.store", scheme=scheme)
            src.unlink()
        prefix_file = root / "prefixes.txt"
        prefix_file.write_text("\n".join(f"{p:05X}" for p in random.Random(2).sample(range(1 << 20), 50_000)) + "\n")
        script = root / "load.lua"
        script.write_text(LUA.format(prefix_file=prefix_file))

        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "credcheck", "serve", "--store", str(root / "sha1.store"), "--store",
             str(root / "ntlm.store"), "--port", str(port), "--server", args.server, "--no-access-log"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        banner = proc.stdout.readline().strip() if proc.stdout else ""
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        print(banner)
        rss = {"start": tree_rss_mib(proc.pid)}
        if args.only == "slowloris":
            print(f"\nslowloris: {args.slowloris:,} idle half-open connections from one address")
            slowloris_phase(port, url, args.slowloris, args.slowloris_seconds)
            return
        if args.only == "sweep":
            print(f"\na sweep of every prefix ({args.sweep_seconds} s)")
            sweep_phase(url, proc.pid, root, args.sweep_seconds)
            return

        print("\n1. abuse")
        bad = 0
        for name, payload in ABUSE:
            status = send_raw(port, payload)
            ok = not status.startswith("HTTP/1.1 5") and not status.startswith("HTTP/1.0 5")
            bad += not ok
            print(f"   {name:24} -> {status}{'' if ok else '   <-- FAILED'}")
        still = urllib.request.urlopen(f"{url}/range/5BAA6", timeout=5).status
        print(f"   valid request afterwards -> {still}")
        rss["after abuse"] = tree_rss_mib(proc.pid)

        print(f"\n2. {args.connections:,} concurrent keep-alive connections (wrk, 20 s)")
        many = wrk(url, script, args.connections, 20)
        print(f"   {many['requests']:,} requests, {many['rps']:,.0f}/s, non-2xx {many['non2xx']}, "
              f"socket errors {many['socket_errors']}")  # fmt: skip
        rss["after connections"] = tree_rss_mib(proc.pid)

        print("\n3. sustained load (wrk, 64 connections)")
        done = {"requests": 0, "non2xx": 0, "socket_errors": 0}
        rounds = 0
        while done["requests"] < args.requests:
            part = wrk(url, script, 64, 15)
            rounds += 1
            for key in done:
                done[key] += part[key]  # type: ignore[assignment]
            rss[f"after soak round {rounds}"] = tree_rss_mib(proc.pid)
            print(f"   round {rounds}: {part['requests']:,} requests at {part['rps']:,.0f}/s; "
                  f"RSS {rss[f'after soak round {rounds}']:,.0f} MiB")  # fmt: skip
        print(
            f"   total {done['requests']:,} requests: non-2xx {done['non2xx']}, socket errors {done['socket_errors']}"
        )

        print(f"\n4. slowloris: {args.slowloris:,} idle half-open connections from one address, probes from another")
        share = slowloris_phase(port, url, args.slowloris, args.slowloris_seconds)
        rss["after slowloris"] = tree_rss_mib(proc.pid)

        print(f"\n5. a sweep of every prefix (wrk, 32 connections, {args.sweep_seconds} s): memory per worker")
        sweep_phase(url, proc.pid, root, args.sweep_seconds)
        rss["after the sweep"] = tree_rss_mib(proc.pid)

        print("\nresident memory of the server (all processes), MiB:")
        for label, value in rss.items():
            print(f"   {label:24} {value:8,.0f}")
        failed = bad + many["non2xx"] + done["non2xx"]
        passed = failed == 0 and still == 200 and share >= 99.0
        print(f"\nverdict: {'PASS' if passed else 'FAIL'} "
              f"({bad} abuse requests got a 5xx; {many['non2xx'] + done['non2xx']} valid requests failed; "
              f"{share:.1f}% of probes answered during the slowloris, target 99%)")  # fmt: skip
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)
        _ = soft


if __name__ == "__main__":
    main()
