"""Notification links and bulk actions: both show what will happen, and only a POST acts.

``/link/TOKEN`` (GET) checks the signed token and shows the item with a confirmation form; its
POST marks the token's nonce used (single-use) and performs the action as the logged-in reviewer.
Bulk actions preview the selected messages and what each one will get (or why it will be
skipped) before a second POST applies them.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from mailwarden.web.backend import BackendError
from mailwarden.web.context import ext, web_config
from mailwarden.web.links import LinkError, read_token
from mailwarden.web.security import login_required
from mailwarden.web.views import ACTIONS, high_severity, item_or_404, may_act, perform

log = logging.getLogger("mailwarden.web")
bp = Blueprint("links", __name__)
MAX_BULK = 100


def _link(token: str) -> Any:
    try:
        link = read_token(ext("key"), token, web_config().link_max_age_seconds)
    except LinkError as exc:
        abort(403, str(exc))
    if ext("accounts").link_used(link.nonce):
        abort(409, "this link was already used")
    return link


@bp.route("/link/<token>", methods=["GET"])
@login_required
def open_link(token: str) -> Any:
    link = _link(token)
    item = item_or_404(link.ref)
    if link.action == "open":
        return redirect(url_for("review.message", ref=item["ref"]))
    return render_template("confirm.html", item=item, token=token, action=link.action,
                           label=ACTIONS[link.action], may_act=may_act(item),
                           high=high_severity(item))


@bp.route("/link/<token>", methods=["POST"])
@login_required
def confirm_link(token: str) -> Any:
    link = _link(token)
    item = item_or_404(link.ref)
    reason = request.form.get("reason", "").strip()
    if not reason or not may_act(item):
        flash("A reason is required." if not reason else
              "This message needs an approver.", "error")
        return redirect(url_for("links.open_link", token=token)), 303
    if not ext("accounts").use_link(link.nonce, g.user):
        abort(409, "this link was already used")
    try:
        done = perform(item, link.action, f"{reason} (from a notification link)")
    except BackendError as exc:
        flash(f"Not done: {exc}", "error")
        return redirect(url_for("review.message", ref=item["ref"])), 303
    flash(f"{ACTIONS[link.action]}: done for {done['queue_id']} ({done['ref']}).")
    return redirect(url_for("review.held")), 303


def _selected() -> list[dict[str, Any]]:
    refs = request.form.getlist("ref")[:MAX_BULK]
    if not refs:
        abort(400, "no message selected")
    return [item_or_404(ref) for ref in refs]


@bp.route("/bulk", methods=["POST"])
@login_required
def bulk_preview() -> Any:
    action = request.form.get("action", "")
    if action not in ACTIONS:
        abort(400, "choose an action")
    plan = []
    for item in _selected():
        why = ("" if item.get("state") == "held" and item.get("mta_queue") == "hold"
               else f"skipped: {item.get('state')} / {item.get('mta_queue')}")
        if not why and not may_act(item):
            why = "skipped: high-severity findings need an approver"
        plan.append((item, why))
    return render_template("bulk.html", plan=plan, action=action, label=ACTIONS[action])


@bp.route("/bulk/apply", methods=["POST"])
@login_required
def bulk_apply() -> Any:
    action, reason = request.form.get("action", ""), request.form.get("reason", "")
    if action not in ACTIONS or not reason.strip():
        abort(400, "an action and a reason are required")
    done, failed = 0, []
    for item in _selected():
        try:
            perform(item, action, reason, request.form.get("scope", ""))
            done += 1
        except BackendError as exc:
            failed.append(f"{item['queue_id']}: {exc}")
    flash(f"{ACTIONS[action]}: {done} done, {len(failed)} not done. " + "; ".join(failed),
          "error" if failed else "info")
    return redirect(url_for("review.held")), 303
