"""Credentials written as config lines, for the data-leak detector's ``password`` type.

:mod:`.leak_secrets` finds a password after its keyword (``password: v``, ``user: u pass: v``,
``DB_PASSWORD=v``...) and in URLs (``scheme://user:pass@host``); this module finds the forms
whose value does not follow a ``:``/``=`` after the keyword: Oracle ``user/pass@host`` (JDBC thin
and sqlplus), ``.netrc`` entries (``machine h login u password p``), ``.pgpass`` lines
(``host:port:db:user:pass``), ``<add key="…password" value="…"/>`` settings and Redis
``requirepass``. Every scanner first makes a cheap
substring or literal-led test so most texts cost nothing, then rates each value with
:func:`password_confidence`, shared with :mod:`.leak_secrets`: placeholders, templates, paths,
e-mail addresses and plain words are not passwords.
What leaves the detector is the masked evidence only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from mailwarden.detectors.leak.scan import HIGH, LOW, MEDIUM, Match, Text
from mailwarden.detectors.leak.validators import char_classes, shannon_entropy
from mailwarden.verdict import Confidence

KIND = "password"
PLACEHOLDERS = frozenset({
    "password", "passwort", "passwd", "changeme", "change_me", "changeit", "secret", "example",
    "yourpassword", "your_password", "mypassword", "my_password", "newpassword", "dummy",
    "redacted", "removed", "hidden", "required", "optional", "unknown", "none", "null", "empty",
    "notset", "not_set", "undefined", "default", "foobar", "placeholder", "sample", "test123",
})
# your_password, your-secret-here, tu_contraseña, REPLACE_ME, something_here, TODO
_PLACEHOLDER_SHAPE = re.compile(
    r"(?:your|my|the|enter|insert|some|new|tu|sua|seu|votre|ton|ihr|dein)[_-]?[a-z_-]*?"
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|contrase(?:ñ|n)a|senha|kennwort|passwort)"
    r"(?:[_-]?here)?|(?:change|replace|fill)[_-]?(?:me|this|it)|\w*_here|todo|tbd|fixme"
)
_FILLER = re.compile(r"[*xX.#•_=~-]+|(.)\1+")
# Templates and paths, not values: <pw>, {{ var }}, [hidden], ${VAR}, $(cmd), $VAR, %s, %(pw)s,
# %VAR%, /path
_TEMPLATE = re.compile(
    r"[<{\[(/~\\]|\$[{(]|\$[A-Za-z_]\w*$|%(?:\(\w+\))?[sd]$|%[A-Z_][A-Z0-9_]*%$"
)
_DATE = re.compile(r"\d{1,4}([-./])\d{1,2}\1\d{1,4}")  # 2024-05-01, 01.05.2024: a date
_PROSE_WORD = re.compile(r"[^\W\d_]+-[^\W\d_]+")  # case-sensitive, self-service
_ORACLE = re.compile(r"(?:jdbc:oracle:[a-z]+:|sqlplus[ \t]+)[^\s/@:]{1,64}/([^\s@]{1,128})@\S")
_NETRC = re.compile(
    r"(?<![a-z])(?:machine[ \t]+\S+|default)(?:\s{1,20}(?:login|account)[ \t]+\S+){0,2}"
    r"\s{1,20}password[ \t]+(\S+)"
)
# host:port:database:user:password, one whitespace-delimited token (a CSV cell, a line).
_PGPASS = re.compile(
    r"(?<![^\s,;\"'])([A-Za-z0-9*][A-Za-z0-9.*_-]*|\[[0-9A-Fa-f:]+\]):(?:\d{2,5}|\*):"
    r"[^:\s]+:[^:\s]+:((?:[^:\s\\]|\\[:\\]){1,128})(?![^\s,;\"'])"
)
_PGPASS_HINT = re.compile(r":(?:\d{2,5}|\*):[^:\s]+:[^:\s]+:[^:\s]")
# Quotes may be doubled: the element written into a CSV cell.
_APP_SETTING = re.compile(
    r"key=[\"']{1,2}[\w.:-]{0,40}(?:password|passwd|pwd|pass|secret)[\"']{1,2}[ \t]+"
    r"value=[\"']{1,2}([^\"'\s]{1,100})[\"']"
)
_REDIS_CONF = re.compile(r"(?<![a-z])requirepass[ \t]+(\S{1,100})")


def credential_lines(doc: Text) -> Iterator[Match]:
    """Every Oracle, .netrc, .pgpass and config-line credential in ``doc``."""
    text, lower = doc.text, doc.lower
    if "jdbc:oracle:" in lower or "sqlplus" in lower:
        for m in _ORACLE.finditer(lower):
            yield from _rated(doc, text[m.start(1) : m.end(1)], "oracle ****/****@…", "url")
    if _PGPASS_HINT.search(text):
        for m in _PGPASS.finditer(text):
            if re.search(r"[A-Za-z.*\[]", m.group(1)):  # a host name, an address or *
                secret = re.sub(r"\\([:\\])", r"\1", m.group(2)).rstrip("\"',;")
                yield from _rated(doc, secret, "pgpass: ****", "pgpass")
    passy = "pass" in lower
    if passy and ("machine" in lower or "default" in lower):
        for m in _NETRC.finditer(lower):
            yield from _rated(doc, text[m.start(1) : m.end(1)], "netrc password: ****", "netrc")
    if "value=" in lower and (passy or "pwd" in lower or "secret" in lower):
        for m in _APP_SETTING.finditer(lower):
            yield from _rated(doc, text[m.start(1) : m.end(1)], "key=…password value=****",
                              "config")
    if passy and "requirepass" in lower:
        for m in _REDIS_CONF.finditer(lower):
            yield from _rated(doc, text[m.start(1) : m.end(1)], "requirepass ****", "config")


def _rated(doc: Text, secret: str, evidence: str, detail: str) -> Iterator[Match]:
    confidence = password_confidence(secret, doc.settings.placeholders)
    if confidence is not None:
        yield Match(KIND, secret, evidence, confidence, detail)


def password_confidence(value: str, extra: frozenset[str] = frozenset()) -> Confidence | None:
    """How much ``value`` looks like a real password; None for prose, placeholders, templates."""
    if not 6 <= len(value) <= 64 or not_a_secret(value, extra):
        return None
    classes = char_classes(value)
    if (len(value) >= 8 and classes >= 3) or (
        len(value) >= 12 and classes >= 2 and shannon_entropy(value) >= 3.0
    ):
        return HIGH
    return MEDIUM if classes >= 2 else LOW


def _plain_word(value: str) -> bool:
    """All lower case, capitalised or all upper case letters: a word ("expiring!" included)."""
    return value.isalpha() and (value[1:].islower() or value.isupper())


def not_a_secret(value: str, extra: frozenset[str] = frozenset()) -> bool:
    """A placeholder, filler, template, path, URL, e-mail address or plain word."""
    folded = value.casefold()
    return bool(
        folded in PLACEHOLDERS or folded in extra or _PLACEHOLDER_SHAPE.fullmatch(folded)
        or _FILLER.fullmatch(value) or _TEMPLATE.match(value) or "://" in value
        or re.fullmatch(r"[^@\s]+@[\w-]+\.[\w.-]+", value)  # an e-mail address
        or _plain_word(value.rstrip("!?"))
        or (_PROSE_WORD.fullmatch(value) and value.islower())
        or _DATE.fullmatch(value)
    )
