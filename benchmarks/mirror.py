"""Mirror speed: `credcheck mirror` beside hibp-downloader, both against one local `credcheck serve`, one run.

Builds a store of random SHA-1 hashes (10M by default: about ten per range, like a mid-sized corpus), serves it
with `credcheck serve` on 127.0.0.1, and mirrors it with each tool in turn, interleaved round by round: a full
mirror (every range fetched), then a refresh when nothing changed (credcheck `--update`, hibp-downloader's
ETag revalidation with its local cache TTL at 0, so that it asks the server too). For each run it prints the
ranges per second and the CPU seconds of the tool's whole process tree, and the ratios.

hibp-downloader (0.4.8) has no base-URL option: it reads the module constant `PWNEDPASSWORDS_API_URL`, which
`hibp_downloader/commands/hibp_download.py` imports by name. The wrapper below (written to the work folder and
run with the same interpreter) sets that constant to the local server before handing over to the tool's own
entry point; its worker processes are forked and inherit it. Install it for the benchmark only, in a venv of
its own (its pins need not agree with credcheck's), and name that venv's interpreter:

    python3 -m venv /tmp/hibpdl && /tmp/hibpdl/bin/pip install hibp-downloader==0.4.8
    .venv/bin/python benchmarks/mirror.py --hibp-python /tmp/hibpdl/bin/python [--hashes 10000000]
        [--prefixes 00000-FFFFF] [--rounds 3]

With several rounds the ratios are of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from credcheck.store import PREFIXES, RangeStore, StoreWriter, prefix_of

WRAPPER = """\
import sys
import hibp_downloader.commands.hibp_download as download
download.PWNEDPASSWORDS_API_URL = sys.argv.pop(1)  # the tool has no option for it
from hibp_downloader.main import entrypoint
sys.exit(entrypoint())
"""


def make_store(path: Path, hashes: int, seed: int = 1) -> None:
    """A store of ``hashes`` random SHA-1 digests with random counts, written directly (no text dump)."""
    rng = np.random.default_rng(seed)
    digests = rng.integers(0, 256, size=(hashes, 20), dtype=np.uint8)
    digests = digests[np.argsort(digests.view("S20").ravel(), kind="stable")]
    keep = np.ones(len(digests), dtype=bool)
    keep[1:] = (digests[1:] != digests[:-1]).any(axis=1)
    digests = digests[keep]
    counts = rng.integers(1, 1000, size=len(digests)).astype(np.uint64)
    writer = StoreWriter(path, scheme="sha1", prefix_counts=np.bincount(prefix_of(digests), minlength=PREFIXES))
    for start in range(0, len(digests), 1 << 20):
        writer.add(digests[start : start + (1 << 20)], counts[start : start + (1 << 20)])
    writer.finish()
    writer.commit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the server at {url} did not come up")


def timed(command: list[str]) -> tuple[float, float, str]:
    """Run ``command``; return its wall seconds, the CPU seconds of its process tree, and its output."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own time and its reaped children's
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{command[:4]} failed ({proc.returncode}):\n{output[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hashes", type=int, default=10_000_000, help="hashes in the served store")
    parser.add_argument("--prefixes", default="00000-FFFFF", help="FIRST-LAST range of prefixes both tools fetch")
    parser.add_argument("--connections", type=int, default=8, help="credcheck mirror --connections (its default)")
    parser.add_argument("--hibp-python", default=sys.executable, help="the interpreter with hibp-downloader")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2, help="hibp-downloader --processes")
    parser.add_argument("--server-workers", type=int, default=None, help="credcheck serve --workers")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of both tools")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    first, last = args.prefixes.split("-")
    ranges = int(last, 16) - int(first, 16) + 1

    work = Path(tempfile.mkdtemp(prefix="credcheck-mirror-bench-"))
    server = None
    try:
        source = work / "source.store"
        print(f"building a store of {args.hashes:,} random SHA-1 hashes ...", flush=True)
        make_store(source, args.hashes)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serve = [sys.executable, "-m", "credcheck", "serve", "--store", str(source), "--port", str(port)]
        serve.append("--no-access-log")  # the server is not what is measured here
        if args.server_workers:
            serve += ["--workers", str(args.server_workers)]
        server = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_up(url)
        (work / "hibp_downloader_at.py").write_text(WRAPPER)

        ours = [sys.executable, "-m", "credcheck", "mirror", url, "--store", str(work / "mirror.store"),
                "--prefixes", args.prefixes, "--connections", str(args.connections), "--json", "-q"]  # fmt: skip
        theirs = [args.hibp_python, str(work / "hibp_downloader_at.py"), url, "--quiet", "--data-path",
                  str(work / "hibp-downloader"), "download", "--first-hash", first, "--last-hash", last,
                  "--processes", str(args.processes)]  # fmt: skip
        rows: list[tuple[str, float, float]] = []
        for round_number in range(1, args.rounds + 1):
            for name, command in (
                ("credcheck mirror", ours),
                ("hibp-downloader", theirs),
                ("credcheck mirror --update (unchanged)", [*ours, "--update"]),
                ("hibp-downloader re-run (ETags, cache TTL 0)", [*theirs, "--local-cache-ttl", "0"]),
            ):
                if name == "credcheck mirror":
                    for leftover in work.glob("mirror.store*"):
                        leftover.unlink()
                if name == "hibp-downloader":
                    shutil.rmtree(work / "hibp-downloader", ignore_errors=True)
                print(f"round {round_number}: {name} ...", flush=True)
                wall, cpu, output = timed(command)
                if command[:4] == ours[:4]:
                    report = json.loads(output.strip().splitlines()[-1])
                    assert report["ranges"] == ranges, report
                    if "--update" in command:
                        assert report["not_modified"] == ranges, "an unchanged server must answer 304 throughout"
                rows.append((name, wall, cpu))
        with RangeStore(work / "mirror.store") as mirrored, RangeStore(source) as served:
            lo, hi = int(first, 16), int(last, 16) + 1
            assert all(mirrored.range_body(p) == served.range_body(p) for p in range(lo, hi, max(1, ranges // 4096)))

        print()
        print(f"{ranges:,} ranges of a {args.hashes:,}-hash store from credcheck serve on 127.0.0.1")
        print(f"{'run':46s} {'seconds':>9s} {'ranges/s':>10s} {'CPU s':>8s} {'CPU us/range':>13s}")
        for name, wall, cpu in rows:
            print(f"{name:46s} {wall:9.1f} {ranges / wall:10,.0f} {cpu:8.1f} {cpu * 1e6 / ranges:13,.0f}")
        print()
        by_name: dict[str, list[tuple[float, float]]] = {}
        for name, wall, cpu in rows:
            by_name.setdefault(name, []).append((wall, cpu))
        names = list(by_name)
        for ours_name, theirs_name in ((names[0], names[1]), (names[2], names[3])):
            our_wall = statistics.median(w for w, _ in by_name[ours_name])
            their_wall = statistics.median(w for w, _ in by_name[theirs_name])
            our_cpu = statistics.median(c for _, c in by_name[ours_name])
            their_cpu = statistics.median(c for _, c in by_name[theirs_name])
            print(
                f"{ours_name} vs {theirs_name} (medians): {their_wall / our_wall:.1f}x the ranges/s, "
                f"{their_cpu / our_cpu:.1f}x less CPU"
            )
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
