"""The bodies side file: every range rendered and compressed once, refused whenever it could give a wrong body."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import credcheck
from credcheck import ArtifactError
from credcheck.errors import StorageError
from credcheck.server import RangeApp, _bodyfile, make_app
from credcheck.server._bodies import Body
from credcheck.server._bodyfile import BodyFile, bodies_path, build_bodies, ensure_bodies
from credcheck.store import PREFIXES, RangeStore

from .helpers import Reply, call, running_server
from .test_server import KINDS

CROWDED = "ABCDE"


def write_store(path: Path, extra: int = 0, crowded: int = 40, count: int = 7) -> Path:
    """A SHA-1 store: ``crowded`` hashes under ABCDE (the first with ``count``) and ``extra`` spread ones."""
    lines = [
        f"{CROWDED}{hashlib.sha1(str(i).encode()).hexdigest()[5:]}:{count if i == 0 else i + 1}" for i in range(crowded)
    ]
    lines += [f"{hashlib.sha1(f'x{i}'.encode()).hexdigest()}:{i + 1}" for i in range(extra)]
    source = path.with_suffix(".txt")
    source.write_text("\n".join(lines) + "\n")
    credcheck.build([source], store=path)
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RangeStore]:
    opened = RangeStore(write_store(tmp_path / "s.store", extra=300))
    yield opened
    opened.close()


def rendered(store: RangeStore, prefix: int) -> Body:
    body = Body(store.range_body(prefix))
    body.gzip()
    return body


def until_side_file(app: RangeApp, limit: float = 60) -> dict[str, object]:
    """Ask /health until the SHA-1 store's bodies come from its side file (it is verified in the background)."""
    deadline = time.monotonic() + limit
    while True:
        state: dict[str, object] = json.loads(call(app, "/health").body)["stores"]["sha1"]
        if state.get("bodies") == "side file" or time.monotonic() > deadline:
            return state
        time.sleep(0.02)


def planted(store: RangeStore, monkeypatch: pytest.MonkeyPatch) -> str:
    """Write, beside ``store``, a side file made by the real writer from bodies where the crowded range's last
    line is left out: it names the store and every checksum in it is right."""
    render = RangeStore.range_body

    def short(self: RangeStore, prefix: int) -> bytes:
        body = render(self, prefix)
        return body.rsplit(b"\r\n", 1)[0] if prefix == int(CROWDED, 16) else body

    with monkeypatch.context() as patched:
        patched.setattr(RangeStore, "range_body", short)
        return build_bodies(store)


def rewrite_header(path: str, **fields: object) -> None:
    """Change header fields of a side file and sign the header again (a well-formed but wrong file)."""
    with open(path, "r+b") as fh:
        head = bytearray(fh.read(_bodyfile.HEADER_SIZE))
        names = ["magic", "version", "scheme", "pad", "record", "store_size", "store_digest", "data_size"]
        names += ["index_sum", "data_sum", "zlib"]
        values = dict(zip(names, _bodyfile._HEADER.unpack_from(head), strict=True))
        values.update(fields)
        _bodyfile._HEADER.pack_into(head, 0, *values.values())
        struct.pack_into(
            "<Q", head, _bodyfile._CHECKSUM_AT, xxhash.xxh3_64_intdigest(bytes(head[: _bodyfile._CHECKSUM_AT]))
        )
        fh.seek(0)
        fh.write(head)


class TestContent:
    def test_every_body_is_the_rendered_one(self, store: RangeStore) -> None:
        """For every prefix the side file holds exactly the body, gzip member, CRC and sync point the server makes."""
        side = BodyFile(store, build_bodies(store))
        try:
            empty = rendered(store, 0)
            for prefix in range(PREFIXES):
                got = side.body(prefix)
                want = rendered(store, prefix) if store.index[prefix + 1] > store.index[prefix] else empty
                assert (got.raw, got.gzipped, got.crc, got.deflated) == (
                    want.raw,
                    want.gzipped,
                    want.crc,
                    want.deflated,
                )
        finally:
            side.close()

    @settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.integers(1, 2**32 - 1), min_size=1, max_size=60))
    def test_bodies_match_any_counts(self, tmp_path: Path, counts: list[int]) -> None:
        """Whatever the counts (their digits set a body's length), the stored body equals the rendered one."""
        path = tmp_path / f"h{len(counts)}-{counts[0]}.store"
        lines = [f"{CROWDED}{hashlib.sha1(str(i).encode()).hexdigest()[5:]}:{c}" for i, c in enumerate(counts)]
        path.with_suffix(".txt").write_text("\n".join(lines) + "\n")
        credcheck.build([path.with_suffix(".txt")], store=path)
        with RangeStore(path) as opened:
            side = BodyFile(opened, build_bodies(opened))
            got, want = side.body(int(CROWDED, 16)), rendered(opened, int(CROWDED, 16))
            side.close()
        assert (got.raw, got.gzipped, got.crc, got.deflated) == (want.raw, want.gzipped, want.crc, want.deflated)


class TestRefused:
    """A side file that is not exactly the one made from the open store is refused at open, never half-used."""

    def test_corrupt_data_byte(self, store: RangeStore) -> None:
        """One flipped byte in a body: that range's body is not the one the store's rows give."""
        path = build_bodies(store)
        side = BodyFile(store, path)
        at = int(side.index[int(CROWDED, 16)]["plain_at"]) + 3
        side.close()
        with open(path, "r+b") as fh:
            fh.seek(at)
            byte = fh.read(1)
            fh.seek(at)
            fh.write(bytes([byte[0] ^ 1]))
        with pytest.raises(ArtifactError, match="range ABCDE are not the ones the store's rows give"):
            BodyFile(store, path)

    def test_truncated(self, store: RangeStore) -> None:
        """A side file cut short is refused by its size before anything is mapped."""
        path = build_bodies(store)
        os.truncate(path, os.path.getsize(path) - 1)
        with pytest.raises(ArtifactError, match="truncated"):
            BodyFile(store, path)

    def test_header_overwritten(self, store: RangeStore) -> None:
        """A header byte changed fails the header checksum."""
        path = build_bodies(store)
        with open(path, "r+b") as fh:
            fh.seek(20)
            fh.write(b"\xff")
        with pytest.raises(ArtifactError, match="header checksum"):
            BodyFile(store, path)

    def test_made_from_another_store(self, store: RangeStore, tmp_path: Path) -> None:
        """The side file of another store (same size and scheme even) is refused for this one."""
        with RangeStore(write_store(tmp_path / "other.store", extra=300, count=8)) as other:
            assert other.identity.size == store.identity.size
            path = build_bodies(other)
        with pytest.raises(ArtifactError, match="another store"):
            BodyFile(store, path)

    def test_other_zlib(self, store: RangeStore) -> None:
        """Bodies compressed by another zlib would break the strong ETag's promise of the same bytes: refused."""
        path = build_bodies(store)
        rewrite_header(path, zlib=b"0.0.1".ljust(16, b"\0"))
        with pytest.raises(ArtifactError, match="zlib"):
            BodyFile(store, path)

    def test_inconsistent_index_with_valid_checksums(self, store: RangeStore) -> None:
        """An index whose entries overlap is refused even when its checksum and the header's are right."""
        path = build_bodies(store)
        side = BodyFile(store, path)
        index = side.index.copy()
        side.close()
        prefix = int(CROWDED, 16)
        index[prefix]["plain_len"] -= 1
        with open(path, "r+b") as fh:
            fh.seek(_bodyfile.HEADER_SIZE)
            fh.write(index.tobytes())
        rewrite_header(path, index_sum=xxhash.xxh3_64_intdigest(index.tobytes()))
        with pytest.raises(ArtifactError, match="inconsistent"):
            BodyFile(store, path)

    def test_not_a_side_file(self, store: RangeStore) -> None:
        """Any other file at the side file's path is refused by its magic."""
        path = bodies_path(store.path)
        Path(path).write_bytes(b"\0" * 4096)
        with pytest.raises(ArtifactError, match="not a credcheck bodies file"):
            BodyFile(store, path)

    def test_planted_file_that_leaves_a_line_out_is_refused(
        self, store: RangeStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A side file that names the store, with every checksum right, whose body of one range leaves a line out
        (what someone who can write the directory but not the store could plant) is refused at open."""
        planted(store, monkeypatch)
        with pytest.raises(ArtifactError, match="range ABCDE are not the ones the store's rows give"):
            BodyFile(store)

    @pytest.mark.parametrize("field", ["crc", "deflated"])
    def test_gzip_record_fields_are_checked(self, store: RangeStore, field: str) -> None:
        """A record whose CRC or sync point is off (padded answers continue the stream there) is refused, even
        with the index checksum and the header signed again."""
        path = build_bodies(store)
        raw = bytearray(Path(path).read_bytes())
        index = np.frombuffer(raw, dtype=_bodyfile.RECORD, count=PREFIXES, offset=_bodyfile.HEADER_SIZE).copy()
        index[int(CROWDED, 16)][field] -= 1
        raw[_bodyfile.HEADER_SIZE : _bodyfile.DATA_AT] = index.tobytes()
        Path(path).write_bytes(bytes(raw))
        rewrite_header(path, index_sum=xxhash.xxh3_64_intdigest(index.tobytes()))
        with pytest.raises(ArtifactError, match="range ABCDE"):
            BodyFile(store, path)

    def test_gzip_member_that_gives_another_body_is_refused(self, store: RangeStore) -> None:
        """A gzip member swapped for the gzip of a body one line short (checksums made right) is refused."""
        path = build_bodies(store)
        side = BodyFile(store, path)
        record = side.index[int(CROWDED, 16)].copy()
        side.close()
        want = store.range_body(int(CROWDED, 16))
        shorter = Body(want.rsplit(b"\r\n", 1)[0] + b"\r\n" + want.rsplit(b"\r\n", 1)[1][:-1] + b"1").gzip()
        assert len(shorter) == int(record["gzip_len"])  # the same length: the layout stays consistent
        with open(path, "r+b") as fh:
            fh.seek(int(record["gzip_at"]))
            fh.write(shorter)
        with pytest.raises(ArtifactError, match="range ABCDE"):
            BodyFile(store, path)

    def test_gzip_member_whose_stream_ends_at_its_sync_point_is_refused(self, store: RangeStore) -> None:
        """A gzip member of the right body whose deflate stream ends (a final block) at its sync point answers the
        unpadded request right, but every padded one unreadably (the padding would follow the stream's end):
        it is not the member the side file's check accepts."""
        raw = store.range_body(int(CROWDED, 16))
        deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_HUFFMAN_ONLY)
        head = deflater.compress(raw) + deflater.flush(zlib.Z_SYNC_FLUSH) + b"\x01\x00\x00\xff\xff"  # final, empty
        member = Body(raw).gzip()[:10] + head + struct.pack("<II", zlib.crc32(raw), len(raw))
        assert gzip.decompress(member) == raw
        with pytest.raises(gzip.BadGzipFile):
            gzip.decompress(Body(raw, member, zlib.crc32(raw), len(head)).gzip_padded(b"\r\n" + b"0" * 35 + b":0"))
        assert not Body.holds(raw, member, zlib.crc32(raw), len(head))

    def test_world_writable_file_is_not_mapped(self, store: RangeStore) -> None:
        """A side file every user may write could be cut short under the map (a SIGBUS): not used."""
        path = build_bodies(store)
        os.chmod(path, 0o666)
        with pytest.raises(ArtifactError, match="every user may write it"):
            BodyFile(store, path)

    @pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root")
    def test_file_of_another_user_is_not_mapped(self, store: RangeStore) -> None:
        """A side file that belongs to neither this user nor the store's owner is not mapped at all."""
        path = build_bodies(store)
        os.chown(path, 54321, -1)
        with pytest.raises(ArtifactError, match="belongs to user 54321"):
            BodyFile(store, path)

    def test_missing_is_file_not_found(self, store: RangeStore) -> None:
        """No side file is a FileNotFoundError the server takes as "render per request"."""
        with pytest.raises(FileNotFoundError):
            BodyFile(store)


class TestBuild:
    def test_second_builder_is_refused_while_one_writes(self, store: RangeStore) -> None:
        """Two builders never write one side file at once: the second fails at once, naming the lock."""
        from credcheck import _atomic

        with _atomic.lock_beside([bodies_path(store.path)]), pytest.raises(StorageError, match="lock"):
            build_bodies(store)
        assert not os.path.exists(bodies_path(store.path))

    def test_failed_build_leaves_the_old_file(self, store: RangeStore, monkeypatch: pytest.MonkeyPatch) -> None:
        """A build that fails halfway leaves the previous side file as it was, and no temporary file."""
        path = build_bodies(store)
        before = Path(path).read_bytes()

        def broken(self: RangeStore, prefix: int) -> bytes:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(RangeStore, "range_body", broken)
        with pytest.raises(StorageError, match="No space"):
            build_bodies(store)
        assert Path(path).read_bytes() == before
        assert sorted(os.listdir(os.path.dirname(path))) == ["s.store", "s.store.bodies", "s.txt"]

    def test_ensure_remakes_a_stale_file(self, store: RangeStore, tmp_path: Path) -> None:
        """ensure_bodies replaces a side file made from another store with this store's."""
        with RangeStore(write_store(tmp_path / "other.store", extra=300, count=8)) as other:
            Path(bodies_path(store.path)).write_bytes(Path(build_bodies(other)).read_bytes())
        assert ensure_bodies(store) == bodies_path(store.path)
        BodyFile(store).close()


class TestServed:
    def test_app_serves_the_side_files_bytes(self, store: RangeStore) -> None:
        """With the side file in use, plain, gzip and padded gzip answers are those of the store."""
        build_bodies(store)
        app = make_app(store)
        try:
            assert until_side_file(app)["bodies"] == "side file"
            want = store.range_body(int(CROWDED, 16))
            assert call(app, f"/range/{CROWDED}").body == want
            assert gzip.decompress(call(app, f"/range/{CROWDED}", headers={"Accept-Encoding": "gzip"}).body) == want
            padded = call(app, f"/range/{CROWDED}", headers={"Accept-Encoding": "gzip", "Add-Padding": "true"})
            assert gzip.decompress(padded.body).startswith(want + b"\r\n")
        finally:
            app.close()

    def test_requests_do_not_render_once_the_side_file_is_used(
        self, store: RangeStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the side file verified, plain and gzip answers come from it: the store is not rendered."""
        build_bodies(store)
        app = make_app(store, cache_size=0)
        try:
            until_side_file(app)
            want = store.range_body(int(CROWDED, 16))

            def render(self: RangeStore, prefix: int) -> bytes:
                raise AssertionError("rendered from the store")

            monkeypatch.setattr(RangeStore, "range_body", render)
            assert call(app, f"/range/{CROWDED}").body == want
            assert gzip.decompress(call(app, f"/range/{CROWDED}", headers={"Accept-Encoding": "gzip"}).body) == want
        finally:
            app.close()

    def test_corrupt_side_file_at_start_is_not_used(self, store: RangeStore) -> None:
        """A side file that fails its checks is never used: bodies are rendered from the store, and /health says so."""
        path = build_bodies(store)
        with open(path, "r+b") as fh:
            fh.seek(os.path.getsize(path) - 5)
            fh.write(b"\xff" * 5)  # the last member's trailer (zeros: an empty range's CRC and length)
        app = make_app(store)
        try:
            deadline = time.monotonic() + 30
            while (state := json.loads(call(app, "/health").body)["stores"]["sha1"])["bodies"] != "rendered":
                assert state["bodies"] != "side file" and time.monotonic() < deadline
                time.sleep(0.01)
            want = store.range_body(int(CROWDED, 16))
            assert call(app, f"/range/{CROWDED}").body == want
            assert gzip.decompress(call(app, f"/range/{CROWDED}", headers={"Accept-Encoding": "gzip"}).body) == want
        finally:
            app.close()

    @pytest.mark.parametrize("build", [False, True], ids=["bodies-off", "bodies-on"])
    def test_planted_side_file_is_never_answered_from(
        self, store: RangeStore, monkeypatch: pytest.MonkeyPatch, build: bool
    ) -> None:
        """Beside a verified store, a planted side file with valid checksums that leaves a line out of a range:
        the server answers that range from the store (with --bodies off too); with --bodies on it makes its own."""
        path = planted(store, monkeypatch)
        want = store.range_body(int(CROWDED, 16))
        app = make_app(store, build_bodies=build)
        try:
            deadline = time.monotonic() + 30
            settled = 0  # answers since the server's attempt at the side file ended
            while settled < 20:
                assert time.monotonic() < deadline
                assert call(app, f"/range/{CROWDED}").body == want
                assert gzip.decompress(call(app, f"/range/{CROWDED}", headers={"Accept-Encoding": "gzip"}).body) == want
                state = json.loads(call(app, "/health").body)["stores"]["sha1"]["bodies"]
                served = app._live["sha1"].served
                assert served is not None
                tag = served.tag
                if (
                    tag not in app._bodies._loading
                    and tag in app._bodies._next_try
                    and (not build or state == "side file")
                ):
                    settled += 1
                time.sleep(0.01)
            assert state == ("side file" if build else "rendered")
            if build:  # replaced by the server's own, which holds the line
                BodyFile(store, path).close()
        finally:
            app.close()

    def test_side_file_written_in_place_is_dropped(self, store: RangeStore) -> None:
        """A side file overwritten while served is no longer read: bodies are rendered from the store again."""
        path = build_bodies(store)
        app = make_app(store)
        try:
            until_side_file(app)
            with open(path, "r+b") as fh:  # garbage where the bodies are
                fh.seek(_bodyfile.DATA_AT)
                fh.write(b"X" * (os.path.getsize(path) - _bodyfile.DATA_AT))
            os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
            assert call(app, f"/range/{CROWDED}").body == store.range_body(int(CROWDED, 16))
            assert json.loads(call(app, "/health").body)["stores"]["sha1"]["bodies"] == "rendered"
        finally:
            app.close()

    def test_side_file_written_in_place_with_its_times_set_back_is_dropped(self, store: RangeStore) -> None:
        """A side file rewritten in place, same size, its mtime set back to what it was (``rsync --inplace -t``,
        ``touch -r``), is no longer read: its change time moved, and no program can set that back."""
        path = build_bodies(store)
        app = make_app(store)
        try:
            until_side_file(app)
            want = store.range_body(int(CROWDED, 16))
            assert call(app, f"/range/{CROWDED}").body == want
            before = os.stat(path)
            record = np.frombuffer(
                Path(path).read_bytes()[_bodyfile.HEADER_SIZE : _bodyfile.DATA_AT], dtype=_bodyfile.RECORD
            )[int(CROWDED, 16)]
            at, length = int(record["plain_at"]), int(record["plain_len"])
            with open(path, "r+b") as fh:  # another body of the same length where this range's plain body is
                fh.seek(at)
                fh.write(want[:-1] + (b"0" if want[-1:] != b"0" else b"1"))
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
            assert os.stat(path).st_mtime_ns == before.st_mtime_ns and length == len(want)
            assert call(app, f"/range/{CROWDED}").body == want
        finally:
            app.close()

    def test_replaced_store_is_served_with_its_own_bodies(self, tmp_path: Path) -> None:
        """A store renamed over the served one never gets the old side file's bodies; it gets its own once made."""
        path = write_store(tmp_path / "live.store", extra=50, count=7)
        with RangeStore(path) as first:
            build_bodies(first)
        app = make_app(path, build_bodies=True)
        try:
            until_side_file(app)
            old = call(app, f"/range/{CROWDED}").body
            new_path = write_store(tmp_path / "next.store", extra=50, count=9)
            os.replace(new_path, path)  # the old side file stays beside it, stale
            with RangeStore(path) as second:
                want = second.range_body(int(CROWDED, 16))
            assert want != old
            seen: list[Reply] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                seen.append(call(app, f"/range/{CROWDED}", headers={"Accept-Encoding": "gzip"}))
                state = json.loads(call(app, "/health").body)["stores"]["sha1"]
                if seen[-1].body and gzip.decompress(seen[-1].body) == want and state["bodies"] == "side file":
                    break
                time.sleep(0.02)
            bodies = {gzip.decompress(reply.body) for reply in seen}
            assert bodies <= {old, want} and want in bodies
            by_etag = {(reply.headers["etag"], gzip.decompress(reply.body)) for reply in seen}
            assert len(by_etag) == len({etag for etag, _ in by_etag}) == 2  # each version's ETag with its own body
            assert state["bodies"] == "side file"
            with RangeStore(path) as second:
                BodyFile(second).close()  # the side file beside it was made again, for the new store
        finally:
            app.close()

    def test_serve_makes_the_side_file(self, tmp_path: Path) -> None:
        """prepare_bodies (what credcheck serve runs before its workers start) writes a verified side file."""
        path = write_store(tmp_path / "s.store", extra=20)
        app = make_app(path, build_bodies=True)
        try:
            app.prepare_bodies()
            with RangeStore(path) as opened:
                BodyFile(opened).close()
        finally:
            app.close()


def test_gzip_member_has_mtime_zero_and_no_name(store: RangeStore) -> None:
    """Stored gzip members carry no time or name, so every server sends the same bytes for one ETag."""
    side = BodyFile(store, build_bodies(store))
    member = side.body(int(CROWDED, 16)).gzipped
    side.close()
    assert member is not None and member[3] == 0 and member[4:8] == b"\0\0\0\0"
    assert zlib.decompress(member, 31) == store.range_body(int(CROWDED, 16))


def test_no_side_file_is_made_for_a_store_replaced_at_its_path(store: RangeStore, tmp_path: Path) -> None:
    """A worker still serving the previous store does not overwrite the new store's side file with its own."""
    path = Path(store.path)
    os.replace(write_store(tmp_path / "next.store", extra=300, count=9), path)
    with RangeStore(path) as new:
        build_bodies(new)
        assert ensure_bodies(store) is None
        BodyFile(new).close()  # still the new store's


def test_a_worker_waits_quietly_while_another_makes_the_side_file(
    store: RangeStore, caplog: pytest.LogCaptureFixture
) -> None:
    """While another process holds the side file's lock, ensure_bodies gives None and logs no warning."""
    from credcheck import _atomic

    caplog.set_level("WARNING", logger="credcheck.server")
    with _atomic.lock_beside([bodies_path(store.path)]):
        assert ensure_bodies(store) is None
    assert caplog.messages == []
    assert ensure_bodies(store) == bodies_path(store.path)


@pytest.mark.parametrize("kind", KINDS)
def test_serve_makes_and_uses_the_side_file_in_every_worker(tmp_path: Path, kind: str) -> None:
    """credcheck serve (granian, gunicorn, wsgiref) answers at once, makes the side file, and every worker uses it."""
    if kind != "wsgiref":
        pytest.importorskip(kind)
    path = write_store(tmp_path / "s.store", extra=50)
    with RangeStore(path) as opened:
        want = opened.range_body(int(CROWDED, 16))
    with running_server(kind, [path]) as running:
        deadline, states = time.monotonic() + 60, []
        while time.monotonic() < deadline:  # new connections spread over the workers
            # answered at once (rendered) while a worker makes the side file in the background
            assert requests.get(f"{running.url}/range/{CROWDED}", timeout=10).content == want
            states.append(requests.get(f"{running.url}/health", timeout=10).json()["stores"]["sha1"]["bodies"])
            if states[-20:] == ["side file"] * 20:
                break
            time.sleep(0.05)
        assert states[-20:] == ["side file"] * 20
        with RangeStore(path) as opened:
            BodyFile(opened).close()  # the side file the workers made is there and verifies
        assert requests.get(f"{running.url}/range/{CROWDED}", timeout=10).content == want


def test_no_room_on_the_disk_makes_no_side_file(store: RangeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without room for it on the disk, no side file is started (no temporary file fills the disk): None."""
    monkeypatch.setattr(_bodyfile, "_needed_bytes", lambda store: 1 << 62)
    assert ensure_bodies(store) is None
    assert sorted(os.listdir(os.path.dirname(store.path))) == ["s.store", "s.txt"]


def test_a_failing_side_file_is_tried_again_later_and_later(store: RangeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A side file that cannot be made (a full disk) is not made again on every request: after each failure the
    wait before the next attempt doubles, up to an hour; requests meanwhile start no attempt."""
    attempts: list[str] = []

    def failing(store: RangeStore, target: str) -> None:
        attempts.append(target)

    monkeypatch.setattr(_bodyfile, "_make", failing)
    files = _bodyfile.BodyFiles(build=True, retry=1.0)
    waits = []
    try:
        for n in range(1, 15):
            assert files.get("sha1-tag", store) is None
            deadline = time.monotonic() + 30
            while "sha1-tag" in files._loading and time.monotonic() < deadline:
                time.sleep(0.001)
            assert len(attempts) == n
            for _ in range(50):  # requests while it waits start nothing
                assert files.get("sha1-tag", store) is None
            assert len(attempts) == n
            assert files._next_try["sha1-tag"] > time.monotonic()
            waits.append(files._delay["sha1-tag"])  # the wait after the next failure
            files._next_try["sha1-tag"] = 0.0  # as if this wait were over
    finally:
        files.close()
    assert waits == [min(2.0**i, _bodyfile.MAX_RETRY) for i in range(1, 15)]
