"""``credcheck demo``: the whole story end to end on the data bundled with the package, offline."""

from __future__ import annotations

import argparse
import sys

from .._demo import run_demo
from ._flags import AddParser
from ._runner import EXIT_OK, Command

__all__ = ["add_commands"]


def add_commands(add_parser: AddParser) -> None:
    """Add ``demo``."""
    d = add_parser(
        "demo",
        help="the whole story end to end on the bundled data, offline",
        description="Build a filter and stores from the bundled leaked set, serve them on a free loopback port, "
        "check a partner site's passwords through the range API and the filter, then the pair tier (with the "
        "pairs extra): a leaked combo list built into a pair store and log-ins checked through a pair service.",
    )
    d.set_defaults(func=Command(_demo))


def _demo(args: argparse.Namespace) -> int:
    run_demo(sys.stdout)
    return EXIT_OK
