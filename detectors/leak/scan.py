"""Shared values of the data-leak scanners: settings, the scanned text, and one match.

:mod:`.leak` runs the scanners of :mod:`.leak_pii` (cards, SSNs, IBANs) and :mod:`.leak_secrets`
(private keys, AWS keys, API tokens, passwords) over every extracted text part. Each scanner finds
candidates with one cheap regular expression pass, validates them with :mod:`.validators` and
rates them with the keyword-proximity lookup of :class:`Text` (the commercial-DLP window). A
:class:`Match` keeps the normalised value only as a key for de-duplication within one message;
what leaves the detector is the masked ``evidence``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailwarden.verdict import Confidence

LOW, MEDIUM, HIGH = Confidence.LOW, Confidence.MEDIUM, Confidence.HIGH
TYPES = (
    "credit_card", "us_ssn", "iban", "private_key", "aws_access_key", "api_token", "password",
)


@dataclass(frozen=True, slots=True)
class Match:
    type: str
    key: str  # normalised value, only for de-duplication; never logged or returned
    evidence: str  # masked
    confidence: Confidence
    detail: str = ""  # brand / format / key type: safe to show


@dataclass(frozen=True, slots=True)
class ScanSettings:
    types: frozenset[str] = frozenset(TYPES)
    proximity: int = 300
    ignore_test_cards: bool = True
    placeholders: frozenset[str] = frozenset()


_ASCII_LOWER = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
)


class Text:
    """A text, its ASCII-lower-cased copy (same offsets) and keyword-proximity lookups.

    Keyword patterns run case-sensitively over :attr:`lower`: Python's ``re`` is several times
    slower with ``IGNORECASE`` alternations, and ASCII-only lower-casing keeps every offset.
    """

    def __init__(self, text: str, settings: ScanSettings):
        self.text = text
        self.lower = text.translate(_ASCII_LOWER)
        self.settings = settings

    def near(
        self, pattern: re.Pattern[str], start: int, end: int, window: int | None = None
    ) -> bool:
        """A supporting keyword within the proximity window before or after [start, end)."""
        window = self.settings.proximity if window is None else min(window, self.settings.proximity)
        return pattern.search(self.lower, max(0, start - window), end + window) is not None


def keywords(*words: str) -> re.Pattern[str]:
    """A pattern for any of ``words`` (lower-case regex fragments) as whole words in ``lower``."""
    return re.compile(r"(?<![a-z])(?:" + "|".join(words) + r")(?![a-z])")
