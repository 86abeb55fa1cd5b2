"""The shared argument checks (credcheck._args), the scheme registry and the wire constants."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from credcheck import _args, _wire
from credcheck.bloom import BloomFilter
from credcheck.hashing import DIGEST_SIZES, FILTER_SCHEMES, SCHEMES, scheme_by_code

from .conftest import Corpus

BOOLS = pytest.mark.parametrize("value", [True, False])


class TestNumbers:
    """Counts, sizes and seconds."""

    @BOOLS
    def test_bool_is_not_a_positive_int(self, value: bool) -> None:
        """True and False are refused where a positive integer is asked."""
        with pytest.raises(ValueError, match="n must be a positive integer"):
            _args.positive_int("n", value)

    @BOOLS
    def test_bool_is_not_a_count(self, value: bool) -> None:
        """True and False are refused where a count >= 0 is asked."""
        with pytest.raises(ValueError, match="retries must be a non-negative integer"):
            _args.non_negative_int("retries", value)

    @BOOLS
    def test_bool_is_not_seconds(self, value: bool) -> None:
        """True and False are refused as a number of seconds."""
        with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
            _args.positive_seconds("timeout", value)

    @BOOLS
    def test_bool_is_not_a_probability(self, value: bool) -> None:
        """True and False are refused as a probability."""
        with pytest.raises(ValueError, match="fp_rate must be between 0 and 1"):
            _args.probability("fp_rate", value)

    @pytest.mark.parametrize("value", [0, -1, 1.0, "1", None])
    def test_positive_int_refuses(self, value: object) -> None:
        """Zero, negatives, floats, strings and None are not positive integers."""
        with pytest.raises(ValueError):
            _args.positive_int("n", value)

    @pytest.mark.parametrize("value", [-1, 10, True, 3.0])
    def test_int_in_range_refuses(self, value: object) -> None:
        """A value outside the range, a bool or a float is refused, naming the range."""
        with pytest.raises(ValueError, match="variants must be an integer from 0 to 9"):
            _args.int_in_range("variants", value, 0, 9)

    def test_int_in_range_bounds_pass(self) -> None:
        """Both bounds are inside the range."""
        assert _args.int_in_range("port", 0, 0, 65535) == 0 and _args.int_in_range("port", 65535, 0, 65535) == 65535

    @pytest.mark.parametrize("value", [-0.5, math.inf, math.nan, True])
    def test_non_negative_number_refuses(self, value: object) -> None:
        """Negative, infinite, NaN and bool values are not a non-negative number; 0 is."""
        assert _args.non_negative_number("backoff_factor", 0) == 0.0
        with pytest.raises(ValueError, match="backoff_factor must be a non-negative number"):
            _args.non_negative_number("backoff_factor", value)

    @pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan])
    def test_seconds_refuse(self, value: float) -> None:
        """Zero, negative, infinite and NaN seconds are refused."""
        with pytest.raises(ValueError):
            _args.positive_seconds("timeout", value)

    @pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan, True])
    def test_positive_number_refuses(self, value: object) -> None:
        """Zero, negative, infinite, NaN and bool values are refused, in the caller's unit."""
        with pytest.raises(ValueError, match="the rate limit must be a positive number of queries a second"):
            _args.positive_number("the rate limit", value, " of queries a second")

    @pytest.mark.parametrize("value", [0.5, math.inf, math.nan, True])
    def test_number_at_least_refuses(self, value: object) -> None:
        """Below the bound, infinite, NaN and bool values are refused; the bound itself passes."""
        assert _args.number_at_least("the burst", 1, 1) == 1.0
        with pytest.raises(ValueError, match="the burst must be a number of queries of at least 1,"):
            _args.number_at_least("the burst", value, 1, " of queries")

    @pytest.mark.parametrize("value", [0.0, 1.0, math.nan, -0.5])
    def test_probability_is_open(self, value: float) -> None:
        """0, 1, NaN and negatives are not a probability strictly between 0 and 1."""
        with pytest.raises(ValueError):
            _args.probability("fp_rate", value)

    def test_numpy_scalars_pass(self) -> None:
        """A numpy float is a real number, as a Python float is."""
        assert _args.probability("fp_rate", np.float32(0.5)) == 0.5
        assert _args.positive_seconds("timeout", np.float64(2.0)) == 2.0

    def test_choice(self) -> None:
        """A value outside the choices (or unhashable) is a ValueError listing them."""
        assert _args.choice("format", "hibp", ("hibp", "hash")) == "hibp"
        with pytest.raises(ValueError, match="expected one of hibp, hash"):
            _args.choice("format", "csv", ("hibp", "hash"))
        with pytest.raises(ValueError):
            _args.choice("format", ["x"], frozenset({"hibp"}))

    @pytest.mark.parametrize(
        ("text", "size"),
        [("64MiB", 64 << 20), ("64mib", 64 << 20), ("1.5GiB", 3 << 29), ("2G", 2 << 30), ("1.5GB", 1_500_000_000),
         (" 512 K ", 512 << 10), ("9007199254740993", 9007199254740993), ("18446744073709551617", 2**64 + 1)],
    )  # fmt: skip
    def test_byte_size_reads_sizes_exactly(self, text: str, size: int) -> None:
        """A size is read exactly, long numbers included (a float would round 2^53 + 1 to 2^53)."""
        assert _args.byte_size("max_memory", text) == size

    @pytest.mark.parametrize("value", ["9" * 400, "9" * 400 + "T", 10**400])
    def test_byte_size_too_large_for_a_float(self, value: object, monkeypatch: pytest.MonkeyPatch) -> None:
        """A memory budget with more digits than a float holds is a ValueError naming it, never an OverflowError."""
        monkeypatch.setattr(_args, "machine_memory", lambda: 24 << 30)
        with pytest.raises(ValueError, match="max_memory must be at most this machine's memory"):
            _args.byte_size("max_memory", value, memory=True)

    @pytest.mark.parametrize("value", ["32GiB", "1000T", 32 << 30])
    def test_memory_budget_beyond_the_machine_refused(self, value: object, monkeypatch: pytest.MonkeyPatch) -> None:
        """A memory budget larger than the machine's memory is refused (it would never spill, and end in the OOM
        killer); the machine's own size passes, and a size that is not a budget is not bounded by it."""
        monkeypatch.setattr(_args, "machine_memory", lambda: 24 << 30)
        assert _args.byte_size("max_memory", "24GiB", memory=True) == 24 << 30
        assert _args.byte_size("size", value) >= 32 << 30
        with pytest.raises(ValueError, match=r"at most this machine's memory \(25,769,803,776 bytes\)"):
            _args.byte_size("max_memory", value, memory=True)

    @pytest.mark.parametrize("value", ["", "-1", "1e9", "0x10", "1_000", ".5G", "5.", "inf", "64iB", 1.5, True, None])
    def test_byte_size_refuses(self, value: object) -> None:
        """Anything but a whole number of bytes or a number with a unit is a ValueError naming the argument."""
        with pytest.raises(ValueError, match="max_memory must be a size such as 64MiB"):
            _args.byte_size("max_memory", value)

    def test_filter_capacity_true_is_refused(self) -> None:
        """BloomFilter.create(True, ...) is refused: True is not a capacity (it used to pass as 1)."""
        with pytest.raises(ValueError, match="capacity must be a positive integer"):
            BloomFilter.create(True, 0.01)


@pytest.mark.parametrize("call", ["open", "build"])
def test_min_count_true_is_refused(call: str, hibp_file: Path, tmp_path: Path) -> None:
    """min_count=True is refused by open() and build() (it used to pass as 1)."""
    import credcheck

    store = f"{tmp_path}/s.store"
    credcheck.build([hibp_file], store=store)
    with pytest.raises(ValueError, match="min_count must be a positive integer"):
        if call == "open":
            credcheck.open(store, min_count=True)
        else:
            credcheck.build([hibp_file], store=f"{tmp_path}/t.store", min_count=True)


class TestSchemeKeyword:
    """build() and open() take the scheme as scheme=, the one Python name for it (the CLI's flag is --hash)."""

    def test_build_takes_scheme(self, ntlm_hibp_file: Path, tmp_path: Path) -> None:
        """build(scheme="ntlm") builds an NTLM store."""
        import credcheck

        report = credcheck.build([ntlm_hibp_file], store=f"{tmp_path}/n.store", scheme="ntlm")
        assert report.scheme == "ntlm"

    def test_build_refuses_hash(self, ntlm_hibp_file: Path, tmp_path: Path) -> None:
        """build(hash=...) is a TypeError naming the keyword, before anything is written: never ignored."""
        import os

        import credcheck

        with pytest.raises(TypeError, match="hash"):
            credcheck.build([ntlm_hibp_file], store=f"{tmp_path}/s.store", hash="ntlm")  # type: ignore[call-arg]
        assert not os.path.exists(f"{tmp_path}/s.store")

    @pytest.mark.parametrize("kind", ["store", "filter"])
    def test_open_file_refuses_hash(self, kind: str, corpus: Corpus) -> None:
        """open(path, hash=...) is a TypeError naming the keyword, whatever the file holds."""
        import credcheck

        with pytest.raises(TypeError, match="hash"):
            credcheck.open(getattr(corpus, kind), hash="sha1")

    @pytest.mark.parametrize("opener", ["open", "open_async"])
    def test_open_remote_refuses_hash(self, opener: str) -> None:
        """open(url, hash=...) and open_async(url, hash=...) are a TypeError naming the keyword, before a client
        exists."""
        import credcheck

        with pytest.raises(TypeError, match="hash"):
            getattr(credcheck, opener)("https://ranges.example", hash="sha1")


class TestRegistry:
    """One registry of schemes."""

    def test_sizes_and_codes(self) -> None:
        """SHA-1 is 20 bytes, code 1; NTLM 16 bytes, code 2; filters add xxh3 (16 bytes, code 3)."""
        assert {n: (s.digest_size, s.code) for n, s in SCHEMES.items()} == {"sha1": (20, 1), "ntlm": (16, 2)}
        assert FILTER_SCHEMES["xxh3"].code == 3 and dict(DIGEST_SIZES) == {"sha1": 20, "ntlm": 16}

    def test_codes_are_distinct(self) -> None:
        """Every code names one scheme, and scheme_by_code finds it back."""
        assert len({s.code for s in FILTER_SCHEMES.values()}) == len(FILTER_SCHEMES)
        for info in FILTER_SCHEMES.values():
            assert scheme_by_code(info.code, FILTER_SCHEMES) == info
        assert scheme_by_code(3) is None and scheme_by_code(0, FILTER_SCHEMES) is None

    def test_registry_is_read_only(self) -> None:
        """The registry cannot be changed by a caller."""
        with pytest.raises(TypeError):
            SCHEMES["md5"] = SCHEMES["sha1"]  # type: ignore[index]


class TestWire:
    """The wire's constants."""

    def test_lengths(self) -> None:
        """Prefixes are 5 hex characters; suffixes 35 for SHA-1, 27 for NTLM."""
        assert _wire.PREFIX_LENGTH == 5 and dict(_wire.SUFFIX_LENGTHS) == {"sha1": 35, "ntlm": 27}

    def test_mode_query(self) -> None:
        """Only NTLM adds the wire's ?mode=ntlm; SHA-1 adds nothing."""
        assert _wire.mode_query("ntlm") == "?mode=ntlm" and _wire.mode_query("sha1") == ""
