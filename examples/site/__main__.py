"""Run the example site: ``python -m examples.site`` builds the demo data, serves it and starts the site.

Without ``--ranges`` and ``--pairs`` it builds a range store from the leaked passwords bundled with credcheck
and a pair store from the shop's leaked combo list (what ``credcheck demo`` builds), serves both from one
credcheck server on loopback (the server ``credcheck serve --store ... --pairs ... --key ...`` runs), and
starts the site; with them, it starts only the site, against those services. It prints the site's URL once
the site listens, and stops on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import tempfile
from collections.abc import Iterator

import uvicorn

from credcheck import build
from credcheck._demo import build_leaked_pairs, bundled_path
from credcheck.pairs._service import make_pair_service
from credcheck.pairs.keys import write_key
from credcheck.server import serve_in_background

from .app import make_app


def build_data(folder: str) -> tuple[str, str, str]:
    """Build the range store, a key and the pair store in ``folder``; return their paths."""
    store = os.path.join(folder, "leaked.store")
    build([bundled_path()], store=store)
    key_file = os.path.join(folder, "pairs.key")
    pairs, _ = build_leaked_pairs(folder, write_key(key_file))
    return store, pairs, key_file


@contextlib.contextmanager
def demo_services() -> Iterator[str]:
    """Build the demo data in a temporary folder and serve it; yield the server's URL."""
    with tempfile.TemporaryDirectory(prefix="credcheck-site-") as folder:
        store, pairs, key_file = build_data(folder)
        with make_pair_service(pairs, key_file) as service, serve_in_background([store], pairs=service) as url:
            yield url


class _Server(uvicorn.Server):
    """uvicorn, saying the site's URL once it listens (on the port the system chose for --port 0)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        print(f"site: http://{host}:{port}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.site", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001, help="the site's port (0: any free one; default 8001)")
    parser.add_argument("--ranges", help="a range service's URL (default: serve the demo data)")
    parser.add_argument("--pairs", help="a pair service's URL (default: serve the demo data)")
    parser.add_argument("--on-error", choices=["reject", "allow"], default="reject", help="the failure policy")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.ranges is None or args.pairs is None:
            url = stack.enter_context(demo_services())
            print(f"credcheck: ranges and pairs on {url}", flush=True)
        app = make_app(args.ranges or url, args.pairs or url, on_error=args.on_error)
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises Ctrl-C again once it has stopped
            _Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")).run()


if __name__ == "__main__":
    main()
