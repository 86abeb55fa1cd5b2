"""The Checker contract every source shares: closing while threads use it, and what a closed checker says."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

import credcheck
from credcheck import Checker, ClosedError, CredcheckError, Exposure
from credcheck.contrib import _passwords, _policy, _verdicts

from .conftest import LEAKS, Corpus

THREADS = 4


def _race_close(checker: Checker, call: Callable[[Checker], object]) -> list[BaseException]:
    """Run ``call`` in a loop on THREADS threads, close the checker while they run; return what they raised."""
    started = threading.Barrier(THREADS + 1)
    raised: list[BaseException] = []
    calls = [0] * THREADS

    def worker(slot: int) -> None:
        started.wait()
        while True:
            try:
                call(checker)
            except BaseException as exc:
                raised.append(exc)
                return
            calls[slot] += 1

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(THREADS)]
    for thread in threads:
        thread.start()
    started.wait()
    while min(calls) < 50:  # every thread is well inside its loop
        threading.Event().wait(0.001)
    checker.close()
    for thread in threads:
        thread.join(timeout=60)
    return raised


@pytest.fixture(params=["store", "filter"])
def local_source(request: pytest.FixtureRequest, corpus: Corpus) -> str:
    return corpus.store if request.param == "store" else corpus.filter


@pytest.mark.parametrize(
    "call",
    [
        lambda checker: checker.check("password"),
        lambda checker: checker.check_many(["password", "qwerty"] * 64),
        lambda checker: checker.check_hashes([credcheck.sha1_hex("password")] * 64),
    ],
    ids=["check", "check_many", "check_hashes"],
)
def test_closing_under_threads_gives_only_closed_errors(local_source: str, call: Callable[[Checker], object]) -> None:
    """close() racing checking threads: calls in flight finish, later ones raise ClosedError and nothing else."""
    raised = _race_close(credcheck.open(local_source), call)
    assert len(raised) == THREADS
    assert all(type(exc) is ClosedError for exc in raised), [type(exc).__name__ for exc in raised]


def test_closed_checker_raises_a_credcheck_error(local_source: str) -> None:
    """A check after close() is a ClosedError (a CredcheckError naming the checker), and close() is idempotent."""
    checker = credcheck.open(local_source)
    checker.close()
    checker.close()
    with pytest.raises(ClosedError, match="Checker is closed") as info:
        checker.check("password")
    assert isinstance(info.value, CredcheckError)


def test_closed_remote_checker_raises_a_credcheck_error() -> None:
    """A remote checker after close() raises ClosedError too, before any request."""
    checker = credcheck.open("http://127.0.0.1:9")
    checker.close()
    with pytest.raises(ClosedError):
        checker.check("password")


def test_close_shared_racing_checks_never_escapes(corpus: Corpus) -> None:
    """close_shared() while threads check through the shared core: every check is answered, none raises."""
    config = {"source": corpus.store}
    results: list[object] = []
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                results.append(_passwords.shared_check(config).check("password"))
            except BaseException as exc:
                results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for _ in range(30):
        _policy.close_shared()
        threading.Event().wait(0.005)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    _policy.close_shared()
    expected = _verdicts.CheckResult(True, LEAKS["password"], "source")
    assert results and all(result == expected for result in results), {repr(r) for r in results} - {repr(expected)}


def test_exposure_is_falsy_when_not_compromised() -> None:
    """Exposure's truth is whether the password leaked."""
    assert not Exposure(False, 0) and Exposure(True, None)


@pytest.mark.usefixtures("kernels")
class TestOpenWithAScheme:
    def test_wrong_scheme_is_a_credcheck_error(self, corpus: Corpus) -> None:
        """credcheck.open('x.store', scheme='ntlm') on a SHA-1 store is an ArtifactError naming the file."""
        with pytest.raises(credcheck.ArtifactError, match=r"pwned\.store holds sha1 hashes, not ntlm"):
            credcheck.open(corpus.store, scheme="ntlm")
        with pytest.raises(credcheck.ArtifactError, match="not ntlm"):
            credcheck.open(corpus.filter, scheme="ntlm")

    def test_matching_scheme_opens(self, corpus: Corpus) -> None:
        """The scheme a file holds may be named (scheme=)."""
        with (
            credcheck.open(corpus.store, scheme="sha1") as store,
            credcheck.open(corpus.filter, scheme="sha1") as bloom,
        ):
            assert store.check("password") and bloom.check("password")

    def test_unknown_scheme_is_a_value_error(self, corpus: Corpus) -> None:
        """An unknown scheme name is refused before the file is read."""
        with pytest.raises(ValueError, match="unknown hash scheme"):
            credcheck.open(corpus.store, scheme="md5")


@pytest.mark.usefixtures("kernels")
class TestFilterThreshold:
    @pytest.fixture
    def min3(self, tmp_path_factory: pytest.TempPathFactory) -> str:
        path = tmp_path_factory.mktemp("min3") / "min3.bloom"
        bf = credcheck.BloomFilter.create(100, 1e-6, scheme="sha1", min_count=3)
        bf.add(bytes.fromhex(credcheck.sha1_hex("seen three times")))
        bf.save(path)
        return str(path)

    def test_defaults_to_the_filters_own_threshold(self, min3: str) -> None:
        """Opened without min_count, a filter answers the threshold it was built with."""
        with credcheck.open(min3) as checker:
            assert checker.min_count == 3
            assert checker.check("seen three times").compromised

    @pytest.mark.parametrize("asked", [1, 2, 4])
    def test_any_other_threshold_is_refused(self, min3: str, asked: int) -> None:
        """A lower threshold would silently miss what the build dropped, a higher one over-refuse: both refused."""
        with pytest.raises(ValueError, match="--min-count"):
            credcheck.open(min3, min_count=asked)

    @pytest.mark.parametrize(
        ("asked", "says"),
        [
            (1, "miss every password seen fewer than 3 times"),
            (2, "miss every password seen fewer than 3 times"),
            (4, "also report passwords seen fewer than 4 times as compromised"),
        ],
    )
    def test_the_refusal_says_what_would_go_wrong(self, min3: str, asked: int, says: str) -> None:
        """The message names what a wrong threshold would do, in a sentence that reads."""
        with pytest.raises(ValueError) as caught:
            credcheck.open(min3, min_count=asked)
        assert f"(it would {says}); rebuild it with --min-count {asked}" in str(caught.value)


@pytest.mark.usefixtures("kernels")
class TestCheckRows:
    """check_rows: the answers of check_hashes, as arrays, from every source."""

    @pytest.mark.parametrize(
        ("source", "options"),
        [("store", {}), ("store", {"min_count": 3}), ("filter", {}), ("api", {}), ("api", {"min_count": 3})],
    )
    def test_the_answers_of_check_hashes(
        self, corpus: Corpus, range_api: str, source: str, options: dict[str, int]
    ) -> None:
        """For leaked, rare and unknown digests alike, check_rows(rows)[i] is check_hashes(hexes)[i]."""
        passwords = [*LEAKS, "not leaked 1", "not leaked 2"]
        hexes = [credcheck.sha1_hex(p) for p in passwords]
        rows = np.frombuffer(b"".join(bytes.fromhex(h) for h in hexes), dtype=np.uint8).reshape(-1, 20)
        place = {"store": corpus.store, "filter": corpus.filter, "api": range_api}[source]
        with credcheck.open(place, **options) as checker:
            answers = checker.check_rows(rows)
            expected = checker.check_hashes(hexes)
        assert len(answers) == len(expected) and [answers[i] for i in range(len(answers))] == expected
        assert answers.compromised.dtype == bool and answers.counts.dtype == np.int64

    @pytest.mark.parametrize(
        "rows",
        [np.zeros((2, 16), np.uint8), np.zeros((2, 20), np.int64), np.zeros(20, np.uint8), [bytes(20)]],
        ids=["ntlm-width", "not-bytes", "one-dimension", "a-list"],
    )
    def test_anything_but_digest_rows_is_refused(self, corpus: Corpus, rows: object) -> None:
        """Rows of another width or type, or not an array, are a ValueError naming the shape wanted."""
        with credcheck.open(corpus.store) as checker, pytest.raises(ValueError, match="n x 20 uint8"):
            checker.check_rows(rows)  # type: ignore[arg-type]
