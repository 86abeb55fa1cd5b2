"""``credcheck export`` and ``credcheck mirror``: a range API as files, both ways -- a store's ranges written out
for any static host, and any range API's ranges fetched into a store."""

from __future__ import annotations

import argparse
import os
import sys

from ..export import export
from ..mirror import DEFAULT_BASE_URL, DEFAULT_WORKERS, JOURNAL_SUFFIX, mirror, progress_printer
from . import _flags
from ._flags import AddParser, add
from ._progress import counting_bars, shown
from ._runner import EXIT_OK, Command, kept_for_resume

__all__ = ["add_commands"]


def add_commands(add_parser: AddParser) -> None:
    """Add ``export`` and ``mirror``."""
    e = add_parser(
        "export",
        help="write static ranges for a file server, object store or CDN",
        description="Write every range of the store(s) as a static file: DIR/range/{PREFIX} for SHA-1, "
        "DIR/ntlm/range/{PREFIX} for NTLM (map ?mode=ntlm there), byte for byte what credcheck serve sends. "
        "The directory appears complete or not at all.",
    )
    add(e, "--store", action="append", required=True, help="a range store (once per hash scheme)")
    e.add_argument("--out", required=True, metavar="DIR", help="the export directory (new, or an earlier export)")
    e.add_argument("--gzip", action="store_true", help="also write PREFIX.gz beside each range (nginx gzip_static)")
    e.add_argument("--pad-to", type=int, default=0, metavar="N", help="pad every range to N lines with count-0 lines")
    add(e, "--prefixes", help="export only this shard: two 5-hex prefixes, FIRST <= LAST")
    add(e, "--quiet", help="no progress bar, no summary")
    e.set_defaults(func=Command(_export, outputs=lambda args: (args.out,)))

    m = add_parser(
        "mirror",
        help="copy a range API (HIBP, credcheck serve, a static export) into a local store and filter",
        description="Fetch every range (16^5 of them) from a HIBP-compatible API over a few keep-alive connections, "
        "validate each strictly, and write the store (and filter) atomically. A journal beside the store lets "
        "--resume continue an interrupted mirror; --update sends each range's ETag (an unchanged one costs a 304). "
        "An existing store is replaced or updated only if a mirror wrote it as it is: one changed since (a breach "
        "merged with build --update) is refused unless --replace, so nothing merged into it is dropped silently.",
    )
    m.add_argument(
        "url",
        nargs="?",
        type=_flags.service_url,
        default=DEFAULT_BASE_URL,
        metavar="URL",
        help="the API's base URL (default: the public Pwned Passwords API)",
    )
    add(m, "--store", required=True, help="the range store to write (its ETags go to PATH.etags)")
    add(m, "--filter", help="also write a filter sized for the hashes fetched")
    add(m, "--layout", help="the filter's layout: bloom (the default) or fuse")
    add(m, "--fp-rate")
    add(m, "--hash", help="the hash scheme (default: sha1; ntlm asks ?mode=ntlm)")
    m.add_argument(
        "--connections",
        type=int,
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"ranges fetched at once, each over a keep-alive connection of its own (default: {DEFAULT_WORKERS})",
    )
    add(m, "--prefixes", help="mirror only this shard of prefixes")
    add(m, "--resume", help="continue an interrupted mirror from its journal")
    add(m, "--update", help="refresh the store: If-None-Match per range")
    m.add_argument(
        "--replace",
        action="store_true",
        help="replace (or update) a store no mirror wrote as it is now, dropping rows merged into its ranges",
    )
    add(m, "--json")
    add(m, "--quiet")
    m.set_defaults(func=Command(_mirror, outputs=lambda args: (args.store, args.filter), kept=_mirror_kept))


def _export(args: argparse.Namespace) -> int:
    """``credcheck export --store PATH --out DIR``."""
    bar = counting_bars("ranges", not args.quiet)
    with shown(bar):
        report = export(
            args.store,
            args.out,
            gzip_twins=args.gzip,
            pad_to=args.pad_to,
            prefixes=args.prefixes,
            progress=(lambda done, total: bar("export", done, total, done)) if bar else None,
        )
    if not args.quiet:
        print(report.summary())
    return EXIT_OK


def _mirror(args: argparse.Namespace) -> int:
    """``credcheck mirror [URL] --store PATH``."""
    report = mirror(
        args.url,
        store=args.store,
        filter=args.filter,
        workers=args.connections,
        prefixes=args.prefixes,
        resume=args.resume,
        update=args.update,
        replace=args.replace,
        progress=None if args.quiet else progress_printer(sys.stderr),
        **_flags.given(fp_rate=args.fp_rate, layout=args.layout, scheme=args.scheme),
    )
    _flags.show_report(args, report)
    return EXIT_OK


def _mirror_kept(args: argparse.Namespace) -> str | None:
    journal = args.store + JOURNAL_SUFFIX
    if not os.path.exists(journal):
        return None
    return kept_for_resume("the ranges fetched so far are", journal, resuming=args.resume)
