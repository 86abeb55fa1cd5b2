"""The passwords of combo lists, for the password build: a pair build that also writes ``--filter``/``--store``.

:class:`ComboPass` reads combo sources with the combo reader (:func:`~credcheck.pairs.combo.read_pairs`) and
hands the sort-merge engine what a :class:`~credcheck.corpus.SourcesPass` hands it: chunks of digests (the
password's SHA-1 or NTLM, hashed here in memory; a ``combo-sha1`` line's digest as it is), one per good line,
each counted once. No password is written anywhere: the engine sorts the digests in runs (spilled beside the
target past its budget, digests only, as for any unsorted list). Bad lines are counted in the pass's stats,
once per pass, with the combo reader's reasons; the build report takes the last pass's.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from .._sortmerge import RUN_ROWS
from ..corpus import Chunk, Source, SourcesPass, source_name
from ..errors import InputError
from ..hashing import check_scheme, digest
from .combo import FORMATS, ComboStats, read_pairs

if TYPE_CHECKING:
    from ..build import BuildReport
    from .build import PairBuildReport

__all__ = ["ComboPass", "PairsAndPasswordsReport", "check_scheme_for"]

_CHUNK_ROWS: Final = 1 << 16


def check_scheme_for(input_format: str, scheme: str) -> None:
    """Refuse a scheme the combo format cannot give: a ``combo-sha1`` line holds a SHA-1, never an NTLM hash."""
    if input_format not in FORMATS:
        raise InputError(f"the passwords of a pair build come from combo lists, not {input_format!r}")
    if input_format == "combo-sha1" and scheme != "sha1":
        raise InputError("combo-sha1 lines hold SHA-1 hashes: their filter or store can only be sha1, not " + scheme)


class ComboPass(SourcesPass):
    """One read of combo sources in turn, as the password build's engine reads a :class:`SourcesPass`: the
    same bookkeeping (stats, a digest of each source's bytes, the hashes read), the combo reader's lines."""

    def __init__(self, sources: Sequence[Source], input_format: str) -> None:
        self.input_format = input_format
        super().__init__(sources)

    def _stats_for(self, source: Source) -> ComboStats:
        return ComboStats(source_name(source), self.input_format)

    def _chunks(
        self,
        source: Source,
        stats: Any,
        checksum: Any,
        tick: Callable[[int, int | None, int], None],
        *,
        scheme: str,
        input_format: str,
        strict: bool,
    ) -> Iterator[Chunk]:
        check_scheme_for(self.input_format, scheme)
        size = check_scheme(scheme)
        out = bytearray()
        rows = 0
        pairs = read_pairs(
            source, input_format=self.input_format, strict=strict, stats=stats, progress=tick, checksum=checksum
        )
        for pair in pairs:
            if scheme == "sha1":
                out += pair.sha1
            else:
                assert pair.password is not None  # check_scheme_for: combo-sha1 is sha1 only
                out += digest(pair.password, scheme)
            rows += 1
            if rows == _CHUNK_ROWS:
                yield _chunk(out, size)
                out, rows = bytearray(), 0
        if rows:
            yield _chunk(out, size)


def _chunk(out: bytearray, size: int) -> Chunk:
    digests = np.frombuffer(bytes(out), dtype=np.uint8).reshape(-1, size)
    return Chunk(digests, np.ones(len(digests), dtype=np.uint64))


@dataclasses.dataclass(slots=True)
class PairsAndPasswordsReport:
    """A pair build that also wrote a filter and/or store: the pair build's report and the password build's.

    Each adds up on its own; each counts the sources' bad lines once.
    """

    pairs: PairBuildReport
    passwords: BuildReport

    def reconciles(self) -> bool:
        """True when both reports add up."""
        return self.pairs.reconciles() and self.passwords.reconciles()

    def as_dict(self) -> dict[str, Any]:
        """Both reports as JSON-ready data: ``{"pairs": ..., "passwords": ...}``."""
        return {"pairs": self.pairs.as_dict(), "passwords": self.passwords.as_dict()}

    def summary(self) -> str:
        """Both reports' accounts, the pair store's first."""
        return f"pairs:\n{self.pairs.summary()}\npasswords:\n{self.passwords.summary()}"


def build_with_pairs(
    sources: Source | Sequence[Source],
    pairs: str | os.PathLike[str] | None,
    key: Any,
    *,
    password_build: Callable[..., BuildReport],
    filter: str | os.PathLike[str] | None,
    store: str | os.PathLike[str] | None,
    input_format: str,
    strict: bool,
    progress: Any,
    **options: Any,
) -> PairBuildReport | PairsAndPasswordsReport:
    """``credcheck.build(..., pairs=, key=)``: a pair build, and with ``filter``/``store`` also the password build.

    ``password_build`` is the password build (build.py's), called with the combo lists as input and a ``then``
    that runs the pair build once the filter/store are finished beside their targets; the pair build renames
    them into place (``before_replace``) just before its own store, so a failure anywhere leaves all as they were.
    """
    from .build import build_pairs

    if pairs is None or key is None:
        raise ValueError("a pair build takes both pairs= and key=")
    fmt = "combo" if input_format == "auto" else input_format
    password_options = {name: options.pop(name) for name in _PASSWORD_OPTIONS if name in options}
    if filter is None and store is None:
        unused = [name for name, value in password_options.items() if value != _PASSWORD_DEFAULTS.get(name)]
        if unused:
            raise ValueError(f"{', '.join(unused)} apply to a filter or store, not to a pair build alone")
        return build_pairs(sources, pairs, key, input_format=fmt, strict=strict, progress=progress, **options)
    pair_reports: list[PairBuildReport] = []

    def then(commit: Callable[[], None], digests: list[bytes]) -> None:  # the filter/store are finished
        pair_reports.append(
            build_pairs(
                sources,
                pairs,
                key,
                input_format=fmt,
                strict=strict,
                progress=progress,
                before_replace=commit,
                same_bytes_as=digests,
                **options,
            )
        )

    passwords = password_build(
        sources,
        filter=filter,
        store=store,
        input_format=fmt,
        strict=strict,
        progress=progress,
        then=then,
        pairs=pairs,
        **password_options,
    )
    return PairsAndPasswordsReport(pairs=pair_reports[0], passwords=passwords)


# build()'s keywords that belong to the password build, and their defaults there
_PASSWORD_DEFAULTS: Final[dict[str, Any]] = {
    "scheme": None, "hash": None, "fp_rate": 1e-6, "min_count": None, "capacity": None, "update": False,
    "run_rows": RUN_ROWS,
}  # fmt: skip
_PASSWORD_OPTIONS: Final = tuple(_PASSWORD_DEFAULTS)
