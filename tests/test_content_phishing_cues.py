"""Phishing cues of the ``content`` detector, its score layer, manifest thresholds and the policy.

Each cue must fire on a crafted message and stay quiet on a plain look-alike; a finding's evidence
names cues, never content; a lure read through the real message path is held by the default
policy at the threshold written in the shipped model's manifest.
"""

from __future__ import annotations

import json
import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailwarden.config import load_config
from mailwarden.detectors.base import DetectorContext
from mailwarden.detectors.content.detector import (
    ContentDetector,
    build,
    finding_score,
    text_function,
)
from mailwarden.detectors.content.phish_cues import CUES, message_cues
from mailwarden.detectors.content.stack import StackFormatError, from_manifest
from mailwarden.message import Envelope, Message
from mailwarden.options import Options
from mailwarden.policy import evaluate
from mailwarden.training.content.lures import lure_messages
from mailwarden.verdict import Action, Direction

REPO = Path(__file__).resolve().parent.parent
CONTEXT = DetectorContext(model_dir=REPO / "models", state_dir=REPO / "build")
MANIFEST = REPO / "models" / "content"


def mail(html: str | None = None, text: str = "Hello, see below.", sender: str =
         "Alice <alice@example.org>", reply_to: str | None = None,
         attachment: tuple[str, str] | None = None, subject: str = "Notes") -> Message:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "bob@example.com", subject
    if reply_to:
        msg["Reply-To"] = reply_to
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(f"<html><body>{html}</body></html>", subtype="html")
    if attachment:
        name, body = attachment
        sub = "html" if name.endswith((".html", ".htm")) else "plain"
        if name.endswith(".svg"):
            msg.add_attachment(body.encode(), maintype="image", subtype="svg+xml", filename=name)
        else:
            msg.add_attachment(body.encode(), maintype="text", subtype=sub, filename=name)
    raw = bytes(msg)
    return Message(Envelope("Q7", "alice@example.org", ("bob@example.com",)), raw, len(raw))


def cues(message: Message) -> frozenset[str]:
    return message_cues(message, text_function()(message))


PAIRS: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "link_mismatch": (
        {"html": '<a href="https://evil.example.net/x">https://www.paypal.com/signin</a>'},
        {"html": '<a href="https://www.paypal.com/signin">https://www.paypal.com/signin</a>'}),
    "credential_form": (
        {"html": '<form action="https://x.example.net/a"><input type="password" name="p"></form>'},
        {"html": '<form action="https://x.example.net/s"><input type="text" name="q"></form>'}),
    "login_lure": (
        {"html": '<a href="https://portal.example.net/a">Verify now</a>'},
        {"html": '<a href="https://portal.example.net/a">Meeting minutes</a>'}),
    "ip_host": (
        {"html": '<a href="http://192.0.2.15/login">the portal</a>'},
        {"html": '<a href="http://v2.example.org/login">the portal</a>'}),
    "punycode_host": (
        {"text": "Open https://xn--pypal-4ve.com/account today."},
        {"text": "Open https://paypal.com/account today."}),
    "shortener": (
        {"html": '<a href="https://bit.ly/3xYz">the form</a>'},
        {"html": '<a href="https://bitly-fans.example.org/3xYz">the form</a>'}),
    "display_name_mismatch": (
        {"sender": '"PayPal Service" <alerts@notice-center.example>'},
        {"sender": '"PayPal Service" <service@mail.paypal.com>'}),
    "reply_to_mismatch": (
        {"reply_to": "desk@other-domain.example"},
        {"reply_to": "desk@lists.example.org"}),
    "html_attachment": (
        {"attachment": ("Invoice.html", "<html><body>Invoice</body></html>")},
        {"attachment": ("Invoice.txt", "Invoice 42, due in May.")}),
    "hidden_text": (
        {"html": '<p>Hi</p><div style="font-size:0px;color:#fff">harmless filler words</div>'},
        {"html": '<p>Hi</p><div style="font-size:10px;color:#333">harmless filler words</div>'}),
    "urgency": (
        {"text": "Your account will be suspended within 24 hours."},
        {"text": "Your report is ready whenever you have time."}),
    "credential_text": (
        {"text": "Please confirm your password on the page."},
        {"text": "Please confirm your attendance on the page."}),
}


def test_every_cue_has_a_crafted_case() -> None:
    assert set(PAIRS) == set(CUES)


@pytest.mark.parametrize("cue", sorted(PAIRS))
def test_cue_fires_on_crafted_message_and_not_on_look_alike(cue: str) -> None:
    crafted, look_alike = PAIRS[cue]
    assert cue in cues(mail(**crafted))  # type: ignore[arg-type]
    assert cue not in cues(mail(**look_alike))  # type: ignore[arg-type]


def test_svg_counts_as_html_page_only_with_script() -> None:
    scripted = '<svg xmlns="http://www.w3.org/2000/svg"><script>location="x"</script></svg>'
    plain = '<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>'
    assert "html_attachment" in cues(mail(attachment=("scan.svg", scripted)))
    assert "html_attachment" not in cues(mail(attachment=("logo.svg", plain)))


def test_ipv6_literal_hosts_count_as_ip_hosts() -> None:
    assert "ip_host" in cues(mail(html='<a href="http://[2001:db8::7]/login">portal</a>'))
    assert "ip_host" in cues(mail(text="Sign in at http://[2001:db8::7]/login now."))


def test_plain_mail_fires_no_cue() -> None:
    assert cues(mail(html='<p>See <a href="https://example.org/doc">example.org</a></p>')) == \
        frozenset()


def test_hostile_mime_gives_cues_not_exceptions() -> None:
    raw = b"From: =?bogus?q?x?= <a@b>\nContent-Type: multipart/mixed; boundary=\"\n\n--\n"
    message = Message(Envelope("Q8", "a@b", ("c@d",)), raw, len(raw))
    assert isinstance(cues(message), frozenset)


PHISH = mail(
    html=('<p>Your Microsoft 365 password expires today. Card 4111111111111111 hunter2.</p>'
          '<p><a href="http://192.0.2.44/owa/login">https://login.microsoftonline.com</a></p>'
          '<p><a href="https://bit.ly/4kQ">Keep the same password</a></p>'),
    text="Your Microsoft 365 password expires today. Keep the same password: http://192.0.2.44/",
    sender='"Microsoft 365 Admin" <it-desk@mailbox-quota.example>',
    subject="Action required: password expiry notice")


def default_detector() -> ContentDetector:
    config = load_config(REPO / "deploy" / "mailwarden.toml")
    options = next(d.options for d in config.detectors if d.name == "content")
    return build(options, CONTEXT)


def test_evidence_names_cues_and_never_content() -> None:
    result = default_detector().analyse(PHISH)
    finding = next(f for f in result.findings if f.type == "phishing")
    match = re.fullmatch(r"p=\d\.\d{3} cues=([a-z_,]+)", finding.evidence)
    assert match, finding.evidence
    names = match.group(1).split(",")
    assert set(names) <= set(CUES) and {"ip_host", "link_mismatch", "shortener"} <= set(names)
    text = repr(finding.as_dict())
    for secret in ("4111", "hunter2", "192.0.2", "bit.ly", "microsoft", "mailbox-quota"):
        assert secret not in text.lower()


def test_manifest_thresholds_are_the_default_and_options_override_them() -> None:
    detector = default_detector()
    for kind in ("spam", "phishing"):
        manifest = json.loads((MANIFEST / f"{kind}.json").read_text(encoding="utf-8"))
        stack = from_manifest(manifest)
        assert stack is not None and 0.0 < stack.threshold < 1.0
        assert manifest["stack"]["ham_budget"] == 0.002
        assert detector._rules[kind].threshold == stack.threshold
    assert detector._rules["sensitive"].threshold == 0.9
    forced = build(Options({"phishing": {"threshold": 0.5}}, "detectors.content"), CONTEXT)
    assert forced._rules["phishing"].threshold == 0.5
    common = build(Options({"threshold": 0.7}, "detectors.content"), CONTEXT)
    assert common._rules["spam"].threshold == 0.7


def test_a_finding_at_the_manifest_threshold_reaches_the_default_quarantine() -> None:
    detector, policy = default_detector(), load_config(REPO / "deploy" / "mailwarden.toml").policy
    assert policy.outbound.quarantine is not None
    for kind in ("spam", "phishing"):
        rule = detector._rules[kind]
        assert finding_score(rule.threshold + 1e-9, rule) >= policy.outbound.quarantine
        assert finding_score(1.0, rule) == pytest.approx(rule.weight)
    sensitive = detector._rules["sensitive"]
    assert finding_score(1.0, sensitive) < policy.outbound.quarantine


@pytest.mark.parametrize("raw", [bytes(PHISH.raw), *lure_messages(20021011, 5, "unseen")])
def test_lures_through_the_message_path_are_held_by_the_default_policy(raw: bytes) -> None:
    detector = default_detector()
    message = Message(Envelope("Q9", "alice@example.org", ("bob@example.com",)), raw, len(raw))
    result = detector.analyse(message)
    assert result.scores["phishing"] > detector._rules["phishing"].threshold
    policy = load_config(REPO / "deploy" / "mailwarden.toml").policy
    outcome = evaluate(policy, Direction.OUTBOUND, result.findings, result.scores)
    assert outcome.verdict is Action.QUARANTINE


def test_plain_business_mail_is_not_held() -> None:
    ham = mail(text="Hi Bob, the build passed on Debian; I pushed the patch and updated the "
                    "README. Can you review the makefile change tomorrow? Thanks, Alice")
    result = default_detector().analyse(ham)
    assert not result.findings


def test_cues_raise_the_phishing_probability_over_text_alone() -> None:
    detector = default_detector()
    words = "Please review the shared document and sign in to read it."
    bare = detector.analyse(mail(text=words))
    dressed = detector.analyse(mail(text=words, html=f'<p>{words}</p><a href="https://'
                                    'bit.ly/9z">https://www.dropbox.com/s</a>',
                                    sender='"Dropbox" <share@files-now.example>'))
    assert dressed.scores["phishing"] > bare.scores["phishing"]


@pytest.mark.parametrize("table", [{"text_coef": 1.0}, {"text_coef": "x", "cue_coef": {},
                                   "intercept": 0, "threshold": 0.5},
                                   {"text_coef": 1, "cue_coef": {}, "intercept": 0,
                                    "threshold": 2.0}])
def test_malformed_stack_tables_are_refused(table: dict[str, object]) -> None:
    with pytest.raises(StackFormatError):
        from_manifest({"stack": table})


def test_foreign_lures_are_held_and_foreign_business_mail_is_not() -> None:
    from mailwarden.training.content.lures_i18n import LANGUAGES, foreign_docs

    detector = default_detector()
    threshold = detector._rules["phishing"].threshold
    for kind, held in (("lure", True), ("benign", False)):
        docs = foreign_docs(20021011, 2 * len(LANGUAGES), kind, "unseen")
        assert len({d.digest for d in docs}) >= len(LANGUAGES)
        for doc in docs:
            p = detector._stacks["phishing"].probability(
                detector._models["phishing"].probability(detector._prep.tokens(doc.text)),
                doc.cues)
            assert (p > threshold) is held, (kind, doc.source, p)


def test_budget_threshold_holds_at_most_the_budget_of_ham() -> None:
    from mailwarden.training.content.stacking import budget_threshold

    ham = [i / 1000 for i in range(1000)]  # 0.000 ... 0.999
    t = budget_threshold(ham, 0.002)
    assert sum(s > t for s in ham) == 2 and t == pytest.approx(0.997)
    assert budget_threshold(ham, 0.0) == pytest.approx(0.999)
    assert sum(s > budget_threshold(ham[:400], 0.002) for s in ham[:400]) == 0
