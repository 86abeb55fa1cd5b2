"""Leaked sets in, artefacts out: ``build()`` streams sources into a Bloom filter and/or a range store.

Every artefact needs the set's distinct digests with summed counts, in order: the sort-merge engine
(``_sortmerge``) gives them twice, once to count (the store's prefix histogram, the filter's size) and
once to write. Sorted input is read twice and never copied (each pass hashes the bytes it read; a source
that changed in between is refused); anything else is sorted in runs, spilled beside the target past a
fixed budget, and merged. Memory stays at the artefact plus a bounded buffer, and nothing replaces an
existing artefact until the whole build has succeeded.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _atomic
from . import _sortmerge as sm
from ._args import choice, positive_int, probability
from ._combolist import ComboPass, check_scheme_for
from ._corpus import COMBO_FORMATS, FORMATS, Chunk, Source, SourcesPass, reopenable, sources_of
from ._frames import entry_point
from ._report import BuildReport
from ._sinks import LAYOUTS, FilterSink, Sink, fuse_sink, open_filter
from .bloom import BloomFilter, check_size
from .errors import InputError
from .fuse import FuseFilter, fingerprint_width
from .hashing import check_scheme
from .store import MAX_COUNT, PREFIXES, RangeStore, StoreWriter, prefix_of, store_rows

__all__ = ["BuildPlan", "BuildReport", "build"]


#: progress(phase, done, total, lines): phase "scan"/"read"/"write" of input count bytes, "merge" counts digests.
BuildProgress = sm.Progress


@dataclasses.dataclass(frozen=True, slots=True)
class BuildPlan:
    """What a password build is asked to do, every field checked when the plan is made (see :func:`build`)."""

    sources: tuple[Source, ...]
    filter: str | None = None
    store: str | None = None
    scheme: str = "sha1"
    fp_rate: float = 1e-6
    layout: str | None = None
    min_count: int | None = None
    input_format: str = "auto"
    strict: bool = False
    capacity: int | None = None
    update: bool = False
    resume: bool = False
    progress: BuildProgress | None = None
    run_rows: int = sm.RUN_ROWS

    def __post_init__(self) -> None:
        check_scheme(self.scheme)
        if self.filter is None and self.store is None:
            raise ValueError("build() needs a filter path, a store path, or both")
        if self.min_count is not None:
            positive_int("min_count", self.min_count)
        choice("input format", self.input_format, FORMATS + COMBO_FORMATS)
        if self.input_format in COMBO_FORMATS:
            check_scheme_for(self.input_format, self.scheme)
        probability("fp_rate", self.fp_rate)
        if self.layout is not None:
            choice("layout", self.layout, LAYOUTS)
        if self.capacity is not None:
            check_size(self.capacity, self.fp_rate)  # a filter too large for this machine, refused before any read
        if not self.sources:
            raise ValueError("build() needs at least one source")
        _check_targets(self.filter, self.store, list(self.sources))

    @classmethod
    def of(
        cls,
        sources: Source | Sequence[Source],
        *,
        filter: str | os.PathLike[str] | None = None,
        store: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> BuildPlan:
        """The plan of :func:`build`'s keywords (one source or several)."""
        return cls(
            sources_of(sources),
            filter=None if filter is None else os.fspath(filter),
            store=None if store is None else os.fspath(store),
            **options,
        )

    @property
    def targets(self) -> tuple[str, ...]:
        """The artefacts' paths, absolute."""
        return tuple(os.path.abspath(p) for p in (self.filter, self.store) if p is not None)


@entry_point
def build(
    sources: Source | Sequence[Source],
    *,
    filter: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    scheme: str = "sha1",
    fp_rate: float = 1e-6,
    layout: str | None = None,
    min_count: int | None = None,
    input_format: str = "auto",
    strict: bool = False,
    capacity: int | None = None,
    update: bool = False,
    resume: bool = False,
    progress: BuildProgress | None = None,
    run_rows: int = sm.RUN_ROWS,
) -> BuildReport:
    """Build a Bloom filter and/or a range store from leaked sets; return a report whose numbers add up.

    ``sources`` are paths (``-`` for standard input, gzip/bzip2/xz read transparently) or open binary
    files. ``input_format`` is 'auto' (default: told from the first lines, see docs/DATA.md), 'hibp',
    'hash', 'password', or 'combo' / 'combo-sha1' (combo lists: the filter and store get the passwords
    after each line's first ':' or tab, hashed; or the SHA-1 each line holds). ``scheme`` (the CLI's
    ``--hash``) is 'sha1' (default) or 'ntlm'.
    ``min_count`` (default 1) keeps only hashes seen at least that many times. ``capacity`` sizes
    the filter for more items than this build keeps (room for later updates).

    ``layout`` is the filter's: 'bloom' (the default for a new filter) or 'fuse', a sharded binary fuse filter
    (:class:`~credcheck.fuse.FuseFilter`: about 22.5 bits a hash at 1e-6 instead of 28.8, and three memory
    reads a lookup); an update keeps the existing filter's layout unless told otherwise. A fuse filter holds
    exactly its set (no ``capacity``) and cannot be added to: it is updated together with its store, and
    only the shards whose hashes changed are rebuilt. ``resume=True`` takes the shards an interrupted fuse
    build of the same filter finished (``.NAME.fuse-partial`` beside it) instead of rebuilding them; a shard is
    taken only if it holds exactly the hashes it must hold now.

    With ``update=True`` the new sources are merged into the existing artefacts instead of replacing
    them: an existing store's counts are summed with the new ones, and the filter is rebuilt from the
    merged set (or, without a store, the new hashes are added to it). Rebuilt from the store, the filter
    keeps its size and false-positive rate, and grows to fit when the merged set outgrows it; a filter
    updated alone cannot grow (it does not hold the hashes), so outgrowing it is a CapacityError saying
    what to do.
    Existing artefacts are replaced only when the whole build has succeeded. A build holds a lock on
    each target (``.NAME.lock`` beside it) from start to end; a second build of the same target fails
    at once with :class:`StorageError` instead of waiting. (A pair store from combo lists, with or without a
    filter and store from their passwords: :func:`credcheck.build_pairs`.)
    """
    plan = BuildPlan.of(
        sources, filter=filter, store=store, scheme=scheme, fp_rate=fp_rate, layout=layout,
        min_count=min_count, input_format=input_format, strict=strict, capacity=capacity, update=update,
        resume=resume, progress=progress, run_rows=run_rows,
    )  # fmt: skip
    with _atomic.Stage() as stage:
        report, _ = run_build(plan, stage)
        stage.commit()
    return report


def run_build(plan: BuildPlan, stage: _atomic.Stage) -> tuple[BuildReport, list[bytes]]:
    """Run ``plan``, leaving its artefacts finished beside their targets in ``stage`` (whose owner commits them);
    the report, and the xxh3-128 digest of each source's bytes as this build read them."""
    started = time.perf_counter()
    stage.lock(plan.targets)  # held from reading the old artefacts to renaming the new ones
    store, filter = plan.store, plan.filter
    base_store = RangeStore(store) if plan.update and store is not None and os.path.exists(store) else None
    base_filter = open_filter(filter) if plan.update and filter is not None and os.path.exists(filter) else None
    try:
        chosen = _chosen_layout(plan.layout, base_filter, with_store=base_store is not None)
        if chosen == "fuse":  # refused before anything is read: what a fuse filter cannot be
            if plan.capacity is not None:
                raise InputError("--capacity sizes a Bloom filter; a fuse filter holds exactly its set")
            fingerprint_width(plan.fp_rate if base_filter is None else base_filter.fp_rate)  # (an update keeps it)
        if plan.resume and (chosen != "fuse" or filter is None):
            raise InputError(
                "--resume takes up an interrupted pair build or fuse filter build; a Bloom filter or a store "
                "is rebuilt from the start"
            )
        threshold = _update_threshold(plan.min_count, base_store, base_filter, plan.scheme)
        report = BuildReport(scheme=plan.scheme, min_count=threshold, sources=[], updated=plan.update)
        report.carried = base_store.rows if base_store is not None else 0
        job = _Job(plan, check_scheme(plan.scheme), base_store, base_filter, stage, chosen)
        digests = _run(job, report)
        report.seconds = time.perf_counter() - started
        return report, digests
    finally:
        for base in (base_store, base_filter):
            if base is not None:
                base.close()


def _check_targets(
    filter: str | os.PathLike[str] | None, store: str | os.PathLike[str] | None, sources: list[Source]
) -> None:
    """Refuse, before anything is read or written, targets that would overwrite each other or an input."""
    if filter is not None and store is not None and _atomic.same_file(filter, store):
        raise InputError(f"--filter and --store are the same file ({os.fspath(filter)}); give each its own path")
    for target in (filter, store):
        if target is None:
            continue
        if os.path.isdir(target):
            raise InputError(f"{os.fspath(target)} is a directory; give the path of a file to write")
        for source in sources:
            named = isinstance(source, str | os.PathLike) and os.fspath(source) != "-"
            if named and _atomic.same_file(source, target):  # type: ignore[arg-type]
                raise InputError(
                    f"{os.fspath(target)} is also a source of this build; writing it would destroy the input"
                )


def _chosen_layout(layout: str | None, base: BloomFilter | FuseFilter | None, *, with_store: bool) -> str:
    """The layout a build writes: as asked, else the existing filter's, else Bloom; refuse what cannot be done.

    A fuse filter cannot be added to, and neither layout can be turned into the other, without every hash:
    those updates need the store the filter was built with.
    """
    existing = None if base is None else base.layout
    chosen = layout or existing or "bloom"
    if base is not None and not with_store:
        if existing == "fuse":
            raise InputError(
                "a fuse filter cannot be added to (it holds no hashes, only their fingerprints): update it "
                "together with the --store it was built with (only the shards whose hashes changed are rebuilt), "
                "or rebuild it from all the sources"
            )
        if chosen != existing:
            raise InputError(
                f"the existing filter is a {existing} filter; turning it into a {chosen} filter needs every hash: "
                "update it together with its --store, or rebuild it from all the sources without --update"
            )
    return chosen


def _update_threshold(
    min_count: int | None, base_store: RangeStore | None, base_filter: BloomFilter | FuseFilter | None, scheme: str
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


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    """A plan as it runs: the digest size, what an update starts from, and the stage its artefacts go to."""

    plan: BuildPlan
    key_size: int
    base_store: RangeStore | None
    base_filter: BloomFilter | FuseFilter | None
    stage: _atomic.Stage
    layout: str  # the filter's, as chosen for this build


def _run(job: _Job, report: BuildReport) -> list[bytes]:
    """Count the merged set, then write every artefact beside its target into the stage; the digest of each
    source's bytes as read."""
    plan = job.plan
    histogram = np.zeros(PREFIXES, dtype=np.int64) if plan.store is not None else None
    passes: list[SourcesPass | ComboPass] = []

    def read(phase: str) -> Iterator[Chunk]:
        if plan.input_format in COMBO_FORMATS:  # read by the combo reader, never reread (they are not sorted)
            passes.append(ComboPass(plan.sources, plan.input_format))
        else:
            passes.append(SourcesPass(plan.sources))
        report.sources = list(passes[-1].stats)
        progress = plan.progress

        def tick(done: int, total: int | None, lines: int) -> None:
            if progress is not None:
                progress(phase, done, total, lines)

        return passes[-1].read(scheme=report.scheme, input_format=plan.input_format, strict=plan.strict, progress=tick)

    def with_base(new: Iterable[Chunk], phase: str | None) -> Iterable[Chunk]:
        merged = new if job.base_store is None else sm.merge([store_rows(job.base_store), new])
        return sm.progress_rows(merged, phase, plan.progress)

    new_only = sm.Counted(())

    def count(distinct: Iterable[Chunk], phase: str | None) -> None:
        nonlocal new_only
        new_only = sm.Counted(distinct)
        _count(with_base(new_only, phase), report, histogram, passes[-1])

    def unchanged() -> None:  # after the writing pass over sorted input: the same bytes as the counting pass
        last, before = passes[-1], passes[-2]
        assert isinstance(last, SourcesPass) and isinstance(before, SourcesPass)  # combo lists are never reread
        name = last.differs_from(before)
        if name is not None:
            raise InputError(f"{name} changed while it was being built from (its bytes differ between the two passes)")
        if (passes[-1].lines, passes[-1].hashes) != (report.lines_read, report.hashes_read):
            raise InputError("the input changed while it was being built from (its line count differs)")

    workdir = sm.WorkDir(plan.targets[0])
    workdir.remove_stale()  # a killed build's sorted runs (the stage holds the targets' locks)
    try:
        again = sm.distinct_twice(
            read, rereadable=plan.input_format not in COMBO_FORMATS and all(map(reopenable, plan.sources)),
            key_size=job.key_size,
            workdir=workdir, run_rows=plan.run_rows, count=count, verify_reread=unchanged,
        )  # fmt: skip
        report.sorted_input = again.sorted_input
        if job.base_store is not None:
            report.added = report.kept - report.carried
            report.raised = new_only.rows - (report.distinct - report.carried)
        _check_not_empty(report, fresh=job.base_store is None and job.base_filter is None)
        _write(job, report, histogram, with_base(again.stream(), again.rows_phase))
    finally:
        workdir.remove()
    return passes[-1].digests()


def _write(job: _Job, report: BuildReport, histogram: npt.NDArray[np.int64] | None, unique: Iterable[Chunk]) -> None:
    """Fill every sink from the merged set and finish them all beside their targets, into the job's stage (which
    renames them into place only once every artefact of the stage is finished)."""
    plan = job.plan
    sinks: list[Sink] = []
    try:  # a sink's temporary file exists from its creation: it is in the try that removes it
        if plan.filter is not None and job.layout == "fuse":
            report.filter_path, report.filter_layout = plan.filter, "fuse"
            fuse = fuse_sink(plan.filter, kept=report.kept, scheme=report.scheme, min_count=report.min_count,
                             fp_rate=plan.fp_rate, base=job.base_filter, resume=plan.resume)  # fmt: skip
            sinks.append(fuse)
        elif plan.filter is not None:
            report.filter_path = plan.filter
            bloom = FilterSink.for_build(
                plan.filter, kept=report.kept, scheme=report.scheme, min_count=report.min_count,
                fp_rate=plan.fp_rate, capacity=plan.capacity,
                base=job.base_filter if isinstance(job.base_filter, BloomFilter) else None,
                with_store=job.base_store is not None,
            )  # fmt: skip
            report.filter_resized_from = bloom.grown_from
            sinks.append(bloom)
        if plan.store is not None and histogram is not None:
            sinks.append(
                StoreWriter(plan.store, scheme=report.scheme, prefix_counts=histogram, min_count=report.min_count)
            )
            report.store_path = plan.store
        for chunk in unique:
            keep = chunk.counts >= report.min_count
            digests, counts = (chunk.digests, chunk.counts) if keep.all() else (chunk.digests[keep], chunk.counts[keep])
            if len(counts):
                for sink in sinks:
                    sink.add(digests, counts)
        if job.base_filter is not None and job.base_store is None:  # added to a copy of a Bloom filter
            report.added = bloom.added_since(job.base_filter.approx_items)
            report.raised = report.distinct - report.added
        for sink in sinks:
            sink.finish()
        if plan.filter is not None and job.layout == "fuse":
            report.shards_built, report.shards_reused, report.shards_resumed = fuse.built, fuse.reused, fuse.resumed
    except BaseException:
        for sink in sinks:
            sink.abort()  # (a sink already renamed into place has no temporary file left to remove)
        raise
    for sink in sinks:
        job.stage.add(sink)


def _check_not_empty(report: BuildReport, *, fresh: bool) -> None:
    """Refuse a new artefact that would hold nothing; warn about sources that gave nothing.

    An empty filter or store answers "not compromised" for every password, and what leads to one is
    nearly always a mistake (an empty or truncated download, the wrong file, a min-count above every
    count), so a fresh build that keeps no hash is an InputError. An update that adds nothing leaves the
    artefacts holding what they held, so it only warns.
    """
    for stats in report.sources:
        report.warnings.extend(f"{stats.name}: {warning}" for warning in stats.warnings)
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


def _count(
    unique: Iterable[Chunk],
    report: BuildReport,
    histogram: npt.NDArray[np.int64] | None,
    read: SourcesPass | ComboPass,
) -> None:
    """First pass over the merged digests (``read`` is the pass that gives them): how many are distinct,
    kept, below the threshold, per prefix."""
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
    report.hashes_read, report.lines_read = read.hashes, read.lines
    report.bad_lines = sum(s.bad_lines for s in read.stats)
    report.distinct, report.below_min_count, report.kept = distinct, below, distinct - below
    report.duplicates_merged = report.hashes_read + report.carried - distinct
