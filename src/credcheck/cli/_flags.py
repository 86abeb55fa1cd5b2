"""The command line's parser and the flags that several commands take, each defined once here so that a flag
name means one thing in every command (a command may word its help for its own use of the flag).

===================  =====================================================================================
``--filter FILE``    a filter file, either layout (written by ``build``, ``mirror``, ``pairs build``; read by
                     ``check``)
``--store PATH``     a range store (written by ``build``, ``mirror``, ``pairs build``; read by ``check``,
                     ``serve``, ``export``)
``--pairs PATH``     a credential-pair store (written by ``pairs build``; read by ``pairs check``, ``serve``)
``--key KEYFILE``    the OPRF key file of a pair store (``pairs keygen``; ``info`` checks a pair build's
                     checkpoints with it)
``--api URL``        the ``http(s)://`` base URL of the service a check asks: a range API (``check``) or a
                     pair service (``pairs check``)
``--timeout S``      with ``--api``: the seconds one check may take, retries included
``--hash``           the scheme of the password hashes: ``sha1`` or ``ntlm``
``--hashes``         standard input holds hashes where it would hold passwords
``--input-format``   how the sources are read
``--min-count N``    the count from which a hash counts as leaked
``--fp-rate F``      a filter's false-positive rate
``--layout``         a filter's layout: ``bloom`` or ``fuse``
``--capacity N``     the hashes a filter is sized for
``--update``         merge into the existing artefacts instead of replacing them
``--resume``         take up an interrupted run from what it kept
``--strict``         stop at the first bad line instead of counting it
``--workers N``      the worker processes the command starts on this machine
``--prefixes``       a shard of the 16^5 ranges, ``FIRST-LAST`` (two 5-hex-digit prefixes)
``--json``, ``-q``   the output as JSON; no progress and no report
``--config FILE``    a TOML file of options (every command; :mod:`credcheck.cli._config`)
``--print-config``   print the effective options, where each came from, and exit
===================  =====================================================================================

Whether a value names a service or a file is decided by :func:`credcheck._sources.is_remote`, here as the
types of ``--api`` (a URL) and of the file flags (never a URL).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn, Protocol, TypeAlias

from .._sinks import LAYOUTS
from .._sources import is_remote
from .._wire import PREFIX_LENGTH
from ..hashing import SCHEMES
from ._runner import EXIT_ERROR

__all__ = [
    "FLAGS",
    "AddParser",
    "Layers",
    "Parser",
    "add",
    "add_password_outputs",
    "given",
    "local_path",
    "password_outputs",
    "password_tuning",
    "prefix_range",
    "service_url",
    "show_report",
]


#: What a command group's ``add_commands`` is given: ``add_parser`` of the subcommands it joins.
AddParser = Callable[..., argparse.ArgumentParser]


#: What argparse's parse_known_args returns: the options, and the arguments it did not know.
Parsed: TypeAlias = tuple[argparse.Namespace, list[str]]
#: argparse's own parse_known_args(args, namespace), as a layer calls it.
ParseKnown: TypeAlias = Callable[[Sequence[str] | None, Any], Parsed]


class Layers(Protocol):
    """A command's options from sources besides the command line (:mod:`credcheck.cli._config`)."""

    def parse(self, parser: Parser, parse: ParseKnown, args: Sequence[str] | None, namespace: Any) -> Parsed: ...


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit 2, like every other error of the command, and whose options
    may also come from other sources (its ``layers``, when :func:`credcheck.cli._config.install` set them)."""

    layers: Layers | None = None

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        if self.layers is None:
            return super().parse_known_args(args, namespace)
        return self.layers.parse(self, super().parse_known_args, args, namespace)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def service_url(value: str) -> str:
    """An ``http(s)://`` URL, the base URL of a service; anything else is a usage error."""
    if not is_remote(value):  # not echoed: what was typed may hold credentials
        raise argparse.ArgumentTypeError("expected the service's http:// or https:// URL (e.g. http://127.0.0.1:8000)")
    return value


def local_path(value: str) -> str:
    """A file's path; a URL is a usage error (a service is asked with --api URL)."""
    if is_remote(value):  # not echoed: a URL may carry credentials
        raise argparse.ArgumentTypeError("expected a file, got a URL (a service is given with --api URL)")
    return value


_PREFIX: Final = re.compile(rf"[0-9A-Fa-f]{{{PREFIX_LENGTH}}}")


def prefix_range(text: str) -> range:
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


#: Every shared flag's argparse keywords: its metavar, type and meaning.
FLAGS: Final[dict[str, dict[str, Any]]] = {
    "--filter": {"metavar": "FILE", "type": local_path, "help": "a filter file (Bloom or fuse layout)"},
    "--store": {"metavar": "PATH", "type": local_path, "help": "a range store"},
    "--pairs": {"metavar": "PATH", "type": local_path, "help": "a credential-pair store"},
    "--key": {"metavar": "KEYFILE", "type": local_path, "help": "the pair store's OPRF key file (mode 0600)"},
    "--api": {"metavar": "URL", "type": service_url, "help": "the service's http(s):// base URL"},
    "--timeout": {
        "metavar": "S",
        "type": float,
        "help": "with --api: seconds one check may take, retries included (default 5)",
    },
    "--hash": {
        "dest": "scheme",
        "choices": tuple(SCHEMES),
        "help": "the hash scheme of the passwords (default: sha1)",
    },
    "--hashes": {"action": "store_true", "help": "standard input holds hex digests instead of passwords"},
    "--input-format": {"help": "how the sources are read"},
    "--min-count": {"metavar": "N", "type": int, "help": "count a hash only if seen at least N times (default 1)"},
    "--fp-rate": {"metavar": "F", "type": float, "help": "the filter's false-positive rate (default: 1e-6)"},
    "--layout": {"choices": LAYOUTS, "help": "the filter's layout"},
    "--capacity": {"metavar": "N", "type": int, "help": "size the filter for N hashes"},
    "--update": {"action": "store_true", "help": "merge into the existing artefacts instead of replacing them"},
    "--resume": {"action": "store_true", "help": "take up an interrupted run from what it kept"},
    "--strict": {"action": "store_true", "help": "stop at the first bad line (exit 2) instead of counting it"},
    "--workers": {"metavar": "N", "type": int, "help": "worker processes"},
    "--prefixes": {"metavar": "FIRST-LAST", "type": prefix_range, "help": "only this shard of the 16^5 prefixes"},
    "--json": {"action": "store_true", "help": "print the report as JSON"},
    "--quiet": {"action": "store_true", "help": "no progress, no report"},
    "--config": {"metavar": "FILE", "help": "read options from this TOML file"},
    "--print-config": {
        "action": "store_true",
        "help": "print the effective options and where each came from (secrets masked), and exit",
    },
}
_SHORT: Final = {"--quiet": "-q"}
#: What a command may say for itself about a shared flag; its name, metavar and type stay as defined above.
_OWN: Final = frozenset({"help", "default", "required", "action", "choices"})


class _Adds(Protocol):
    def add_argument(self, *names: str, **options: Any) -> argparse.Action: ...


def add(parser: _Adds, name: str, **own: Any) -> argparse.Action:
    """Add the shared flag ``name`` to ``parser`` (or an argument group), with the command's own ``help``,
    ``default``, ``required``, ``action`` (e.g. "append") or ``choices``."""
    if not set(own) <= _OWN:
        raise TypeError(f"{name} keeps its {', '.join(sorted(set(own) - _OWN))} in FLAGS")
    options = {**FLAGS[name], **own}
    names = (_SHORT[name], name) if name in _SHORT else (name,)
    return parser.add_argument(*names, **options)


#: The flags of the artefacts a password build writes, by their dest: each dest is the keyword of
#: :func:`credcheck.build` that the flag gives.
_PASSWORD_OUTPUTS: Final = {
    "filter": "--filter",
    "store": "--store",
    "scheme": "--hash",
    "fp_rate": "--fp-rate",
    "layout": "--layout",
    "min_count": "--min-count",
    "capacity": "--capacity",
    "update": "--update",
}


def add_password_outputs(parser: _Adds, *, writes: str) -> None:
    """The flags of the filter and store a password build writes (of ``writes``, as their help says)."""
    add(parser, "--filter", help=f"write a filter of {writes} here (its layout: --layout)")
    add(parser, "--store", help=f"write an exact range store of {writes} here")
    add(parser, "--hash")
    add(parser, "--fp-rate")
    add(
        parser,
        "--layout",
        help="the filter's layout: bloom (the default for a new filter) or fuse, a sharded binary fuse filter "
        "(about 22.5 bits a hash at 1e-6 instead of 28.8, three memory reads a lookup; updated only together "
        "with its --store, rebuilding just the shards that changed); --update keeps the existing filter's",
    )
    add(parser, "--min-count", help="keep hashes seen at least N times (default 1; kept on --update)")
    add(
        parser,
        "--capacity",
        help="size the filter for N hashes (room for later merges; an --update with its --store grows it as needed)",
    )
    add(parser, "--update", help="merge into the existing --store/--filter (counts summed) instead of replacing them")


def given(**values: Any) -> dict[str, Any]:
    """The keywords whose flags were given (not None, not a switch left off): the library's own defaults stand
    for the others, so a default is written once, where the library keeps it."""
    return {name: value for name, value in values.items() if value is not None and value is not False}


def password_outputs(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`credcheck.build` keywords of the password-output flags given."""
    return given(**{dest: getattr(args, dest) for dest in _PASSWORD_OUTPUTS})


def password_tuning(args: argparse.Namespace) -> list[str]:
    """The password-output flags given besides --filter and --store (they tune a filter or store that is then
    built)."""
    return [_PASSWORD_OUTPUTS[dest] for dest in password_outputs(args) if dest not in ("filter", "store")]


def show_report(args: argparse.Namespace, report: Any, warnings: Sequence[str] = ()) -> None:
    """Print a command's report as --json and -q ask: JSON, the summary, or nothing but its warnings (the
    summary holds them already)."""
    if args.quiet or args.json:
        for warning in warnings:
            print(f"credcheck: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_dict()))
    elif not args.quiet:
        print(report.summary())
