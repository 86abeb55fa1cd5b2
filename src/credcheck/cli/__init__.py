"""The ``credcheck`` command. Thin: it parses, calls the library, and prints.

One module a command group adds its commands to the parser: :mod:`~credcheck.cli._passwords` (``build``,
``check``), :mod:`~credcheck.cli._serve` (``serve``, both tiers in one server), :mod:`~credcheck.cli._ranges`
(``export``, ``mirror``), :mod:`~credcheck.cli._info` (``info``: what an artefact file is and whether it
verifies), :mod:`~credcheck.cli._demo` and :mod:`~credcheck.cli._pairs` (``pairs build``, ``pairs
check``, ``pairs keygen``). A flag that several commands take is defined once (:mod:`~credcheck.cli._flags`), so
its name means one thing everywhere. Every command runs under the one runner (:mod:`~credcheck.cli._runner`: stop
signals, exit statuses carried by the errors, an error as one line on standard error), and ``check`` reads its
lines by the one bulk-input rule (:mod:`~credcheck.cli._input`). Every command's options may also come from the
environment and a TOML file (:mod:`~credcheck.cli._config`, layered onto the parser once). Exit status: 0 =
done / nothing compromised, 1 = at least one compromised (``check``), 2 = an error, a line that could not be
checked, or a stop (SIGINT, SIGTERM).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .. import __version__
from .._native import describe
from . import _config, _demo, _info, _pairs, _passwords, _ranges, _serve
from ._flags import Parser
from ._runner import run

__all__ = ["main", "make_parser"]


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``credcheck`` command."""
    parser = Parser(
        prog="credcheck",
        description="Has this password already leaked? Build filters and stores from leaked sets, check against "
        "them, serve them; and the same for username and password pairs (credcheck pairs).",
        epilog="Exit status: 0 done (check: nothing compromised), 1 check found a compromised one, 2 an error, a line "
        "check could not answer, or a stop (Ctrl-C, SIGTERM, SIGHUP: worker processes stopped, temporary files and "
        "locks removed, nothing replaced; a pair build's finished chunks, a fuse build's finished shards and a "
        "mirror's journal kept for --resume). serve exits 0 when stopped. Every command's options also come from "
        "CREDCHECK_<COMMAND>_<OPTION> environment variables and a TOML file (--config FILE); the command line wins, "
        "then the environment, then the file (a command's --help, docs/CONFIG.md).",
    )
    parser.add_argument("--version", action="version", version=f"credcheck {__version__} ({describe()})")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for group in (_passwords, _serve, _ranges, _info, _demo, _pairs):
        group.add_commands(commands.add_parser)
    _config.install(parser)  # every command's options from the environment and a TOML file too
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``credcheck`` command; return its exit status."""
    args = make_parser().parse_args(argv)
    return run(args.func, args)
