"""Static ranges for any file server, object store or CDN: one file per prefix, at ``range/{PREFIX}``.

Every one of the 16^5 prefixes gets a file (empty where no hash has the prefix), byte for byte the body
``credcheck serve`` sends, so a static host answers the same ``GET /range/{PREFIX}`` URLs. An NTLM store
goes to ``ntlm/range/{PREFIX}`` (a static server maps ``?mode=ntlm`` there; docs/DEPLOY.md shows nginx).
Optionally each file gets a gzip twin (``.gz``, for nginx's ``gzip_static``) and fixed-size padding.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Collection, Sequence
from typing import Final

from . import _atomic
from .errors import StorageError, UsageError
from .store import PREFIXES, RangeStore

__all__ = ["ExportReport", "export"]

MARKER: Final = ".credcheck-export"
SUBDIR: Final = {"sha1": "range", "ntlm": os.path.join("ntlm", "range")}


class ExportReport:
    """What an export wrote: its ranges per scheme, the files and bytes written, and what they take on disk."""

    def __init__(self) -> None:
        self.files: dict[str, int] = {}  # ranges exported, per scheme
        self.written = 0  # files written: the ranges, their gzip twins and the export's marker
        self.bytes = 0  # bytes of the range files
        self.gzip_bytes = 0  # bytes of their gzip twins
        self.disk_bytes = 0  # what the files and directories take on disk (allocated blocks, as du counts them)
        self.block_size = 0  # the file system's block: each non-empty file takes at least one
        self.out = ""

    def summary(self) -> str:
        """What was exported where, the bytes written and the bytes they take on disk."""
        parts = [f"{count:,} {scheme} ranges" for scheme, count in self.files.items()]
        twins = f" and {self.gzip_bytes:,} of gzip twins" if self.gzip_bytes else ""
        return (
            f"exported {', '.join(parts)} to {self.out}: {self.written:,} files holding {self.bytes:,} bytes of "
            f"ranges{twins}; {self.disk_bytes:,} bytes on disk (each non-empty file takes at least a "
            f"{self.block_size:,}-byte block)"
        )

    def _wrote(self, name: str) -> None:
        """Count a file just written and closed (closed: a file system may trim blocks it had reserved)."""
        self.written += 1
        self.disk_bytes += _allocated(os.stat(name))


def _padding(store: RangeStore, real: list[bytes], target: int) -> list[bytes]:
    """Random ``SUFFIX:0`` lines bringing a range up to ``target`` lines (clients ignore count 0)."""
    taken = {line.split(b":", 1)[0] for line in real}
    pad: list[bytes] = []
    width = store.suffix_length
    while len(real) + len(pad) < target:
        suffix = secrets.token_hex((width + 1) // 2).upper()[:width].encode()
        if suffix not in taken:
            taken.add(suffix)
            pad.append(suffix + b":0")
    return pad


def export(
    stores: Sequence[RangeStore | str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    gzip_twins: bool = False,
    pad_to: int = 0,
    prefixes: Collection[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Write every range of every store under ``out`` (atomically: the directory appears complete or not at all).

    ``out`` must not exist, or be an earlier export (it is then replaced). ``pad_to`` pads every range
    with random count-0 lines to at least that many lines, so response sizes do not reveal a prefix's
    population; ``gzip_twins`` writes ``{PREFIX}.gz`` beside each file. ``prefixes`` (20-bit prefixes,
    e.g. a range) writes one shard of the export, for spreading it over several hosts or buckets.
    """
    shard = _shard(prefixes)
    target = os.path.abspath(os.fspath(out))
    if os.path.exists(target) and not os.path.exists(os.path.join(target, MARKER)):
        raise UsageError(f"{target} exists and is not a credcheck export; choose a new directory")
    opened = [s if isinstance(s, RangeStore) else RangeStore(s) for s in stores]
    schemes = [s.scheme for s in opened]
    if len(set(schemes)) != len(schemes):
        raise ValueError("give at most one store per hash scheme")
    report = ExportReport()
    report.out = target
    parent = os.path.dirname(target)
    try:
        os.makedirs(parent, exist_ok=True)
        work = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", dir=parent)
    except OSError as exc:  # no permission, no space, no inode left
        for store, given in zip(opened, stores, strict=True):
            if store is not given:
                store.close()
        raise StorageError(f"cannot write the export {target}: {exc.strerror or exc}") from exc
    try:
        total = len(opened) * len(shard)
        done = 0
        for store in opened:
            folder = os.path.join(work, SUBDIR[store.scheme])
            os.makedirs(folder)
            for prefix in shard:
                lines = store.range_lines(prefix)
                if pad_to:
                    lines = lines + _padding(store, lines, pad_to)
                body = b"\r\n".join(lines)
                name = os.path.join(folder, f"{prefix:05X}")
                with open(name, "wb") as fh:
                    report.bytes += fh.write(body)
                report._wrote(name)
                if gzip_twins:
                    with open(name + ".gz", "wb") as fh:
                        report.gzip_bytes += fh.write(gzip.compress(body, compresslevel=9, mtime=0))
                    report._wrote(name + ".gz")
                done += 1
                if progress is not None and (done % 4096 == 0 or done == total):
                    progress(done, total)
            report.files[store.scheme] = len(shard)
        with open(os.path.join(work, MARKER), "wb") as fh:
            fh.write(b"credcheck static export: range/{PREFIX} (SHA-1), ntlm/range/{PREFIX} (NTLM)\n")
        report._wrote(os.path.join(work, MARKER))
        folders = {work}  # a directory of a million names takes tens of megabytes too
        for store in opened:
            folder = os.path.join(work, SUBDIR[store.scheme])
            while folder != work:
                folders.add(folder)
                folder = os.path.dirname(folder)
        report.disk_bytes += sum(_allocated(os.stat(folder)) for folder in folders)
        report.block_size = os.statvfs(work).f_frsize
        os.chmod(work, 0o755)
        with _atomic.uninterrupted():  # stopped between its two renames, the old export would be gone too
            _swap_in(work, target)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise StorageError(f"cannot write the export {target}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        for store, given in zip(opened, stores, strict=True):
            if store is not given:
                store.close()
    return report


def _allocated(st: os.stat_result) -> int:
    """The bytes a file takes on disk: its allocated 512-byte units (its size where the platform has none)."""
    blocks = getattr(st, "st_blocks", None)
    return st.st_size if blocks is None else blocks * 512


def _shard(prefixes: Collection[int] | None) -> Sequence[int]:
    """The sorted prefixes to export, checked (without building a huge set) before anything is written."""
    if prefixes is None:
        return range(PREFIXES)
    if isinstance(prefixes, range) and prefixes.step == 1:
        shard: Sequence[int] = prefixes
    elif len(prefixes) > PREFIXES:
        raise ValueError(f"prefixes must lie in 0..{PREFIXES - 1} (got {len(prefixes):,} of them)")
    else:
        shard = sorted(set(prefixes))
    if not shard:
        raise ValueError("no prefixes to export (an empty shard would replace the export with nothing)")
    if not 0 <= shard[0] <= shard[-1] < PREFIXES:
        raise ValueError(f"prefixes must lie in 0..{PREFIXES - 1}")
    return shard


def _swap_in(work: str, target: str) -> None:
    """Put the finished export in place of ``target``, removing an earlier export only once it is replaced."""
    old = None
    if os.path.exists(target):
        old = target + ".old-" + secrets.token_hex(4)
        os.rename(target, old)
    try:
        os.rename(work, target)
    except OSError as exc:
        if old is not None:
            with contextlib.suppress(OSError):
                os.rename(old, target)
        raise StorageError(f"cannot move the export into {target}: {exc.strerror or exc}") from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
