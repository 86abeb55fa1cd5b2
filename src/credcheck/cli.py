"""The ``credcheck`` command: build, check and demo. Thin: it parses, calls the library, and prints.

Every subcommand runs under the one runner (:mod:`credcheck._cli_runner`: stop signals, exit statuses, errors
as one line on standard error) and ``check`` reads its lines by the one bulk-input rule
(:mod:`credcheck._cli_input`). Exit status: 0 = done / nothing compromised, 1 = at least one password
compromised (``check``), 2 = an error, a line that could not be checked, or a stop (SIGINT, SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

from . import __version__, _cli_pairs
from ._cli_input import LineCheck, Unchecked, answer_lines
from ._cli_runner import EXIT_ERROR, EXIT_OK, Command, Stopped, run
from ._progress import Progress, phase_bars, shown
from ._report import counted
from .corpus import MAX_LINE_BYTES
from .errors import UsageError
from .hashing import hex_to_digest

CHECK_BATCH: Final = 4096  # lines asked of a local filter or store at once
API_BATCH: Final = 64  # lines asked of a range API at once (its ranges are kept until they are answered)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors exit 2 like every other error
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _build_unit(phase: str, done: int, total: int | None, lines: int) -> str:
    return "digests" if phase in ("merge",) or (phase == "write" and total and done == lines) else "B"


def _progress_bar(enabled: bool) -> Progress | None:
    """A tqdm bar per build phase when standard error is a terminal (and tqdm is installed)."""
    if not enabled or not sys.stderr.isatty():
        return None
    return phase_bars(_build_unit, show_lines=True)


def _cmd_build(args: argparse.Namespace) -> int:
    from .build import build

    if args.pairs:
        return _cli_pairs.cmd_build(args)
    if getattr(args, "key", None):  # a combo list without --pairs is a password build: a key would go unused
        raise UsageError("--key is the key of a pair build: give --pairs OUT too")
    if not args.filter and not args.store:
        raise UsageError("build needs --filter FILE and/or --store PATH (or --pairs OUT)")
    with shown(_progress_bar(not args.quiet)) as progress:
        report = _run_build(build, args, progress)
    if args.quiet or args.json:  # the summary, when printed, holds them already
        for warning in report.warnings:
            print(f"credcheck: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_dict()))
    elif not args.quiet:
        print(report.summary())
    return EXIT_OK


def _run_build(build: Callable[..., Any], args: argparse.Namespace, progress: Progress | None) -> Any:
    return build(
        args.sources,
        filter=args.filter,
        store=args.store,
        hash=args.hash,
        fp_rate=args.fp_rate,
        layout=args.layout,
        min_count=args.min_count,
        input_format=args.input_format,
        strict=args.strict,
        capacity=args.capacity,
        update=args.update,
        resume=args.resume,
        progress=progress,
    )


def _build_outputs(args: argparse.Namespace) -> Sequence[str | None]:
    return args.filter, args.store, args.pairs


def _build_kept(args: argparse.Namespace) -> str | None:
    return _cli_pairs.kept_after_stop(args) if args.pairs else None


def _open_checker(args: argparse.Namespace) -> Any:
    from . import open as open_source
    from .checker import FilterChecker

    options: dict[str, Any] = {} if args.min_count is None else {"min_count": args.min_count}
    if args.api:
        if not args.api.lower().startswith(("http://", "https://")):
            raise UsageError("--api takes the range API's http:// or https:// URL (e.g. http://127.0.0.1:8000)")
        options["hash"] = args.hash or "sha1"
        if args.timeout is not None:
            options["timeout"] = options["deadline"] = args.timeout
        # the ranges of a batch stay cached, so when one of them fails the others are not asked again
        return open_source(args.api, cache=API_BATCH, **options)
    if args.timeout is not None:
        raise UsageError("--timeout is for a range API (--api URL) or a pair service (--pairs URL)")
    if args.hash:
        options["hash"] = args.hash
    checker = open_source(args.filter or args.store, **options)
    given, actual = ("--filter", "--store") if args.filter else ("--store", "--filter")
    if isinstance(checker, FilterChecker) != bool(args.filter):
        checker.close()
        kind = "a range store"
        if isinstance(checker, FilterChecker):
            kind = "a Bloom filter" if checker.filter.layout == "bloom" else "a fuse filter"
        raise UsageError(f"{given} {args.filter or args.store}: this is {kind}; give it with {actual}")
    return checker


def _password_lines(checker: Any, args: argparse.Namespace) -> LineCheck:
    """How ``check`` reads passwords (or, with --hashes, hex digests) and shows their answers."""
    scheme = checker.scheme

    def password(line: bytes) -> bytes | Unchecked:
        if not line:
            return Unchecked("empty line")
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:  # as a build reads it: a bad line, never hashed as some other text
            return Unchecked("not UTF-8")
        return line

    def digest(line: bytes) -> str | Unchecked:
        try:
            text = line.decode("ascii").strip()
            hex_to_digest(text, scheme)
        except ValueError:  # UnicodeDecodeError too; its message could quote the line, ours does not
            return Unchecked(f"not a {scheme} hex digest")
        return text

    def show(answer: Any) -> str:
        if args.json:
            return json.dumps({"compromised": answer.compromised, "count": answer.count})
        if not answer.compromised:
            return "not found"
        return "compromised" if answer.count is None else f"compromised (seen {counted(answer.count, 'time')})"

    return LineCheck(
        parse=digest if args.hashes else password,
        ask=checker.check_hashes if args.hashes else checker.check_many,
        show=show,
        batch=API_BATCH if args.api else CHECK_BATCH,
        max_line=MAX_LINE_BYTES,
    )


def _cmd_check(args: argparse.Namespace) -> int:
    if args.pairs:
        return _cli_pairs.cmd_check(args)
    with _open_checker(args) as checker:
        return answer_lines(sys.stdin.buffer, _password_lines(checker, args), json_output=args.json)


_PREFIX = re.compile(r"[0-9A-Fa-f]{5}")


def _prefix_range(text: str) -> range:
    """Parse ``FIRST-LAST`` (exactly 5 hex digits each, FIRST <= LAST, inclusive) into a range of 20-bit prefixes."""
    parts = text.split("-")
    if len(parts) != 2 or not all(_PREFIX.fullmatch(part) for part in parts):
        raise argparse.ArgumentTypeError(
            f"expected FIRST-LAST as two 5-hex-digit prefixes (e.g. 00000-7FFFF), got {text!r}"
        )
    first, last = (int(part, 16) for part in parts)
    if first > last:
        raise argparse.ArgumentTypeError(f"the first prefix must not come after the last, got {text!r}")
    return range(first, last + 1)


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    bar = _progress_bar(not args.quiet)
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


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    if args.key and not args.pairs:
        raise UsageError("--key is the key of a pair store: give --pairs PATH too")
    if not args.store and not args.pairs:
        raise UsageError("serve needs --store PATH and/or --pairs PATH --key KEYFILE")
    if args.pairs and not args.key:
        raise UsageError("serve --pairs needs --key KEYFILE (the key the pair store was built with)")
    try:
        serve(
            args.store,
            args.host,
            args.port,
            workers=args.workers,
            threads=args.threads,
            server=args.server,
            pairs=args.pairs,
            key=args.key,
            rate=args.rate_limit,
            burst=args.burst,
            trust_forwarded_for=args.trust_forwarded_for,
            bodies=args.bodies,
        )
    except Stopped as stop:
        # A server's stop is its normal end, also while it starts (opening its stores, rendering their bodies
        # with --bodies wait): status 0, as for one while it serves (then its own runner takes the signals).
        print(f"credcheck: {stop.how} before serving", file=sys.stderr)
    return EXIT_OK


def _cmd_mirror(args: argparse.Namespace) -> int:
    from .mirror import DEFAULT_BASE_URL, mirror, progress_printer

    report = mirror(
        args.url or DEFAULT_BASE_URL,
        store=args.store,
        filter=args.filter,
        fp_rate=args.fp_rate,
        layout=args.layout,
        scheme=args.hash,
        workers=args.workers,
        prefixes=args.prefixes,
        resume=args.resume,
        update=args.update,
        replace=args.replace,
        progress=None if args.quiet else progress_printer(sys.stderr),
    )
    if args.json:
        print(json.dumps(report.as_dict()))
    elif not args.quiet:
        print(report.summary())
    return EXIT_OK


def _mirror_kept(args: argparse.Namespace) -> str | None:
    from .mirror import JOURNAL_SUFFIX

    journal = args.store + JOURNAL_SUFFIX
    if not os.path.exists(journal):
        return None
    how = "run the same command again" if args.resume else "add --resume to the same command"
    return f"the ranges fetched so far are kept in {journal}: {how} to go on from them"


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(sys.stdout)
    return EXIT_OK


def _cmd_keygen(args: argparse.Namespace) -> int:
    from .pairs.keys import write_key

    key = write_key(args.keyfile)
    print(f"wrote {args.keyfile} (mode 0600): key id {key.key_id.hex()}, public key {key.pk.hex()}")
    return EXIT_OK


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``credcheck`` command."""
    parser = _Parser(
        prog="credcheck",
        description="Has this password already leaked? Build filters and stores from leaked sets, check against them.",
        epilog="Exit status: 0 done (check: nothing compromised), 1 check found a compromised one, 2 an error, a line "
        "check could not answer, or a stop (Ctrl-C, SIGTERM, SIGHUP: worker processes stopped, temporary files and "
        "locks removed, nothing replaced; a pair build's finished chunks and a mirror's journal kept for --resume). "
        "serve exits 0 when stopped.",
    )
    from ._native import describe

    parser.add_argument("--version", action="version", version=f"credcheck {__version__} ({describe()})")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    b = sub.add_parser(
        "build",
        help="build a Bloom filter and/or a range store from leaked sets",
        description="Build a Bloom filter (--filter) and/or an exact range store (--store) from leaked sets: "
        "HIBP HEX:COUNT dumps (or HEX<TAB>COUNT, HEX,COUNT, quoted CSV), hash lists, plaintext password lists or "
        "combo lists (user:password); .gz/.bz2/.xz read transparently, - is stdin. "
        "Bad lines are counted and reported with their line numbers; artefacts are replaced atomically.",
    )
    b.add_argument("sources", nargs="+", metavar="SOURCE", help="input files, or - for standard input")
    b.add_argument("--filter", metavar="FILE", help="write a filter here (its layout: --layout)")
    b.add_argument("--store", metavar="PATH", help="write an exact range store here")
    b.add_argument("--hash", choices=("sha1", "ntlm"), default="sha1", help="hash scheme (default: sha1)")
    b.add_argument(
        "--input-format",
        choices=("auto", "hibp", "hash", "password", "combo", "combo-sha1"),
        default="auto",
        help="input format (default: auto, told from the first lines; mixed evidence, hash lines in a shape it "
        "does not read and user:password lines are refused with a message saying what to pass); combo: "
        "user:password lines, the passwords after the first ':' or tab go into --filter/--store (the default "
        "with --pairs); combo-sha1: user:SHA1HEX lines",
    )
    b.add_argument(
        "--fp-rate", type=float, default=1e-6, metavar="F", help="filter false-positive rate (default: 1e-6)"
    )
    b.add_argument(
        "--layout",
        choices=("bloom", "fuse"),
        help="the filter's layout: bloom (the default for a new filter) or fuse, a sharded binary fuse filter "
        "(about 22.5 bits a hash at 1e-6 instead of 28.8, three memory reads a lookup; updated only together "
        "with its --store, rebuilding just the shards that changed); --update keeps the existing filter's",
    )
    b.add_argument(
        "--min-count", type=int, metavar="N", help="keep hashes seen at least N times (default 1; kept on --update)"
    )
    b.add_argument(
        "--capacity",
        type=int,
        metavar="N",
        help="size the filter for N items (room for later merges; an --update with its --store grows it as needed)",
    )
    b.add_argument(
        "--update",
        action="store_true",
        help="merge the sources into the existing --store/--filter (counts summed) instead of replacing them",
    )
    b.add_argument("--strict", action="store_true", help="stop at the first bad line (exit 2) instead of counting it")
    b.add_argument("--json", action="store_true", help="print the build report as JSON")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no report")
    _cli_pairs.add_build_arguments(b)
    b.set_defaults(func=Command(_cmd_build, outputs=_build_outputs, kept=_build_kept))

    c = sub.add_parser(
        "check",
        help="check passwords read from standard input, one per line",
        description="Check passwords read from standard input (one per line; never pass them as arguments). "
        "Prints one line per input line, as each line arrives (a line that cannot be checked gets an error line, "
        "and its number on standard error). Exit status: 0 none compromised, 1 at least one compromised, "
        "2 an error or a line that could not be checked.",
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
    c.add_argument(
        "--min-count",
        type=int,
        metavar="N",
        help="compromised only if seen at least N times (default 1; a filter answers only its build's threshold)",
    )
    c.add_argument("--json", action="store_true", help='one JSON object per line: {"compromised": true, "count": 3}')
    _cli_pairs.add_check_arguments(c, src)
    c.set_defaults(func=Command(_cmd_check))

    s = sub.add_parser(
        "serve",
        help="serve range stores over HTTP, byte-compatible with the HIBP Pwned Passwords range API",
        description="Serve GET /range/{PREFIX} (?mode=ntlm for NTLM) from one SHA-1 and/or one NTLM store, "
        "exactly like the HIBP Pwned Passwords API, and/or the private pair service (GET /v1/pairs/config, "
        "POST /v1/pairs/query) from a pair store and its key. Uses granian or gunicorn when installed "
        "(pip install 'credcheck[all]'), else a threaded single-process server. Renders every range once, plain "
        "and gzip, into STORE.bodies beside each store unless a matching one is there (--bodies; docs/DEPLOY.md); "
        "until it is ready ranges are rendered per request. Stops on Ctrl-C or SIGTERM.",
    )
    s.add_argument(
        "--store",
        metavar="PATH",
        action="append",
        default=[],
        help="a range store built by credcheck build; give it once per hash scheme (SHA-1 and NTLM)",
    )
    _cli_pairs.add_serve_arguments(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    s.add_argument(
        "--server",
        choices=("auto", "granian", "gunicorn", "wsgiref"),
        default="auto",
        help="HTTP server (default: auto = the first installed of granian, gunicorn, wsgiref)",
    )
    s.add_argument(
        "--bodies",
        choices=("background", "wait", "off"),
        default="background",
        help="when to make each store's STORE.bodies side file (about 3x the store on disk): background (default: "
        "serve at once, render per request until it is ready), wait (make it before serving), off (never make one)",
    )
    s.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes (default: 1 per CPU core under granian, 2 under gunicorn)",
    )
    s.add_argument("--threads", type=int, default=4, metavar="N", help="gunicorn threads per worker (default: 4)")
    s.set_defaults(func=Command(_cmd_serve))

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
    e.add_argument(
        "--prefixes",
        type=_prefix_range,
        metavar="FIRST-LAST",
        help="export only this shard: two 5-hex prefixes, FIRST <= LAST",
    )
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    e.set_defaults(func=Command(_cmd_export, outputs=lambda args: (args.out,)))

    m = sub.add_parser(
        "mirror",
        help="copy a range API (HIBP, credcheck serve, a static export) into a local store and filter",
        description="Fetch every range (16^5 of them) from a HIBP-compatible API over a few keep-alive connections, "
        "validate each strictly, and write the store (and filter) atomically. A journal beside the store lets "
        "--resume continue an interrupted mirror; --update sends each range's ETag (an unchanged one costs a 304). "
        "An existing store is replaced or updated only if a mirror wrote it as it is: one changed since (a breach "
        "merged with build --update) is refused unless --replace, so nothing merged into it is dropped silently.",
    )
    m.add_argument("url", nargs="?", metavar="URL", help="the API base URL (default: the public Pwned Passwords API)")
    m.add_argument("--store", required=True, metavar="PATH", help="the store to write (its ETags go to PATH.etags)")
    m.add_argument("--filter", metavar="FILE", help="also write a filter sized for the hashes fetched")
    m.add_argument("--layout", choices=("bloom", "fuse"), default="bloom", help="the filter's layout (default: bloom)")
    m.add_argument("--fp-rate", type=float, default=1e-6, metavar="F", help="filter false-positive rate (default 1e-6)")
    m.add_argument("--hash", choices=("sha1", "ntlm"), default="sha1", help="hash scheme (ntlm asks ?mode=ntlm)")
    m.add_argument("--workers", type=int, default=8, metavar="N", help="concurrent connections (default: 8)")
    m.add_argument("--prefixes", type=_prefix_range, metavar="FIRST-LAST", help="mirror only this shard of prefixes")
    m.add_argument("--resume", action="store_true", help="continue an interrupted mirror from its journal")
    m.add_argument("--update", action="store_true", help="refresh the store: If-None-Match per range")
    m.add_argument(
        "--replace",
        action="store_true",
        help="replace (or update) a store no mirror wrote as it is now, dropping rows merged into its ranges",
    )
    m.add_argument("--json", action="store_true", help="print the report as JSON")
    m.add_argument("-q", "--quiet", action="store_true", help="no progress, no report")
    m.set_defaults(func=Command(_cmd_mirror, outputs=lambda args: (args.store, args.filter), kept=_mirror_kept))

    d = sub.add_parser("demo", help="the whole story end to end on the bundled data, offline")
    d.set_defaults(func=Command(_cmd_demo))

    k = sub.add_parser(
        "keygen",
        help="write a new random OPRF key for the credential-pair tier",
        description="Write a new random RFC 9497 ristretto255 key to KEYFILE, readable by its owner only (0600). "
        "Never overwrites a file. Keep it secret: with the key, a pair store can be attacked offline.",
    )
    k.add_argument("keyfile", metavar="KEYFILE", help="the new key file (must not exist)")
    k.set_defaults(func=Command(_cmd_keygen, outputs=lambda args: (args.keyfile,)))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``credcheck`` command; return its exit status."""
    args = make_parser().parse_args(argv)
    return run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
