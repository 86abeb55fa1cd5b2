"""BuildReport: what a password build read, merged, dropped and wrote, in numbers that add up."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ._corpus import SourceStats

__all__ = ["BuildReport", "counted"]


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """A number with its noun in the right number: ``1 bad line``, ``0 bad lines``, ``1,204 hashes``."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {plural or noun + 's'}"


@dataclasses.dataclass(slots=True)
class BuildReport:
    """What a build read, merged, dropped and wrote.

    The numbers add up: ``lines_read + carried == kept + below_min_count + duplicates_merged + bad_lines``,
    where ``carried`` counts the hashes an update started from (0 for a fresh build).
    """

    scheme: str
    min_count: int
    sources: list[SourceStats]
    lines_read: int = 0
    bad_lines: int = 0
    hashes_read: int = 0
    duplicates_merged: int = 0
    distinct: int = 0
    below_min_count: int = 0
    kept: int = 0
    sorted_input: bool = True
    updated: bool = False
    carried: int = 0
    added: int = 0
    raised: int = 0
    filter_resized_from: int = 0
    filter_layout: str = "bloom"
    shards_built: int = 0
    shards_reused: int = 0
    shards_resumed: int = 0
    warnings: list[str] = dataclasses.field(default_factory=list)
    filter_path: str | None = None
    store_path: str | None = None
    seconds: float = 0.0

    def reconciles(self) -> bool:
        """True when every line read is accounted for exactly once."""
        accounted = self.kept + self.below_min_count + self.duplicates_merged + self.bad_lines
        return self.lines_read + self.carried == accounted

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """A short human-readable account of the build."""
        rate = self.lines_read / self.seconds if self.seconds else 0.0
        kept = [counted(self.kept, f"{self.scheme} hash", f"{self.scheme} hashes")]
        if self.duplicates_merged:
            kept.append(f"merged {counted(self.duplicates_merged, 'duplicate')}")
        if self.below_min_count:  # (only with a min_count of 2 or more: "times")
            kept.append(
                f"dropped {counted(self.below_min_count, 'hash', 'hashes')} seen fewer than {self.min_count} times"
            )
        kept.append(counted(self.bad_lines, "bad line"))  # (said even when 0: the first thing a reader looks for)
        lines = [
            f"read {counted(self.lines_read, 'line')} from {counted(len(self.sources), 'source')} in "
            f"{self.seconds:.2f} s ({rate:,.0f} lines/s)",
            "  kept " + "; ".join(kept),
        ]
        if self.updated:
            lines.append(
                f"  update: {counted(self.added, 'new hash', 'new hashes')}, {self.raised:,} already known"
                + (f" (counts summed into the {self.carried:,} the store held)" if self.carried else "")
            )
        if self.filter_resized_from:
            lines.append(
                f"  filter rebuilt larger from the merged store: capacity {self.filter_resized_from:,} -> "
                f"{self.kept:,} hashes, false-positive rate kept"
            )
        if self.filter_layout == "fuse" and self.filter_path:
            lines.append(
                f"  fuse filter: {self.shards_built:,} shard(s) built"
                + (f", {self.shards_reused:,} unchanged and copied" if self.shards_reused else "")
                + (f", {self.shards_resumed:,} taken from the interrupted build" if self.shards_resumed else "")
            )
        for stats in self.sources:
            header = "; line 1 is a column header" if stats.header else ""
            shape = f", {stats.shape} lines" if stats.shape else ""
            lines.append(f"  {stats.name}: read as {stats.input_format} ({self.scheme}{shape}){header}")
            if stats.bad_lines:
                shown = ", ".join(map(str, stats.bad_line_numbers))
                more = ", ..." if stats.bad_lines > len(stats.bad_line_numbers) else ""
                lines.append(
                    f"  {stats.name}: {counted(stats.bad_lines, 'bad line')} ({stats.input_format}): "
                    f"line{'s' if len(stats.bad_line_numbers) > 1 else ''} {shown}{more}"
                )
        lines.extend(f"  warning: {warning}" for warning in self.warnings)
        for label, path in (("filter", self.filter_path), ("store", self.store_path)):
            if path:
                lines.append(f"  wrote {label} {path} ({os.path.getsize(path):,} bytes)")
        return "\n".join(lines)
