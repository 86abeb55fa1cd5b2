"""The corpus-version flow: ``GET {base}/v1/corpus``, which says which version of the corpus each store of a
``credcheck serve`` holds now, for a range client and a pair client alike (docs/PROTOCOL.md, "Corpus version").

A partner site re-checks a user at log-in only when the corpus changed since that user's last check; this is how
it learns that cheaply, without checking anyone. A range API that has no such path (HIBP's, a static export)
answers 404: the flow returns None, and the site falls back to re-checking by interval.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Generator, Mapping
from types import MappingProxyType
from typing import Final

from .._wire import CORPUS_PATH, CORPUS_VERSION
from ..errors import RemoteError, RemoteErrorCode
from .events import Reply, Request, Wait
from .retrying import Failed, Retrying

__all__ = ["CorpusFlow", "CorpusVersions", "corpus_flow", "parse_versions"]

#: What a server without versions answers (HIBP's API, a static export): no version, never an error.
NO_VERSIONS: Final = frozenset({400, 404, 405, 410})
_VERSION = re.compile(CORPUS_VERSION, re.ASCII)
_LABEL: Final = "corpus version"


@dataclasses.dataclass(frozen=True, slots=True)
class CorpusVersions:
    """What ``GET /v1/corpus`` says: the version of each range store served (by scheme) and of the pair store."""

    ranges: Mapping[str, str]
    pairs: str | None


#: The generator type of :func:`corpus_flow`: the versions, or None where the service has none.
CorpusFlow = Generator[Request | Wait, Reply, CorpusVersions | None]


def _bad(what: str) -> RemoteError:
    return RemoteError(f"{_LABEL}: {what}", RemoteErrorCode.BAD_RESPONSE)


def _version(value: object, what: str) -> str:
    if not isinstance(value, str) or _VERSION.fullmatch(value) is None:
        raise _bad(f"{what} is not a corpus version (1 to 64 letters, digits or ._:-)")
    return value


def parse_versions(body: bytes) -> CorpusVersions:
    """The versions a server sent, or a RemoteError (BAD_RESPONSE) naming what is wrong; fields the client does
    not know are ignored (a later server may say more)."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad("the answer is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("ranges"), dict) or "pairs" not in doc:
        raise _bad('the answer is not {"ranges": {SCHEME: VERSION, ...}, "pairs": VERSION or null}')
    ranges = {str(scheme): _version(value, f"the {scheme} version") for scheme, value in doc["ranges"].items()}
    pairs = None if doc["pairs"] is None else _version(doc["pairs"], "the pair version")
    return CorpusVersions(MappingProxyType(ranges), pairs)


def corpus_flow(base_url: str, user_agent: str, retrying: Retrying, clock: Callable[[], float]) -> CorpusFlow:
    """The flow of one look at a service's corpus versions (retried, bounded by the client's deadline): the
    versions, None when the service keeps none, or a RemoteError."""
    url = f"{base_url}{CORPUS_PATH}"
    headers = {"User-Agent": user_agent, "Accept": "application/json"}

    def attempt(deadline: float) -> Generator[Request, Reply, CorpusVersions | Failed | None]:
        reply = yield from retrying.send(url, headers, deadline, clock, _LABEL)
        if isinstance(reply, Failed):
            return reply
        if reply.status in NO_VERSIONS:
            return None
        if reply.status != 200:
            return Retrying.status_failure(reply, _LABEL)
        try:
            return parse_versions(reply.body)
        except RemoteError as exc:
            return Failed(exc, retryable=False)

    return (yield from retrying.run(attempt, clock, _LABEL))
