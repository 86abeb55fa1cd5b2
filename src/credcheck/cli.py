"""The ``credcheck`` command: build, check and demo. Thin: it parses, calls the library, and prints.

Exit status: 0 = done / nothing compromised, 1 = at least one password compromised (``check``),
2 = an error, reported as one line on standard error without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from . import __version__
from .errors import CredcheckError

EXIT_OK, EXIT_COMPROMISED, EXIT_ERROR = 0, 1, 2
CHECK_BATCH = 4096


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors exit 2 like every other error
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _progress_bar(enabled: bool) -> Callable[[str, int, int | None, int], None] | None:
    """A tqdm bar per build phase when standard error is a terminal (and tqdm is installed)."""
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bars: dict[str, Any] = {}

    def update(phase: str, done: int, total: int | None, lines: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            for old in bars.values():
                old.close()
            unit = "digests" if phase in ("merge",) or (phase == "write" and total and done == lines) else "B"
            bar = bars[phase] = tqdm(total=total, desc=phase, unit=unit, unit_scale=True, leave=False)
        bar.update(done - bar.n)
        bar.set_postfix_str(f"{lines:,} lines", refresh=False)

    return update


def _cmd_build(args: argparse.Namespace) -> int:
    from .build import build

    if not args.filter and not args.store:
        raise CredcheckError("build needs --filter FILE and/or --store PATH")
    report = build(
        args.sources,
        filter=args.filter,
        store=args.store,
        hash=args.hash,
        fp_rate=args.fp_rate,
        min_count=args.min_count,
        input_format=args.input_format,
        strict=args.strict,
        capacity=args.capacity,
        update=args.update,
        progress=_progress_bar(not args.quiet),
    )
    if args.json:
        print(json.dumps(report.as_dict()))
    elif not args.quiet:
        print(report.summary())
    return EXIT_OK


def _passwords(stream: IO[bytes]) -> Iterator[list[bytes]]:
    """Batches of passwords read from a binary stream, one per line (a trailing CR dropped)."""
    batch: list[bytes] = []
    for line in stream:
        line = line.rstrip(b"\n")
        if line.endswith(b"\r"):
            line = line[:-1]
        batch.append(line)
        if len(batch) >= CHECK_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _open_checker(args: argparse.Namespace) -> Any:
    from . import open as open_source

    options: dict[str, Any] = {"min_count": args.min_count}
    if args.api:
        options["hash"] = args.hash or "sha1"
        return open_source(args.api, **options)
    checker = open_source(args.filter or args.store, **options)
    if args.hash and args.hash != checker.scheme:
        raise CredcheckError(f"the source holds {checker.scheme} hashes, not {args.hash}")
    return checker


def _check_batch(checker: Any, batch: list[bytes], hashes: bool, first_line: int) -> list[Any]:
    if not hashes:
        return list(checker.check_many(batch))
    try:
        return list(checker.check_hashes([line.decode("ascii").strip() for line in batch]))
    except (ValueError, UnicodeDecodeError):
        # find the line at fault, to name it (its content may be a secret: never echo it)
        for number, line in enumerate(batch, first_line):
            try:
                checker.check_hashes([line.decode("ascii").strip()])
            except (ValueError, UnicodeDecodeError):
                raise CredcheckError(f"standard input line {number}: not a {checker.scheme} hex digest") from None
        raise


def _cmd_check(args: argparse.Namespace) -> int:
    status = EXIT_OK
    line = 1
    with _open_checker(args) as checker:
        for batch in _passwords(sys.stdin.buffer):
            answers = _check_batch(checker, batch, args.hashes, line)
            line += len(batch)
            for exposure in answers:
                if exposure.compromised:
                    status = EXIT_COMPROMISED
                if args.json:
                    print(json.dumps({"compromised": exposure.compromised, "count": exposure.count}))
                elif exposure.compromised:
                    print("compromised" if exposure.count is None else f"compromised (seen {exposure.count:,} times)")
                else:
                    print("not found")
    return status


def _prefix_range(text: str) -> range:
    """Parse ``FIRST-LAST`` (5-hex prefixes, inclusive) into a range of 20-bit prefixes."""
    try:
        first, last = (int(part, 16) for part in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected FIRST-LAST as 5-hex prefixes (e.g. 00000-7FFFF), got {text!r}"
        ) from None
    return range(first, last + 1)


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    bar = _progress_bar(not args.quiet)
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


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    serve(args.store, args.host, args.port, workers=args.workers, threads=args.threads, server=args.server)
    return EXIT_OK


def _cmd_mirror(args: argparse.Namespace) -> int:
    from .mirror import DEFAULT_BASE_URL, mirror, progress_printer

    report = mirror(
        args.url or DEFAULT_BASE_URL,
        store=args.store,
        filter=args.filter,
        fp_rate=args.fp_rate,
        scheme=args.hash,
        workers=args.workers,
        prefixes=args.prefixes,
        resume=args.resume,
        update=args.update,
        progress=None if args.quiet else progress_printer(sys.stderr),
    )
    if args.json:
        print(json.dumps(report.as_dict()))
    elif not args.quiet:
        print(report.summary())
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(sys.stdout)
    return EXIT_OK


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``credcheck`` command."""
    parser = _Parser(
        prog="credcheck",
        description="Has this password already leaked? Build filters and stores from leaked sets, check against them.",
    )
    parser.add_argument("--version", action="version", version=f"credcheck {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    b = sub.add_parser(
        "build",
        help="build a Bloom filter and/or a range store from leaked sets",
        description="Build a Bloom filter (--filter) and/or an exact range store (--store) from leaked sets: "
        "HIBP HEX:COUNT dumps, hash lists or plaintext password lists; .gz/.bz2/.xz read transparently, - is stdin. "
        "Bad lines are counted and reported with their line numbers; artefacts are replaced atomically.",
    )
    b.add_argument("sources", nargs="+", metavar="SOURCE", help="input files, or - for standard input")
    b.add_argument("--filter", metavar="FILE", help="write a Bloom filter here")
    b.add_argument("--store", metavar="PATH", help="write an exact range store here")
    b.add_argument("--hash", choices=("sha1", "ntlm"), default="sha1", help="hash scheme (default: sha1)")
    b.add_argument(
        "--input-format",
        choices=("auto", "hibp", "hash", "password"),
        default="auto",
        help="input format (default: auto-detect from the first lines)",
    )
    b.add_argument(
        "--fp-rate", type=float, default=1e-6, metavar="F", help="filter false-positive rate (default: 1e-6)"
    )
    b.add_argument(
        "--min-count", type=int, metavar="N", help="keep hashes seen at least N times (default 1; kept on --update)"
    )
    b.add_argument("--capacity", type=int, metavar="N", help="size the filter for N items (room for later merges)")
    b.add_argument(
        "--update",
        action="store_true",
        help="merge the sources into the existing --store/--filter (counts summed) instead of replacing them",
    )
    b.add_argument("--strict", action="store_true", help="stop at the first bad line (exit 2) instead of counting it")
    b.add_argument("--json", action="store_true", help="print the build report as JSON")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no report")
    b.set_defaults(func=_cmd_build)

    c = sub.add_parser(
        "check",
        help="check passwords read from standard input, one per line",
        description="Check passwords read from standard input (one per line; never pass them as arguments). "
        "Prints one line per password. Exit status: 0 none compromised, 1 at least one compromised, 2 error.",
    )
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--filter", metavar="FILE", help="a Bloom filter built by credcheck build")
    src.add_argument("--store", metavar="PATH", help="a range store built by credcheck build")
    src.add_argument("--api", metavar="URL", help="a range API base URL (e.g. https://api.pwnedpasswords.com)")
    c.add_argument("--hash", choices=("sha1", "ntlm"), help="hash scheme (files record their own; --api default sha1)")
    c.add_argument(
        "--hashes",
        action="store_true",
        help="standard input holds hex digests of the scheme (e.g. an NTLM export for an audit), not passwords",
    )
    c.add_argument("--min-count", type=int, default=1, metavar="N", help="compromised only if seen at least N times")
    c.add_argument("--json", action="store_true", help='one JSON object per line: {"compromised": true, "count": 3}')
    c.set_defaults(func=_cmd_check)

    s = sub.add_parser(
        "serve",
        help="serve range stores over HTTP, byte-compatible with the HIBP Pwned Passwords range API",
        description="Serve GET /range/{PREFIX} (?mode=ntlm for NTLM) from one SHA-1 and/or one NTLM store, "
        "exactly like the HIBP Pwned Passwords API. Uses granian or gunicorn when installed "
        "(pip install 'credcheck[all]'), else a threaded single-process server. Stops on Ctrl-C or SIGTERM.",
    )
    s.add_argument(
        "--store",
        metavar="PATH",
        action="append",
        required=True,
        help="a range store built by credcheck build; give it once per hash scheme (SHA-1 and NTLM)",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    s.add_argument(
        "--server",
        choices=("auto", "granian", "gunicorn", "wsgiref"),
        default="auto",
        help="HTTP server (default: auto = the first installed of granian, gunicorn, wsgiref)",
    )
    s.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes (default: 1 per CPU core under granian, 2 under gunicorn)",
    )
    s.add_argument("--threads", type=int, default=4, metavar="N", help="gunicorn threads per worker (default: 4)")
    s.set_defaults(func=_cmd_serve)

    e = sub.add_parser(
        "export",
        help="write static ranges for a file server, object store or CDN",
        description="Write every range of the store(s) as a static file: DIR/range/{PREFIX} for SHA-1, "
        "DIR/ntlm/range/{PREFIX} for NTLM (map ?mode=ntlm there), byte for byte what credcheck serve sends. "
        "The directory appears complete or not at all.",
    )
    e.add_argument("--store", action="append", required=True, metavar="PATH", help="a store (once per hash scheme)")
    e.add_argument("--out", required=True, metavar="DIR", help="the export directory (new, or an earlier export)")
    e.add_argument("--gzip", action="store_true", help="also write PREFIX.gz beside each range (nginx gzip_static)")
    e.add_argument("--pad-to", type=int, default=0, metavar="N", help="pad every range to N lines with count-0 lines")
    e.add_argument("--prefixes", type=_prefix_range, metavar="FIRST-LAST", help="export only this shard of prefixes")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    e.set_defaults(func=_cmd_export)

    m = sub.add_parser(
        "mirror",
        help="copy a range API (HIBP, credcheck serve, a static export) into a local store and filter",
        description="Fetch every range (16^5 of them) from a HIBP-compatible API over a few keep-alive connections, "
        "validate each strictly, and write the store (and filter) atomically. A journal beside the store lets "
        "--resume continue an interrupted mirror; --update sends each range's ETag (an unchanged one costs a 304).",
    )
    m.add_argument("url", nargs="?", metavar="URL", help="the API base URL (default: the public Pwned Passwords API)")
    m.add_argument("--store", required=True, metavar="PATH", help="the store to write (its ETags go to PATH.etags)")
    m.add_argument("--filter", metavar="FILE", help="also write a Bloom filter sized for the hashes fetched")
    m.add_argument("--fp-rate", type=float, default=1e-6, metavar="F", help="filter false-positive rate (default 1e-6)")
    m.add_argument("--hash", choices=("sha1", "ntlm"), default="sha1", help="hash scheme (ntlm asks ?mode=ntlm)")
    m.add_argument("--workers", type=int, default=8, metavar="N", help="concurrent connections (default: 8)")
    m.add_argument("--prefixes", type=_prefix_range, metavar="FIRST-LAST", help="mirror only this shard of prefixes")
    m.add_argument("--resume", action="store_true", help="continue an interrupted mirror from its journal")
    m.add_argument("--update", action="store_true", help="refresh the store: If-None-Match per range")
    m.add_argument("--json", action="store_true", help="print the report as JSON")
    m.add_argument("-q", "--quiet", action="store_true", help="no progress, no report")
    m.set_defaults(func=_cmd_mirror)

    d = sub.add_parser("demo", help="the whole story end to end on the bundled data, offline")
    d.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``credcheck`` command; return its exit status."""
    args = make_parser().parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except (CredcheckError, ValueError, OSError) as exc:
        print(f"credcheck: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("credcheck: interrupted", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
