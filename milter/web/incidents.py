"""Sender incidents in the review interface: one page per sender hold, one decision for all.

The sending detector holds every further message of a sender it judges compromised (see
:mod:`mailwarden.detectors.sending.hold`); :mod:`mailwarden.quarantine.senders` lists and clears
those holds on the command line, and this page does the same for reviewers, through the same
functions. A page shows the hold (since when, why, its audit rows), the sender's learning state
and own peaks, a server-rendered chart of the episode's held messages per hour against the
sender's usual peak, and the held messages themselves. The decision is a POST with a reason:
clear the hold (new mail is scored again) or keep holding, optionally with one action for all
the episode's held messages (through the same code as the message page). Clearing needs an
approver; every decision is an audit row. No address is shown beyond the masked label.
"""

from __future__ import annotations

import logging
import time
from html import escape
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from markupsafe import Markup

from mailwarden.detectors.sending.holds import HoldEvent
from mailwarden.detectors.sending.names import HOLD_TYPE
from mailwarden.detectors.sending.profile import Profile
from mailwarden.quarantine.senders import clear_hold, describe, key_of, open_sending
from mailwarden.web.backend import BackendError
from mailwarden.web.context import ext
from mailwarden.web.security import has_role, login_required, require_role

log = logging.getLogger("mailwarden.web")
bp = Blueprint("incidents", __name__)
DECISIONS = {"keep": "Keep holding the sender", "clear": "Clear the hold (approver)"}
W, H, LEFT, BOTTOM = 640, 180, 36, 24


def episode_items(key: str, since: float) -> list[dict[str, Any]]:
    """Held messages of this sender since its hold engaged (matched by the sender's key)."""
    from mailwarden.web.views import entries

    return [item for item in entries("held")
            if not str(item.get("sender", "")).startswith("@")  # domain only: not matchable
            and key_of(str(item.get("sender", ""))) == key
            and float(item.get("held_at") or 0) >= since - 3600
            and HOLD_TYPE in (item.get("types") or ())]


def activity_chart(times: list[float], usual_peak: float) -> str:
    """Held messages per hour of the episode (bars) against the sender's usual hourly peak."""
    if not times:
        return '<p class="empty">No held message of this episode is in the hold queue.</p>'
    start = min(times) - min(times) % 3600
    cells = [0] * (int((max(times) - start) // 3600) + 1)
    for at in times:
        cells[int((at - start) // 3600)] += 1
    top = max(*cells, usual_peak, 1.0)
    plot_h, width = H - BOTTOM - 8, min((W - LEFT - 8) / len(cells), 40.0)  # few hours: narrow
    parts = [f'<svg class="chart" id="activity" viewBox="0 0 {W} {H}" role="img" '
             'aria-label="held messages per hour against the usual peak">']
    for i, count in enumerate(cells):
        h = count / top * plot_h
        parts.append(f'<rect x="{LEFT + i * width:.1f}" y="{H - BOTTOM - h:.1f}" '
                     f'width="{max(width - 1, 1):.1f}" height="{h:.1f}" fill="#c0392b">'
                     f'<title>{escape(_hour(start + i * 3600))}: {count}</title></rect>')
    y = H - BOTTOM - usual_peak / top * plot_h
    parts.append(f'<line x1="{LEFT}" x2="{W - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#2c3e50" '
                 f'stroke-dasharray="4 3"><title>usual peak: {usual_peak:.1f} per hour</title>'
                 '</line>')
    parts.append(f'<text x="{LEFT}" y="{H - 6}" font-size="11">{escape(_hour(start))}</text>')
    parts.append(f'<text x="4" y="14" font-size="11">{top:g}/h</text></svg>')
    return "".join(parts)


def _hour(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:00 UTC", time.gmtime(at))


@bp.route("/incidents")
@login_required
def incidents() -> Any:
    with open_sending(ext("config")) as ctx:
        records = ctx.holds.all()
    return render_template("incidents.html", records=records)


@bp.route("/incidents/<key>")
@login_required
def incident(key: str) -> Any:
    with open_sending(ext("config")) as ctx:
        record, events = ctx.holds.get(key), ctx.holds.events(key)
        blob = ctx.store.get(key)
    if record is None and not events:
        abort(404, "no such sender incident")
    profile = Profile.decode(blob)
    info = describe(profile, profile.last or time.time())
    since = record.since if record else (events[-1].at if events else 0.0)
    items = episode_items(key, since)
    chart = activity_chart([float(i["held_at"]) for i in items if i.get("held_at")],
                           float(info["usual_peaks"].get("messages_per_hour", 0.0)))
    return render_template("incident.html", key=key, record=record, events=events, info=info,
                           items=items, chart=Markup(chart),  # noqa: S704 (escaped above)
                           decisions=DECISIONS, may_clear=has_role("approver"))


@bp.route("/incidents/<key>/decide", methods=["POST"])
@login_required
def decide(key: str) -> Any:
    decision, reason = request.form.get("decision", ""), request.form.get("reason", "").strip()
    action = request.form.get("messages", "")
    if decision not in DECISIONS or not reason:
        abort(400, "choose a decision and give a reason")
    if decision == "clear":
        require_role("approver")
    with open_sending(ext("config")) as ctx:
        record = ctx.holds.get(key)
        if record is None:
            abort(409, "this sender is not held")
        if decision == "clear":
            clear_hold(ctx, key, g.user, reason)
        else:
            ctx.holds.note(HoldEvent(time.time(), key, record.label, "kept", g.user, reason))
    log.info("web: sender incident %s: %s by %s", key, decision, g.user)
    done = _apply_to_messages(key, record.since, action, reason) if action else 0
    flash(f"{DECISIONS[decision]}: done; {done} held message(s) handled.")
    return redirect(url_for("incidents.incident", key=key)), 303


def _apply_to_messages(key: str, since: float, action: str, reason: str) -> int:
    from mailwarden.web.views import perform

    done = 0
    for item in episode_items(key, since):
        try:
            perform(item, action, reason)
            done += 1
        except BackendError as exc:
            flash(f"{item['queue_id']}: {exc}", "error")
    return done
