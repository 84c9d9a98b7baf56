"""Payment cards, US social security numbers and IBANs for the data-leak detector.

Each scanner makes one regular-expression pass over a text part (see :mod:`.leak_scan`), then
validates every candidate (:mod:`.validators`: Luhn plus issuer range and length, printed card
grouping, SSN area/group/serial rules, IBAN country length plus mod 97) and sets the confidence
from the format and from supporting keywords within the proximity window.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from mailwarden.detectors.leak.scan import HIGH, LOW, MEDIUM, Match, Text, keywords
from mailwarden.detectors.leak.validators import (
    IBAN_LENGTHS,
    TEST_CARDS,
    card_grouping_ok,
    valid_card,
    valid_iban,
    valid_ssn,
)

CARD_WORDS = keywords(
    "card", "cards", "credit", "debit", "visa", "master ?card", "amex", "american express",
    "discover", "jcb", "diners", "union ?pay", "maestro", "cvv2?", "cvc2?", "cid", "csc", "exp",
    "expiry", "expires", "expiration", "valid thru", "pan", "cc ?#?", "ccn", "payment",
    "kreditkarte", "karte", "carte", "tarjeta", r"(?<![\d/])(?:0[1-9]|1[0-2]) ?/ ?\d\d(?![\d/])",
)
SSN_WORDS = keywords(
    "ssn", "ssns", "ss ?#", "social security", "social sec", "ssa", "taxpayer", "tin",
    "date of birth", "dob", "born",
)
IBAN_WORDS = keywords(
    "iban", "bic", "swift", "bank", "banking", "account", "acct", "transfer", "wire", "konto",
    "bankverbindung", "virement", "rib", "sepa", "beneficiary", "payee",
)

# Not inside words, decimals, phone numbers (+), URL paths (/) or longer digit groups.
# Each pattern starts with a plain character class (the lookbehind comes after the first
# character) so that ``re`` can skip quickly to candidate positions.
_CARD = re.compile(r"\d(?<![\w.+/-]\d)(?<!\d[ -]\d)(?:[ -]?\d){12,18}(?![ -]?\d)(?![\w-])")
_SSN = re.compile(r"(\d(?<![\w./#-]\d)\d\d)([ -]?)(\d{2})\2(\d{4})(?![\w/-]|\.\d)")
# A 9-digit run without dashes is an SSN only with the keyword close by (same phrase).
SSN_TIGHT_WINDOW = 50
# The tail of an IBAN printed in groups ("GB27 DEGE 3053 8142 0858 70") is not a card number.
_IBAN_HEAD = re.compile(r"[A-Z]{2}\d{2}(?: [A-Z0-9]{4})* $")
_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]){10,32}")


def cards(doc: Text) -> Iterator[Match]:
    for m in _CARD.finditer(doc.text):
        raw = m.group()
        groups = [len(g) for g in re.split(r"[ -]", raw)]
        digits = "".join(ch for ch in raw if ch.isdigit())
        if not card_grouping_ok(groups) or _IBAN_HEAD.search(doc.text, max(0, m.start() - 40),
                                                               m.start()):
            continue
        brand = valid_card(digits)
        if brand is None or (doc.settings.ignore_test_cards and digits in TEST_CARDS):
            continue
        if doc.near(CARD_WORDS, m.start(), m.end()):
            confidence = HIGH
        elif len(groups) > 1:
            confidence = MEDIUM
        elif len(digits) in (15, 16):
            confidence = LOW
        else:  # a bare 13/14/17-19 digit run without context is an ID far more often than a card
            continue
        yield Match("credit_card", digits, f"****{digits[-4:]}", confidence, brand)


def ssns(doc: Text) -> Iterator[Match]:
    for m in _SSN.finditer(doc.text):
        digits = m.group(1) + m.group(3) + m.group(4)
        if not valid_ssn(digits):
            continue
        if m.group(2) == "-":
            confidence = HIGH if doc.near(SSN_WORDS, m.start(), m.end()) else LOW
        elif doc.near(SSN_WORDS, m.start(), m.end(), SSN_TIGHT_WINDOW):
            confidence = MEDIUM
        else:
            continue
        yield Match("us_ssn", digits, f"***-**-{digits[-4:]}", confidence)


def ibans(doc: Text) -> Iterator[Match]:
    text = doc.text
    for m in _IBAN.finditer(text):
        length = IBAN_LENGTHS.get(m.group()[:2])
        if length is None:
            continue
        end = _end_of_n_alnum(text, m.start(), length)
        if end is None or (end < len(text) and text[end].isalnum()):
            continue
        iban = text[m.start() : end].replace(" ", "")
        if not valid_iban(iban):
            continue
        confidence = HIGH if doc.near(IBAN_WORDS, m.start(), end) else MEDIUM
        yield Match("iban", iban, f"{iban[:2]}**...**{iban[-2:]}", confidence, iban[:2])


def _end_of_n_alnum(text: str, start: int, n: int) -> int | None:
    """Index just after the ``n``-th alphanumeric character from ``start`` (spaces skipped)."""
    seen = 0
    for index in range(start, min(len(text), start + 2 * n)):
        char = text[index]
        if char.isalnum():
            seen += 1
            if seen == n:
                return index + 1
        elif char != " ":
            return None
    return None
