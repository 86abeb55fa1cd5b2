"""What a check answers: a password check's :class:`CheckResult`, a pair check's :class:`PairCheckResult`, and
what to tell the user about either.

A result holds no trace of the credentials. It says what a source answered (``checked_by`` names the source
or the fallback), or that none answered (``checked_by`` is ``None``): then ``unchecked`` says whether the
failure policy refuses the credentials for that (``"reject"``, or ``"fallback"`` with the fallback down too)
or lets them through (``"allow"``). ``rejected`` is what a validator refuses: a leak, or ``unchecked``.

A policy (:mod:`credcheck.contrib.policy`) reads the two results of a log-in, a sign-up or a change as
:class:`Verdict` values (:func:`verdicts_of`): the password leaked, the pair leaked exactly or with a similar
password, the username leaked alone, or no source answered.

The messages are plain English; each integration runs them through its own translations.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from ..checker import Exposure
    from ..pairs.checker import PairExposure

__all__ = [
    "CHANGE_REQUIRED",
    "CHANGE_SOON",
    "COMPROMISED_MANY",
    "COMPROMISED_NO_COUNT",
    "COMPROMISED_ONE",
    "PAIR_COMPROMISED",
    "REFUSED",
    "UNCHECKED",
    "USERNAME_LEAKED",
    "CheckResult",
    "PairCheckResult",
    "Role",
    "Verdict",
    "message",
    "verdicts_of",
]

#: Which source answered: the one configured, or the fallback the failure policy turned to.
Role = Literal["source", "fallback"]

COMPROMISED_ONE: Final = "This password has appeared in a data breach %(count)d time."
COMPROMISED_MANY: Final = "This password has appeared in a data breach %(count)d times."
COMPROMISED_NO_COUNT: Final = "This password has appeared in a data breach."
PAIR_COMPROMISED: Final = "This password has appeared in a data breach together with this username."
UNCHECKED: Final = "This password could not be checked against known data breaches. Please try again later."
USERNAME_LEAKED: Final = "This username has appeared in a data breach."
REFUSED: Final = "This password cannot be used."
CHANGE_REQUIRED: Final = "Your password has appeared in a data breach. Choose a new password to continue."
CHANGE_SOON: Final = "Your password has appeared in a data breach. Please change it soon."


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


class Verdict(str, enum.Enum):
    """What the checks of one set of credentials found, in the order a policy weighs them (the first is the most
    specific): a value a policy maps to an action."""

    #: This username with this very password is in a leak (a pair source's EXACT).
    EXACT = "exact"
    #: This username with a password very close to this one is in a leak (SIMILAR).
    SIMILAR = "similar"
    #: The password is in a leak, seen at least the stage's threshold of times.
    PASSWORD = "password"
    #: The username is in a leak, with other passwords (a pair source with username entries).
    USERNAME = "username"
    #: No source could answer (the failure policy said what became of the credentials).
    UNCHECKED = "unchecked"
    #: Nothing was found.
    CLEAN = "clean"


_PAIR_VERDICTS: Final = {"exact": Verdict.EXACT, "similar": Verdict.SIMILAR, "username": Verdict.USERNAME}


def verdicts_of(password: CheckResult | None, pair: PairCheckResult | None, threshold: int = 1) -> tuple[Verdict, ...]:
    """The verdicts of a password result and a pair result (either None when that tier was not asked), most
    specific first; ``(Verdict.CLEAN,)`` when nothing was found.

    A leaked password counts when its source saw it at least ``threshold`` times (a source that keeps no count,
    a Bloom filter, answers at the threshold it was built with, so it always counts). A tier that could not
    answer is :attr:`Verdict.UNCHECKED`, whatever the failure policy then did with the credentials.
    """
    found: set[Verdict] = set()
    if password is not None:
        if password.checked_by is None:
            found.add(Verdict.UNCHECKED)
        elif password.compromised and (password.count is None or password.count >= threshold):
            found.add(Verdict.PASSWORD)
    if pair is not None:
        if pair.checked_by is None:
            found.add(Verdict.UNCHECKED)
        elif pair.status in _PAIR_VERDICTS:
            found.add(_PAIR_VERDICTS[pair.status])
    return tuple(verdict for verdict in Verdict if verdict in found) or (Verdict.CLEAN,)


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
