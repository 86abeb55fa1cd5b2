"""The k-anonymity range service: ``GET /range/{PREFIX}`` byte for byte like HIBP's Pwned Passwords API.

:func:`make_app` turns one SHA-1 store and/or one NTLM store into a WSGI callable; :func:`serve` runs it
under granian (worker processes, the default), gunicorn or a threaded ``wsgiref`` server;
:func:`serve_in_background` runs it in a thread of this process. Any HIBP Pwned Passwords client works
against it unchanged: point it at ``http://host:port``.

- :mod:`.app`: the WSGI app, its routes (a table) and the HIBP wire rules;
- :mod:`.bodies`: range bodies, their gzip encoding and the per-process body cache;
- :mod:`.live`: the served stores, checked on every request and hot reloaded when replaced;
- :mod:`.runners`: granian, gunicorn, wsgiref and the background server, set up against slow clients;
- :mod:`.telemetry`, :mod:`.logs`, :mod:`.metrics`: the access log and events as JSON lines, and the Prometheus
  metrics of every worker added up.

Privacy: the access log names a request by its route's template (``/range/{prefix}``), never its path, query
string or headers; the servers' own access logs are off, and gunicorn's warnings about bad requests are
stripped of the client's address. The client's address is recorded only with ``log_client_address``.
"""

from __future__ import annotations

from .app import RangeApp, Route, make_app
from .runners import SERVERS, serve, serve_in_background
from .telemetry import Telemetry

__all__ = ["SERVERS", "RangeApp", "Route", "Telemetry", "make_app", "serve", "serve_in_background"]
