"""The local StorePairChecker: exact, similar, username-only and not-found answers from a pair store and its key."""

from __future__ import annotations

import hashlib
import threading
import traceback
from pathlib import Path
from typing import Any

import pytest

from credcheck import open_pairs
from credcheck.errors import ArtifactError, ClosedError, InputError
from credcheck.pairs.build import build_pairs
from credcheck.pairs.checker import (
    AsyncPairChecker,
    AsyncRemotePairChecker,
    PairChecker,
    PairExposure,
    PairStatus,
    RemotePairChecker,
    StorePairChecker,
)
from credcheck.pairs.store import PairStore

from .helpers import KEY, TINY, SerialExecutor, fixed_key, hold_in_thread, secrets_in_frames, write_combo


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pairs")
    combo = write_combo(folder / "c.txt", ["Alice@Example.com:Summer2019", "bob:hunter2", "bob:correct horse"])
    build_pairs(
        combo, folder / "p", KEY, stretch=TINY, variants=9, username_entries=True, executor=SerialExecutor()
    )  # fmt: skip
    return folder / "p"


@pytest.fixture
def checker(store: Path) -> StorePairChecker:
    opened = open_pairs(store, key=KEY)
    assert isinstance(opened, StorePairChecker)
    return opened


class TestAnswers:
    def test_exact(self, checker: StorePairChecker) -> None:
        """A leaked pair is EXACT and compromised."""
        answer = checker.check("Alice@Example.com", "Summer2019")
        assert answer.status is PairStatus.EXACT and answer.compromised and answer

    def test_canonical_username(self, checker: StorePairChecker) -> None:
        """The username is matched in canonical form (case, surrounding spaces, NFKC)."""
        assert checker.check("  ALICE@example.COM\t", "Summer2019").status is PairStatus.EXACT

    def test_password_not_normalised(self, checker: StorePairChecker) -> None:
        """The password is matched exactly: a trailing space is another password."""
        assert checker.check("alice@example.com", "Summer2019 ").status is not PairStatus.EXACT

    def test_similar(self, checker: StorePairChecker) -> None:
        """A variant of a leaked password is SIMILAR, and compromised."""
        answer = checker.check("alice@example.com", "summer2019")
        assert answer.status is PairStatus.SIMILAR and answer.compromised

    def test_username_only(self, checker: StorePairChecker) -> None:
        """A leaked username with an unrelated password is USERNAME, not compromised."""
        answer = checker.check("bob", "something else entirely")
        assert answer.status is PairStatus.USERNAME and not answer.compromised

    def test_not_found(self, checker: StorePairChecker) -> None:
        """An unknown username is NOT_FOUND."""
        assert checker.check("carol", "hunter2").status is PairStatus.NOT_FOUND

    def test_check_hash_twin(self, checker: StorePairChecker) -> None:
        """check_hash with the password's SHA-1 (either case) answers like check."""
        digest = hashlib.sha1(b"hunter2").hexdigest()
        assert checker.check_hash("bob", digest).status is PairStatus.EXACT
        assert checker.check_hash("bob", digest.upper()).status is PairStatus.EXACT

    def test_bytes_password(self, checker: StorePairChecker) -> None:
        """A password given as UTF-8 bytes answers like the string."""
        assert checker.check(b"bob", b"correct horse").status is PairStatus.EXACT

    def test_check_many_in_order(self, checker: StorePairChecker) -> None:
        """check_many answers in input order."""
        answers = checker.check_many([("carol", "x"), ("bob", "hunter2"), ("bob", "hunter")])
        assert [a.status for a in answers] == [PairStatus.NOT_FOUND, PairStatus.EXACT, PairStatus.SIMILAR]

    def test_without_username_entries(self, tmp_path: Path) -> None:
        """Without username entries, a known username with another password is NOT_FOUND."""
        build_pairs(
            write_combo(tmp_path / "c", ["bob:pw"]), tmp_path / "p", KEY, stretch=TINY, executor=SerialExecutor()
        )
        with StorePairChecker(tmp_path / "p", KEY) as checker:
            assert checker.check("bob", "other").status is PairStatus.NOT_FOUND


class TestRefusals:
    def test_other_key(self, store: Path) -> None:
        """A key other than the store's is an ArtifactError naming both key ids, never "not found"."""
        other = fixed_key(b"another key")
        with pytest.raises(ArtifactError, match=other.key_id.hex()):
            StorePairChecker(store, other)

    def test_bad_hex(self, checker: StorePairChecker) -> None:
        """A SHA-1 that is not 40 hex digits is a ValueError that does not quote it."""
        with pytest.raises(ValueError) as info:
            checker.check_hash("bob", "secretsecret")
        assert "secret" not in str(info.value)

    def test_empty_username(self, checker: StorePairChecker) -> None:
        """An empty username is an InputError."""
        with pytest.raises(InputError):
            checker.check("  ", "pw")

    def test_surrogate_password(self, checker: StorePairChecker) -> None:
        """A password with a lone surrogate is an InputError that does not quote it."""
        with pytest.raises(InputError) as info:
            checker.check("bob", "secret\ud800")
        assert "secret" not in str(info.value)


class TestReprs:
    def test_no_secret_in_reprs(self, checker: StorePairChecker) -> None:
        """Neither the checker's nor an answer's repr holds a username, a password or the secret key."""
        text = repr(checker) + repr(checker.check("bob", "hunter2")) + repr(checker.key_id)
        assert "bob" not in text and "hunter2" not in text and KEY.sk.hex() not in text

    def test_exposure_truth(self) -> None:
        """compromised (and truth) is true for EXACT and SIMILAR only."""
        assert [bool(PairExposure(s)) for s in PairStatus] == [False, True, True, False]


class TestFrames:
    @pytest.mark.parametrize(("username", "password"), [("  ", "secretpassword"), ("secretuser", "secret\ud800")])
    def test_no_secret_in_traceback_frames(self, checker: StorePairChecker, username: str, password: str) -> None:
        """An error from check carries no frame whose locals hold the username or password."""
        with pytest.raises(InputError) as info:
            checker.check(username, password)
        frames = [frame for frame, _ in traceback.walk_tb(info.value.__traceback__)][1:]  # [0] is this test
        assert all("secret" not in repr(frame.f_locals) for frame in frames)

    def test_no_key_in_frames_on_mismatch(self, store: Path) -> None:
        """The key-mismatch error carries no frame holding the secret key."""
        other = fixed_key(b"another key")
        with pytest.raises(ArtifactError) as info:
            StorePairChecker(store, other)
        frames = [frame for frame, _ in traceback.walk_tb(info.value.__traceback__)][1:]
        assert all(other.sk not in [getattr(v, "sk", None) for v in frame.f_locals.values()] for frame in frames)


class TestClose:
    def test_close_waits_for_the_check_in_flight(self, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """close() during a check refuses new checks at once, waits for the one in flight (which answers right,
        from the store still open), then unmaps; a check after it is a ClosedError with no secret in its frames."""
        checker = StorePairChecker(store, KEY)
        entered, release, _ = hold_in_thread(monkeypatch, PairStore, "bucket")
        answers: list[object] = []
        check = threading.Thread(target=lambda: answers.append(checker.check("bob", "hunter2")))
        check.start()
        entered.wait(10)
        closer = threading.Thread(target=checker.close)
        closer.start()
        while not checker._gate.closed:
            closer.join(0.001)
        with pytest.raises(ClosedError) as refused:
            checker.check("bob", "hunter2")
        assert closer.is_alive()  # still waiting for the check in flight
        release.set()
        check.join()
        closer.join()
        assert answers == [PairExposure(PairStatus.EXACT)]
        with pytest.raises(ClosedError) as after:
            checker.check_many([("bob", "hunter2")])
        checker.close()  # again: nothing to do
        for error in (refused.value, after.value):
            assert secrets_in_frames(error, ["hunter2", "bob", b"bob", hashlib.sha1(b"hunter2").digest()]) == []


class TestContract:
    CONTRACT = ("check", "check_hash", "check_many", "check_canonical", "close", "__enter__", "__exit__")
    ASYNC_CONTRACT = ("check", "check_hash", "check_many", "check_canonical", "aclose", "__aenter__", "__aexit__")

    @pytest.mark.parametrize("kind", [StorePairChecker, RemotePairChecker])
    def test_sync_checkers_implement_only_the_lookup(self, kind: type[PairChecker]) -> None:
        """Every sync pair checker is a PairChecker whose checks, close and context manager are the contract's."""
        assert issubclass(kind, PairChecker)
        assert all(getattr(kind, name) is getattr(PairChecker, name) for name in self.CONTRACT)

    def test_async_checker_implements_only_the_lookup(self) -> None:
        """The async pair checker is an AsyncPairChecker whose checks and aclose are the contract's."""
        assert issubclass(AsyncRemotePairChecker, AsyncPairChecker)
        assert all(
            getattr(AsyncRemotePairChecker, name) is getattr(AsyncPairChecker, name) for name in self.ASYNC_CONTRACT
        )

    def test_remote_is_not_the_local_one(self) -> None:
        """The remote checker is no local checker with its store left out: it is built, gate and all, as itself."""
        assert not issubclass(RemotePairChecker, StorePairChecker)

    def test_remote_closes_through_the_gate(self) -> None:
        """A remote checker's close releases its client once, and a check after it is a ClosedError."""
        closed: list[bool] = []

        class Client:
            def config(self) -> Any:
                raise AssertionError("not asked")

            def query(self, canonical: bytes, sha1: bytes) -> None:
                return None

            def close(self) -> None:
                closed.append(True)

        checker = RemotePairChecker(Client())
        assert checker.check("bob", "hunter2") == PairExposure(PairStatus.NOT_FOUND)
        checker.close()
        checker.close()
        assert closed == [True]
        with pytest.raises(ClosedError):
            checker.check("bob", "hunter2")
