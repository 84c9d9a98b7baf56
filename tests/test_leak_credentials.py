"""Credentials in their written forms (issue 16): each form is a ``password`` finding, masked.

Pairs on one line (``user: NAME pass: VALUE``) and two, ``login/pass`` pairs, six languages,
URLs and connection strings, ``.netrc`` and ``.pgpass`` lines, environment and config files; and
the look-alikes that must stay clean (policy prose, documentation placeholders, *pass* that is no
password, colon lines, meeting invitations). The last tests go through the real message path: a
raw MIME message with a base64 text attachment, a CSV and a ZIP.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from mailbuild import as_message

from mailwarden.detectors.base import DetectorContext
from mailwarden.detectors.leak.detector import build, scan_text
from mailwarden.detectors.leak.scan import ScanSettings
from mailwarden.options import Options
from mailwarden.verdict import Confidence, DetectorResult, Finding

CONTEXT = DetectorContext(model_dir=Path("/nonexistent"), state_dir=Path("/nonexistent"))
SECRET = "Qv8#mZ2rTx"  # URL-safe forms use URL_SECRET (no '#')
URL_SECRET = "Qv8mZ2rTx7"


def analyse(body: str, **options: Any) -> DetectorResult:
    raw = ("Subject: test\nContent-Type: text/plain; charset=utf-8\n\n" + body).encode()
    return build(Options(options, "detectors.leak"), CONTEXT).analyse(as_message(raw))


def the_password(body: str, secret: str, count: int = 1) -> Finding:
    """The one finding of ``body``: a password, ``count`` values, never a value itself."""
    findings = analyse(body).findings
    assert [f.type for f in findings] == ["password"], findings
    finding = findings[0]
    assert finding.count == count and "****" in finding.evidence
    exported = json.dumps(finding.as_dict()) + repr(finding)
    assert secret not in exported
    return finding


def keys(text: str) -> list[str]:
    """The values the scanners extract (the de-duplication keys), to check their boundaries."""
    return [m.key for m in scan_text(text, ScanSettings()) if m.type == "password"]


FORMS = [
    # pairs on one line, in several languages, separators and cases
    (f"user: jsmith pass: {SECRET}", SECRET),
    (f"User: jsmith, Pass: {SECRET}", SECRET),
    (f"USER=jsmith PASS={SECRET}", SECRET),
    (f"login: a.weber | pwd: {SECRET}", SECRET),
    (f"username -> svc_backup / passwd -> {SECRET}", SECRET),
    (f"Benutzer: mmartin Kennwort: {SECRET}", SECRET),
    (f"identifiant : lucie mot de passe : {SECRET}", SECRET),
    (f"usuario: jperez contraseña: {SECRET}", SECRET),
    (f"USUÁRIO: pedro SENHA: {SECRET}", SECRET),
    (f"gebruiker: t.jansen wachtwoord: {SECRET}", SECRET),
    (f"e-mail: alice@corp.example\tpw: {SECRET}", SECRET),
    # pairs on two lines, with a blank line between
    (f"Login: jsmith\n\nPass: {SECRET}", SECRET),
    (f"- user: deploy\n- PASS => {SECRET}", SECRET),
    (f"identifiant => k.nowak\r\n\tPass => {SECRET}", SECRET),
    # login/pass pairs
    (f"login/pass: jsmith / {SECRET}", SECRET),
    (f"user:pass = jsmith:{URL_SECRET}", URL_SECRET),
    (f"Benutzer/Passwort: mmartin/{URL_SECRET}", URL_SECRET),
    # labelled values, "is" forms
    (f"the wifi passcode: {SECRET}", SECRET),
    (f"Votre mot de passe est : {SECRET}", SECRET),
    (f"Ihr Kennwort lautet: {SECRET}", SECRET),
    (f"Tu contraseña es {SECRET}", SECRET),
    (f"Sua senha é: {SECRET}", SECRET),
    (f"your password is now {SECRET}", SECRET),
    (f"mdp : {SECRET}", SECRET),
    (f"Пароль: {SECRET}", SECRET),
    (f"hasło: {SECRET}", SECRET),
    # table cells
    (f"Password\t{SECRET}", SECRET),
    (f"| user | jsmith |\n| pass | {SECRET} |", SECRET),
    # URLs and connection strings
    (f"postgres://app:{URL_SECRET}@db.corp.example:5432/prod", URL_SECRET),
    (f"mysql://root:{URL_SECRET}@10.0.0.5/shop", URL_SECRET),
    (f"mongodb+srv://app:{URL_SECRET}@cluster0.ab1cd.mongodb.net/test", URL_SECRET),
    (f"redis://:{URL_SECRET}@cache:6379/0", URL_SECRET),
    (f"amqps://svc:{URL_SECRET}@mq.corp.example/vhost", URL_SECRET),
    (f"smtps://alice@corp.example:{URL_SECRET}@smtp.corp.example:465", URL_SECRET),
    (f"jdbc:mysql://app:{URL_SECRET}@db:3306/x", URL_SECRET),
    (f"jdbc:postgresql://db:5432/prod?user=app&password={URL_SECRET}&ssl=true", URL_SECRET),
    (f"jdbc:sqlserver://db:1433;user=sa;password={URL_SECRET};encrypt=true", URL_SECRET),
    (f"jdbc:oracle:thin:scott/{URL_SECRET}@db:1521:ORCL", URL_SECRET),
    (f"Server=db;Database=prod;User Id=sa;Password={URL_SECRET};", URL_SECRET),
    (f"host=db port=5432 dbname=prod user=app password={SECRET}", SECRET),
    # .netrc and .pgpass
    (f"machine api.corp.example login alice password {SECRET}", SECRET),
    (f"machine h.example\n  login alice\n  password {SECRET}", SECRET),
    (f"db.corp.example:5432:prod:app:{SECRET}", SECRET),
    (f"*:*:*:postgres:{SECRET}", SECRET),
    # environment, compose and config files
    (f"export DB_PASSWORD={SECRET}", SECRET),
    (f'export X_SECRET="{SECRET}"', SECRET),
    (f"SMTP_PASS={SECRET}", SECRET),
    (f"  MYSQL_ROOT_PASSWORD: {SECRET}", SECRET),
    (f"$env:DB_PWD = '{SECRET}'", SECRET),
    (f'{{"pass": "{SECRET}"}}', SECRET),
    (f"<db_password>{SECRET}</db_password>", SECRET),
    (f'<add key="DbPassword" value="{SECRET}" />', SECRET),
    (f"'pass' => '{SECRET}',", SECRET),
    (f"requirepass {SECRET}", SECRET),
]


@pytest.mark.parametrize(("body", "secret"), FORMS)
def test_each_written_form_is_a_masked_password(body: str, secret: str) -> None:
    finding = the_password(body, secret)
    assert finding.confidence is Confidence.HIGH
    assert keys(body) and set(keys(body)) == {secret}  # the value exactly, not its neighbours


def test_several_values_of_a_file_are_counted() -> None:
    pgpass = "\n".join(f"db{n}.corp.example:5432:*:app:{SECRET}{n}" for n in range(3))
    assert the_password(pgpass, SECRET, count=3).evidence == ", ".join(["pgpass: ****"] * 3)
    netrc = "\n".join(f"machine {h}.example login u password {SECRET}{h}" for h in "ab")
    assert the_password(netrc, SECRET, count=2).evidence == (
        "netrc password: ****, netrc password: ****")


def test_digit_passwords_are_low_and_placeholders_can_be_extended() -> None:
    assert the_password("user: jsmith pass: 83920174", "83920174").confidence is Confidence.LOW
    body = f"machine h.example login u password {SECRET}"
    assert analyse(body, password_placeholders=[SECRET.upper()]).findings == ()


LOOKALIKES = [
    # prose and policy
    "Password policy: minimum 12 characters, one digit.", "Please reset your password.",
    "Forgot your password? Reset it here.", "The password is case-sensitive.",
    'Your mailbox "a@b.example" password is expiring!', "Mot de passe oublié ?",
    "Tu contraseña es obligatoria.", "Password change: done", "new password: at least 12 chars",
    "Password\t2024-05-01\tok", "| Password | Last changed |",
    # documentation placeholders
    "password: <password>", "pwd=********", "Password: changeme", "password: your_password",
    "DB_PASSWORD=${DB_PASSWORD}", "pass: xxx", "user: <username> pass: <password>",
    "user: root pass: toor", "export X_SECRET=your_secret_here", "password: REPLACE_ME",
    "export DB_PASS=$(vault read -field=pw secret/db)", "contraseña: tu_contraseña",
    "jdbc:mysql://localhost:3306/db?user=root&password=\nThanks, 2002-08-22",
    "postgres://user:password@localhost/db", "mongodb+srv://<username>:<password>@c.example",
    "redis://:<password>@localhost:6379", "amqp://guest:guest@localhost:5672/",
    "jdbc:oracle:thin:scott/tiger@localhost:1521:orcl",
    "machine example.com login myuser password mypassword",
    "hostname:port:database:username:password", "*:*:*:*:your_password",
    # "pass" that is no password
    "Boarding pass: K7XQ9P", "--- PASS: TestLoginHandler (0.02s)", "first pass: 0.83s",
    "Day pass = DP448812", "PASS: test_login_redirect_ok", "| pass | fail | skipped |",
    "user: jsmith role: admin\nGate pass: GP-4471",
    # colon lines that are no .pgpass entry, URLs without a password
    "MAC 00:1a:2b:3c:4d:5e", "root:x:0:0:root:/root:/bin/bash", "fe80::1ff:fe23:4567:890a",
    "ERROR:root:worker:main:failed", "12:34:56:78:90", "https://h.example:8080?next=a@b.example",
    "git@github.com:org/repo.git", "ssh://git@h.example:22/srv/repo.git",
    # meeting invitations: the passcode is meant for every invitee
    "Join Zoom Meeting\nhttps://us02web.zoom.us/j/81234567890?pwd=Ab12Cd34Ef56Gh78IjKl\n"
    "Meeting ID: 812 3456 7890\nPasscode: 482913",
    "Meeting ID: 812 3456 7890 Passcode: Ab3cD4",
    "ID da Reunião:\n223 759 419 949\n\nSenha: njHLQo",
]


@pytest.mark.parametrize("body", LOOKALIKES)
def test_lookalikes_stay_clean(body: str) -> None:
    assert analyse(body).findings == ()


def test_a_user_label_pairs_with_one_pass_only() -> None:
    """'user: u pass: v' on one line does not make the next line's boarding pass a password."""
    body = f"user: jsmith pass: {SECRET}\nBoarding pass: K7XQ9P2"
    assert keys(body) == [SECRET]


def test_a_meeting_invite_does_not_hide_the_next_credential() -> None:
    body = f"Meeting ID: 812 3456 7890 Passcode: 482913\npassword: {SECRET}"
    assert keys(body) == [SECRET]


# ------------------------------------------------------------------ the real message path


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode()


def raw_mime() -> bytes:
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ops/.pgpass", f"db.corp.example:5432:prod:app:{SECRET}1\n")
        archive.writestr("ops/.env", f"DB_HOST=db\nexport DB_PASSWORD={SECRET}2\n")
    creds = f"machine api.corp.example login alice password {SECRET}3\n".encode()
    sheet = f"id,owner,note\n1,ops,\"user: jsmith pass: {SECRET}4\"\n".encode()
    return "\r\n".join([
        "From: Employee <employee@corp.example>", "To: partner@external.example",
        "Subject: access", "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b1"', "", "--b1",
        "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable",
        "", f"Hi, as discussed:=0Alogin: a.weber pass: {SECRET.replace('#', '=23')}5", "--b1",
        'Content-Type: text/plain; name="creds.txt"', "Content-Transfer-Encoding: base64",
        'Content-Disposition: attachment; filename="creds.txt"', "", b64(creds), "--b1",
        'Content-Type: text/csv; name="export.csv"', "Content-Transfer-Encoding: base64",
        'Content-Disposition: attachment; filename="export.csv"', "", b64(sheet), "--b1",
        'Content-Type: application/zip; name="bundle.zip"', "Content-Transfer-Encoding: base64",
        'Content-Disposition: attachment; filename="bundle.zip"', "", b64(bundle.getvalue()),
        "--b1--", "",
    ]).encode()


def test_credentials_in_a_raw_mime_message_with_attachments_and_a_zip() -> None:
    result = build(Options({}, "detectors.leak"), CONTEXT).analyse(as_message(raw_mime()))
    found = {f.location: f for f in result.findings}
    assert {f.type for f in result.findings} == {"password"}
    assert sorted(found) == [
        "attachment:bundle.zip/ops/.env", "attachment:bundle.zip/ops/.pgpass",
        "attachment:creds.txt", "attachment:export.csv", "body",
    ]
    assert all(f.count == 1 and f.confidence is Confidence.HIGH for f in found.values())
    assert found["attachment:creds.txt"].evidence == "netrc password: ****"
    assert found["attachment:bundle.zip/ops/.pgpass"].evidence == "pgpass: ****"
    assert found["body"].evidence == "pass: ****"
    assert found["attachment:bundle.zip/ops/.env"].evidence == "db_password: ****"
    assert result.scores["leak"] == 5.0
    exported = json.dumps([f.as_dict() for f in result.findings]) + repr(result)
    assert SECRET not in exported and SECRET[:6] not in exported
