"""Run every fuzz harness for a fixed budget, one after the other, and print one table.

    .venv/bin/python fuzz/run_all.py                     # the recorded budgets (about 21 minutes)
    .venv/bin/python fuzz/run_all.py --seconds 30        # every harness for 30 s (a smoke run)
    .venv/bin/python fuzz/run_all.py --runs 2000 --only range_body server

Each harness runs in its own process under libFuzzer (atheris) with ``FUZZ_KEEP_GOING=1``: a finding is
recorded in ``fuzz/crashes/`` (input ``.bin`` + traceback ``.txt``, once per signature) and fuzzing goes on.
The corpus grows in ``fuzz/corpus/<harness>/`` (git-ignored) and is reused by the next run. A libFuzzer-level
failure (a hang past ``-timeout``, memory past ``-rss_limit_mb``, a crash in C) ends that harness early and
is shown as such. The table: harness, budget, inputs tried, inputs/s, coverage, corpus entries, outcome.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CRASHES = os.path.join(HERE, "crashes")
# harness -> seconds: the budget of the recorded run (docs in fuzz/README.md)
BUDGETS = {
    "corpus_lines": 270,
    "range_body": 180,
    "artifacts": 240,
    "artifacts_mutate": 300,
    "server": 240,
    "pairs_query": 180,
}


def _findings(harness: str, since: float = 0.0) -> set[str]:
    """The finding records of ``harness`` written at or after ``since`` (a record is rewritten when re-found)."""
    if not os.path.isdir(CRASHES):
        return set()
    return {
        f
        for f in os.listdir(CRASHES)
        if f.startswith(harness + "-") and f.endswith(".txt") and os.path.getmtime(os.path.join(CRASHES, f)) >= since
    }


def _signature(path: str) -> str:
    with open(path) as fh:
        first = fh.readline().strip()
    return first.removeprefix("signature: ")


def run(harness: str, seconds: int | None, runs: int | None, extra: list[str]) -> dict[str, object]:
    corpus = os.path.join(HERE, "corpus", harness)
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(CRASHES, exist_ok=True)
    since = time.time() - 1
    args = [sys.executable, os.path.join(HERE, f"fuzz_{harness}.py"), corpus,
            f"-artifact_prefix={CRASHES}/{harness}-libfuzzer-", "-timeout=30", "-rss_limit_mb=3072",
            "-print_final_stats=1"]  # fmt: skip
    args.append(f"-runs={runs}" if runs is not None else f"-max_total_time={seconds}")
    args += extra
    scratch = tempfile.mkdtemp(prefix="credcheck-fuzz-run-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    env = dict(os.environ, FUZZ_KEEP_GOING="1", PYTHONHASHSEED="0", FUZZ_SCRATCH=scratch)
    log_path = os.path.join(CRASHES, f"{harness}.log")
    started = time.monotonic()
    try:
        with open(log_path, "w") as log:
            rc = subprocess.call(args, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # the harness cannot clean up after itself (C exit())
    elapsed = time.monotonic() - started
    with open(log_path, errors="replace") as fh:
        text = fh.read()
    done = re.findall(r"Done (\d+) runs in (\d+) second", text)
    execs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text)
    status_lines = re.findall(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE)\s+cov: (\d+) ft: (\d+) corp: (\d+)/", text)
    inputs = int(done[-1][0]) if done else int(execs[-1]) if execs else int(status_lines[-1][0]) if status_lines else 0
    cov = status_lines[-1][1] if status_lines else "?"
    corp = status_lines[-1][3] if status_lines else str(len(os.listdir(corpus)))
    new = sorted(_findings(harness, since))
    libfuzzer = [f for f in os.listdir(CRASHES) if f.startswith(f"{harness}-libfuzzer-")]
    if rc != 0 or (libfuzzer and not done):
        reason = re.search(r"ERROR: libFuzzer: ([^\n]+)|(Uncaught Python exception)", text)
        outcome = f"STOPPED (rc={rc}: {reason.group(0) if reason else 'see ' + log_path})"
    elif new:
        outcome = f"{len(new)} finding(s): " + "; ".join(_signature(os.path.join(CRASHES, f)) for f in new)
    else:
        outcome = "ok: no finding"
    known = sorted(_findings(harness) - set(new))
    if known:
        outcome += f" (+{len(known)} older record(s) not hit this run)"
    return {"harness": harness, "seconds": elapsed, "inputs": inputs, "cov": cov, "corpus": corp, "outcome": outcome}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, help="budget per harness (default: the recorded budgets)")
    parser.add_argument("--runs", type=int, help="inputs per harness instead of a time budget")
    parser.add_argument("--only", nargs="+", choices=sorted(BUDGETS), help="run only these harnesses")
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags, after --")
    opts = parser.parse_args(argv)
    rows = []
    for harness in opts.only or list(BUDGETS):
        budget = opts.seconds or BUDGETS[harness]
        print(f"[{time.strftime('%H:%M:%S')}] {harness}: " + (f"{opts.runs} runs" if opts.runs else f"{budget} s"),
              file=sys.stderr, flush=True)  # fmt: skip
        rows.append(run(harness, budget, opts.runs, opts.libfuzzer))
    print("| harness | wall s | inputs tried | inputs/s | coverage (edges) | corpus | outcome |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        rate = r["inputs"] / r["seconds"] if r["seconds"] else 0  # type: ignore[operator]
        print(f"| {r['harness']} | {r['seconds']:.0f} | {r['inputs']:,} | {rate:,.0f} | {r['cov']} | {r['corpus']} "
              f"| {r['outcome']} |")  # fmt: skip
    return 0 if all(str(r["outcome"]).startswith("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
