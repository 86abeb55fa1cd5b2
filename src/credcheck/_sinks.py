"""Where a build's merged set goes: the :class:`Sink` protocol, the filter sinks (Bloom with its sizing rules,
binary fuse) and the one test of which layout a filter file has.

A sink is filled with sorted, merged digests, then ``finish`` writes its artefact beside the target and
fsyncs it, and ``commit`` renames it into place, only once every sink of the build has finished. The
store's sink is :class:`credcheck.store.StoreWriter`, the fuse filter's :class:`credcheck.fuse.FuseWriter`;
a pair store's will be another.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from . import _atomic
from ._artifact import kind_of
from .bloom import MAGIC as BLOOM_MAGIC
from .bloom import BloomFilter
from .errors import CapacityError, InputError
from .fuse import MAGIC as FUSE_MAGIC
from .fuse import FuseFilter, FuseWriter

__all__ = ["FILTER_OPENERS", "LAYOUTS", "FilterSink", "Sink", "fuse_sink", "open_filter"]

#: The filter layouts a build writes: a Bloom filter (the default) or a sharded binary fuse filter.
LAYOUTS: Final = ("bloom", "fuse")


#: How a filter file of each layout is opened, by the magic it starts with.
FILTER_OPENERS: Final[dict[bytes, Callable[..., BloomFilter | FuseFilter]]] = {
    BLOOM_MAGIC: BloomFilter.open,
    FUSE_MAGIC: FuseFilter,
}


def open_filter(path: str | os.PathLike[str], *, verify: bool = True) -> BloomFilter | FuseFilter:
    """Open a filter file of either layout (told by its magic bytes), verified."""
    path = os.fspath(path)
    return kind_of(path, FILTER_OPENERS, "filter")(path, verify=verify)


def fuse_sink(
    path: str,
    *,
    kept: int,
    scheme: str,
    min_count: int,
    fp_rate: float,
    base: BloomFilter | FuseFilter | None,
    resume: bool = False,
) -> FuseWriter:
    """The fuse filter a build writes: sized for the ``kept`` hashes; an update keeps the old filter's rate (of
    either layout) and copies each of its shards that holds exactly the shard's hashes; ``resume`` takes an
    interrupted build's."""
    if base is not None:
        fp_rate = base.fp_rate
    fuse_base = base if isinstance(base, FuseFilter) else None
    return FuseWriter(
        path, items=kept, scheme=scheme, fp_rate=fp_rate, min_count=min_count, base=fuse_base, resume=resume
    )


class Sink(Protocol):
    """Where the sorted, merged digests go: ``finish`` writes the artefact beside its target and fsyncs it,
    ``commit`` renames it into place (only once every sink has finished), ``abort`` drops it."""

    def add(self, digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64]) -> None: ...

    def finish(self) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class FilterSink:
    """Fills a Bloom filter and saves it atomically; ``grown_from`` is the capacity of the filter it outgrew."""

    def __init__(self, path: str, bloom: BloomFilter, grown_from: int = 0) -> None:
        self.path, self.bloom, self.grown_from = path, bloom, grown_from
        self._tmp: str | None = None

    @classmethod
    def for_build(
        cls,
        path: str,
        *,
        kept: int,
        scheme: str,
        min_count: int,
        fp_rate: float,
        capacity: int | None,
        base: BloomFilter | None,
        with_store: bool,
    ) -> FilterSink:
        """The filter a build fills: fresh; rebuilt from the merged store at the old one's size (or larger,
        when the merged set outgrows it); or, updated without its store, a copy of the old one to add to."""
        if base is None:
            cap = kept if capacity is None else capacity
            if cap < kept:
                raise CapacityError(f"capacity {cap} is smaller than the {kept} hashes this build keeps")
            return cls(path, BloomFilter.create(max(1, cap), fp_rate, scheme=scheme, min_count=min_count))
        if capacity is not None:  # an update that asks for a new size rebuilds at that size
            if capacity < kept + (0 if with_store else base.approx_items):
                raise CapacityError(f"capacity {capacity} is smaller than the merged set")
            if not with_store:
                raise InputError("resizing a filter needs every hash: update it together with its --store")
            return cls(path, BloomFilter.create(capacity, base.fp_rate, scheme=scheme, min_count=min_count))
        if with_store:  # the merged store holds everything: rebuild at the same size, or larger
            fitting = max(base.capacity, kept)
            bloom = BloomFilter.create(fitting, base.fp_rate, scheme=scheme, min_count=min_count)
            return cls(path, bloom, base.capacity if fitting > base.capacity else 0)
        if min_count > 1:
            raise InputError(
                "a filter built with --min-count cannot be updated on its own: counts must be summed; "
                "update it together with its --store"
            )
        return cls(path, base.copy())

    def add(self, digests: npt.NDArray[np.uint8], counts: npt.NDArray[np.uint64]) -> None:
        self.bloom.update(digests)

    def added_since(self, before: int) -> int:
        """After adding to a copy of a filter that held ``before`` items: how many are new; refuse to outgrow it."""
        if self.bloom.over_capacity:
            raise _capacity_error(self.path, self.bloom.approx_items, self.bloom)
        return self.bloom.approx_items - before

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
    fill = -math.expm1(-bloom.k * holds / bloom.m)
    return CapacityError(
        f"{path}: the update would make it hold {holds:,} hashes but it has room for {bloom.room:,} (its "
        f"false-positive rate would rise from {bloom.fp_rate:g} to about {fill**bloom.k:.3g}). A filter alone "
        f"cannot grow: update it together with the --store it was built with (the filter is then rebuilt at a "
        f"fitting size), or rebuild it from all the sources with --capacity {2 * holds}"
    )
