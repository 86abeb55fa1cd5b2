"""The example partner site: sign-up, log-in, a forced password change, log-out and an admin page of events.

Every credential decision is the policy's (docs/INTEGRATIONS.md, "The policy"): ``policy.check`` at sign-up and
change, ``policy.login`` after the password was verified (throttled; a required change flags the session) and
``Depends(policy)`` on the app, which keeps a flagged session on ``/password`` (and ``/logout``). The site's
own part is what every site has: users with salted password hashes, a session, a few pages.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import html
import os
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.middleware.sessions import SessionMiddleware

from credcheck.contrib.fastapi import LoginPolicy
from credcheck.contrib.policy import Canary, Event, Guard, Policy
from credcheck.errors import InputError

#: Test credentials every source reports as leaked (Policy(canaries=...)): log in with them to see the whole
#: path work in production, and an event marked "canary" on the admin page.
CANARY_USER = "canary@site.example"
CANARY = Canary("canary-8xq!Lw2#Tz", username=CANARY_USER)
ADMIN = "admin@site.example"
#: The site's users before the leak: carol reused at this site the password that leaked with her username at
#: the shop (credcheck._demo.LEAKED_COMBOS); the canary account; the admin.
USERS = {
    "carol@shop.example": "Qwerty99",
    CANARY_USER: CANARY.password,
    ADMIN: "admin-k8#Vq2!zLw9@Rt",
}


#: The admin page's columns: what an event says, and nothing more.
COLUMNS = ("time", "stage", "verdict", "action", "user", "canary", "checked", "notify")


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)


class Users:
    """The site's accounts: username → (salt, scrypt hash); never the password itself.

    Accounts are keyed by ``key`` of the username — the guard's user reference — so two usernames the guard
    takes for one user (``Carol@…`` and ``carol@…``: one canonical form) are one account here too; otherwise a
    second account could end the first one's forced change by changing its own password."""

    def __init__(self, initial: dict[str, str], key: Callable[[str], object]) -> None:
        self._accounts: dict[object, tuple[bytes, bytes]] = {}
        self._key = key
        for username, password in initial.items():
            self.set(username, password)

    def __contains__(self, username: str) -> bool:
        return self._key(username) in self._accounts

    def set(self, username: str, password: str) -> None:
        salt = os.urandom(16)
        self._accounts[self._key(username)] = (salt, _hash(password, salt))

    def verify(self, username: str, password: str) -> bool:
        salt, digest = self._accounts.get(self._key(username), (b"\0" * 16, b""))
        return hmac.compare_digest(_hash(password, salt), digest)


def make_app(ranges: str, pairs: str, *, on_error: str = "reject", secret: str | None = None) -> FastAPI:
    """The site, checking passwords against the range service ``ranges`` and pairs against the pair service
    ``pairs``, both under the failure policy ``on_error`` ("reject" or "allow"); ``secret`` keys the user
    references in events (keep it to keep them stable across restarts; default: a new one)."""
    secret = secret or os.urandom(32).hex()
    events: collections.deque[Event] = collections.deque(maxlen=200)
    guard = Guard(
        Policy(canaries=[CANARY]),
        passwords={"source": ranges, "on_error": on_error, "timeout": 3},
        pairs={"source": pairs, "on_error": on_error, "timeout": 3},
        secret=secret,
        callbacks=[events.appendleft],  # a real site also notifies: Event.notify says whom
    )
    policy = LoginPolicy(guard, change_path="/password")

    def account(username: str) -> str | None:
        """The guard's reference of a username: None for one no account can have (blank once canonicalised)."""
        try:
            return guard.reference(username)
        except InputError:
            return None

    users = Users(dict(USERS), key=account)
    app = FastAPI(dependencies=[Depends(policy)])
    # same_site="strict": a form on another site cannot post with the user's session (the example has no CSRF token)
    app.add_middleware(SessionMiddleware, secret_key=os.urandom(32).hex(), same_site="strict")

    @app.get("/")
    async def home(request: Request) -> Response:
        user = request.session.get("user")
        if user is None:
            return page(request, "Welcome", "<p>Sign up or log in.</p>")
        return page(request, "Welcome", f"<p id='who'>Logged in as {html.escape(user)}.</p>")

    @app.get("/signup")
    async def signup_form(request: Request) -> Response:
        return page(request, "Sign up", form("/signup", "username", "password"))

    @app.post("/signup")
    async def signup(request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()]) -> Response:
        if account(username) is None:
            return page(request, "Sign up", form("/signup", "username", "password"), "Choose a username.", 400)
        if username in users:
            return page(request, "Sign up", form("/signup", "username", "password"), "That name is taken.", 400)
        decision = await policy.check("signup", username, password)
        if decision.blocked:
            return page(request, "Sign up", form("/signup", "username", "password"), decision.message(), 400)
        users.set(username, password)
        request.session.clear()
        request.session["user"] = username
        return RedirectResponse("/", 303)

    @app.get("/login")
    async def login_form(request: Request) -> Response:
        return page(request, "Log in", form("/login", "username", "password"))

    @app.post("/login")
    async def login(request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()]) -> Response:
        if not users.verify(username, password):
            return page(request, "Log in", form("/login", "username", "password"), "Wrong username or password.", 401)
        request.session.clear()  # a new session at each log-in
        decision = await policy.login(request, username, password)  # flags the session for a required change
        if decision.blocked:
            request.session.clear()
            return page(request, "Log in", form("/login", "username", "password"), decision.message(), 403)
        request.session["user"] = username
        if decision.message():
            request.session["notice"] = decision.message()
        return RedirectResponse("/password" if decision.change_required else "/", 303)

    @app.get("/password")
    async def change_form(request: Request) -> Response:
        if "user" not in request.session:
            return RedirectResponse("/login", 303)
        return page(request, "Change your password", form("/password", "password"))

    @app.post("/password")
    async def change(request: Request, password: Annotated[str, Form()]) -> Response:
        username = request.session.get("user")
        if username is None:
            return RedirectResponse("/login", 303)
        decision = await policy.check("change", username, password)
        if decision.blocked:
            return page(request, "Change your password", form("/password", "password"), decision.message(), 400)
        users.set(username, password)
        policy.password_changed(username)  # the forced change is over
        request.session["notice"] = "Your password was changed."
        return RedirectResponse("/", 303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/", 303)

    @app.get("/admin")
    async def admin(request: Request) -> Response:
        if request.session.get("user") != ADMIN:
            return page(request, "Admin", "<p>Log in as the admin.</p>", status=403)
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(cell))}</td>"
                for cell in (
                    time.strftime("%H:%M:%S", time.gmtime(event.time)),
                    event.stage,
                    event.verdict,
                    event.action,
                    event.user,  # a keyed hash of the username, never the username
                    "canary" if event.canary else "",
                    "checked" if event.checked else "not checked",
                    ", ".join(event.notify),
                )
            )
            + "</tr>"
            for event in events
        )
        head = "".join(
            f"<th>{name}</th>" for name in ("time", "stage", "verdict", "action", "user", "canary", "checked", "notify")
        )
        return page(request, "Events", f"<table id='events'><tr>{head}</tr>{rows}</table>")

    return app


def form(action: str, *fields: str) -> str:
    """A form posting ``fields`` to ``action``."""
    inputs = "".join(
        f"<label>{name} <input name='{name}' type='{'password' if name == 'password' else 'text'}' required></label> "
        for name in fields
    )
    return f"<form method='post' action='{action}'>{inputs}<button id='submit'>Go</button></form>"


def page(request: Request, title: str, body: str, message: str | None = None, status: int = 200) -> HTMLResponse:
    """A page of the site: the navigation, a notice or an error, the title and the body."""
    user = request.session.get("user")
    links = ["<a href='/'>Home</a>"]
    if user is None:
        links += ["<a href='/signup'>Sign up</a>", "<a href='/login'>Log in</a>"]
    else:
        links += ["<a href='/password'>Change password</a>", "<a href='/admin'>Admin</a>"]
        links.append("<form method='post' action='/logout'><button id='logout'>Log out</button></form>")
    notice = request.session.pop("notice", None)
    said = "".join(
        f"<p id='{i}' role='alert'>{html.escape(m)}</p>" for i, m in (("notice", notice), ("error", message)) if m
    )
    return HTMLResponse(
        f"<!doctype html><title>{title}</title><nav>{' '.join(links)}</nav><h1>{title}</h1>{said}{body}", status
    )
