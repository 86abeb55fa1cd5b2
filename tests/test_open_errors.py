"""Opening artefacts that are missing or impossible: always a CredcheckError, never a bare OSError/OverflowError."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import xxhash

import credcheck
from credcheck import ArtifactError, BloomFilter, CredcheckError, RangeStore
from credcheck.errors import ArtifactNotFoundError, StorageError
from credcheck.server import make_app

from .conftest import sha1_upper

OPENERS: dict[str, Callable[[Path], Any]] = {
    "RangeStore": RangeStore,
    "BloomFilter.open": BloomFilter.open,
    "make_app": make_app,
}


@pytest.mark.parametrize("opener", OPENERS.values(), ids=OPENERS.keys())
def test_missing_file_is_a_credcheck_error_and_file_not_found(tmp_path: Path, opener: Callable[[Path], Any]) -> None:
    """A missing artefact raises ArtifactNotFoundError: a CredcheckError, a StorageError and a FileNotFoundError."""
    with pytest.raises(ArtifactNotFoundError, match=r"no (store|filter) file at") as caught:
        opener(tmp_path / "missing")
    assert isinstance(caught.value, CredcheckError)
    assert isinstance(caught.value, StorageError)
    assert isinstance(caught.value, FileNotFoundError)


@pytest.mark.parametrize("opener", OPENERS.values(), ids=OPENERS.keys())
def test_a_directory_is_a_storage_error(tmp_path: Path, opener: Callable[[Path], Any]) -> None:
    """A directory where an artefact should be is a StorageError naming it."""
    with pytest.raises(StorageError, match="cannot read the"):
        opener(tmp_path)


@pytest.fixture
def absurd_store(tmp_path: Path) -> Path:
    """A store whose (re-signed, valid-checksum) header says it was built after the year 9999."""
    source = tmp_path / "h.txt"
    source.write_text(f"{sha1_upper('password')}:3\n")
    path = tmp_path / "absurd.store"
    credcheck.build([source], store=path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 32, 2**63)
    struct.pack_into("<Q", data, 120, xxhash.xxh3_64_intdigest(bytes(data[:120])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("opener", [RangeStore, make_app, credcheck.open], ids=["RangeStore", "make_app", "open"])
def test_absurd_build_time_is_an_artifact_error(absurd_store: Path, opener: Callable[[Path], Any]) -> None:
    """A build time no date can hold is refused on open (it was an OverflowError out of serve)."""
    with pytest.raises(ArtifactError, match="impossible store build time"):
        opener(absurd_store)
