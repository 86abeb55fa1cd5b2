"""The policy at work: :class:`Guard` takes credentials at a stage and returns a :class:`Decision`.

One decision, every framework: the Django, Flask and FastAPI integrations and the WSGI/ASGI middleware all call
a guard and only turn its decision into their own response. A guard:

1. compares the credentials with the policy's canaries first (a canary is decided with no lookup at all);
2. at log-in (:meth:`Guard.login`), reads the user's state: a required change still pending is applied (its
   grace counted down) without a lookup; otherwise the log-in is checked only when it is due
   (``credcheck.contrib._state.due``: a tier's corpus changed since the user's last check, or the interval
   passed) — never on every log-in;
3. asks the checks (the password tier, and the pair tier when there is a username), each under its failure
   policy (``credcheck.contrib._policy``), and reads their results as verdicts;
4. takes the strongest reaction the policy has for them, enforces it (nothing in audit-only mode; a warning
   while a required change has grace), keeps the user's new state, and emits the event.

The steps are one generator (:meth:`Guard._flow`) that asks for the corpus versions and for the checks and is
sent their answers; :meth:`Guard.check` drives it with sync checks, :meth:`Guard.acheck` with async ones, so
the decision is written once. The flow never holds the password: the drivers do, for the calls that need it.

A forced change is kept in the session by the integration (:meth:`Guard.flag`) and tested on each request of a
flagged session by :meth:`Guard.must_change`, the one function the Django middleware, the Flask
``before_request`` and the FastAPI dependency share: the flag holds until the user's state says the password
was changed after it was set (:meth:`Guard.password_changed`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any, Final, Literal

from .._frames import async_entry_point, entry_point
from ._events import Event, emit, user_reference
from ._pairs import PairCompromiseCheck, shared_pair_check
from ._passwords import CompromiseCheck, shared_check
from ._state import MemoryState, StateStore, UserState, due
from ._table import Action, Policy, Reaction, Stage, stage_of
from ._verdicts import (
    CHANGE_REQUIRED,
    CHANGE_SOON,
    PAIR_COMPROMISED,
    REFUSED,
    UNCHECKED,
    USERNAME_LEAKED,
    CheckResult,
    PairCheckResult,
    Verdict,
    message,
    verdicts_of,
)

__all__ = ["EXPOSED_CREDENTIAL_CHECK", "SESSION_FLAG", "Decision", "Guard"]

#: The session key a forced change is kept under (the user's reference and when it was set; nothing else).
SESSION_FLAG: Final = "credcheck_change"
#: The request header the middleware sets, in the style of Cloudflare's leaked-credentials managed transform.
EXPOSED_CREDENTIAL_CHECK: Final = "Exposed-Credential-Check"
#: Its values, as Cloudflare documents them: 1 the username and password leaked together, 2 the username, 3 a
#: similar password with the username, 4 the password. One value a request, the most specific found.
_EXPOSED: Final = {Verdict.EXACT: "1", Verdict.SIMILAR: "3", Verdict.PASSWORD: "4", Verdict.USERNAME: "2"}
_DAY: Final = 86400.0

Tier = Literal["password", "pair"]
_Ask = Literal["versions", "check"]
_Answers = tuple[CheckResult | None, PairCheckResult | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What a guard decided for one set of credentials (no credential, hash or username in it).

    ``verdict`` is the verdict behind the action (the most specific of ``verdicts`` for the strongest
    reaction); ``reaction`` what the policy says for it; ``action`` what is enforced now (ALLOW in audit-only
    mode; WARN while a required change has grace left; the reaction's otherwise). ``checked``: a lookup ran
    (False for a canary, a pending change, or a log-in the throttle let through unchecked). ``user``: the user
    reference. ``count``: how often the password was seen, for the user's message only (never in an event).
    ``logins_left`` and ``change_by`` (wall-clock seconds) say what is left of a grace.
    """

    stage: Stage
    verdict: Verdict
    verdicts: tuple[Verdict, ...]
    reaction: Reaction
    action: Action
    user: str | None
    checked: bool
    canary: bool = False
    audit_only: bool = False
    count: int | None = dataclasses.field(default=None, repr=False)
    logins_left: int | None = None
    change_by: float | None = None
    corpus: Mapping[str, str | None] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    time: float = 0.0
    password: CheckResult | None = dataclasses.field(default=None, repr=False, compare=False)
    pair: PairCheckResult | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def blocked(self) -> bool:
        """The credentials are refused (a sign-up or change refused, a log-in refused)."""
        return self.action is Action.BLOCK

    @property
    def change_required(self) -> bool:
        """The session must reach only the password-change view until the user changes the password."""
        return self.action is Action.REQUIRE_CHANGE

    @property
    def notify(self) -> tuple[str, ...]:
        """Whom the site should notify (empty in audit-only mode, which enforces nothing)."""
        return () if self.audit_only else tuple(sorted(self.reaction.notify))

    @property
    def exposed_credential_check(self) -> str | None:
        """The ``Exposed-Credential-Check`` value of these verdicts (Cloudflare's: 1 pair, 2 username, 3 similar
        pair, 4 password), or None when nothing leaked or nothing could be checked."""
        for verdict in self.verdicts:
            if verdict in _EXPOSED:
                return _EXPOSED[verdict]
        return None

    def message(
        self, gettext: Callable[[str], str] = str, ngettext: Callable[[str, str, int], str] | None = None
    ) -> str | None:
        """What to tell the user (None when nothing), through the given translations: why the credentials are
        refused (with the count a source keeps), that the password must be changed now, or soon."""
        if self.action is Action.REQUIRE_CHANGE:
            return gettext(CHANGE_REQUIRED)
        if self.action is Action.WARN:
            return gettext(CHANGE_SOON)
        if self.action is not Action.BLOCK:
            return None
        if self.verdict is Verdict.UNCHECKED:
            return gettext(UNCHECKED)
        if self.verdict in (Verdict.EXACT, Verdict.SIMILAR):
            return gettext(PAIR_COMPROMISED)
        if self.verdict is Verdict.PASSWORD:
            return message(CheckResult(True, self.count, "source"), gettext, ngettext)
        return gettext(USERNAME_LEAKED if self.verdict is Verdict.USERNAME else REFUSED)

    def event(self) -> Event:
        """The record of this decision (see :class:`~credcheck.contrib._events.Event`)."""
        return Event(
            stage=self.stage.value,
            verdict=self.verdict.value,
            verdicts=tuple(verdict.value for verdict in self.verdicts),
            action=self.action.value,
            decided=self.reaction.action.value,
            notify=self.notify,
            user=self.user,
            canary=self.canary,
            audit_only=self.audit_only,
            checked=self.checked,
            corpus=MappingProxyType(dict(self.corpus)),
            time=self.time,
        )


def _strongest(policy: Policy, stage: Stage, found: tuple[Verdict, ...], refused: bool) -> tuple[Verdict, Reaction]:
    """The verdict whose reaction is the strongest (the most specific among equals), with every reaction's
    notifications joined to it."""
    reactions = [(verdict, policy.reaction(stage, verdict, refused=refused)) for verdict in found]
    verdict, reaction = max(reactions, key=lambda pair: (pair[1].action.strength, -found.index(pair[0])))
    notify = frozenset().union(*(r.notify for _, r in reactions))
    return verdict, dataclasses.replace(reaction, notify=notify)


@dataclasses.dataclass(frozen=True, slots=True)
class _Lookup:
    """What a log-in's lookups answered: each tier's result, whether one could not be checked, the corpus versions
    to keep in the user's state (the tiers that answered from their source) and those the answers came from."""

    words: CheckResult | None = None
    pair: PairCheckResult | None = None
    refused: bool = False
    versions: Mapping[str, str | None] | None = None
    corpus: Mapping[str, str | None] | None = None


_NO_LOOKUP: Final = _Lookup()


class Guard:
    """The policy at work for one site (see the module docs).

    ``policy``: a :class:`~credcheck.contrib._table.Policy` (default: the NIST SP 800-63B defaults).
    ``passwords`` and ``pairs``: the settings of the password check and of the pair check (what
    ``CompromiseCheck`` and ``PairCompromiseCheck`` take: ``source``, ``on_error``, ``fallback``...; the check is
    this process's shared one for those settings), or the check itself; None leaves a tier out. ``state``: where
    users' states live (default: :class:`~credcheck.contrib._state.MemoryState`). User references are keyed
    hashes of the username with ``secret`` (the site's secret), unless the caller gives its own ``user=``
    reference (an opaque id) to each call. ``callbacks`` receive each event; ``clock`` gives the time in
    seconds (tests control it).
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        passwords: Mapping[str, Any] | CompromiseCheck | None = None,
        pairs: Mapping[str, Any] | PairCompromiseCheck | None = None,
        state: StateStore | None = None,
        secret: bytes | str | None = None,
        callbacks: Iterable[Callable[[Event], object]] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if policy is not None and not isinstance(policy, Policy):
            raise TypeError(f"policy must be a Policy, not {type(policy).__name__}")
        if passwords is None and pairs is None:
            raise ValueError("a guard needs a password check (passwords=), a pair check (pairs=) or both")
        if isinstance(passwords, Mapping):
            CompromiseCheck.check_settings(passwords)
            passwords = MappingProxyType(dict(passwords))
        elif passwords is not None and not isinstance(passwords, CompromiseCheck):
            raise TypeError(
                f"passwords must be a dict of settings or a CompromiseCheck, not {type(passwords).__name__}"
            )
        if isinstance(pairs, Mapping):
            PairCompromiseCheck.check_settings(pairs)
            if pairs.get("source") is None:
                raise ValueError("pairs= needs a 'source': a pair service URL or a pair store path")
            pairs = MappingProxyType(dict(pairs))
        elif pairs is not None and not isinstance(pairs, PairCompromiseCheck):
            raise TypeError(f"pairs must be a dict of settings or a PairCompromiseCheck, not {type(pairs).__name__}")
        if secret is not None and not secret:
            raise ValueError("secret must not be empty")
        self.policy = policy if policy is not None else Policy()
        self.passwords = passwords
        self.pairs = pairs
        self.state: StateStore = state if state is not None else MemoryState()
        self._secret = secret
        self.callbacks = list(callbacks)
        self.clock = clock
        self._locks = tuple(threading.Lock() for _ in range(64))

    def __repr__(self) -> str:
        tiers = ", ".join(tier for tier, given in (("passwords", self.passwords), ("pairs", self.pairs)) if given)
        return f"<Guard {tiers} audit_only={self.policy.audit_only} state={self.state!r}>"

    def reference(self, username: str | None, user: str | None = None) -> str | None:
        """The reference events and states use for a user: ``user`` when the site gives one, else a keyed hash
        of ``username`` (None without either)."""
        if user is not None:
            return str(user)
        if not username:
            return None
        if self._secret is None:
            raise ValueError("a guard without secret= needs the site's own user= reference for each call")
        return user_reference(username, self._secret)

    def flag(self, session: MutableMapping[str, Any], decision: Decision) -> None:
        """Keep a required change in ``session`` (when the decision requires one): from now on
        :meth:`must_change` holds for it until the password is changed."""
        if decision.change_required and decision.user is not None:
            session[SESSION_FLAG] = {"user": decision.user, "since": self.clock()}

    def must_change(self, session: Mapping[str, Any] | MutableMapping[str, Any]) -> bool:
        """Whether this session may reach only the password-change view (and log-out): it was flagged, and the
        user's state does not show a change of password since. A flag whose change was made is removed."""
        flag = session.get(SESSION_FLAG)
        if not flag:
            return False
        if not isinstance(flag, Mapping) or not isinstance(flag.get("user"), str):
            return True  # a flag this guard did not write: hold it rather than guess
        state = UserState.from_dict(self.state.load(flag["user"]))
        since = flag.get("since")
        changed = state.changed_at
        if changed is not None and isinstance(since, int | float) and changed >= since:
            if isinstance(session, MutableMapping):
                session.pop(SESSION_FLAG, None)
            return False
        return True

    def password_changed(self, username: str | None = None, *, user: str | None = None) -> None:
        """Record that the user changed their password (call it once the new one is saved): a required change is
        over, flagged sessions are released, and the next log-in is checked."""
        reference = self.reference(username, user)
        if reference is not None:
            self.state.save(reference, UserState(changed_at=self.clock()).as_dict())

    @entry_point
    def check(self, stage: Stage | str, username: str | None, password: str, *, user: str | None = None) -> Decision:
        """Decide for credentials at ``stage`` now, with a lookup (no throttle, no state): a sign-up, a change, a
        reset, or a log-in screened before the password is verified (the middleware's)."""
        return self._drive(self._flow(stage_of(stage), username, password, user, throttled=False), username, password)

    @async_entry_point
    async def acheck(
        self, stage: Stage | str, username: str | None, password: str, *, user: str | None = None
    ) -> Decision:
        """:meth:`check` from async code (services asked over httpx)."""
        flow = self._flow(stage_of(stage), username, password, user, throttled=False)
        return await self._adrive(flow, username, password)

    @entry_point
    def login(self, username: str, password: str, *, user: str | None = None) -> Decision:
        """Decide for a log-in whose password was verified: throttled (a lookup only when due) and remembered
        (the user's state: the versions checked against, a required change and its grace)."""
        return self._drive(self._flow(Stage.LOGIN, username, password, user, throttled=True), username, password)

    @async_entry_point
    async def alogin(self, username: str, password: str, *, user: str | None = None) -> Decision:
        """:meth:`login` from async code."""
        flow = self._flow(Stage.LOGIN, username, password, user, throttled=True)
        return await self._adrive(flow, username, password)

    def _checks(self, username: str | None) -> dict[Tier, CompromiseCheck | PairCompromiseCheck]:
        """The checks these credentials go to: the password tier, and the pair tier when there is a username."""
        checks: dict[Tier, CompromiseCheck | PairCompromiseCheck] = {}
        if self.passwords is not None:
            given = self.passwords
            checks["password"] = given if isinstance(given, CompromiseCheck) else shared_check(given)
        if self.pairs is not None and username:
            given_pairs = self.pairs
            checks["pair"] = (
                given_pairs if isinstance(given_pairs, PairCompromiseCheck) else shared_pair_check(given_pairs)
            )
        return checks

    def _drive(self, flow: Generator[_Ask, Any, Decision], username: str | None, password: str) -> Decision:
        checks = self._checks(username)
        words, pair = _lookups(checks, username)
        reply: Any = None  # the first send starts the flow
        try:
            while True:
                if flow.send(reply) == "versions":
                    reply = {tier: check.corpus_version(self.clock()) for tier, check in checks.items()}
                    continue
                reply = (
                    None if words is None else words.check(password),
                    None if pair is None or username is None else pair.check(username, password),
                )
        except StopIteration as done:
            decision: Decision = done.value
            return decision

    async def _adrive(self, flow: Generator[_Ask, Any, Decision], username: str | None, password: str) -> Decision:
        """:meth:`_drive`, asking the checks without blocking the event loop."""
        checks = self._checks(username)
        words, pair = _lookups(checks, username)
        reply: Any = None  # the first send starts the flow
        try:
            while True:
                if flow.send(reply) == "versions":
                    reply = {tier: await check.acorpus_version(self.clock()) for tier, check in checks.items()}
                    continue
                reply = (
                    None if words is None else await words.acheck(password),
                    None if pair is None or username is None else await pair.acheck(username, password),
                )
        except StopIteration as done:
            decision: Decision = done.value
            return decision

    def _flow(
        self, stage: Stage, username: str | None, password: str, user: str | None, *, throttled: bool
    ) -> Generator[_Ask, Any, Decision]:
        """The decision, asking for what it needs: ``"versions"`` (sent ``{tier: version}``) and ``"check"`` (sent
        the password result and the pair result). The password is read here only to match a canary, before the
        first step; the generator keeps no reference to it."""
        reference = self.reference(username, user)
        canary = self.policy.canary(username, password)
        del password, username  # the flow's frames must not hold them while it waits for the checks
        now = self.clock()
        state, pending = None, None
        if throttled and reference is not None:
            # A pending change's grace is read, spent and saved under this user's lock (no lookup runs inside it):
            # concurrent log-ins of one user in this process cannot each spend the same grace log-in. Across
            # processes it takes a store that does this atomically (see docs/INTEGRATIONS.md).
            with self._locks[hash(reference) % len(self._locks)]:
                state = UserState.from_dict(self.state.load(reference))
                if state.change_required and not canary:
                    pending = self._pending(reference, state, now)
        if canary:
            return self._decided(stage, reference, canary, now, state, canary=True)
        if pending is not None:
            emit(pending.event(), self.callbacks)
            return pending
        versions: dict[str, str | None] = yield "versions"
        if state is not None and not due(state, versions, now, self.policy.recheck_interval):
            return Decision(
                stage, Verdict.CLEAN, (Verdict.CLEAN,), Reaction(), Action.ALLOW, reference, False, time=now
            )
        answers: _Answers = yield "check"
        words, pair = answers
        found = verdicts_of(words, pair, self.policy.threshold(stage))
        refused = any(result is not None and result.unchecked for result in (words, pair))
        answered = {
            tier: versions.get(tier) for tier, result in (("password", words), ("pair", pair)) if result is not None
        }
        # A tier that did not answer (or answered from its fallback) is left out: the next log-in asks it again.
        kept = {
            tier: version for tier, version in answered.items() if _by_source(words if tier == "password" else pair)
        }
        lookup = _Lookup(words, pair, refused, versions=kept, corpus=answered)
        return self._decided(stage, reference, found, now, state, lookup=lookup)

    def _decided(
        self,
        stage: Stage,
        reference: str | None,
        found: tuple[Verdict, ...],
        now: float,
        state: UserState | None,
        *,
        canary: bool = False,
        lookup: _Lookup = _NO_LOOKUP,
    ) -> Decision:
        """Read the verdicts through the policy, enforce, keep the state (a throttled log-in), emit the event."""
        words, pair, refused, versions, corpus = (
            lookup.words,
            lookup.pair,
            lookup.refused,
            lookup.versions,
            lookup.corpus,
        )
        verdict, reaction = _strongest(self.policy, stage, found, refused)
        action, left, by = reaction.action, None, None
        audit = self.policy.audit_only
        if state is not None and reference is not None:
            new_state = state
            # In audit-only mode a check the policy would act on is not recorded: once the audit ends, that
            # user's next log-in is checked and enforced, not waved through by the throttle until the corpus
            # changes.
            if versions is not None and not (audit and reaction.action is not Action.ALLOW):
                complete = set(versions) == set(self._tiers_of(words, pair))
                new_state = dataclasses.replace(
                    new_state,
                    checked_at=now if complete else state.checked_at,
                    versions=MappingProxyType(dict(versions)),
                )
            if action is Action.REQUIRE_CHANGE and not audit:
                # the log-in that found the leak is the first of the grace's log-ins
                left = reaction.grace_logins - 1 if reaction.grace_logins else None
                by = now + reaction.grace_days * _DAY if reaction.grace_days else None
                new_state = dataclasses.replace(
                    new_state, change_required=True, reason=verdict.value, logins_left=left, change_by=by
                )
                if reaction.grace:
                    action = Action.WARN
            if new_state != state:
                self.state.save(reference, new_state.as_dict())
        if audit:
            action = Action.ALLOW
        decision = Decision(
            stage,
            verdict,
            found,
            reaction,
            action,
            reference,
            checked=not canary,
            canary=canary,
            audit_only=audit,
            count=None if words is None else words.count,
            logins_left=left,
            change_by=by,
            corpus=MappingProxyType(dict(corpus or {})),
            time=now,
            password=words,
            pair=pair,
        )
        emit(decision.event(), self.callbacks)
        return decision

    def _pending(self, reference: str | None, state: UserState, now: float) -> Decision:
        """A log-in of a user whose change is still required: warned while grace is left (one log-in spent), made
        to change it once it is spent; no lookup (the caller emits the event, outside the user's lock)."""
        try:
            verdict = Verdict(state.reason)
        except ValueError:
            verdict = Verdict.PASSWORD
        reaction = self.policy.reaction(Stage.LOGIN, verdict)
        left, by = state.logins_left, state.change_by
        spent = (left is None and by is None) or (left is not None and left <= 0) or (by is not None and now >= by)
        action = Action.REQUIRE_CHANGE
        if not spent:
            action = Action.WARN
            if left is not None:
                left -= 1
                assert reference is not None
                self.state.save(reference, dataclasses.replace(state, logins_left=left).as_dict())
        audit = self.policy.audit_only
        decision = Decision(
            Stage.LOGIN,
            verdict,
            (verdict,),
            dataclasses.replace(reaction, action=Action.REQUIRE_CHANGE)
            if reaction.action is not Action.REQUIRE_CHANGE
            else reaction,
            Action.ALLOW if audit else action,
            reference,
            checked=False,
            audit_only=audit,
            logins_left=left,
            change_by=by,
            time=now,
        )
        return decision

    @staticmethod
    def _tiers_of(words: CheckResult | None, pair: PairCheckResult | None) -> list[str]:
        return [tier for tier, result in (("password", words), ("pair", pair)) if result is not None]


def _by_source(result: CheckResult | PairCheckResult | None) -> bool:
    return result is not None and result.checked_by == "source"


def _lookups(
    checks: Mapping[Any, object], username: str | None
) -> tuple[CompromiseCheck | None, PairCompromiseCheck | None]:
    """The password check and the pair check a log-in asks, each None where it has none (no pair without a
    username)."""
    words, pair = checks.get("password"), checks.get("pair")
    return (
        words if isinstance(words, CompromiseCheck) else None,
        pair if isinstance(pair, PairCompromiseCheck) and username else None,
    )
