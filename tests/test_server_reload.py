"""The range service and files that change under it: hot reload, in-place edits, granian workers' proof."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

import credcheck
from credcheck import ArtifactError, BloomFilter
from credcheck.server import RangeApp, make_app
from credcheck.server._live import verified_identities
from credcheck.server._runners import _CACHE_ENV, _STORES_ENV, _granian_app

from .helpers import Reply, call, running_server

PASSWORD = "password"
DIGEST = hashlib.sha1(PASSWORD.encode()).hexdigest().upper()
PREFIX, SUFFIX = DIGEST[:5], DIGEST[5:]


def build_store(path: Path, count: int, extra: int = 0) -> Path:
    """A SHA-1 store where 'password' has ``count``, plus ``extra`` other hashes (so sizes can differ)."""
    source = path.with_suffix(".txt")
    lines = [f"{DIGEST}:{count}"] + [f"{hashlib.sha1(str(i).encode()).hexdigest()}:1" for i in range(extra)]
    source.write_text("\n".join(lines) + "\n")
    credcheck.build([source], store=path)
    return path


def body_for(count: int) -> bytes:
    return f"{SUFFIX}:{count}".encode()


def eventually(get: Callable[[], Reply], want: Callable[[Reply], bool], seen: list[Reply], limit: float = 60) -> Reply:
    """Ask until ``want`` holds (the reload runs in the background), keeping every reply seen on the way."""
    deadline = time.monotonic() + limit
    while True:
        reply = get()
        seen.append(reply)
        if want(reply) or time.monotonic() > deadline:
            return reply
        time.sleep(0.02)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RangeApp, Path]]:
    path = build_store(tmp_path / "live.store", 7)
    app = make_app(path)
    yield app, path
    app.close()


def get_range(app: RangeApp) -> Reply:
    return call(app, f"/range/{PREFIX}")


def status(app: RangeApp) -> dict[str, Any]:
    """The health page's JSON."""
    state: dict[str, Any] = json.loads(call(app, "/health").body)
    return state


class TestHotReload:
    def test_atomic_replacement_is_served_once_verified(self, served: tuple[RangeApp, Path], tmp_path: Path) -> None:
        """A new build renamed over the served path is served, and nothing but the old or new body is seen."""
        app, path = served
        assert get_range(app).body == body_for(7)
        os.replace(build_store(tmp_path / "new.store", 9), path)
        seen: list[Reply] = []
        last = eventually(lambda: get_range(app), lambda r: r.body == body_for(9), seen)
        assert last.body == body_for(9)
        assert all(r.status == 200 and r.body in (body_for(7), body_for(9)) for r in seen)

    def test_new_version_has_a_new_etag(self, served: tuple[RangeApp, Path], tmp_path: Path) -> None:
        """After a reload the range's ETag changes, so clients do not keep the old body as current."""
        app, path = served
        before = get_range(app).headers["etag"]
        os.replace(build_store(tmp_path / "new.store", 9), path)
        after = eventually(lambda: get_range(app), lambda r: r.body == body_for(9), [])
        assert after.headers["etag"] != before

    def test_corrupt_replacement_is_refused_and_the_old_file_served(
        self, served: tuple[RangeApp, Path], tmp_path: Path
    ) -> None:
        """A replacement that fails verification is not served: the verified old file goes on answering."""
        app, path = served
        bad = build_store(tmp_path / "bad.store", 9)
        data = bytearray(bad.read_bytes())
        data[-1] ^= 0x01  # the last count
        bad.write_bytes(bytes(data))
        os.replace(bad, path)
        eventually(
            lambda: call(app, "/health"),
            lambda r: json.loads(r.body)["stores"]["sha1"].get("replacement") == "refused",
            [],
        )
        reply = get_range(app)
        assert (reply.status, reply.body) == (200, body_for(7))

    def test_replacement_of_another_scheme_is_refused(self, served: tuple[RangeApp, Path], tmp_path: Path) -> None:
        """An NTLM store renamed over the SHA-1 store's path is not served as SHA-1."""
        app, path = served
        source = tmp_path / "n.txt"
        source.write_text(f"{credcheck.ntlm_hex(PASSWORD)}:9\n")
        credcheck.build([source], store=tmp_path / "n.store", scheme="ntlm")
        os.replace(tmp_path / "n.store", path)
        eventually(
            lambda: call(app, "/health"),
            lambda r: json.loads(r.body)["stores"]["sha1"].get("replacement") == "refused",
            [],
        )
        reply = get_range(app)
        assert (reply.status, reply.body) == (200, body_for(7))


class TestChangedInPlace:
    def test_overwritten_header_answers_503(self, served: tuple[RangeApp, Path], tmp_path: Path) -> None:
        """A file overwritten in place (cp new old) answers 503 rather than a body from a mixed mapping."""
        app, path = served
        get_range(app)
        new = build_store(tmp_path / "new.store", 9)  # the same size: only the contents differ
        assert new.stat().st_size == path.stat().st_size
        with open(path, "r+b") as fh:
            fh.write(new.read_bytes()[:4096])  # the first page only, as a copy caught half-way
        reply = get_range(app)
        assert reply.status == 503
        assert "retry-after" in reply.headers

    def test_shorter_file_answers_503_without_sigbus(self, served: tuple[RangeApp, Path]) -> None:
        """A file truncated under the server is noticed before the map is read (no SIGBUS), with a 503."""
        app, path = served
        get_range(app)
        os.truncate(path, 4096)
        reply = get_range(app)
        assert reply.status == 503
        assert call(app, "/ready").status == 503

    def test_in_place_edit_with_its_mtime_put_back_answers_503(self, served: tuple[RangeApp, Path]) -> None:
        """An edit in place that keeps the size and header and puts the mtime back (``rsync --inplace -t``) shows
        only in the ctime: the running app verifies the file again, finds it corrupt and answers 503 from then
        on, never the edited rows (here a lower count) or a body kept from before."""
        app, path = served
        assert get_range(app).body == body_for(7)  # now in the body cache too
        before = path.stat()
        data = bytearray(path.read_bytes())
        assert data[-4:] == (7).to_bytes(4, "little")  # the last row's count: 'password', the only row
        data[-4:] = (1).to_bytes(4, "little")
        with open(path, "r+b") as fh:
            fh.write(data)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
        last = eventually(lambda: get_range(app), lambda r: r.status == 503, [], limit=20)
        assert last.status == 503
        assert [get_range(app).status for _ in range(5)] == [503] * 5
        assert status(app)["stores"]["sha1"]["state"] == "unavailable"

    def test_complete_copy_in_place_is_served_once_verified(
        self, served: tuple[RangeApp, Path], tmp_path: Path
    ) -> None:
        """Once a copy in place is complete and verifies, it is served: the 503 lasts only while it is wrong."""
        app, path = served
        get_range(app)
        shutil.copyfile(build_store(tmp_path / "new.store", 9, extra=3), path)
        seen: list[Reply] = []
        last = eventually(lambda: get_range(app), lambda r: r.body == body_for(9), seen)
        assert last.body == body_for(9)
        assert all((r.status, r.body) in ((200, body_for(7)), (503, r.body), (200, body_for(9))) for r in seen)
        assert all(r.status != 200 or r.body in (body_for(7), body_for(9)) for r in seen)


class TestLocalReaders:
    def test_store_lookup_on_a_shortened_file_is_an_artifact_error(self, tmp_path: Path) -> None:
        """A StoreChecker whose file was truncated raises ArtifactError (a CredcheckError), never SIGBUS."""
        path = build_store(tmp_path / "s.store", 7)
        with credcheck.open(path) as checker:
            assert checker.check(PASSWORD).count == 7
            os.truncate(path, 4096)
            with pytest.raises(ArtifactError, match="changed on disk"):
                checker.check(PASSWORD)

    def test_filter_batch_on_a_rewritten_file_is_an_artifact_error(self, tmp_path: Path) -> None:
        """BloomFilter.contains_many on a filter file rewritten in place raises ArtifactError."""
        bf = BloomFilter.create(100, 1e-3)
        bf.add(bytes.fromhex(DIGEST))
        bf.save(tmp_path / "f.bloom")
        with BloomFilter.open(tmp_path / "f.bloom") as opened:
            keys = np.frombuffer(bytes.fromhex(DIGEST), dtype=np.uint8).reshape(1, 20)
            assert opened.contains_many(keys).all()
            os.truncate(tmp_path / "f.bloom", 64)
            with pytest.raises(ArtifactError, match="changed on disk"):
                opened.contains_many(keys)


class TestGranianWorkers:
    """What each granian worker loads (_granian_app), called in this process with the parent's environment."""

    @pytest.fixture
    def parent_env(self, served: tuple[RangeApp, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
        app, path = served
        monkeypatch.setenv(_STORES_ENV, verified_identities(app.stores.values()))
        monkeypatch.setenv(_CACHE_ENV, "16")
        return path

    def test_worker_serves_the_verified_file(self, parent_env: Path) -> None:
        """A worker whose file is the one verified serves it."""
        worker = _granian_app()
        try:
            assert get_range(worker).body == body_for(7)
        finally:
            worker.close()

    def test_worker_refuses_a_corrupt_file_renamed_in_before_it_started(self, parent_env: Path, tmp_path: Path) -> None:
        """A corrupt store moved over the path before a worker (re)starts is verified there and not served."""
        bad = build_store(tmp_path / "bad.store", 9)
        data = bytearray(bad.read_bytes())
        data[-1] ^= 0x01
        bad.write_bytes(bytes(data))
        os.replace(bad, parent_env)
        worker = _granian_app()
        try:
            assert get_range(worker).status == 503
        finally:
            worker.close()

    def test_worker_refuses_an_in_place_edit_with_its_mtime_put_back(self, parent_env: Path) -> None:
        """An edit in place that restores size and mtime still changes the ctime: the worker verifies and refuses."""
        before = parent_env.stat()
        data = bytearray(parent_env.read_bytes())
        data[-1] ^= 0x01
        with open(parent_env, "r+b") as fh:
            fh.write(data)
        os.utime(parent_env, ns=(before.st_atime_ns, before.st_mtime_ns))
        worker = _granian_app()
        try:
            assert get_range(worker).status == 503
        finally:
            worker.close()

    def test_worker_after_an_update_serves_the_new_verified_file(self, parent_env: Path, tmp_path: Path) -> None:
        """A worker started after an atomic update serves the new build (the others reload to it too)."""
        os.replace(build_store(tmp_path / "new.store", 9), parent_env)
        worker = _granian_app()
        try:
            assert get_range(worker).body == body_for(9)
        finally:
            worker.close()


def test_granian_serves_a_path_with_a_colon(tmp_path: Path) -> None:
    """granian workers find a store whose path holds ':' (os.pathsep) instead of crash-looping."""
    pytest.importorskip("granian")
    path = build_store(tmp_path / "with:colon.store", 7)
    with running_server("granian", [path]) as server:
        reply = requests.get(f"{server.url}/range/{PREFIX}", timeout=10)
        assert (reply.status_code, reply.content) == (200, body_for(7))
