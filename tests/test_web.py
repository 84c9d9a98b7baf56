"""Review web interface, in-process: Flask's test client over the real quarantine store.

The MTA is a small in-memory hold queue (:class:`FakeQueue`, the same protocol as Postfix's
backend), so these tests check the interface's own rules: CSRF refusal, roles, login throttling,
single-use signed links (GET never acts), the body never on the message page, headers. The real
Postfix and a real browser are in tests/test_web_browser.py.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mailwarden.config import load_config
from mailwarden.quarantine.mta import HOLD, MtaNotFound, QueuedMessage
from mailwarden.quarantine.records import HeldRecord
from mailwarden.quarantine.sink import read_settings
from mailwarden.quarantine.store import QuarantineStore
from mailwarden.web.accounts import Accounts
from mailwarden.web.app import create_app
from mailwarden.web.backend import Direct
from mailwarden.web.links import make_token

from conftest import config_text

PASSWORD = "correct horse battery"
SECRET = "4111 1111 1111 1111 secret body text"


@dataclass
class FakeQueue:
    name: str = "fake"
    held: dict[str, QueuedMessage] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)

    def messages(self) -> dict[str, QueuedMessage]:
        return dict(self.held)

    def headers(self, queue_id: str) -> bytes:
        return b"Subject: quarterly numbers\nFrom: alice@corp.test\n"

    def content(self, queue_id: str) -> bytes:
        return self.headers(queue_id) + b"\n" + SECRET.encode()

    def release(self, queue_id: str) -> None:
        if queue_id not in self.held:
            raise MtaNotFound(f"{queue_id} is not held")
        del self.held[queue_id]
        self.released.append(queue_id)

    def delete(self, queue_id: str) -> None:
        if self.held.pop(queue_id, None) is None:
            raise MtaNotFound(f"{queue_id} is not held")


@dataclass
class Site:
    client: Any
    queue: FakeQueue
    store: QuarantineStore
    accounts: Accounts
    key: bytes


def hold(site: Site, qid: str, kind: str = "test_quarantine") -> str:
    now = time.time()
    ref = f"MW-{qid}"
    site.store.add(HeldRecord(
        queue_id=qid, ref=ref, created=now, verdict="quarantine", mode="enforce", score=6.0,
        scores={"testmarker": 6.0}, findings=({"detector": "testmarker", "type": kind,
                                                "score": 6.0, "count": 1, "location": "header",
                                                "evidence": "****1111", "confidence": "high"},),
        reasons=("score 6.00 >= quarantine 5.0",), models={}, direction="outbound",
        sender_domain="corp.test", sender_hash="s", recipient_hashes=("r",),
        recipient_domains=("sink.test",), size=100))
    site.queue.held[qid] = QueuedMessage(qid, HOLD, now, 100, "alice@corp.test",
                                         ("bob@sink.test",))
    return ref


@pytest.fixture
def site(tmp_path: Path) -> Site:
    extra = "[web]\nlogin_attempts = 3\nhigh_severity_types = [\"credit_card\"]\n"
    config = load_config(text=config_text(tmp_path, extra=extra))
    settings = read_settings(config.sections["quarantine"], config)
    queue = FakeQueue()
    store = QuarantineStore(settings.database)
    accounts = Accounts(tmp_path / "web.sqlite")
    for name, role in (("rita", "reviewer"), ("april", "approver"), ("adam", "admin")):
        accounts.add(name, role, PASSWORD)
    key = b"k" * 32
    app = create_app(config, Direct(settings, queue), accounts, key)
    return Site(app.test_client(), queue, store, accounts, key)


def token_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def login(site: Site, user: str, password: str = PASSWORD) -> Any:
    page = site.client.get("/login").get_data(as_text=True)
    return site.client.post("/login", data={"username": user, "password": password,
                                            "csrf_token": token_of(page)})


def csrf(site: Site, path: str = "/") -> str:
    return token_of(site.client.get(path).get_data(as_text=True))


def test_pages_need_login_and_carry_security_headers(site: Site) -> None:
    response = site.client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    page = site.client.get("/login")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert login(site, "rita").status_code == 302
    cookie = next(v for k, v in site.client.get("/").headers.items() if k == "Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie


def test_post_without_csrf_token_is_refused(site: Site) -> None:
    ref = hold(site, "AAAA1")
    assert site.client.post("/login", data={"username": "rita",
                                            "password": PASSWORD}).status_code == 400
    assert login(site, "rita").status_code == 302
    response = site.client.post(f"/m/{ref}/act", data={"action": "release", "reason": "ok"})
    assert response.status_code == 400
    assert "AAAA1" in site.queue.held and site.store.find(ref).state == "held"  # type: ignore[union-attr]
    response = site.client.post(f"/m/{ref}/act", data={"action": "release", "reason": "ok",
                                                       "csrf_token": csrf(site)})
    assert response.status_code == 303 and site.queue.released == ["AAAA1"]


def test_login_is_rate_limited(site: Site) -> None:
    for _ in range(3):
        assert login(site, "rita", "wrong password!").status_code == 401
    assert login(site, "rita").status_code == 429  # even the right password, for a while
    assert login(site, "april").status_code == 429  # per address too: no user guessing


def test_message_page_shows_masked_evidence_not_the_body(site: Site) -> None:
    ref = hold(site, "BBBB1")
    login(site, "april")
    page = site.client.get(f"/m/{ref}").get_data(as_text=True)
    assert "****1111" in page and "test_quarantine" in page and "quarterly numbers" in page
    assert "secret body text" not in page and "4111 1111" not in page


def test_reveal_needs_approver_and_a_reason_and_is_audited(site: Site) -> None:
    ref = hold(site, "CCCC1")
    login(site, "rita")
    assert site.client.get(f"/m/{ref}/reveal").status_code == 403
    assert site.client.post(f"/m/{ref}/reveal", data={"reason": "x",
                                                      "csrf_token": csrf(site)}).status_code == 403
    site.client.post("/logout", data={"csrf_token": csrf(site)})
    login(site, "april")
    no_reason = site.client.post(f"/m/{ref}/reveal", data={"reason": "", "csrf_token": csrf(site)})
    assert no_reason.status_code == 400 and "secret body" not in no_reason.get_data(as_text=True)
    page = site.client.post(f"/m/{ref}/reveal", data={"reason": "customer asked",
                                                      "csrf_token": csrf(site)})
    assert page.status_code == 200 and "secret body text" in page.get_data(as_text=True)
    rows = site.store._rows("SELECT action, actor, detail FROM events WHERE ref = ?", (ref,))
    assert [tuple(r) for r in rows] == [("revealed", "web:april", "customer asked")]


def test_high_severity_needs_an_approver(site: Site) -> None:
    ref = hold(site, "DDDD1", kind="credit_card")
    login(site, "rita")
    site.client.post(f"/m/{ref}/act", data={"action": "release", "reason": "fine",
                                            "csrf_token": csrf(site)})
    assert "DDDD1" in site.queue.held
    site.client.post("/logout", data={"csrf_token": csrf(site)})
    login(site, "april")
    site.client.post(f"/m/{ref}/act", data={"action": "release_fp", "reason": "test card",
                                            "scope": "domain", "csrf_token": csrf(site)})
    assert site.queue.released == ["DDDD1"]
    entries = site.store.allow_entries()
    assert len(entries) == 1 and entries[0].target == "sink.test" and entries[0].expires
    assert entries[0].expires > time.time() + 40 * 86400


def test_release_happens_once(site: Site) -> None:
    ref = hold(site, "EEEE1")
    login(site, "rita")
    for _ in range(2):
        site.client.post(f"/m/{ref}/act", data={"action": "release", "reason": "ok",
                                                "csrf_token": csrf(site)})
    assert site.queue.released == ["EEEE1"]
    rows = site.store._rows("SELECT action FROM events WHERE ref = ?", (ref,))
    assert [r[0] for r in rows] == ["released"]


def test_link_get_never_acts_post_after_confirmation_acts_once(site: Site) -> None:
    ref = hold(site, "FFFF1")
    token = make_token(site.key, ref, "release")
    login(site, "rita")
    for _ in range(3):  # a link scanner or a double click
        page = site.client.get(f"/link/{token}")
        assert page.status_code == 200 and "Nothing has been done yet" in page.get_data(True)
    assert "FFFF1" in site.queue.held
    form = csrf(site, f"/link/{token}")
    response = site.client.post(f"/link/{token}", data={"reason": "ok", "csrf_token": form})
    assert response.status_code == 303 and site.queue.released == ["FFFF1"]
    again = site.client.post(f"/link/{token}", data={"reason": "ok", "csrf_token": form})
    assert again.status_code == 409 and site.queue.released == ["FFFF1"]
    assert site.client.get(f"/link/{token}x").status_code == 403


def test_admin_manages_users_others_cannot(site: Site) -> None:
    login(site, "rita")
    assert site.client.get("/users").status_code == 403
    site.client.post("/logout", data={"csrf_token": csrf(site)})
    login(site, "adam")
    site.client.post("/users", data={"op": "add", "name": "newbie", "role": "reviewer",
                                     "password": PASSWORD, "csrf_token": csrf(site)})
    assert site.accounts.role("newbie") == "reviewer"


def test_filters_select_by_type_and_recipient_domain(site: Site) -> None:
    hold(site, "GGGG1")
    hold(site, "GGGG2", kind="credit_card")
    login(site, "rita")
    page = site.client.get("/?type=credit_card").get_data(as_text=True)
    assert "GGGG2" in page and "GGGG1" not in page
    page = site.client.get("/?rcpt_domain=other.test").get_data(as_text=True)
    assert "GGGG1" not in page and "Nothing matches" in page


def audit_lines(site_root: Path, start: float, minutes: int) -> Path:
    import json
    from datetime import UTC, datetime

    path = site_root / "state" / "audit.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for i in range(minutes):
            at = datetime.fromtimestamp(start + 60 * i, UTC).isoformat(timespec="milliseconds")
            verdict = "quarantine" if i % 3 == 0 else "accept"
            out.write(json.dumps({"v": 1, "time": at, "queue_id": f"OBS{i:03d}", "ref": f"MW-{i}",
                                  "direction": "outbound", "mode": "observe",
                                  "verdict": verdict, "action": "accept", "score": 6.0,
                                  "scores": {}, "findings": [{"type": "iban", "count": 1}],
                                  "sender_domain": "corp.test",
                                  "recipient_domains": ["sink.test"], "reasons": []}) + "\n")
    return path


def test_observe_view_lists_what_enforce_would_have_held(site: Site, tmp_path: Path) -> None:
    audit_lines(tmp_path, time.time() - 600, 7)
    login(site, "rita")
    page = site.client.get("/observe").get_data(as_text=True)
    assert all(f"OBS{i:03d}" in page for i in (0, 3, 6))
    assert "OBS001" not in page and "OBS002" not in page  # accepted either way


def test_report_axis_fits_a_log_spanning_minutes(site: Site, tmp_path: Path) -> None:
    start = 1_800_000_000.0  # 2027-01-15 08:00 UTC
    audit_lines(tmp_path, start, 12)
    login(site, "rita")
    page = site.client.get("/reports").get_data(as_text=True)
    assert "2027-01-15 08:00 to 2027-01-15 08:12 UTC, one bar per minute" in page
    assert page.count("<rect") == 12 and "2025" not in page and "2029" not in page


def test_event_stream_announces_new_holds(site: Site) -> None:
    login(site, "rita")
    since = time.time() - 1
    hold(site, "HHHH1")
    response = site.client.get(f"/events?since={since}", buffered=False)
    assert response.mimetype == "text/event-stream"
    chunks = response.response
    text = ""
    for chunk in chunks:
        text += chunk.decode() if isinstance(chunk, bytes) else chunk
        if "event: held" in text:
            break
    response.close()
    assert '"queue_id": "HHHH1"' in text and "****1111" not in text  # no evidence in events


def test_senders_page_groups_and_bulk_preview_then_apply(site: Site) -> None:
    hold(site, "JJJJ1")
    hold(site, "JJJJ2")
    hold(site, "JJJJ3", kind="credit_card")
    login(site, "rita")
    page = site.client.get("/senders").get_data(as_text=True)
    assert "alice@corp.test" in page and "<td>3</td>" in page
    refs = ["MW-JJJJ1", "MW-JJJJ2", "MW-JJJJ3"]
    preview = site.client.post("/bulk", data={"ref": refs, "action": "delete",
                                              "csrf_token": csrf(site)}).get_data(as_text=True)
    assert "high-severity findings need an approver" in preview and "Apply to 2" in preview
    assert len(site.queue.held) == 3  # a preview changes nothing
    site.client.post("/bulk/apply", data={"ref": refs[:2], "action": "delete",
                                          "reason": "spam run", "csrf_token": csrf(site)})
    assert sorted(site.queue.held) == ["JJJJ3"]


def test_idle_session_ends_and_the_event_stream_does_not_keep_it_alive(site: Site) -> None:
    login(site, "rita")
    with site.client.session_transaction() as session:
        session["last"] = time.time() - 800  # idle timeout 900 s
    site.client.get("/events?since=0", buffered=False).close()
    with site.client.session_transaction() as session:
        assert session["last"] < time.time() - 700
        session["last"] = time.time() - 1000
    response = site.client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
