"""Leaked sets in, artefacts out: ``build()`` streams sources into a Bloom filter and/or a range store.

Every artefact needs the set's distinct digests with summed counts, in order. Input that is already
sorted (HIBP's dumps are) is read twice and never copied: a first pass counts, a second one writes.
Anything else (stdin, unsorted lists, several dumps at once) is cut into sorted runs kept in memory or,
past a fixed budget, in temporary files beside the target, and merged. Memory stays at the artefact
plus a bounded buffer, and nothing replaces an existing artefact until the whole build has succeeded.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .bloom import BloomFilter
from .corpus import FORMATS, Chunk, Source, SourceStats, read_source, reopenable, source_name, source_size
from .errors import CapacityError, InputError
from .hashing import check_scheme
from .store import PREFIXES, StoreWriter, prefix_of

__all__ = ["BuildReport", "build"]

MAX_COUNT = 0xFFFFFFFF
RUN_ROWS = 8 << 20  # digests sorted in memory at once before a run is spilled to disk
MERGE_BLOCK = 1 << 18  # rows read from each run per merge step

#: progress(phase, done, total, lines): phase "scan"/"write" count input bytes, "merge" counts digests.
BuildProgress = Callable[[str, int, "int | None", int], None]


@dataclasses.dataclass(slots=True)
class BuildReport:
    """What a build read, merged, dropped and wrote.

    The numbers add up: ``lines_read == kept + below_min_count + duplicates_merged + bad_lines``.
    """

    scheme: str
    min_count: int
    sources: list[SourceStats]
    lines_read: int = 0
    bad_lines: int = 0
    hashes_read: int = 0
    duplicates_merged: int = 0
    distinct: int = 0
    below_min_count: int = 0
    kept: int = 0
    sorted_input: bool = True
    filter_path: str | None = None
    store_path: str | None = None
    seconds: float = 0.0

    def reconciles(self) -> bool:
        """True when every line read is accounted for exactly once."""
        return self.lines_read == self.kept + self.below_min_count + self.duplicates_merged + self.bad_lines

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """A short human-readable account of the build."""
        rate = self.lines_read / self.seconds if self.seconds else 0.0
        lines = [
            f"read {self.lines_read:,} lines from {len(self.sources)} source(s) in {self.seconds:.2f} s "
            f"({rate:,.0f} lines/s)",
            f"  kept {self.kept:,} {self.scheme} hashes; merged {self.duplicates_merged:,} duplicates; "
            f"dropped {self.below_min_count:,} seen fewer than {self.min_count} times; {self.bad_lines:,} bad lines",
        ]
        for stats in self.sources:
            if stats.bad_lines:
                shown = ", ".join(map(str, stats.bad_line_numbers))
                more = ", ..." if stats.bad_lines > len(stats.bad_line_numbers) else ""
                lines.append(
                    f"  {stats.name}: {stats.bad_lines:,} bad lines ({stats.input_format}): line {shown}{more}"
                )
        for label, path in (("filter", self.filter_path), ("store", self.store_path)):
            if path:
                lines.append(f"  wrote {label} {path} ({os.path.getsize(path):,} bytes)")
        return "\n".join(lines)


class Sink(Protocol):
    """Where the sorted, merged digests go; ``finish`` makes the artefact appear atomically."""

    def add(self, digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64]) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


class _Unsorted(Exception):
    """Raised inside a pass when input that was hoped to be sorted is not."""


def _keys(digests: npt.NDArray[np.uint8]) -> npt.NDArray[Any]:
    """View digest rows as fixed-width byte strings, which numpy compares and sorts bytewise."""
    return np.ascontiguousarray(digests).view(f"S{digests.shape[1]}").ravel()


def _sum_runs(digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64]) -> Chunk:
    """Merge adjacent equal digests of a sorted chunk, summing their counts."""
    keys = _keys(digests)
    if len(keys) < 2:
        return Chunk(digests, counts)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    if len(starts) == len(keys):
        return Chunk(digests, counts)
    return Chunk(digests[starts], np.add.reduceat(counts, starts))


def _sort_unique(digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64]) -> Chunk:
    order = np.argsort(_keys(digests), kind="stable")
    return _sum_runs(digests[order], counts[order])


def _ordered(chunks: Iterable[Chunk]) -> Iterator[Chunk]:
    """Pass through chunks of input that must already be sorted, merging duplicates across chunk edges.

    Raises _Unsorted at the first digest smaller than the one before it.
    """
    carry: Chunk | None = None
    for chunk in chunks:
        keys = _keys(chunk.digests)
        if len(keys) > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
            raise _Unsorted
        merged = _sum_runs(chunk.digests, chunk.counts)
        if carry is not None:
            last = _keys(carry.digests)[0]
            if keys[0] < last:
                raise _Unsorted
            if keys[0] == last:
                merged.counts[0] += carry.counts[0]
            else:
                yield carry
        carry = Chunk(merged.digests[-1:], merged.counts[-1:])
        if len(merged.counts) > 1:
            yield Chunk(merged.digests[:-1], merged.counts[:-1])
    if carry is not None:
        yield carry


class _Runs:
    """Sorted runs of the input: in memory while they fit in RUN_ROWS, then in temporary files."""

    def __init__(self, size: int, workdir: Callable[[], str], run_rows: int) -> None:
        self.size, self._workdir, self.run_rows = size, workdir, run_rows
        self._pending: list[Chunk] = []
        self._pending_rows = 0
        self._files: list[tuple[str, int]] = []
        self._memory: Chunk | None = None
        self.rows = 0

    def add(self, chunk: Chunk) -> None:
        self._pending.append(chunk)
        self._pending_rows += len(chunk.counts)
        if self._pending_rows >= self.run_rows:
            self._spill()

    def _sorted_pending(self) -> Chunk:
        digests = (
            np.concatenate([c.digests for c in self._pending]) if self._pending else np.empty((0, self.size), np.uint8)
        )
        counts = np.concatenate([c.counts for c in self._pending]) if self._pending else np.empty(0, np.uint64)
        self._pending, self._pending_rows = [], 0
        return _sort_unique(digests, counts)

    def _spill(self) -> None:
        run = self._sorted_pending()
        path = os.path.join(self._workdir(), f"run{len(self._files)}")
        with open(path, "wb") as out:
            out.write(np.ascontiguousarray(run.digests).data)
            out.write(np.ascontiguousarray(run.counts).data)
        self._files.append((path, len(run.counts)))
        self.rows += len(run.counts)

    def finish(self) -> None:
        if self._files:
            if self._pending:
                self._spill()
        else:
            self._memory = self._sorted_pending()
            self.rows = len(self._memory.counts)

    def __iter__(self) -> Iterator[Chunk]:
        if self._memory is not None:
            for start in range(0, len(self._memory.counts), MERGE_BLOCK):
                yield Chunk(
                    self._memory.digests[start : start + MERGE_BLOCK],
                    self._memory.counts[start : start + MERGE_BLOCK],
                )
            return
        runs = []
        for path, rows in self._files:
            digests = np.memmap(path, dtype=np.uint8, mode="r", shape=(rows, self.size)) if rows else None
            counts = (
                np.memmap(path, dtype=np.uint64, mode="r", offset=rows * self.size, shape=(rows,)) if rows else None
            )
            if digests is not None and counts is not None:
                runs.append((digests, counts))
        yield from _merge(runs)


def _merge(runs: Sequence[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint64]]]) -> Iterator[Chunk]:
    """K-way merge of sorted unique runs, a block at a time: take every row up to the smallest block end."""
    pos = [0] * len(runs)
    while True:
        live = [i for i, (d, _) in enumerate(runs) if pos[i] < len(d)]
        if not live:
            return
        ends = {i: min(pos[i] + MERGE_BLOCK, len(runs[i][0])) for i in live}
        bounded = [i for i in live if ends[i] < len(runs[i][0])]
        bound = min((_keys(runs[i][0][ends[i] - 1 : ends[i]])[0] for i in bounded), default=None)
        parts_d, parts_c = [], []
        for i in live:
            d, c = runs[i]
            block = np.asarray(d[pos[i] : ends[i]])
            take = len(block) if bound is None else int(np.searchsorted(_keys(block), bound, side="right"))
            parts_d.append(block[:take])
            parts_c.append(np.asarray(c[pos[i] : pos[i] + take]))
            pos[i] += take
        yield _sort_unique(np.concatenate(parts_d), np.concatenate(parts_c))


class _FilterSink:
    def __init__(self, path: str, capacity: int, fp_rate: float, scheme: str, min_count: int) -> None:
        self.path = path
        self.bloom = BloomFilter.create(max(1, capacity), fp_rate, scheme=scheme, min_count=min_count)

    def add(self, digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64]) -> None:
        self.bloom.update(digests)

    def finish(self) -> None:
        self.bloom.save(self.path)

    def abort(self) -> None:
        """Nothing is on disk before finish()."""


SinkFactory = Callable[[int], Sink]


def build(
    sources: Source | Sequence[Source],
    *,
    filter: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    hash: str = "sha1",
    fp_rate: float = 1e-6,
    min_count: int = 1,
    input_format: str = "auto",
    strict: bool = False,
    capacity: int | None = None,
    progress: BuildProgress | None = None,
    run_rows: int = RUN_ROWS,
) -> BuildReport:
    """Build a Bloom filter and/or a range store from leaked sets; return a report whose numbers add up.

    ``sources`` are paths (``-`` for standard input, gzip/bzip2/xz read transparently) or open binary
    files. ``min_count`` keeps only hashes seen at least that many times. ``capacity`` sizes the filter
    for more items than this build keeps (room for later merges). Existing artefacts are replaced only
    when the whole build succeeds.
    """
    started = time.perf_counter()
    size = check_scheme(hash)
    if filter is None and store is None:
        raise ValueError("build() needs a filter path, a store path, or both")
    if not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
    if input_format not in FORMATS:
        raise ValueError(f"unknown input format {input_format!r}; expected one of {', '.join(FORMATS)}")
    if not 0.0 < fp_rate < 1.0:
        raise ValueError(f"fp_rate must be between 0 and 1 (exclusive), got {fp_rate!r}")
    single = isinstance(sources, str | os.PathLike) or hasattr(sources, "read")
    source_list: list[Source] = [sources] if single else list(sources)  # type: ignore[list-item,arg-type]
    if not source_list:
        raise ValueError("build() needs at least one source")
    targets = [os.path.abspath(os.fspath(p)) for p in (filter, store) if p is not None]

    report = BuildReport(scheme=hash, min_count=min_count, sources=[])
    histogram = np.zeros(PREFIXES, dtype=np.int64) if store is not None else None
    workdir: list[str] = []

    def make_workdir() -> str:
        if not workdir:
            workdir.append(tempfile.mkdtemp(prefix=".credcheck-build-", dir=os.path.dirname(targets[0])))
        return workdir[0]

    def read_all(phase: str) -> Iterator[Chunk]:
        report.sources = [SourceStats(source_name(s)) for s in source_list]
        report.hashes_read = 0
        totals = [source_size(s) for s in source_list]
        total = None if None in totals else sum(t or 0 for t in totals)
        done_before = 0
        for source, stats, own in zip(source_list, report.sources, totals, strict=True):

            def tick(done: int, _total: int | None, _lines: int, base: int = done_before) -> None:
                if progress is not None:
                    progress(phase, base + done, total, sum(s.lines for s in report.sources))

            for chunk in read_source(
                source, scheme=hash, input_format=input_format, strict=strict, stats=stats, progress=tick
            ):
                report.hashes_read += len(chunk.counts)
                yield chunk
            done_before += own or 0

    try:
        if all(reopenable(s) for s in source_list):
            try:
                _count(_ordered(read_all("scan")), report, min_count, histogram)
                unique: Callable[[], Iterable[Chunk]] = lambda: _second_pass(read_all("write"), report)  # noqa: E731
            except _Unsorted:
                report.sorted_input = False
        else:
            report.sorted_input = False
        if not report.sorted_input:
            runs = _Runs(size, make_workdir, run_rows)
            for chunk in read_all("read"):
                runs.add(chunk)
            runs.finish()
            _count(_progress_rows(runs, "merge", progress, runs.rows), report, min_count, histogram)
            unique = lambda: _progress_rows(runs, "write", progress, runs.rows)  # noqa: E731

        sinks: list[Sink] = []
        if filter is not None:
            cap = report.kept if capacity is None else capacity
            if cap < report.kept:
                raise CapacityError(f"capacity {cap} is smaller than the {report.kept} hashes this build keeps")
            sinks.append(_FilterSink(os.fspath(filter), cap, fp_rate, hash, min_count))
            report.filter_path = os.fspath(filter)
        if store is not None and histogram is not None:
            sinks.append(StoreWriter(store, scheme=hash, prefix_counts=histogram, min_count=min_count))
            report.store_path = os.fspath(store)
        try:
            for chunk in unique():
                keep = chunk.counts >= min_count
                digests, counts = (
                    (chunk.digests, chunk.counts) if keep.all() else (chunk.digests[keep], chunk.counts[keep])
                )
                for sink in sinks:
                    sink.add(digests, counts)
            for sink in sinks:
                sink.finish()
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise
    finally:
        for path in workdir:
            shutil.rmtree(path, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _progress_rows(chunks: Iterable[Chunk], phase: str, progress: BuildProgress | None, total: int) -> Iterator[Chunk]:
    done = 0
    for chunk in chunks:
        done += len(chunk.counts)
        if progress is not None:
            progress(phase, done, total, done)
        yield chunk


def _count(
    unique: Iterable[Chunk], report: BuildReport, min_count: int, histogram: npt.NDArray[np.int64] | None
) -> None:
    """First pass over the merged digests: how many are distinct, kept, below the threshold, per prefix."""
    distinct = below = 0
    if histogram is not None:
        histogram[:] = 0
    for chunk in unique:
        distinct += len(chunk.counts)
        keep = chunk.counts >= min_count
        below += len(keep) - int(np.count_nonzero(keep))
        if histogram is not None:
            histogram += np.bincount(prefix_of(chunk.digests[keep]), minlength=PREFIXES)
        if len(chunk.counts) and int(chunk.counts.max()) > MAX_COUNT:
            raise InputError(f"a hash's summed count exceeds {MAX_COUNT}, the largest a store holds; split the sources")
    report.lines_read = sum(s.lines for s in report.sources)
    report.bad_lines = sum(s.bad_lines for s in report.sources)
    report.distinct, report.below_min_count, report.kept = distinct, below, distinct - below
    report.duplicates_merged = report.hashes_read - distinct


def _second_pass(chunks: Iterable[Chunk], report: BuildReport) -> Iterator[Chunk]:
    """Re-read sorted input for writing, refusing it if it changed since the counting pass."""
    expected = (report.lines_read, report.hashes_read)
    try:
        yield from _ordered(chunks)
    except _Unsorted:
        raise InputError("the input changed while it was being built from (it is no longer sorted)") from None
    if (sum(s.lines for s in report.sources), report.hashes_read) != expected:
        raise InputError("the input changed while it was being built from (its line count differs)")
