"""``credcheck build`` and ``credcheck check``: the password tier's filters and range stores."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Final

from .._corpus import COMBO_FORMATS, FORMATS, MAX_LINE_BYTES
from .._report import counted
from .._sources import open as open_source
from ..build import build
from ..checker import Checker, Exposure, FilterChecker
from ..errors import UsageError
from ..fuse import partial_path
from ..hashing import hex_to_digest
from . import _flags
from ._flags import AddParser, add
from ._input import LineCheck, Unchecked, answer_lines
from ._progress import build_progress, shown
from ._runner import EXIT_OK, Command, kept_for_resume

__all__ = ["API_BATCH", "CHECK_BATCH", "add_commands"]

CHECK_BATCH: Final = 4096  # lines asked of a local filter or store at once
API_BATCH: Final = 64  # lines asked of a range API at once (its ranges are kept until they are answered)


def add_commands(add_parser: AddParser) -> None:
    """Add ``build`` and ``check``."""
    b = add_parser(
        "build",
        help="build a Bloom filter and/or a range store from leaked sets",
        description="Build a filter (--filter, a Bloom or a fuse filter) and/or an exact range store (--store) "
        "from leaked sets: "
        "HIBP HEX:COUNT dumps (or HEX<TAB>COUNT, HEX,COUNT, quoted CSV), hash lists, plaintext password lists or "
        "the passwords of combo lists (user:password); .gz/.bz2/.xz read transparently, - is stdin. "
        "Bad lines are counted and reported with their line numbers; artefacts are replaced atomically.",
        epilog="A credential-pair store from combo lists: credcheck pairs build.",
    )
    b.add_argument("sources", nargs="+", metavar="SOURCE", help="input files, or - for standard input")
    _flags.add_password_outputs(b, writes="the hashes")
    add(
        b,
        "--input-format",
        choices=FORMATS + COMBO_FORMATS,
        default="auto",
        help="input format (default: auto, told from the first lines; mixed evidence, hash lines in a shape it "
        "does not read and user:password lines are refused with a message saying what to pass); combo: "
        "user:password lines, the passwords after the first ':' or tab; combo-sha1: user:SHA1HEX lines",
    )
    add(b, "--resume", help="take the finished shards of an interrupted --layout fuse build instead of redoing them")
    add(b, "--strict")
    add(b, "--json")
    add(b, "--quiet", help="no progress bar, no report")
    b.set_defaults(func=Command(_build, outputs=lambda args: (args.filter, args.store), kept=_build_kept))

    c = add_parser(
        "check",
        help="check passwords read from standard input, one per line",
        description="Check passwords read from standard input (one per line; never pass them as arguments). "
        "Prints one line per input line, as each line arrives (a line that cannot be checked gets an error line, "
        "and its number on standard error). Exit status: 0 none compromised, 1 at least one compromised, "
        "2 an error or a line that could not be checked.",
        epilog="Username and password pairs: credcheck pairs check.",
    )
    source = c.add_mutually_exclusive_group(required=True)
    add(source, "--filter", help="a filter (either layout) built by credcheck build")
    add(source, "--store", help="a range store built by credcheck build")
    add(source, "--api", help="a range API's base URL (e.g. https://api.pwnedpasswords.com)")
    add(c, "--hash", help="the hash scheme (a file records its own; --api: default sha1)")
    add(c, "--hashes", help="standard input holds hex digests of the scheme (e.g. an NTLM export for an audit)")
    add(
        c,
        "--min-count",
        help="compromised only if seen at least N times (default 1; a filter answers only its build's threshold)",
    )
    add(c, "--timeout")
    add(c, "--json", help='one JSON object per line: {"compromised": true, "count": 3}')
    c.set_defaults(func=Command(_check))


def _build(args: argparse.Namespace) -> int:
    """``credcheck build SOURCE... --filter FILE --store PATH``."""
    if not args.filter and not args.store:
        raise UsageError("build needs --filter FILE and/or --store PATH")
    with shown(build_progress(not args.quiet)) as progress:
        report = build(
            args.sources,
            input_format=args.input_format,
            strict=args.strict,
            resume=args.resume,
            progress=progress,
            **_flags.password_outputs(args),
        )
    _flags.show_report(args, report, report.warnings)
    return EXIT_OK


def _build_kept(args: argparse.Namespace) -> str | None:
    """What a stopped fuse build keeps for the next one (its finished shards), and how to take it."""
    partial = partial_path(args.filter) if args.filter else None
    if partial is None or not os.path.exists(partial):
        return None
    return kept_for_resume("the finished shards are", partial, resuming=args.resume)


def _check(args: argparse.Namespace) -> int:
    """``credcheck check (--filter FILE | --store PATH | --api URL)``: passwords (or digests) on standard input."""
    with _open_checker(args) as checker:
        return answer_lines(sys.stdin.buffer, _password_lines(checker, args), json_output=args.json)


def _open_checker(args: argparse.Namespace) -> Checker:
    options = _flags.given(min_count=args.min_count, scheme=args.scheme)
    if args.api:
        if args.timeout is not None:
            options["timeout"] = options["deadline"] = args.timeout
        # the ranges of a batch stay cached, so when one of them fails the others are not asked again
        return open_source(args.api, cache=API_BATCH, **options)
    if args.timeout is not None:
        raise UsageError("--timeout is for a range API (--api URL)")
    checker = open_source(args.filter or args.store, **options)
    given, actual = ("--filter", "--store") if args.filter else ("--store", "--filter")
    if isinstance(checker, FilterChecker) != bool(args.filter):
        checker.close()
        kind = "a range store"
        if isinstance(checker, FilterChecker):
            kind = "a Bloom filter" if checker.filter.layout == "bloom" else "a fuse filter"
        raise UsageError(f"{given} {args.filter or args.store}: this is {kind}; give it with {actual}")
    return checker


def _password_lines(checker: Checker, args: argparse.Namespace) -> LineCheck:
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

    def show(answer: Exposure) -> str:
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
