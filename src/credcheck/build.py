"""Leaked sets in, artefacts out: ``build()`` streams sources into a Bloom filter and/or a range store.

Every artefact needs the set's distinct digests with summed counts, in order. Input that is already
sorted (HIBP's dumps are) is read twice and never copied: a first pass counts, a second one writes
(each pass hashes the bytes it read; a source that changed in between is refused).
Anything else (stdin, unsorted lists, several dumps at once) is cut into sorted runs kept in memory or,
past a fixed budget, in temporary files beside the target, and merged. Memory stays at the artefact
plus a bounded buffer, and nothing replaces an existing artefact until the whole build has succeeded.
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import xxhash

from . import _atomic
from .bloom import BloomFilter, check_size
from .corpus import FORMATS, Chunk, Source, SourceStats, read_source, reopenable, source_name, source_size
from .errors import CapacityError, InputError, StorageError
from .hashing import check_scheme
from .store import PREFIXES, RangeStore, StoreWriter, prefix_of

__all__ = ["BuildReport", "build"]

MAX_COUNT = 0xFFFFFFFF
RUN_ROWS = 8 << 20  # digests sorted in memory at once before a run is spilled to disk
MERGE_BLOCK = 1 << 18  # rows read from each run per merge step

#: progress(phase, done, total, lines): phase "scan"/"write" count input bytes, "merge" counts digests.
BuildProgress = Callable[[str, int, "int | None", int], None]


@dataclasses.dataclass(slots=True)
class BuildReport:
    """What a build read, merged, dropped and wrote.

    The numbers add up: ``lines_read + carried == kept + below_min_count + duplicates_merged + bad_lines``,
    where ``carried`` counts the hashes an update started from (0 for a fresh build).
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
    updated: bool = False
    carried: int = 0
    added: int = 0
    raised: int = 0
    filter_resized_from: int = 0
    warnings: list[str] = dataclasses.field(default_factory=list)
    filter_path: str | None = None
    store_path: str | None = None
    seconds: float = 0.0

    def reconciles(self) -> bool:
        """True when every line read is accounted for exactly once."""
        accounted = self.kept + self.below_min_count + self.duplicates_merged + self.bad_lines
        return self.lines_read + self.carried == accounted

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
        if self.updated:
            lines.append(
                f"  update: {self.added:,} new hashes, {self.raised:,} already known"
                + (f" (counts summed into the {self.carried:,} the store held)" if self.carried else "")
            )
        if self.filter_resized_from:
            lines.append(
                f"  filter rebuilt larger from the merged store: capacity {self.filter_resized_from:,} -> "
                f"{self.kept:,} hashes, false-positive rate kept"
            )
        for stats in self.sources:
            header = "; line 1 is a column header" if stats.header else ""
            lines.append(f"  {stats.name}: read as {stats.input_format} ({self.scheme}){header}")
            if stats.bad_lines:
                shown = ", ".join(map(str, stats.bad_line_numbers))
                more = ", ..." if stats.bad_lines > len(stats.bad_line_numbers) else ""
                lines.append(
                    f"  {stats.name}: {stats.bad_lines:,} bad lines ({stats.input_format}): line {shown}{more}"
                )
        lines.extend(f"  warning: {warning}" for warning in self.warnings)
        for label, path in (("filter", self.filter_path), ("store", self.store_path)):
            if path:
                lines.append(f"  wrote {label} {path} ({os.path.getsize(path):,} bytes)")
        return "\n".join(lines)


class Sink(Protocol):
    """Where the sorted, merged digests go: ``finish`` writes the artefact beside its target and fsyncs it,
    ``commit`` renames it into place (only once every sink has finished), ``abort`` drops it."""

    def add(self, digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64]) -> None: ...

    def finish(self) -> None: ...

    def commit(self) -> None: ...

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
    """Sorted runs of the input: in memory while they fit in ``run_rows``, then in temporary files."""

    def __init__(self, size: int, workdir: Callable[[], str], run_rows: int) -> None:
        self.size, self._workdir, self.run_rows = size, workdir, run_rows
        self._pending: list[Chunk] = []
        self._pending_rows = 0
        self._files: list[tuple[str, int]] = []
        self._memory: Chunk | None = None

    def add(self, chunk: Chunk) -> None:
        self._pending.append(chunk)
        self._pending_rows += len(chunk.counts)
        if self._pending_rows >= self.run_rows:
            self._spill()

    def _sorted_pending(self) -> Chunk:
        if not self._pending:
            return Chunk(np.empty((0, self.size), np.uint8), np.empty(0, np.uint64))
        digests = np.concatenate([c.digests for c in self._pending])
        counts = np.concatenate([c.counts for c in self._pending])
        self._pending, self._pending_rows = [], 0
        return _sort_unique(digests, counts)

    def _spill(self) -> None:
        run = self._sorted_pending()
        path = os.path.join(self._workdir(), f"run{len(self._files)}")
        try:
            with open(path, "wb") as out:
                out.write(np.ascontiguousarray(run.digests).data)
                out.write(np.ascontiguousarray(run.counts).data)
        except OSError as exc:
            raise StorageError(f"cannot write a sorted run beside the target: {exc.strerror or exc}") from exc
        self._files.append((path, len(run.counts)))

    def finish(self) -> None:
        if not self._files:
            self._memory = self._sorted_pending()
        elif self._pending:
            self._spill()

    def _blocks(self, digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64]) -> Iterator[Chunk]:
        for start in range(0, len(counts), MERGE_BLOCK):
            end = start + MERGE_BLOCK
            yield Chunk(np.asarray(digests[start:end]), np.asarray(counts[start:end]))

    def streams(self) -> list[Iterator[Chunk]]:
        """One sorted, merged stream per run."""
        if self._memory is not None:
            return [self._blocks(self._memory.digests, self._memory.counts)]
        streams = []
        for path, rows in self._files:
            if rows:
                digests = np.memmap(path, dtype=np.uint8, mode="r", shape=(rows, self.size))
                counts = np.memmap(path, dtype=np.uint64, mode="r", offset=rows * self.size, shape=(rows,))
                streams.append(self._blocks(digests, counts))
        return streams


def _merge(streams: Sequence[Iterable[Chunk]]) -> Iterator[Chunk]:
    """K-way merge of sorted, merged streams (each digest at most once per stream), summing equal digests.

    Each step takes, from every stream's current chunk, the rows up to the smallest chunk end; the
    stream(s) ending there move on to their next chunk.
    """
    iters = [iter(s) for s in streams]
    heads: list[Chunk | None] = [next((c for c in it if len(c.counts)), None) for it in iters]
    while True:
        live = [i for i, head in enumerate(heads) if head is not None]
        if not live:
            return
        if len(live) == 1:  # one stream left: pass it through
            (i,) = live
            head = heads[i]
            assert head is not None
            yield head
            yield from (c for c in iters[i] if len(c.counts))
            return
        bound = min(_keys(heads[i].digests[-1:])[0] for i in live)  # type: ignore[union-attr]
        parts: list[Chunk] = []
        for i in live:
            head = heads[i]
            assert head is not None
            take = int(np.searchsorted(_keys(head.digests), bound, side="right"))
            parts.append(Chunk(head.digests[:take], head.counts[:take]))
            if take == len(head.counts):
                heads[i] = next((c for c in iters[i] if len(c.counts)), None)
            else:
                heads[i] = Chunk(head.digests[take:], head.counts[take:])
        yield _sort_unique(np.concatenate([p.digests for p in parts]), np.concatenate([p.counts for p in parts]))


def _store_stream(store: RangeStore) -> Iterator[Chunk]:
    """An existing store's rows as full digests with counts, in order."""
    bounds = store.index
    for start in range(0, store.rows, MERGE_BLOCK):
        end = min(start + MERGE_BLOCK, store.rows)
        # the prefix of each row: the last p with index[p] <= row
        first = int(np.searchsorted(bounds, start, side="right")) - 1
        last = int(np.searchsorted(bounds, end - 1, side="right")) - 1
        prefixes = np.repeat(
            np.arange(first, last + 1, dtype=np.int64),
            np.diff(np.clip(bounds[first : last + 2].astype(np.int64), start, end)).astype(np.int64),
        )
        digests = np.empty((end - start, store.digest_size), dtype=np.uint8)
        digests[:, 0] = prefixes >> 12
        digests[:, 1] = (prefixes >> 4) & 0xFF
        digests[:, 2:] = store.suffixes[start:end]
        yield Chunk(digests, store.counts[start:end].astype(np.uint64))


class _Counted:
    """Counts the distinct digests that flow through (the new sources' own, before an update's merge)."""

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self.chunks, self.rows = chunks, 0

    def __iter__(self) -> Iterator[Chunk]:
        for chunk in self.chunks:
            self.rows += len(chunk.counts)
            yield chunk


class _FilterSink:
    def __init__(self, path: str, bloom: BloomFilter) -> None:
        self.path, self.bloom = path, bloom
        self._tmp: str | None = None

    def add(self, digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64]) -> None:
        self.bloom.update(digests)

    def finish(self) -> None:
        self._tmp = self.bloom.save_beside(self.path)

    def commit(self) -> None:
        assert self._tmp is not None, "commit() before finish()"
        _atomic.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._tmp is not None:
            _atomic.remove_quietly(self._tmp)


def _capacity_error(path: str, holds: int, bloom: BloomFilter) -> CapacityError:
    """A filter-only update that outgrows the filter: it holds bits, not hashes, so it cannot be rebuilt larger."""
    fill = 1.0 - math.exp(-bloom.k * holds / bloom.m)
    return CapacityError(
        f"{path}: the update would make it hold {holds:,} hashes but it was designed for {bloom.capacity:,} (its "
        f"false-positive rate would rise from {bloom.fp_rate:g} to about {fill**bloom.k:.2g}). A filter alone "
        f"cannot grow: update it together with the --store it was built with (the filter is then rebuilt at a "
        f"fitting size), or rebuild it from all the sources with --capacity {2 * holds}"
    )


def build(
    sources: Source | Sequence[Source],
    *,
    filter: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    hash: str = "sha1",
    fp_rate: float = 1e-6,
    min_count: int | None = None,
    input_format: str = "auto",
    strict: bool = False,
    capacity: int | None = None,
    update: bool = False,
    progress: BuildProgress | None = None,
    run_rows: int = RUN_ROWS,
) -> BuildReport:
    """Build a Bloom filter and/or a range store from leaked sets; return a report whose numbers add up.

    ``sources`` are paths (``-`` for standard input, gzip/bzip2/xz read transparently) or open binary
    files. ``min_count`` (default 1) keeps only hashes seen at least that many times. ``capacity`` sizes
    the filter for more items than this build keeps (room for later updates).

    With ``update=True`` the new sources are merged into the existing artefacts instead of replacing
    them: an existing store's counts are summed with the new ones, and the filter is rebuilt from the
    merged set (or, without a store, the new hashes are added to it). Rebuilt from the store, the filter
    keeps its size and false-positive rate, and grows to fit when the merged set outgrows it; a filter
    updated alone cannot grow (it does not hold the hashes), so outgrowing it is a CapacityError saying
    what to do.
    Existing artefacts are replaced only when the whole build has succeeded. A build holds a lock on
    each target (``.NAME.lock`` beside it) from start to end; a second build of the same target fails
    at once with :class:`StorageError` instead of waiting.
    """
    started = time.perf_counter()
    size = check_scheme(hash)
    if filter is None and store is None:
        raise ValueError("build() needs a filter path, a store path, or both")
    if min_count is not None and (not isinstance(min_count, int) or min_count < 1):
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
    if input_format not in FORMATS:
        raise ValueError(f"unknown input format {input_format!r}; expected one of {', '.join(FORMATS)}")
    if not 0.0 < fp_rate < 1.0:
        raise ValueError(f"fp_rate must be between 0 and 1 (exclusive), got {fp_rate!r}")
    if capacity is not None:
        check_size(capacity, fp_rate)  # a filter too large for this machine, refused before anything is read
    single = isinstance(sources, str | os.PathLike) or hasattr(sources, "read")
    source_list: list[Source] = [sources] if single else list(sources)  # type: ignore[list-item,arg-type]
    if not source_list:
        raise ValueError("build() needs at least one source")
    targets = [os.path.abspath(os.fspath(p)) for p in (filter, store) if p is not None]
    _check_targets(filter, store, source_list)

    with _atomic.lock_beside(targets):  # held from reading the old artefacts to renaming the new ones
        base_store = RangeStore(store) if update and store is not None and os.path.exists(store) else None
        base_filter = BloomFilter.open(filter) if update and filter is not None and os.path.exists(filter) else None
        try:
            threshold = _update_threshold(min_count, base_store, base_filter, hash)
            report = BuildReport(scheme=hash, min_count=threshold, sources=[], updated=update)
            report.carried = base_store.rows if base_store is not None else 0
            return _build(
                source_list, report, size, targets, filter, store, base_store, base_filter,
                fp_rate=fp_rate, input_format=input_format, strict=strict, capacity=capacity,
                progress=progress, run_rows=run_rows, started=started,
            )  # fmt: skip
        finally:
            for base in (base_store, base_filter):
                if base is not None:
                    base.close()


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when two paths name one file: the same real path, or (hard links) the same inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _check_targets(
    filter: str | os.PathLike[str] | None, store: str | os.PathLike[str] | None, sources: list[Source]
) -> None:
    """Refuse, before anything is read or written, targets that would overwrite each other or an input."""
    if filter is not None and store is not None and _same_file(filter, store):
        raise InputError(f"--filter and --store are the same file ({os.fspath(filter)}); give each its own path")
    for target in (filter, store):
        if target is None:
            continue
        if os.path.isdir(target):
            raise InputError(f"{os.fspath(target)} is a directory; give the path of a file to write")
        for source in sources:
            if isinstance(source, str | os.PathLike) and os.fspath(source) != "-" and _same_file(source, target):
                raise InputError(
                    f"{os.fspath(target)} is also a source of this build; writing it would destroy the input"
                )


def _update_threshold(
    min_count: int | None, base_store: RangeStore | None, base_filter: BloomFilter | None, scheme: str
) -> int:
    """The min_count of a build: as asked, else the existing artefacts' (an update cannot change it)."""
    for base, kind in ((base_store, "store"), (base_filter, "filter")):
        if base is None:
            continue
        if base.scheme != scheme:
            raise InputError(f"the existing {kind} holds {base.scheme} hashes, not {scheme}")
        if min_count is not None and min_count != base.min_count:
            raise InputError(
                f"the existing {kind} was built with min_count={base.min_count}; an update keeps it "
                f"(rebuild from the original sources to change it)"
            )
    existing = [b.min_count for b in (base_store, base_filter) if b is not None]
    if len(set(existing)) > 1:
        raise InputError("the existing store and filter were built with different min_count values")
    return min_count or (existing[0] if existing else 1)


def _build(
    source_list: list[Source],
    report: BuildReport,
    size: int,
    targets: list[str],
    filter: str | os.PathLike[str] | None,
    store: str | os.PathLike[str] | None,
    base_store: RangeStore | None,
    base_filter: BloomFilter | None,
    *,
    fp_rate: float,
    input_format: str,
    strict: bool,
    capacity: int | None,
    progress: BuildProgress | None,
    run_rows: int,
    started: float,
) -> BuildReport:
    hash, min_count = report.scheme, report.min_count
    histogram = np.zeros(PREFIXES, dtype=np.int64) if store is not None else None
    workdir: list[str] = []

    def make_workdir() -> str:
        if not workdir:
            try:
                workdir.append(tempfile.mkdtemp(prefix=".credcheck-build-", dir=os.path.dirname(targets[0])))
            except OSError as exc:  # no space, no inode left, no permission
                raise StorageError(
                    f"cannot make a directory for sorted runs beside {targets[0]}: {exc.strerror or exc}"
                ) from exc
        return workdir[0]

    def read_all(phase: str) -> Iterator[Chunk]:
        return _read_ahead(read_in_order(phase))

    checksums: dict[str, list[Any]] = {}

    def read_in_order(phase: str) -> Iterator[Chunk]:
        report.sources = [SourceStats(source_name(s)) for s in source_list]
        report.hashes_read = 0
        checksums[phase] = [xxhash.xxh3_128() for _ in source_list]
        totals = [source_size(s) for s in source_list]
        total = None if None in totals else sum(t or 0 for t in totals)
        done_before = 0
        for source, stats, own, checksum in zip(source_list, report.sources, totals, checksums[phase], strict=True):

            def tick(done: int, _total: int | None, _lines: int, base: int = done_before) -> None:
                if progress is not None:
                    progress(phase, base + done, total, sum(s.lines for s in report.sources))

            for chunk in read_source(
                source,
                scheme=hash,
                input_format=input_format,
                strict=strict,
                stats=stats,
                progress=tick,
                checksum=checksum,
            ):
                report.hashes_read += len(chunk.counts)
                yield chunk
            done_before += own or 0

    def with_base(new: Iterable[Chunk]) -> Iterable[Chunk]:
        return new if base_store is None else _merge([_store_stream(base_store), new])

    try:
        new_only = _Counted(())
        if all(reopenable(s) for s in source_list):
            try:
                new_only = _Counted(_ordered(read_all("scan")))
                _count(with_base(new_only), report, histogram)
                unique: Callable[[], Iterable[Chunk]] = lambda: with_base(  # noqa: E731
                    _second_pass(read_all("write"), report, lambda: _changed(checksums, source_list))
                )
            except _Unsorted:
                report.sorted_input = False
        else:
            report.sorted_input = False
        if not report.sorted_input:
            runs = _Runs(size, make_workdir, run_rows)
            for chunk in read_all("read"):
                runs.add(chunk)
            runs.finish()
            new_only = _Counted(_merge(runs.streams()))
            _count(_progress_rows(with_base(new_only), "merge", progress), report, histogram)
            unique = lambda: _progress_rows(with_base(_merge(runs.streams())), "write", progress)  # noqa: E731
        if base_store is not None:
            report.added = report.kept - report.carried
            report.raised = new_only.rows - (report.distinct - report.carried)
        _check_not_empty(report, fresh=base_store is None and base_filter is None)

        sinks: list[Sink] = []
        try:  # a sink's temporary file exists from its creation: it is in the try that removes it
            if filter is not None:
                report.filter_path = os.fspath(filter)
                bloom = _new_filter(report, base_filter, base_store, capacity, fp_rate)
                sinks.append(_FilterSink(report.filter_path, bloom))
            if store is not None and histogram is not None:
                sinks.append(StoreWriter(store, scheme=hash, prefix_counts=histogram, min_count=min_count))
                report.store_path = os.fspath(store)
            for chunk in unique():
                keep = chunk.counts >= min_count
                digests, counts = (
                    (chunk.digests, chunk.counts) if keep.all() else (chunk.digests[keep], chunk.counts[keep])
                )
                if len(counts):
                    for sink in sinks:
                        sink.add(digests, counts)
            if base_filter is not None and base_store is None:
                _check_filter_update(report, sinks[0], base_filter.approx_items)
            for sink in sinks:
                sink.finish()  # every artefact is on disk beside its target before any is renamed into place
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise
        for sink in sinks:
            sink.commit()
    finally:
        for path in workdir:
            shutil.rmtree(path, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _new_filter(
    report: BuildReport,
    base_filter: BloomFilter | None,
    base_store: RangeStore | None,
    capacity: int | None,
    fp_rate: float,
) -> BloomFilter:
    """The filter this build fills: fresh, rebuilt at the old one's size (or larger), or a copy to add to."""
    if base_filter is None:
        cap = report.kept if capacity is None else capacity
        if cap < report.kept:
            raise CapacityError(f"capacity {cap} is smaller than the {report.kept} hashes this build keeps")
        return BloomFilter.create(max(1, cap), fp_rate, scheme=report.scheme, min_count=report.min_count)
    if capacity is not None:  # an update that asks for a new size rebuilds at that size
        if capacity < report.kept + (0 if base_store is not None else base_filter.approx_items):
            raise CapacityError(f"capacity {capacity} is smaller than the merged set")
        if base_store is None:
            raise InputError("resizing a filter needs every hash: update it together with its --store")
        return BloomFilter.create(capacity, base_filter.fp_rate, scheme=report.scheme, min_count=report.min_count)
    if base_store is not None:  # the merged store holds everything: rebuild at the same size, or larger
        fitting = max(base_filter.capacity, report.kept)
        if fitting > base_filter.capacity:
            report.filter_resized_from = base_filter.capacity
        return BloomFilter.create(fitting, base_filter.fp_rate, scheme=report.scheme, min_count=report.min_count)
    if report.min_count > 1:
        raise InputError(
            "a filter built with --min-count cannot be updated on its own: counts must be summed; "
            "update it together with its --store"
        )
    return base_filter.copy()


def _check_filter_update(report: BuildReport, sink: Sink, before: int) -> None:
    """After adding to a copy of a filter: count what is new, refuse to outgrow the design."""
    assert isinstance(sink, _FilterSink)
    bloom = sink.bloom
    report.added = bloom.approx_items - before
    report.raised = report.distinct - report.added
    if bloom.over_capacity:
        raise _capacity_error(sink.path, bloom.approx_items, bloom)


def _read_ahead(chunks: Iterator[Chunk], depth: int = 2) -> Iterator[Chunk]:
    """Yield ``chunks`` while a background thread reads and parses the next ones.

    Parsing (C) and filling the filter (C) both release the GIL, so on two cores they overlap. The reader
    stays at most ``depth`` chunks ahead; its errors are raised here, in order; closing this generator
    (an exception in the consumer, or _Unsorted) stops it.
    """
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not hand_over(("chunk", chunk)):
                    return
            hand_over(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            hand_over(("error", exc))
        finally:
            chunks.close()  # type: ignore[attr-defined]

    reader = threading.Thread(target=produce, name="credcheck-reader", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "chunk":
                yield value
            elif kind == "end":
                return
            else:
                raise value
    finally:
        stop.set()
        # It stops at its next chunk; a reader waiting on input that has stalled (a pipe) is not waited for.
        reader.join(timeout=5)


def _progress_rows(chunks: Iterable[Chunk], phase: str, progress: BuildProgress | None) -> Iterator[Chunk]:
    done = 0
    for chunk in chunks:
        done += len(chunk.counts)
        if progress is not None:
            progress(phase, done, None, done)
        yield chunk


def _check_not_empty(report: BuildReport, *, fresh: bool) -> None:
    """Refuse a new artefact that would hold nothing; warn about sources that gave nothing.

    An empty filter or store answers "not compromised" for every password, and what leads to one is
    nearly always a mistake (an empty or truncated download, the wrong file, a min-count above every
    count), so a fresh build that keeps no hash is an InputError. An update that adds nothing leaves the
    artefacts holding what they held, so it only warns.
    """
    for stats in report.sources:
        if stats.lines == 0:
            report.warnings.append(f"{stats.name} is empty: it holds no lines")
        elif stats.bad_lines == stats.lines:
            report.warnings.append(f"{stats.name}: every one of its {stats.lines:,} lines is a bad line")
    if report.kept > report.carried:
        return
    if report.lines_read == 0:
        why = "the sources hold no lines"
    elif report.bad_lines == report.lines_read:
        why = f"every one of the {report.lines_read:,} lines is a bad line"
    elif report.below_min_count and report.kept == report.carried:
        why = f"every hash was seen fewer than min_count={report.min_count} times"
    else:
        why = "no hash was kept"
    if fresh:
        raise InputError(
            f"nothing to build: {why}. An empty filter or store would answer 'not compromised' for every "
            "password; check the sources (and --input-format, --min-count)"
        )
    if report.added == 0 and report.raised == 0:
        report.warnings.append(f"the update adds nothing: {why}")


def _count(unique: Iterable[Chunk], report: BuildReport, histogram: npt.NDArray[np.int64] | None) -> None:
    """First pass over the merged digests: how many are distinct, kept, below the threshold, per prefix."""
    distinct = below = 0
    if histogram is not None:
        histogram[:] = 0
    for chunk in unique:
        distinct += len(chunk.counts)
        keep = chunk.counts >= report.min_count
        below += len(keep) - int(np.count_nonzero(keep))
        if histogram is not None:
            histogram += np.bincount(prefix_of(chunk.digests[keep]), minlength=PREFIXES)
        if len(chunk.counts) and int(chunk.counts.max()) > MAX_COUNT:
            raise InputError(f"a hash's summed count exceeds {MAX_COUNT}, the largest a store holds; split the sources")
    report.lines_read = sum(s.lines for s in report.sources)
    report.bad_lines = sum(s.bad_lines for s in report.sources)
    report.distinct, report.below_min_count, report.kept = distinct, below, distinct - below
    report.duplicates_merged = report.hashes_read + report.carried - distinct


def _changed(checksums: dict[str, list[Any]], source_list: list[Source]) -> str | None:
    """The name of the first source whose bytes differ between the counting and the writing pass."""
    for source, scan, write in zip(source_list, checksums["scan"], checksums["write"], strict=True):
        if scan.digest() != write.digest():
            return source_name(source)
    return None


def _second_pass(chunks: Iterable[Chunk], report: BuildReport, changed: Callable[[], str | None]) -> Iterator[Chunk]:
    """Re-read sorted input for writing, refusing it if it changed since the counting pass.

    The counts, the histogram that sizes the store and the filter's size come from the first pass, so
    a source that changed in between (even with the same line count, still sorted) would give artefacts
    that disagree with each other: each pass hashes the bytes it read, and they must match.
    """
    expected = (report.lines_read, report.hashes_read)
    try:
        yield from _ordered(chunks)
    except _Unsorted:
        raise InputError("the input changed while it was being built from (it is no longer sorted)") from None
    name = changed()
    if name is not None:
        raise InputError(f"{name} changed while it was being built from (its bytes differ between the two passes)")
    if (sum(s.lines for s in report.sources), report.hashes_read) != expected:
        raise InputError("the input changed while it was being built from (its line count differs)")
