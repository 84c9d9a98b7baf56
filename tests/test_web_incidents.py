"""Sender incidents in the review interface (issue 17 with issue 15's sender hold), in-process.

The hold registry and state store are the sending detector's own (SQLite in the state
directory, opened as the daemon opens them); the MTA is test_web's in-memory hold queue. A
reviewer sees the incident, its chart and its held messages but cannot clear it; keeping the
hold is an audit row; an approver clears it and releases the episode's messages in one decision.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_web import PASSWORD, SECRET, FakeQueue, Site, csrf, hold, login

from mailwarden.config import Config, load_config
from mailwarden.detectors.sending.holds import HoldRecord
from mailwarden.quarantine.senders import key_of, open_sending
from mailwarden.quarantine.sink import read_settings
from mailwarden.quarantine.store import QuarantineStore
from mailwarden.web.accounts import Accounts
from mailwarden.web.app import create_app
from mailwarden.web.backend import Direct

from conftest import REPO, config_text

SENDER = "alice@corp.test"  # the sender of test_web's held messages
KEY = key_of(SENDER)


@pytest.fixture
def incident(tmp_path: Path) -> tuple[Site, Config]:
    extra = (f'[detectors.sending]\nenabled = true\nmodel_dir = "{REPO}/models/sending"\n'
             '[web]\nhigh_severity_types = ["credit_card"]\n')
    config = load_config(text=config_text(tmp_path, extra=extra))
    settings = read_settings(config.sections["quarantine"], config)
    queue, accounts = FakeQueue(), Accounts(tmp_path / "web.sqlite")
    for name, role in (("rita", "reviewer"), ("april", "approver")):
        accounts.add(name, role, PASSWORD)
    app = create_app(config, Direct(settings, queue), accounts, b"k" * 32)
    site = Site(app.test_client(), queue, QuarantineStore(settings.database), accounts, b"k" * 32)
    with open_sending(config) as ctx:
        ctx.holds.put(HoldRecord(KEY, "a***@corp.test", time.time() - 60,
                                 "3 messages >= 0.9 within 10 min"), "detector")
    for qid in ("H1", "H2"):
        hold(site, qid, kind="sender_hold")
    return site, config


def test_reviewer_sees_the_incident_but_cannot_clear_it(incident: tuple[Site, Config]) -> None:
    site, config = incident
    login(site, "rita")
    listing = site.client.get("/incidents").get_data(as_text=True)
    assert f"/incidents/{KEY}" in listing and "a***@corp.test" in listing
    assert SENDER not in listing
    page = site.client.get(f"/incidents/{KEY}").get_data(as_text=True)
    assert 'id="activity"' in page and "<rect" in page and "usual peak" in page
    assert "H1" in page and "H2" in page and SECRET not in page
    assert 'value="clear"' not in page  # not offered to a reviewer ...
    token = csrf(site, f"/incidents/{KEY}")
    refused = site.client.post(f"/incidents/{KEY}/decide", data={
        "decision": "clear", "reason": "looks fine", "csrf_token": token})
    assert refused.status_code == 403  # ... nor accepted from one
    kept = site.client.post(f"/incidents/{KEY}/decide", data={
        "decision": "keep", "reason": "waiting for the user", "csrf_token": token})
    assert kept.status_code == 303
    with open_sending(config) as ctx:
        assert ctx.holds.get(KEY) is not None
        assert [(e.event, e.actor) for e in ctx.holds.events(KEY)][-1] == ("kept", "rita")
    assert site.client.post(f"/incidents/{KEY}/decide", data={
        "decision": "keep", "reason": "x"}).status_code == 400  # no CSRF token


def test_approver_clears_the_hold_and_releases_the_episode(incident: tuple[Site, Config]) -> None:
    site, config = incident
    login(site, "april")
    token = csrf(site, f"/incidents/{KEY}")
    assert site.client.post(f"/incidents/{KEY}/decide", data={
        "decision": "clear", "messages": "", "reason": "", "csrf_token": token}
    ).status_code == 400  # a decision needs a reason
    done = site.client.post(f"/incidents/{KEY}/decide", data={
        "decision": "clear", "messages": "release", "reason": "password reset, user confirmed",
        "csrf_token": token})
    assert done.status_code == 303
    assert sorted(site.queue.released) == ["H1", "H2"] and not site.queue.held
    with open_sending(config) as ctx:
        assert ctx.holds.get(KEY) is None
        assert ("cleared", "april") in [(e.event, e.actor) for e in ctx.holds.events(KEY)]
    again = site.client.post(f"/incidents/{KEY}/decide", data={
        "decision": "clear", "reason": "twice", "csrf_token": token})
    assert again.status_code == 409  # not held any more: nothing happens twice


def test_activity_chart_counts_per_hour_against_the_usual_peak() -> None:
    from mailwarden.web.incidents import activity_chart

    hour = 1_765_000_800.0  # an hour boundary
    svg = activity_chart([hour + 10, hour + 20, hour + 30, hour + 3700], usual_peak=1.0)
    counts = [int(t.rsplit(": ", 1)[1]) for t in
              (part.split("<title>", 1)[1].split("</title>", 1)[0]
               for part in svg.split("<rect")[1:])]
    assert counts == [3, 1]
    assert "usual peak: 1.0 per hour" in svg and "3/h" in svg
    assert "No held message" in activity_chart([], 4.0)
