"""The ``leak`` detector: validated types, look-alikes, confidence, aggregation, scores, safety."""

from __future__ import annotations

import base64
import json
import logging
import statistics
import string
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from mailbuild import (
    as_message,
    attach,
    der_body,
    docx_bytes,
    iban_complete,
    luhn_complete,
    mail,
    random_token,
    tiny_pdf,
    xlsx_bytes,
    zip_bytes,
)

from mailwarden.detectors.base import DetectorContext, registrations
from mailwarden.detectors.leak.detector import LeakDetector, build
from mailwarden.options import ConfigError, Options
from mailwarden.verdict import Confidence, DetectorResult, Finding

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
CONTEXT = DetectorContext(model_dir=Path("/nonexistent"), state_dir=Path("/nonexistent"))
FILLER = "The quarterly numbers were discussed at length in the meeting. " * 8  # ~500 chars

VISA = luhn_complete("453957876362148")
VISA_GROUPED = " ".join(VISA[i : i + 4] for i in range(0, 16, 4))
MC2 = luhn_complete("222100456123987")
AMEX = luhn_complete("37828224631447")  # 15 digits
IBAN_DE = iban_complete("DE", "370400440532013000")
IBAN_GB = iban_complete("GB", "WEST12345698765432")
AWS_ID = "AKIA" + random_token("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, seed=3)
AWS_SECRET = random_token(ALNUM + "/+", 40, seed=4)
GITHUB = "ghp_" + random_token(ALNUM, 36, seed=5)


def detector(**options: Any) -> LeakDetector:
    return build(Options(options, "detectors.leak"), CONTEXT)


def analyse(body: str, **options: Any) -> DetectorResult:
    return detector(**options).analyse(as_message(mail(body)))


def by_type(result: DetectorResult) -> dict[str, Finding]:
    out: dict[str, Finding] = {}
    for f in result.findings:
        assert f.type not in out, f"two findings of {f.type} in one location set"
        out[f.type] = f
    return out


def only(body: str, kind: str, **options: Any) -> Finding:
    found = by_type(analyse(body, **options))
    assert list(found) == [kind], found
    return found[kind]


def printed(iban: str) -> str:
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


# ------------------------------------------------------------------ positives and confidence


@pytest.mark.parametrize(("body", "confidence"), [
    (f"Card: {VISA_GROUPED} exp 04/27", Confidence.HIGH),
    (f"Here it is {VISA_GROUPED} as agreed", Confidence.MEDIUM),
    (f"ref {VISA} as agreed", Confidence.LOW),
    (f"visa {FILLER}{FILLER} ref {VISA}", Confidence.LOW),  # keyword outside the 300-char window
    (f"Mastercard {MC2}", Confidence.HIGH),
    (f"amex {AMEX[:4]} {AMEX[4:10]} {AMEX[10:]}", Confidence.HIGH),
])
def test_card_confidence(body: str, confidence: Confidence) -> None:
    f = only(body, "credit_card")
    assert f.confidence is confidence
    assert f.count == 1


def test_card_evidence_is_masked() -> None:
    f = only(f"card {VISA}", "credit_card")
    assert f.evidence == f"****{VISA[-4:]}"
    assert dict(f.details) == {"kinds": "visa"}


@pytest.mark.parametrize(("body", "confidence"), [
    ("SSN: 536-22-1234", Confidence.HIGH),
    ("Social security number 536 22 1234", Confidence.MEDIUM),
    ("ssn 536221234", Confidence.MEDIUM),
    ("reference 536-22-1234 attached", Confidence.LOW),
])
def test_ssn_confidence(body: str, confidence: Confidence) -> None:
    f = only(body, "us_ssn")
    assert f.confidence is confidence
    assert f.evidence == "***-**-1234"


def test_bare_nine_digits_are_not_an_ssn() -> None:
    assert analyse("order 536221234 shipped").findings == ()


@pytest.mark.parametrize(("body", "confidence", "evidence"), [
    (f"Please wire to IBAN {printed(IBAN_DE)} today", Confidence.HIGH, "DE**...**00"),
    (f"{IBAN_GB}", Confidence.MEDIUM, f"GB**...**{IBAN_GB[-2:]}"),
])
def test_iban(body: str, confidence: Confidence, evidence: str) -> None:
    f = only(body, "iban")
    assert (f.confidence, f.evidence) == (confidence, evidence)


def test_iban_evidence_format_and_boundaries() -> None:
    assert only(f"IBAN {printed(IBAN_DE)} BIC COBADEFFXXX", "iban").evidence == "DE**...**00"
    assert analyse(f"id {IBAN_DE}7 end").findings == ()  # longer token: not an IBAN


def pem(label: str, body: str, end: bool = True) -> str:
    tail = f"\n-----END {label}-----" if end else ""
    return f"-----BEGIN {label}-----\n{body}{tail}\n"


def test_private_key_block() -> None:
    f = only("key follows\n" + pem("RSA PRIVATE KEY", der_body()), "private_key")
    assert (f.confidence, f.evidence) == (Confidence.HIGH, "RSA PRIVATE KEY")
    cut = only(pem("PRIVATE KEY", der_body(), end=False) + "\nthanks", "private_key")
    assert cut.confidence is Confidence.MEDIUM


def test_private_key_in_json_and_in_a_quoted_reply() -> None:
    key = f"-----BEGIN PRIVATE KEY-----\n{der_body()}\n-----END PRIVATE KEY-----\n"
    service_account = json.dumps({"type": "service_account", "private_key": key})
    assert "\\n" in service_account and "\n" not in service_account  # escaped on one line
    assert only(service_account, "private_key").confidence is Confidence.HIGH
    quoted = "\n".join("> " + line for line in pem("EC PRIVATE KEY", der_body()).splitlines())
    assert only(quoted, "private_key").confidence is Confidence.HIGH


def test_aws_key_with_and_without_secret() -> None:
    both = only(f"aws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\n",
                "aws_access_key")
    assert both.confidence is Confidence.HIGH
    assert both.evidence == f"AKIA****{AWS_ID[-4:]}"
    alone = only(f"the key {AWS_ID} was rotated", "aws_access_key")
    assert alone.confidence is Confidence.MEDIUM


def b64url(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


JWT = f"{b64url({'alg': 'HS256', 'typ': 'JWT'})}.{b64url({'sub': '42', 'n': 'x'})}." + \
    random_token(ALNUM + "-_", 43, seed=6)


@pytest.mark.parametrize(("token", "kind"), [
    (GITHUB, "github"),
    ("github_pat_" + random_token(ALNUM, 22, 7) + "_" + random_token(ALNUM, 59, 8), "github"),
    ("glpat-" + random_token(ALNUM, 20, 9), "gitlab"),
    ("xoxb-1234567890-9876543210-" + random_token(ALNUM, 24, 10), "slack"),
    ("sk_live_" + random_token(ALNUM, 24, 11), "stripe"),
    ("AIza" + random_token(ALNUM + "-_", 35, 12), "google"),
    ("npm_" + random_token(ALNUM, 36, 13), "npm"),
    ("AIzaPPHPDUGYaOdinsgtkWsjjIfJlnq-Yz7dTY8", "google"),  # a dash inside the random part
])
def test_vendor_tokens(token: str, kind: str) -> None:
    f = only(f"use {token} for the deploy", "api_token")
    assert f.confidence is Confidence.HIGH
    assert dict(f.details) == {"kinds": kind}
    assert f.evidence.endswith(token[-4:]) and token not in f.evidence


def test_random_bodies_with_runs_or_without_digits_still_count() -> None:
    slack = "xoxb-10305267771-932772888888-" + random_token(ALNUM, 24, 15)
    assert only(f"token {slack}", "api_token").confidence is Confidence.HIGH
    letters_only = "AKIA" + random_token("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 16, 16)
    assert only(f"key {letters_only}", "aws_access_key")


def test_jwt_confidence() -> None:
    assert only(f"Authorization: Bearer {JWT}", "api_token").confidence is Confidence.HIGH
    assert only(f"here {JWT} ok", "api_token").confidence is Confidence.MEDIUM
    assert only(f"https://x.example/verify?c={JWT}", "api_token").confidence is Confidence.LOW
    assert only(f"Bearer {JWT}", "api_token").evidence == "JWT alg=HS256"


@pytest.mark.parametrize(("body", "confidence"), [
    ("password: Xy7!kq2Pzz", Confidence.HIGH),
    ("Username: bob\nPassword:\n  T4ngo-Foxtrot-91", Confidence.HIGH),
    ("DB_PASSWORD=S3cr3tValue!", Confidence.HIGH),
    ("my password is hunter22", Confidence.MEDIUM),
    ("pw: 83920174", Confidence.LOW),
    ("Kennwort: sommer2024", Confidence.MEDIUM),
    ("dsn postgres://app:Xy7kq2Pzz9@db.internal/prod", Confidence.HIGH),
    ('{"user": "svc", "password": "Xy7!kq2Pzz"}', Confidence.HIGH),
    ("db:\n  password: 'Xy7!kq2Pzz'\n", Confidence.HIGH),
    ("<login><password>Xy7!kq2Pzz</password></login>", Confidence.HIGH),
    ("Password: %C6NQJUadk", Confidence.HIGH),  # a leading % is not a template by itself
    ("Password = %aZbrHXnVroyW%", Confidence.HIGH),  # nor %...% around a mixed-case value
])
def test_passwords(body: str, confidence: Confidence) -> None:
    f = only(body, "password")
    assert f.confidence is confidence
    assert "****" in f.evidence


# ------------------------------------------------------------------ look-alikes must not fire

LOOKALIKES = [
    f"card {VISA[:-1]}{(int(VISA[-1]) + 1) % 10}",  # Luhn-invalid
    f"card {luhn_complete('953957876362148')}",  # Luhn-valid, no issuer range
    "card 4242 4242 4242 4242 and 5555 5555 5555 4444",  # published test cards
    "order 112-8456721-3345678 confirmed",  # Amazon-style order number
    "Order #4000123456 shipped, invoice 2002-08-22-0042",
    "UPS 1Z999AA10123456784, USPS 9400 1000 0000 0000 0000 00, FedEx 7489 2011 2345",
    "call +1 (555) 123-4567 or +44 20 7946 0958 or 555-867-5309",
    "id 550e8400-e29b-41d4-a716-446655440000 and 12345678-1234-1234-1234-123456789012",
    "sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709 md5 d41d8cd98f00b204e9800998ecf8427e",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    f"IBAN {IBAN_DE[:2]}{(int(IBAN_DE[2:4]) + 1):02d}{IBAN_DE[4:]}",  # wrong check digits
    f"IBAN {IBAN_DE[:-1]}",  # wrong length
    "SSN 000-12-3456, SSN 666-12-3456, SSN 912-12-3456, SSN 123-00-4567, SSN 123-45-0000",
    "SSN 078-05-1120 and SSN 123-45-6789 (sample numbers)",
    pem("PUBLIC KEY", der_body()) + pem("CERTIFICATE", der_body(seed=2)),
    pem("PGP PUBLIC KEY BLOCK", "Version: x\n\n" + der_body()),
    pem("PGP SIGNATURE", der_body()),
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7" + "A" * 200 + " user@host",
    pem("RSA PRIVATE KEY", "...key goes here..."),
    "aws key AKIAIOSFODNN7EXAMPLE secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "token ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "stripe test key sk_test_" + random_token(ALNUM, 24, 14),
    "Forgot your password? Click here to reset your password.",
    "password: ******** pwd=${DB_PASS} password: <password> Password: changeme",
    "Password: Required. pwd=/home/jm/src password: your_password pass: hello",
    "passwd: {{ vault_password }} password = %s password: same-as-before@example.com",
    "password: <your password>\nThanks for the update yesterday",
    '{"password_hash": "Xy7!kq2Pzz", "passwordPolicy": "Xy7!kq2Pzz"}',
    "SSN: see file.\n" + "x" * 60 + " order 536221234",  # bare digits, keyword not close
    "SSN rules apply to order #536221234",
    "Bankverbindung GB36 UMVB 3937 3787 5065 63",  # bad IBAN whose digit tail passes Luhn
    "password=%DB_PASSWORD% and pwd=%s",
]


@pytest.mark.parametrize("body", LOOKALIKES)
def test_lookalikes_do_not_fire(body: str) -> None:
    assert analyse(body).findings == ()


def test_test_cards_can_be_reported_when_asked() -> None:
    f = only("card 5105 1051 0510 5100", "credit_card", ignore_test_cards=False)
    assert f.confidence is Confidence.HIGH


def test_extra_password_placeholders() -> None:
    assert only("password: Winter2024!", "password")
    assert analyse("password: Winter2024!", password_placeholders=["winter2024!"]).findings == ()


# ------------------------------------------------------------------ aggregation and scores


def test_one_finding_per_type_and_location_counting_distinct_values() -> None:
    other = luhn_complete("455673758689985")
    f = only(f"card {VISA}, card {other}, again {VISA}, and {VISA_GROUPED}", "credit_card")
    assert f.count == 2
    assert f.evidence == f"****{VISA[-4:]}, ****{other[-4:]}"


def test_value_in_text_and_html_alternatives_counts_once() -> None:
    msg = mail(f"card {VISA}", f"<p>card <b>{VISA_GROUPED}</b></p>")
    result = detector().analyse(as_message(msg))
    assert [(f.type, f.location, f.count) for f in result.findings] == [("credit_card", "body", 1)]


def expected_score(weight: float, factors: list[float], exponent: float = 0.6) -> float:
    """The documented formula: weight x mean factor x n ** exponent."""
    n = len(factors)
    return weight * (sum(factors) / n) * n**exponent


def test_scores_follow_the_documented_formula() -> None:
    one_high = only(f"card {VISA}", "credit_card").score
    one_low = only(f"ref {VISA}", "credit_card").score
    cards = [luhn_complete(f"4539{n:04d}7636214") for n in range(5)]
    five_high = only("cards: " + ", ".join(cards), "credit_card")
    assert one_high == pytest.approx(expected_score(4.0, [1.0]))
    assert one_low == pytest.approx(expected_score(4.0, [0.35]))
    assert five_high.count == 5
    assert five_high.score == pytest.approx(expected_score(4.0, [1.0] * 5))
    # The guide values: 1 low card ~1-2, 1 high card ~4, 5+ high cards >= 10.
    assert 1 <= one_low <= 2 and 3.5 <= one_high <= 4.5 and five_high.score >= 10


def test_findings_of_a_type_share_the_type_score_across_locations() -> None:
    msg = mail(f"card {VISA}")
    attach(msg, f"name,card\nbob,{MC2}\n".encode(), "cards.csv")
    findings = detector().analyse(as_message(msg)).findings
    assert sorted(f.location for f in findings) == ["attachment:cards.csv", "body"]
    total = sum(f.score for f in findings)
    assert total == pytest.approx(expected_score(4.0, [1.0, 1.0]))
    assert findings[0].score == pytest.approx(total / 2)


def test_weights_factors_exponent_are_options() -> None:
    f = only(f"ref {VISA}", "credit_card", type_weights={"credit_card": 10.0},
             confidence_factors={"low": 0.5}, count_exponent=1.0)
    assert f.score == pytest.approx(5.0)


def test_min_confidence_and_types_options() -> None:
    assert analyse(f"ref {VISA}", min_confidence="medium").findings == ()
    assert only(f"card {VISA} SSN: 536-22-1234", "us_ssn", types=["us_ssn"])


@pytest.mark.parametrize("options", [
    {"typo": 1}, {"types": ["credit_card", "passport"]}, {"type_weights": {"card": 2.0}},
    {"confidence_factors": {"certain": 1.0}}, {"min_confidence": "sure"},
    {"proximity": -1}, {"type_weights": {"credit_card": "high"}},
])
def test_bad_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        detector(**options)


def test_registered_as_builtin() -> None:
    registration = registrations()["leak"]
    assert registration.default_enabled
    built = registration.factory(Options({}, "detectors.leak"), CONTEXT)
    assert built.name == "leak"
    assert built.describe()["reader_pdf"] in ("yes", "missing")


def test_raw_scores() -> None:
    msg = mail(f"card {VISA}, ref {MC2}, SSN: 536-22-1234")
    attach(msg, b"PK\x03\x04broken", "x.zip")
    scores = detector().analyse(as_message(msg)).scores
    assert scores == {"leak": 3.0, "leak_high": 3.0, "leak_unscannable": 1.0}
    assert detector().analyse(as_message(mail("hello"))).scores["leak"] == 0.0


def test_unscannable_parts_become_findings() -> None:
    msg = mail("nothing here")
    attach(msg, b"PK\x03\x04broken", "broken.zip")
    result = detector(unscannable_score=0.7).analyse(as_message(msg))
    (f,) = result.findings
    assert (f.type, f.location, f.evidence, f.score) == (
        "unscannable_attachment", "attachment:broken.zip", "damaged zip archive", 0.7)


def test_subject_is_scanned() -> None:
    msg = mail("hi", subject=f"card {VISA}")
    assert [f.location for f in detector().analyse(as_message(msg)).findings] == ["subject"]
    assert detector(scan_subject=False).analyse(as_message(msg)).findings == ()


# ------------------------------------------------------------------ carriers


def test_values_are_found_in_every_attachment_format() -> None:
    line = f"Card number {VISA_GROUPED}"
    msg = mail("see attachments")
    attach(msg, tiny_pdf([line], compress=True), "a.pdf")
    attach(msg, docx_bytes(["x"], [["card", VISA_GROUPED]]), "b.docx")
    attach(msg, xlsx_bytes([["card number"], [VISA_GROUPED]]), "c.xlsx")
    attach(msg, zip_bytes({"in/d.csv": line.encode(),
                           "e.zip": zip_bytes({"f.txt": f"iban {IBAN_DE}".encode()})}), "g.zip")
    found = {(f.type, f.location) for f in detector().analyse(as_message(msg)).findings}
    # The card is the same value everywhere: it counts once, at its first location.
    assert found == {("credit_card", "attachment:a.pdf"), ("iban", "attachment:g.zip/e.zip/f.txt")}
    names = ["a.pdf", "b.docx", "c.xlsx", "g.zip"]
    other = {name: luhn_complete(f"45395787636{n:03d}9") for n, name in enumerate(names)}
    msg = mail("x")
    attach(msg, tiny_pdf([f"card {other['a.pdf']}"]), "a.pdf")
    attach(msg, docx_bytes([f"card {other['b.docx']}"]), "b.docx")
    attach(msg, xlsx_bytes([["card", other["c.xlsx"]]]), "c.xlsx")
    attach(msg, zip_bytes({"h.txt": f"card {other['g.zip']}".encode()}), "g.zip")
    locations = sorted(f.location for f in detector().analyse(as_message(msg)).findings)
    assert locations == ["attachment:a.pdf", "attachment:b.docx", "attachment:c.xlsx",
                         "attachment:g.zip/h.txt"]


# ------------------------------------------------------------------ safety


def all_secrets() -> dict[str, str]:
    return {
        "card": VISA, "card grouped": VISA_GROUPED, "ssn": "536-22-1234", "iban": IBAN_DE,
        "aws id": AWS_ID, "aws secret": AWS_SECRET, "github": GITHUB, "jwt": JWT,
        "password": "Xy7!kq2Pzz", "url password": "Qz9xLm2Pw8", "key body": der_body()[:64],
    }


def test_no_secret_ever_leaves_the_detector(caplog: pytest.LogCaptureFixture) -> None:
    s = all_secrets()
    body = (
        f"card {s['card grouped']} ssn {s['ssn']} iban {s['iban']}\n"
        f"aws {s['aws id']} {s['aws secret']}\ntoken {s['github']} bearer {s['jwt']}\n"
        f"password: {s['password']}\npostgres://app:{s['url password']}@db/x\n"
        + pem("RSA PRIVATE KEY", der_body())
    )
    msg = mail(body, subject=f"ssn {s['ssn']}")
    attach(msg, body.encode(), "copy.txt")
    caplog.set_level(logging.DEBUG)
    result = detector().analyse(as_message(msg))
    kinds = {f.type for f in result.findings}
    assert kinds == {"credit_card", "us_ssn", "iban", "aws_access_key", "api_token", "password",
                     "private_key"}
    exported = json.dumps([f.as_dict() for f in result.findings]) + repr(result) + caplog.text
    for name, secret in s.items():
        compact = secret.replace(" ", "").replace("-", "")
        assert secret not in exported, name
        assert compact not in exported.replace(" ", "").replace("-", ""), name


def test_analyse_is_thread_safe() -> None:
    shared = detector()
    messages = [as_message(mail(f"card {luhn_complete(f'45395787636{n:03d}9')} SSN: 536-22-1234"))
                for n in range(40)]
    sequential = [shared.analyse(m) for m in messages]
    fresh = [as_message(m.raw) for m in messages]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(shared.analyse, fresh))
    assert [r.findings for r in parallel] == [r.findings for r in sequential]


def test_typical_message_scans_in_milliseconds() -> None:
    text = (FILLER + "\n") * 100  # ~50 KB of prose with digits
    text += f"card {VISA}\n" + "Order 4000123456, call 555-867-5309, id 2002-08-22.\n" * 50
    shared = detector()
    timings = []
    for _ in range(15):
        message = as_message(mail(text))
        started = time.perf_counter()
        result = shared.analyse(message)
        timings.append(time.perf_counter() - started)
    assert [f.type for f in result.findings] == ["credit_card"]
    assert statistics.median(timings) < 0.05  # measured ~3 ms; generous for shared CPUs
