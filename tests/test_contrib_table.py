"""The policy as a table: stages x verdicts -> reactions, its defaults (NIST SP 800-63B), its validation, canaries."""

from __future__ import annotations

from typing import Any

import pytest

from credcheck.contrib.policy import DEFAULTS, Action, Canary, Policy, Reaction, Stage, Verdict


class TestDefaults:
    @pytest.mark.parametrize("stage", [Stage.SIGNUP, Stage.CHANGE, Stage.RESET])
    @pytest.mark.parametrize("verdict", [Verdict.PASSWORD, Verdict.EXACT, Verdict.SIMILAR])
    def test_a_compromised_password_is_blocked_where_it_is_chosen(self, stage: Stage, verdict: Verdict) -> None:
        """NIST SP 800-63B 5.1.1.2: a known-compromised secret is refused when it is set or changed."""
        assert Policy().reaction(stage, verdict).action is Action.BLOCK

    @pytest.mark.parametrize("verdict", [Verdict.PASSWORD, Verdict.EXACT, Verdict.SIMILAR])
    def test_at_log_in_a_change_is_required_at_once(self, verdict: Verdict) -> None:
        reaction = Policy().reaction(Stage.LOGIN, verdict)
        assert reaction.action is Action.REQUIRE_CHANGE and not reaction.grace

    @pytest.mark.parametrize("stage", list(Stage))
    def test_a_leaked_username_alone_and_nothing_found_are_allowed(self, stage: Stage) -> None:
        assert Policy().reaction(stage, Verdict.USERNAME).action is Action.ALLOW
        assert Policy().reaction(stage, Verdict.CLEAN).action is Action.ALLOW

    @pytest.mark.parametrize("stage", list(Stage))
    def test_unchecked_follows_the_failure_policy(self, stage: Stage) -> None:
        """Unless the table says otherwise: refused by the check -> block; let through by it -> allow."""
        assert Policy().reaction(stage, Verdict.UNCHECKED, refused=True).action is Action.BLOCK
        assert Policy().reaction(stage, Verdict.UNCHECKED, refused=False).action is Action.ALLOW

    def test_an_explicit_unchecked_reaction_wins(self) -> None:
        policy = Policy(login={"unchecked": "allow"})
        assert policy.reaction(Stage.LOGIN, Verdict.UNCHECKED, refused=True).action is Action.ALLOW

    def test_the_defaults_table_is_read_only(self) -> None:
        with pytest.raises(TypeError):
            DEFAULTS[Stage.LOGIN][Verdict.EXACT] = Reaction()  # type: ignore[index]


class TestDeclaring:
    def test_a_stage_table_is_laid_over_the_defaults(self) -> None:
        policy = Policy(login={"exact": ["require_change", "notify_admin", "notify_user"]})
        exact = policy.reaction(Stage.LOGIN, Verdict.EXACT)
        assert exact.action is Action.REQUIRE_CHANGE and exact.notify == {"user", "admin"}
        assert policy.reaction(Stage.LOGIN, Verdict.PASSWORD) == DEFAULTS[Stage.LOGIN][Verdict.PASSWORD]

    @pytest.mark.parametrize(
        ("spec", "expected"),
        [
            ("warn", Reaction(Action.WARN)),
            (["allow", "notify_admin"], Reaction(Action.ALLOW, notify=frozenset({"admin"}))),
            ({"action": "require_change", "grace_logins": 3}, Reaction(Action.REQUIRE_CHANGE, grace_logins=3)),
            (
                {"action": "require_change", "grace_days": 7, "notify": "user"},
                Reaction(Action.REQUIRE_CHANGE, 0, 7.0, frozenset({"user"})),
            ),
            (Reaction(Action.BLOCK), Reaction(Action.BLOCK)),
        ],
    )
    def test_reaction_spellings(self, spec: Any, expected: Reaction) -> None:
        assert Reaction.of(spec) == expected

    def test_a_policy_is_frozen_and_compares_by_value(self) -> None:
        one, two = Policy(login={"password": "warn"}), Policy(login={"password": "warn"})
        assert one == two and hash(one) == hash(two)
        with pytest.raises(AttributeError):
            one.audit_only = True  # type: ignore[misc]
        with pytest.raises(TypeError):
            one.rules[Stage.LOGIN] = {}  # type: ignore[index]

    def test_from_settings(self) -> None:
        policy = Policy.from_settings({"audit_only": True, "thresholds": {"login": 10}, "recheck_interval": None})
        assert policy.audit_only and policy.threshold(Stage.LOGIN) == 10 and policy.threshold(Stage.SIGNUP) == 1
        assert policy.recheck_interval is None


class TestValidation:
    """Every mistake is a clear error when the policy is made, naming what is known."""

    @pytest.mark.parametrize(
        ("settings", "error", "words"),
        [
            ({"logn": {}}, ValueError, "unknown policy setting 'logn'"),
            ({"login": {"pasword": "block"}}, ValueError, "unknown verdict 'pasword'"),
            ({"login": {"password": "bock"}}, ValueError, "unknown action 'bock'"),
            ({"login": {"password": ["block", "warn"]}}, ValueError, "one action per reaction"),
            ({"login": {"password": {"action": "block", "grace_logins": 2}}}, ValueError, "grace applies to"),
            ({"login": {"password": {"action": "require_change", "grace_logins": -1}}}, ValueError, "grace_logins"),
            ({"login": {"password": {"action": "require_change", "grace_days": float("nan")}}}, ValueError, "days"),
            ({"login": {"password": {"acton": "block"}}}, ValueError, "unknown reaction setting 'acton'"),
            ({"login": {"password": {"notify": ["boss"]}}}, ValueError, "unknown notification 'boss'"),
            ({"login": {"exact": ["notify_admin"]}}, ValueError, "a reaction names its action"),
            ({"login": {"exact": {"notify": ["admin"]}}}, ValueError, "a reaction names its action"),
            ({"login": {"exact": []}}, ValueError, "a reaction names its action"),
            ({"signup": {"password": "require_change"}}, ValueError, "'require_change' is a log-in reaction"),
            ({"login": {"password": 3}}, TypeError, "a reaction is"),
            ({"login": ["block"]}, TypeError, "must be a dict"),
            ({"thresholds": {"logon": 3}}, ValueError, "unknown stage 'logon'"),
            ({"thresholds": {"login": 0}}, ValueError, "whole number from 1"),
            ({"recheck_interval": 0}, ValueError, "positive"),
            ({"recheck_interval": True}, TypeError, "recheck_interval"),
            ({"audit_only": "yes"}, TypeError, "audit_only"),
            ({"canaries": [{"password": ""}]}, ValueError, "a canary needs a password"),
            ({"canaries": [{"password": "x", "user": "y"}]}, ValueError, "unknown canary setting 'user'"),
        ],
    )
    def test_refused(self, settings: dict[str, Any], error: type[Exception], words: str) -> None:
        with pytest.raises(error, match=words):
            Policy.from_settings(settings)

    def test_the_error_lists_the_known_names(self) -> None:
        with pytest.raises(ValueError) as caught:
            Policy(login={"password": "bock"})
        assert all(name in str(caught.value) for name in ("'allow'", "'warn'", "'require_change'", "'block'"))


class TestCanaries:
    def test_a_pair_canary_is_an_exact_pair_and_a_leaked_password(self) -> None:
        policy = Policy(canaries=[{"username": "Canary@Example.com", "password": "canary-pass"}])
        assert policy.canary(" canary@example.COM", "canary-pass") == (Verdict.EXACT, Verdict.PASSWORD)
        assert policy.canary("someone", "canary-pass") == ()
        assert policy.canary("canary@example.com", "Canary-pass") == ()

    def test_a_password_canary_matches_any_username(self) -> None:
        policy = Policy(canaries=["test-password"])
        assert policy.canary("anyone", "test-password") == (Verdict.PASSWORD,)
        assert policy.canary(None, "test-password") == (Verdict.PASSWORD,)

    def test_a_canary_never_shows_its_password(self) -> None:
        policy = Policy(canaries=[Canary("s3cret-canary", "canary@example.com"), Canary("other-s3cret")])
        assert "s3cret" not in repr(policy) and "s3cret" not in str(policy.canaries)
