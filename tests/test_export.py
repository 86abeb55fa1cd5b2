"""Static export: one file per prefix, served by a plain static file server, answers like credcheck serve."""

from __future__ import annotations

import functools
import http.server
import io
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import credcheck
from credcheck import CredcheckError, build
from credcheck.cli import main
from credcheck.export import MARKER, export
from credcheck.hashing import ntlm_hex
from credcheck.store import RangeStore

from .conftest import LEAKED, sha1_upper

UNLEAKED = "surely-not-leaked-42!"
PREFIXES = sorted({int(sha1_upper(p)[:5], 16) for p in [*LEAKED, UNLEAKED]} | {0, 0xFFFFF})


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def store_path(hibp_file: Path, tmp_path: Path) -> Path:
    build([hibp_file], store=tmp_path / "s.store")
    return tmp_path / "s.store"


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Python's own static file server on 127.0.0.1, serving tmp_path/site."""
    root = tmp_path / "site"
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


class TestFiles:
    def test_files_equal_the_store_ranges(self, store_path: Path, tmp_path: Path) -> None:
        """Each exported file is byte for byte the store's range body, empty ones included."""
        export([store_path], tmp_path / "out", prefixes=PREFIXES)
        with RangeStore(store_path) as store:
            for prefix in PREFIXES:
                assert (tmp_path / "out" / "range" / f"{prefix:05X}").read_bytes() == store.range_body(prefix)
        assert (tmp_path / "out" / "range" / "00000").read_bytes() == b""
        assert (tmp_path / "out" / MARKER).exists()

    def test_padding_and_gzip_twins(self, store_path: Path, tmp_path: Path) -> None:
        """--pad-to fills every range with count-0 lines; the .gz twin decompresses to the same body."""
        import gzip

        export([store_path], tmp_path / "out", prefixes=PREFIXES, pad_to=50, gzip_twins=True)
        for prefix in PREFIXES:
            body = (tmp_path / "out" / "range" / f"{prefix:05X}").read_bytes()
            lines = body.split(b"\r\n")
            assert len(lines) == 50 and len({line.split(b":")[0] for line in lines}) == 50
            assert gzip.decompress((tmp_path / "out" / "range" / f"{prefix:05X}.gz").read_bytes()) == body

    def test_ntlm_goes_beside_sha1(self, store_path: Path, ntlm_hibp_file: Path, tmp_path: Path) -> None:
        """An NTLM store is exported to ntlm/range/ next to the SHA-1 ranges."""
        build([ntlm_hibp_file], store=tmp_path / "n.store", scheme="ntlm")
        prefix = int(ntlm_hex("Passw0rd!")[:5], 16)
        report = export([store_path, tmp_path / "n.store"], tmp_path / "out", prefixes=[prefix])
        assert report.files == {"sha1": 1, "ntlm": 1}
        assert ntlm_hex("Passw0rd!")[5:].encode() in (tmp_path / "out/ntlm/range" / f"{prefix:05X}").read_bytes()

    def test_refuses_a_foreign_directory(self, store_path: Path, tmp_path: Path) -> None:
        """An existing directory that is not an export is never overwritten."""
        (tmp_path / "home").mkdir()
        (tmp_path / "home" / "notes.txt").write_text("mine")
        with pytest.raises(CredcheckError, match="not a credcheck export"):
            export([store_path], tmp_path / "home", prefixes=[0])
        assert (tmp_path / "home" / "notes.txt").read_text() == "mine"

    def test_replaces_an_earlier_export_whole(self, store_path: Path, tmp_path: Path) -> None:
        """Exporting again over an earlier export replaces it; nothing of the old one or temp dirs remains."""
        export([store_path], tmp_path / "out", prefixes=[1, 2])
        export([store_path], tmp_path / "out", prefixes=[3])
        assert sorted(p.name for p in (tmp_path / "out" / "range").iterdir()) == ["00003"]
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or ".old-" in p.name]

    def test_cli_export(self, store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """credcheck export --prefixes writes that shard and reports it."""
        out = tmp_path / "cli-out"
        assert main(["export", "--store", str(store_path), "--out", str(out), "--prefixes", "5BAA0-5BAAF"]) == 0
        assert "16 sha1 ranges" in capsys.readouterr().out
        assert len(list((out / "range").iterdir())) == 16


class TestServedStatically:
    def test_checker_over_a_static_server(self, store_path: Path, static_server: tuple[str, Path]) -> None:
        """credcheck.open(url) over a plain static file server finds every leaked password with its count."""
        url, root = static_server
        export([store_path], root, prefixes=PREFIXES)
        with credcheck.open(url) as checker:
            results = checker.check_many([*LEAKED, UNLEAKED])
        assert [e.count for e in results] == [*range(1, len(LEAKED) + 1), 0]
        assert [e.compromised for e in results] == [True] * len(LEAKED) + [False]

    def test_missing_range_file_is_an_error_not_clean(self, store_path: Path, static_server: tuple[str, Path]) -> None:
        """A prefix whose file is missing (404) raises RemoteError instead of reading as not compromised."""
        url, root = static_server
        export([store_path], root, prefixes=[0])
        with credcheck.open(url) as checker, pytest.raises(credcheck.RemoteError):
            checker.check("password")


class TestShards:
    @pytest.mark.parametrize("prefixes", ["FFFFF-00000", "0-F", "0-FFFFFFF", "00000-FFFFFF", "00000", "0000G-00001"])
    def test_cli_refuses_a_bad_shard_and_keeps_the_export(
        self, store_path: Path, tmp_path: Path, prefixes: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--prefixes wants two 5-hex prefixes, the first not after the last; anything else leaves the export."""
        out = tmp_path / "site"
        export([store_path], out, prefixes=[1, 2])
        before = sorted(p.name for p in (out / "range").iterdir())
        with pytest.raises(SystemExit) as exit_info:
            main(["export", "--store", str(store_path), "--out", str(out), "--prefixes", prefixes, "-q"])
        assert exit_info.value.code == 2
        assert "--prefixes" in capsys.readouterr().err
        assert sorted(p.name for p in (out / "range").iterdir()) == before

    @pytest.mark.parametrize("prefixes", [range(0), [], range(0, 0x10000000), range(0xFFFFF, 0x100001)])
    def test_api_refuses_an_empty_or_out_of_range_shard(
        self, store_path: Path, tmp_path: Path, prefixes: range | list[int]
    ) -> None:
        """export() refuses an empty shard or prefixes past FFFFF with ValueError, at once and without writing."""
        with pytest.raises(ValueError, match="prefixes"):
            export([store_path], tmp_path / "site", prefixes=prefixes)
        assert not (tmp_path / "site").exists()

    def test_shard_is_exported(self, store_path: Path, tmp_path: Path) -> None:
        """A valid FIRST-LAST shard writes exactly those range files."""
        out = tmp_path / "site"
        assert main(["export", "--store", str(store_path), "--out", str(out), "--prefixes", "0000a-0000C", "-q"]) == 0
        assert sorted(p.name for p in (out / "range").iterdir()) == ["0000A", "0000B", "0000C"]


class TestReport:
    def test_summary_says_what_was_written(self, store_path: Path, tmp_path: Path) -> None:
        """The summary counts every file written and its bytes, the ranges' and the gzip twins' apart, and the
        bytes they take on disk as du counts them (whole blocks: a 20-byte twin takes a block)."""
        out = tmp_path / "out"
        report = export([store_path], out, gzip_twins=True, prefixes=PREFIXES)
        files = [path for path in out.rglob("*") if path.is_file()]
        twins = [path for path in files if path.suffix == ".gz"]
        ranges = [path for path in files if path.parent.name == "range" and not path.suffix]
        assert report.written == len(files) == 2 * len(PREFIXES) + 1
        assert report.bytes == sum(path.stat().st_size for path in ranges) > 0
        assert report.gzip_bytes == sum(path.stat().st_size for path in twins) > 0
        on_disk = sum(path.stat().st_blocks * 512 for path in [out, *out.rglob("*")])
        assert report.disk_bytes == on_disk
        summary = report.summary()
        assert f"{len(files):,} files holding {report.bytes:,} bytes of ranges and {report.gzip_bytes:,}" in summary
        assert f"; {on_disk:,} bytes on disk" in summary

    def test_progress_counts_ranges(
        self, store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """export's bar on a terminal counts ranges (ranges/s), not bytes and lines."""
        pytest.importorskip("tqdm")

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        assert (
            main(["export", "--store", str(store_path), "--out", str(tmp_path / "o"), "--prefixes", "00000-01FFF"]) == 0
        )
        drawn = terminal.getvalue()
        assert "ranges/s" in drawn and "/8192" in drawn  # of the 8,192 ranges (when it is redrawn is tqdm's)
        assert "B/s" not in drawn and "lines" not in drawn
        assert "exported 8,192 sha1 ranges" in capsys.readouterr().out
