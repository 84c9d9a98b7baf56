"""The Flask application of the review interface: wiring, CSRF, sessions, headers, errors.

:func:`create_app` builds the app from the validated configuration, a
:class:`~mailwarden.web.backend.Backend`, the :class:`~mailwarden.web.accounts.Accounts` file and
the signing key; the pages live in :mod:`mailwarden.web.views` (held mail, evidence, actions),
:mod:`mailwarden.web.views_links` (notification links, bulk actions) and
:mod:`mailwarden.web.views_more` (live events, observe view, reports, users). Flask-WTF's
``CSRFProtect`` refuses every POST without a valid token (400); Jinja autoescapes everything.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from mailwarden.config import Config
from mailwarden.quarantine.sink import read_settings
from mailwarden.web import incidents, views, views_links, views_more
from mailwarden.web.accounts import Accounts
from mailwarden.web.backend import Backend
from mailwarden.web.context import ext
from mailwarden.web.security import LoginLimiter, Sessions, client_address, security_headers

log = logging.getLogger("mailwarden.web")
auth = Blueprint("auth", __name__)


def create_app(config: Config, backend: Backend, accounts: Accounts, key: bytes) -> Flask:
    web = config.web
    assert web is not None
    app = Flask("mailwarden.web", template_folder="templates", static_folder="static")
    app.config.update(
        SECRET_KEY=key, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=web.secure_cookies, SESSION_COOKIE_NAME="mailwarden_session",
        WTF_CSRF_TIME_LIMIT=None, WTF_CSRF_SSL_STRICT=True, MAX_CONTENT_LENGTH=256 * 1024,
        SEND_FILE_MAX_AGE_DEFAULT=3600, TEMPLATES_AUTO_RELOAD=False)
    app.jinja_env.autoescape = True
    if web.proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=web.proxy_hops,  # type: ignore[method-assign]
                                x_proto=web.proxy_hops, x_host=web.proxy_hops)
    CSRFProtect(app)
    settings = read_settings(config.sections["quarantine"], config)
    app.extensions.update(
        mw_web=web, mw_config=config, mw_settings=settings, mw_backend=backend,
        mw_accounts=accounts, mw_key=key,
        mw_sessions=Sessions(accounts, web.idle_timeout_seconds, web.session_max_seconds),
        mw_limiter=LoginLimiter(web.login_attempts, web.login_window_seconds))
    for blueprint in (auth, views.bp, views_links.bp, views_more.bp, incidents.bp):
        app.register_blueprint(blueprint)
    app.after_request(security_headers)
    app.before_request(_cross_site_refused)
    app.register_error_handler(CSRFError, _csrf_error)
    for status in (400, 403, 404, 405, 409, 413, 429, 503):
        app.register_error_handler(status, _error)
    app.context_processor(_template_globals)
    return app


def _cross_site_refused() -> None:
    """Fetch Metadata on top of the CSRF token: no state change from another site."""
    if request.method == "POST" and request.headers.get("Sec-Fetch-Site") == "cross-site":
        abort(403, "cross-site request refused")


def _csrf_error(exc: CSRFError) -> tuple[str, int]:
    log.warning("web: POST %s without a valid CSRF token from %s refused: %s", request.path,
                client_address(), exc.description)
    return render_template("error.html", status=400, message=exc.description), 400


def _error(exc: Any) -> tuple[str, int]:
    status = int(getattr(exc, "code", 500) or 500)
    return render_template("error.html", status=status,
                           message=getattr(exc, "description", "")), status


def _template_globals() -> dict[str, Any]:
    from mailwarden.web.security import has_role

    return {"user": g.get("user"), "role": g.get("role"), "has_role": has_role,
            "fmt_time": _fmt_time, "fmt_left": _fmt_left}


def _fmt_time(stamp: float | None) -> str:
    import time

    if not stamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def _fmt_left(expires: float | None) -> str:
    import time

    from mailwarden.quarantine.format import fmt_age

    if expires is None:
        return "never"
    left = expires - time.time()
    return "due now" if left <= 0 else fmt_age(left)


@auth.route("/login", methods=["GET", "POST"])
def login() -> Any:
    target = _safe_next(request.values.get("next", ""))
    if request.method == "GET":
        return render_template("login.html", next=target)
    name = request.form.get("username", "").strip().lower()[:64]
    password = request.form.get("password", "")
    limiter: LoginLimiter = ext("limiter")
    keys = (f"ip:{client_address()}", f"user:{name}")
    if limiter.blocked(*keys):
        log.warning("web: login throttled for user %r from %s", name, client_address())
        return render_template("login.html", next=target,
                               error="Too many failed logins: try again later."), 429
    role = ext("accounts").verify(name, password)
    if role is None:
        limiter.failed(*keys)
        log.warning("web: login failed for user %r from %s", name, client_address())
        return render_template("login.html", next=target,
                               error="Wrong user name or password."), 401
    limiter.succeeded(keys[1])
    ext("sessions").login(name)
    log.info("web: %s (%s) logged in from %s", name, role, client_address())
    return redirect(target or url_for("review.held"))


@auth.route("/logout", methods=["POST"])
def logout() -> Any:
    ext("sessions").logout()
    flash("Logged out.")
    return redirect(url_for("auth.login"))


def _safe_next(target: str) -> str:
    """Only a path on this site (no //host, no scheme) after login."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return ""
