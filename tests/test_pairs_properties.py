"""Invariants of a built pair store (Hypothesis), and a real Dask cluster giving what the local pool gives."""

from __future__ import annotations

import hashlib
import io
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credcheck.pairs import _oprf
from credcheck.pairs import store as pair_store
from credcheck.pairs._entry import entry, tag
from credcheck.pairs._names import bucket_of, canon
from credcheck.pairs._variants import variants
from credcheck.pairs.build import PairBuildReport, build_pairs
from credcheck.pairs.checker import PairStatus, StorePairChecker
from credcheck.pairs.store import PairStore, find_entry
from credcheck.pairs.stretch import Stretch, pair_input

from .helpers import KEY, TINY, SerialExecutor, fixed_key

OTHER_KEY = fixed_key(b"another key")
_TEXT = st.characters(exclude_categories=["Cs"], exclude_characters=":\t\r\n\ufeff")
# at least 6 characters each, so that finding one in the artefact's random bytes by chance is out of the question
USERNAMES = st.text(_TEXT, min_size=6, max_size=20).filter(lambda u: len(u.strip()) >= 6)
PASSWORDS = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), min_size=6, max_size=20)
PAIRS = st.lists(st.tuples(USERNAMES, PASSWORDS), min_size=1, max_size=8)
BUILDS = settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def build(
    tmp_path: Path, pairs: list[tuple[str, str]], name: str = "p", **options: object
) -> tuple[Path, PairBuildReport]:
    combo = tmp_path / f"{name}.txt"
    combo.write_bytes("".join(f"{u}:{p}\n" for u, p in pairs).encode())
    target = tmp_path / name
    settings_: dict[str, Any] = {"stretch": TINY, "executor": SerialExecutor(), "bucket_bits": 2}
    settings_.update(options)
    report = build_pairs(combo, target, KEY, **settings_)
    return target, report


def exact_passwords(pairs: list[tuple[str, str]]) -> dict[bytes, set[str]]:
    known: dict[bytes, set[str]] = {}
    for user, password in pairs:
        known.setdefault(canon(user), set()).add(password)
    return known


class TestBuiltStore:
    @BUILDS
    @given(PAIRS)
    def test_every_pair_exact(self, tmp_path: Path, pairs: list[tuple[str, str]]) -> None:
        """Every pair built is found EXACT."""
        target, _ = build(tmp_path, pairs)
        with StorePairChecker(target, KEY) as checker:
            assert all(checker.check(u, p).status is PairStatus.EXACT for u, p in pairs)

    @BUILDS
    @given(PAIRS, PASSWORDS, st.booleans())
    def test_other_password(self, tmp_path: Path, pairs: list[tuple[str, str]], other: str, entries: bool) -> None:
        """A built username with a password it was not leaked with is NOT_FOUND, or USERNAME with username entries."""
        target, _ = build(tmp_path, pairs, username_entries=entries)
        user = pairs[0][0]
        if other in exact_passwords(pairs)[canon(user)]:
            return
        with StorePairChecker(target, KEY) as checker:
            expected = PairStatus.USERNAME if entries else PairStatus.NOT_FOUND
            assert checker.check(user, other).status is expected

    @BUILDS
    @given(PAIRS)
    def test_variants_similar(self, tmp_path: Path, pairs: list[tuple[str, str]]) -> None:
        """Each of the nine variants of a built password is SIMILAR (EXACT where it leaked too)."""
        target, _ = build(tmp_path, pairs, variants=9)
        known = exact_passwords(pairs)
        with StorePairChecker(target, KEY) as checker:
            for user, password in pairs:
                for variant in variants(password, 9):
                    expected = PairStatus.EXACT if variant in known[canon(user)] else PairStatus.SIMILAR
                    assert checker.check(user, variant).status is expected

    @BUILDS
    @given(PAIRS)
    def test_sha1_twin(self, tmp_path: Path, pairs: list[tuple[str, str]]) -> None:
        """A store built from username:SHA1HEX lines answers like the one built from the plaintext."""
        hashed = [(u, hashlib.sha1(p.encode()).hexdigest()) for u, p in pairs]
        target, _ = build(tmp_path, hashed, input_format="combo-sha1")
        with StorePairChecker(target, KEY) as checker:
            assert all(checker.check(u, p).status is PairStatus.EXACT for u, p in pairs)
            assert all(checker.check_hash(u, h.upper()).status is PairStatus.EXACT for u, h in hashed)

    @BUILDS
    @given(PAIRS)
    def test_other_key_finds_nothing(self, tmp_path: Path, pairs: list[tuple[str, str]]) -> None:
        """Derived with another key, no pair's tag is in its bucket."""
        target, _ = build(tmp_path, pairs)
        with PairStore(target) as store:
            for user, password in pairs:
                name = canon(user)
                data = pair_input(name, hashlib.sha1(password.encode()).digest())
                y = _oprf.evaluate(OTHER_KEY.sk, store.stretch(data))
                assert find_entry(store.bucket(bucket_of(name, store.bucket_bits)), tag(y)) is None

    @BUILDS
    @given(PAIRS, st.booleans())
    def test_no_secret_in_the_bytes(self, tmp_path: Path, pairs: list[tuple[str, str]], entries: bool) -> None:
        """The file holds no username, password, canonical username, nor SHA-1 (hex or raw) of either."""
        target, _ = build(tmp_path, pairs, variants=9, username_entries=entries, bucket_bits=0)
        raw = target.read_bytes()
        for user, password in pairs:
            for text in (user, password, canon(user).decode()):
                data = text.encode()
                digest = hashlib.sha1(data).digest()
                for needle in (data, digest, digest.hex().encode(), digest.hex().upper().encode()):
                    assert needle not in raw

    @BUILDS
    @given(PAIRS, st.integers(0, 9), st.booleans(), st.integers(0, 6))
    def test_buckets_and_report(
        self, tmp_path: Path, pairs: list[tuple[str, str]], n_variants: int, entries: bool, bits: int
    ) -> None:
        """Every bucket holds a positive multiple of 16 entries, and the report adds up."""
        target, report = build(tmp_path, pairs, variants=n_variants, username_entries=entries, bucket_bits=bits)
        assert report.reconciles()
        with PairStore(target) as store:
            index = store.index.astype(np.int64)
            sizes = index[1:] - index[:-1]  # what np.diff gives, typed as ints (numpy's stubs say timedelta64)
            assert len(sizes) == 1 << bits and bool(np.all(sizes % 16 == 0)) and bool(np.all(sizes >= 16))


_VARYING = ("path", "sources", "seconds", "phase_seconds", "spill_bytes")  # a report's fields that are no counts


class TestSpill:
    @BUILDS
    @given(
        st.lists(st.tuples(st.sampled_from(["ann@x.io", "Ann@X.io ", "bob", "cy"]), st.sampled_from(
            ["hunter2", "Hunter2", "hunter20", "1hunter2", "pw", "pw0"])), min_size=1, max_size=40),
        st.integers(120, 250), st.integers(0, 9), st.booleans(), st.integers(0, 3),
    )  # fmt: skip
    def test_spilled_equals_in_memory(
        self, tmp_path_factory: pytest.TempPathFactory, pairs: list[tuple[str, str]], others: int, n_variants: int,
        entries: bool, bits: int,
    ) -> None:  # fmt: skip
        """Repeated pairs, passwords that are each other's variants, one user under two spellings, among enough
        others that 64 KiB spills: a build that spills its sorts writes the bytes, and reports the counts, of one
        that holds everything in memory."""
        pairs = [*pairs, *((f"user{i}@x.io", f"pw{i}") for i in range(others)), *pairs]
        stores = []
        for memory in ("64KiB", "1GiB"):
            folder = tmp_path_factory.mktemp("spill")
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(pair_store, "_random_bytes", io.BytesIO(bytes(range(256)) * 4096).read)
                patch.setattr(pair_store, "time", types.SimpleNamespace(time=lambda: 1_700_000_000.0))
                target, report = build(
                    folder, pairs, max_memory=memory, variants=n_variants, username_entries=entries, bucket_bits=bits
                )
            counts = {k: v for k, v in report.as_dict().items() if k not in _VARYING}
            stores.append((target.read_bytes(), counts))
        assert stores[0] == stores[1]


def expected_entries(pairs: list[tuple[str, str]], stretch: Stretch, bits: int) -> dict[int, set[bytes]]:
    """Every real entry of a store built from ``pairs`` (exact only), computed here from the protocol."""
    out: dict[int, set[bytes]] = {}
    for user, password in pairs:
        name = canon(user)
        y = _oprf.evaluate(KEY.sk, stretch(pair_input(name, hashlib.sha1(password.encode()).digest())))
        out.setdefault(bucket_of(name, bits), set()).add(entry(y, 1))
    return out


def entries_of(store: PairStore, bucket: int) -> set[bytes]:
    blob = store.bucket(bucket)
    return {blob[i : i + 17] for i in range(0, len(blob), 17)}


class TestDask:
    def test_local_cluster_matches_local_pool(self, tmp_path: Path) -> None:
        """A real Dask LocalCluster (2 worker processes on 127.0.0.1) builds the same entries as the local pool."""
        distributed = pytest.importorskip("distributed")
        pairs = [(f"user{i}@example.com", f"pw{i}") for i in range(40)]
        combo = tmp_path / "c.txt"
        combo.write_text("".join(f"{u}:{p}\n" for u, p in pairs))
        options: dict[str, Any] = {"stretch": TINY, "bucket_bits": 3, "chunk_size": 5}
        build_pairs(combo, tmp_path / "pool", KEY, workers=2, **options)
        with (
            distributed.LocalCluster(
                n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            build_pairs(combo, tmp_path / "dask", KEY, executor=client.get_executor(), workers=2, **options)
        expected = expected_entries(pairs, Stretch.parse(TINY), 3)
        with PairStore(tmp_path / "pool") as pool, PairStore(tmp_path / "dask") as dask:
            assert np.array_equal(pool.index, dask.index)
            for bucket in range(8):
                assert entries_of(pool, bucket) & entries_of(dask, bucket) == expected.get(bucket, set())
