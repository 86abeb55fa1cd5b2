"""One sort-merge engine: fixed-width keyed rows in, each key once in order out.

A row is a key of fixed width, compared bytewise, and the value it carries (:class:`Layout`): a digest and its
count for the password build, where equal digests become one row with their counts summed; a pair build's
stretch input or entry with a payload, where rows equal in their leading key bytes keep the first of them in
key order (the trailing bytes rank them: the strongest status first). Rows whose keys are equal in full keep
the one added first, so what is kept never depends on how the rows were cut into runs.

Input that is already sorted (HIBP's dumps are) is read twice and never copied: a first pass counts, a
second one writes. Anything else is cut into sorted runs, kept in memory or, past a fixed budget, spilled
to files in a private working directory beside the target, and merged by a k-way merge of at most
:data:`FAN_IN` runs (more runs are first merged, a pass at a time, into fewer). Spilled runs are read back in
blocks with plain reads, never mapped, so a merge holds its blocks and not the pages of its files; every block
is checked against the checksums the writer kept in memory, so a run changed on disk is an error, never other
rows. A reader thread parses the next chunks while the consumer works. Memory stays bounded whatever the
input's size: sorting a run and a merge's blocks each hold about ``run_rows`` rows (:meth:`Layout.rows_within`
sizes them for a budget in bytes).

The build uses it for digests and their counts; the pair build and the mirror reuse it for theirs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import Any, BinaryIO, Final

import numpy as np
import numpy.typing as npt
import xxhash

from . import _atomic
from ._corpus import Chunk
from .errors import InputError, StorageError

__all__ = [
    "FAN_IN",
    "MERGE_BLOCK",
    "RUN_ROWS",
    "Again",
    "Counted",
    "Layout",
    "Progress",
    "Runs",
    "Unsorted",
    "WorkDir",
    "collapse",
    "distinct_twice",
    "keys",
    "merge",
    "ordered",
    "progress_rows",
    "read_ahead",
    "sort_unique",
]

RUN_ROWS: Final = 8 << 20  # keys sorted in memory at once before a run is spilled to disk
MERGE_BLOCK: Final = 1 << 18  # rows read from each run per merge step, at most
FAN_IN: Final = 32  # runs merged at once; more are first merged into fewer
_MIN_RUN_ROWS: Final = 64  # however small the budget: a run of fewer rows would only multiply the files

#: progress(phase, done, total, lines): phases that read input count bytes, the others count keys.
Progress = Callable[[str, int, "int | None", int], None]


class Unsorted(Exception):
    """Raised inside a pass when input that was hoped to be sorted is not."""


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """The rows the engine sorts: ``width`` key bytes each, in a :class:`~credcheck._corpus.Chunk`'s ``digests``,
    and the value each carries (dtype ``value``) in its ``counts``.

    Rows whose first ``same`` key bytes are equal become one: the first of them in key order, carrying the sum
    of their values when ``summed`` (counts), else its own (a payload).
    """

    width: int
    same: int
    value: np.dtype[Any]
    summed: bool

    def __post_init__(self) -> None:
        if not 0 < self.same <= self.width:
            raise ValueError(f"a layout compares 1 to {self.width} leading key bytes, not {self.same}")
        if self.summed and self.value.kind not in "iu":
            raise ValueError("only integer values can be summed")

    @classmethod
    def digests(cls, size: int) -> Layout:
        """Digests of ``size`` bytes with their counts: equal digests become one, their counts summed."""
        return cls(size, size, np.dtype(np.uint64), True)

    @property
    def row_bytes(self) -> int:
        """Bytes a row takes, key and value."""
        return self.width + self.value.itemsize

    def rows_within(self, memory: int) -> int:
        """The ``run_rows`` whose sort or merge holds about ``memory`` bytes at most: a merge step's blocks, their
        concatenation, its sorted and its collapsed copy, and the step before it, still held by the consumer (five
        copies of the rows), with the order and the compared keys; a run's sort holds less."""
        return max(_MIN_RUN_ROWS, memory // (5 * self.row_bytes + self.same + 16))

    def empty(self) -> Chunk:
        """A chunk of no rows."""
        return Chunk(np.empty((0, self.width), np.uint8), np.empty(0, self.value))


def keys(digests: npt.NDArray[np.uint8]) -> npt.NDArray[Any]:
    """View key rows as fixed-width byte strings, which numpy compares and sorts bytewise."""
    return np.ascontiguousarray(digests).view(f"S{digests.shape[1]}").ravel()


def _same_keys(digests: npt.NDArray[np.uint8], layout: Layout | None) -> npt.NDArray[Any]:
    """The leading key bytes that make rows equal, as byte strings."""
    return keys(digests if layout is None or layout.same == digests.shape[1] else digests[:, : layout.same])


def collapse(digests: npt.NDArray[np.uint8], counts: npt.NDArray[Any], layout: Layout | None = None) -> Chunk:
    """Make each run of adjacent equal rows of a sorted chunk one row (``layout``'s rule; default: equal digests,
    counts summed)."""
    row_keys = _same_keys(digests, layout)
    if len(row_keys) < 2:
        return Chunk(digests, counts)
    starts = np.flatnonzero(np.concatenate(([True], row_keys[1:] != row_keys[:-1])))
    if len(starts) == len(row_keys):
        return Chunk(digests, counts)
    if layout is None or layout.summed:
        return Chunk(digests[starts], np.add.reduceat(counts, starts))
    return Chunk(digests[starts], counts[starts])


def sort_unique(digests: npt.NDArray[np.uint8], counts: npt.NDArray[Any], layout: Layout | None = None) -> Chunk:
    """Sort a chunk's rows by their keys (stably: rows equal in full keep their order) and collapse equal ones."""
    order = np.argsort(keys(digests), kind="stable")
    return collapse(digests[order], counts[order], layout)


def ordered(chunks: Iterable[Chunk]) -> Iterator[Chunk]:
    """Pass through chunks of input that must already be sorted, merging duplicates across chunk edges.

    Raises Unsorted at the first key smaller than the one before it.
    """
    carry: Chunk | None = None
    for chunk in chunks:
        row_keys = keys(chunk.digests)
        if len(row_keys) > 1 and not bool(np.all(row_keys[1:] >= row_keys[:-1])):
            raise Unsorted
        merged = collapse(chunk.digests, chunk.counts)
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
    """A private temporary directory beside a target (``.NAME.spill-XXXXXXXX``), made on first use and removed by
    :meth:`remove`; one a build of the same target killed outright left is removed by :meth:`remove_stale`."""

    def __init__(self, beside: str) -> None:
        self.beside, self.prefix = beside, f".{os.path.basename(beside)}.spill-"
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

    def remove_stale(self) -> None:
        """Remove the directories beside the target that a build of it killed outright left (this user's).

        Only by a build that holds the target's lock: no other build of it can be using them then.
        """
        folder = os.path.dirname(self.beside) or "."
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(self.prefix) and len(entry.name) == len(self.prefix) + 8:
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False) and entry.stat().st_uid == os.geteuid():
                            shutil.rmtree(entry.path, ignore_errors=True)

    def size(self) -> int:
        """Bytes in the directory's files now (0 before it is made)."""
        if self._path is None:
            return 0
        total = 0
        with contextlib.suppress(OSError), os.scandir(self._path) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    total += entry.stat(follow_symlinks=False).st_size
        return total


@dataclasses.dataclass(frozen=True, slots=True)
class _RunFile:
    """A spilled run: its sorted keys in one file, their values in another, ``rows`` of each, and the checksums of
    every ``segment`` rows (xxh3-64 of the keys' bytes, then of the values' bytes: 16 bytes of ``sums`` each)."""

    keys: str
    values: str
    rows: int
    segment: int
    sums: bytes

    def remove(self) -> None:
        for path in (self.keys, self.values):
            with contextlib.suppress(OSError):  # gone already
                os.unlink(path)


def _raw(array: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """An array's bytes, in order, as a flat byte array (no copy when it is contiguous already)."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def _private(path: str) -> BinaryIO:
    """A new file of the run, only this user's: it holds what the build sorts (personal data, for a pair build)."""
    return os.fdopen(_atomic.create_private(path), "wb")


class _RunWriter:
    """Appends sorted rows to a new run's two files, summing every ``segment`` rows as they go: the sums stay in
    memory, where nothing on disk can change them, and every block read back is checked against them."""

    def __init__(self, folder: str, name: str, segment: int) -> None:
        self.run = _RunFile(
            os.path.join(folder, f"{name}.keys"), os.path.join(folder, f"{name}.values"), 0, segment, _NO_SUMS
        )
        self._rows = self._filled = 0  # rows written; rows of the segment being summed
        self._hashes = (xxhash.xxh3_64(), xxhash.xxh3_64())
        self._sums = bytearray()
        try:
            self._keys = _private(self.run.keys)
            try:
                self._values = _private(self.run.values)
            except BaseException:
                self._keys.close()
                raise
        except OSError as exc:
            raise _spill_error(exc) from exc

    def append(self, chunk: Chunk) -> None:
        keys, values = _raw(chunk.digests), _raw(chunk.counts)
        try:
            self._keys.write(keys.data)
            self._values.write(values.data)
        except OSError as exc:
            self.close(quietly=True)  # (flushing the other file would fail the same way)
            raise _spill_error(exc) from exc
        rows, at = len(chunk.counts), 0
        width, size = (len(keys) // rows, len(values) // rows) if rows else (0, 0)
        while at < rows:
            take = min(self.run.segment - self._filled, rows - at)
            self._hashes[0].update(keys[at * width : (at + take) * width].data)
            self._hashes[1].update(values[at * size : (at + take) * size].data)
            self._filled += take
            at += take
            if self._filled == self.run.segment:
                self._end_segment()
        self._rows += rows

    def _end_segment(self) -> None:
        self._sums += _SUMS.pack(*(hasher.intdigest() for hasher in self._hashes))
        for hasher in self._hashes:
            hasher.reset()
        self._filled = 0

    def close(self, *, quietly: bool = False) -> None:
        """Close both files (flushing them); the first error, unless ``quietly``."""
        failed: OSError | None = None
        for file in (self._keys, self._values):
            try:
                file.close()
            except OSError as exc:
                failed = failed or exc
        if failed is not None and not quietly:
            raise failed

    def finish(self) -> _RunFile:
        try:
            self.close()
        except OSError as exc:
            raise _spill_error(exc) from exc
        if self._filled:
            self._end_segment()
        return dataclasses.replace(self.run, rows=self._rows, sums=bytes(self._sums))


_SUMS: Final = struct.Struct("<QQ")  # a segment's: its keys' xxh3-64, its values'
_NO_SUMS: Final = b""


def _spill_error(exc: OSError) -> StorageError:
    return StorageError(f"cannot write a sorted run beside the target: {exc.strerror or exc}")


def _read_at(fd: int, size: int, offset: int) -> bytearray:
    """``size`` bytes of a run file at ``offset``, read into new memory (writable, unlike a map's pages)."""
    buffer = bytearray(size)
    view, done = memoryview(buffer), 0
    while done < size:
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise StorageError("a sorted run beside the target was cut short while the build read it back")
        done += got
    return buffer


def _check_block(run: _RunFile, first: int, keys: bytearray, values: bytearray, width: int, size: int) -> None:
    """Check rows of ``run`` read back (``keys`` and ``values``, from row ``first``: a segment's first, through a
    segment's end or the run's) against the sums taken as they were written: a run that changed on disk is an
    error, never rows read as other rows."""
    keys_view, values_view = memoryview(keys), memoryview(values)
    rows, segment = len(values) // size, run.segment
    for at in range(0, rows, segment):
        end = min(at + segment, rows)
        keys_sum, values_sum = _SUMS.unpack_from(run.sums, _SUMS.size * ((first + at) // segment))
        if xxhash.xxh3_64_intdigest(keys_view[at * width : end * width]) != keys_sum or (
            xxhash.xxh3_64_intdigest(values_view[at * size : end * size]) != values_sum
        ):
            raise StorageError("a sorted run beside the target changed after the build wrote it (it reads back "
                               "other bytes)")  # fmt: skip


class Runs:
    """Sorted runs of the input: in memory while they fit in ``run_rows``, then in files in ``workdir``.

    Rows follow ``layout`` (by default: digests of ``size`` bytes with counts). Once :meth:`finish` is called,
    :meth:`merged` gives every row once, in order, as often as asked; :meth:`discard` then frees the runs.
    """

    def __init__(
        self, layout: Layout | int, workdir: Callable[[], str], run_rows: int, *, fan_in: int = FAN_IN
    ) -> None:
        self.layout = Layout.digests(layout) if isinstance(layout, int) else layout
        self.size = self.layout.width
        self._workdir, self.run_rows, self.fan_in = workdir, run_rows, max(2, fan_in)
        # rows summed at once in a spilled run (a merge reads whole segments): at most fan_in + 1 sums a run
        self.segment = max(1, min(MERGE_BLOCK, run_rows // self.fan_in))
        self._pending: list[Chunk] = []
        self._pending_rows = 0
        self._files: list[_RunFile] = []
        self._memory: Chunk | None = None
        self._names = 0

    def add(self, chunk: Chunk) -> None:
        self._pending.append(chunk)
        self._pending_rows += len(chunk.counts)
        if self._pending_rows >= self.run_rows:
            self._spill()

    def _sorted_pending(self) -> Chunk:
        if not self._pending:
            return self.layout.empty()
        pending, self._pending, self._pending_rows = self._pending, [], 0
        digests = np.concatenate([c.digests for c in pending])
        counts = np.concatenate([c.counts for c in pending])
        del pending
        return sort_unique(digests, counts, self.layout)

    def _writer(self) -> _RunWriter:
        self._names += 1
        return _RunWriter(self._workdir(), f"{id(self):x}-{self._names}", self.segment)

    def _spill(self) -> None:
        run = self._sorted_pending()
        writer = self._writer()
        writer.append(run)
        self._files.append(writer.finish())

    def finish(self) -> None:
        """No more rows: sort what is pending, and merge the runs into at most ``fan_in`` (a pass at a time)."""
        if self._memory is not None:  # finished already
            return
        if not self._files:
            self._memory = self._sorted_pending()
            return
        if self._pending:
            self._spill()
        while len(self._files) > self.fan_in:  # consecutive groups, so that equal rows keep the earliest added
            files = []
            for start in range(0, len(self._files), self.fan_in):
                group = self._files[start : start + self.fan_in]
                if len(group) == 1:
                    files.extend(group)
                    continue
                writer = self._writer()
                for chunk in merge([self._blocks_of(run, len(group)) for run in group], self.layout):
                    writer.append(chunk)
                files.append(writer.finish())
                for run in group:
                    run.remove()
            self._files = files

    def _block_rows(self, streams: int) -> int:
        """Rows read from each of ``streams`` runs at once: together about a run's worth, whole segments."""
        rows = min(MERGE_BLOCK, self.run_rows // max(1, streams))
        return max(self.segment, rows // self.segment * self.segment)

    def _blocks_of(self, run: _RunFile, streams: int) -> Iterator[Chunk]:
        width, value = self.layout.width, self.layout.value
        block = self._block_rows(streams)
        try:
            keys_fd = os.open(run.keys, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                values_fd = os.open(run.values, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except BaseException:
                os.close(keys_fd)
                raise
        except OSError as exc:
            raise StorageError(f"cannot read a sorted run back: {exc.strerror or exc}") from exc
        try:
            for start in range(0, run.rows, block):
                rows = min(block, run.rows - start)
                try:
                    digests = _read_at(keys_fd, rows * width, start * width)
                    counts = _read_at(values_fd, rows * value.itemsize, start * value.itemsize)
                except OSError as exc:
                    raise StorageError(f"cannot read a sorted run back: {exc.strerror or exc}") from exc
                _check_block(run, start, digests, counts, width, value.itemsize)
                yield Chunk(
                    np.frombuffer(digests, dtype=np.uint8).reshape(rows, width), np.frombuffer(counts, dtype=value)
                )
        finally:
            os.close(keys_fd)
            os.close(values_fd)

    @staticmethod
    def _blocks(digests: npt.NDArray[np.uint8], counts: npt.NDArray[Any]) -> Iterator[Chunk]:
        for start in range(0, len(counts), MERGE_BLOCK):
            end = start + MERGE_BLOCK
            yield Chunk(np.asarray(digests[start:end]), np.asarray(counts[start:end]))

    def streams(self) -> list[Iterator[Chunk]]:
        """One sorted, collapsed stream per run."""
        if self._memory is not None:
            return [self._blocks(self._memory.digests, self._memory.counts)]
        live = [run for run in self._files if run.rows]
        return [self._blocks_of(run, len(live)) for run in live]

    def merged(self) -> Generator[Chunk]:
        """Every row once, in key order (the runs' k-way merge)."""
        return merge(self.streams(), self.layout)

    def discard(self) -> None:
        """Drop the runs (their files too): they have been merged for the last time."""
        for run in self._files:
            run.remove()
        self._files, self._memory, self._pending, self._pending_rows = [], None, [], 0


def merge(streams: Sequence[Iterable[Chunk]], layout: Layout | None = None) -> Generator[Chunk]:
    """K-way merge of sorted, collapsed streams (each key at most once per stream), collapsing equal rows by
    ``layout``'s rule (default: equal digests, counts summed); rows equal in full keep the earlier stream's.

    Each step takes, from every stream's current chunk, the rows up to the smallest chunk end (compared on the
    leading bytes that make rows equal, so that such rows always meet in one step); the stream(s) ending there
    move on to their next chunk.
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
        bound = min(_same_keys(heads[i].digests[-1:], layout)[0] for i in live)  # type: ignore[union-attr]
        parts: list[Chunk] = []
        for i in live:
            head = heads[i]
            assert head is not None
            take = int(np.searchsorted(_same_keys(head.digests, layout), bound, side="right"))
            parts.append(Chunk(head.digests[:take], head.counts[:take]))
            if take == len(head.counts):
                heads[i] = next((c for c in iters[i] if len(c.counts)), None)
            else:
                heads[i] = Chunk(head.digests[take:], head.counts[take:])
        yield sort_unique(np.concatenate([p.digests for p in parts]), np.concatenate([p.counts for p in parts]), layout)


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
    count(runs.merged(), "merge")
    return Again(runs.merged, "write", False)


def _reread(chunks: Iterator[Chunk], verify: Callable[[], None]) -> Iterator[Chunk]:
    try:
        yield from chunks
    except Unsorted:
        raise InputError("the input changed while it was being built from (it is no longer sorted)") from None
    verify()
