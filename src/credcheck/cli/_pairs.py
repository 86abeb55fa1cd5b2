"""``credcheck pairs build|check|keygen``: the credential-pair tier's commands. Its service is ``credcheck serve
--pairs``, one server beside the range API (:mod:`credcheck.cli._serve`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any, Final

from .._combined import build_combined
from .._corpus import COMBO_FORMATS
from .._sources import open_pairs
from ..build import BuildPlan
from ..errors import DependencyError, UsageError
from ..pairs._combo import MAX_LINE, parse_line
from ..pairs.build import PairPlan, build_pairs, checkpoint_dir
from ..pairs.checker import PairExposure
from ..pairs.keys import write_key
from . import _flags
from ._flags import AddParser, Parser, add
from ._input import LineCheck, Unchecked, answer_lines
from ._progress import build_progress, shown
from ._runner import EXIT_OK, Command, kept_for_resume

__all__ = ["add_commands"]

_ANSWERS: Final = {
    "exact": "compromised (this username with this password is in the leak)",
    "similar": "compromised (this username with a password very close to this one is in the leak)",
    "username": "not found (but this username is in the leak)",
    "not_found": "not found",
}


def add_commands(add_parser: AddParser) -> None:
    """Add ``pairs`` and its commands ``build``, ``check`` and ``keygen``."""
    group = add_parser(
        "pairs",
        help="the credential-pair tier: pair stores from combo lists, private pair checks, OPRF keys",
        description="Is this username with this password in a leak? Build a pair store from combo lists "
        "(username:password), check pairs against it or against a pair service, make the OPRF key it needs. "
        "A pair store is served by credcheck serve --pairs PATH --key KEYFILE.",
    )
    commands = group.add_subparsers(dest="pairs_command", metavar="COMMAND", required=True, parser_class=Parser)
    _add_build(commands.add_parser)
    _add_check(commands.add_parser)
    k = commands.add_parser(
        "keygen",
        help="write a new random OPRF key for pair stores",
        description="Write a new random RFC 9497 ristretto255 key to KEYFILE, readable by its owner only (0600). "
        "Never overwrites a file. Keep it secret: with the key, a pair store can be attacked offline.",
    )
    k.add_argument("keyfile", metavar="KEYFILE", type=_flags.local_path, help="the new key file (must not exist)")
    k.set_defaults(func=Command(_keygen, outputs=lambda args: (args.keyfile,)))


def _add_build(add_parser: AddParser) -> None:
    b = add_parser(
        "build",
        help="build a credential-pair store from combo lists",
        description="Build a pair store for private pair checks from combo lists (username:password lines, split "
        "at the first ':' or tab; --input-format combo-sha1: username:SHA1HEX), stretched with scrypt and put "
        "through the key's RFC 9497 VOPRF; .gz/.bz2/.xz read transparently, - is stdin. With --filter/--store "
        "the same run also builds them from the passwords, and renames none of the three until all are written.",
    )
    b.add_argument("sources", nargs="+", metavar="COMBO", help="combo lists, or - for standard input")
    add(b, "--pairs", required=True, help="write the credential-pair store here")
    add(b, "--key", required=True, help="the OPRF key file (credcheck pairs keygen); must be mode 0600")
    add(b, "--input-format", choices=COMBO_FORMATS, default="combo", help="combo (default) or combo-sha1")
    b.add_argument(
        "--stretch",
        default="interactive",
        metavar="PROFILE",
        help="interactive (scrypt N=2^12 r=8 p=1, ~10 ms a pair), strong (N=2^14, ~40 ms) or scrypt:N:r:p "
        "(default: interactive)",
    )
    b.add_argument(
        "--variants", type=int, default=0, metavar="N", help="also store N (0-9) variants of each password (default 0)"
    )
    b.add_argument(
        "--username-entries", action="store_true", help="also store each username alone (answers 'username only')"
    )
    b.add_argument(
        "--bucket-bits", type=int, metavar="B", help="2^B buckets (default: about 32 usernames a bucket, 8-24 bits)"
    )
    b.add_argument(
        "--max-memory",
        default="1GiB",
        metavar="SIZE",
        help="what the build holds for its entries and their sort buffers, such as 64MiB or 2GiB: the rest is sorted "
        "on disk beside the store (default 1GiB; at most this machine's memory)",
    )
    where = b.add_mutually_exclusive_group()
    add(where, "--workers", help="stretch processes on this machine (default: one per core)")
    where.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run the stretch on this Dask cluster instead (pip install 'credcheck[dask]')",
    )
    b.add_argument(
        "--cluster-threads",
        type=int,
        metavar="N",
        help="with --scheduler: keep N of the cluster's threads busy (default: all it has)",
    )
    add(
        b, "--resume", help="take the finished chunks of an interrupted build of the same store instead of redoing them"
    )
    add(b, "--strict")
    add(b, "--json", help='print the report as JSON ({"pairs": ..., "passwords": ...} with --filter/--store)')
    add(b, "--quiet")
    passwords = b.add_argument_group(
        "a filter and store from the same lines",
        "With --filter and/or --store the same run also builds them from the combo lists' passwords (their SHA-1, "
        "or NTLM with --hash ntlm; combo-sha1: SHA-1 only); the sources must then be files, read twice.",
    )
    _flags.add_password_outputs(passwords, writes="the passwords")
    b.set_defaults(func=Command(_build, outputs=lambda args: (args.filter, args.store, args.pairs), kept=_kept))


def _add_check(add_parser: AddParser) -> None:
    c = add_parser(
        "check",
        help="check username:password lines read from standard input",
        description="Check username:password lines read from standard input (--hashes: username:SHA1HEX) against "
        "a pair store (the corpus owner's audit, with its key) or a pair service (which sees only the username's "
        "bucket and blinded elements; every answer's proof is verified). One answer line per input line: exact "
        "pair, similar password, username only, not found. Exit status: 0 none compromised, 1 at least one "
        "compromised (exact or similar), 2 an error or a line that could not be checked.",
    )
    source = c.add_mutually_exclusive_group(required=True)
    add(source, "--pairs", help="a pair store built by credcheck pairs build (with --key)")
    add(source, "--api", help="a pair service's base URL (credcheck serve --pairs)")
    add(c, "--key", help="with --pairs: the key file the pair store was built with")
    c.add_argument(
        "--public-key",
        metavar="HEX",
        help="with --api: the service's public key (64 hex digits), pinned instead of taken from its config",
    )
    add(c, "--timeout")
    add(c, "--hashes", help="standard input holds username:SHA1HEX lines")
    add(c, "--json", help='one JSON object per line: {"compromised": true, "status": "exact"}')
    c.set_defaults(func=Command(_check))


def _build(args: argparse.Namespace) -> int:
    """``credcheck pairs build COMBO... --pairs OUT --key KEYFILE [--filter FILE] [--store PATH]``."""
    both = bool(args.filter or args.store)  # also a filter/store from the passwords (credcheck._combined)
    tuning = _flags.password_tuning(args)
    if tuning and not both:
        verb = "do" if len(tuning) > 1 else "does"
        raise UsageError(
            f"{' and '.join(tuning)} {verb} not apply to a pair build alone: with --filter FILE and/or --store PATH "
            "they set up the filter or store built from the same lines"
        )
    if args.cluster_threads is not None and not args.scheduler:
        raise UsageError("--cluster-threads is for a Dask cluster: give --scheduler tcp://HOST:PORT too")
    reporter = build_progress(not args.quiet, task="pairs build")
    with _stretch_executor(args) as (executor, workers), shown(reporter) as progress:
        options: dict[str, Any] = {
            "input_format": args.input_format,
            "stretch": args.stretch,
            "variants": args.variants,
            "username_entries": args.username_entries,
            "bucket_bits": args.bucket_bits,
            "executor": executor,
            "workers": workers,
            "resume": args.resume,
            "strict": args.strict,
            "progress": progress,
            "max_memory": args.max_memory,
        }
        if both:
            passwords = BuildPlan.of(
                args.sources,
                input_format=args.input_format,
                strict=args.strict,
                progress=progress,
                **_flags.password_outputs(args),
            )
            report: Any = build_combined(PairPlan.of(args.sources, args.pairs, args.key, **options), passwords)
        else:
            report = build_pairs(args.sources, args.pairs, args.key, **options)
    _flags.show_report(args, report, report.passwords.warnings if both else ())
    return EXIT_OK


@contextlib.contextmanager
def _stretch_executor(args: argparse.Namespace) -> Iterator[tuple[Executor | None, int | None]]:
    """Where the stretch runs, and how many chunks at once: --workers local processes (None: the build's own
    pool), or the Dask cluster of --scheduler, its client closed when the build ends."""
    if not args.scheduler:
        yield None, args.workers
        return
    try:
        import distributed  # an extra, and heavy: only when a cluster is asked for
    except ImportError:
        raise DependencyError("--scheduler needs Dask: pip install 'credcheck[dask]'") from None
    client: Any = distributed.Client(args.scheduler)  # type: ignore[no-untyped-call]
    try:
        yield client.get_executor(), args.cluster_threads or max(1, sum(client.nthreads().values()))
    finally:
        client.close()


def _kept(args: argparse.Namespace) -> str | None:
    """What a stopped pair build keeps for the next one (its finished chunks), and how to take it."""
    folder = checkpoint_dir(os.path.abspath(args.pairs))
    try:
        with os.scandir(folder) as entries:
            if not any(True for _ in entries):
                return None
    except OSError:  # none yet: stopped before the stretch began
        return None
    return kept_for_resume("the finished chunks are", folder, resuming=args.resume)


def _check(args: argparse.Namespace) -> int:
    """``credcheck pairs check (--pairs PATH --key KEYFILE | --api URL)``: username:password lines on standard
    input."""
    if args.api:
        if args.key:
            raise UsageError(
                "--key is for a local pair store (--pairs PATH); a pair service keeps its own (pin it: --public-key)"
            )
        options = _flags.given(timeout=args.timeout, deadline=args.timeout, public_key=args.public_key)
        checker = open_pairs(args.api, **options)
    else:
        if not args.key:
            raise UsageError("pairs check --pairs needs --key KEYFILE (the key the pair store was built with)")
        if args.public_key or args.timeout is not None:
            raise UsageError(f"{'--public-key' if args.public_key else '--timeout'} is for a pair service (--api URL)")
        checker = open_pairs(args.pairs, key=args.key)
    input_format = "combo-sha1" if args.hashes else "combo"

    def pair(line: bytes) -> tuple[bytes, bytes] | Unchecked:
        parsed = parse_line(line, input_format)
        return Unchecked(parsed) if isinstance(parsed, str) else parsed[:2]

    def ask(pairs: list[tuple[bytes, bytes]]) -> list[PairExposure]:
        return [checker.check_canonical(name, sha1) for name, sha1 in pairs]

    def show(answer: PairExposure) -> str:
        if args.json:
            return json.dumps({"compromised": answer.compromised, "status": answer.status.value})
        return _ANSWERS[answer.status.value]

    with checker:
        # one pair a query: a pair service is asked once per line, never again for a line already answered
        check = LineCheck(parse=pair, ask=ask, show=show, batch=1, max_line=MAX_LINE)
        return answer_lines(sys.stdin.buffer, check, json_output=args.json)


def _keygen(args: argparse.Namespace) -> int:
    """``credcheck pairs keygen KEYFILE``."""
    key = write_key(args.keyfile)
    print(f"wrote {args.keyfile} (mode 0600): key id {key.key_id.hex()}, public key {key.pk.hex()}")
    return EXIT_OK
