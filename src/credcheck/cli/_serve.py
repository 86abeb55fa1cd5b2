"""``credcheck serve``: one server process for both tiers -- the range API from range stores and the pair service
from a pair store, either or both, under the same workers, rate limits and runner."""

from __future__ import annotations

import argparse
import sys

from ..errors import UsageError
from ..pairs._ratelimit import DEFAULT_BURST, DEFAULT_RATE
from ..server import SERVERS, serve
from ..server._runners import default_workers
from ._flags import AddParser, add
from ._runner import EXIT_OK, Command, Stopped

__all__ = ["add_commands"]


def add_commands(add_parser: AddParser) -> None:
    """Add ``serve``."""
    s = add_parser(
        "serve",
        help="serve range stores (the HIBP range API) and/or a pair store (the private pair service) over HTTP",
        description="Serve GET /range/{PREFIX} (?mode=ntlm for NTLM) from one SHA-1 and/or one NTLM store, "
        "exactly like the HIBP Pwned Passwords API, and/or the private pair service (GET /v1/pairs/config, "
        "POST /v1/pairs/query) from a pair store and its key, from one server. Uses granian or gunicorn when "
        "installed (pip install 'credcheck[serve]'), else a threaded single-process server. Renders every range "
        "once, plain and gzip, into STORE.bodies beside each store unless a matching one is there (--bodies; "
        "docs/DEPLOY.md); until it is ready ranges are rendered per request. GET /health answers 200 while the "
        "process answers (liveness); GET /ready 200 only when every store is served verified and the pair store is "
        "loaded, else 503 (readiness; its JSON body says where each store's bodies come from). Logs go to "
        "standard error as JSON lines: an access record a request (route template, status, bytes, duration, pid; "
        "never a prefix, bucket, path or query string) and events (start-up, verification, reloads, side file, "
        "rate limit). Stops on Ctrl-C or SIGTERM.",
    )
    add(
        s,
        "--store",
        action="append",
        default=[],
        help="a range store built by credcheck build; give it once per hash scheme (SHA-1 and NTLM)",
    )
    pairs = s.add_argument_group(
        "credential pairs", "With --pairs and --key, also answer private pair checks under /v1/pairs/."
    )
    add(pairs, "--pairs", help="a pair store built by credcheck pairs build")
    add(pairs, "--key", help="the key file the pair store was built with (mode 0600)")
    pairs.add_argument(
        "--rate-limit",
        type=float,
        default=DEFAULT_RATE,
        metavar="R",
        help="pair queries a second one client address may make on average, in all workers together "
        f"(default {DEFAULT_RATE:g}; 0 for no limit)",
    )
    pairs.add_argument(
        "--burst",
        type=float,
        default=DEFAULT_BURST,
        metavar="N",
        help=f"pair queries one address may make at once (default {DEFAULT_BURST:g})",
    )
    pairs.add_argument(
        "--trust-forwarded-for",
        action="append",
        default=[],
        metavar="PROXY_IP",
        help="a reverse proxy in front of this server: from it, X-Forwarded-For gives the client's address for the "
        "rate limit and --log-client-address (repeat for a chain; never trusted from anyone else)",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    s.add_argument(
        "--server",
        choices=SERVERS,
        default="auto",
        help="HTTP server (default: auto = the first installed of granian, gunicorn, wsgiref)",
    )
    s.add_argument(
        "--bodies",
        choices=("background", "wait", "off"),
        default="background",
        help="when to make each store's STORE.bodies side file (on disk: a 32 MiB index and about 61 bytes a SHA-1 "
        "hash, some 3x a large store; more for a small one: 61 MB beside the bundled data's 8.8 MB store): "
        "background (default: serve at once, render per request until it is ready), wait (make it before "
        "serving), off (never make one)",
    )
    add(
        s,
        "--workers",
        help="server worker processes (default: one a usable CPU core under granian, two a core under gunicorn: "
        f"{default_workers('granian')} and {default_workers('gunicorn')} here; wsgiref runs one process)",
    )
    s.add_argument("--threads", type=int, default=4, metavar="N", help="gunicorn threads per worker (default: 4)")
    ops = s.add_argument_group("logs and metrics")
    ops.add_argument(
        "--metrics",
        action="store_true",
        help="answer GET /metrics in Prometheus's text format, every worker's counts added up (requests and latency "
        "by route and status, body sources, store state and reloads, pair queries). Off by default: it tells "
        "anyone who can reach the port the server's load and store state; turn it on where only your monitoring "
        "reaches the port, or block /metrics at the proxy",
    )
    ops.add_argument(
        "--log-client-address",
        action="store_true",
        help="put the client's address in each access record (for abuse handling). Off by default: with the time "
        "and route it tells who checked a password when; behind --trust-forwarded-for the forwarded address",
    )
    ops.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="keep no access record per request (events are still logged): a record costs some 10-20 us of CPU, "
        "as much as the cheapest range request (docs/BENCHMARKS.md)",
    )
    s.set_defaults(func=Command(_serve))


def _serve(args: argparse.Namespace) -> int:
    """``credcheck serve [--store PATH]... [--pairs PATH --key KEYFILE]``."""
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
            access_log=args.access_log,
            log_client_address=args.log_client_address,
            metrics=args.metrics,
        )
    except Stopped as stop:
        # A server's stop is its normal end, also while it starts (opening its stores, rendering their bodies
        # with --bodies wait): status 0, as for one while it serves (then its own runner takes the signals).
        print(f"credcheck: {stop.how} before serving", file=sys.stderr)
    return EXIT_OK
