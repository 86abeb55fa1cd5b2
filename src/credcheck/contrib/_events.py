"""One record per decision: :class:`Event`, the user reference it carries, and where it goes.

An event says what was decided — the stage, the verdicts, the action the policy decided and the one enforced,
whom to notify, whether the credentials were a canary, and which corpus versions answered — about a user
reference: an opaque id the site supplies, or :func:`user_reference`, a keyed hash of the canonical username
with a site secret. It never holds a password, a hash of one, a hash prefix, a bucket, a count (a count
narrows a password down to a few candidates) or a username in clear.

Each event goes to the ``credcheck.policy`` logger (one structured record: the fields in the message and in
``record.credcheck``) and to every callback the site registered (a Django signal, Flask and FastAPI callbacks).
A callback that raises is logged (its type only) and the others still run: a notification that fails must not
turn a log-in into an error page.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from ..pairs._names import canon

__all__ = ["Event", "emit", "user_reference"]

logger = logging.getLogger("credcheck.policy")

#: What a user reference made by :func:`user_reference` starts with (an opaque id a site gives is its own).
REFERENCE_PREFIX: Final = "u-"


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One decision, as it is logged and handed to callbacks (no secret of any kind: see the module docs).

    ``action`` is what was enforced, ``decided`` what the policy said (they differ in audit-only mode, and
    during a grace, when a required change is a warning); ``checked`` is False when no lookup ran (a canary, a
    pending change); ``corpus`` gives, by tier, the version the answer came from (None: the source has none).
    ``time`` is the wall-clock time of the decision (seconds since the epoch).
    """

    stage: str
    verdict: str
    verdicts: tuple[str, ...]
    action: str
    decided: str
    notify: tuple[str, ...]
    user: str | None
    canary: bool
    audit_only: bool
    checked: bool
    corpus: Mapping[str, str | None]
    time: float

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data."""
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        data["verdicts"], data["notify"], data["corpus"] = list(self.verdicts), list(self.notify), dict(self.corpus)
        return data


def user_reference(username: str | bytes, secret: bytes | str) -> str:
    """A reference to a user that never shows the username: ``u-`` and 32 hex digits of an HMAC-SHA256, keyed
    from ``secret`` (the site's), of the canonical username (so ``Alice@Example.com`` and ``alice@example.com``
    are one user, as for the pair tier). Without the secret it cannot be reversed or matched to a username."""
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("a user reference needs a non-empty secret")
    derived = hmac.new(key, b"credcheck user reference", hashlib.sha256).digest()
    return REFERENCE_PREFIX + hmac.new(derived, canon(username), hashlib.sha256).hexdigest()[:32]


def emit(event: Event, callbacks: Iterable[Callable[[Event], object]]) -> None:
    """Log ``event`` on ``credcheck.policy`` (WARNING when something was found, else INFO) and hand it to each
    callback."""
    level = logging.INFO if event.verdict == "clean" else logging.WARNING
    logger.log(
        level,
        "credcheck decision: stage=%s verdict=%s action=%s decided=%s user=%s canary=%s audit_only=%s checked=%s",
        event.stage,
        event.verdict,
        event.action,
        event.decided,
        event.user,
        event.canary,
        event.audit_only,
        event.checked,
        extra={"credcheck": event.as_dict()},
    )
    for callback in callbacks:
        try:
            callback(event)
        except Exception as exc:  # a failed notification must not fail the log-in; never its message (may quote data)
            logger.error("credcheck: a decision callback raised %s; the decision stands", type(exc).__name__)
