"""The range wire's constants, in one place for the protocol, the server, the export, the mirror and the checkers.

The HIBP range API: ``GET /range/{PREFIX}`` with a 5-hex prefix, ``?mode=ntlm`` (the wire's spelling of the
NTLM scheme; SHA-1 sends no parameter), a body of ``SUFFIX:COUNT`` lines whose suffix is the digest's hex
minus the prefix (35 characters for SHA-1, 27 for NTLM). What credcheck adds to it, beside HIBP's paths: the
corpus version (``GET /v1/corpus``, and the ``X-Credcheck-Corpus`` header on range and pair answers). See
docs/PROTOCOL.md.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from .hashing import SCHEMES

__all__ = [
    "CORPUS_HEADER",
    "CORPUS_PATH",
    "CORPUS_VERSION",
    "MAX_COUNT_DIGITS",
    "MODE_PARAM",
    "PREFIX_LENGTH",
    "SUFFIX_LENGTHS",
    "mode_query",
]

#: Hex characters of a range prefix (20 bits).
PREFIX_LENGTH: Final = 5
#: Hex characters of a suffix in a range body, by scheme: ``{"sha1": 35, "ntlm": 27}``.
SUFFIX_LENGTHS: Final = MappingProxyType({s.name: 2 * s.digest_size - PREFIX_LENGTH for s in SCHEMES.values()})
#: The longest count a range line may carry (19 decimal digits always fit an int64).
MAX_COUNT_DIGITS: Final = 19
#: The query parameter that names the scheme on the wire; its only non-default value is ``ntlm``.
MODE_PARAM: Final = "mode"
#: Where ``credcheck serve`` says which corpus version each of its stores holds now (JSON).
CORPUS_PATH: Final = "/v1/corpus"
#: The response header of a range or pair answer naming the version of the corpus it came from.
CORPUS_HEADER: Final = "X-Credcheck-Corpus"
#: What a corpus version may look like on the wire: an opaque token (credcheck's are 16 hex digits).
CORPUS_VERSION: Final = r"[0-9A-Za-z._:-]{1,64}"


def mode_query(scheme: str) -> str:
    """The query string a range URL of ``scheme`` ends with: ``"?mode=ntlm"`` for NTLM, ``""`` for SHA-1."""
    return f"?{MODE_PARAM}=ntlm" if scheme == "ntlm" else ""
