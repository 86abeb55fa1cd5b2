"""The range flow: every decision of a range lookup (the request, retries, the deadline, redirects, the cache,
how a body is read) as a generator that a driver runs, and its twin for a copy kept elsewhere (the mirror's)."""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Callable, Generator, Mapping
from contextlib import AbstractContextManager
from typing import Final, Generic, TypeVar

from .._wire import PREFIX_LENGTH, SUFFIX_LENGTHS, mode_query
from ..errors import RemoteError, RemoteErrorCode
from ..hashing import check_scheme
from .body import parse_range_body
from .cache import CacheEntry, RangeCache, freshness
from .corpus import CorpusFlow, corpus_flow
from .events import Reply, Request, Response, Wait
from .options import ClientOptions
from .retrying import Failed, Retrying, logger
from .urls import check_base_url, origin

__all__ = [
    "DEFAULT_BASE_URL",
    "Fetched",
    "RangeFlow",
    "RangeProtocol",
    "check_prefix",
    "suffix_length",
]

#: The public Pwned Passwords range API.
DEFAULT_BASE_URL: Final = "https://api.pwnedpasswords.com"
MAX_REDIRECTS: Final = 3
REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})

_HEX_PREFIX = re.compile(r"[0-9A-Fa-f]{5}", re.ASCII)
_NOT_THE_ROOT: Final = " (is the base URL the API's root? GET {base}/range/{PREFIX} must answer)"
_R = TypeVar("_R")

#: The generator type of :meth:`RangeProtocol.get_range`.
RangeFlow = Generator[Request | Wait, Reply, dict[str, int]]


def suffix_length(scheme: str) -> int:
    """Hex characters of a suffix in a range of ``scheme`` ('sha1' or 'ntlm')."""
    check_scheme(scheme)
    return SUFFIX_LENGTHS[scheme]


def check_prefix(prefix: str) -> str:
    """The 5-hex ``prefix`` upper-cased; a ValueError (never echoing it: it may be a whole hash) otherwise."""
    if not isinstance(prefix, str):
        raise TypeError(f"a range prefix must be str, not {type(prefix).__name__}")
    if len(prefix) != PREFIX_LENGTH:
        raise ValueError(f"a range prefix is exactly {PREFIX_LENGTH} hex characters, got {len(prefix)}")
    if _HEX_PREFIX.fullmatch(prefix) is None:
        raise ValueError("a range prefix must be hexadecimal")
    return prefix.upper()


@dataclasses.dataclass(frozen=True, slots=True)
class _Answer(Generic[_R]):
    value: _R | None  # None: 304 Not Modified
    headers: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Fetched(Generic[_R]):
    """What :meth:`RangeProtocol.fetch` returns: the range as its ``parse`` made it and the ETag it came with;
    ``value`` None when the server answered 304 (the stored copy for ``etag`` stands)."""

    value: _R | None
    etag: str | None


class RangeProtocol:
    """Every decision of a range lookup against one API, for any driver (see the package docs).

    ``options`` are the client's (or the mirror's); the cache (``options.cache`` entries, none for 0) lives
    here, shared by every flow of this protocol and guarded by ``lock``, which the driver provides.
    ``agent`` names the client in the default User-Agent.
    """

    def __init__(
        self,
        base_url: str,
        options: ClientOptions,
        *,
        lock: AbstractContextManager[object],
        agent: str = "k-anonymity range client",
    ) -> None:
        parts = check_base_url(base_url)
        if parts.path.rstrip("/").lower().endswith("/range"):
            raise ValueError("a range API's URL is its root, without /range (the client asks for ROOT/range/PREFIX)")
        self.base_url = base_url.rstrip("/")
        self.options = options
        self.user_agent = options.agent(agent)
        self.retrying = Retrying(options)
        self.cache = RangeCache(options.cache, lock) if options.cache else None

    def corpus(self, clock: Callable[[], float]) -> CorpusFlow:
        """The flow of one look at the API's corpus versions (:mod:`.corpus`): None for an API without them."""
        return corpus_flow(self.base_url, self.user_agent, self.retrying, clock)

    def _request(self, prefix: str, scheme: str) -> tuple[str, dict[str, str]]:
        """The URL and headers of a request for a range (``prefix`` already checked)."""
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "gzip"}
        if self.options.padding:
            headers["Add-Padding"] = "true"
        return f"{self.base_url}/range/{prefix}{mode_query(scheme)}", headers

    def get_range(self, prefix: str, scheme: str, clock: Callable[[], float]) -> RangeFlow:
        """The flow of one lookup: yields Requests and Waits, returns ``{SUFFIX: count}`` or raises RemoteError.

        ``prefix`` and ``scheme`` are checked before the first yield (a ValueError or TypeError, never echoing
        the prefix). A range fresh in the cache returns without any request.
        """
        prefix = check_prefix(prefix)
        suffix_len = suffix_length(scheme)
        key = (prefix, scheme)
        entry = self.cache.get(key) if self.cache is not None else None
        if entry is not None and clock() < entry.expires:
            logger.debug("range %s (%s): fresh in cache", prefix, scheme)
            return dict(entry.counts)

        url, headers = self._request(prefix, scheme)
        if entry is not None:
            if entry.etag is not None:
                headers["If-None-Match"] = entry.etag
            if entry.last_modified is not None:
                headers["If-Modified-Since"] = entry.last_modified

        def parse(body: bytes) -> dict[str, int]:
            return parse_range_body(body, suffix_len)

        def attempt(deadline: float) -> Generator[Request, Reply, _Answer[dict[str, int]] | Failed]:
            return self._attempt(url, headers, prefix, parse, deadline, entry is not None, clock)

        answer = yield from self.retrying.run(attempt, clock, f"range {prefix} ({scheme})")
        return self._settle(key, answer, entry, clock())

    def fetch(
        self,
        prefix: str,
        scheme: str,
        clock: Callable[[], float],
        parse: Callable[[bytes], _R],
        *,
        etag: str | None = None,
    ) -> Generator[Request | Wait, Reply, Fetched[_R]]:
        """The flow of one range for a copy kept elsewhere (the mirror): no cache; ``If-None-Match: etag`` when
        given. Returns the validated body as ``parse`` makes it (``parse`` raises RemoteError for a body it
        refuses: not retried, as a malformed body) with its ETag, or, for a 304, a value of None.
        """
        prefix = check_prefix(prefix)
        check_scheme(scheme)
        url, headers = self._request(prefix, scheme)
        if etag is not None:
            headers["If-None-Match"] = etag

        def attempt(deadline: float) -> Generator[Request, Reply, _Answer[_R] | Failed]:
            return self._attempt(url, headers, prefix, parse, deadline, etag is not None, clock)

        answer = yield from self.retrying.run(attempt, clock, f"range {prefix} ({scheme})")
        if answer.value is None:
            assert etag is not None  # a 304 is accepted only for a conditional request
            return Fetched(None, answer.headers.get("ETag") or etag)
        return Fetched(answer.value, answer.headers.get("ETag"))

    def _attempt(
        self,
        url: str,
        headers: Mapping[str, str],
        prefix: str,
        parse: Callable[[bytes], _R],
        deadline: float,
        conditional: bool,
        clock: Callable[[], float],
    ) -> Generator[Request, Reply, _Answer[_R] | Failed]:
        """One attempt: the request and the same-origin redirects it leads to."""
        label = f"range {prefix}"
        for _hop in range(MAX_REDIRECTS + 1):
            reply = yield from self.retrying.send(url, headers, deadline, clock, label)
            if isinstance(reply, Failed):
                return reply
            outcome = self._judge(reply, url, prefix, parse, conditional)
            if not isinstance(outcome, str):
                return outcome
            url = outcome  # a same-origin redirect: the next hop
        return Failed(RemoteError(f"range {prefix}: too many redirects", RemoteErrorCode.HTTP_STATUS), retryable=False)

    @staticmethod
    def _judge(
        response: Response, url: str, prefix: str, parse: Callable[[bytes], _R], conditional: bool
    ) -> _Answer[_R] | Failed | str:
        """What a response means: an answer, a failed attempt, or the URL of a redirect to follow."""
        status = response.status
        if status == 200:
            try:
                return _Answer(parse(response.body), response.headers)
            except RemoteError as exc:
                return Failed(RemoteError(f"range {prefix}: {exc}", exc.code), retryable=False)
        if status == 304 and conditional:
            return _Answer(None, response.headers)
        if status in REDIRECTS:
            location = response.headers.get("Location")
            target = urllib.parse.urljoin(url, location) if location else None
            if target is not None and origin(target) == origin(url):
                return target
            return Failed(
                RemoteError(
                    f"range {prefix}: HTTP {status} redirect to another origin, not followed",
                    RemoteErrorCode.HTTP_STATUS,
                ),
                retryable=False,
            )
        hint = _NOT_THE_ROOT if status in (400, 404) else ""
        return Retrying.status_failure(response, f"range {prefix}", hint)

    def _settle(
        self, key: tuple[str, str], answer: _Answer[dict[str, int]], entry: CacheEntry | None, now: float
    ) -> dict[str, int]:
        """Store or refresh the cache from a 200 or 304, and return a copy the caller may change."""
        if answer.value is None:
            assert entry is not None and self.cache is not None  # a 304 is accepted only when revalidating
            lifetime = freshness(answer.headers, entry.lifetime)
            if lifetime is None:
                self.cache.discard(key)
            else:
                entry.lifetime = lifetime
                entry.expires = now + lifetime
                entry.etag = answer.headers.get("ETag", entry.etag)
                entry.last_modified = answer.headers.get("Last-Modified", entry.last_modified)
            return dict(entry.counts)
        if self.cache is not None:
            lifetime = freshness(answer.headers, 0.0)
            etag = answer.headers.get("ETag")
            last_modified = answer.headers.get("Last-Modified")
            if lifetime is None or (lifetime == 0 and etag is None and last_modified is None):
                self.cache.discard(key)
            else:
                self.cache.put(key, CacheEntry(dict(answer.value), now + lifetime, lifetime, etag, last_modified))
        return answer.value
