"""Exposure, the Checker interface every source implements, and the checkers: filter, store and range API.

A checker hashes a password itself and looks the digest up in its source; callers swap a local filter,
a local store and a remote range API by changing one string in :func:`credcheck.open`. The file formats
(:mod:`credcheck.bloom`, :mod:`credcheck.store`) and the range clients know nothing of checking; each checker
here sits on one of them. The remote checker needs only a :class:`RangeSource` (what
:class:`~credcheck.client.RangeClient` is), so this core module imports no client.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from . import _native
from ._args import positive_int
from ._frames import entry_point
from ._inflight import Gate
from ._wire import PREFIX_LENGTH
from .bloom import BloomFilter
from .fuse import FuseFilter
from .hashing import DIGEST_SIZES, check_scheme, digest, hex_to_digest

if TYPE_CHECKING:
    from .store import RangeStore

__all__ = ["Checker", "Exposure", "Exposures", "FilterChecker", "RangeSource", "RemoteChecker", "StoreChecker"]

_C = TypeVar("_C", bound="Checker")


@dataclasses.dataclass(frozen=True, slots=True)
class Exposure:
    """The answer for one password: whether it leaked and, where the source knows, how often."""

    compromised: bool
    count: int | None = None

    def __bool__(self) -> bool:
        return self.compromised


NOT_FOUND = Exposure(False, 0)
LEAKED_NO_COUNT = Exposure(True, None)
#: In :class:`Exposures`' counts: the source keeps no count (a filter).
NO_COUNT: Final = -1


@dataclasses.dataclass(frozen=True, slots=True)
class Exposures:
    """The answers for many digests at once, as arrays: what :meth:`Checker.check_rows` returns for an audit of
    millions, where a list of :class:`Exposure` would cost more than the lookups.

    ``compromised[i]`` and ``counts[i]`` are the i-th digest's ``Exposure.compromised`` and ``Exposure.count``,
    with :data:`NO_COUNT` (-1) where that is None.
    """

    compromised: npt.NDArray[np.bool_]
    counts: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.compromised)

    def __getitem__(self, index: int) -> Exposure:
        count = int(self.counts[index])
        return Exposure(bool(self.compromised[index]), None if count == NO_COUNT else count)

    @classmethod
    def of(cls, answers: Sequence[Exposure]) -> Exposures:
        """The arrays of a list of answers."""
        counts = [NO_COUNT if answer.count is None else answer.count for answer in answers]
        return cls(np.array([a.compromised for a in answers], dtype=bool), np.array(counts, dtype=np.int64))


def digest_rows(digests: Sequence[bytes], size: int) -> npt.NDArray[np.uint8]:
    """Raw digests as an n x size uint8 array."""
    return np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), size)


def hex_rows(hex_digests: list[str], scheme: str) -> npt.NDArray[np.uint8]:
    """Parse hex digests with the line kernel; a bad one is a ValueError naming its position, not its text."""
    size = DIGEST_SIZES[scheme]
    if not hex_digests:
        return np.empty((0, size), dtype=np.uint8)
    try:
        text = "\n".join(hex_digests).encode("ascii")
    except (UnicodeEncodeError, TypeError):
        text = b""  # fall through to the per-item check below, which names the culprit
    n = len(hex_digests)
    rows = np.empty((text.count(b"\n") + 1, size), dtype=np.uint8)
    counts, bad = np.empty(len(rows), np.uint64), np.empty(len(rows), np.int64)
    lines, good, _, _ = _native.kernels.parse_lines(text, 0, 2 * size, rows, counts, bad)
    if lines != n or good != n:
        raise ValueError(f"hex digest #{_first_bad(hex_digests, scheme)} is not a single {scheme} hex digest")
    return rows[:n]


def leaked_at(counts: Any, min_count: int) -> Any:
    """Whether a hash seen ``counts`` times (an int, or an array of them) is leaked for a checker that asks for at
    least ``min_count`` (never at a count of 0)."""
    return counts >= max(min_count, 1)


def thresholded(count: int, min_count: int) -> Exposure:
    """The Exposure of a hash seen ``count`` times, for a checker that asks for at least ``min_count``."""
    return Exposure(bool(leaked_at(count, min_count)), count)


def range_hexes(digests: Sequence[bytes], scheme: str) -> list[str]:
    """Raw digests of ``scheme`` as upper-case hex, for a range lookup (a ValueError for a wrong size)."""
    size = DIGEST_SIZES[scheme]
    hexes: list[str] = []
    for raw in digests:
        if len(raw) != size:
            raise ValueError(f"a {scheme} digest has {size} bytes, got {len(raw)}")
        hexes.append(raw.hex().upper())
    return hexes


def distinct_prefixes(hexes: Sequence[str]) -> list[str]:
    """The range prefixes a batch of hex digests needs, each once, in first-seen order."""
    return list(dict.fromkeys(h[:PREFIX_LENGTH] for h in hexes))


def range_answers(hexes: Sequence[str], ranges: Mapping[str, Mapping[str, int]], min_count: int) -> list[Exposure]:
    """The answers for hex digests from their ranges (``{prefix: {SUFFIX: count}}``), in input order."""
    answers: list[Exposure] = []
    for full in hexes:
        count = ranges[full[:PREFIX_LENGTH]].get(full[PREFIX_LENGTH:])
        answers.append(Exposure(False, 0) if count is None else thresholded(count, min_count))
    return answers


def _first_bad(hex_digests: list[str], scheme: str) -> int:
    for position, item in enumerate(hex_digests):
        hex_to_digest(item, scheme)  # raises its own ValueError for a malformed one
        if "\n" in item or "\r" in item:
            return position
    return 0


class RangeSource(Protocol):
    """What a remote checker needs of a range client (:class:`~credcheck.client.RangeClient` is one)."""

    def get_range(self, prefix: str, scheme: str = "sha1") -> dict[str, int]:
        """``{SUFFIX: count}`` for the 5-hex ``prefix``, or a RemoteError: never an empty range for a failure."""
        ...

    def close(self) -> None:
        """Release the connections."""
        ...

    # Optional: ``corpus_version(scheme) -> str | None`` (what RangeClient has), read by RemoteChecker when present.


class Checker(abc.ABC):
    """Answers "has this password leaked?" from one source; every source returns the same :class:`Exposure`.

    ``min_count`` makes a password count as compromised only when the source has seen it at least that
    many times (sources that keep no counts must have been built with at least that threshold).

    A checker may be shared by threads and closed while they use it: :meth:`close` waits for the calls in
    flight to finish, and a call after it raises :class:`~credcheck.errors.ClosedError`.
    """

    scheme: str
    min_count: int

    def __init__(self, *, scheme: str = "sha1", min_count: int = 1) -> None:
        check_scheme(scheme)
        positive_int("min_count", min_count)
        self.scheme = scheme
        self.min_count = min_count
        self._gate = Gate(type(self).__name__)

    @entry_point
    def check(self, password: str | bytes) -> Exposure:
        """Return whether ``password`` appears in the source."""
        with self._gate:
            return self._check_one(password)

    @entry_point
    def check_hash(self, hex_digest: str) -> Exposure:
        """Return whether the full hex digest (of this checker's scheme) appears in the source."""
        return self.check_hashes([hex_digest])[0]

    @entry_point
    def check_hashes(self, hex_digests: Iterable[str]) -> list[Exposure]:
        """Check many full hex digests at once (an audit of exported hashes); answers in input order.

        Raises ValueError naming the position of the first one that is not a hex digest of the scheme.
        """
        rows = hex_rows(list(hex_digests), self.scheme)
        with self._gate:
            return self._check_rows(rows)

    @entry_point
    def check_rows(self, rows: npt.NDArray[np.uint8]) -> Exposures:
        """Check raw digests of the scheme, an n x digest-size uint8 array, at once; the answers as arrays.

        For bulk callers (an audit of a whole directory): the same lookups as :meth:`check_hashes`, without a
        hex digest to parse or an :class:`Exposure` to build per digest. A ValueError for an array of
        another shape or type.
        """
        size = DIGEST_SIZES[self.scheme]
        if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != size:
            raise ValueError(f"expected an n x {size} uint8 array of {self.scheme} digests")
        with self._gate:
            return self._answer_rows(np.ascontiguousarray(rows))

    @entry_point
    def check_many(self, passwords: Iterable[str | bytes]) -> list[Exposure]:
        """Check many passwords at once (vectorised or batched by the source); answers in input order."""
        digests = [digest(password, self.scheme) for password in passwords]
        with self._gate:
            return self._check_digests(digests)

    def corpus_version(self) -> str | None:
        """The version of the corpus this checker answers from, or None where its source has none.

        A local file's version is a digest of its header (the same one ``credcheck serve`` gives for that file);
        a range API's is what it says at ``/v1/corpus`` (asked each call: a site keeps it for a while); a filter
        made in memory and a range API without versions (HIBP's) have none, so a site re-checks by interval.
        """
        with self._gate:
            return self._corpus_version()

    def _corpus_version(self) -> str | None:
        return None

    def _check_one(self, password: str | bytes) -> Exposure:
        """Look up one password (sources with a faster single lookup override this)."""
        return self._check_digests([digest(password, self.scheme)])[0]

    def _check_rows(self, rows: npt.NDArray[np.uint8]) -> list[Exposure]:
        """Look up an n x digest-size array of raw digests (sources with a vectorised path override this)."""
        return self._check_digests([bytes(row) for row in rows])

    def _answer_rows(self, rows: npt.NDArray[np.uint8]) -> Exposures:
        """:meth:`_check_rows` as arrays (sources with a vectorised path override this)."""
        return Exposures.of(self._check_rows(rows))

    def _apply_threshold(self, count: int) -> Exposure:
        return thresholded(count, self.min_count)

    @abc.abstractmethod
    def _check_digests(self, digests: Sequence[bytes]) -> list[Exposure]:
        """Look up raw digests of this checker's scheme."""

    def close(self) -> None:
        """Release the source's resources (file maps, connection pools) once the calls in flight are done.

        Idempotent; any call after it raises :class:`~credcheck.errors.ClosedError`.
        """
        if self._gate.close():
            self._release()

    def _release(self) -> None:  # noqa: B027 - optional hook: most sources hold something to release
        """Release what the source holds; runs once, with no call in flight."""

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FilterChecker(Checker):
    """Checks passwords against a filter of either layout (Bloom or binary fuse): no false negatives, rare false
    positives, no counts."""

    def __init__(self, bloom: BloomFilter | FuseFilter, *, min_count: int | None = None) -> None:
        if bloom.scheme not in DIGEST_SIZES:
            raise ValueError(f"a checker needs a sha1 or ntlm filter, not {bloom.scheme!r}")
        # A filter keeps no counts: it answers exactly the threshold it was built with. A lower one would
        # miss the passwords the build dropped (a silent "not compromised"); a higher one would refuse
        # passwords seen fewer times than asked.
        built = bloom.min_count
        super().__init__(scheme=bloom.scheme, min_count=built if min_count is None else min_count)
        if self.min_count != built:
            wrong = (
                f"miss every password seen fewer than {built} times"
                if self.min_count < built
                else f"also report passwords seen fewer than {self.min_count} times as compromised"
            )
            raise ValueError(
                f"this filter was built with min_count={built}, so it cannot answer min_count={self.min_count} "
                f"(it would {wrong}); rebuild it with --min-count {self.min_count}"
            )
        self.filter = bloom

    def _check_digests(self, digests: Sequence[bytes]) -> list[Exposure]:
        return self._check_rows(digest_rows(digests, DIGEST_SIZES[self.scheme]))

    def _check_rows(self, rows: npt.NDArray[np.uint8]) -> list[Exposure]:
        hits = self.filter.contains_many(rows)
        return [LEAKED_NO_COUNT if hit else NOT_FOUND for hit in hits.tolist()]

    def _answer_rows(self, rows: npt.NDArray[np.uint8]) -> Exposures:
        hits = self.filter.contains_many(rows)
        return Exposures(hits, np.where(hits, NO_COUNT, 0).astype(np.int64))

    def _check_one(self, password: str | bytes) -> Exposure:
        return LEAKED_NO_COUNT if digest(password, self.scheme) in self.filter else NOT_FOUND

    def _corpus_version(self) -> str | None:
        return self.filter.version

    def _release(self) -> None:
        self.filter.close()

    def __repr__(self) -> str:
        return f"<FilterChecker {self.filter!r} min_count={self.min_count}>"


class StoreChecker(Checker):
    """Checks passwords against a local range store: exact, with counts."""

    def __init__(self, store: RangeStore, *, min_count: int = 1) -> None:
        super().__init__(scheme=store.scheme, min_count=min_count)
        self.store = store

    def _check_digests(self, digests: Sequence[bytes]) -> list[Exposure]:
        return self._check_rows(digest_rows(digests, self.store.digest_size))

    def _answer_rows(self, rows: npt.NDArray[np.uint8]) -> Exposures:
        counts = self.store.lookup_many(rows).astype(np.int64)
        return Exposures(leaked_at(counts, self.min_count), counts)

    def _check_rows(self, rows: npt.NDArray[np.uint8]) -> list[Exposure]:
        answers: dict[int, Exposure] = {}  # Exposure is immutable: one object per distinct count
        out = []
        for count in self.store.lookup_many(rows).tolist():
            answer = answers.get(count)
            if answer is None:
                answer = answers[count] = self._apply_threshold(count)
            out.append(answer)
        return out

    def _corpus_version(self) -> str | None:
        return self.store.version

    def _release(self) -> None:
        self.store.close()

    def __repr__(self) -> str:
        return f"<StoreChecker {self.store!r} min_count={self.min_count}>"


class RemoteChecker(Checker):
    """Checks passwords against a range API: one request per distinct hash prefix, suffixes matched locally.

    A batch fetches its distinct prefixes concurrently (at most ``max_workers`` at a time). Any failure raises
    :class:`RemoteError`; a password is never reported as safe because the service could not be asked.
    """

    def __init__(self, client: RangeSource, *, scheme: str = "sha1", min_count: int = 1, max_workers: int = 8) -> None:
        super().__init__(scheme=scheme, min_count=min_count)
        positive_int("max_workers", max_workers)
        self.client = client
        self.max_workers = max_workers

    def _check_digests(self, digests: Sequence[bytes]) -> list[Exposure]:
        hexes = range_hexes(digests, self.scheme)
        return range_answers(hexes, self._fetch(distinct_prefixes(hexes)), self.min_count)

    def _fetch(self, prefixes: list[str]) -> dict[str, dict[str, int]]:
        if len(prefixes) <= 1 or self.max_workers == 1:
            return {prefix: self.client.get_range(prefix, self.scheme) for prefix in prefixes}
        ranges: dict[str, dict[str, int]] = {}
        workers = min(self.max_workers, len(prefixes))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="credcheck-range") as pool:
            futures: dict[Future[dict[str, int]], str] = {
                pool.submit(self.client.get_range, prefix, self.scheme): prefix for prefix in prefixes
            }
            try:
                for future in as_completed(futures):
                    ranges[futures[future]] = future.result()
            except BaseException:
                # One failed prefix fails the batch; don't start requests whose answers will be thrown away.
                for future in futures:
                    future.cancel()
                raise
        return ranges

    def _corpus_version(self) -> str | None:
        version = getattr(self.client, "corpus_version", None)  # a RangeSource need not have it
        return None if version is None else version(self.scheme)

    def _release(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"<RemoteChecker {self.client!r} scheme={self.scheme!r} min_count={self.min_count}>"
