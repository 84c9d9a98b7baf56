"""The password scanner's cheap pre-filters change no result.

``passwords()`` skips its keyword expression when no keyword hint occurs in the text, and its
URL-credentials expression unless the part after a scheme (``://user:secret@host``) occurs: both are
necessary conditions of a match. With the pre-filters forced open (every text "hinted"), the scanner
must find exactly the same matches, on generated texts rich in near misses and on real mail. The
``.pgpass`` pre-filter of :mod:`mailwarden.detectors.leak.credentials` is checked the same way.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability_tools import CORPORA, corpus_members

from mailwarden.detectors.leak import credentials as leak_credentials
from mailwarden.detectors.leak import secrets as leak_secrets
from mailwarden.detectors.leak.scan import ScanSettings, Text

SETTINGS = ScanSettings()

FRAGMENTS = [
    "password", "Passwort", "pwd", "PW", "pass", "passphrase", "kennwort", "wachtwoord", "senha",
    "contraseña", "contrasena", "mot de passe", "secret", "client_secret", "secret-key", "api ",
    ": ", " = ", " is ", "\n", " ", "\t", '"', "'", "<password>", "</password>", "Xy7!kq2Pzz",
    "hunter2", "changeme", "${PW}", "://", "https://", "postgres://", "ftp://", "app:", "user:",
    ":Qz9xLm2Pw8", "@", "@db.internal", "db.example.org", "/", "x", "7", "S3cr3t#99", "compass",
    "user: ", "login/", "pass: ", "PASS=", "mdp", "Пароль", "hasło", "->", " => ", "|", " ist ",
    "redis://:", "meeting id ", "db_", "X_SECRET=", "<db_password>", "</db_password>", "USUÁRIO",
    "#", ":5432:", "machine h login u password ", "*:", "requirepass ", 'key="pwd" value="',
]
texts = st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join)


def scan(text: str) -> list[tuple[str, str, str, str]]:
    found = leak_secrets.passwords(Text(text, SETTINGS))
    return [(m.type, m.key, m.evidence, m.confidence.value) for m in found]


def scan_unfiltered(text: str,
                   monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str, str]]:
    with monkeypatch.context() as patch:
        patch.setattr(leak_secrets, "_PASSWORD_HINTS", ("",))  # "" is in every text
        patch.setattr(leak_secrets, "_URL_AUTH_HINT", re.compile(""))  # matches every text
        return scan(text)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_prefilters_change_no_match_on_generated_text(text: str) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert scan(text) == scan_unfiltered(text, monkeypatch)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_pgpass_prefilter_changes_no_match_on_generated_text(text: str) -> None:
    def lines() -> list[tuple[str, str]]:
        found = leak_credentials.credential_lines(Text(text, SETTINGS))
        return [(m.key, m.evidence) for m in found]

    filtered = lines()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(leak_credentials, "_PGPASS_HINT", re.compile(""))
        assert lines() == filtered


def test_generated_fragments_do_find_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above is not vacuous: these fragments make both kinds of match."""
    text = "db password: S3cr3t#99\nsee postgres://app:Qz9xLm2Pw8@db.internal/x"
    found = scan(text)
    assert [key for _, key, _, _ in found] == ["S3cr3t#99", "Qz9xLm2Pw8"]
    assert found == scan_unfiltered(text, monkeypatch)


def test_prefilters_change_no_match_on_corpus_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    members = corpus_members(CORPORA / "spamassassin" / "spam.tar.gz", limit=300)
    assert len(members) == 300
    for _name, data in members:
        text = data.decode("latin-1")
        assert scan(text) == scan_unfiltered(text, monkeypatch)
