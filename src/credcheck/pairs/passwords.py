"""A pair build that also writes ``--filter``/``--store`` from the same combo lists' passwords.

The password build reads the combo lists with the shared combo reader
(:class:`~credcheck.combolist.ComboPass`), finishes its artefacts beside their targets, and hands over to the
pair build, which renames them into place with its own store. Bad lines are counted in each build's report,
once per pass, with the combo reader's reasons.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from .._sortmerge import RUN_ROWS
from ..corpus import Source

if TYPE_CHECKING:
    from ..build import BuildReport
    from .build import PairBuildReport

__all__ = ["PairsAndPasswordsReport", "build_with_pairs"]


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
    "scheme": None, "hash": None, "fp_rate": 1e-6, "layout": None, "min_count": None, "capacity": None, "update": False,
    "run_rows": RUN_ROWS,
}  # fmt: skip
_PASSWORD_OPTIONS: Final = tuple(_PASSWORD_DEFAULTS)
