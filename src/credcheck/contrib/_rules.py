"""What the Django, Flask and FastAPI integrations share above the checks: a check as the application configured
it (a :class:`Rule`), and the project-wide settings it is merged with when it runs (:func:`project_settings`).

A rule holds the settings it was given (checked when it is made, so a typo fails at start-up, not at a log-in)
and the messages that replace the default ones verbatim. When it checks, the integration merges them over the
project's settings (read then, never at import; the rule's win, key by key) and asks this process's shared
check for that configuration (:func:`credcheck.contrib._passwords.shared_check`,
:func:`credcheck.contrib._pairs.shared_pair_check`). Each integration only says where the project's settings
live and turns the result into its framework's error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from .._sources import source_label
from ._pairs import PairCompromiseCheck
from ._passwords import CompromiseCheck
from ._policy import PolicyCheck
from ._verdicts import CheckResult, PairCheckResult, message

__all__ = ["PairRule", "PasswordRule", "Rule", "configuration", "project_settings", "shown"]


class Rule:
    """A check as an integration was given it: ``options`` (its settings, checked), ``message`` (replaces the
    message for a leak) and ``unchecked_message`` (for credentials that could not be checked)."""

    kind: ClassVar[type[PolicyCheck[Any]]]

    def __init__(self, *, message: str | None = None, unchecked_message: str | None = None, **options: Any) -> None:
        self.kind.check_settings(options)
        self.options = options
        self.message = message
        self.unchecked_message = unchecked_message

    def replacement(self, result: CheckResult | PairCheckResult) -> str | None:
        """The message given to replace the default one for ``result``, if any."""
        if result.unchecked:
            return self.unchecked_message
        return self.message if result.compromised else None

    def refusal(
        self,
        result: CheckResult | PairCheckResult,
        gettext: Callable[[str], str] = str,
        ngettext: Callable[[str, str, int], str] | None = None,
    ) -> str | None:
        """The message to refuse with (None when the credentials may be used): a replacement given, else the
        default through the given translations."""
        replacement = self.replacement(result)
        return message(result, gettext, ngettext) if replacement is None else replacement

    def _details(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}{self._details()} {shown(self.options)!r}>"


class PasswordRule(Rule):
    """A password check's settings: those of :class:`~credcheck.contrib._passwords.CompromiseCheck` (``source``,
    ``min_count``, ``on_error``, ``fallback``, ``timeout``, and options of :func:`credcheck.open`), each left
    to the project's settings when ``None``."""

    kind = CompromiseCheck

    def __init__(
        self,
        source: str | os.PathLike[str] | None = None,
        min_count: int | None = None,
        on_error: str | None = None,
        fallback: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        *,
        message: str | None = None,
        unchecked_message: str | None = None,
        **options: Any,
    ) -> None:
        given = {
            "source": source,
            "min_count": min_count,
            "on_error": on_error,
            "fallback": fallback,
            "timeout": timeout,
        }
        super().__init__(message=message, unchecked_message=unchecked_message, **configuration(options, given))


class PairRule(Rule):
    """A pair check's settings: those of :class:`~credcheck.contrib._pairs.PairCompromiseCheck` (``source``,
    ``key``, ``on_error``, ``fallback``, ``fallback_key``, ``timeout``, and options of
    :func:`credcheck.open_pairs`)."""

    kind = PairCompromiseCheck


def project_settings(kind: type[PolicyCheck[Any]], where: str, configured: object) -> dict[str, Any]:
    """A project's settings dict for ``kind`` of check (``None``: none given), checked: a ``TypeError`` or
    ``ValueError`` names ``where``, the setting that holds it."""
    if configured is None:
        configured = {}
    if not isinstance(configured, Mapping):
        raise TypeError(f"{where} must be a dict, not {type(configured).__name__}")
    try:
        kind.check_settings(configured)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from exc
    return dict(configured)


def shown(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as a repr may show them: the source and the fallback by their labels (no URL credentials)."""
    return {name: source_label(value) if name in ("source", "fallback") else value for name, value in settings.items()}


def configuration(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge settings layers, later ones winning; a ``None`` value means "not set here" and is skipped."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged.update((str(name), value) for name, value in layer.items() if value is not None)
    return merged
