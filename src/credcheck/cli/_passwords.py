"""``credcheck build`` and ``credcheck check``: the password tier's filters and range stores."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Final

from .._corpus import COMBO_FORMATS, FORMATS, MAX_LINE_BYTES
from .._sources import open as open_source
from ..build import build
from ..checker import Checker, Exposure, FilterChecker
from ..errors import UsageError
from ..fuse import partial_path
from . import _audit, _flags
from ._audit import HashLines, answer_text
from ._flags import AddParser, add
from ._input import LineCheck, Unchecked, answer_lines, write_out
from ._progress import build_progress, shown
from ._runner import EXIT_OK, Command, kept_for_resume

__all__ = ["API_BATCH", "CHECK_BATCH", "HASH_BATCH", "add_commands"]

CHECK_BATCH: Final = 4096  # lines asked of a local filter or store at once
HASH_BATCH: Final = 1 << 16  # digests asked of a local filter or store at once (a read's worth)
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
        description="Check passwords read from standard input (one per line; never pass them as arguments), or "
        "with --hashes their hashes: an Active Directory audit of pwdump lines, answered account by account. "
        "Prints one line per input line, as each line arrives (a line that cannot be checked gets an error line, "
        "and its number on standard error). Exit status: 0 none compromised, 1 at least one compromised, "
        "2 an error or a line that could not be checked.",
        epilog="Username and password pairs: credcheck pairs check.",
    )
    source = c.add_mutually_exclusive_group(required=True)
    add(source, "--filter", help="a filter (either layout) built by credcheck build")
    add(source, "--store", help="a range store built by credcheck build")
    add(source, "--api", help="a range API's base URL (e.g. https://api.pwnedpasswords.com)")
    add(c, "--hash", help="the hash scheme (a file records its own; --api: default sha1, ntlm for pwdump lines)")
    add(
        c,
        "--hashes",
        help="standard input holds hashes instead of passwords: hex digests of the scheme, account:hash lines or "
        "pwdump lines (account:rid:lmhash:nthash:::, an Active Directory audit), answered line by line with the "
        "account's name; a summary follows (docs/AUDIT.md)",
    )
    c.add_argument(
        "--hashes-format",
        choices=_audit.FORMATS,
        help="the shape of the --hashes lines (implies --hashes; default auto: told from the first line with a "
        "hash, and every line must have it): bare hex digests, user (account:hash) or pwdump (whose NT hashes "
        "make the scheme ntlm)",
    )
    c.add_argument(
        "--show-hashes",
        action="store_true",
        help="with --hashes: print each line's digest beside its answer (by default no hash is echoed)",
    )
    add(
        c,
        "--min-count",
        help="compromised only if seen at least N times (default 1; a filter answers only its build's threshold)",
    )
    add(c, "--timeout")
    add(
        c,
        "--json",
        help='one JSON object per line: {"compromised": true, "count": 3} (with --hashes and accounts, '
        '{"account": NAME, ...}; the summary a last {"summary": ...})',
    )
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
    """``credcheck check (--filter FILE | --store PATH | --api URL)``: passwords (or hashes) on standard input."""
    if args.hashes or args.hashes_format:
        return _check_hashes(args)
    if args.show_hashes:
        raise UsageError("--show-hashes is for --hashes input (a password is never echoed)")
    with _open_checker(args) as checker:
        return answer_lines(sys.stdin.buffer, _password_lines(checker, args), json_output=args.json)


def _check_hashes(args: argparse.Namespace) -> int:
    """``check --hashes``: digests, account:hash or pwdump lines, answered line by line; the audit's summary."""
    options = {"hashes_format": args.hashes_format or "auto", "show_hashes": args.show_hashes}
    if args.api:
        lines = HashLines(
            None, lambda scheme: _open_checker(args, scheme), scheme=args.scheme,
            says=f"--hash {args.scheme} asks for {args.scheme} ranges", batch=API_BATCH, **options,
        )  # fmt: skip
    else:
        checker = _open_checker(args)
        try:
            given = f"{'--filter' if args.filter else '--store'} {args.filter or args.store}"
            lines = HashLines(
                checker, says=f"{given} holds {checker.scheme} hashes", batch=HASH_BATCH, **options
            )  # fmt: skip
        except BaseException:
            checker.close()
            raise
    with lines:
        status = answer_lines(sys.stdin.buffer, lines, json_output=args.json)
        summary = lines.summary(args.json)
        if summary is not None:
            write_out(f"{summary}\n".encode())
    return status


def _open_checker(args: argparse.Namespace, scheme: str | None = None) -> Checker:
    """The checker of ``--filter``, ``--store`` or ``--api`` (a range API's ``scheme``, when the lines tell it)."""
    options = _flags.given(min_count=args.min_count, scheme=scheme or args.scheme)
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
    """How ``check`` reads passwords and shows their answers."""

    def password(line: bytes) -> bytes | Unchecked:
        if not line:
            return Unchecked("empty line")
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:  # as a build reads it: a bad line, never hashed as some other text
            return Unchecked("not UTF-8")
        return line

    def show(answer: Exposure) -> str:
        return answer_text(answer, args.json)

    return LineCheck(
        parse=password,
        ask=checker.check_many,
        show=show,
        batch=API_BATCH if args.api else CHECK_BATCH,
        max_line=MAX_LINE_BYTES,
    )
