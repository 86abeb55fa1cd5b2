"""Combo lists in, a pair store out: ``build_pairs()`` reads, deduplicates, stretches, evaluates and writes.

The stretch is nearly the whole cost (≈10 ms an entry at ``interactive``), so it runs on a
:class:`concurrent.futures.Executor` — by default a process pool over every core; a Dask cluster's
``Client.get_executor()`` works the same — in chunks big enough that shipping them costs nothing next to
the work. Only stretch inputs and the scrypt parameters travel; the OPRF key stays in this process, which
evaluates each stretch output as it comes back and derives its entry. A worker is not trusted: of every chunk
it returns, this process stretches again inputs drawn at random where the worker cannot see which
(:data:`CHECK_SHARE` of them, more in a build of few chunks: :data:`CHECK_STRENGTH`), so a broken or hostile
worker fails the build instead of making pairs silently unfindable (docs/SECURITY.md states the odds).
Every finished chunk is checkpointed (0600, beside the target, never in a shared temporary directory:
stretch outputs are what an attacker would otherwise pay the stretch for) and sealed with a MAC
keyed from the OPRF key, so a checkpoint edited between a kill and ``resume=True`` -- its checksum made right
again -- is recomputed, never taken; the checkpoints go when the build succeeds. The store is written beside
the target and renamed into place at the very end, under the lock beside the target (``_atomic``), so two
builds never write it at once.

Memory: every stretch input is held while the build runs, compactly (one bytes buffer and numpy arrays,
no Python object per input: about 100 bytes an entry at the peak, some 2.5 GB for 24M pairs and ten times
that with nine variants); spilling them to sorted runs belongs to the shared sort-merge engine, not to a
second copy of it here.
"""

from __future__ import annotations

import array
import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import math
import multiprocessing
import os
import random
import shutil
import signal
import stat
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, overload

import numpy as np
import numpy.typing as npt
import xxhash

from .. import _args, _atomic
from .._artifact import SEAL_SIZE, seal, seal_key, unsealed
from .._frames import entry_point
from ..corpus import Source, first_changed, source_name, source_size, sources_of
from ..errors import ArtifactError, InputError, StorageError
from . import _oprf
from .combo import FORMATS, ComboStats, read_pairs
from .entry import Status, mask, tag
from .keys import KeyPair, load_key
from .names import MAX_BUCKET_BITS, bucket_hash, default_bucket_bits
from .store import assemble, write_store
from .stretch import Stretch, pair_input, stretch_chunk, username_input
from .variants import check_count, variants

__all__ = ["PairBuildReport", "PairPlan", "build_pairs", "checkpoint_dir", "lock_path", "run_pair_build"]

#: progress(phase, done, total or None, pairs read): "read" counts input bytes, "stretch" entries.
PairProgress = Callable[[str, int, "int | None", int], None]
_CHUNK_WORK: Final = 1 << 24  # scrypt N*r*p units a chunk: ≈5 s of one core at any profile
_draw: Final = random.SystemRandom()  # which inputs of a chunk are checked: nothing a worker could predict
_CKPT_MAGIC: Final = b"CCPCKPT2"  # 2: sealed with a key derived from the OPRF key (1: an xxh3 checksum)
#: The share of every chunk's inputs this process stretches again to check the worker's outputs, at least ...
CHECK_SHARE: Final = 1 / 32
#: ... and enough more in a build of few chunks that a worker wrong on one input of every chunk goes unseen with
#: odds of at most e^-CHECK_STRENGTH (8.3e-7): the shares checked add up to this many chunks' worth.
CHECK_STRENGTH: Final = 14


@dataclasses.dataclass(slots=True)
class PairBuildReport:
    """What a pair build read, merged, stretched and wrote. The numbers add up (:meth:`reconciles`).

    ``pairs_read`` counts every line read, bad ones included; each good line is one pair, and also makes
    ``variants_generated`` similar candidates and (with username entries) one username-only candidate.
    So ``pairs_read + variants_generated + usernames_generated == entries_kept + duplicates_merged +
    bad_lines``, and the entries kept are ``exact + similar + username``.
    """

    path: str
    input_format: str
    stretch: str
    variants: int
    username_entries: bool
    key_id: str
    sources: list[ComboStats] = dataclasses.field(default_factory=list)
    pairs_read: int = 0
    bad_lines: int = 0
    variants_generated: int = 0
    usernames_generated: int = 0
    duplicates_merged: int = 0
    entries_kept: int = 0
    exact: int = 0
    similar: int = 0
    username: int = 0
    distinct_usernames: int = 0
    bucket_bits: int = 0
    dummies: int = 0
    stretched: int = 0
    resumed: int = 0
    bytes_written: int = 0
    seconds: float = 0.0

    def reconciles(self) -> bool:
        """True when every line and every candidate is accounted for exactly once."""
        read = self.pairs_read + self.variants_generated + self.usernames_generated
        return (
            read == self.entries_kept + self.duplicates_merged + self.bad_lines
            and self.entries_kept == self.exact + self.similar + self.username
            and self.stretched + self.resumed == self.entries_kept
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """A short human-readable account of the build."""
        rate = self.stretched / self.seconds if self.seconds else 0.0
        lines = [
            f"read {self.pairs_read:,} lines from {len(self.sources)} source(s) in {self.seconds:.2f} s; "
            f"stretched {self.stretched:,} entries ({rate:,.0f}/s, {self.stretch})"
            + (f", {self.resumed:,} taken from checkpoints" if self.resumed else ""),
            f"  kept {self.entries_kept:,} entries: {self.exact:,} exact, {self.similar:,} similar, "
            f"{self.username:,} username-only; merged {self.duplicates_merged:,} duplicates; "
            f"{self.bad_lines:,} bad lines",
            f"  {self.distinct_usernames:,} distinct usernames in 2^{self.bucket_bits} buckets, "
            f"{self.dummies:,} dummy entries; key id {self.key_id}",
        ]
        for stats in self.sources:
            if stats.bad_lines:
                shown = ", ".join(map(str, stats.bad_line_numbers))
                more = ", ..." if stats.bad_lines > len(stats.bad_line_numbers) else ""
                kinds = "; ".join(f"{count:,} {reason}" for reason, count in sorted(stats.reasons.items()))
                lines.append(f"  {stats.name}: {stats.bad_lines:,} bad lines ({kinds}): line {shown}{more}")
        lines.append(f"  wrote {self.path} ({self.bytes_written:,} bytes)")
        return "\n".join(lines)


def lock_path(target: str) -> str:
    """The lock file beside a pair store, held while a build writes it."""
    return _atomic.lock_path(target)


def checkpoint_dir(target: str) -> str:
    """The directory beside a pair store where a build keeps its finished chunks."""
    return os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.checkpoints")


class _Checkpoints:
    """Finished chunks' stretch outputs, one 0600 file each in a 0700 directory beside the target, sealed with a
    key derived from the OPRF key (:func:`~credcheck._artifact.seal`): a file this build's key did not seal, or
    one changed since, is not taken."""

    def __init__(self, target: str, resume: bool, secret: bytes) -> None:
        self.dir = checkpoint_dir(target)
        self._key = seal_key(secret, b"credcheck-pairs-v1 checkpoints")
        try:
            if not resume and os.path.lexists(self.dir):
                shutil.rmtree(self.dir)
            try:
                os.mkdir(self.dir, 0o700)
            except FileExistsError:
                info = os.lstat(self.dir)
                if not stat.S_ISDIR(info.st_mode) or info.st_uid != getattr(os, "getuid", lambda: info.st_uid)():
                    raise StorageError(f"{self.dir} is not a checkpoint directory of this user; remove it") from None
            os.chmod(self.dir, 0o700)
        except OSError as exc:
            raise StorageError(f"cannot keep checkpoints in {self.dir}: {exc.strerror or exc}") from exc

    def _path(self, chunk_id: str) -> str:
        return os.path.join(self.dir, f"{chunk_id}.ckpt")

    def load(self, chunk_id: str, count: int) -> bytes | None:
        """The outputs of a finished chunk, or None when it has none (or one this build's key did not seal)."""
        try:
            with open(self._path(chunk_id), "rb") as fh:
                data = fh.read()
        except OSError:
            return None
        size = len(_CKPT_MAGIC) + 4 + 32 * count
        if len(data) != size + SEAL_SIZE or data[:8] != _CKPT_MAGIC or struct.unpack_from("<I", data, 8)[0] != count:
            return None
        outputs = data[12:size]
        return outputs if unsealed(self._key, data[size:], _CKPT_MAGIC, chunk_id.encode(), outputs) else None

    def save(self, chunk_id: str, outputs: bytes) -> None:
        """Write a finished chunk: a private temporary file, fsynced, renamed into place."""
        sealed = seal(self._key, _CKPT_MAGIC, chunk_id.encode(), outputs)
        body = _CKPT_MAGIC + struct.pack("<I", len(outputs) // 32) + outputs + sealed
        tmp = self._path(chunk_id) + f".{os.getpid()}.tmp"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(tmp, flags, 0o600)
            try:
                os.fchmod(fd, 0o600)
                _atomic.pwrite_all(fd, body, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._path(chunk_id))
        except OSError as exc:
            _atomic.remove_quietly(tmp)
            raise StorageError(f"cannot write a checkpoint in {self.dir}: {exc.strerror or exc}") from exc

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _chunk_id(stretch: Stretch, inputs: Sequence[bytes]) -> str:
    digest = hashlib.sha256(b"credcheck-pairs-v1 checkpoint\x00" + stretch.spec.encode() + b"\x00")
    for data in inputs:
        digest.update(data)
    return digest.hexdigest()[:32]


@dataclasses.dataclass(frozen=True, slots=True)
class PairPlan:
    """What a pair build is asked to do, every field checked when the plan is made (see :func:`build_pairs`)."""

    sources: tuple[Source, ...]
    out: str
    key: KeyPair
    input_format: str = "combo"
    stretch: Stretch = dataclasses.field(default_factory=lambda: Stretch.parse("interactive"))
    variants: int = 0
    username_entries: bool = False
    bucket_bits: int | None = None
    executor: cf.Executor | None = None
    workers: int | None = None
    resume: bool = False
    strict: bool = False
    progress: PairProgress | None = None
    chunk_size: int | None = None

    @classmethod
    def of(
        cls,
        sources: Source | Sequence[Source],
        out: str | os.PathLike[str],
        key: KeyPair | str | os.PathLike[str],
        *,
        stretch: str | Stretch = "interactive",
        **options: Any,
    ) -> PairPlan:
        """The plan of :func:`build_pairs`'s arguments (one source or several, a key file or a KeyPair, a stretch
        profile's name)."""
        keypair = key if isinstance(key, KeyPair) else load_key(key)
        return cls(
            sources_of(sources), os.path.abspath(os.fspath(out)), keypair, stretch=Stretch.parse(stretch), **options
        )

    def __post_init__(self) -> None:
        check_count(self.variants)
        if self.input_format not in FORMATS:
            raise ValueError(f"unknown pair input format {self.input_format!r}; expected one of {', '.join(FORMATS)}")
        if self.bucket_bits is not None:
            _args.int_in_range("bucket_bits", self.bucket_bits, 0, MAX_BUCKET_BITS)
        if self.workers is not None:
            _args.positive_int("workers", self.workers)
        if self.chunk_size is not None:
            _args.positive_int("chunk_size", self.chunk_size)
        if not self.sources:
            raise ValueError("build_pairs() needs at least one source")


@entry_point
def build_pairs(
    sources: Source | Sequence[Source],
    out: str | os.PathLike[str],
    key: KeyPair | str | os.PathLike[str],
    *,
    input_format: str = "combo",
    stretch: str | Stretch = "interactive",
    variants: int = 0,
    username_entries: bool = False,
    bucket_bits: int | None = None,
    executor: cf.Executor | None = None,
    workers: int | None = None,
    resume: bool = False,
    strict: bool = False,
    progress: PairProgress | None = None,
    chunk_size: int | None = None,
) -> PairBuildReport:
    """Build a pair store at ``out`` from combo lists with the OPRF ``key``; return a report that adds up.

    ``key`` is a :class:`~credcheck.pairs.keys.KeyPair` or a key file (``credcheck pairs keygen``). ``variants``
    (0-9) adds that many of MIGP's password variants as "similar" entries (plaintext combos only);
    ``username_entries`` adds one username-only entry per distinct username. ``bucket_bits`` defaults to
    ``clamp(floor(log2(U/32)), 8, 24)`` for U distinct usernames. ``executor`` runs the stretch (default: a
    spawned process pool of ``workers`` processes, every core if None; with an executor of your own, such as
    a Dask ``Client.get_executor()``, ``workers`` says how many it runs at once: ``2 * workers + 1`` chunks
    are kept in flight). With ``resume=True`` the finished chunks of an earlier, interrupted build of the
    same target are taken instead of recomputed. ``chunk_size`` (inputs a task) defaults to about 5 s of
    one core's work at the profile.
    """
    plan = PairPlan.of(
        sources, out, key, input_format=input_format, stretch=stretch, variants=variants,
        username_entries=username_entries, bucket_bits=bucket_bits, executor=executor, workers=workers,
        resume=resume, strict=strict, progress=progress, chunk_size=chunk_size,
    )  # fmt: skip
    with _atomic.Stage() as stage:
        report = run_pair_build(plan, stage)
        stage.commit()
    return report


class _Finished:
    """The pair store finished beside its target: committed with the stage; its checkpoints go once it is in place."""

    def __init__(self, tmp: str, target: str, checkpoints: _Checkpoints) -> None:
        self._file, self._checkpoints = _atomic.StagedFile(tmp, target), checkpoints

    def commit(self) -> None:
        self._file.commit()
        self._checkpoints.remove()

    def abort(self) -> None:
        self._file.abort()  # the checkpoints stay, for a resume


def run_pair_build(
    plan: PairPlan, stage: _atomic.Stage, *, same_bytes_as: Sequence[bytes] | None = None
) -> PairBuildReport:
    """Run ``plan``, leaving the pair store finished beside its target in ``stage`` (whose owner commits it).

    ``same_bytes_as`` holds the xxh3-128 digest of each source's bytes as another read saw them (a password
    build's of the same combo lists): a source whose bytes differ now is an
    :class:`~credcheck.errors.InputError` as soon as it is read, before any stretch.
    """
    started = time.perf_counter()
    profile, keypair, target = plan.stretch, plan.key, plan.out
    report = PairBuildReport(
        target, plan.input_format, profile.name, plan.variants, plan.username_entries, keypair.key_id.hex()
    )
    stage.lock([target])
    candidates, digests = _read(
        list(plan.sources), report, plan.input_format, plan.variants, plan.username_entries, plan.strict, plan.progress
    )
    if same_bytes_as is not None:
        changed = first_changed(report.sources, digests, same_bytes_as)
        if changed is not None:
            raise InputError(
                f"{changed} changed while it was being built from (its bytes differ between the password "
                "build's read and the pair build's): nothing was replaced"
            )
    inputs, buckets, statuses = _ordered(candidates, report, plan.bucket_bits)
    del candidates  # the inputs keep only the bytes buffer
    checkpoints = _Checkpoints(target, plan.resume, keypair.sk)
    size = plan.chunk_size or max(1, min(65536, _CHUNK_WORK // (profile.n * profile.r * profile.p)))
    tags, masks = _stretch_and_evaluate(
        inputs, profile, keypair, checkpoints, size, plan.executor, plan.workers, report, plan.progress
    )
    del inputs  # the stretch inputs (every username again) are not needed to assemble the store
    body = assemble(report.bucket_bits, buckets, tags, statuses, masks)
    report.dummies = body.dummies
    tmp = write_store(
        target, body, key_id=keypair.key_id, bits=report.bucket_bits, stretch=profile,
        username_entries=plan.username_entries, variants=plan.variants,
    )  # fmt: skip
    stage.add(_Finished(tmp, target, checkpoints))
    report.bytes_written = os.path.getsize(tmp)
    report.seconds = time.perf_counter() - started
    return report


class _Candidates:
    """Stretch inputs as they are read: their bytes in one buffer, and beside each its end offset, a 16-byte
    key (BLAKE2b of the input, to deduplicate by), its username's id (the first 8 bytes of the username's
    bucket hash) and its status. About 90 bytes a candidate: no Python object per input."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.ends = array.array("q")
        self.keys = bytearray()
        self.names = array.array("Q")
        self.statuses = array.array("B")

    def add(self, data: bytes, name_id: int, status: int) -> None:
        self.blob += data
        self.ends.append(len(self.blob))
        self.keys += hashlib.blake2b(data, digest_size=16).digest()
        self.names.append(name_id)
        self.statuses.append(status)

    def __len__(self) -> int:
        return len(self.statuses)


class _Inputs:
    """The distinct stretch inputs, in build order: ``inputs[i]`` and ``inputs[a:b]`` (a list) as bytes."""

    def __init__(self, blob: bytearray, starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]) -> None:
        self._blob, self._starts, self._ends = memoryview(blob), starts, ends

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return bytes(self._blob[int(self._starts[index]) : int(self._ends[index])])


def _read(
    source_list: list[Source],
    report: PairBuildReport,
    input_format: str,
    n_variants: int,
    username_entries: bool,
    strict: bool,
    progress: PairProgress | None,
) -> tuple[_Candidates, list[bytes]]:
    """Every stretch input the sources make (repeats included), with its status; the xxh3-128 digest of each
    source's bytes."""
    candidates = _Candidates()
    digests = []
    totals = [source_size(s) for s in source_list]
    total = None if None in totals else sum(t or 0 for t in totals)
    done_before = 0
    for source, own in zip(source_list, totals, strict=True):
        stats = ComboStats(source_name(source))
        report.sources.append(stats)

        def tick(done: int, _total: int | None, _lines: int, base: int = done_before) -> None:
            if progress is not None:
                progress("read", base + done, total, sum(s.lines for s in report.sources))

        checksum = xxhash.xxh3_128()
        for pair in read_pairs(
            source, input_format=input_format, strict=strict, stats=stats, progress=tick, checksum=checksum
        ):
            name_id = int.from_bytes(bucket_hash(pair.canonical)[:8], "big")
            candidates.add(pair_input(pair.canonical, pair.sha1), name_id, Status.EXACT)
            if n_variants and pair.password is not None:
                for variant in variants(pair.password, n_variants):
                    sha1 = hashlib.sha1(variant.encode("utf-8")).digest()
                    candidates.add(pair_input(pair.canonical, sha1), name_id, Status.SIMILAR)
                    report.variants_generated += 1
            if username_entries:
                candidates.add(username_input(pair.canonical), name_id, Status.USERNAME)
                report.usernames_generated += 1
        done_before += own or 0
        digests.append(checksum.digest())
    report.pairs_read = sum(s.lines for s in report.sources)
    report.bad_lines = sum(s.bad_lines for s in report.sources)
    return candidates, digests


def _ordered(
    candidates: _Candidates, report: PairBuildReport, bucket_bits: int | None
) -> tuple[_Inputs, npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
    """The distinct stretch inputs with the strongest status each was seen with, their buckets and statuses.

    They are ordered by their keys: a deterministic order, so that the chunks of a resumed build match.
    """
    generated = len(candidates)
    words = np.frombuffer(bytes(candidates.keys), dtype=">u8").reshape(generated, 2).astype(np.uint64)
    statuses = np.frombuffer(candidates.statuses, dtype=np.uint8)
    order = np.lexsort((statuses, words[:, 1], words[:, 0]))  # equal inputs together, the strongest first
    first = np.ones(generated, dtype=bool)
    if generated > 1:
        sorted_words = words[order]
        first[1:] = np.any(sorted_words[1:] != sorted_words[:-1], axis=1)
    kept = order[first]
    del words, order, first
    names = np.frombuffer(candidates.names, dtype=np.uint64)[kept]
    report.entries_kept = len(kept)
    report.duplicates_merged = generated - len(kept)
    report.distinct_usernames = len(np.unique(names))
    bits = report.bucket_bits = default_bucket_bits(report.distinct_usernames) if bucket_bits is None else bucket_bits
    # a bucket is the top B bits of the username's bucket hash, whose first 8 bytes are its id
    buckets = (names >> np.uint64(64 - bits)).astype(np.uint32) if bits else np.zeros(len(kept), dtype=np.uint32)
    kept_statuses = statuses[kept].copy()
    counts = np.bincount(kept_statuses, minlength=4)
    report.exact, report.similar, report.username = (int(c) for c in counts[1:4])
    ends = np.frombuffer(candidates.ends, dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1]])[kept]
    return _Inputs(candidates.blob, starts, ends[kept].copy()), buckets, kept_statuses


_checker_pool: cf.ThreadPoolExecutor | None = None
_checker_lock = threading.Lock()


def _checkers() -> cf.ThreadPoolExecutor:
    """The threads this process re-stretches samples of the workers' outputs on: one a core, made once."""
    global _checker_pool
    with _checker_lock:
        if _checker_pool is None:
            _checker_pool = cf.ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="credcheck-check")
        return _checker_pool


def _default_executor(workers: int | None) -> cf.Executor:
    # spawn: a worker starts from nothing, so it never holds a copy of this process's memory (the key)
    return cf.ProcessPoolExecutor(
        max_workers=workers or os.cpu_count() or 1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_started,
        initargs=(os.getpid(),),
    )


def _worker_started(parent: int) -> None:
    """In a stretch worker: leave Ctrl-C to the build, which stops it (one that took it would print a traceback),
    and end once the build that started it is gone. A build killed outright (SIGKILL, the OOM killer) cannot stop
    its pool, and a worker waiting for its next chunk would wait for ever (it holds its own end of the pool's
    queue, so it never reads an end of file)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="credcheck-stretch-parent", daemon=True).start()


def _stop_pool(pool: cf.Executor) -> None:
    """Stop a process pool now, its running chunks included, and reap its workers.

    ``shutdown(cancel_futures=True)`` only cancels the chunks not yet started: a worker inside a chunk would
    go on stretching (minutes at a strong profile) after the build stopped, and the interpreter would wait
    for it at exit.
    """
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    workers = list((getattr(pool, "_processes", None) or {}).values())  # taken before shutdown() drops them
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        with contextlib.suppress(Exception):  # one that already ended
            worker.terminate()
    for worker in workers:
        worker.join(5)


def _checked(outputs: object, count: int) -> bytes:
    if not isinstance(outputs, bytes) or len(outputs) != 32 * count:
        raise ArtifactError(f"a stretch worker returned something other than {32 * count} bytes for {count} inputs")
    return outputs


def _stretch_and_evaluate(
    inputs: _Inputs,
    profile: Stretch,
    keypair: KeyPair,
    checkpoints: _Checkpoints,
    chunk_size: int,
    executor: cf.Executor | None,
    workers: int | None,
    report: PairBuildReport,
    progress: PairProgress | None,
) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.uint8]]]:
    """Stretch every input (on the executor, or from a checkpoint), then evaluate the OPRF here: tags, masks."""
    n = len(inputs)
    tags = np.empty((n, 16), dtype=np.uint8)
    masks = np.empty(n, dtype=np.uint8)
    done = 0

    share = max(CHECK_SHARE, CHECK_STRENGTH / max(1, -(-n // chunk_size)))  # of each chunk's inputs
    checkers = _checkers()

    def plausible(start: int, outputs: bytes) -> bool:
        # Inputs drawn at random (the worker cannot know which) are stretched again here: a worker that returned
        # a wrong output for even one input a chunk would otherwise make that pair silently unfindable. With a
        # share s of each of C chunks checked, it passes with odds (1 - s)^C <= e^-(s C) <= e^-CHECK_STRENGTH.
        # The checks run on this process's cores at once (hashlib.scrypt lets go of the GIL), so that they never
        # hold the build back to one core's pace, however many workers a cluster brings.
        count = len(outputs) // 32
        drawn = _draw.sample(range(count), min(count, math.ceil(count * share)))
        again = checkers.map(lambda i: profile(inputs[start + i]) == outputs[32 * i : 32 * i + 32], drawn)
        return all(list(again))

    def finish(start: int, outputs: bytes) -> None:
        nonlocal done
        for i in range(len(outputs) // 32):
            y = _oprf.evaluate(keypair.sk, outputs[32 * i : 32 * i + 32])
            tags[start + i] = np.frombuffer(tag(y), dtype=np.uint8)
            masks[start + i] = mask(y)
        done += len(outputs) // 32
        if progress is not None:
            progress("stretch", done, n, report.pairs_read)

    todo: list[tuple[int, str, int]] = []  # the chunks to stretch; each one's bytes are joined when it is sent
    for start in range(0, n, chunk_size):
        chunk = inputs[start : start + chunk_size]
        chunk_id = _chunk_id(profile, chunk)
        outputs = checkpoints.load(chunk_id, len(chunk))  # sealed by this key: checked when it was made
        if outputs is not None:
            report.resumed += len(chunk)
            finish(start, outputs)
        else:
            todo.append((start, chunk_id, len(chunk)))
        del chunk
    if not todo:
        return tags, masks

    own = executor is None
    pool = _default_executor(workers) if executor is None else executor
    window = 2 * (workers or os.cpu_count() or 1) + 1  # chunks in flight: every worker busy, memory bounded
    pending: dict[cf.Future[bytes], tuple[int, str, int]] = {}
    queue = iter(todo)
    try:
        while True:
            while len(pending) < window:
                item = next(queue, None)
                if item is None:
                    break
                start, chunk_id, count = item
                blob = b"".join(inputs[start : start + count])
                pending[pool.submit(stretch_chunk, profile.n, profile.r, profile.p, blob)] = (start, chunk_id, count)
                del blob
            if not pending:
                break
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            failure: BaseException | None = None
            for future in finished:  # every chunk that did finish is kept, even when another one failed
                start, chunk_id, count = pending.pop(future)
                error = future.exception()
                if error is not None:
                    failure = failure or error
                    continue
                outputs = _checked(future.result(), count)
                if not plausible(start, outputs):
                    raise ArtifactError("a stretch worker returned a result that a recomputation here contradicts")
                with _atomic.uninterrupted():  # a stop mid-save would leave its temporary file behind
                    checkpoints.save(chunk_id, outputs)
                report.stretched += count
                finish(start, outputs)
            if failure is not None:
                raise failure
    except BaseException:
        for future, (start, chunk_id, count) in pending.items():
            if not future.cancel() and future.done() and future.exception() is None:
                with contextlib.suppress(Exception):  # salvage what finished meanwhile, for a resume
                    outputs = _checked(future.result(), count)
                    if plausible(start, outputs):
                        checkpoints.save(chunk_id, outputs)
        if own:
            _stop_pool(pool)
        raise
    if own:
        pool.shutdown()
    return tags, masks
