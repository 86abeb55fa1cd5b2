"""The range server under abuse and sustained load: malformed requests, thousands of connections, RSS.

Starts `credcheck serve` (the default server: granian when installed) on a store of random hashes, then:

1. abuse — sends malformed and hostile requests over raw sockets (oversized paths and headers, path tricks,
   bad methods, broken HTTP, slow clients) and checks that each gets a 4xx (or a closed connection), never a
   5xx or a crash, and that valid requests still succeed afterwards;
2. connections — opens thousands of concurrent keep-alive connections with wrk;
3. soak — a sustained load of a few hundred thousand requests with wrk, counting failed requests;

and reports the server's resident memory (all its processes) before, between and after, so that growth
shows. Needs `wrk` on PATH (`apt-get install wrk`).

    .venv/bin/python benchmarks/server_soak.py [--hashes 2000000] [--requests 300000] [--connections 2000]
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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
            credcheck.build([src], store=root / f"{scheme}.store", hash=scheme)
            src.unlink()
        prefix_file = root / "prefixes.txt"
        prefix_file.write_text("\n".join(f"{p:05X}" for p in random.Random(2).sample(range(1 << 20), 50_000)) + "\n")
        script = root / "load.lua"
        script.write_text(LUA.format(prefix_file=prefix_file))

        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "credcheck", "serve", "--store", str(root / "sha1.store"), "--store",
             str(root / "ntlm.store"), "--port", str(port), "--server", args.server],
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

        print("\nresident memory of the server (all processes), MiB:")
        for label, value in rss.items():
            print(f"   {label:24} {value:8,.0f}")
        failed = bad + many["non2xx"] + done["non2xx"]
        print(f"\nverdict: {'PASS' if failed == 0 and still == 200 else 'FAIL'} "
              f"({bad} abuse requests got a 5xx; {many['non2xx'] + done['non2xx']} valid requests failed)")  # fmt: skip
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
