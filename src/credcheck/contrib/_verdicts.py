"""What a check answers: a password check's :class:`CheckResult`, a pair check's :class:`PairCheckResult`, and
what to tell the user about either.

A result holds no trace of the credentials. It says what a source answered (``checked_by`` names the source
or the fallback), or that none answered (``checked_by`` is ``None``): then ``unchecked`` says whether the
failure policy refuses the credentials for that (``"reject"``, or ``"fallback"`` with the fallback down too)
or lets them through (``"allow"``). ``rejected`` is what a validator refuses: a leak, or ``unchecked``.

The messages are plain English; each integration runs them through its own translations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from ..checker import Exposure
    from ..pairs.checker import PairExposure

__all__ = [
    "COMPROMISED_MANY",
    "COMPROMISED_NO_COUNT",
    "COMPROMISED_ONE",
    "PAIR_COMPROMISED",
    "UNCHECKED",
    "CheckResult",
    "PairCheckResult",
    "Role",
    "message",
]

#: Which source answered: the one configured, or the fallback the failure policy turned to.
Role = Literal["source", "fallback"]

COMPROMISED_ONE: Final = "This password has appeared in a data breach %(count)d time."
COMPROMISED_MANY: Final = "This password has appeared in a data breach %(count)d times."
COMPROMISED_NO_COUNT: Final = "This password has appeared in a data breach."
PAIR_COMPROMISED: Final = "This password has appeared in a data breach together with this username."
UNCHECKED: Final = "This password could not be checked against known data breaches. Please try again later."


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """What a password check decided (it holds no trace of the password itself).

    ``compromised``: a source answered and has seen the password at least ``min_count`` times.
    ``count``: how often that source has seen it (``None`` when it cannot know, e.g. a Bloom filter, or
    when no source answered). ``checked_by``: ``"source"``, ``"fallback"``, or ``None`` when no source
    answered. ``unchecked``: no source answered and the policy is to refuse the password for that.
    """

    compromised: bool
    count: int | None = None
    checked_by: Role | None = None
    unchecked: bool = False

    @property
    def rejected(self) -> bool:
        """Whether the caller must refuse the password (leaked, or not checkable under "reject")."""
        return self.compromised or self.unchecked

    @classmethod
    def answered(cls, exposure: Exposure, role: Role) -> CheckResult:
        """The result of ``role``'s answer."""
        return cls(exposure.compromised, exposure.count, role)

    @classmethod
    def unanswered(cls, *, unchecked: bool) -> CheckResult:
        """The result when no source answered: refused as unchecked, or let through."""
        return cls(False, None, None, unchecked)

    def message(self, gettext: Callable[[str], str], ngettext: Callable[[str, str, int], str]) -> str | None:
        """What to tell the user (None when the password may be used), with the count a source keeps."""
        if self.unchecked:
            return gettext(UNCHECKED)
        if not self.compromised:
            return None
        if self.count is None:
            return gettext(COMPROMISED_NO_COUNT)
        return ngettext(COMPROMISED_ONE, COMPROMISED_MANY, self.count) % {"count": self.count}


@dataclasses.dataclass(frozen=True, slots=True)
class PairCheckResult:
    """What a pair check decided (no trace of the username or password).

    ``status``: the :class:`~credcheck.PairStatus` value a source answered (``"exact"``, ``"similar"``,
    ``"username"``, ``"not_found"``), or ``None`` when none answered. ``compromised``: exact or similar.
    ``checked_by``: ``"source"``, ``"fallback"`` or ``None``. ``unchecked``: no source answered and the policy
    is to refuse for that.
    """

    status: str | None
    checked_by: Role | None = None
    unchecked: bool = False

    @property
    def compromised(self) -> bool:
        """True when this exact pair, or the username with a password very close to it, has leaked."""
        return self.status in ("exact", "similar")

    @property
    def rejected(self) -> bool:
        """Whether the caller must refuse (a leaked pair, or one that could not be checked under "reject")."""
        return self.compromised or self.unchecked

    @property
    def label(self) -> str:
        """One word for a session or a log: the status, ``"unchecked"`` or ``"not_checked"``."""
        if self.status is not None:
            return self.status
        return "unchecked" if self.unchecked else "not_checked"

    @classmethod
    def answered(cls, exposure: PairExposure, role: Role) -> PairCheckResult:
        """The result of ``role``'s answer."""
        return cls(str(exposure.status.value), role)

    @classmethod
    def unanswered(cls, *, unchecked: bool) -> PairCheckResult:
        """The result when no source answered: refused as unchecked, or let through."""
        return cls(None, None, unchecked)

    def message(self, gettext: Callable[[str], str], ngettext: Callable[[str, str, int], str]) -> str | None:
        """What to tell the user (None when the password may be used with this username)."""
        if self.unchecked:
            return gettext(UNCHECKED)
        return gettext(PAIR_COMPROMISED) if self.compromised else None


def message(
    result: CheckResult | PairCheckResult,
    gettext: Callable[[str], str] = str,
    ngettext: Callable[[str, str, int], str] | None = None,
) -> str | None:
    """What to tell the user about ``result`` (None when it may be used), through the given translations (plain
    English by default); never a credential, only the count a source keeps."""
    return result.message(gettext, _english_ngettext if ngettext is None else ngettext)


def _english_ngettext(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural
