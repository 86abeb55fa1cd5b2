"""Filter throughput and size, both layouts, from one run: credcheck's Bloom layout against rbloom,
fastbloom-rs, pybloom-live and abloom; credcheck's fuse layout against its Bloom layout and the fuse filters
on the registry, binaryfuse and pyfusefilter.

Prints the environment, then TWO markdown tables (the Bloom layout and its peers; the fuse layout, the Bloom
layout and the fuse peers): each library's figure per row and credcheck's ratio to each peer (credcheck /
peer). Every timed figure is the median of ``--repeat`` runs after one warm-up, libraries interleaved round
by round; the garbage collector is off inside timed regions (as ``timeit`` does).

    .venv/bin/python benchmarks/filter_throughput.py            # 10M items at fp 1e-6 (~5 min)
    .venv/bin/python benchmarks/filter_throughput.py --quick    # smoke run, 1M items

docs/BENCHMARKS.md explains every row and records a measured table.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
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
from credcheck.fuse import FuseFilter

KEY = 20  # SHA-1 digest size
PYBLOOM_MARK = " *"  # pybloom-live: a 1M-item filter (or fewer); interpreter-bound
PYBLOOM_MAX_ITEMS = 1_000_000  # pybloom-live is interpreter-bound: its rate does not depend on filter size
# Ceilings from /work/shared/ANCHORS.md (measured on this kind of machine, not by this script):
RANDOM_BITSETS_PER_S = 93e6  # random 8-byte reads from a 1 GiB array, batched, one core
NONMEMBER_CEILING = 45e6  # standard layout, non-members stopping at the first unset bit

Keys = npt.NDArray[np.uint8]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def peak_memory_mb(fn: Callable[[], Any]) -> float | None:
    """Peak resident memory ``fn`` adds above what the process held before it (MB), or None where the peak
    cannot be reset (/proc/self/clear_refs, Linux). Run it in a fresh process (:func:`peak_in_child`): in one
    that built before, freed memory that malloc kept is reused and the peak shows too little."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak (VmHWM) to the current resident size
    except OSError:
        return None
    before = _status_kb("VmRSS")
    result = fn()
    peak = _status_kb("VmHWM")
    del result
    gc.collect()
    return (peak - before) / 1024


def peak_in_child(args: argparse.Namespace, job: str, hibp: str | None = None) -> float | None:
    """The peak memory of one build ``job`` (see :func:`build_jobs`; or "hibp-bloom" / "hibp-fuse" from the
    ``hibp`` file) above its input, measured in a fresh process that makes the same input from the same seed."""
    argv = [sys.executable, os.path.abspath(__file__), "--memory-of", job, "--items", str(args.items)]
    argv += ["--fp-rate", repr(args.fp_rate), "--seed", str(args.seed)] + (["--hibp", hibp] if hibp else [])
    argv += ["--quick"] if args.quick else []
    # A fixed mmap threshold: every large block is mapped afresh and unmapped when freed, so a build cannot hide
    # its memory in blocks the input's preparation freed (glibc otherwise raises the threshold as blocks go).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, env=env)
    if done.returncode != 0:
        log(f"WARNING: measuring the memory of {job} failed: {done.stderr.strip()[-300:]}")
        return None
    return float(done.stdout) if done.stdout.strip() != "None" else None


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


class PyFuse16:
    """pyfusefilter's Fuse16 through its C library: its Python class hashes ``str(key)``, which xxhash >= 4 refuses
    (ANCHORS.md), so the keys (64-bit ints) go to ``binary_fuse16_populate`` / ``_contain`` as its class would."""

    def __init__(self, words: npt.NDArray[np.uint64]) -> None:
        from pyfusefilter._xorfilter import ffi, lib

        self._lib, self._filter = lib, ffi.new("binary_fuse16_t *")
        if not lib.binary_fuse16_allocate(len(words), self._filter):
            raise MemoryError("binary_fuse16_allocate failed")
        if not lib.binary_fuse16_populate(ffi.from_buffer("uint64_t[]", words), len(words), self._filter):
            raise RuntimeError("binary_fuse16_populate failed")
        contain, handle = lib.binary_fuse16_contain, self._filter
        self.contain: Callable[[int], bool] = lambda word: contain(word, handle)  # as its class calls it

    def __contains__(self, word: int) -> bool:
        return bool(self._lib.binary_fuse16_contain(word, self._filter))

    def size_in_bytes(self) -> int:
        return int(self._lib.binary_fuse16_size_in_bytes(self._filter))

    def __del__(self) -> None:
        self._lib.binary_fuse16_free(self._filter)


def words_of(arr: Keys) -> npt.NDArray[np.uint64]:
    """The 64-bit keys the fuse peers take: each digest's first 8 bytes (digests are uniformly random)."""
    return np.ascontiguousarray(arr[:, :8]).view("<u8").ravel().copy()


@dataclasses.dataclass
class Built:
    """Every library's filter of the same ``n`` digests, and what their builds cost."""

    rates: dict[str, float]  # job -> M items/s
    memory: dict[str, float | None]  # job -> peak MB above the input
    cc: BloomFilter
    cc3: BloomFilter
    fuse: FuseFilter
    fb: Any
    rb: Any
    pb: Any
    ab: Any
    bf16: Any
    pf16: PyFuse16
    pb_keys: list[bytes]


def build_jobs(
    members: Keys, fp: float, pb_items: int, warm: int, workdir: str
) -> tuple[dict[str, Job], dict[str, Callable[..., Any]], list[bytes], npt.NDArray[np.uint64]]:
    """Every library's build of the same digests, as jobs for :func:`medians`, and the builders: the Bloom
    peers take a list of ``bytes`` (~60 bytes per item), the fuse peers their 64-bit keys (a numpy array),
    credcheck the ``n x 20`` array."""
    import abloom
    import binary_fuse
    import fastbloom_rs
    import pybloom_live
    import rbloom

    keys = as_bytes_list(members)
    words = words_of(members)
    pb_keys = keys[:pb_items]
    fuse_path = os.path.join(workdir, "bench.fuse")

    def cc_build(rate: float, arr: Keys) -> BloomFilter:
        bf = BloomFilter.create(len(arr), rate)
        bf.update(arr)
        return bf

    def cf_build(arr: Keys) -> FuseFilter:
        return FuseFilter.build(fuse_path, arr, fp_rate=fp)

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

    def ab_build(ks: list[bytes]) -> Any:
        bf = abloom.BloomFilter(len(ks), fp, serializable=True)
        bf.update(ks)
        return bf

    jobs: dict[str, Job] = {
        "cc-6": (lambda: cc_build(fp, members), lambda: cc_build(fp, members[:warm])),
        "cc-3": (lambda: cc_build(1e-3, members), lambda: cc_build(1e-3, members[:warm])),
        "cf-6": (lambda: cf_build(members).close(), lambda: cf_build(members[:warm]).close()),
        "fb-6": (lambda: fb_build(fp, keys), lambda: fb_build(fp, keys[:warm])),
        "fb-3": (lambda: fb_build(1e-3, keys), lambda: fb_build(1e-3, keys[:warm])),
        "rb-6": (lambda: rb_build(keys), lambda: rb_build(keys[: min(warm, 100_000)])),
        "pb-6": (lambda: pb_build(pb_keys), lambda: pb_build(pb_keys[:20_000])),
        "ab-6": (lambda: ab_build(keys), lambda: ab_build(keys[:warm])),
        "bf16": (lambda: binary_fuse.BinaryFuse16(words), lambda: binary_fuse.BinaryFuse16(words[:warm])),
        "pf16": (lambda: PyFuse16(words), lambda: PyFuse16(words[:warm])),
    }
    builders = {"cc": cc_build, "cf": cf_build, "fb": fb_build, "rb": rb_build, "pb": pb_build, "ab": ab_build}
    return jobs, builders, keys, words


def time_builds(args: argparse.Namespace, members: Keys, pb_items: int, warm: int, workdir: str) -> Built:
    """Time every library's build from the same digests, interleaved, and measure each one's peak memory.

    The peers' list of keys is freed on return except pybloom-live's slice.
    """
    import binary_fuse

    n, fp = len(members), args.fp_rate
    jobs, make, keys, words = build_jobs(members, fp, pb_items, warm, workdir)
    pb_keys = keys[:pb_items]
    log(f"builds: every library ({n:,} items; pybloom-live {pb_items:,}), interleaved")
    t = medians(jobs, args.repeat)
    sizes = {name: pb_items if name == "pb-6" else n for name in jobs}
    rates = {name: sizes[name] / t[name] / 1e6 for name in jobs}
    log("builds: peak memory of each, each in a fresh process")
    memory = {name: peak_in_child(args, name) for name in jobs if name not in ("cc-3", "fb-3")}
    return Built(
        rates=rates,
        memory=memory,
        cc=make["cc"](fp, members),
        cc3=make["cc"](1e-3, members),
        fuse=make["cf"](members),
        fb=make["fb"](fp, keys),
        rb=make["rb"](keys),
        pb=make["pb"](pb_keys),
        ab=make["ab"](keys),
        bf16=binary_fuse.BinaryFuse16(words),
        pf16=PyFuse16(words),
        pb_keys=pb_keys,
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
    names = (
        "credcheck", "numpy", "xxhash", "rbloom", "fastbloom-rs", "pybloom-live", "abloom", "binaryfuse",
        "pyfusefilter",
    )  # fmt: skip
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
    """Rows of (label, unit, {library: value or text}); ratios ``ours`` / peer for numeric cells."""

    LIBS = ("credcheck", "fastbloom-rs", "rbloom", "pybloom-live", "abloom")

    def __init__(self, libs: Sequence[str] = LIBS, ours: str = "credcheck", ratio_to: Sequence[str] | None = None):
        self.libs, self.ours = tuple(libs), ours
        self.ratio_to = tuple(ratio_to) if ratio_to is not None else tuple(lib for lib in self.libs if lib != ours)
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
        head = ["what", "unit", *self.libs, *(f"÷ {peer}" for peer in self.ratio_to)]
        cols = len(self.libs) + len(self.ratio_to)
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---"] + ["---:"] * cols) + "|"]
        for label, unit, cells, fmt, ratios in self.rows:
            out = [label, unit] + [self._cell(cells.get(lib), fmt) for lib in self.libs]
            ours = self._value(cells.get(self.ours))
            for peer in self.ratio_to:
                theirs = self._value(cells.get(peer))
                ok = ratios and ours is not None and theirs
                out.append(f"{ours / theirs:.1f}x" if ok else "")  # type: ignore[operator]
            lines.append("| " + " | ".join(out) + " |")
        return "\n".join(lines)


def mb(value: float | None) -> str | None:
    return None if value is None else f"{value:,.0f}"


def run(args: argparse.Namespace) -> None:
    n, fp, repeat = args.items, args.fp_rate, args.repeat
    rng = np.random.default_rng(args.seed)
    env = environment(args)
    table = Table()
    fuse_libs = ("credcheck fuse", "credcheck bloom", "binaryfuse", "pyfusefilter")
    ft = Table(fuse_libs, ours="credcheck fuse")
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

    with tempfile.TemporaryDirectory(prefix="credcheck-bench-") as tmp:
        # ---- 1. build from a digest array -------------------------------------------------------
        pb_items = min(n, PYBLOOM_MAX_ITEMS if not args.quick else 200_000)
        b = time_builds(args, members, pb_items, min(n, 1_000_000), tmp)
        gc.collect()
        r = b.rates
        table.add(
            f"build from digest array, fp {fp:g}",
            "M items/s",
            {"credcheck": r["cc-6"], "fastbloom-rs": r["fb-6"], "rbloom": r["rb-6"],
             "pybloom-live": (r["pb-6"], PB), "abloom": r["ab-6"]},
        )  # fmt: skip
        table.add("build from digest array, fp 0.001", "M items/s", {"credcheck": r["cc-3"], "fastbloom-rs": r["fb-3"]})
        table.add(
            "↳ credcheck as % of build ceiling, 93 M bit-sets/s ÷ k (filter ≫ cache)",
            "%",
            {
                "credcheck": f"{100 * r['cc-6'] * 1e6 * b.cc.k / RANDOM_BITSETS_PER_S:.0f}% (k={b.cc.k}) / "
                f"{100 * r['cc-3'] * 1e6 * b.cc3.k / RANDOM_BITSETS_PER_S:.0f}% (k={b.cc3.k} at 1e-3)"
            },
            ratios=False,
        )
        m = b.memory
        table.add(
            "build: peak memory above the input",
            "MB",
            {"credcheck": mb(m["cc-6"]), "fastbloom-rs": mb(m["fb-6"]), "rbloom": mb(m["rb-6"]),
             "pybloom-live": mb(m["pb-6"]), "abloom": mb(m["ab-6"])},
            ratios=False,
        )  # fmt: skip
        ft.add(
            f"build from digest array, fp {fp:g} (fuse peers: 16-bit prints)",
            "M items/s",
            {"credcheck fuse": r["cf-6"], "credcheck bloom": r["cc-6"], "binaryfuse": r["bf16"],
             "pyfusefilter": r["pf16"]},
        )  # fmt: skip
        ft.add(
            "build: peak memory above the input (credcheck fuse: file written shard by shard)",
            "MB",
            {"credcheck fuse": mb(m["cf-6"]), "credcheck bloom": mb(m["cc-6"]), "binaryfuse": mb(m["bf16"]),
             "pyfusefilter": mb(m["pf16"])},
            ratios=False,
        )  # fmt: skip

        # ---- 2. build end to end from HIBP text -------------------------------------------------
        src = os.path.join(tmp, "pwned-passwords-sha1-ordered-by-hash.txt")
        log("writing the HIBP-format text file")
        size = write_hibp(src, members, rng)
        outs = {"bloom": os.path.join(tmp, "hibp.bloom"), "fuse": os.path.join(tmp, "hibp.fuse")}
        reports: dict[str, list[credcheck.BuildReport]] = {"bloom": [], "fuse": []}

        def hibp_build(layout: str) -> None:
            reports[layout].append(credcheck.build([src], filter=outs[layout], fp_rate=fp, layout=layout))

        log(f"build: credcheck.build() from {size / 1e6:.0f} MB of HIBP text, both layouts, interleaved")
        t = medians({layout: (functools.partial(hibp_build, layout), None) for layout in outs}, repeat)
        log("build from HIBP text: peak memory of each layout, each in a fresh process")
        hibp_memory = {layout: peak_in_child(args, f"hibp-{layout}", src) for layout in outs}
        lines = reports["bloom"][-1].lines_read
        for layout in outs:
            if reports[layout][-1].kept != n or reports[layout][-1].bad_lines:
                log(f"WARNING: HIBP {layout} build kept {reports[layout][-1].kept:,} of {n:,}")
            opened = credcheck.open(outs[layout])
            if not all(e.compromised for e in opened.check_hashes(bytes(row).hex() for row in probe_in[:100_000])):
                log(f"ERROR: the {layout} filter built from HIBP text misses members")
            opened.close()
    table.add("build end to end from HIBP text (2 parse passes)", "M lines/s", {"credcheck": lines / t["bloom"] / 1e6})
    ft.add(
        "build end to end from HIBP text (2 parse passes)",
        "M lines/s",
        {"credcheck fuse": lines / t["fuse"] / 1e6, "credcheck bloom": lines / t["bloom"] / 1e6},
    )
    ft.add(
        "↳ its peak memory above the start",
        "MB",
        {"credcheck fuse": mb(hibp_memory["fuse"]), "credcheck bloom": mb(hibp_memory["bloom"])},
        ratios=False,
    )

    cc, cc3, fb, rb, pb, ab = b.cc, b.cc3, b.fb, b.rb, b.pb, b.ab
    fuse, bf16, pf16 = b.fuse, b.bf16, b.pf16
    # ---- 3. batched lookups --------------------------------------------------------------------------
    pb_probes = min(args.probes, args.single_probes)
    pb_in = [b.pb_keys[i] for i in rng.integers(0, pb_items, pb_probes)]
    pb_out = as_bytes_list(random_digests(rng, pb_probes))
    pb_mix = pb_in[: pb_probes // 2] + pb_out[: pb_probes - pb_probes // 2]
    pb_mix = [pb_mix[i] for i in rng.permutation(len(pb_mix))]
    pb_sets = {"mixed": pb_mix, "members": pb_in, "non-members": pb_out}
    libs = (*Table.LIBS, *fuse_libs[2:], "credcheck fuse")
    hits: dict[str, dict[str, int]] = {lib: {} for lib in libs}
    for name, arr in sets.items():
        ks, pks, ws = as_bytes_list(arr), pb_sets[name], words_of(arr).tolist()
        log(f"batched lookups: {name}")
        t = medians(
            {
                "credcheck": (lambda arr=arr: cc.contains_many(arr), None),
                "credcheck fuse": (lambda arr=arr: fuse.contains_many(arr), None),
                "fastbloom-rs": (lambda ks=ks: fb.contains_bytes_batch(ks, False), None),
                "rbloom": (lambda ks=ks: loop_in(rb, ks), None),
                "pybloom-live": (lambda pks=pks: loop_in(pb, pks), None),
                "abloom": (lambda ks=ks: loop_in(ab, ks), None),
                "binaryfuse": (lambda ws=ws: loop_contains(bf16.contains, ws), None),
                "pyfusefilter": (lambda ws=ws: loop_contains(pf16.contain, ws), None),
            },
            repeat,
        )
        rate = {lib: (len(pb_sets[name]) if lib == "pybloom-live" else len(arr)) / t[lib] / 1e6 for lib in t}
        table.add(
            f"batched lookups, {name} ({len(arr):,} probes)",
            "M/s",
            {"credcheck": rate["credcheck"], "fastbloom-rs": rate["fastbloom-rs"], "rbloom": (rate["rbloom"], LOOP),
             "pybloom-live": (rate["pybloom-live"], PB + LOOP), "abloom": (rate["abloom"], LOOP)},
        )  # fmt: skip
        ft.add(
            f"batched lookups, {name} ({len(arr):,} probes)",
            "M/s",
            {"credcheck fuse": rate["credcheck fuse"], "credcheck bloom": rate["credcheck"],
             "binaryfuse": (rate["binaryfuse"], LOOP), "pyfusefilter": (rate["pyfusefilter"], LOOP)},
        )  # fmt: skip
        hits["credcheck"][name] = int(cc.contains_many(arr).sum())
        hits["credcheck fuse"][name] = int(fuse.contains_many(arr).sum())
        hits["fastbloom-rs"][name] = sum(fb.contains_bytes_batch(ks, False))
        hits["rbloom"][name] = loop_in(rb, ks)
        hits["pybloom-live"][name] = loop_in(pb, pks)
        hits["abloom"][name] = loop_in(ab, ks)
        hits["binaryfuse"][name] = loop_contains(bf16.contains, ws)
        hits["pyfusefilter"][name] = loop_contains(pf16.contain, ws)
    missed = {lib: expect["members"] - hits[lib]["members"] for lib in libs if lib != "pybloom-live"}
    for lib, count in missed.items():
        if count:
            log(f"ERROR: {lib} missed {count:,} of {expect['members']:,} members (false negatives)")
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
    ft.add(
        f"members found of {expect['members']:,} (fewer: false negatives)",
        "members",
        {lib: f"{hits['credcheck' if lib == 'credcheck bloom' else lib]['members']:,}" for lib in fuse_libs},
        ratios=False,
    )  # fmt: skip

    # ---- 4. single lookups ---------------------------------------------------------------------------
    log(f"single lookups ({len(single):,} mixed probes)")
    one = as_bytes_list(single)
    one_words = words_of(single).tolist()
    pb_one = pb_mix[: len(one)]
    t = medians(
        {
            "credcheck": (lambda: loop_in(cc, one), None),
            "credcheck fuse": (lambda: loop_in(fuse, one), None),
            "fastbloom-rs": (lambda: loop_contains(fb.contains_bytes, one), None),
            "rbloom": (lambda: loop_in(rb, one), None),
            "pybloom-live": (lambda: loop_in(pb, pb_one), None),
            "abloom": (lambda: loop_in(ab, one), None),
            "binaryfuse": (lambda: loop_contains(bf16.contains, one_words), None),
            "pyfusefilter": (lambda: loop_contains(pf16.contain, one_words), None),
        },
        repeat,
    )
    cells: dict[str, Any] = {lib: len(one) / t[lib] / 1e6 for lib in ("credcheck", "fastbloom-rs", "rbloom", "abloom")}
    cells["pybloom-live"] = (len(pb_one) / t["pybloom-live"] / 1e6, PB)
    table.add(f"single lookups `key in bf`, mixed ({len(one):,} probes)", "M/s", cells)
    ft.add(
        f"single lookups, mixed ({len(one):,} probes)",
        "M/s",
        {"credcheck fuse": len(one) / t["credcheck fuse"] / 1e6, "credcheck bloom": cells["credcheck"],
         "binaryfuse": len(one) / t["binaryfuse"] / 1e6, "pyfusefilter": len(one) / t["pyfusefilter"] / 1e6},
    )  # fmt: skip

    # ---- 5. false positives and size -------------------------------------------------------------------
    log(f"false positives: credcheck (both layouts) on {args.fp_probes:,} non-members")
    fps = fuse_fps = checked = 0
    fps3 = checked3 = 0
    while checked < args.fp_probes:
        block = random_digests(rng, min(2_000_000, args.fp_probes - checked))
        fps += int(cc.contains_many(block).sum())
        fuse_fps += int(fuse.contains_many(block).sum())
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
            "abloom": fp_cell(hits["abloom"]["non-members"], args.probes),
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
    ft.add(
        f"measured FP rate at fp {fp:g} (fuse peers: their 16-bit prints)",
        "rate (hits/probes)",
        {"credcheck fuse": fp_cell(fuse_fps, checked) + f" (2^-{fuse.width} = {fuse.expected_fp_rate():.2g})",
         "credcheck bloom": fp_cell(fps, checked),
         "binaryfuse": fp_cell(hits["binaryfuse"]["non-members"], args.probes),
         "pyfusefilter": fp_cell(hits["pyfusefilter"]["non-members"], args.probes)},
        ratios=False,
    )  # fmt: skip
    optimum = 1.44 * math.log2(1 / fp)
    bits = {
        "credcheck": cc.m / n,
        "fastbloom-rs": fb.config().size() / n,
        "rbloom": rb.size_in_bits / n,
        "pybloom-live": (pb.num_bits / pb_items, PB),
        "abloom": ab.bit_count / n,
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
        {"credcheck": cc.k, "fastbloom-rs": fb.hashes(), "rbloom": "—", "pybloom-live": pb.num_slices, "abloom": ab.k},
        fmt="{:d}",
        ratios=False,
    )
    bound = math.log2(1 / fp)
    fuse_bits = {
        "credcheck fuse": fuse.bits_per_item,
        "credcheck bloom": cc.m / n,
        "binaryfuse": bf16.memory_usage_bytes() * 8 / n,
        "pyfusefilter": pf16.size_in_bytes() * 8 / n,
    }
    ft.add(f"bits per item (whole file for credcheck fuse; bound log2(1/ε) = {bound:.1f})", "bits", fuse_bits,
           fmt="{:.2f}", ratios=False)  # fmt: skip
    ft.add(
        "bits per item ÷ log2(1/ε) (target ≤ 1.15 for credcheck fuse)",
        "x",
        {lib: f"{v / bound:.3f}" for lib, v in fuse_bits.items()},
        ratios=False,
    )
    ft.add(
        "fingerprint bits / shards",
        "",
        {"credcheck fuse": f"{fuse.width} / {1 << fuse.shard_bits}", "binaryfuse": "16 / 1", "pyfusefilter": "16 / 1"},
        ratios=False,
    )

    print("\n".join(env))
    print()
    print("Bloom layout and Bloom filters:")
    print()
    print(table.render())
    print()
    print("Fuse layout, beside the Bloom layout and the fuse filters on the registry:")
    print()
    print(ft.render())
    print()
    notes = [
        f"Figures are medians of {repeat} runs after one warm-up, libraries interleaved; ratios are credcheck ÷ peer.",
        f"* pybloom-live: a filter of {pb_items:,} items and {pb_probes:,} probes per set; it is",
        "  interpreter-bound (its rate does not depend on the filter's size).",
        "† no batch API: a per-item Python loop (`key in bf`, or `contains(word)` for the fuse peers).",
        "rbloom: hash_func = xxh3_128_intdigest(b) - 2**127 (a persistent hash, as a saved filter needs).",
        "abloom: serializable=True (its deterministic hash; the default is Python's per-process salted hash).",
        "binaryfuse, pyfusefilter: 64-bit keys (each digest's first 8 bytes), 16-bit prints (the widest they offer);",
        "  pyfusefilter through its C library (its Python class fails with xxhash >= 4).",
        "credcheck fuse build: FuseFilter.build(path, array), i.e. sorted into shards, built, written, fsynced and",
        "  renamed; credcheck bloom build: in memory only.",
        "Peak memory: in a fresh process per build (MALLOC_MMAP_THRESHOLD_=131072), VmHWM reset through",
        "  /proc/self/clear_refs once the input is ready, minus VmRSS then.",
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
    parser.add_argument("--memory-of", metavar="JOB", help=argparse.SUPPRESS)  # one build's peak, in a child
    parser.add_argument("--hibp", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.probes, args.single_probes = 1_000_000, 200_000, 50_000
        args.fp_probes, args.repeat = 2_000_000, 3
    if args.items < 2 or args.probes < 2 or args.repeat < 1:
        parser.error("--items, --probes must be at least 2 and --repeat at least 1")
    if args.memory_of:
        print(memory_of(args))
        return
    run(args)


def memory_of(args: argparse.Namespace) -> float | None:
    """The child's side of :func:`peak_in_child`: the same input as the parent's run, one build, its peak."""
    with tempfile.TemporaryDirectory(prefix="credcheck-bench-") as tmp:
        if args.memory_of.startswith("hibp-"):
            layout = args.memory_of.removeprefix("hibp-")
            out = os.path.join(tmp, f"hibp.{layout}")
            return peak_memory_mb(lambda: credcheck.build([args.hibp], filter=out, fp_rate=args.fp_rate, layout=layout))
        members = random_digests(np.random.default_rng(args.seed), args.items)
        pb_items = min(args.items, PYBLOOM_MAX_ITEMS if not args.quick else 200_000)
        jobs, _, _, _ = build_jobs(members, args.fp_rate, pb_items, min(args.items, 1_000_000), tmp)
        return peak_memory_mb(jobs[args.memory_of][0])


if __name__ == "__main__":
    main()
