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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import numpy.typing as npt

from . import _atomic
from . import _sortmerge as sm
from ._args import choice, positive_int, probability
from ._frames import entry_point
from ._report import BuildReport
from ._sinks import LAYOUTS, FilterSink, Sink, fuse_sink, open_filter
from .bloom import BloomFilter, check_size
from .combolist import ComboPass, check_scheme_for
from .corpus import COMBO_FORMATS, FORMATS, Chunk, Source, SourcesPass, reopenable
from .errors import InputError
from .fuse import FuseFilter, fingerprint_width
from .hashing import check_scheme, chosen_scheme
from .store import MAX_COUNT, PREFIXES, RangeStore, StoreWriter, prefix_of

if TYPE_CHECKING:
    from .pairs.build import PairBuildReport
    from .pairs.passwords import PairsAndPasswordsReport

__all__ = ["BuildReport", "build"]


#: progress(phase, done, total, lines): phase "scan"/"read"/"write" of input count bytes, "merge" counts digests.
BuildProgress = sm.Progress
#: What a pair build that also writes a filter/store runs once they are finished: ``then(commit, digests)``.
Then = Callable[[Callable[[], None], list[bytes]], None]


@overload
def build(
    sources: Source | Sequence[Source],
    *,
    filter: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    scheme: str | None = None,
    hash: str | None = None,
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
    pairs: None = None,
) -> BuildReport: ...


@overload
def build(
    sources: Source | Sequence[Source], *, pairs: str | os.PathLike[str], key: Any, **options: Any
) -> PairBuildReport | PairsAndPasswordsReport: ...


@entry_point
def build(
    sources: Source | Sequence[Source],
    *,
    filter: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    scheme: str | None = None,
    hash: str | None = None,
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
    pairs: str | os.PathLike[str] | None = None,
    key: Any = None,
    **pair_options: Any,
) -> BuildReport | PairBuildReport | PairsAndPasswordsReport:
    """Build a Bloom filter and/or a range store from leaked sets; return a report whose numbers add up.

    ``sources`` are paths (``-`` for standard input, gzip/bzip2/xz read transparently) or open binary
    files. ``input_format`` is 'auto' (default: told from the first lines, see docs/DATA.md), 'hibp',
    'hash', 'password', or 'combo' / 'combo-sha1' (combo lists: the filter and store get the passwords
    after each line's first ':' or tab, hashed; or the SHA-1 each line holds). ``scheme`` (or its alias
    ``hash``, as the CLI's ``--hash``) is 'sha1' (default) or 'ntlm'.
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
    at once with :class:`StorageError` instead of waiting.

    With ``pairs=OUT`` and ``key=KEYFILE`` the sources are combo lists and the build is
    :func:`credcheck.pairs.build.build_pairs` (``pair_options`` are its keywords). With ``filter`` and/or
    ``store`` too, the same run also builds them from the combo lists' passwords (``combo``: their SHA-1, or
    NTLM with ``scheme="ntlm"``; ``combo-sha1``: the SHA-1 each line holds), and returns a
    :class:`~credcheck.pairs.passwords.PairsAndPasswordsReport`. The sources must then be files (they are
    read twice). All-or-nothing: the filter/store are finished beside their targets first, then the pair
    store; only when every one is on disk are they renamed into place (the filter/store, then the pair store).
    """
    if pairs is not None or key is not None or pair_options:
        from .pairs.passwords import build_with_pairs  # lazily: the pair tier is an extra

        return build_with_pairs(
            sources, pairs, key, password_build=_build, filter=filter, store=store, scheme=scheme, hash=hash,
            fp_rate=fp_rate, layout=layout, min_count=min_count, input_format=input_format, strict=strict,
            capacity=capacity, update=update, progress=progress, run_rows=run_rows, resume=resume, **pair_options,
        )  # fmt: skip
    return _build(
        sources, filter=filter, store=store, scheme=scheme, hash=hash, fp_rate=fp_rate, layout=layout,
        min_count=min_count, input_format=input_format, strict=strict, capacity=capacity, update=update,
        resume=resume, progress=progress, run_rows=run_rows,
    )  # fmt: skip


def _build(
    sources: Source | Sequence[Source],
    *,
    filter: str | os.PathLike[str] | None,
    store: str | os.PathLike[str] | None,
    scheme: str | None,
    hash: str | None,
    fp_rate: float,
    layout: str | None,
    min_count: int | None,
    input_format: str,
    strict: bool,
    capacity: int | None,
    update: bool,
    progress: BuildProgress | None,
    run_rows: int,
    resume: bool = False,
    then: Then | None = None,
    pairs: str | os.PathLike[str] | None = None,
) -> BuildReport:
    """The password build: check the request, lock the targets, and build.

    With ``then`` (a pair build that also writes these artefacts), the input is combo lists and
    ``then(commit, digests)`` runs once every artefact is finished beside its target, with the xxh3-128
    digest of each source's bytes as this build read them (its own read must see the same): it calls
    ``commit`` to rename them into place when its own work has succeeded, and whatever it raises leaves the
    old artefacts as they were.
    """
    started = time.perf_counter()
    scheme = chosen_scheme(scheme, hash)
    size = check_scheme(scheme)
    if filter is None and store is None:
        raise ValueError("build() needs a filter path, a store path, or both")
    if min_count is not None:
        positive_int("min_count", min_count)
    choice("input format", input_format, FORMATS + COMBO_FORMATS)
    if then is not None or input_format in COMBO_FORMATS:
        check_scheme_for(input_format, scheme)
    probability("fp_rate", fp_rate)
    if layout is not None:
        choice("layout", layout, LAYOUTS)
    if capacity is not None:
        check_size(capacity, fp_rate)  # a filter too large for this machine, refused before anything is read
    single = isinstance(sources, str | os.PathLike) or hasattr(sources, "read")
    source_list: list[Source] = [sources] if single else list(sources)  # type: ignore[list-item,arg-type]
    if not source_list:
        raise ValueError("build() needs at least one source")
    if then is not None and not all(reopenable(s) for s in source_list):
        raise InputError(
            "a pair build that also writes --filter/--store reads its combo lists twice: give files, "
            "not standard input or a stream"
        )
    targets = [os.path.abspath(os.fspath(p)) for p in (filter, store) if p is not None]
    _check_targets(filter, store, source_list)
    for target in (filter, store):
        if target is not None and pairs is not None and _atomic.same_file(target, pairs):
            raise InputError(
                f"--pairs and --filter/--store are the same file ({os.fspath(pairs)}); give each its own path"
            )

    with _atomic.lock_beside(targets):  # held from reading the old artefacts to renaming the new ones
        base_store = RangeStore(store) if update and store is not None and os.path.exists(store) else None
        base_filter = open_filter(filter) if update and filter is not None and os.path.exists(filter) else None
        try:
            chosen = _chosen_layout(layout, base_filter, with_store=base_store is not None)
            if chosen == "fuse":  # refused before anything is read: what a fuse filter cannot be
                if capacity is not None:
                    raise InputError("--capacity sizes a Bloom filter; a fuse filter holds exactly its set")
                fingerprint_width(fp_rate if base_filter is None else base_filter.fp_rate)  # (an update keeps it)
            if resume and (chosen != "fuse" or filter is None):
                raise InputError(
                    "--resume takes up an interrupted pair build or fuse filter build; a Bloom filter or a store "
                    "is rebuilt from the start"
                )
            threshold = _update_threshold(min_count, base_store, base_filter, scheme)
            report = BuildReport(scheme=scheme, min_count=threshold, sources=[], updated=update)
            report.carried = base_store.rows if base_store is not None else 0
            plan = _Plan(
                sources=tuple(source_list), key_size=size, targets=tuple(targets),
                filter=None if filter is None else os.fspath(filter), store=None if store is None else os.fspath(store),
                base_store=base_store, base_filter=base_filter, fp_rate=fp_rate, input_format=input_format,
                strict=strict, capacity=capacity, progress=progress, run_rows=run_rows, then=then, layout=chosen,
                resume=resume,
            )  # fmt: skip
            _run(plan, report)
            report.seconds = time.perf_counter() - started
            return report
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
class _Plan:
    """What one build was asked to do, checked: its sources, targets, settings, and what an update starts from."""

    sources: tuple[Source, ...]
    key_size: int
    targets: tuple[str, ...]
    filter: str | None
    store: str | None
    base_store: RangeStore | None
    base_filter: BloomFilter | FuseFilter | None
    fp_rate: float
    input_format: str
    strict: bool
    capacity: int | None
    progress: BuildProgress | None
    run_rows: int
    then: Then | None = None
    layout: str = "bloom"
    resume: bool = False


def _run(plan: _Plan, report: BuildReport) -> None:
    """Count the merged set, then write every artefact beside its target and rename them all into place."""
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
        merged = new if plan.base_store is None else sm.merge([sm.store_rows(plan.base_store), new])
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
    try:
        again = sm.distinct_twice(
            read, rereadable=plan.input_format not in COMBO_FORMATS and all(map(reopenable, plan.sources)),
            key_size=plan.key_size,
            workdir=workdir, run_rows=plan.run_rows, count=count, verify_reread=unchanged,
        )  # fmt: skip
        report.sorted_input = again.sorted_input
        if plan.base_store is not None:
            report.added = report.kept - report.carried
            report.raised = new_only.rows - (report.distinct - report.carried)
        _check_not_empty(report, fresh=plan.base_store is None and plan.base_filter is None)
        _write(plan, report, histogram, with_base(again.stream(), again.rows_phase), passes[-1].digests)
    finally:
        workdir.remove()


def _write(
    plan: _Plan,
    report: BuildReport,
    histogram: npt.NDArray[np.int64] | None,
    unique: Iterable[Chunk],
    source_digests: Callable[[], list[bytes]],
) -> None:
    """Fill every sink from the merged set, finish them all, and only then rename them into place.

    ``source_digests()`` gives the digest of each source's bytes as read (asked once they are all read).
    """
    sinks: list[Sink] = []
    try:  # a sink's temporary file exists from its creation: it is in the try that removes it
        if plan.filter is not None and plan.layout == "fuse":
            report.filter_path, report.filter_layout = plan.filter, "fuse"
            fuse = fuse_sink(plan.filter, kept=report.kept, scheme=report.scheme, min_count=report.min_count,
                             fp_rate=plan.fp_rate, base=plan.base_filter, resume=plan.resume)  # fmt: skip
            sinks.append(fuse)
        elif plan.filter is not None:
            report.filter_path = plan.filter
            bloom = FilterSink.for_build(
                plan.filter, kept=report.kept, scheme=report.scheme, min_count=report.min_count,
                fp_rate=plan.fp_rate, capacity=plan.capacity,
                base=plan.base_filter if isinstance(plan.base_filter, BloomFilter) else None,
                with_store=plan.base_store is not None,
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
        if plan.base_filter is not None and plan.base_store is None:  # added to a copy of a Bloom filter
            report.added = bloom.added_since(plan.base_filter.approx_items)
            report.raised = report.distinct - report.added
        for sink in sinks:
            sink.finish()  # every artefact is on disk beside its target before any is renamed into place
        if plan.filter is not None and plan.layout == "fuse":
            report.shards_built, report.shards_reused, report.shards_resumed = fuse.built, fuse.reused, fuse.resumed
        if plan.then is not None:  # a pair build: it commits these once its own store is finished too
            committed = False

            def commit() -> None:
                nonlocal committed
                committed = True
                for sink in sinks:
                    sink.commit()

            plan.then(commit, source_digests())
            if not committed:
                raise RuntimeError("the pair build returned without committing the filter/store")
            return
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    for sink in sinks:
        sink.commit()


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
