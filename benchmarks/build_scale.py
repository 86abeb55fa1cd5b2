"""Build at scale: a synthetic HIBP-format SHA-1 corpus of N lines -> a filter (Bloom or fuse) and a range store.

    .venv/bin/python benchmarks/build_scale.py                      # 100M lines (~4.4 GB corpus, ~4 min here)
    .venv/bin/python benchmarks/build_scale.py --layout fuse        # the same with a sharded binary fuse filter
    .venv/bin/python benchmarks/build_scale.py --lines 10000000     # 10M, ~30 s
    .venv/bin/python benchmarks/build_scale.py --lines 1000000 --keep --workdir /tmp/scale

Steps, each timed:

1. Generate the corpus: N distinct upper-case 40-hex SHA-1 digests, sorted, as ``HEX:COUNT`` lines with CRLF,
   as HIBP's downloader writes them. Sorted output without a global sort: the 64-bit prefix space is cut into
   equal blocks, each block gets a multinomial share of the N lines, draws that many distinct 64-bit prefixes
   in its own range and sorts them; the other 12 digest bytes are random. Counts follow a Zipf law
   (exponent 1.7, capped at 50M): about half are 1, a long tail reaches millions (HIBP's most common
   password is seen ~40M times).
2. Build the filter (``--fp-rate``, default 1e-6) and the store with ``credcheck.build([path], filter=...,
   store=...)`` in a child process, which reports ``build()``'s own time and its peak RSS (VmHWM); the
   parent also reads ``getrusage(RUSAGE_CHILDREN).ru_maxrss``.
3. Spot-check: 100k members sampled while generating (all found in the filter; exact counts from the store)
   and 1M random digests (non-members: the filter's observed false-positive rate; the store must find none).
4. Print one markdown table and a projection to ``--target`` hashes (default 1.9 billion: Pwned Passwords
   today, ANCHORS.md).

The corpus and artefacts live in ``--workdir`` (default: a new directory under /tmp) and are deleted at the
end unless ``--keep``. The corpus is read twice by the build (sorted input: a counting pass, then a writing
pass); with this machine's RAM the second pass usually comes from the page cache.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import numpy.typing as npt

KEY = 20
HEX = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
BLOCK_LINES = 1 << 20  # lines generated per block
MAX_DIGITS = 10
ZIPF_A = 1.7
COUNT_CAP = 50_000_000
MEMBER_SAMPLE = 100_000
NON_MEMBERS = 1_000_000
TARGET = 1_900_000_000  # Pwned Passwords today (ANCHORS.md, "Limits": about 1.85-1.9 billion)
STORE_INDEX = 8 * ((1 << 20) + 1)
HEADER = 128


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- corpus ----------------------------------------------------------------------------------------


def _lines(digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """``HEX:COUNT\\r\\n`` for every row, as one flat byte array (fixed-width rows, then the unused digit
    columns masked out)."""
    n = len(digests)
    width = 2 * KEY + 1 + MAX_DIGITS + 2
    mat = np.empty((n, width), dtype=np.uint8)
    mat[:, 0 : 2 * KEY : 2] = HEX[digests >> 4]
    mat[:, 1 : 2 * KEY : 2] = HEX[digests & 15]
    mat[:, 2 * KEY] = ord(":")
    c = counts.copy()
    for j in range(MAX_DIGITS - 1, -1, -1):
        mat[:, 2 * KEY + 1 + j] = 48 + (c % 10)
        c //= 10
    ndig = np.ones(n, dtype=np.int64)
    for k in range(1, MAX_DIGITS):
        ndig += counts >= 10**k
    mat[:, -2] = 13
    mat[:, -1] = 10
    keep = np.ones((n, width), dtype=bool)
    first_digit = 2 * KEY + 1 + MAX_DIGITS - ndig  # column of each row's leading digit
    cols = np.arange(2 * KEY + 1, 2 * KEY + 1 + MAX_DIGITS)
    keep[:, 2 * KEY + 1 : 2 * KEY + 1 + MAX_DIGITS] = cols[None, :] >= first_digit[:, None]
    return mat[keep]


def generate(
    path: str, n: int, seed: int
) -> tuple[int, npt.NDArray[np.uint8], npt.NDArray[np.int64], dict[str, float]]:
    """Write the corpus; return its size in bytes, a sample of members (digests, counts) and count stats."""
    rng = np.random.default_rng(seed)
    blocks = max(1, math.ceil(n / BLOCK_LINES))
    per_block = rng.multinomial(n, [1 / blocks] * blocks)
    span = (1 << 64) // blocks
    sample_p = min(1.0, 1.2 * MEMBER_SAMPLE / max(n, 1))
    sample_d: list[npt.NDArray[np.uint8]] = []
    sample_c: list[npt.NDArray[np.int64]] = []
    size = ones = 0
    biggest = 0
    total_count = 0
    with open(path, "wb") as out:
        for b, m in enumerate(per_block.tolist()):
            lo = b * span
            hi = (1 << 64) - 1 if b == blocks - 1 else (b + 1) * span - 1
            prefixes = np.unique(rng.integers(lo, hi, size=m, dtype=np.uint64, endpoint=True))
            while len(prefixes) < m:  # a 64-bit collision: draw the missing ones again
                extra = rng.integers(lo, hi, size=m - len(prefixes), dtype=np.uint64, endpoint=True)
                prefixes = np.unique(np.concatenate([prefixes, extra]))
            digests = np.empty((m, KEY), dtype=np.uint8)
            digests[:, :8] = prefixes.astype(">u8").view(np.uint8).reshape(m, 8)
            digests[:, 8:] = np.frombuffer(rng.bytes(m * (KEY - 8)), dtype=np.uint8).reshape(m, KEY - 8)
            counts = np.minimum(rng.zipf(ZIPF_A, size=m), COUNT_CAP).astype(np.int64)
            text = _lines(digests, counts)
            out.write(text.data)
            size += len(text)
            ones += int(np.count_nonzero(counts == 1))
            biggest = max(biggest, int(counts.max()) if m else 0)
            total_count += int(counts.sum())
            pick = rng.random(m) < sample_p
            sample_d.append(digests[pick])
            sample_c.append(counts[pick])
            if b % max(1, blocks // 10) == 0:
                log(f"generate: block {b + 1}/{blocks} ({size / 1e9:.2f} GB)")
    digests, counts = np.concatenate(sample_d), np.concatenate(sample_c)
    chosen = np.sort(rng.permutation(len(counts))[:MEMBER_SAMPLE])  # an even sample across the whole corpus
    digests, counts = digests[chosen], counts[chosen]
    stats = {"count_1_share": ones / max(n, 1), "max_count": biggest, "mean_count": total_count / max(n, 1)}
    return size, digests, counts, stats


# -- the build, in a child process -----------------------------------------------------------------


def _vm_hwm_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def child_build(corpus: str, filter_path: str, store_path: str, fp_rate: float, layout: str) -> None:
    """Run in the child: build, then print one JSON line with the report and the peak memory."""
    import credcheck

    last = [0.0]

    def progress(phase: str, done: int, total: int | None, lines: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 30:
            last[0] = now
            share = f" {100 * done / total:.0f}%" if total else ""
            log(f"build: {phase}{share}, {lines:,} lines")

    t0 = time.perf_counter()
    report = credcheck.build(
        [corpus], filter=filter_path, store=store_path, fp_rate=fp_rate, layout=layout, progress=progress
    )
    wall = time.perf_counter() - t0
    out = {
        "report": report.as_dict(),
        "reconciles": report.reconciles(),
        "wall": wall,
        "vm_hwm_kib": _vm_hwm_kib(),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "kernels": credcheck.bloom.KERNELS,
        "version": credcheck.__version__,
    }
    print(json.dumps(out), flush=True)


def run_build(corpus: str, filter_path: str, store_path: str, fp_rate: float, layout: str) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child-build", corpus, filter_path, store_path, repr(fp_rate)]
    cmd.append(layout)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the build failed (exit status {proc.returncode})")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["child_wall"] = elapsed
    result["rusage_children_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return result


# -- spot checks -----------------------------------------------------------------------------------


def spot_check(
    filter_path: str, store_path: str, members: npt.NDArray[np.uint8], counts: npt.NDArray[np.int64], seed: int
) -> dict[str, Any]:
    import credcheck

    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    from credcheck.fuse import FuseFilter

    fuse = filter_path.endswith(".fuse")
    bf: Any = FuseFilter(filter_path) if fuse else credcheck.BloomFilter.open(filter_path)  # verified
    out["filter_open_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    st = credcheck.RangeStore(store_path)
    out["store_open_s"] = time.perf_counter() - t0
    try:
        found = bf.contains_many(members)
        out["members"] = len(members)
        out["members_in_filter"] = int(found.sum())
        got = st.lookup_many(members)
        out["members_in_store"] = int(np.count_nonzero(got))
        out["member_counts_exact"] = int(np.count_nonzero(got.astype(np.int64) == counts))
        rng = np.random.default_rng(seed + 1)
        others = np.frombuffer(rng.bytes(NON_MEMBERS * KEY), dtype=np.uint8).reshape(NON_MEMBERS, KEY)
        t0 = time.perf_counter()
        fp = bf.contains_many(others)
        out["filter_lookup_rate"] = NON_MEMBERS / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        in_store = st.lookup_many(others)
        out["store_lookup_rate"] = NON_MEMBERS / (time.perf_counter() - t0)
        out["non_members"] = NON_MEMBERS
        out["false_positives"] = int(fp.sum())
        out["non_members_in_store"] = int(np.count_nonzero(in_store))
        if fuse:
            out["width"], out["shards"], out["bits_per_hash"] = bf.width, 1 << bf.shard_bits, bf.bits_per_item
        else:
            out["m"], out["k"], out["capacity"] = bf.m, bf.k, bf.capacity
    finally:
        bf.close()
        st.close()
    return out


def poisson_interval(k: int, n: int) -> tuple[float, float]:
    """An approximate 95% interval for a rate from k events in n trials (exact enough for a table)."""
    if k == 0:
        return 0.0, 3.0 / n
    half = 1.96 * math.sqrt(k)
    return max(0.0, k - half) / n, (k + half) / n


# -- report ----------------------------------------------------------------------------------------


def machine_line() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {cores} cores, {mem:.1f} GiB RAM; Python {platform.python_version()}, numpy {np.__version__}, "
        f"{platform.platform()}"
    )


def filter_bytes(n: int, fp_rate: float) -> int:
    """docs/FORMAT.md: m = ceil(-n ln(eps) / ln(2)^2), rounded up to a multiple of 64; 128-byte header."""
    m = math.ceil(-n * math.log(fp_rate) / math.log(2) ** 2)
    m = max(64, (m + 63) // 64 * 64)
    return HEADER + m // 8


def store_bytes(n: int) -> int:
    """docs/FORMAT.md: header, 8 MiB index, 18 bytes of hash per SHA-1 row (aligned to 8), 4 bytes of count."""
    hashes = HEADER + STORE_INDEX + 18 * n
    return hashes + (-hashes % 8) + 4 * n


def gb(x: float) -> str:
    return f"{x / 1e9:.2f} GB ({x / 2**30:.2f} GiB)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000_000, help="corpus lines (default 100,000,000)")
    parser.add_argument("--workdir", help="where the corpus and artefacts go (default: a new dir under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the corpus and artefacts")
    parser.add_argument("--fp-rate", type=float, default=1e-6, help="the filter's false-positive rate")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the corpus")
    parser.add_argument("--layout", choices=("bloom", "fuse"), default="bloom", help="the filter's layout")
    parser.add_argument("--target", type=int, default=TARGET, help="hashes to project to (default 1.9 billion)")
    parser.add_argument("--child-build", nargs=5, metavar=("CORPUS", "FILTER", "STORE", "FP", "LAYOUT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    opts = parser.parse_args(argv)
    if opts.child_build:
        corpus, filter_path, store_path, fp, layout = opts.child_build
        child_build(corpus, filter_path, store_path, float(fp), layout)
        return 0
    if opts.lines < 1:
        parser.error("--lines must be positive")

    made = opts.workdir is None
    workdir = tempfile.mkdtemp(prefix="credcheck-scale-", dir="/tmp") if made else opts.workdir
    os.makedirs(workdir, exist_ok=True)
    corpus = os.path.join(workdir, "pwned-sha1.txt")
    filter_path = os.path.join(workdir, f"pwned.{opts.layout}")
    store_path = os.path.join(workdir, "pwned.store")
    try:
        n = opts.lines
        log(f"generating {n:,} lines into {corpus}")
        t0 = time.perf_counter()
        corpus_size, members, member_counts, cstats = generate(corpus, n, opts.seed)
        gen_s = time.perf_counter() - t0
        log(f"generated {gb(corpus_size)} in {gen_s:.1f} s; building (child process)")
        built = run_build(corpus, filter_path, store_path, opts.fp_rate, opts.layout)
        rep = built["report"]
        log(f"built in {built['wall']:.1f} s; spot checks")
        checks = spot_check(filter_path, store_path, members, member_counts, opts.seed)
        fsize, ssize = os.path.getsize(filter_path), os.path.getsize(store_path)
        print_report(opts, n, corpus_size, gen_s, cstats, built, checks, fsize, ssize)
        problems = []
        if not (rep["lines_read"] == n and rep["kept"] == n and rep["bad_lines"] == 0 and built["reconciles"]):
            problems.append("the build report does not account for every line")
        if not rep["sorted_input"]:
            problems.append("the builder did not see the input as sorted")
        if checks["members_in_filter"] != checks["members"] or checks["member_counts_exact"] != checks["members"]:
            problems.append("a member was missed or its count is wrong")
        if checks["non_members_in_store"]:
            problems.append("the store found random digests")
        if ssize != store_bytes(n) or (opts.layout == "bloom" and fsize != filter_bytes(n, opts.fp_rate)):
            problems.append("an artefact's size differs from docs/FORMAT.md's formula")
        if opts.layout == "fuse" and 8 * fsize / n > 1.15 * math.log2(1 / opts.fp_rate):
            problems.append("the fuse filter takes more than 1.15 x log2(1/fp_rate) bits a hash")
        for p in problems:
            print(f"\n**PROBLEM: {p}**")
        return 1 if problems else 0
    finally:
        if opts.keep:
            log(f"kept {workdir}")
        else:
            for path in (corpus, filter_path, store_path):
                if os.path.exists(path):
                    os.remove(path)
            if made:
                shutil.rmtree(workdir, ignore_errors=True)


def print_report(
    opts: argparse.Namespace,
    n: int,
    corpus_size: int,
    gen_s: float,
    cstats: dict[str, float],
    built: dict[str, Any],
    checks: dict[str, Any],
    fsize: int,
    ssize: int,
) -> None:
    rep = built["report"]
    secs = rep["seconds"]
    rate = rep["lines_read"] / secs
    rss = built["vm_hwm_kib"] * 1024
    fuse = opts.layout == "fuse"
    # the RSS model: Bloom, the filter's bit array (held in memory until saved) + a fixed part; fuse, a fixed part
    # (one shard's construction; the filter goes to its file shard by shard)
    fixed = rss if fuse else rss - fsize
    lo, hi = poisson_interval(checks["false_positives"], checks["non_members"])
    print(f"## credcheck build at scale: {n:,} SHA-1 lines, fp {opts.fp_rate:g}, {opts.layout} filter\n")
    print(f"machine: {machine_line()}")
    print(f"credcheck {built['version']}, kernels: {built['kernels']}")
    print(
        f"command: .venv/bin/python benchmarks/build_scale.py --lines {n} --fp-rate {opts.fp_rate:g} "
        f"--layout {opts.layout}\n"
    )
    print("| what | measured |")
    print("|---|---|")
    rows = [
        ("corpus", f"{n:,} lines, {gb(corpus_size)}, {corpus_size / n:.1f} bytes/line; counts: "
                   f"{cstats['count_1_share']:.0%} are 1, mean {cstats['mean_count']:.1f}, "
                   f"max {cstats['max_count']:,}"),
        ("corpus generation", f"{gen_s:.1f} s ({n / gen_s / 1e6:.2f} M lines/s)"),
        ("build wall time (`build()`)", f"{secs:.1f} s ({built['child_wall']:.1f} s for the child process)"),
        ("build rate, end to end from HIBP text", f"{rate / 1e6:.2f} M lines/s ({corpus_size / secs / 1e6:.0f} MB/s "
                                                  "of text, read twice)"),
        ("build peak RSS", f"{rss / 2**20:,.0f} MiB (the child's VmHWM; getrusage(RUSAGE_CHILDREN): "
                           f"{built['rusage_children_kib'] / 1024:,.0f} MiB, an upper bound: a child started by "
                           "vfork inherits the parent's high-water mark at exec)"),
        ("  of which the filter's bit array", "none: the fuse filter is written shard by shard" if fuse else
         f"{fsize / 2**20:,.0f} MiB; the rest (fixed): {fixed / 2**20:,.0f} MiB"),
        ("report", f"read {rep['lines_read']:,}, kept {rep['kept']:,}, duplicates {rep['duplicates_merged']:,}, "
                   f"bad {rep['bad_lines']:,}, sorted input: {rep['sorted_input']}, adds up: {built['reconciles']}"),
        ("filter file", f"{fsize:,} bytes = {8 * fsize / n:.2f} bits/hash, the whole file ({checks['width']}-bit "
                        f"prints, {checks['shards']} shards); bound log2(1/eps) = {math.log2(1 / opts.fp_rate):.2f}, "
                        f"x {8 * fsize / n / math.log2(1 / opts.fp_rate):.3f}") if fuse else
        ("filter file", f"{fsize:,} bytes = {8 * (fsize - HEADER) / n:.2f} bits/hash (m = {checks['m']:,}, "
                        f"k = {checks['k']}); optimum 1.44*log2(1/eps) = "
                        f"{1.4427 * math.log2(1 / opts.fp_rate):.2f}"),
        ("store file", f"{ssize:,} bytes = {ssize / n:.2f} bytes/hash (22 + 8 MiB index / n)"),
        ("open + verify (xxh3 of the whole file)", f"filter {1e3 * checks['filter_open_s']:.0f} ms, "
                                                    f"store {1e3 * checks['store_open_s']:.0f} ms"),
        ("members (sampled while generating)", f"{checks['members']:,}: {checks['members_in_filter']:,} in the filter, "
                                               f"{checks['members_in_store']:,} in the store, "
                                               f"{checks['member_counts_exact']:,} with the exact count"),
        ("non-members (random digests)", f"{checks['non_members']:,}: filter FP {checks['false_positives']} "
                                         f"= {checks['false_positives'] / checks['non_members']:.1e} "
                                         f"(95% ~ {lo:.1e}..{hi:.1e}; target {opts.fp_rate:g}); "
                                         f"store found {checks['non_members_in_store']}"),
        ("batched lookups, non-members", f"filter {checks['filter_lookup_rate'] / 1e6:.1f} M/s, "
                                         f"store {checks['store_lookup_rate'] / 1e6:.2f} M/s"),
    ]  # fmt: skip
    for what, value in rows:
        print(f"| {what} | {value} |")

    target = opts.target
    t_target = target / rate
    f_target = round(fsize / n * target) if fuse else filter_bytes(target, opts.fp_rate)
    s_target = store_bytes(target)
    corpus_target = corpus_size / n * target
    print(f"\n### Projection to {target / 1e9:.1f} billion hashes (Pwned Passwords today)\n")
    print("| what | projected | how |")
    print("|---|---|---|")
    proj = [
        ("build time", f"{t_target / 60:.0f} min ({t_target / 3600:.1f} h)",
         f"scales with lines: {target:,} / {rate / 1e6:.2f} M lines/s measured here"),
        ("corpus (HIBP text)", gb(corpus_target), f"{corpus_size / n:.1f} bytes/line as generated"),
        ("filter file", gb(f_target),
         f"{8 * fsize / n:.2f} bits/hash as measured (shards of 2-4 M hashes at any size)" if fuse else
         f"formula, fp {opts.fp_rate:g}: {8 * (f_target - HEADER) / target:.2f} bits/hash"),
        ("store file", gb(s_target), "formula: 22 bytes/hash + 8 MiB index"),
        ("build peak RSS", gb(fixed), "does not scale: one shard's construction (2-4 M hashes at any size) and "
         f"the read buffers, {fixed / 2**20:,.0f} MiB measured") if fuse else
        ("build peak RSS", gb(fixed + f_target),
         f"scales: the filter's bit array ({gb(f_target - HEADER)}); fixed: {fixed / 2**20:,.0f} MiB measured "
         "(read buffers, index, interpreter)"),
        ("disk during the build", gb(corpus_target + f_target + s_target),
         "corpus + the two artefacts (sorted input needs no temporary runs)"),
    ]  # fmt: skip
    for what, value, how in proj:
        print(f"| {what} | {value} | {how} |")


if __name__ == "__main__":
    sys.exit(main())
