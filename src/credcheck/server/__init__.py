"""The k-anonymity range service: ``GET /range/{PREFIX}`` byte for byte like HIBP's Pwned Passwords API.

:func:`make_app` turns one SHA-1 store and/or one NTLM store into a WSGI callable; :func:`serve` runs it
under granian (worker processes, the default), gunicorn or a threaded ``wsgiref`` server;
:func:`serve_in_background` runs it in a thread of this process; :func:`build_bodies` writes a store's bodies
side file ahead of serving (``STORE.bodies``, docs/FORMAT.md). Any HIBP Pwned Passwords client works
against it unchanged: point it at ``http://host:port``.

- :mod:`._app`: the WSGI app, its routes (a table) and the HIBP wire rules;
- :mod:`._bodies`: range bodies, their gzip encoding and the per-process body cache;
- :mod:`._bodyfile`: the bodies side file, every range rendered and compressed once, mapped;
- :mod:`._live`: the served stores, checked on every request and hot reloaded when replaced;
- :mod:`._runners`: granian, gunicorn, wsgiref and the background server, set up against slow clients;
- :mod:`._telemetry`, :mod:`._logs`, :mod:`._metrics`: the access log and events as JSON lines, and the Prometheus
  metrics of every worker added up.

Privacy: the access log names a request by its route's template (``/range/{prefix}``), never its path, query
string or headers; the servers' own access logs are off, and gunicorn's warnings about bad requests are
stripped of the client's address. The client's address is recorded only with ``log_client_address``.
"""

from __future__ import annotations

from ._app import RangeApp, make_app
from ._bodyfile import build_bodies
from ._runners import SERVERS, serve, serve_in_background
from ._telemetry import Telemetry

__all__ = ["SERVERS", "RangeApp", "Telemetry", "build_bodies", "make_app", "serve", "serve_in_background"]
