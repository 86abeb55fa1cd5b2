"""Filter throughput and size: credcheck against rbloom, fastbloom-rs and pybloom-live, from one run.

Prints the environment, then ONE markdown table: each library's figure per row and credcheck's
ratio to each peer (credcheck / peer). Every timed figure is the median of ``--repeat`` runs after
one warm-up; the garbage collector is off inside timed regions (as ``timeit`` does).

    .venv/bin/python benchmarks/filter_throughput.py            # 10M items at fp 1e-6 (~5 min)
    .venv/bin/python benchmarks/filter_throughput.py --quick    # smoke run, 1M items

docs/BENCHMARKS.md explains every row and records a measured table.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

import numpy as np
import numpy.typing as npt
import xxhash

import credcheck
import credcheck.bloom
from credcheck import BloomFilter

KEY = 20  # SHA-1 digest size
PYBLOOM_MARK = " *"  # pybloom-live: a 1M-item filter (or fewer); interpreter-bound
PYBLOOM_MAX_ITEMS = 1_000_000  # pybloom-live is interpreter-bound: its rate does not depend on filter size
# Ceilings from /work/shared/ANCHORS.md (measured on this kind of machine, not by this script):
RANDOM_BITSETS_PER_S = 93e6  # random 8-byte reads from a 1 GiB array, batched, one core
NONMEMBER_CEILING = 45e6  # standard layout, non-members stopping at the first unset bit

Keys = npt.NDArray[np.uint8]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- timing ----------------------------------------------------------------------------------------


Job = tuple[Callable[[], Any], Callable[[], Any] | None]  # (timed call, warm-up call or None = itself)


def medians(jobs: dict[str, Job], repeat: int) -> dict[str, float]:
    """Median wall time of each job over ``repeat`` rounds, after one warm-up call each.

    The jobs are interleaved round by round (A B C, A B C, ...) so that a noisy neighbour slows
    every library alike instead of the one that happened to run at the time.
    """
    for fn, warmup in jobs.values():
        (warmup or fn)()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeat):
        for name, (fn, _warmup) in jobs.items():
            gc.collect()
            gc.disable()
            try:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
            finally:
                gc.enable()
    return {name: statistics.median(ts) for name, ts in times.items()}


# -- data ------------------------------------------------------------------------------------------


def random_digests(rng: np.random.Generator, n: int) -> Keys:
    return np.frombuffer(rng.bytes(n * KEY), dtype=np.uint8).reshape(n, KEY).copy()


def as_bytes_list(arr: Keys) -> list[bytes]:
    """One ``bytes`` object per row (not ``view('S20').tolist()``, which strips trailing NUL bytes)."""
    buf = arr.tobytes()
    return [buf[i : i + KEY] for i in range(0, len(buf), KEY)]


HEX_DIGITS = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)


def write_hibp(path: str, digests: Keys, rng: np.random.Generator, chunk: int = 1 << 20) -> int:
    """Write ``digests`` sorted, as HIBP's downloader does: ``HEX:COUNT`` lines, upper-case, CRLF."""
    order = np.argsort(digests.view(f"S{KEY}").ravel(), kind="stable")
    size = 0
    with open(path, "wb") as out:
        for start in range(0, len(order), chunk):
            rows = digests[order[start : start + chunk]]
            hexed = np.empty((len(rows), 2 * KEY), dtype=np.uint8)
            hexed[:, 0::2] = HEX_DIGITS[rows >> 4]
            hexed[:, 1::2] = HEX_DIGITS[rows & 15]
            text = hexed.tobytes()
            counts = rng.geometric(0.02, size=len(rows)).tolist()  # 1 .. a few hundred, like HIBP's tail
            block = b"".join(b"%s:%d\r\n" % (text[i * 2 * KEY : (i + 1) * 2 * KEY], c) for i, c in enumerate(counts))
            out.write(block)
            size += len(block)
    return size


# -- peers -----------------------------------------------------------------------------------------


def persistent_hash(key: bytes) -> int:
    """rbloom needs an explicit, process-independent hash for a filter that can be saved (ANCHORS.md)."""
    return xxhash.xxh3_128_intdigest(key) - 2**127


def loop_contains(contains: Callable[[bytes], bool], keys: Sequence[bytes]) -> int:
    hits = 0
    for key in keys:
        if contains(key):
            hits += 1
    return hits


def loop_in(bf: Any, keys: Sequence[bytes]) -> int:
    hits = 0
    for key in keys:
        if key in bf:
            hits += 1
    return hits


def time_builds(
    members: Keys, fp: float, repeat: int, pb_items: int, warm: int
) -> tuple[dict[str, dict[str, Any]], BloomFilter, BloomFilter, Any, Any, Any, list[bytes]]:
    """Time every library's build from the same digests; the peers take a list of ``bytes``.

    The list costs ~60 bytes per item; it is freed on return except pybloom-live's slice.
    """
    import fastbloom_rs
    import pybloom_live
    import rbloom

    n = len(members)
    keys = as_bytes_list(members)
    pb_keys = keys[:pb_items]

    def cc_build(rate: float, arr: Keys) -> BloomFilter:
        bf = BloomFilter.create(len(arr), rate)
        bf.update(arr)
        return bf

    def fb_build(rate: float, ks: list[bytes]) -> Any:
        bf = fastbloom_rs.BloomFilter(len(ks), rate)
        bf.add_bytes_batch(ks)
        return bf

    def rb_build(ks: list[bytes]) -> Any:
        bf = rbloom.Bloom(len(ks), fp, persistent_hash)
        bf.update(ks)
        return bf

    def pb_build(ks: list[bytes]) -> Any:
        bf = pybloom_live.BloomFilter(capacity=len(ks), error_rate=fp)
        add = bf.add
        for key in ks:
            add(key)
        return bf

    log(f"builds: credcheck, fastbloom-rs, rbloom ({n:,} items), pybloom-live ({pb_items:,} items)")
    jobs: dict[str, Job] = {
        "cc-6": (lambda: cc_build(fp, members), lambda: cc_build(fp, members[:warm])),
        "cc-3": (lambda: cc_build(1e-3, members), lambda: cc_build(1e-3, members[:warm])),
        "fb-6": (lambda: fb_build(fp, keys), lambda: fb_build(fp, keys[:warm])),
        "fb-3": (lambda: fb_build(1e-3, keys), lambda: fb_build(1e-3, keys[:warm])),
        "rb-6": (lambda: rb_build(keys), lambda: rb_build(keys[: min(warm, 100_000)])),
        "pb-6": (lambda: pb_build(pb_keys), lambda: pb_build(pb_keys[:20_000])),
    }
    t = medians(jobs, repeat)
    builds: dict[str, dict[str, Any]] = {
        "1e-6": {
            "credcheck": n / t["cc-6"] / 1e6,
            "fastbloom-rs": n / t["fb-6"] / 1e6,
            "rbloom": n / t["rb-6"] / 1e6,
            "pybloom-live": (pb_items / t["pb-6"] / 1e6, PYBLOOM_MARK),
        },
        "1e-3": {"credcheck": n / t["cc-3"] / 1e6, "fastbloom-rs": n / t["fb-3"] / 1e6},
    }
    return (
        builds,
        cc_build(fp, members),
        cc_build(1e-3, members),
        fb_build(fp, keys),
        rb_build(keys),
        pb_build(pb_keys),
        pb_keys,
    )


# -- the run ---------------------------------------------------------------------------------------


def environment(args: argparse.Namespace) -> list[str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            match = re.search(r"^model name\s*:\s*(.+)$", fh.read(), re.M)
            cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    names = ("credcheck", "numpy", "xxhash", "rbloom", "fastbloom-rs", "pybloom-live")
    versions = []
    for name in names:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    threads = {k: v for k, v in os.environ.items() if re.search(r"THREAD|OPENBLAS|^OMP_|^MKL_|^BLIS_", k)}
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    source = "not a git checkout"
    try:
        git = ["git", "-C", os.path.dirname(os.path.abspath(__file__))]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "../src"], capture_output=True, text=True, timeout=10
        )
        if head.returncode == 0:
            source = f"git {head.stdout.strip()}" + (" + uncommitted changes in src/" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return [
        f"cpu: {cpu} ({os.cpu_count()} logical cores; load average {load} at start)",
        f"python {platform.python_version()} ({platform.python_implementation()}), {platform.platform()}",
        "versions: " + ", ".join(versions),
        f"credcheck.bloom.KERNELS = {credcheck.bloom.KERNELS!r}; source: {source}",
        "threadpool variables: " + (", ".join(f"{k}={v}" for k, v in sorted(threads.items())) or "none set"),
        f"run: items={args.items:,} fp_rate={args.fp_rate:g} probes={args.probes:,} "
        f"single_probes={args.single_probes:,} fp_probes={args.fp_probes:,} repeat={args.repeat} seed={args.seed}",
    ]


class Table:
    """Rows of (label, unit, {library: value or text}); ratios credcheck / peer for numeric cells."""

    LIBS = ("credcheck", "fastbloom-rs", "rbloom", "pybloom-live")

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, dict[str, float | str | None], str, bool]] = []

    def add(
        self,
        label: str,
        unit: str,
        cells: dict[str, float | str | None],
        fmt: str = "{:.2f}",
        ratios: bool = True,
    ) -> None:
        self.rows.append((label, unit, cells, fmt, ratios))

    @staticmethod
    def _value(cell: float | str | None) -> float | None:
        if isinstance(cell, int | float):
            return float(cell)
        if isinstance(cell, tuple):
            return float(cell[0])
        return None

    def _cell(self, cell: Any, fmt: str) -> str:
        if cell is None:
            return "—"
        if isinstance(cell, str):
            return cell
        if isinstance(cell, tuple):  # (value, marker)
            return fmt.format(cell[0]) + cell[1]
        return fmt.format(cell)

    def render(self) -> str:
        head = ["what", "unit", *self.LIBS, "÷ fastbloom-rs", "÷ rbloom", "÷ pybloom-live"]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---"] + ["---:"] * 7) + "|"]
        for label, unit, cells, fmt, ratios in self.rows:
            out = [label, unit] + [self._cell(cells.get(lib), fmt) for lib in self.LIBS]
            ours = self._value(cells.get("credcheck"))
            for peer in self.LIBS[1:]:
                theirs = self._value(cells.get(peer))
                ok = ratios and ours is not None and theirs
                out.append(f"{ours / theirs:.1f}x" if ok else "")  # type: ignore[operator]
            lines.append("| " + " | ".join(out) + " |")
        return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    n, fp, repeat = args.items, args.fp_rate, args.repeat
    rng = np.random.default_rng(args.seed)
    env = environment(args)
    table = Table()
    PB = PYBLOOM_MARK
    LOOP = " †"  # no batch API: a per-item Python loop

    log(f"generating {n:,} random {KEY}-byte digests and probe sets")
    members = random_digests(rng, n)
    half = args.probes // 2
    probe_in = members[rng.integers(0, n, args.probes)]
    probe_out = random_digests(rng, args.probes)
    probe_mix = np.concatenate([probe_in[:half], probe_out[: args.probes - half]])
    probe_mix = probe_mix[rng.permutation(len(probe_mix))]
    sets = {"mixed": probe_mix, "members": probe_in, "non-members": probe_out}
    expect = {"mixed": half, "members": args.probes, "non-members": 0}  # hits in a perfect set
    single = probe_mix[: args.single_probes]

    # ---- 1. build from a digest array -----------------------------------------------------------
    pb_items = min(n, PYBLOOM_MAX_ITEMS if not args.quick else 200_000)
    builds, cc, cc3, fb, rb, pb, pb_member_keys = time_builds(members, fp, repeat, pb_items, min(n, 1_000_000))
    gc.collect()

    table.add(f"build from digest array, fp {fp:g}", "M items/s", builds["1e-6"])
    table.add("build from digest array, fp 0.001", "M items/s", builds["1e-3"])
    table.add(
        "↳ credcheck as % of build ceiling, 93 M bit-sets/s ÷ k (filter ≫ cache)",
        "%",
        {
            "credcheck": f"{100 * builds['1e-6']['credcheck'] * 1e6 * cc.k / RANDOM_BITSETS_PER_S:.0f}% "  # type: ignore[operator]
            f"(k={cc.k}) / {100 * builds['1e-3']['credcheck'] * 1e6 * cc3.k / RANDOM_BITSETS_PER_S:.0f}% "  # type: ignore[operator]
            f"(k={cc3.k} at 1e-3)"
        },
        ratios=False,
    )

    # ---- 2. build end to end from HIBP text -----------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="credcheck-bench-") as tmp:
        src = os.path.join(tmp, "pwned-passwords-sha1-ordered-by-hash.txt")
        log("writing the HIBP-format text file")
        size = write_hibp(src, members, rng)
        out = os.path.join(tmp, "bench.bloom")
        reports: list[credcheck.BuildReport] = []

        def hibp_build() -> None:
            reports.append(credcheck.build([src], filter=out, fp_rate=fp))

        log(f"build: credcheck.build() from {size / 1e6:.0f} MB of HIBP text")
        t = medians({"hibp": (hibp_build, None)}, repeat)["hibp"]
        lines = reports[-1].lines_read
        if reports[-1].kept != n or reports[-1].bad_lines:
            log(f"WARNING: HIBP build kept {reports[-1].kept:,} of {n:,} ({reports[-1].bad_lines} bad lines)")
        built = BloomFilter.open(out)
        if not built.contains_many(probe_in).all():
            log("ERROR: the filter built from HIBP text misses members")
    table.add("build end to end from HIBP text (2 parse passes)", "M lines/s", {"credcheck": lines / t / 1e6})

    # ---- 3. batched lookups ----------------------------------------------------------------------
    peer_sets: dict[str, list[bytes]] = {}
    pb_sets: dict[str, list[bytes]] = {}
    pb_probes = min(args.probes, args.single_probes)
    pb_in = [pb_member_keys[i] for i in rng.integers(0, pb_items, pb_probes)]
    pb_out = as_bytes_list(random_digests(rng, pb_probes))
    pb_mix = pb_in[: pb_probes // 2] + pb_out[: pb_probes - pb_probes // 2]
    pb_mix = [pb_mix[i] for i in rng.permutation(len(pb_mix))]
    pb_sets = {"mixed": pb_mix, "members": pb_in, "non-members": pb_out}
    hits: dict[str, dict[str, int]] = {lib: {} for lib in Table.LIBS}
    for name, arr in sets.items():
        peer_sets[name] = as_bytes_list(arr)
        log(f"batched lookups: {name}")
        ks, pks = peer_sets[name], pb_sets[name]
        t = medians(
            {
                "credcheck": (lambda arr=arr: cc.contains_many(arr), None),
                "fastbloom-rs": (lambda ks=ks: fb.contains_bytes_batch(ks, False), None),
                "rbloom": (lambda ks=ks: loop_in(rb, ks), None),
                "pybloom-live": (lambda pks=pks: loop_in(pb, pks), None),
            },
            repeat,
        )
        cells: dict[str, Any] = {
            "credcheck": len(arr) / t["credcheck"] / 1e6,
            "fastbloom-rs": len(ks) / t["fastbloom-rs"] / 1e6,
            "rbloom": (len(ks) / t["rbloom"] / 1e6, LOOP),
            "pybloom-live": (len(pks) / t["pybloom-live"] / 1e6, PB + LOOP),
        }
        hits["credcheck"][name] = int(cc.contains_many(arr).sum())
        hits["fastbloom-rs"][name] = sum(fb.contains_bytes_batch(ks, False))
        hits["rbloom"][name] = loop_in(rb, ks)
        hits["pybloom-live"][name] = loop_in(pb, pks)
        table.add(f"batched lookups, {name} ({len(arr):,} probes)", "M/s", cells)
    for lib in ("credcheck", "fastbloom-rs", "rbloom"):
        if hits[lib]["members"] != expect["members"]:
            log(f"ERROR: {lib} missed {expect['members'] - hits[lib]['members']} members (false negatives)")
    # DRAM ceiling of a standard layout (ANCHORS.md): members pay k misses, non-members stop early
    pos_ceiling = RANDOM_BITSETS_PER_S / cc.k
    mix_ceiling = 2 / (1 / pos_ceiling + 1 / NONMEMBER_CEILING)
    cc_mixed = table.rows[-3][2]["credcheck"]
    table.add(
        "↳ credcheck mixed as % of lookup ceiling (filter ≫ cache)",
        "%",
        {"credcheck": f"{100 * cc_mixed * 1e6 / mix_ceiling:.0f}% of {mix_ceiling / 1e6:.1f} M/s"},  # type: ignore[operator]
        ratios=False,
    )

    # ---- 4. single lookups -----------------------------------------------------------------------
    log(f"single lookups ({len(single):,} mixed probes)")
    one = as_bytes_list(single)
    pb_one = pb_mix[: len(one)]
    t = medians(
        {
            "credcheck": (lambda: loop_in(cc, one), None),
            "fastbloom-rs": (lambda: loop_contains(fb.contains_bytes, one), None),
            "rbloom": (lambda: loop_in(rb, one), None),
            "pybloom-live": (lambda: loop_in(pb, pb_one), None),
        },
        repeat,
    )
    cells = {lib: len(one) / t[lib] / 1e6 for lib in ("credcheck", "fastbloom-rs", "rbloom")}
    cells["pybloom-live"] = (len(pb_one) / t["pybloom-live"] / 1e6, PB)
    table.add(f"single lookups `key in bf`, mixed ({len(one):,} probes)", "M/s", cells)

    # ---- 5. false positives and size -------------------------------------------------------------
    log(f"false positives: credcheck on {args.fp_probes:,} non-members")
    fps = checked = 0
    fps3 = checked3 = 0
    while checked < args.fp_probes:
        block = random_digests(rng, min(2_000_000, args.fp_probes - checked))
        fps += int(cc.contains_many(block).sum())
        checked += len(block)
        if checked3 < 2_000_000:
            fps3 += int(cc3.contains_many(block).sum())
            checked3 += len(block)

    def fp_cell(found: int, probes: int) -> str:
        return f"{found / probes:.2g} ({found}/{probes:,})"

    table.add(
        f"measured FP rate at fp {fp:g}",
        "rate (hits/probes)",
        {
            "credcheck": fp_cell(fps, checked),
            "fastbloom-rs": fp_cell(hits["fastbloom-rs"]["non-members"], args.probes),
            "rbloom": fp_cell(hits["rbloom"]["non-members"], args.probes),
            "pybloom-live": fp_cell(hits["pybloom-live"]["non-members"], pb_probes) + PB,
        },
        ratios=False,
    )
    table.add(
        f"FP rate expected from the filter's fill, fp {fp:g}",
        "rate",
        {"credcheck": f"{cc.expected_fp_rate():.2g}"},
        ratios=False,
    )
    table.add(
        "measured FP rate at fp 0.001 (expected from fill)",
        "rate (hits/probes)",
        {"credcheck": fp_cell(fps3, checked3) + f" ({cc3.expected_fp_rate():.3g})"},
        ratios=False,
    )
    optimum = 1.44 * math.log2(1 / fp)
    bits = {
        "credcheck": cc.m / n,
        "fastbloom-rs": fb.config().size() / n,
        "rbloom": rb.size_in_bits / n,
        "pybloom-live": (pb.num_bits / pb_items, PB),
    }
    table.add(f"bits per item (lower is better; optimum {optimum:.1f})", "bits", bits, fmt="{:.1f}")
    table.add(
        "bits per item over the Bloom optimum 1.44·log2(1/ε)",
        "%",
        {lib: f"{100 * (Table._value(v) / optimum - 1):+.1f}%" for lib, v in bits.items()},  # type: ignore[operator]
        ratios=False,
    )
    table.add(
        "hash functions k",
        "",
        {"credcheck": cc.k, "fastbloom-rs": fb.hashes(), "rbloom": "—", "pybloom-live": pb.num_slices},
        fmt="{:d}",
        ratios=False,
    )

    print("\n".join(env))
    print()
    print(table.render())
    print()
    notes = [
        f"Figures are medians of {repeat} runs after one warm-up; ratios are credcheck ÷ peer.",
        f"* pybloom-live: a filter of {pb_items:,} items and {pb_probes:,} probes per set; it is",
        "  interpreter-bound (its rate does not depend on the filter's size).",
        "† no batch API: a per-item Python loop (`key in bf`).",
        "rbloom: hash_func = xxh3_128_intdigest(b) - 2**127 (a persistent hash, as a saved filter needs).",
        "Ceilings (93 M random bit-sets/s per core; 45 M/s non-member lookups) are ANCHORS.md's, not measured here.",
    ]
    print("\n".join(notes), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000_000, help="items in each filter (default 10M)")
    parser.add_argument("--fp-rate", type=float, default=1e-6, help="target false-positive rate (default 1e-6)")
    parser.add_argument("--probes", type=int, default=2_000_000, help="probes per batched lookup set")
    parser.add_argument(
        "--single-probes", type=int, default=200_000, help="probes for single lookups and for pybloom-live's loops"
    )
    parser.add_argument(
        "--fp-probes", type=int, default=20_000_000, help="non-members used to measure credcheck's false-positive rate"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure (median is reported)")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1M items, 200k probes, 3 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.probes, args.single_probes = 1_000_000, 200_000, 50_000
        args.fp_probes, args.repeat = 2_000_000, 3
    if args.items < 2 or args.probes < 2 or args.repeat < 1:
        parser.error("--items, --probes must be at least 2 and --repeat at least 1")
    run(args)


if __name__ == "__main__":
    main()
