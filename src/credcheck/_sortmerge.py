"""One sort-merge engine: fixed-width keys with counts in, each key once (counts summed) in order out.

Input that is already sorted (HIBP's dumps are) is read twice and never copied: a first pass counts, a
second one writes. Anything else is cut into sorted runs, kept in memory or, past a fixed budget, spilled
to files in a working directory beside the target, and merged by a k-way merge. A reader thread parses
the next chunks while the consumer works. Memory stays bounded whatever the input's size.

The build uses it for digests and their counts; the pair build and the mirror reuse it for theirs.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .corpus import Chunk
from .errors import InputError, StorageError

__all__ = [
    "MERGE_BLOCK",
    "RUN_ROWS",
    "Again",
    "Counted",
    "Progress",
    "Runs",
    "Unsorted",
    "WorkDir",
    "distinct_twice",
    "keys",
    "merge",
    "ordered",
    "progress_rows",
    "read_ahead",
    "sort_unique",
    "sum_runs",
]

RUN_ROWS: Final = 8 << 20  # keys sorted in memory at once before a run is spilled to disk
MERGE_BLOCK: Final = 1 << 18  # rows read from each run per merge step

#: progress(phase, done, total, lines): phases that read input count bytes, the others count keys.
Progress = Callable[[str, int, "int | None", int], None]


class Unsorted(Exception):
    """Raised inside a pass when input that was hoped to be sorted is not."""


def keys(digests: npt.NDArray[np.uint8]) -> npt.NDArray[Any]:
    """View key rows as fixed-width byte strings, which numpy compares and sorts bytewise."""
    return np.ascontiguousarray(digests).view(f"S{digests.shape[1]}").ravel()


def sum_runs(digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64]) -> Chunk:
    """Merge adjacent equal keys of a sorted chunk, summing their counts."""
    row_keys = keys(digests)
    if len(row_keys) < 2:
        return Chunk(digests, counts)
    starts = np.flatnonzero(np.concatenate(([True], row_keys[1:] != row_keys[:-1])))
    if len(starts) == len(row_keys):
        return Chunk(digests, counts)
    return Chunk(digests[starts], np.add.reduceat(counts, starts))


def sort_unique(digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64]) -> Chunk:
    """Sort a chunk's keys and sum the counts of equal ones."""
    order = np.argsort(keys(digests), kind="stable")
    return sum_runs(digests[order], counts[order])


def ordered(chunks: Iterable[Chunk]) -> Iterator[Chunk]:
    """Pass through chunks of input that must already be sorted, merging duplicates across chunk edges.

    Raises Unsorted at the first key smaller than the one before it.
    """
    carry: Chunk | None = None
    for chunk in chunks:
        row_keys = keys(chunk.digests)
        if len(row_keys) > 1 and not bool(np.all(row_keys[1:] >= row_keys[:-1])):
            raise Unsorted
        merged = sum_runs(chunk.digests, chunk.counts)
        if carry is not None:
            last = keys(carry.digests)[0]
            if row_keys[0] < last:
                raise Unsorted
            if row_keys[0] == last:
                merged.counts[0] += carry.counts[0]
            else:
                yield carry
        carry = Chunk(merged.digests[-1:], merged.counts[-1:])
        if len(merged.counts) > 1:
            yield Chunk(merged.digests[:-1], merged.counts[:-1])
    if carry is not None:
        yield carry


class WorkDir:
    """A private temporary directory beside a target, made on first use and removed by :meth:`remove`."""

    def __init__(self, beside: str, prefix: str = ".credcheck-build-") -> None:
        self.beside, self.prefix = beside, prefix
        self._path: str | None = None

    def __call__(self) -> str:
        """The directory's path (made now if it is not there yet); StorageError if it cannot be made."""
        if self._path is None:
            try:
                self._path = tempfile.mkdtemp(prefix=self.prefix, dir=os.path.dirname(self.beside))
            except OSError as exc:  # no space, no inode left, no permission
                raise StorageError(
                    f"cannot make a directory for sorted runs beside {self.beside}: {exc.strerror or exc}"
                ) from exc
        return self._path

    def remove(self) -> None:
        """Remove the directory and everything in it, if it was made."""
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None


class Runs:
    """Sorted runs of the input: in memory while they fit in ``run_rows``, then in files in ``workdir``."""

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
        return sort_unique(digests, counts)

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

    @staticmethod
    def _blocks(digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64]) -> Iterator[Chunk]:
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


def merge(streams: Sequence[Iterable[Chunk]]) -> Iterator[Chunk]:
    """K-way merge of sorted, merged streams (each key at most once per stream), summing equal keys.

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
        bound = min(keys(heads[i].digests[-1:])[0] for i in live)  # type: ignore[union-attr]
        parts: list[Chunk] = []
        for i in live:
            head = heads[i]
            assert head is not None
            take = int(np.searchsorted(keys(head.digests), bound, side="right"))
            parts.append(Chunk(head.digests[:take], head.counts[:take]))
            if take == len(head.counts):
                heads[i] = next((c for c in iters[i] if len(c.counts)), None)
            else:
                heads[i] = Chunk(head.digests[take:], head.counts[take:])
        yield sort_unique(np.concatenate([p.digests for p in parts]), np.concatenate([p.counts for p in parts]))


class Counted:
    """Counts the rows that flow through (e.g. the new sources' distinct keys, before an update's merge)."""

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self.chunks, self.rows = chunks, 0

    def __iter__(self) -> Iterator[Chunk]:
        for chunk in self.chunks:
            self.rows += len(chunk.counts)
            yield chunk


def read_ahead(chunks: Iterator[Chunk], depth: int = 2) -> Iterator[Chunk]:
    """Yield ``chunks`` while a background thread reads and parses the next ones.

    Parsing (C) and filling the filter (C) both release the GIL, so on two cores they overlap. The reader
    stays at most ``depth`` chunks ahead; its errors are raised here, in order; closing this generator
    (an exception in the consumer, or Unsorted) stops it.
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


def progress_rows(chunks: Iterable[Chunk], phase: str | None, progress: Progress | None) -> Iterator[Chunk]:
    """Pass ``chunks`` through, reporting the rows done so far in ``phase`` (nothing when either is None)."""
    done = 0
    for chunk in chunks:
        done += len(chunk.counts)
        if progress is not None and phase is not None:
            progress(phase, done, None, done)
        yield chunk


@dataclasses.dataclass(frozen=True, slots=True)
class Again:
    """How to read the distinct keys a second time: ``stream()``, whose rows count in ``rows_phase``
    (None when the reading reports its own progress in bytes), and whether the input was sorted."""

    stream: Callable[[], Iterator[Chunk]]
    rows_phase: str | None
    sorted_input: bool


def distinct_twice(
    read: Callable[[str], Iterator[Chunk]],
    *,
    rereadable: bool,
    key_size: int,
    workdir: Callable[[], str],
    run_rows: int = RUN_ROWS,
    count: Callable[[Iterable[Chunk], str | None], None],
    verify_reread: Callable[[], None] = lambda: None,
) -> Again:
    """Hand ``count`` the input's distinct keys (counts summed, in order), then say how to get them again.

    ``read(phase)`` reads the whole input once. Input that can be reread is hoped to be sorted: it is read
    in phase "scan" for ``count`` and again in "write", never copied; ``verify_reread`` runs at the end of
    the second read (to refuse input that changed in between), and a second read that is no longer
    sorted is an InputError. Input that cannot be reread, or turns out unsorted, is read once ("read")
    into sorted runs (spilled to ``workdir`` past ``run_rows`` keys) and merged for ``count`` ("merge")
    and again for writing ("write"). ``count`` gets the rows' progress phase, or None.
    """
    if rereadable:
        try:
            count(ordered(read_ahead(read("scan"))), None)
        except Unsorted:
            pass
        else:
            return Again(lambda: _reread(ordered(read_ahead(read("write"))), verify_reread), None, True)
    runs = Runs(key_size, workdir, run_rows)
    for chunk in read_ahead(read("read")):
        runs.add(chunk)
    runs.finish()
    count(merge(runs.streams()), "merge")
    return Again(lambda: merge(runs.streams()), "write", False)


def _reread(chunks: Iterator[Chunk], verify: Callable[[], None]) -> Iterator[Chunk]:
    try:
        yield from chunks
    except Unsorted:
        raise InputError("the input changed while it was being built from (it is no longer sorted)") from None
    verify()
