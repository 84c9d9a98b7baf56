"""Held mail pages: the filtered list, the evidence-first message page, actions and reveal.

Every state change is a POST (CSRF-checked by the app) with a typed reason and goes through the
backend, i.e. the CLI's review code. A reviewer acts on ordinary findings; a message with a
finding type from ``[web] high_severity_types`` needs an approver, and so does revealing a body
(audited with the reason). The body is never part of the message page.
"""

from __future__ import annotations

import calendar
import logging
import time
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from mailwarden.web.backend import BackendError
from mailwarden.web.context import ext, web_config
from mailwarden.web.security import has_role, login_required, require_role

log = logging.getLogger("mailwarden.web")
bp = Blueprint("review", __name__)
FILTER_KEYS = ("type", "detector", "sender", "rcpt_domain", "since", "until", "mode", "state")
ACTIONS = {
    "release": "Release (deliver)",
    "release_fp": "Release as false positive",
    "delete": "Delete",
    "true_positive": "Delete as true positive (confirmed leak)",
}
LIVE_SLACK = 10.0
STATES = ("held", "released", "deleted", "expired", "gone", "all")


def actor() -> str:
    return f"web:{g.user}"


def high_severity(item: dict[str, Any]) -> bool:
    kinds = set(web_config().high_severity_types)
    return any(str(f.get("type")) in kinds for f in item.get("findings", []))


def may_act(item: dict[str, Any]) -> bool:
    return has_role("approver") if high_severity(item) else has_role("reviewer")


def entries(state: str = "held") -> list[dict[str, Any]]:
    try:
        result: list[dict[str, Any]] = ext("backend").call(
            "entries", state=None if state == "all" else state)
    except BackendError as exc:
        abort(503, str(exc))
    return result


def _day(text: str, end: bool = False) -> float | None:
    try:
        stamp = float(calendar.timegm(time.strptime(text.strip(), "%Y-%m-%d")))
    except ValueError:
        return None
    return stamp + 86400.0 if end else stamp


def matches(item: dict[str, Any], query: dict[str, str]) -> bool:
    findings = item.get("findings", [])
    checks = (
        ("type", lambda v: any(f.get("type") == v for f in findings)),
        ("detector", lambda v: any(f.get("detector") == v for f in findings)),
        ("sender", lambda v: v.lower() in str(item.get("sender", "")).lower()),
        ("rcpt_domain", lambda v: v.lower().lstrip("@") in item.get("recipient_domains", [])),
        ("mode", lambda v: item.get("mode") == v),
        ("since", lambda v: (_day(v) or 0.0) <= item["held_at"]),
        ("until", lambda v: item["held_at"] < (_day(v, end=True) or float("inf"))),
    )
    return all(test(query[key]) for key, test in checks if query.get(key))


def current_query() -> dict[str, str]:
    query = {k: request.args.get(k, "").strip()[:200] for k in FILTER_KEYS}
    query["state"] = query["state"] if query["state"] in STATES else "held"
    return query


@bp.route("/")
@login_required
def held() -> Any:
    query = current_query()
    items = [i for i in entries(query["state"]) if matches(i, query)]
    flags = ext("accounts").flags([i["ref"] for i in items])
    choices = {
        "type": sorted({str(f.get("type")) for i in items for f in i["findings"]}),
        "detector": sorted({str(f.get("detector")) for i in items for f in i["findings"]}),
    }
    # Live updates announce what was held from a little before this page was made.
    events_url = url_for("more.events", since=int(time.time() - LIVE_SLACK))
    return render_template("list.html", items=items, query=query, flags=flags,
                           events_url=events_url,
                           choices=choices, states=STATES, actions=ACTIONS,
                           saved=ext("accounts").filters(g.user), high=high_severity)


@bp.route("/filters", methods=["POST"])
@login_required
def save_filter() -> Any:
    query = {k: request.form.get(k, "").strip()[:200] for k in FILTER_KEYS}
    query = {k: v for k, v in query.items() if v}
    ext("accounts").save_filter(g.user, request.form.get("name", "filter"), query)
    flash("Filter saved.")
    return redirect(url_for("review.held") + "?" + urlencode(query))


def item_or_404(ref: str) -> dict[str, Any]:
    try:
        item: dict[str, Any] = ext("backend").call("show", key=ref)
    except BackendError as exc:
        abort(404, str(exc))
    return item


@bp.route("/m/<ref>")
@login_required
def message(ref: str) -> Any:
    item = item_or_404(ref)
    accounts = ext("accounts")
    if item["ref"]:
        accounts.flag(item["ref"], seen_by=g.user)
    return render_template("message.html", item=item, actions=ACTIONS,
                           flags=accounts.flags([item["ref"]]).get(item["ref"], ("", "")),
                           high=high_severity(item), may_act=may_act(item),
                           allow_days=web_config().allow_days, body=None)


@bp.route("/m/<ref>/assign", methods=["POST"])
@login_required
def assign(ref: str) -> Any:
    who = request.form.get("assigned", "").strip()[:64]
    ext("accounts").flag(item_or_404(ref)["ref"], assigned=who)
    return redirect(url_for("review.message", ref=ref))


def perform(item: dict[str, Any], action: str, reason: str, scope: str = "") -> dict[str, Any]:
    """One action on one held message, as the CLI would do it; raises BackendError."""
    if action not in ACTIONS:
        raise BackendError(f"unknown action {action!r}")
    if not reason.strip():
        raise BackendError("a reason is required")
    if not may_act(item):
        raise BackendError("this message has high-severity findings: it needs an approver")
    backend, key, note = ext("backend"), item["ref"] or item["queue_id"], reason.strip()[:500]
    if action in ("release", "release_fp"):
        fp = action == "release_fp"
        allow = scope if fp and scope in ("pair", "domain") else None
        result: dict[str, Any] = backend.call(
            "release", key=key, who=actor(), note=note, false_positive=fp, allow=allow,
            allow_days=web_config().allow_days)
    else:
        result = backend.call("delete", key=key, who=actor(), note=note,
                              confirmed=action == "true_positive")
    log.info("qid=%s web: %s by %s", item["queue_id"], action, g.user)
    return result


@bp.route("/m/<ref>/act", methods=["POST"])
@login_required
def act(ref: str) -> Any:
    item = item_or_404(ref)
    action = request.form.get("action", "")
    try:
        done = perform(item, action, request.form.get("reason", ""),
                       request.form.get("scope", ""))
    except BackendError as exc:
        flash(f"Not done: {exc}", "error")
        return redirect(url_for("review.message", ref=ref)), 303
    flash(f"{ACTIONS[action]}: done for {done['queue_id']} ({done['ref']}).")
    return redirect(url_for("review.held")), 303


@bp.route("/m/<ref>/reveal", methods=["GET", "POST"])
@login_required
def reveal(ref: str) -> Any:
    require_role("approver")
    item = item_or_404(ref)
    if request.method == "GET":
        return render_template("reveal.html", item=item)
    reason = request.form.get("reason", "").strip()[:500]
    if not reason:
        flash("Type the reason for revealing this message.", "error")
        return render_template("reveal.html", item=item), 400
    try:
        body = ext("backend").call("reveal", key=item["ref"], who=actor(), reason=reason)
    except BackendError as exc:
        abort(409, str(exc))
    log.info("qid=%s web: body revealed to %s", item["queue_id"], g.user)
    return render_template("message.html", item=item, actions=ACTIONS, body=body,
                           flags=ext("accounts").flags([item["ref"]]).get(item["ref"], ("", "")),
                           high=high_severity(item), may_act=may_act(item),
                           allow_days=web_config().allow_days)
