"""Live events, the observe-mode view, reports and user management.

``/events`` is a server-sent-event stream announcing held messages held since the list page that
opened it was made (the page's script adds them to the list and, if the reviewer allowed it,
raises a browser notification); it ends after half a minute and the browser reconnects. ``/observe``
lists what enforce mode would have held, from the audit log; ``/reports`` serves the audit
report's tables and an SVG chart whose time axis fits the data; ``/users`` lets an admin manage
accounts.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from markupsafe import Markup

from mailwarden.report import page as report
from mailwarden.report.rows import read_rows
from mailwarden.sinks.audit import read_settings as audit_settings
from mailwarden.web.accounts import ROLES, AccountError
from mailwarden.web.backend import BackendError
from mailwarden.web.charts import verdict_chart
from mailwarden.web.context import ext
from mailwarden.web.security import login_required, require_role

log = logging.getLogger("mailwarden.web")
bp = Blueprint("more", __name__)
STREAM_SECONDS = 30.0
POLL_SECONDS = 2.0
OBSERVE_LIMIT = 500
HOLDING = ("quarantine", "reject", "tempfail")


@bp.route("/events")
@login_required
def events() -> Response:
    backend = ext("backend")
    try:
        since = float(request.args.get("since", ""))
    except ValueError:
        since = time.time()
    seen: set[str] = set()

    def stream() -> Iterator[str]:
        yield "retry: 3000\n\n"
        deadline = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            try:
                items = backend.call("entries", state="held")
            except BackendError:
                continue
            for item in items:
                key = str(item["ref"] or item["queue_id"])
                if key not in seen and float(item["held_at"]) >= since:
                    seen.add(key)
                    yield "event: held\ndata: " + json.dumps(_announce(item)) + "\n\n"
            yield ": keep-alive\n\n"

    return Response(stream_with_context(stream()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _announce(item: dict[str, Any]) -> dict[str, Any]:
    """What a live event tells: no addresses beyond the sender, no evidence."""
    return {"ref": item["ref"], "queue_id": item["queue_id"], "sender": item.get("sender", ""),
            "types": sorted({str(f.get("type")) for f in item.get("findings", [])}),
            "score": item.get("score"), "url": url_for("review.message",
                                                       ref=item["ref"] or item["queue_id"])}


def audit_path() -> Path:
    config = ext("config")
    return audit_settings(config.sections["audit"], config.state_dir).path


def _tail(path: Path, limit: int) -> list[dict[str, Any]]:
    out: deque[dict[str, Any]] = deque(maxlen=limit)
    try:
        with path.open(encoding="utf-8", errors="replace") as stream:
            for line in stream:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("mode") == "observe" and record.get("verdict") in HOLDING:
                    out.append(record)
    except FileNotFoundError:
        return []
    return list(reversed(out))


@bp.route("/observe")
@login_required
def observe() -> Any:
    path = audit_path()
    return render_template("observe.html", rows=_tail(path, OBSERVE_LIMIT), path=path)


@bp.route("/reports")
@login_required
def reports() -> Any:
    path = audit_path()
    files = [path] if path.exists() else []
    rows, bad = read_rows(files)
    summary = report.Summary.of(rows, bad, 0.6)
    return render_template(
        "reports.html", path=path, count=len(rows),
        summary=Markup(report.summary_html(summary)),  # noqa: S704 (escaped by report)
        senders=Markup(report.senders_html(summary, 20)),  # noqa: S704
        chart=Markup(verdict_chart(rows)))  # noqa: S704 (escaped in charts)


@bp.route("/users", methods=["GET", "POST"])
@login_required
def users() -> Any:
    require_role("admin")
    accounts = ext("accounts")
    if request.method == "POST":
        name, op = request.form.get("name", ""), request.form.get("op", "")
        try:
            if op == "add":
                accounts.add(name, request.form.get("role", ""),
                             request.form.get("password", ""))
            elif op == "remove" and name != g.user:
                accounts.remove(name)
            else:
                raise AccountError("unknown request (you cannot remove yourself)")
        except AccountError as exc:
            flash(str(exc), "error")
        else:
            log.info("web: user %s: %s by %s", name, op, g.user)
            flash(f"User {name}: {op} done.")
        return redirect(url_for("more.users")), 303
    return render_template("users.html", users=accounts.users(), roles=ROLES)


@bp.route("/senders")
@login_required
def senders() -> Any:
    """Held mail grouped by sender: one decision (previewed) for all of a sender's messages."""
    from mailwarden.web.views import ACTIONS, entries

    groups: dict[str, list[dict[str, Any]]] = {}
    for item in entries("held"):
        groups.setdefault(str(item.get("sender", "")), []).append(item)
    rows = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return render_template("senders.html", rows=rows, actions=ACTIONS)
