"""`credcheck info FILE...` (credcheck.cli._info): every artefact kind described, `--json`'s shape, and every way a
file can be wrong named with its reason and exit status 2, the other files still described."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from credcheck import _atomic
from credcheck._mirrorfiles import ETags, Journal, Range, store_identity
from credcheck.cli import main
from credcheck.fuse import FuseWriter, partial_path
from credcheck.pairs.build import _Checkpoints, checkpoint_dir
from credcheck.server._bodyfile import build_bodies
from credcheck.store import PREFIXES, RangeStore

from .conftest import LEAKED, sha1_upper
from .helpers import KEY, run_main
from .pairs_fixtures import OTHER_KEY, build_store, write_key_file

CHUNK = "0123456789abcdef0123456789abcdef"
URL = "http://127.0.0.1:9"

#: Every kind, as `credcheck info` names it, and the file of that kind in the `artefacts` directory.
KINDS = {
    "bloom filter": "pwned.bloom",
    "fuse filter": "pwned.fuse",
    "range store": "pwned.store",
    "bodies file": "pwned.store.bodies",
    "pair store": "pairs",
    "pair key file": "key",
    "pair build checkpoint": f".pairs.checkpoints/{CHUNK}.ckpt",
    "fuse filter build in progress": ".big.fuse.fuse-partial",
    "mirror journal": "pwned.store.mirror-journal",
    "mirror ETags file": "pwned.store.etags",
    "lock file": ".pwned.store.lock",
}
#: What `--json` always gives, whatever the kind (the facts of the kind come between the first four and the last two).
ALWAYS = ["path", "kind", "format_version", "size"]


def _fuse_partial(folder: Path) -> None:
    """A fuse build of 5 M hashes (two shards) stopped after its first shard: its partial file, kept for --resume."""
    writer = FuseWriter(folder / "big.fuse", items=5_000_000, fp_rate=1e-3)
    rows = np.random.default_rng(7).integers(0, 256, (100, 20), dtype=np.uint8)
    rows[:, 0] = 0  # all in shard 0
    writer.add(rows[np.lexsort(rows.T[::-1])])
    writer.add(np.full((1, 20), 0xFF, dtype=np.uint8))  # shard 1: shard 0 is finished and written
    writer.abort()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a file of every kind, each as credcheck writes it."""
    folder = tmp_path_factory.mktemp("artefacts")
    dump = folder / "pwned.txt"
    dump.write_text("".join(sorted(f"{sha1_upper(p)}:{i + 1}\n" for i, p in enumerate(LEAKED))))
    for args in (
        ["--filter", "pwned.bloom"],
        ["--filter", "pwned.fuse", "--layout", "fuse"],
        ["--store", "pwned.store"],
    ):
        args[1] = str(folder / args[1])
        assert main(["build", str(dump), "-q", *args]) == 0
    with RangeStore(folder / "pwned.store") as store:
        build_bodies(store)
    write_key_file(folder)
    build_store(folder, name="pairs")
    _Checkpoints(str(folder / "pairs"), True, KEY.sk).save(CHUNK, bytes(range(64)))
    _fuse_partial(folder)
    journal = Journal(str(folder / "pwned.store.mirror-journal"), {"url": URL, "scheme": "sha1", "base": 0})
    journal.create()
    journal.append(Range(0x5BAA6, 1, b'"etag"', bytes(18), (3).to_bytes(4, "little"), 1))
    journal.sync()
    journal.close()
    etags = ETags.encode(
        "sha1", store_identity(str(folder / "pwned.store")), URL, [b'"e"'] * 5 + [b""] * (PREFIXES - 5)
    )
    (folder / "pwned.store.etags").write_bytes(b"".join(etags))
    (folder / ".pwned.store.lock").write_text("4242\n")
    assert partial_path(folder / "big.fuse") == str(folder / KINDS["fuse filter build in progress"])
    assert checkpoint_dir(str(folder / "pairs")) == str(folder / ".pairs.checkpoints")
    return folder


def info(
    paths: Sequence[Path | str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, list[dict[str, Any]], str]:
    """`credcheck info --json PATHS`: the exit status, one object a file, and standard error."""
    status = run_main(["info", "--json", *extra, *map(str, paths)], monkeypatch=monkeypatch)
    out, err = capsys.readouterr()
    return status, [json.loads(line) for line in out.splitlines()], err


class TestKinds:
    def test_every_kind_described_and_verified(
        self, artefacts: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each kind is told by its magic (the lock by its name), described and verified; exit 0."""
        paths = [artefacts / name for name in KINDS.values()]
        status, described, err = info(paths, monkeypatch, capsys)
        assert status == 0, err
        assert [d["kind"] for d in described] == list(KINDS)
        assert [d["path"] for d in described] == [str(p) for p in paths]
        for d, path in zip(described, paths, strict=True):
            assert d["size"] == path.stat().st_size
            expected = None if d["kind"] in ("pair build checkpoint", "lock file") else True  # no key; nothing to check
            assert d["verified"] is expected, d
            assert (d["problem"] is None) == (expected is True)

    def test_facts_of_each_kind(
        self, artefacts: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each kind says what its header records: scheme, counts, rates, key id, bucket bits, build time."""
        _, described, _ = info([artefacts / name for name in KINDS.values()], monkeypatch, capsys)
        by_kind = {d["kind"]: d for d in described}
        n = len(LEAKED)
        assert (
            by_kind["bloom filter"] | {"items": n, "capacity": n, "fp_rate": 1e-6, "k": 20, "min_count": 1}
            == (by_kind["bloom filter"])
        )
        assert by_kind["bloom filter"]["bits_per_hash"] == round(by_kind["bloom filter"]["bits"] / n, 2)
        fuse = by_kind["fuse filter"]
        assert (fuse["scheme"], fuse["items"], fuse["fingerprint_bits"], fuse["shards"]) == ("sha1", n, 20, 1)
        assert fuse["bits_per_hash"] == round(8 * fuse["size"] / n, 2)
        store = by_kind["range store"]
        assert (store["scheme"], store["rows"], store["min_count"]) == ("sha1", n, 1)
        assert store["created"].endswith("Z") and store["created"][:2] == "20"
        bodies = by_kind["bodies file"]
        assert (bodies["store"], bodies["store_size"]) == (str(artefacts / "pwned.store"), store["size"])
        pairs = by_kind["pair store"]
        assert (pairs["key_id"], pairs["bucket_bits"], pairs["buckets"]) == (KEY.key_id.hex(), 8, 256)
        assert pairs["entries"] % 16 == 0 and pairs["username_entries"] is True and pairs["variants"] == 9
        assert "made_with_the_key" not in pairs  # without --key nothing is said of a key
        key = by_kind["pair key file"]
        assert (key["key_id"], key["public_key"]) == (KEY.key_id.hex(), KEY.pk.hex())
        ckpt = by_kind["pair build checkpoint"]
        assert (ckpt["format_version"], ckpt["chunk"], ckpt["outputs"]) == (2, CHUNK, 2)
        assert "--key" in ckpt["problem"]
        partial = by_kind["fuse filter build in progress"]
        assert (partial["shards"], partial["shards_finished"], partial["items_finished"]) == (2, 1, 100)
        journal = by_kind["mirror journal"]
        assert (journal["url"], journal["ranges"], journal["rows"], journal["not_modified"]) == (URL, 1, 1, 0)
        etags = by_kind["mirror ETags file"]
        assert (etags["url"], etags["etags"], etags["store_as_written"], etags["with_filter"]) == (URL, 5, True, False)
        lock = by_kind["lock file"]
        assert (lock["guards"], lock["held"], lock["pid"]) == (str(artefacts / "pwned.store"), False, 4242)

    def test_json_shape(
        self, artefacts: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json: one object a line, path, kind, format_version and size first, verified and problem last."""
        _, described, _ = info([artefacts / name for name in KINDS.values()], monkeypatch, capsys)
        for d in described:
            assert list(d)[:4] == ALWAYS and list(d)[-2:] == ["verified", "problem"]
            assert all(isinstance(value, str | int | float | bool | None) for value in d.values())

    def test_text_output(self, artefacts: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without --json: the path, then a line a fact, a blank line between files."""
        assert main(["info", str(artefacts / "pwned.store"), str(artefacts / "pwned.bloom")]) == 0
        out = capsys.readouterr().out
        store, bloom = out.split("\n\n")
        assert store.splitlines()[0] == str(artefacts / "pwned.store")
        assert "  kind            range store" in store and f"  rows            {len(LEAKED)}" in store
        assert "fp rate" in bloom and "1e-06" in bloom and bloom.rstrip().endswith("verifies        yes")

    def test_lock_held_by_a_writer(self, artefacts: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        """A lock file some writer holds now says so."""
        target = tmp_path / "t.store"
        with _atomic.lock_beside([target]):
            assert main(["info", "--json", _atomic.lock_path(target)]) == 0
        described = json.loads(capsys.readouterr().out)
        assert (described["held"], described["pid"]) == (True, os.getpid())

    def test_with_the_key(
        self, artefacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--key checks a checkpoint's seal and says whether a pair store was made with that key; another key
        fails the checkpoint (exit 2) and says the store was not made with it."""
        paths = [artefacts / KINDS["pair build checkpoint"], artefacts / "pairs"]
        status, (ckpt, store), _ = info(paths, monkeypatch, capsys, "--key", str(artefacts / "key"))
        assert status == 0 and ckpt["verified"] is True and store["made_with_the_key"] is True
        other = write_key_file(tmp_path, OTHER_KEY)
        status, (ckpt, store), err = info(paths, monkeypatch, capsys, "--key", str(other))
        assert status == 2 and ckpt["verified"] is False and store["made_with_the_key"] is False
        assert f"does not verify under the key {OTHER_KEY.key_id.hex()}" in ckpt["problem"]
        assert "1 of 2 files do not verify" in err

    def test_secret_key_never_shown(
        self, artefacts: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Neither the key file's nor a checkpoint's description shows the secret key, with --json or without."""
        paths = [str(artefacts / "key"), str(artefacts / KINDS["pair build checkpoint"]), str(artefacts / "pairs")]
        key = ["--key", str(artefacts / "key")]
        for extra in ([], ["--json"]):
            assert run_main(["info", *extra, *key, *paths], monkeypatch=monkeypatch) == 0
            out, err = capsys.readouterr()
            assert KEY.sk.hex()[:16] not in out + err and KEY.sk.hex()[:16].upper() not in out + err

    def test_kind_is_told_by_magic_not_name(
        self, artefacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A filter named like a store is described as the filter it is."""
        shutil.copy(artefacts / "pwned.bloom", tmp_path / "named.store")
        status, (described,), _ = info([tmp_path / "named.store"], monkeypatch, capsys)
        assert status == 0 and described["kind"] == "bloom filter"


def _flip(at: Callable[[int], int]) -> Callable[[bytes], bytes]:
    def flip(data: bytes) -> bytes:
        changed = bytearray(data)
        changed[at(len(data))] ^= 0x10
        return bytes(changed)

    return flip


#: Ways to damage a file, each of which every kind must name.
DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "header byte flipped": _flip(lambda n: 16),
    "middle byte flipped": _flip(lambda n: n // 2),
    "last byte flipped": _flip(lambda n: n - 1),
    "truncated": lambda data: data[:-7],
    "random bytes": lambda data: np.random.default_rng(1).integers(0, 256, len(data), dtype=np.uint8).tobytes(),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "lock file"])
def test_damaged_file_named_with_its_reason(
    kind: str,
    damage: Callable[[bytes], bytes],
    artefacts: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A flipped byte, a cut or random bytes in any kind: exit 2, the reason (naming the file), the other files still
    described."""
    folder = tmp_path / "copy"
    for name in {KINDS[kind], "pwned.store", "pwned.bloom"}:  # the file, the store it is checked against, another
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(artefacts / name, folder / name)
    damaged = folder / KINDS[kind]
    damaged.write_bytes(damage(damaged.read_bytes()))
    good = folder / "pwned.bloom" if kind != "bloom filter" else folder / "pwned.store"
    status, described, err = info([damaged, good], monkeypatch, capsys, "--key", str(artefacts / "key"))
    assert status == 2
    assert described[0]["verified"] is False and str(damaged.name) in described[0]["problem"], described[0]
    assert described[1]["verified"] is True
    assert "1 of 2 files do not verify" in err


def test_bodies_of_another_store(
    artefacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bodies file beside a store it was not made from does not verify; without its store it is not checked."""
    other = tmp_path / "other.txt"
    other.write_text(f"{sha1_upper('another leak')}:1\n")
    assert main(["build", str(other), "--store", str(tmp_path / "other.store"), "-q"]) == 0
    shutil.copy(artefacts / "pwned.store.bodies", tmp_path / "other.store.bodies")
    shutil.copy(artefacts / "pwned.store.bodies", tmp_path / "alone.store.bodies")
    status, (beside, alone), _ = info(
        [tmp_path / "other.store.bodies", tmp_path / "alone.store.bodies"], monkeypatch, capsys
    )
    assert status == 2
    assert beside["verified"] is False and "made from another store" in beside["problem"]
    assert alone["verified"] is None and "alone.store is not there" in alone["problem"]


def test_etags_of_a_changed_store(
    artefacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ETags written for other contents of the store verify (the file is whole) and say the store changed since."""
    shutil.copy(artefacts / "pwned.store.etags", tmp_path / "pwned.store.etags")
    shutil.copy(artefacts / "pwned.store.bodies", tmp_path / "pwned.store")  # any other contents
    status, (described,), _ = info([tmp_path / "pwned.store.etags"], monkeypatch, capsys)
    assert status == 0 and described["store_as_written"] is False


def test_old_checkpoint_is_never_taken(
    artefacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A version-1 checkpoint (sealed by an unkeyed checksum) is named so and does not verify."""
    old = tmp_path / f"{CHUNK}.ckpt"
    old.write_bytes(b"CCPCKPT1" + (artefacts / KINDS["pair build checkpoint"]).read_bytes()[8:])
    status, (described,), _ = info([old], monkeypatch, capsys)
    assert status == 2 and described["kind"] == "pair build checkpoint" and described["format_version"] == 1
    assert "a resume never takes it" in described["problem"]


def test_loose_key_file_refused(
    artefacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key file others may read does not verify, for the reason serve and pairs build refuse it."""
    loose = tmp_path / "key"
    shutil.copy(artefacts / "key", loose)
    loose.chmod(0o644)
    status, (described,), _ = info([loose], monkeypatch, capsys)
    assert status == 2 and "accessible to group or others" in described["problem"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: path.write_bytes(b""), "the file is empty, not a credcheck artefact"),
        (lambda path: path.mkdir(), "Is a directory"),
        (lambda path: None, "no artefact file at"),
        (lambda path: path.write_bytes(b"password\n123456\n"), "not a credcheck artefact (unknown magic)"),
    ],
    ids=["empty", "directory", "missing", "not an artefact"],
)
def test_not_a_file_of_any_kind(
    make: Callable[[Path], object],
    reason: str,
    artefacts: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An empty file, a directory, a missing file, a file of no kind: its reason, exit 2; the next file described."""
    path = tmp_path / "thing"
    make(path)
    status, (described, store), err = info([path, artefacts / "pwned.store"], monkeypatch, capsys)
    assert status == 2 and "1 of 2 files do not verify" in err
    assert described["kind"] is None and described["verified"] is False
    assert reason in described["problem"] and str(path) in described["problem"]
    assert "Errno" not in described["problem"]
    assert store["verified"] is True


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO given as a file is refused, not read until someone writes to it (the command would hang)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-m", "credcheck", "info", str(fifo)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "not a regular file" in done.stdout


def test_a_huge_checkpoint_is_refused_unread(
    artefacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file with a checkpoint's magic and a terabyte of (sparse) padding is refused by its size, not read."""
    huge = tmp_path / f"{CHUNK}.ckpt"
    huge.write_bytes((artefacts / KINDS["pair build checkpoint"]).read_bytes())
    os.truncate(huge, 1 << 40)
    status, (described,), _ = info([huge], monkeypatch, capsys)
    assert status == 2 and "truncated or padded" in described["problem"]


def test_url_shown_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journal or ETags file of a mirror given a URL with a user and password shows the URL without them."""
    with_password = "http://someone:s3cr3t-pw@127.0.0.1:9"
    journal = Journal(str(tmp_path / "j.store.mirror-journal"), {"url": with_password, "scheme": "sha1"})
    journal.create()
    journal.close()
    (tmp_path / "j.store.etags").write_bytes(b"".join(ETags.encode("sha1", 1, with_password, [b""] * PREFIXES)))
    for extra in ([], ["--json"]):
        args = ["info", *extra, str(tmp_path / "j.store.mirror-journal"), str(tmp_path / "j.store.etags")]
        assert run_main(args, monkeypatch=monkeypatch) == 0
        out = capsys.readouterr().out
        assert "s3cr3t-pw" not in out and "someone" not in out and "http://127.0.0.1:9" in out


def test_a_huge_sealed_checkpoint_is_mapped_not_read(artefacts: Path, tmp_path: Path) -> None:
    """A (sparse) checkpoint of 2 GiB, its size what its count says, is checked against the key's seal without
    being read into memory (the command runs with 1 GiB of data memory at most): it does not verify."""
    huge = tmp_path / f"{CHUNK}.ckpt"
    outputs = 1 << 26
    huge.write_bytes(b"CCPCKPT2" + outputs.to_bytes(4, "little"))
    os.truncate(huge, 12 + 32 * outputs + 32)

    def at_most_1_gib() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (1 << 30, 1 << 30))

    done = subprocess.run(
        [sys.executable, "-m", "credcheck", "info", "--json", "--key", str(artefacts / "key"), str(huge)],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=at_most_1_gib,
    )
    described = json.loads(done.stdout)
    assert done.returncode == 2 and described["outputs"] == outputs and "does not verify" in described["problem"]
