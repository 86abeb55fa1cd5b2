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

Memory is bounded whatever the number of pairs and variants: the build sorts what it makes through the shared
sort-merge engine (:mod:`credcheck._sortmerge`), which spills sorted runs to a private directory beside the target
(0700, removed when the build ends, and by the next build of the target if this one was killed) and merges them.
Every candidate's stretch input is written there once as it is read; three sorts follow -- the candidates by
username and input (to keep each distinct input once, with its strongest status, and count the usernames), the
distinct inputs back into the order they were read (so that the inputs file is read straight through, and the
chunks, hence their checkpoints, are the same in every run of the same input), and the entries by bucket and tag
(the store's order, written bucket after bucket as the merge passes). ``max_memory`` bounds what they hold at
once, with the stretch chunks in flight and the store's groups of buckets (docs/SCALE.md has the figures). One
thing grows with the input beside it: a bucket is padded whole, so its real entries are held at once (about 125
bytes each while it is padded; a username with 100,000 leaked passwords and 9 variants: ≈ 125 MB).
"""

from __future__ import annotations

import array
import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import math
import mmap
import multiprocessing
import os
import random
import shutil
import signal
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO, Final

import numpy as np
import numpy.typing as npt
import xxhash

from .. import _args, _atomic
from .. import _sortmerge as sm
from .._artifact import SEAL_SIZE, Description, seal, seal_key, unsealed
from .._corpus import Chunk, Source, first_changed, source_name, source_size, sources_of
from .._frames import entry_point
from ..errors import ArtifactError, InputError, StorageError
from . import _oprf
from ._combo import FORMATS, ComboStats, read_pairs
from ._entry import Status, mask, tag
from ._names import MAX_BUCKET_BITS, bucket_hash, default_bucket_bits
from ._variants import check_count, variants
from .keys import KeyPair, load_key
from .store import BUCKET_QUANTUM, ENTRY_ROWS, StoreWriter, entry_rows, stored_entries
from .stretch import HEAD_SIZE, Stretch, input_length, pair_input, stretch_chunk, username_input

__all__ = ["DEFAULT_MAX_MEMORY", "MIN_MEMORY", "PairBuildReport", "PairPlan", "build_pairs"]

#: progress(phase, done, total or None, pairs read): "read" counts input bytes, "stretch" entries.
PairProgress = Callable[[str, int, "int | None", int], None]
_CHUNK_WORK: Final = 1 << 24  # scrypt N*r*p units a chunk: ≈5 s of one core at any profile
_draw: Final = random.SystemRandom()  # which inputs of a chunk are checked: nothing a worker could predict
CHECKPOINT_MAGIC: Final = b"CCPCKPT2"  # 2: sealed with a key derived from the OPRF key (1: an xxh3 checksum)
#: The magic of the checkpoints before version 2 (sealed by an unkeyed xxh3): never taken by a resume.
OLD_CHECKPOINT_MAGIC: Final = b"CCPCKPT1"
_SEAL_PURPOSE: Final = b"credcheck-pairs-v1 checkpoints"
_CKPT_SUFFIX: Final = ".ckpt"
#: The share of every chunk's inputs this process stretches again to check the worker's outputs, at least ...
CHECK_SHARE: Final = 1 / 32
#: ... and enough more in a build of few chunks that a worker wrong on one input of every chunk goes unseen with
#: odds of at most e^-CHECK_STRENGTH (8.3e-7): the shares checked add up to this many chunks' worth.
CHECK_STRENGTH: Final = 14
#: What a build holds for its entries and their sort buffers unless told otherwise (``max_memory``).
DEFAULT_MAX_MEMORY: Final = 1 << 30
#: The least ``max_memory`` a build takes: below it, runs of a few dozen rows would only multiply the files.
MIN_MEMORY: Final = 64 << 10
# The rows the build sorts (credcheck._sortmerge), at most two sorts alive at once (one filling, one merged):
#: every candidate as read: its username's id (the first 8 bytes of the username's bucket hash), the BLAKE2b-128
#: of its stretch input and its status, carrying the input's offset in the inputs file. Equal inputs keep the
#: strongest status, then the one read first; in username order, the distinct usernames are counted as they pass.
_CANDIDATES: Final = sm.Layout(8 + 16 + 1, 8 + 16, np.dtype("<u8"), summed=False)
#: the distinct inputs by their offset in the inputs file (the order they were read), with username id, status, and
#: the first 8 bytes of the input's BLAKE2b-128 (its bytes read back from the inputs file are checked against them)
_DISTINCT: Final = sm.Layout(8, 8, np.dtype([("name", "<u8"), ("status", "u1"), ("check", "<u8")]), summed=False)
#: shares of max_memory: each of the two sorts alive at once, and what is in flight beside them (the stretch
#: chunks sent and not yet back; the store's group of buckets; the batch being read)
_SORT_SHARE: Final = 0.35
_FLIGHT_SHARE: Final = 0.15
_PADDED_BYTES: Final = 128  # what padding a bucket holds a dummy entry (its bytes, copies, the sort's arrays)
_READ_BATCH: Final = 1 << 15  # candidates handed to the sort at once, at most (and half a run at most)
_INPUT_WINDOW: Final = 1 << 20  # bytes of the inputs file read at once, at most (and a quarter of what is in flight)


@dataclasses.dataclass(slots=True)
class PairBuildReport:
    """What a pair build read, merged, stretched and wrote. The numbers add up (:meth:`reconciles`).

    ``pairs_read`` counts every line read, bad ones included; each good line is one pair, and also makes
    ``variants_generated`` similar candidates and (with username entries) one username-only candidate.
    ``spill_bytes`` is what the build kept on disk beside the target at its fullest (measured once the candidates
    are merged and once every entry is made: the most of the two), and
    ``phase_seconds`` the wall time of each phase (read, sort, stretch, assemble; "oprf" and "check" are the
    parts of the stretch spent evaluating the OPRF and checking the workers in this process).
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
    spill_bytes: int = 0
    seconds: float = 0.0
    phase_seconds: dict[str, float] = dataclasses.field(default_factory=dict)

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
        spilled = f"; {self.spill_bytes:,} bytes sorted on disk beside it" if self.spill_bytes else ""
        lines.append(f"  wrote {self.path} ({self.bytes_written:,} bytes){spilled}")
        return "\n".join(lines)


def checkpoint_dir(target: str) -> str:
    """The directory beside a pair store where a build keeps its finished chunks."""
    return os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.checkpoints")


class _Checkpoints:
    """Finished chunks' stretch outputs, one 0600 file each in a 0700 directory beside the target, sealed with a
    key derived from the OPRF key (:func:`~credcheck._artifact.seal`): a file this build's key did not seal, or
    one changed since, is not taken."""

    def __init__(self, target: str, resume: bool, secret: bytes) -> None:
        self.dir = checkpoint_dir(target)
        self._key = seal_key(secret, _SEAL_PURPOSE)
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
        return os.path.join(self.dir, chunk_id + _CKPT_SUFFIX)

    def load(self, chunk_id: str, count: int) -> bytes | None:
        """The outputs of a finished chunk, or None when it has none (or one this build's key did not seal)."""
        try:
            with open(self._path(chunk_id), "rb") as fh:
                data = fh.read()
            outputs, sealed = _checkpoint_parts(data, chunk_id)
        except (OSError, ArtifactError):
            return None
        if len(outputs) != 32 * count:
            return None
        return outputs if unsealed(self._key, sealed, CHECKPOINT_MAGIC, chunk_id.encode(), outputs) else None

    def save(self, chunk_id: str, outputs: bytes) -> None:
        """Write a finished chunk: a private temporary file, fsynced, renamed into place."""
        sealed = seal(self._key, CHECKPOINT_MAGIC, chunk_id.encode(), outputs)
        body = CHECKPOINT_MAGIC + struct.pack("<I", len(outputs) // 32) + outputs + sealed
        tmp = self._path(chunk_id) + f".{os.getpid()}.tmp"
        try:
            _atomic.remove_quietly(tmp)  # one an earlier process of the same id left
            fd = _atomic.create_private(tmp)
            try:
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


def _checkpoint_end(head: bytes, size: int, name: str) -> int:
    """Where the outputs of a checkpoint of ``size`` bytes whose first 12 are ``head`` end (its seal follows; the
    layout: docs/FORMAT.md, "Pair store"); ArtifactError naming what is wrong with it otherwise."""
    if head[:8] == OLD_CHECKPOINT_MAGIC:
        raise ArtifactError(f"{name}: a version-1 checkpoint (sealed by an unkeyed checksum): a resume never takes it")
    if head[:8] != CHECKPOINT_MAGIC or len(head) < 12:
        raise ArtifactError(f"{name}: not a credcheck pair build checkpoint")
    end: int = 12 + 32 * struct.unpack_from("<I", head, 8)[0]
    if size != end + SEAL_SIZE:
        raise ArtifactError(f"{name}: its count makes it {end + SEAL_SIZE} bytes, not {size}: truncated or padded")
    return end


def _checkpoint_parts(data: bytes, name: str) -> tuple[bytes, bytes]:
    """A checkpoint's stretch outputs and its seal; ArtifactError naming what is wrong with it otherwise."""
    end = _checkpoint_end(data[:12], len(data), name)
    return data[12:end], data[end:]


@entry_point  # a checkpoint's outputs, and the key's secret, must not stay in a frame's locals
def describe_checkpoint(info: Description, key: KeyPair | None = None) -> None:
    """Fill ``info`` for a pair build's checkpoint (``.NAME.checkpoints/CHUNK.ckpt``): its version and outputs, and,
    with the ``key`` the build used, whether its seal verifies (what a resume checks before taking it)."""
    info.kind = "pair build checkpoint"
    chunk_id = os.path.basename(info.path).removesuffix(_CKPT_SUFFIX)
    with _atomic.open_for_reading(info.path, "checkpoint") as fh:
        head = fh.read(12)
        info.version = 1 if head[:8] == OLD_CHECKPOINT_MAGIC else 2
        end = _checkpoint_end(head, os.fstat(fh.fileno()).st_size, info.path)
        info.facts.update(chunk=chunk_id, outputs=(end - 12) // 32)
        if key is None:
            info.unchecked("its seal is keyed from the OPRF key the build used: give it with --key to check it")
            return
        # mapped, not read: its size, whatever it claims (a sparse file), costs no memory
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as whole:

            def sealed_by_the_key() -> None:
                outputs, sealed = whole[12:end], whole[end:]
                try:
                    if not unsealed(
                        seal_key(key.sk, _SEAL_PURPOSE), sealed, CHECKPOINT_MAGIC, chunk_id.encode(), outputs
                    ):
                        raise ArtifactError(
                            f"{info.path}: its seal does not verify under the key {key.key_id.hex()} (another key, "
                            "or edited): a resume with that key stretches the chunk again"
                        )
                finally:
                    outputs.release()
                    sealed.release()

            info.check(sealed_by_the_key)


def _chunk_id(stretch: Stretch, blob: bytes) -> str:
    """A chunk's name: the hash of its inputs (concatenated) and the stretch, the same in every run of the build."""
    digest = hashlib.sha256(b"credcheck-pairs-v1 checkpoint\x00" + stretch.spec.encode() + b"\x00")
    digest.update(blob)
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
    max_memory: int = DEFAULT_MAX_MEMORY

    @classmethod
    def of(
        cls,
        sources: Source | Sequence[Source],
        out: str | os.PathLike[str],
        key: KeyPair | str | os.PathLike[str],
        *,
        stretch: str | Stretch = "interactive",
        max_memory: int | str = DEFAULT_MAX_MEMORY,
        **options: Any,
    ) -> PairPlan:
        """The plan of :func:`build_pairs`'s arguments (one source or several, a key file or a KeyPair, a stretch
        profile's name, a size such as ``"64MiB"``)."""
        keypair = key if isinstance(key, KeyPair) else load_key(key)
        return cls(
            sources_of(sources), os.path.abspath(os.fspath(out)), keypair, stretch=Stretch.parse(stretch),
            max_memory=_args.byte_size("max_memory", max_memory, MIN_MEMORY, memory=True), **options,
        )  # fmt: skip

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
        if not isinstance(self.max_memory, int) or isinstance(self.max_memory, bool):
            raise ValueError(f"max_memory must be a number of bytes, got {self.max_memory!r}")
        _args.byte_size("max_memory", self.max_memory, MIN_MEMORY, memory=True)
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
    max_memory: int | str = DEFAULT_MAX_MEMORY,
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
    one core's work at the profile. ``max_memory`` (bytes, or a size such as ``"64MiB"`` or ``"2GiB"``; at least
    64 KiB, at most this machine's memory, default 1 GiB) bounds what the build holds for its entries and their
    sort buffers, whatever their number: the rest goes to sorted runs on disk beside ``out``.
    """
    plan = PairPlan.of(
        sources, out, key, input_format=input_format, stretch=stretch, variants=variants,
        username_entries=username_entries, bucket_bits=bucket_bits, executor=executor, workers=workers,
        resume=resume, strict=strict, progress=progress, chunk_size=chunk_size, max_memory=max_memory,
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
    spill = sm.WorkDir(target)
    spill.remove_stale()  # a killed build's inputs: usernames and password hashes, not to be left lying about
    clock = _Clock(report)
    sort_rows = int(plan.max_memory * _SORT_SHARE)
    in_flight = int(plan.max_memory * _FLIGHT_SHARE)
    try:
        inputs = _InputsFile(spill)
        candidates = sm.Runs(_CANDIDATES, spill, _CANDIDATES.rows_within(sort_rows))
        digests = _read(plan, report, inputs, candidates)
        if same_bytes_as is not None:
            changed = first_changed(report.sources, digests, same_bytes_as)
            if changed is not None:
                raise InputError(
                    f"{changed} changed while it was being built from (its bytes differ between the password "
                    "build's read and the pair build's): nothing was replaced"
                )
        clock.lap("read")
        distinct = sm.Runs(_DISTINCT, spill, _DISTINCT.rows_within(sort_rows))
        _distinct(candidates, distinct, report, plan.bucket_bits)
        report.spill_bytes = spill.size()
        candidates.discard()
        clock.lap("sort")
        checkpoints = _Checkpoints(target, plan.resume, keypair.sk)
        size = plan.chunk_size or max(1, min(65536, _CHUNK_WORK // (profile.n * profile.r * profile.p)))
        entries = sm.Runs(ENTRY_ROWS, spill, ENTRY_ROWS.rows_within(sort_rows))
        with inputs.reader(min(_INPUT_WINDOW, in_flight // 4)) as reader:
            tasks = _tasks(distinct.merged(), reader, size, profile)
            _stretch_and_evaluate(tasks, plan, checkpoints, size, report, entries, in_flight, clock)
        report.spill_bytes = max(report.spill_bytes, spill.size())
        distinct.discard()
        inputs.remove()
        clock.lap("stretch")
        entries.finish()
        tmp = _assemble(entries, plan, report, in_flight)
        entries.discard()
        clock.lap("assemble")
    finally:
        spill.remove()
    stage.add(_Finished(tmp, target, checkpoints))
    report.bytes_written = os.path.getsize(tmp)
    report.seconds = time.perf_counter() - started
    return report


class _Clock:
    """The wall time of each phase of a build, into its report."""

    def __init__(self, report: PairBuildReport) -> None:
        self._report, self._last = report, time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self._report.phase_seconds[phase] = self._report.phase_seconds.get(phase, 0.0) + now - self._last
        self._last = now

    def add(self, phase: str, seconds: float) -> None:
        self._report.phase_seconds[phase] = self._report.phase_seconds.get(phase, 0.0) + seconds


class _InputsFile:
    """Every candidate's stretch input, in the order read, in one file of the build's private spill directory:
    written as the sources are read, read straight through once the distinct ones are known."""

    def __init__(self, spill: sm.WorkDir) -> None:
        self.path = os.path.join(spill(), "inputs")
        self.size = 0
        try:
            self._file: BinaryIO | None = os.fdopen(_atomic.create_private(self.path), "wb")
        except OSError as exc:
            raise StorageError(f"cannot write the build's inputs beside the target: {exc.strerror or exc}") from exc

    def append(self, blob: bytes | bytearray) -> int:
        """Write ``blob``; return the offset it starts at."""
        assert self._file is not None
        at = self.size
        try:
            self._file.write(blob)
        except OSError as exc:
            raise StorageError(f"cannot write the build's inputs beside the target: {exc.strerror or exc}") from exc
        self.size += len(blob)
        return at

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                raise StorageError(f"cannot write the build's inputs beside the target: {exc.strerror or exc}") from exc
            self._file = None

    @contextlib.contextmanager
    def reader(self, window: int) -> Iterator[_InputReader]:
        """Read the inputs back, ``window`` bytes at a time."""
        self.close()
        try:
            handle = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise StorageError(f"cannot read the build's inputs back: {exc.strerror or exc}") from exc
        with handle:
            yield _InputReader(handle, window)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class _InputReader:
    """The inputs at ascending offsets of the inputs file, read through it a window at a time."""

    def __init__(self, handle: BinaryIO, window: int) -> None:
        self._handle, self._size = handle, max(1, window)
        self._window = b""
        self._at = 0  # the file offset of the window's first byte

    def _cover(self, start: int, end: int) -> int:
        """Make the window hold bytes ``start`` .. ``end - 1``; return where ``start`` is in it."""
        if start < self._at:
            raise AssertionError("the inputs file is read in order")
        if end > self._at + len(self._window):
            keep = self._window[start - self._at :] if start < self._at + len(self._window) else b""
            skip = start - self._at - len(self._window)
            if skip > 0:
                self._handle.seek(skip, os.SEEK_CUR)
            more = self._handle.read(max(self._size, end - start - len(keep)))
            self._window, self._at = keep + more, start
            if end > self._at + len(self._window):
                raise StorageError("the build's inputs file beside the target was cut short while it was read")
        return start - self._at

    def at(self, offset: int) -> bytes:
        """The input that starts at ``offset`` (kind, lp(username), 20 bytes)."""
        where = self._cover(offset, offset + HEAD_SIZE)
        end = offset + input_length(self._window[where : where + HEAD_SIZE])
        where = self._cover(offset, end)
        return self._window[where : where + end - offset]


def _read(plan: PairPlan, report: PairBuildReport, inputs: _InputsFile, candidates: sm.Runs) -> list[bytes]:
    """Read every source: each candidate's stretch input to ``inputs`` and its row to ``candidates``; return the
    xxh3-128 digest of each source's bytes."""
    source_list = list(plan.sources)
    digests = []
    totals = [source_size(s) for s in source_list]
    total = None if None in totals else sum(t or 0 for t in totals)
    done_before = 0
    batch = _Batch(inputs, candidates)
    n_variants, username_entries, progress = plan.variants, plan.username_entries, plan.progress
    for source, own in zip(source_list, totals, strict=True):
        stats = ComboStats(source_name(source))
        report.sources.append(stats)

        def tick(done: int, _total: int | None, _lines: int, base: int = done_before) -> None:
            if progress is not None:
                progress("read", base + done, total, sum(s.lines for s in report.sources))

        checksum = xxhash.xxh3_128()
        for pair in read_pairs(
            source, input_format=plan.input_format, strict=plan.strict, stats=stats, progress=tick, checksum=checksum
        ):
            name = bucket_hash(pair.username)[:8]
            batch.add(pair_input(pair.username, pair.sha1), name, Status.EXACT)
            if n_variants and pair.password is not None:
                for variant in variants(pair.password, n_variants):
                    sha1 = hashlib.sha1(variant.encode("utf-8")).digest()
                    batch.add(pair_input(pair.username, sha1), name, Status.SIMILAR)
                    report.variants_generated += 1
            if username_entries:
                batch.add(username_input(pair.username), name, Status.USERNAME)
                report.usernames_generated += 1
        done_before += own or 0
        digests.append(checksum.digest())
    batch.flush()
    inputs.close()
    candidates.finish()
    report.pairs_read = sum(s.lines for s in report.sources)
    report.bad_lines = sum(s.bad_lines for s in report.sources)
    return digests


def _input_id(data: bytes) -> bytes:
    """What tells a stretch input from another in the sort (BLAKE2b-128): equal ids are one input."""
    return hashlib.blake2b(data, digest_size=16).digest()


class _Batch:
    """Candidates as they are read, a batch at a time: their inputs to the inputs file, their rows to the sort.
    Compact (one bytes buffer each for the inputs and the keys): no Python object per candidate."""

    def __init__(self, inputs: _InputsFile, candidates: sm.Runs) -> None:
        self._inputs, self._candidates = inputs, candidates
        self._size = max(1, min(_READ_BATCH, candidates.run_rows // 2))
        self._blob = bytearray()
        self._starts = array.array("q")
        self._keys = bytearray()

    def add(self, data: bytes, name: bytes, status: int) -> None:
        self._starts.append(len(self._blob))
        self._blob += data
        self._keys += name
        self._keys += _input_id(data)
        self._keys.append(status)
        if len(self._starts) >= self._size:
            self.flush()

    def flush(self) -> None:
        if not self._starts:
            return
        base = self._inputs.append(self._blob)
        offsets = np.frombuffer(self._starts, dtype=np.int64).astype(np.uint64) + np.uint64(base)
        rows = np.frombuffer(bytes(self._keys), dtype=np.uint8).reshape(len(self._starts), _CANDIDATES.width)
        self._candidates.add(Chunk(rows, offsets.astype("<u8")))
        self._blob, self._starts, self._keys = bytearray(), array.array("q"), bytearray()


def _distinct(candidates: sm.Runs, distinct: sm.Runs, report: PairBuildReport, bucket_bits: int | None) -> None:
    """Merge the candidates: each distinct input once, with the strongest status it was seen with, into
    ``distinct`` (by offset); count what was kept and merged, and the distinct usernames; pick the bucket bits."""
    kept = usernames = 0
    by_status = np.zeros(4, dtype=np.int64)
    last_name: bytes | None = None
    for chunk in candidates.merged():
        n = len(chunk.counts)
        names = np.ascontiguousarray(chunk.digests[:, :8]).view(">u8").ravel()
        statuses = chunk.digests[:, _CANDIDATES.width - 1]
        new = np.ones(n, dtype=bool)
        new[1:] = names[1:] != names[:-1]
        if last_name is not None and chunk.digests[0, :8].tobytes() == last_name:
            new[0] = False
        usernames += int(np.count_nonzero(new))
        last_name = chunk.digests[-1, :8].tobytes()
        by_status += np.bincount(statuses, minlength=4)[:4]
        kept += n
        values = np.empty(n, dtype=_DISTINCT.value)
        values["name"], values["status"] = names, statuses
        values["check"] = np.ascontiguousarray(chunk.digests[:, 8:16]).view("<u8").ravel()
        offsets = chunk.counts.astype(">u8").view(np.uint8).reshape(n, 8)
        distinct.add(Chunk(offsets, values))
    distinct.finish()
    generated = report.pairs_read - report.bad_lines + report.variants_generated + report.usernames_generated
    report.entries_kept, report.duplicates_merged = kept, generated - kept
    report.distinct_usernames = usernames
    report.exact, report.similar, report.username = (int(c) for c in by_status[1:4])
    report.bucket_bits = default_bucket_bits(usernames) if bucket_bits is None else bucket_bits


@dataclasses.dataclass(slots=True)
class _Task:
    """A chunk of distinct inputs to stretch: their bytes joined (each self-delimiting) and where each ends, with
    each one's username id and status."""

    chunk_id: str
    blob: bytes
    ends: npt.NDArray[np.int64]
    names: npt.NDArray[np.uint64]
    statuses: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.ends)

    def input(self, i: int) -> bytes:
        return self.blob[int(self.ends[i - 1]) if i else 0 : int(self.ends[i])]

    @property
    def weight(self) -> int:
        """Bytes it holds while in flight: its inputs (twice: the copy sent), their outputs and its arrays."""
        return 2 * len(self.blob) + len(self) * (32 + 8 + 8 + 1 + ENTRY_ROWS.row_bytes)


def _tasks(rows: Iterator[Chunk], reader: _InputReader, size: int, profile: Stretch) -> Iterator[_Task]:
    """The distinct inputs, in the order they were read, in chunks of ``size``."""
    blob = bytearray()
    ends: list[int] = []
    names: list[npt.NDArray[np.uint64]] = []
    statuses: list[npt.NDArray[np.uint8]] = []

    def cut() -> _Task:
        nonlocal blob, ends
        all_names, all_statuses = np.concatenate(names), np.concatenate(statuses)
        names[:], statuses[:] = [all_names[len(ends) :]], [all_statuses[len(ends) :]]
        data = bytes(blob)
        task = _Task(
            _chunk_id(profile, data), data, np.array(ends, dtype=np.int64),
            all_names[: len(ends)], all_statuses[: len(ends)],
        )  # fmt: skip
        blob, ends = bytearray(), []
        return task

    for chunk in rows:
        values: npt.NDArray[Any] = chunk.counts  # _DISTINCT's payload: username id, status, check
        names.append(values["name"].astype(np.uint64))
        statuses.append(values["status"].astype(np.uint8))
        offsets = np.ascontiguousarray(chunk.digests).view(">u8").ravel().tolist()
        for offset, check in zip(offsets, values["check"].tolist(), strict=True):
            data = reader.at(offset)
            if int.from_bytes(_input_id(data)[:8], "little") != check:
                raise StorageError("the build's inputs file beside the target changed after the build wrote it")
            blob += data
            ends.append(len(blob))
            if len(ends) == size:
                yield cut()
    if ends:
        yield cut()


def _assemble(entries: sm.Runs, plan: PairPlan, report: PairBuildReport, in_flight: int) -> str:
    """Write the store from the sorted entries, bucket after bucket; return the finished file's name."""
    group = max(1, in_flight // (BUCKET_QUANTUM * _PADDED_BYTES))  # the dummies of a group of empty buckets
    writer = StoreWriter(
        plan.out, key_id=plan.key.key_id, bits=report.bucket_bits, stretch=plan.stretch,
        username_entries=plan.username_entries, variants=plan.variants, group=group,
    )  # fmt: skip
    try:
        for chunk in entries.merged():
            writer.add(*stored_entries(chunk))
        tmp = writer.finish()
    except BaseException:
        writer.abort()
        raise
    report.dummies = writer.dummies
    return tmp


_CHECKERS: Final = os.cpu_count() or 1
_checker_pool: cf.ThreadPoolExecutor | None = None
_checker_lock = threading.Lock()


def _checkers() -> cf.ThreadPoolExecutor:
    """The threads this process re-stretches samples of the workers' outputs on: one a core, made once."""
    global _checker_pool
    with _checker_lock:
        if _checker_pool is None:
            _checker_pool = cf.ThreadPoolExecutor(max_workers=_CHECKERS, thread_name_prefix="credcheck-check")
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
    tasks: Iterator[_Task],
    plan: PairPlan,
    checkpoints: _Checkpoints,
    chunk_size: int,
    report: PairBuildReport,
    entries: sm.Runs,
    in_flight: int,
    clock: _Clock,
) -> None:
    """Stretch every input (on the executor, or from a checkpoint), evaluate the OPRF here, and hand each entry
    (bucket, tag, status, mask) to ``entries``. Chunks in flight hold ``in_flight`` bytes at most (one at least)."""
    profile, keypair, progress, workers = plan.stretch, plan.key, plan.progress, plan.workers
    n = report.entries_kept
    shift = np.uint64(64 - report.bucket_bits)
    done = 0

    share = max(CHECK_SHARE, CHECK_STRENGTH / max(1, -(-n // chunk_size)))  # of each chunk's inputs
    checkers = _checkers()

    def plausible(task: _Task, outputs: bytes) -> bool:
        # Inputs drawn at random (the worker cannot know which) are stretched again here: a worker that returned
        # a wrong output for even one input a chunk would otherwise make that pair silently unfindable. With a
        # share s of each of C chunks checked, it passes with odds (1 - s)^C <= e^-(s C) <= e^-CHECK_STRENGTH.
        # The checks run on this process's cores at once (hashlib.scrypt lets go of the GIL), so that they never
        # hold the build back to one core's pace, however many workers a cluster brings.
        started = time.perf_counter()
        count = len(outputs) // 32
        drawn = _draw.sample(range(count), min(count, math.ceil(count * share)))

        def agree(picked: list[int]) -> bool:
            return all(profile(task.input(i)) == outputs[32 * i : 32 * i + 32] for i in picked)

        # one share of the draw a thread (a future per input would cost more memory than the chunk itself)
        answer = all(list(checkers.map(agree, [drawn[k::_CHECKERS] for k in range(_CHECKERS)])))
        clock.add("check", time.perf_counter() - started)
        return answer

    def finish(task: _Task, outputs: bytes) -> None:
        nonlocal done
        started = time.perf_counter()
        count = len(task)
        tags = np.empty((count, 16), dtype=np.uint8)
        masks = np.empty(count, dtype=np.uint8)
        for i in range(count):
            y = _oprf.evaluate(keypair.sk, outputs[32 * i : 32 * i + 32])
            tags[i] = np.frombuffer(tag(y), dtype=np.uint8)
            masks[i] = mask(y)
        clock.add("oprf", time.perf_counter() - started)
        # a bucket is the top B bits of the username's bucket hash, whose first 8 bytes are its id
        buckets = (task.names >> shift).astype(np.uint32) if shift < 64 else np.zeros(count, dtype=np.uint32)
        entries.add(entry_rows(buckets, tags, task.statuses, masks))
        done += count
        if progress is not None:
            progress("stretch", done, n, report.pairs_read)

    pool: cf.Executor | None = None
    own = plan.executor is None
    window = 2 * (workers or os.cpu_count() or 1) + 1  # chunks in flight: every worker busy, memory bounded
    pending: dict[cf.Future[bytes], _Task] = {}
    held = 0  # bytes the chunks in flight hold
    upcoming: _Task | None = next(tasks, None)
    try:
        while True:
            while (
                upcoming is not None and len(pending) < window and (not pending or held + upcoming.weight <= in_flight)
            ):
                task, upcoming = upcoming, next(tasks, None)
                outputs = checkpoints.load(task.chunk_id, len(task))  # sealed by this key: checked when it was made
                if outputs is not None:
                    report.resumed += len(task)
                    finish(task, outputs)
                    continue
                if pool is None:
                    pool = _default_executor(workers) if plan.executor is None else plan.executor
                pending[pool.submit(stretch_chunk, profile.n, profile.r, profile.p, task.blob)] = task
                held += task.weight
            if not pending:
                break
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            failure: BaseException | None = None
            for future in finished:  # every chunk that did finish is kept, even when another one failed
                task = pending.pop(future)
                held -= task.weight
                error = future.exception()
                if error is not None:
                    failure = failure or error
                    continue
                outputs = _checked(future.result(), len(task))
                if not plausible(task, outputs):
                    raise ArtifactError("a stretch worker returned a result that a recomputation here contradicts")
                with _atomic.uninterrupted():  # a stop mid-save would leave its temporary file behind
                    checkpoints.save(task.chunk_id, outputs)
                report.stretched += len(task)
                finish(task, outputs)
            if failure is not None:
                raise failure
    except BaseException:
        for future, task in pending.items():
            if not future.cancel() and future.done() and future.exception() is None:
                with contextlib.suppress(Exception):  # salvage what finished meanwhile, for a resume
                    outputs = _checked(future.result(), len(task))
                    if plausible(task, outputs):
                        checkpoints.save(task.chunk_id, outputs)
        if own and pool is not None:
            _stop_pool(pool)
        raise
    if own and pool is not None:
        pool.shutdown()
