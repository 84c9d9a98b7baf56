"""Sessions, roles, login throttling and response headers of the review interface.

The session is Flask's signed cookie (HttpOnly, SameSite=Strict, Secure when ``[web]
secure_cookies``), holding the user, a random session id, the login time and the last request
time: it ends after ``idle_timeout_seconds`` without a request, ``session_max_seconds`` after the
login, on logout (the id is revoked) and when the user's password or role changes. Roles rank
reviewer < approver < admin. :class:`LoginLimiter` counts failed logins per client address and per
user name in a sliding window. Every response carries a CSP without inline script, nosniff,
``frame-ancestors 'none'`` and no-referrer.
"""

from __future__ import annotations

import functools
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, abort, current_app, g, redirect, request, session, url_for

from mailwarden.web.accounts import RANK, Accounts

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")
F = TypeVar("F", bound=Callable[..., Any])


class LoginLimiter:
    """At most ``attempts`` failures per key in ``window`` seconds (in-process, thread-safe)."""

    def __init__(self, attempts: int, window: float):
        self.attempts = attempts
        self.window = window
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        fails = self._fails.setdefault(key, deque())
        while fails and fails[0] <= now - self.window:
            fails.popleft()
        return fails

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.attempts for k in keys)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, user_key: str) -> None:
        with self._lock:
            self._fails.pop(user_key, None)


class Sessions:
    """Login state on top of Flask's signed session cookie."""

    def __init__(self, accounts: Accounts, idle: float, lifetime: float):
        self.accounts = accounts
        self.idle = idle
        self.lifetime = lifetime
        self._revoked: set[str] = set()
        self._lock = threading.Lock()

    def login(self, user: str) -> None:
        session.clear()  # a fresh session on login: no fixation
        now = time.time()
        session.update(user=user, sid=secrets.token_urlsafe(16), at=now, last=now,
                       changed=self.accounts.changed(user), role=self.accounts.role(user))
        session.permanent = False

    def logout(self) -> None:
        with self._lock:
            self._revoked.add(str(session.get("sid", "")))
        session.clear()

    def current(self, touch: bool = True) -> tuple[str, str] | None:
        """(user, role) of a live session, else None (and the session is cleared); ``touch``
        False (the live event stream) does not count as activity for the idle timeout."""
        user, now = session.get("user"), time.time()
        if not user:
            return None
        with self._lock:
            revoked = session.get("sid") in self._revoked
        stale = (now - float(session.get("last", 0)) > self.idle
                 or now - float(session.get("at", 0)) > self.lifetime)
        role = self.accounts.role(str(user))
        if (revoked or stale or role is None or role != session.get("role")
                or self.accounts.changed(str(user)) != session.get("changed")):
            session.clear()
            return None
        if touch:
            session["last"] = now
        return str(user), role


def login_required(func: F) -> F:
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        # The event stream reconnects by itself: it must not keep an idle session alive.
        who = current_app.extensions["mw_sessions"].current(request.endpoint != "more.events")
        if who is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        g.user, g.role = who
        return func(*args, **kwargs)

    return inner  # type: ignore[return-value]


def has_role(role: str) -> bool:
    return RANK.get(str(g.get("role", "")), -1) >= RANK[role]


def require_role(role: str) -> None:
    if not has_role(role):
        abort(403, f"this needs the {role} role")


def client_address() -> str:
    return str(request.remote_addr or "-")


def security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response
