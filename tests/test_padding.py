"""credcheck._padding: the random SUFFIX:0 lines the server (and a padded export) add to a range."""

from __future__ import annotations

from pathlib import Path

import pytest

import credcheck
from credcheck._padding import padding
from credcheck.store import RangeStore

from .conftest import sha1_upper

CROWDED = "ABCDE"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> RangeStore:
    root: Path = tmp_path_factory.mktemp("padding")
    lines = [f"{CROWDED}{c * 35}:{n}" for n, c in enumerate("0123456789ABCDEF", start=1)]
    (root / "h.txt").write_text("\n".join([*lines, f"{sha1_upper('password')}:3"]) + "\n")
    credcheck.build([root / "h.txt"], store=root / "h.store")
    return RangeStore(root / "h.store")


@pytest.mark.parametrize("count", [1, 10, 209, 5000])
def test_lines_are_new_distinct_suffixes_with_count_zero(store: RangeStore, count: int) -> None:
    """``count`` lines, each a 35-hex upper-case suffix of the prefix with count 0, none real, none repeated."""
    prefix = int(CROWDED, 16)
    lines = padding(store, prefix, count, after_lines=False).split(b"\r\n")
    suffixes = [line.split(b":")[0] for line in lines]
    real = {line.split(b":")[0] for line in store.range_lines(prefix)}
    assert len(lines) == count
    assert all(line.endswith(b":0") and len(line) == 37 for line in lines)
    assert all(s == s.upper() and bytes.fromhex("0" + s.decode()) for s in suffixes)
    assert len(set(suffixes)) == count
    assert not real & set(suffixes)


def test_each_line_is_led_by_crlf_after_real_lines(store: RangeStore) -> None:
    """With real lines before it, the padding starts with CRLF, so it can be appended to the body as it is."""
    block = padding(store, int(CROWDED, 16), 3, after_lines=True)
    assert block.startswith(b"\r\n") and block.count(b"\r\n") == 3 and not block.endswith(b"\r\n")


def test_no_lines_is_empty(store: RangeStore) -> None:
    """A count of 0 gives no bytes (an export range already as long as its target)."""
    assert padding(store, 0, 0, after_lines=True) == b""


def test_prefix_out_of_range_is_refused(store: RangeStore) -> None:
    """A prefix outside 20 bits is a ValueError."""
    with pytest.raises(ValueError, match="20-bit"):
        padding(store, 1 << 20, 3, after_lines=False)
