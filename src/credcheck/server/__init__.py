"""The k-anonymity range service: ``GET /range/{PREFIX}`` byte for byte like HIBP's Pwned Passwords API.

:func:`make_app` turns one SHA-1 store and/or one NTLM store into a WSGI callable; :func:`serve` runs it
under granian (worker processes, the default), gunicorn or a threaded ``wsgiref`` server;
:func:`serve_in_background` runs it in a thread of this process. Any HIBP Pwned Passwords client works
against it unchanged: point it at ``http://host:port``.

- :mod:`.app`: the WSGI app, its routes (a table) and the HIBP wire rules;
- :mod:`.bodies`: range bodies, their gzip encoding and the per-process body cache;
- :mod:`.live`: the served stores, checked on every request and hot reloaded when replaced;
- :mod:`.runners`: granian, gunicorn, wsgiref and the background server, set up against slow clients.

Privacy: the app logs nothing but the prefix (at debug level); the servers run by :func:`serve` keep no
access log, and gunicorn's warnings about bad requests are stripped of the client's address, so client
addresses are not recorded either.
"""

from __future__ import annotations

from .app import RangeApp, Route, make_app
from .runners import SERVERS, default_workers, serve, serve_in_background

__all__ = ["SERVERS", "RangeApp", "Route", "default_workers", "make_app", "serve", "serve_in_background"]
