"""The policy at work (Guard), with no framework: the throttled log-in check on a controlled clock, a required
change and its grace, audit-only mode, canaries, events, each failure policy with the pair service stopped,
and the privacy audit of everything a decision leaves behind."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import credcheck
from credcheck.contrib import _policy
from credcheck.contrib._verdicts import UNCHECKED
from credcheck.contrib.policy import Action, Event, Guard, MemoryState, Policy, Stage, Verdict, user_reference
from credcheck.pairs._service import make_pair_service
from credcheck.server import make_app

from .helpers import KEY, secrets_in_frames, wsgi_in_thread
from .pairs_fixtures import build_store, write_key_file

SECRET = b"site secret for tests"
LEAKED = {"Summer2019": 5, "hunter2": 3, "letmein": 7}  # Summer2019 and hunter2 also leaked in pairs (LEAKED pairs)
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


@pytest.fixture(autouse=True)
def _close_shared_checks() -> Iterator[None]:
    yield
    _policy.close_shared()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("guard")
    dump = folder / "pwned.txt"
    dump.write_text("".join(f"{credcheck.sha1_hex(p)}:{n}\n" for p, n in LEAKED.items()))
    credcheck.build([dump], store=folder / "pwned.store")
    return {"store": folder / "pwned.store", "pairs": build_store(folder), "key": write_key_file(folder)}


class Counting:
    """The real range and pair app, counting lookups; ``versions`` (when set) replaces its /v1/corpus answer, and
    ``versioned=False`` makes it a range API without versions (404, as HIBP's)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.ranges = self.queries = self.corpus = 0
        self.versions: dict[str, Any] | None = {"ranges": {"sha1": "v1"}, "pairs": "v1"}
        self.versioned = True

    def __call__(self, environ: dict[str, Any], start: Any) -> Any:
        path = environ["PATH_INFO"]
        self.ranges += path.startswith("/range/")
        self.queries += path == "/v1/pairs/query"
        if path == "/v1/corpus":
            self.corpus += 1
            if not self.versioned:
                start("404 Not Found", [("Content-Length", "0")])
                return []
            if self.versions is not None:
                body = json.dumps(self.versions).encode()
                start("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start)


@pytest.fixture
def server(files: dict[str, Path]) -> Iterator[tuple[str, Counting]]:
    with make_pair_service(files["pairs"], KEY, rate=0) as pairs:
        counting = Counting(make_app(files["store"], pairs=pairs))
        with wsgi_in_thread(counting) as (url, _):
            yield url, counting


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def guard_for(url: str, clock: Clock, policy: Policy | None = None, **options: Any) -> Guard:
    options.setdefault("passwords", {"source": url})
    options.setdefault("pairs", {"source": url})
    return Guard(policy, secret=SECRET, clock=clock, **options)


class TestThrottle:
    USERS = ("ann", "ben", "cat", "dan", "eve")

    def test_one_check_per_corpus_version(self, server: tuple[str, Counting]) -> None:
        """Many log-ins over days: one lookup per user and tier while the corpus stays; a new version of each tier
        is exactly one more lookup per user."""
        url, counting = server
        clock = Clock()
        guard = guard_for(url, clock, Policy(recheck_interval=None))
        for _ in range(20):
            for user in self.USERS:
                decision = guard.login(user, "a long unleaked passphrase")
                assert decision.action is Action.ALLOW
            clock.now += 2 * HOUR
        assert (counting.ranges, counting.queries) == (5, 5)
        counting.versions = {"ranges": {"sha1": "v2"}, "pairs": "v2"}
        clock.now += MINUTE  # the version kept by the check is now a minute old: asked again
        for _ in range(20):
            for user in self.USERS:
                guard.login(user, "a long unleaked passphrase")
            clock.now += 2 * HOUR
        assert (counting.ranges, counting.queries) == (10, 10)

    def test_one_check_per_interval_without_versions(self, server: tuple[str, Counting]) -> None:
        """A range API without versions (HIBP's): a user is checked once per interval, however often they log in."""
        url, counting = server
        counting.versioned = False
        clock = Clock()
        guard = guard_for(url, clock, Policy(recheck_interval=HOUR))
        for _ in range(100):  # every 3 minutes for 5 hours
            for user in self.USERS[:2]:
                guard.login(user, "a long unleaked passphrase")
            clock.now += 3 * MINUTE
        assert (counting.ranges, counting.queries) == (2 * 5, 2 * 5)

    def test_the_version_is_asked_at_most_once_a_minute(self, server: tuple[str, Counting]) -> None:
        url, counting = server
        clock = Clock()
        guard = guard_for(url, clock)
        for n in range(30):
            guard.login(f"user{n}", "a long unleaked passphrase")
            clock.now += 1
        assert counting.corpus == 2  # once for each tier's check
        assert (counting.ranges, counting.queries) == (30, 30)

    def test_the_interval_bounds_a_versioned_source_too(self, server: tuple[str, Counting]) -> None:
        url, counting = server
        clock = Clock()
        guard = guard_for(url, clock, Policy(recheck_interval=DAY))
        guard.login("ann", "a long unleaked passphrase")
        clock.now += DAY - 1
        guard.login("ann", "a long unleaked passphrase")
        clock.now += 1
        guard.login("ann", "a long unleaked passphrase")
        assert counting.ranges == 2

    def test_async_log_ins_are_throttled_alike(self, server: tuple[str, Counting]) -> None:
        url, counting = server
        clock = Clock()
        guard = guard_for(url, clock, Policy(recheck_interval=None))

        async def log_ins() -> list[Action]:
            actions = []
            for _ in range(5):
                for user in ("ann", "ben"):
                    actions.append((await guard.alogin(user, "a long unleaked passphrase")).action)
                clock.now += HOUR
            return actions

        assert set(asyncio.run(log_ins())) == {Action.ALLOW}
        assert (counting.ranges, counting.queries) == (2, 2)

    def test_a_state_that_does_not_parse_means_a_check(self, server: tuple[str, Counting]) -> None:
        url, counting = server
        state = MemoryState()
        guard = guard_for(url, Clock(), state=state)
        guard.login("ann", "a long unleaked passphrase")
        state.save(guard.reference("ann") or "", {"checked_at": "yesterday", "versions": 7})
        guard.login("ann", "a long unleaked passphrase")
        assert counting.ranges == 2


class TestRequiredChange:
    def test_at_once(self, server: tuple[str, Counting]) -> None:
        """A leaked pair at log-in: the session is flagged until the password is changed; the next log-in after
        the change is checked again."""
        url, counting = server
        clock = Clock()
        guard = guard_for(url, clock)
        decision = guard.login("Alice@Example.com", "Summer2019")
        assert (decision.verdict, decision.action) == (Verdict.EXACT, Action.REQUIRE_CHANGE)
        assert decision.verdicts == (Verdict.EXACT, Verdict.PASSWORD)
        session: dict[str, Any] = {}
        guard.flag(session, decision)
        assert guard.must_change(session)
        again = guard.login("alice@example.com", "Summer2019")  # the same user (canonical username)
        assert again.action is Action.REQUIRE_CHANGE and not again.checked
        assert counting.ranges == 1
        clock.now += 1
        guard.password_changed("ALICE@example.com")
        assert not guard.must_change(session) and session == {}
        guard.login("alice@example.com", "a new unleaked passphrase")
        assert counting.ranges == 2

    def test_grace_of_log_ins(self, server: tuple[str, Counting]) -> None:
        """grace_logins=3: three log-ins warn (the one that found the leak included), the fourth forces it."""
        url, counting = server
        guard = guard_for(url, Clock(), Policy(login={"password": {"action": "require_change", "grace_logins": 3}}))
        actions = [guard.login("zoe", "letmein").action for _ in range(5)]
        assert actions == [Action.WARN] * 3 + [Action.REQUIRE_CHANGE] * 2
        assert counting.ranges == 1

    def test_concurrent_log_ins_spend_one_grace_log_in_each(self, server: tuple[str, Counting]) -> None:
        """Log-ins of one user at once, with a store slow to answer: the one grace log-in left warns once, every
        other log-in is made to change (no two read the same count and each spend it)."""
        url, _ = server

        class Slow(MemoryState):
            def load(self, user: str) -> Any:
                state = super().load(user)
                time.sleep(0.02)  # the window between load and save, widened
                return state

        policy = Policy(login={"password": {"action": "require_change", "grace_logins": 2}})
        guard = guard_for(url, Clock(), policy, state=Slow())
        assert guard.login("zoe", "letmein").action is Action.WARN  # found: one grace log-in left
        actions: list[Action] = []
        threads = [
            threading.Thread(target=lambda: actions.append(guard.login("zoe", "letmein").action)) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(actions) == sorted([Action.WARN] + [Action.REQUIRE_CHANGE] * 7)

    def test_grace_of_days(self, server: tuple[str, Counting]) -> None:
        url, _ = server
        clock = Clock()
        guard = guard_for(url, clock, Policy(login={"password": {"action": "require_change", "grace_days": 2}}))
        first = guard.login("zoe", "letmein")
        assert first.action is Action.WARN and first.change_by == clock.now + 2 * DAY
        assert first.message() is not None and "change it soon" in first.message()  # type: ignore[operator]
        clock.now += 2 * DAY - 1
        assert guard.login("zoe", "letmein").action is Action.WARN
        clock.now += 1
        assert guard.login("zoe", "letmein").action is Action.REQUIRE_CHANGE

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), "nan", "inf"])
    def test_a_stored_time_that_is_no_time_fails_closed(self, server: tuple[str, Counting], value: Any) -> None:
        """A store giving back a grace end or a change time that is not a finite time (NaN, infinity): the change
        is forced at once, not a warning for ever, and a flagged session is not released."""
        url, _ = server
        state, clock = MemoryState(), Clock()
        guard = guard_for(url, clock, state=state)
        session: dict[str, Any] = {}
        guard.flag(session, guard.login("Alice@Example.com", "Summer2019"))
        reference = guard.reference("alice@example.com") or ""
        state.save(reference, {"change_required": True, "reason": "exact", "change_by": value})
        assert guard.login("Alice@Example.com", "Summer2019").action is Action.REQUIRE_CHANGE
        state.save(reference, {"changed_at": value})
        assert guard.must_change(session)

    def test_a_flag_without_the_state_holds(self, server: tuple[str, Counting]) -> None:
        """A flagged session whose user state this process does not have (another worker's memory) stays flagged:
        a forced change fails closed."""
        url, _ = server
        guard = guard_for(url, Clock())
        session: dict[str, Any] = {}
        guard.flag(session, guard.login("Alice@Example.com", "Summer2019"))
        other = guard_for(url, Clock(), state=MemoryState())
        assert other.must_change(session) and session
        assert guard_for(url, Clock()).must_change({"credcheck_change": "forged"})

    def test_audit_only_decides_and_records_but_enforces_nothing(self, server: tuple[str, Counting]) -> None:
        url, counting = server
        events: list[Event] = []
        guard = guard_for(url, Clock(), Policy(audit_only=True), callbacks=[events.append])
        decision = guard.login("Alice@Example.com", "Summer2019")
        assert decision.action is Action.ALLOW and decision.reaction.action is Action.REQUIRE_CHANGE
        assert not decision.change_required and decision.notify == ()
        session: dict[str, Any] = {}
        guard.flag(session, decision)
        assert session == {}
        assert guard.check("signup", "carol", "hunter2").action is Action.ALLOW
        assert [(e.stage, e.verdict, e.action, e.decided, e.audit_only) for e in events] == [
            ("login", "exact", "allow", "require_change", True),
            ("signup", "password", "allow", "block", True),
        ]
        guard.login("carol", "a long unleaked passphrase")
        guard.login("carol", "a long unleaked passphrase")  # throttled: a clean check is recorded
        assert counting.ranges == 3

    def test_a_leak_found_in_audit_only_mode_is_enforced_once_it_ends(self, server: tuple[str, Counting]) -> None:
        """A log-in the audit found leaked is not recorded as checked: once audit-only mode is turned off, the
        user's next log-in is checked and the change is required (it is not waved through by the throttle until
        the corpus changes)."""
        url, counting = server
        state, clock = MemoryState(), Clock()
        audit = guard_for(url, clock, Policy(audit_only=True, recheck_interval=None), state=state)
        assert audit.login("Alice@Example.com", "Summer2019").action is Action.ALLOW
        assert audit.login("Alice@Example.com", "Summer2019").verdict is Verdict.EXACT  # checked again
        clock.now += HOUR
        enforcing = guard_for(url, clock, Policy(recheck_interval=None), state=state)
        decision = enforcing.login("Alice@Example.com", "Summer2019")
        assert (decision.verdict, decision.action) == (Verdict.EXACT, Action.REQUIRE_CHANGE)
        assert counting.ranges == 3


class TestDecisions:
    def test_signup_blocks_with_the_count(self, server: tuple[str, Counting]) -> None:
        url, _ = server
        decision = guard_for(url, Clock()).check(Stage.SIGNUP, "carol", "letmein")
        assert decision.blocked and decision.count == 7
        assert decision.message() == "This password has appeared in a data breach 7 times."

    def test_a_threshold_per_stage(self, server: tuple[str, Counting]) -> None:
        url, _ = server
        guard = guard_for(url, Clock(), Policy(thresholds={"login": 5}))
        assert guard.check("login", None, "hunter2").verdict is Verdict.CLEAN  # seen 3 times
        assert guard.check("login", None, "letmein").verdict is Verdict.PASSWORD  # seen 7 times
        assert guard.check("signup", None, "hunter2").blocked

    def test_the_strongest_reaction_wins_and_notifications_join(self, server: tuple[str, Counting]) -> None:
        url, _ = server
        policy = Policy(login={"exact": ["warn", "notify_user"], "password": ["require_change", "notify_admin"]})
        decision = guard_for(url, Clock(), policy).check("login", "Alice@Example.com", "Summer2019")
        assert (decision.verdict, decision.action) == (Verdict.PASSWORD, Action.REQUIRE_CHANGE)
        assert decision.notify == ("admin", "user")

    @pytest.mark.parametrize(
        ("username", "password", "header"),
        [
            ("Alice@Example.com", "Summer2019", "1"),
            ("alice@example.com", "summer2019", "3"),
            ("carol", "letmein", "4"),
            ("bob", "a long unleaked passphrase", "2"),
            ("carol", "a long unleaked passphrase", None),
        ],
    )
    def test_exposed_credential_check_values(
        self, server: tuple[str, Counting], username: str, password: str, header: str | None
    ) -> None:
        """Cloudflare's values: 1 the pair, 2 the username, 3 a similar pair, 4 the password."""
        url, _ = server
        assert guard_for(url, Clock()).check("login", username, password).exposed_credential_check == header

    def test_a_password_only_guard_needs_no_username(self, server: tuple[str, Counting]) -> None:
        url, counting = server
        guard = Guard(passwords={"source": url}, secret=SECRET)
        assert guard.check("signup", None, "letmein").blocked and counting.queries == 0

    def test_a_site_reference_replaces_the_keyed_hash(self, server: tuple[str, Counting]) -> None:
        url, _ = server
        events: list[Event] = []
        guard = Guard(passwords={"source": url}, callbacks=[events.append])
        guard.login("ann", "a long unleaked passphrase", user="42")
        assert events[0].user == "42"
        with pytest.raises(ValueError, match="user= reference"):
            guard.login("ann", "a long unleaked passphrase")

    @pytest.mark.parametrize(
        ("options", "error"),
        [
            ({}, "a password check"),
            ({"passwords": {"source": "x", "on_eror": "allow"}}, None),
            ({"passwords": {"on_error": "maybe"}}, "on_error"),
            ({"pairs": {"on_error": "allow"}}, "needs a 'source'"),
            ({"passwords": {}, "secret": b""}, "secret"),
        ],
    )
    def test_bad_settings_are_refused_when_made(self, options: dict[str, Any], error: str | None) -> None:
        options = {"secret": SECRET, **options}
        if error is None:  # an unknown option is for credcheck.open, found when the source is opened
            Guard(**options)
            return
        with pytest.raises(ValueError, match=error):
            Guard(**options)


class TestCanaries:
    def test_decided_before_any_lookup(self, server: tuple[str, Counting]) -> None:
        """Canary credentials are leaked for every source, with no request sent: the path is tested in production."""
        url, counting = server
        events: list[Event] = []
        canaries = [{"username": "canary@example.com", "password": "canary-pass-1"}, "canary-pass-2"]
        guard = guard_for(url, Clock(), Policy(canaries=canaries), callbacks=[events.append])
        login = guard.login("Canary@Example.com", "canary-pass-1")
        assert (login.verdict, login.action, login.canary) == (Verdict.EXACT, Action.REQUIRE_CHANGE, True)
        assert login.exposed_credential_check == "1"
        signup = guard.check("signup", "anyone", "canary-pass-2")
        assert signup.blocked and signup.verdict is Verdict.PASSWORD and signup.exposed_credential_check == "4"
        assert (counting.ranges, counting.queries, counting.corpus) == (0, 0, 0)
        assert [event.canary for event in events] == [True, True]

    def test_with_every_source_down(self, tmp_path: Path) -> None:
        """A canary needs no source at all: decided with the services unreachable."""
        with wsgi_in_thread(lambda env, start: []) as (url, _):
            pass  # stopped: nothing listens there any more
        guard = guard_for(url, Clock(), Policy(canaries=["canary-pass"]))
        assert guard.login("anyone", "canary-pass").change_required


@pytest.fixture
def stopped() -> str:
    """The URL of a pair service that was stopped: nothing answers there."""
    with wsgi_in_thread(lambda env, start: []) as (url, _):
        return url


class TestPairServiceStopped:
    """Each failure policy at log-in, the pair service stopped (the password tier still answers)."""

    def pairs(self, stopped: str, **options: Any) -> dict[str, Any]:
        return {"source": stopped, "timeout": 2, "retries": 0, **options}

    def test_reject_refuses_the_log_in_and_checks_again_next_time(
        self, server: tuple[str, Counting], stopped: str
    ) -> None:
        url, counting = server
        guard = guard_for(url, Clock(), pairs=self.pairs(stopped, on_error="reject"))
        decision = guard.login("carol", "a long unleaked passphrase")
        assert (decision.verdict, decision.action) == (Verdict.UNCHECKED, Action.BLOCK)
        assert decision.message() == UNCHECKED
        guard.login("carol", "a long unleaked passphrase")
        assert counting.ranges == 2  # nothing recorded as checked: asked again

    def test_allow_lets_it_through_unchecked_and_checks_again_next_time(
        self, server: tuple[str, Counting], stopped: str
    ) -> None:
        url, counting = server
        guard = guard_for(url, Clock(), pairs=self.pairs(stopped, on_error="allow"))
        decision = guard.login("carol", "a long unleaked passphrase")
        assert (decision.verdict, decision.action) == (Verdict.UNCHECKED, Action.ALLOW)
        guard.login("carol", "a long unleaked passphrase")
        assert counting.ranges == 2

    def test_fallback_answers_and_the_source_is_asked_again_once_back(
        self, server: tuple[str, Counting], stopped: str, files: dict[str, Path]
    ) -> None:
        url, counting = server
        pairs = self.pairs(stopped, on_error="fallback", fallback=str(files["pairs"]), fallback_key=str(files["key"]))
        guard = guard_for(url, Clock(), pairs=pairs)
        leaked = guard.login("Alice@Example.com", "Summer2019")
        assert (leaked.verdict, leaked.action) == (Verdict.EXACT, Action.REQUIRE_CHANGE)
        clean = guard.login("carol", "a long unleaked passphrase")
        assert clean.action is Action.ALLOW and clean.pair is not None and clean.pair.checked_by == "fallback"
        guard.login("carol", "a long unleaked passphrase")
        assert counting.ranges == 3  # the fallback's answer is not a check against the source's corpus

    def test_the_policy_may_let_log_ins_through_whatever_the_check_says(
        self, server: tuple[str, Counting], stopped: str
    ) -> None:
        url, _ = server
        guard = guard_for(url, Clock(), Policy(login={"unchecked": "allow"}), pairs=self.pairs(stopped))
        assert guard.login("carol", "a long unleaked passphrase").action is Action.ALLOW


class TestEvents:
    def test_one_event_per_decision_none_for_a_throttled_log_in(
        self, server: tuple[str, Counting], caplog: pytest.LogCaptureFixture
    ) -> None:
        url, _ = server
        events: list[Event] = []
        guard = guard_for(url, Clock(), callbacks=[events.append])
        with caplog.at_level(logging.INFO, logger="credcheck.policy"):
            guard.login("ann", "a long unleaked passphrase")
            guard.login("ann", "a long unleaked passphrase")
            guard.check("signup", "carol", "letmein")
        assert [(e.stage, e.verdict, e.action, e.checked) for e in events] == [
            ("login", "clean", "allow", True),
            ("signup", "password", "block", True),
        ]
        records = [r for r in caplog.records if r.name == "credcheck.policy"]
        assert [r.levelno for r in records] == [logging.INFO, logging.WARNING]
        assert records[1].credcheck == events[1].as_dict()  # type: ignore[attr-defined]
        assert events[0].user == user_reference("ann", SECRET) and events[0].corpus == {"password": "v1", "pair": "v1"}

    def test_a_failing_callback_does_not_fail_the_decision(
        self, server: tuple[str, Counting], caplog: pytest.LogCaptureFixture
    ) -> None:
        url, _ = server
        seen: list[Event] = []

        def broken(event: Event) -> None:
            raise RuntimeError("mail server down: could not send to alice@example.com")

        guard = guard_for(url, Clock(), callbacks=[broken, seen.append])
        assert guard.check("signup", "carol", "letmein").blocked and len(seen) == 1
        assert "RuntimeError" in caplog.text and "alice@example.com" not in caplog.text


class TestPrivacy:
    """No password, hash, hash prefix, bucket or clear username in any event, log record, state or session."""

    def secrets(self, username: str, password: str) -> list[str]:
        sha1 = credcheck.sha1_hex(password)
        return [password, sha1, sha1.lower(), sha1[5:], sha1[5:].lower(), username, username.lower()]

    def test_everything_a_decision_leaves(self, server: tuple[str, Counting], caplog: pytest.LogCaptureFixture) -> None:
        url, _ = server
        events: list[Event] = []
        state = MemoryState()
        canary = {"username": "Canary.User@example.com", "password": "Canary-Secret-9"}
        guard = guard_for(url, Clock(), Policy(canaries=[canary]), state=state, callbacks=[events.append])
        sessions: list[dict[str, Any]] = []
        tried = [
            ("Alice@Example.com", "Summer2019"),
            ("Dave.Longname", "letmein"),
            ("Canary.User@example.com", "Canary-Secret-9"),
        ]
        with caplog.at_level(logging.DEBUG):
            for username, password in tried:
                for decision in (guard.login(username, password), guard.check("signup", username, password)):
                    session: dict[str, Any] = {}
                    guard.flag(session, decision)
                    sessions.append(session)
                    assert password not in repr(decision) and username not in repr(decision)
        left = json.dumps(
            {
                "events": [event.as_dict() for event in events],
                "state": {user: state.load(user) for user in state._states},
                "sessions": sessions,
                "log": [(r.getMessage(), getattr(r, "credcheck", None)) for r in caplog.records],
            }
        )
        assert events and sessions
        for username, password in tried:
            for secret in self.secrets(username, password):
                assert secret not in left, f"{secret!r} is in what a decision leaves"
        # no count either: it narrows a password down to a few candidates
        assert all("count" not in event.as_dict() for event in events)

    def test_an_error_keeps_no_credential(self, server: tuple[str, Counting]) -> None:
        url, _ = server
        guard = guard_for(url, Clock())
        with pytest.raises(ValueError) as caught:
            guard.login("\ud800bad-username", "Summer2019-secret")
        assert secrets_in_frames(caught.value, ["Summer2019-secret", "bad-username"]) == []
