"""The range wire's constants, in one place for the protocol, the server, the export, the mirror and the checkers.

The HIBP range API: ``GET /range/{PREFIX}`` with a 5-hex prefix, ``?mode=ntlm`` (the wire's spelling of the
NTLM scheme; SHA-1 sends no parameter), a body of ``SUFFIX:COUNT`` lines whose suffix is the digest's hex
minus the prefix (35 characters for SHA-1, 27 for NTLM). See docs/PROTOCOL.md.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from .hashing import SCHEMES

__all__ = ["MAX_COUNT_DIGITS", "MODE_PARAM", "PREFIX_LENGTH", "SUFFIX_LENGTHS", "mode_query"]

#: Hex characters of a range prefix (20 bits).
PREFIX_LENGTH: Final = 5
#: Hex characters of a suffix in a range body, by scheme: ``{"sha1": 35, "ntlm": 27}``.
SUFFIX_LENGTHS: Final = MappingProxyType({s.name: 2 * s.digest_size - PREFIX_LENGTH for s in SCHEMES.values()})
#: The longest count a range line may carry (19 decimal digits always fit an int64).
MAX_COUNT_DIGITS: Final = 19
#: The query parameter that names the scheme on the wire; its only non-default value is ``ntlm``.
MODE_PARAM: Final = "mode"


def mode_query(scheme: str) -> str:
    """The query string a range URL of ``scheme`` ends with: ``"?mode=ntlm"`` for NTLM, ``""`` for SHA-1."""
    return f"?{MODE_PARAM}=ntlm" if scheme == "ntlm" else ""
