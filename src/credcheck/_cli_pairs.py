"""The pair tier's part of the ``credcheck`` command: ``build --pairs`` and ``check --pairs``.

Thin like the rest of the CLI: it adds the options, parses, calls :mod:`credcheck.pairs`, and prints. Nothing
here imports the pair tier (or Dask) until a pair command runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from ._cli_input import LineCheck, Unchecked, answer_lines
from ._cli_runner import EXIT_OK
from ._progress import Progress, phase_bars, shown
from .errors import DependencyError, UsageError

_PLAIN_PROGRESS_EVERY = 60.0  # seconds between progress lines when standard error is not a terminal

_ANSWERS = {
    "exact": "compromised (this username with this password is in the leak)",
    "similar": "compromised (this username with a password very close to this one is in the leak)",
    "username": "not found (but this username is in the leak)",
    "not_found": "not found",
}


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``credcheck build`` options of a pair build."""
    group = parser.add_argument_group(
        "credential pairs",
        "With --pairs, the sources are combo lists (--input-format combo: username:password lines, split at the "
        "first ':' or tab; combo-sha1: username:SHA1HEX) and the build writes a pair store for private pair checks; "
        "with --filter/--store too, the same run also builds them from the passwords (--hash sha1 or ntlm; "
        "combo-sha1: sha1), and renames none of the three until all are written.",
    )
    group.add_argument("--pairs", metavar="OUT", help="write a credential-pair store here (needs --key)")
    group.add_argument("--key", metavar="KEYFILE", help="the OPRF key file (credcheck keygen); must be mode 0600")
    group.add_argument(
        "--stretch",
        default="interactive",
        metavar="PROFILE",
        help="interactive (scrypt N=2^12 r=8 p=1, ~10 ms a pair), strong (N=2^14, ~40 ms) or scrypt:N:r:p "
        "(default: interactive)",
    )
    group.add_argument(
        "--variants", type=int, default=0, metavar="N", help="also store N (0-9) variants of each password (default 0)"
    )
    group.add_argument(
        "--username-entries", action="store_true", help="also store each username alone (answers 'username only')"
    )
    group.add_argument(
        "--bucket-bits", type=int, metavar="B", help="2^B buckets (default: about 32 usernames a bucket, 8-24 bits)"
    )
    group.add_argument(
        "--workers", type=int, metavar="N", help="stretch processes (default: every core; with --scheduler: in flight)"
    )
    group.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run the stretch on this Dask cluster (pip install 'credcheck[dask]')",
    )
    group.add_argument(
        "--max-memory",
        default="1GiB",
        metavar="SIZE",
        help="what the pair build holds for its entries and their sort buffers, such as 64MiB or 2GiB: the rest is "
        "sorted on disk beside OUT (default 1GiB)",
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="take the finished chunks of an interrupted pair build of OUT (or the finished shards of an "
        "interrupted --layout fuse --filter build) instead of redoing them",
    )


def add_check_arguments(parser: argparse.ArgumentParser, sources: argparse._MutuallyExclusiveGroup) -> None:
    """The ``credcheck check`` options of a pair check."""
    sources.add_argument(
        "--pairs",
        metavar="PATH|URL",
        help="a pair store (with --key) or a pair service's http(s):// base URL: read username:password lines "
        "(--hashes: username:SHA1HEX)",
    )
    parser.add_argument(
        "--key", metavar="KEYFILE", help="with --pairs PATH: the key file the pair store was built with"
    )
    parser.add_argument(
        "--public-key",
        metavar="HEX",
        help="with --pairs URL: the service's public key (64 hex digits), pinned instead of taken from its config",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="with --api URL or --pairs URL: seconds one check may take, retries included (default 5)",
    )


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``credcheck serve`` options of the pair service."""
    group = parser.add_argument_group(
        "credential pairs", "With --pairs and --key, also answer private pair checks under /v1/pairs/."
    )
    group.add_argument("--pairs", metavar="PATH", help="a pair store built by credcheck build --pairs")
    group.add_argument("--key", metavar="KEYFILE", help="the key file the pair store was built with (mode 0600)")
    group.add_argument(
        "--rate-limit",
        type=float,
        default=10.0,
        metavar="R",
        help="pair queries a second one client address may make on average, in all workers together "
        "(default 10; 0 for no limit)",
    )
    group.add_argument(
        "--burst", type=float, default=50.0, metavar="N", help="pair queries one address may make at once (default 50)"
    )
    group.add_argument(
        "--trust-forwarded-for",
        action="append",
        default=[],
        metavar="PROXY_IP",
        help="a reverse proxy in front of this server: from it, X-Forwarded-For gives the client's address "
        "(repeat for a chain; never trusted from anyone else)",
    )


def _pair_unit(phase: str, done: int, total: int | None, lines: int) -> str:
    return "B" if phase == "read" else " entries"


def _progress(enabled: bool) -> Progress | None:
    """A tqdm bar per phase on a terminal, else a plain line on standard error every minute."""
    if not enabled:
        return None
    if sys.stderr.isatty():
        bars = phase_bars(_pair_unit)
        if bars is not None:
            return bars
    started = time.monotonic()
    last = [started]

    def line(phase: str, done: int, total: int | None, lines: int) -> None:
        now = time.monotonic()
        if phase != "stretch" or now - last[0] < _PLAIN_PROGRESS_EVERY:
            return
        last[0] = now
        rate = done / (now - started) if now > started else 0.0
        eta = f", about {(total - done) / rate / 60:,.0f} min left" if total and rate else ""
        print(f"credcheck: stretched {done:,} of {total or 0:,} entries ({rate:,.0f}/s{eta})", file=sys.stderr)

    return line


def cmd_build(args: argparse.Namespace) -> int:
    """``credcheck build --pairs OUT --key KEYFILE COMBO...``."""
    from .pairs.build import build_pairs

    if not args.pairs:
        raise UsageError("combo lists build a credential-pair store: pass --pairs OUT --key KEYFILE")
    if not args.key:
        raise UsageError("build --pairs needs --key KEYFILE (make one with credcheck keygen)")
    both = bool(args.filter or args.store)  # also a filter/store from the passwords (credcheck.combined)
    ignored = [flag for flag, given in (("--update", args.update), ("--min-count", args.min_count is not None),
               ("--capacity", args.capacity is not None), ("--hash ntlm", args.hash != "sha1")) if given]  # fmt: skip
    if ignored and not both:
        raise UsageError(f"{' and '.join(ignored)} {'do' if len(ignored) > 1 else 'does'} not apply to a pair build")
    input_format = "combo" if args.input_format == "auto" else args.input_format
    if input_format not in ("combo", "combo-sha1"):
        raise UsageError("build --pairs reads combo lists: --input-format combo or combo-sha1")
    client: Any = None
    executor = None
    workers = args.workers
    try:
        if args.scheduler:
            try:
                import distributed
            except ImportError:
                raise DependencyError("--scheduler needs Dask: pip install 'credcheck[dask]'") from None
            client = distributed.Client(args.scheduler)  # type: ignore[no-untyped-call]
            executor = client.get_executor()
            workers = workers or max(1, sum(client.nthreads().values()))
        call: Callable[..., Any] = functools.partial(_build_both, args=args) if both else build_pairs
        with shown(_progress(not args.quiet)) as progress:
            report = call(
                args.sources,
                args.pairs,
                args.key,
                input_format=input_format,
                stretch=args.stretch,
                variants=args.variants,
                username_entries=args.username_entries,
                bucket_bits=args.bucket_bits,
                executor=executor,
                workers=workers,
                resume=args.resume,
                strict=args.strict,
                progress=progress,
                max_memory=args.max_memory,
            )
    finally:
        if client is not None:
            client.close()
    if both and (args.quiet or args.json):  # the summary, when printed, holds them already
        for warning in report.passwords.warnings:
            print(f"credcheck: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_dict()))
    elif not args.quiet:
        print(report.summary())
    return EXIT_OK


def _build_both(sources: Any, pairs: str, key: str, *, args: argparse.Namespace, **options: Any) -> Any:
    """A pair build that also writes --filter/--store from the passwords (both reports: pairs, passwords)."""
    from .build import BuildPlan
    from .combined import build_combined
    from .pairs.build import PairPlan

    password_plan = BuildPlan.of(
        sources, filter=args.filter, store=args.store, hash=args.hash, fp_rate=args.fp_rate, layout=args.layout,
        min_count=args.min_count, capacity=args.capacity, update=args.update, input_format=options["input_format"],
        strict=options["strict"], progress=options["progress"],
    )  # fmt: skip
    return build_combined(PairPlan.of(sources, pairs, key, **options), password_plan)


def kept_after_stop(args: argparse.Namespace) -> str | None:
    """What a stopped pair build keeps for the next one (its finished chunks), and how to take it."""
    from .pairs.build import checkpoint_dir

    folder = checkpoint_dir(os.path.abspath(args.pairs))
    try:
        with os.scandir(folder) as entries:
            if not any(True for _ in entries):
                return None
    except OSError:  # none yet: stopped before the stretch began
        return None
    how = "run the same command again" if args.resume else "add --resume to the same command"
    return f"the finished chunks are kept in {folder}: {how} to go on from them"


def cmd_check(args: argparse.Namespace) -> int:
    """``credcheck check --pairs PATH --key KEYFILE`` or ``--pairs URL``: username:password lines on standard input."""
    from ._sources import open_pairs
    from .pairs.combo import MAX_LINE, parse_line

    if args.hash or args.min_count is not None:
        raise UsageError("--hash and --min-count do not apply to a pair check")
    if args.pairs.lower().startswith(("http://", "https://")):
        if args.key:
            raise UsageError("--key is for a local pair store; a pair service keeps its key (pin --public-key)")
        options: dict[str, Any] = {} if args.timeout is None else {"timeout": args.timeout, "deadline": args.timeout}
        if args.public_key:
            options["public_key"] = args.public_key
        checker = open_pairs(args.pairs, **options)
    else:
        if not args.key:
            raise UsageError("check --pairs needs --key KEYFILE (the key the pair store was built with)")
        if args.public_key or args.timeout is not None:
            raise UsageError(f"{'--public-key' if args.public_key else '--timeout'} is for a pair service URL")
        checker = open_pairs(args.pairs, key=args.key)
    input_format = "combo-sha1" if args.hashes else "combo"

    def pair(line: bytes) -> tuple[bytes, bytes] | Unchecked:
        parsed = parse_line(line, input_format)
        return Unchecked(parsed) if isinstance(parsed, str) else parsed[:2]

    def ask(pairs: list[tuple[bytes, bytes]]) -> list[Any]:
        return [checker.check_canonical(name, sha1) for name, sha1 in pairs]

    def show(answer: Any) -> str:
        if args.json:
            return json.dumps({"compromised": answer.compromised, "status": answer.status.value})
        return _ANSWERS[answer.status.value]

    with checker:
        # one pair a query: a pair service is asked once per line, never again for a line already answered
        check = LineCheck(parse=pair, ask=ask, show=show, batch=1, max_line=MAX_LINE)
        return answer_lines(sys.stdin.buffer, check, json_output=args.json)
