"""The floor under ``credcheck serve``: granian, run exactly as credcheck runs it, with the least WSGI app that
answers the same ranges (benchmarks/range_density.py measures it beside nginx and credcheck).

The app sends each ``/range/{PREFIX}`` the bytes credcheck would (the store's bodies side file, plain or gzip by
``Accept-Encoding``) with as many headers of the same sizes, and does nothing else: no check that the files are
unchanged, no ETag of the range's rows, no conditional requests, no padding, no other routes. So its CPU per
request is what granian and one copy of the body cost; credcheck's own work is the difference to it::

    python benchmarks/granian_floor.py STORE PORT WORKERS
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from credcheck.server._bodyfile import BodyFile
from credcheck.server._runners import granian_settings
from credcheck.store import RangeStore

_STORE_ENV = "CREDCHECK_FLOOR_STORE"
_HEADERS = [
    ("Cache-Control", "public, max-age=2678400"),
    ("ETag", '"0123456789abcdef-00000-gzip"'),
    ("Last-Modified", "Tue, 01 Dec 2026 00:00:00 GMT"),
    ("Vary", "Accept-Encoding, Add-Padding"),
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Expose-Headers", "ETag"),
    ("Content-Type", "text/plain; charset=utf-8"),
    ("X-Content-Type-Options", "nosniff"),
]


def floor_app() -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    """The WSGI app of one worker (a granian factory)."""
    bodies = BodyFile(RangeStore(os.environ[_STORE_ENV], verify=False))

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        prefix = int(environ["PATH_INFO"][7:12], 16)
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = bodies.gzipped(prefix)
            start_response("200 OK", [*_HEADERS, ("Content-Encoding", "gzip"), ("Content-Length", str(len(body)))])
        else:
            body = bodies.plain(prefix)
            start_response("200 OK", [*_HEADERS, ("Content-Length", str(len(body)))])
        return [body]

    return app


def main() -> None:
    import granian

    store, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.environ[_STORE_ENV] = os.path.abspath(store)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    granian.Granian("granian_floor:floor_app", **granian_settings("127.0.0.1", port, workers)).serve()


if __name__ == "__main__":
    main()
