"""Password variants (MIGP's first nine rules, in order), stored as "similar" entries.

A leaked ``Summer2019`` also covers ``summer2019``, ``Summer201`` ... so a user who tweaked a leaked password
slightly is still warned. Rules work on characters (the plaintext is needed: a hash-only pair gets none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from .. import _args

__all__ = ["MAX_VARIANTS", "RULES", "check_count", "variants"]


def _toggle_first(password: str) -> str:
    first = password[:1]
    return (first.lower() if first.isupper() else first.upper()) + password[1:]


#: The rules, in order: ``--variants N`` applies the first N.
RULES: Final[tuple[tuple[str, Callable[[str], str]], ...]] = (
    ("toggle the case of the first character", _toggle_first),
    ("drop the last character", lambda pw: pw[:-1]),
    ("drop the last 2 characters", lambda pw: pw[:-2]),
    ("drop the last 3 characters", lambda pw: pw[:-3]),
    ('append "0"', lambda pw: pw + "0"),
    ('prepend "1"', lambda pw: "1" + pw),
    ('append "a"', lambda pw: pw + "a"),
    ('append "q"', lambda pw: pw + "q"),
    ('prepend "0"', lambda pw: "0" + pw),
)
MAX_VARIANTS: Final = len(RULES)


def check_count(count: int) -> int:
    """Validate a number of variant rules (0 to 9)."""
    return _args.int_in_range("variants", count, 0, MAX_VARIANTS)


def variants(password: str, count: int = MAX_VARIANTS) -> list[str]:
    """The first ``count`` rules applied to ``password``, in rule order, without repeats.

    A rule whose result is empty or the password itself (``"7"`` toggled, ``"ab"`` less 3 characters)
    yields nothing, so every variant returned is a distinct password other than the original.
    """
    seen = {password}
    out = []
    for _, rule in RULES[: check_count(count)]:
        variant = rule(password)
        if variant and variant not in seen:
            seen.add(variant)
            out.append(variant)
    return out
