"""Shared plumbing for the atheris harnesses in this folder (not a harness itself).

Every harness asserts that the only outcomes are a correct answer or a ``credcheck.CredcheckError``.
Anything else is a *finding*. By default a finding raises, so libFuzzer stops and writes the input as a
crash file (standard libFuzzer behaviour, and how a reproducer is replayed: ``python fuzz/fuzz_X.py FILE``).
With ``FUZZ_KEEP_GOING=1`` (what ``run_all.py`` sets) a finding is recorded instead, once per signature
(exception type + innermost credcheck frame, or the name of the broken property), as
``fuzz/crashes/<harness>-<sig>.bin`` (the input) and ``.txt`` (the traceback), and fuzzing goes on for the
whole budget.
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
CRASH_DIR = os.path.join(HERE, "crashes")
KEEP_GOING = os.environ.get("FUZZ_KEEP_GOING") == "1"

_seen: set[str] = set()

# Modules whose comparisons are mostly numpy array comparisons. atheris 3.0's comparison tracing leaks the
# result of every comparison that is not a plain bool (measured: a 1 MiB bool array per traced
# `array < array`), so these get coverage (edge) tracing only, without comparison (dataflow) tracing.
NO_DATAFLOW = frozenset({"_kernels_py.py", "store.py", "bloom.py", "build.py", "_corpus.py", "_padding.py"})


def instrument_credcheck() -> object:
    """``atheris.instrument_imports(include=["credcheck"])``, minus dataflow tracing in NO_DATAFLOW modules."""
    import atheris.import_hook as hook

    original = hook.patch_code

    def patch_code(code: Any, trace_dataflow: bool, *args: Any, **kwargs: Any) -> Any:
        if os.path.basename(code.co_filename) in NO_DATAFLOW:
            trace_dataflow = False
        return original(code, trace_dataflow, *args, **kwargs)

    if not getattr(original, "_credcheck_fuzz", False):
        patch_code._credcheck_fuzz = True  # type: ignore[attr-defined]
        hook.patch_code = patch_code  # type: ignore[assignment]
    return atheris.instrument_imports(include=["credcheck"])


class Finding(AssertionError):
    """A broken property (a wrong answer, or an exception credcheck did not mean to raise)."""


def scratch_dir() -> str:
    """A private temporary directory, in RAM when /dev/shm exists (harnesses write a file per input).

    libFuzzer ends the process with C ``exit()``, so Python's ``atexit`` handlers do not run: directories left
    by harness processes that are no longer alive are swept here, and ``run_all.py`` also removes the whole
    ``FUZZ_SCRATCH`` directory it hands each harness.
    """
    base = os.environ.get("FUZZ_SCRATCH") or (
        "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    )
    os.makedirs(base, exist_ok=True)
    for name in os.listdir(base):
        parts = name.split("-")
        if name.startswith("credcheck-fuzz-") and len(parts) > 3 and parts[2].isdigit() and not _alive(int(parts[2])):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"credcheck-fuzz-{os.getpid()}-", dir=base)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signature(label: str, exc: BaseException) -> str:
    if isinstance(exc, Finding):  # a broken property: its message starts with a short name of the property
        return f"{label}|{str(exc).split(':', 1)[0]}"
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/credcheck/" in f.filename.replace(os.sep, "/")]
    frame = (ours or frames or [None])[-1]
    where = f"{os.path.basename(frame.filename)}:{frame.lineno}" if frame is not None else "?"
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"{name}|{where}"  # one finding however many checks reach it


def finding(harness: str, label: str, exc: BaseException, data: bytes) -> None:
    """Record (keep-going mode) or re-raise an unexpected outcome."""
    if not KEEP_GOING:
        raise exc
    sig = _signature(label, exc)
    if sig in _seen:
        return
    _seen.add(sig)
    os.makedirs(CRASH_DIR, exist_ok=True)
    stem = os.path.join(CRASH_DIR, f"{harness}-{hashlib.sha1(sig.encode()).hexdigest()[:10]}")
    with open(stem + ".bin", "wb") as out:
        out.write(data)
    with open(stem + ".txt", "w") as out:
        out.write(f"signature: {sig}\nfirst seen in: {label}\n\n")
        out.write("".join(traceback.format_exception(exc)))
    print(f"FINDING {harness}: {sig} -> {stem}.bin", file=sys.stderr, flush=True)


def guard(harness: str, label: str, data: bytes, call: Callable[[], Any], allowed: tuple[type, ...]) -> Any:
    """Run ``call``; an exception outside ``allowed`` (and any Finding) is a finding. Returns the result,
    or the allowed exception instance."""
    try:
        return call()
    except allowed as exc:
        return exc
    except Exception as exc:
        finding(harness, label, exc, data)
        return exc


def main(test_one: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]]) -> None:
    """Seed an empty corpus directory (the first positional argument), then hand over to libFuzzer."""
    dirs = [a for a in sys.argv[1:] if not a.startswith("-")]
    if dirs and os.path.isdir(dirs[0]) and not os.listdir(dirs[0]):
        for i, seed in enumerate(seeds()):
            with open(os.path.join(dirs[0], f"seed-{i:03d}"), "wb") as out:
                out.write(seed)
    calls = 0

    def one(data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls % 256 == 0:
            gc.collect()  # recorded exceptions form cycles (traceback -> frame) that hold open files
        test_one(data)

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
