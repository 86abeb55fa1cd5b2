"""WSGI and ASGI middleware that checks the credentials posted to a site's log-in routes and hands the verdict to
the application, in the style of Cloudflare's leaked-credentials detection, for apps that want it without
touching their views (docs/INTEGRATIONS.md, "Middleware"). The Django middleware
(``credcheck.contrib.django.CredentialCheckMiddleware``) is the same over Django's request.

On a configured route (:class:`LoginRoute`: a path, the form or JSON field names of the username and password,
POST only), the body is read — and given back to the application whole: WSGI's ``wsgi.input`` is re-wrapped,
ASGI's receive messages are replayed — and the credentials go to :meth:`Guard.check
<credcheck.contrib._guard.Guard.check>` at the log-in stage (a screen of the submitted credentials before the
application verifies them: no throttle, no state; canaries and events as always). The application then finds:

- the :class:`~credcheck.contrib._guard.Decision` at ``environ["credcheck.screen"]`` (WSGI) or
  ``request.state.credcheck_screen`` (ASGI: ``scope["state"]["credcheck_screen"]``);
- the request header ``Exposed-Credential-Check`` with Cloudflare's values — ``1`` the username and password
  leaked together, ``2`` the username, ``3`` a similar password with the username, ``4`` the password — when
  something leaked, and none otherwise.

A client's own ``Exposed-Credential-Check`` is removed from every request, on every route: the application only
ever sees the one set here. A body larger than ``max_body`` (64 KiB by default), or under WSGI one whose length is
not declared (a chunked body: the ASGI middleware reads those up to ``max_body``), is passed on untouched and not
screened (the decision is then None); a body that is neither a form
(``application/x-www-form-urlencoded``, or ``multipart/form-data``: its text fields, read by the standard
library's MIME parser; the Django middleware reads Django's ``request.POST``) nor JSON, or without the password
field, is not screened either. A form whose credential fields are
given more than once is screened as its first values and as its last (frameworks read either), and the stronger
decision stands.
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import io
import json
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from .._frames import async_entry_point, entry_point
from ..errors import InputError
from ..pairs._names import canon
from ._guard import EXPOSED_CREDENTIAL_CHECK, Decision, Guard
from ._table import Stage
from ._verdicts import Verdict

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "ASGI_STATE_KEY",
    "ENVIRON_KEY",
    "MAX_BODY",
    "CredentialCheckASGI",
    "CredentialCheckWSGI",
    "CredentialScreen",
    "LoginRoute",
]

#: Where the WSGI middleware puts the decision.
ENVIRON_KEY: Final = "credcheck.screen"
#: Where the ASGI middleware puts it: ``scope["state"][ASGI_STATE_KEY]``, i.e. ``request.state.credcheck_screen``.
ASGI_STATE_KEY: Final = "credcheck_screen"
#: The largest body screened: a log-in form is a few hundred bytes.
MAX_BODY: Final = 64 * 1024
_WSGI_HEADER: Final = "HTTP_" + EXPOSED_CREDENTIAL_CHECK.upper().replace("-", "_")
_ASGI_HEADER: Final = EXPOSED_CREDENTIAL_CHECK.lower().encode("latin-1")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True)
class LoginRoute:
    """A log-in route to screen: its ``path`` (exact), and the form or JSON fields of the username and password."""

    path: str
    username_field: str = "username"
    password_field: str = "password"

    def __post_init__(self) -> None:
        for name in ("path", "username_field", "password_field"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"a log-in route's {name} must be a non-empty string, not {value!r}")
        if not self.path.startswith("/"):
            raise ValueError(f"a log-in route's path starts with '/', not {self.path!r}")

    @classmethod
    def of(cls, spec: object) -> LoginRoute:
        """A route from a :class:`LoginRoute`, a path, or a dict of its fields (settings files)."""
        if isinstance(spec, LoginRoute):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"path", "username_field", "password_field"}
            if unknown:
                raise ValueError(
                    f"unknown log-in route setting {sorted(unknown)[0]!r}: path, username_field, password_field"
                )
            return cls(**spec)
        raise TypeError(f"a log-in route is a path, a dict or a LoginRoute, not {type(spec).__name__}")


def _readings(content_type: str, body: bytes) -> tuple[Mapping[str, object], ...]:
    """The fields of a form or JSON body as the application may read them (none for another media type or one
    that does not parse): a form field given more than once is read as its first value by some frameworks
    (Werkzeug, aiohttp) and as its last by others (Django, Starlette), so a form gives both readings."""
    media = content_type.split(";")[0].strip().lower()
    if media == "multipart/form-data":
        pairs = _multipart(content_type, body)
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return ()
        if media == "application/json" or media.endswith("+json"):
            try:
                doc = json.loads(text)  # a repeated key is its last value, as every JSON parser in Python reads it
            except (ValueError, RecursionError):
                return ()
            return (doc,) if isinstance(doc, dict) else ()
        if media != "application/x-www-form-urlencoded":
            return ()
        try:
            pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=100)
        except ValueError:
            return ()
    first: dict[str, object] = {}
    for name, value in pairs:
        first.setdefault(name, value)
    return first, dict(pairs)


def _multipart(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """The text fields of a ``multipart/form-data`` body (files left out), read by the standard library's MIME
    parser; none when it does not parse as one."""
    try:
        head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    except UnicodeEncodeError:
        return []
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return []
    fields: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or part.get_filename() is not None or not isinstance(payload, bytes):
            continue
        try:
            fields.append((name, payload.decode("utf-8")))
        except UnicodeDecodeError:
            continue
        if len(fields) >= 100:
            break
    return fields


def _strongest(decisions: Iterable[Decision | None]) -> Decision | None:
    """Of the decisions on each reading of a body, the one with the strongest action (the most specific verdict
    among equals), so a field given twice cannot hide a leak behind a clean value."""
    found = [decision for decision in decisions if decision is not None]
    order = list(Verdict)
    return max(found, key=lambda d: (d.action.strength, -order.index(d.verdict)), default=None)


class CredentialScreen:
    """What the three middlewares share: the routes, the body limit, and the screen of one request's credentials
    (:meth:`screen`, :meth:`ascreen`) with a guard."""

    def __init__(self, guard: Guard, routes: Iterable[object], *, max_body: int = MAX_BODY) -> None:
        if not isinstance(guard, Guard):
            raise TypeError(f"guard must be a Guard, not {type(guard).__name__}")
        self.guard = guard
        self.routes = {route.path: route for route in map(LoginRoute.of, routes)}
        if not self.routes:
            raise ValueError("no log-in route given: name the paths whose posted credentials are checked")
        if type(max_body) is not int or max_body < 1:
            raise ValueError(f"max_body must be a positive number of bytes, not {max_body!r}")
        self.max_body = max_body

    def route(self, method: str, path: str) -> LoginRoute | None:
        """The route a request is screened as (POST to a configured path), or None."""
        return self.routes.get(path) if method.upper() == "POST" else None  # Werkzeug reads "post" as POST

    def wanted(self, declared: str | None) -> bool:
        """Whether a body of the declared ``Content-Length`` is read for screening (known, and small enough)."""
        return declared is not None and declared.isascii() and declared.isdigit() and int(declared) <= self.max_body

    @staticmethod
    def _credentials(route: LoginRoute, fields: Mapping[str, object] | None) -> tuple[str | None, str] | None:
        if fields is None:
            return None
        password, username = fields.get(route.password_field), fields.get(route.username_field)
        if not isinstance(password, str) or not password:
            return None
        if not isinstance(username, str) or not username:
            return None, password
        try:
            canon(username)
        except InputError:  # a username no account can have (blank, a lone surrogate): the password alone
            return None, password
        return username, password

    def _candidates(self, route: LoginRoute, content_type: str, body: bytes) -> list[tuple[str | None, str]]:
        found: list[tuple[str | None, str]] = []
        for fields in _readings(content_type, body):
            credentials = self._credentials(route, fields)
            if credentials is not None and credentials not in found:
                found.append(credentials)
        return found

    @entry_point
    def screen(self, route: LoginRoute, content_type: str, body: bytes) -> Decision | None:
        """The decision for the credentials in ``body`` (None when it holds none to check); a form whose
        credential fields are given twice is screened as each reading of it, and the stronger decision stands."""
        candidates = self._candidates(route, content_type, body)
        return _strongest([self.guard.check(Stage.LOGIN, *found) for found in candidates])

    @entry_point
    def screen_fields(self, route: LoginRoute, fields: Mapping[str, object] | None) -> Decision | None:
        """:meth:`screen` for fields a framework parsed already (Django's ``request.POST``, multipart included)."""
        found = self._credentials(route, fields)
        return None if found is None else self.guard.check(Stage.LOGIN, *found)

    @async_entry_point
    async def ascreen(self, route: LoginRoute, content_type: str, body: bytes) -> Decision | None:
        """:meth:`screen` from async code."""
        candidates = self._candidates(route, content_type, body)
        return _strongest([await self.guard.acheck(Stage.LOGIN, *found) for found in candidates])


class CredentialCheckWSGI:
    """The WSGI middleware (see the module docs): ``app = CredentialCheckWSGI(app, guard, ["/login"])``."""

    def __init__(
        self, app: WSGIApplication, guard: Guard, routes: Iterable[object], *, max_body: int = MAX_BODY
    ) -> None:
        self.app = app
        self.screen = CredentialScreen(guard, routes, max_body=max_body)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ.pop(_WSGI_HEADER, None)  # never believe a client's own
        environ[ENVIRON_KEY] = None
        route = self.screen.route(str(environ.get("REQUEST_METHOD", "")), str(environ.get("PATH_INFO", "")))
        declared = environ.get("CONTENT_LENGTH")
        if route is not None and self.screen.wanted(None if declared is None else str(declared).strip()):
            body = environ["wsgi.input"].read(int(str(declared).strip()))
            environ["wsgi.input"] = io.BytesIO(body)  # the app reads the whole body, as it came
            environ["CONTENT_LENGTH"] = str(len(body))
            decision = self.screen.screen(route, str(environ.get("CONTENT_TYPE", "")), body)
            del body
            environ[ENVIRON_KEY] = decision
            value = None if decision is None else decision.exposed_credential_check
            if value is not None:
                environ[_WSGI_HEADER] = value
        return self.app(environ, start_response)


class CredentialCheckASGI:
    """The ASGI middleware (see the module docs): ``app = CredentialCheckASGI(app, guard, ["/login"])``."""

    def __init__(self, app: ASGIApp, guard: Guard, routes: Iterable[object], *, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.screen = CredentialScreen(guard, routes, max_body=max_body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = [(name, value) for name, value in scope.get("headers", ()) if name.lower() != _ASGI_HEADER]
        scope = {**scope, "headers": headers, "state": {**scope.get("state", {}), ASGI_STATE_KEY: None}}
        route = self.screen.route(str(scope.get("method", "")), str(scope.get("path", "")))
        declared = next((value.decode("latin-1") for name, value in headers if name.lower() == b"content-length"), None)
        # A chunked body declares no length: ASGI hands it over in messages, read here up to max_body (a WSGI
        # server's wsgi.input without a length cannot be read safely, so the WSGI middleware leaves it unscreened).
        if route is None or (declared is not None and not self.screen.wanted(declared.strip())):
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        chunks: list[bytes] = []
        whole = False
        while True:
            message = await receive()
            received.append(message)
            if message.get("type") != "http.request":
                break  # the client went away: the app hears it as it would have
            chunks.append(message.get("body", b""))
            if sum(map(len, chunks)) > self.screen.max_body:
                break  # longer than it said: passed on as it came, not screened
            if not message.get("more_body", False):
                whole = True
                break

        replay = _Replay(received, receive)
        # this frame is in the traceback of anything the app raises: it keeps no message of the body (the password)
        del received, message
        if whole:
            content_type = next((v.decode("latin-1") for n, v in headers if n.lower() == b"content-type"), "")
            decision = await self.screen.ascreen(route, content_type, b"".join(chunks))
            scope["state"][ASGI_STATE_KEY] = decision
            value = None if decision is None else decision.exposed_credential_check
            if value is not None:
                headers.append((_ASGI_HEADER, value.encode("latin-1")))
        del chunks
        await self.app(scope, replay, send)


class _Replay:
    """An ASGI ``receive`` that gives the messages already read, in order, then the live ones (its repr shows none
    of them: a body holds a password)."""

    __slots__ = ("_messages", "_receive")

    def __init__(self, messages: list[Message], receive: Receive) -> None:
        self._messages = messages
        self._receive = receive

    async def __call__(self) -> Message:
        return self._messages.pop(0) if self._messages else await self._receive()

    def __repr__(self) -> str:
        return f"<replay of {len(self._messages)} ASGI messages>"
