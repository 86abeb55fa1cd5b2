"""A pair store and a filter and/or store built from the same combo lists in one run, committed together.

Above both tiers, neither of which knows the other: the password build (:func:`credcheck.build.run_build`)
reads the combo lists' passwords and finishes its filter/store beside their targets; the pair build
(:func:`credcheck.pairs.build.run_pair_build`) reads the same lists again -- refusing any whose bytes changed in
between -- and finishes its store; only then does the shared :class:`~credcheck._atomic.Stage` rename the three
into place. A failure anywhere leaves every old artefact as it was (a pair build's checkpoints stay for
``resume``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import _atomic
from ._corpus import COMBO_FORMATS, reopenable
from ._frames import entry_point
from .build import BuildPlan, BuildReport, run_build
from .errors import InputError
from .pairs.build import PairBuildReport, PairPlan, run_pair_build

__all__ = ["CombinedReport", "build_combined"]


@dataclasses.dataclass(slots=True)
class CombinedReport:
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


@entry_point
def build_combined(pairs: PairPlan, passwords: BuildPlan) -> CombinedReport:
    """Build the pair store of ``pairs`` and the filter/store of ``passwords`` from the same combo lists, renaming
    none of them into place until all are written (``PairPlan.of`` and ``BuildPlan.of`` make the plans from
    :func:`~credcheck.pairs.build.build_pairs`'s and :func:`~credcheck.build`'s keywords)."""
    if pairs.sources != passwords.sources:
        raise ValueError("a combined build reads the same combo lists for both stores")
    if passwords.input_format not in COMBO_FORMATS or passwords.input_format != pairs.input_format:
        raise ValueError(f"a combined build reads combo lists: input_format {pairs.input_format!r} for both builds")
    if not all(reopenable(source) for source in pairs.sources):
        raise InputError(
            "a pair build that also writes --filter/--store reads its combo lists twice: give files, "
            "not standard input or a stream"
        )
    for target in passwords.targets:
        if _atomic.same_file(target, pairs.out):
            raise InputError(f"--pairs and --filter/--store are the same file ({target}); give each its own path")
    with _atomic.Stage() as stage:
        password_report, digests = run_build(passwords, stage)
        pair_report = run_pair_build(pairs, stage, same_bytes_as=digests)
        stage.commit()  # the filter/store first, then the pair store
    return CombinedReport(pairs=pair_report, passwords=password_report)
