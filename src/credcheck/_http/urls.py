"""URLs as the clients take them: a base URL checked, the origin a redirect must stay within, a URL fit to show."""

from __future__ import annotations

import urllib.parse

__all__ = ["check_base_url", "origin", "redacted"]


def check_base_url(base_url: object) -> urllib.parse.SplitResult:
    """The parts of an http(s):// base URL with a host and no query or fragment; TypeError/ValueError otherwise."""
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be str, not {type(base_url).__name__}")
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("base_url must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not carry a query or a fragment")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise ValueError("base_url has an invalid port") from None
    return parts


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``: a redirect is followed only within one origin."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def redacted(url: str) -> str:
    """``url`` without any ``user:password@`` part, for reprs and logs."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
