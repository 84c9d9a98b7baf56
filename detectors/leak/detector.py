"""The ``leak`` detector: validated sensitive data (cards, SSNs, IBANs, keys, tokens, passwords).

It sits after text extraction (:func:`mailwarden.detectors.text.extract.extract`, shared with the
other content detectors) and before the policy. Every text part (and the Subject) is scanned by
:mod:`.pii`, :mod:`.secrets` and :mod:`.credentials`; a value found in several parts
(the text and HTML alternatives of one body, a body quoting its attachment) counts once, at its
first location. The result is one :class:`~mailwarden.verdict.Finding` per (type, location) with the
count of distinct values, the highest confidence, masked evidence only, and a score from the formula
below; every unscannable part becomes an ``unscannable_attachment`` finding.

Score of type T with n distinct values whose confidence factors are f_1..f_n (low 0.35,
medium 0.65, high 1.0 by default)::

    score(T) = weight[T] * (f_1 + ... + f_n) * n ** (count_exponent - 1)

i.e. weight x mean confidence factor x n ** count_exponent (0.6): one high-confidence card = 4,
one low-confidence card = 1.4, five high-confidence cards = 10.5. A finding gets the share of its
type's score that its own values carry, so the findings of a type always add up to score(T).
Raw scores: ``leak`` = number of distinct sensitive values, ``leak_high`` = those of high
confidence, ``leak_unscannable`` = number of unscannable entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mailwarden.detectors.base import BaseDetector, DetectorContext, register
from mailwarden.detectors.leak import credentials as leak_credentials
from mailwarden.detectors.leak import pii as leak_pii
from mailwarden.detectors.leak import secrets as leak_secrets
from mailwarden.detectors.leak.scan import TYPES, Match, ScanSettings, Text
from mailwarden.detectors.text.extract import extract
from mailwarden.message import Message
from mailwarden.options import Options
from mailwarden.verdict import Confidence, DetectorResult, Finding

NAME = "leak"
UNSCANNABLE = "unscannable_attachment"
DEFAULT_WEIGHTS = {
    "credit_card": 4.0, "us_ssn": 4.0, "iban": 2.0, "private_key": 8.0, "aws_access_key": 6.0,
    "api_token": 6.0, "password": 3.0,
}
DEFAULT_FACTORS = {"low": 0.35, "medium": 0.65, "high": 1.0}
SCANNERS: tuple[tuple[str, Callable[[Text], Iterator[Match]]], ...] = (
    ("private_key", leak_secrets.private_keys),
    ("aws_access_key", leak_secrets.aws_keys),
    ("api_token", leak_secrets.api_tokens),
    ("credit_card", leak_pii.cards),
    ("us_ssn", leak_pii.ssns),
    ("iban", leak_pii.ibans),
    ("password", leak_secrets.passwords),
    ("password", leak_credentials.credential_lines),
)


def scan_text(text: str, settings: ScanSettings) -> list[Match]:
    """Every validated match of the enabled types in ``text``."""
    doc = Text(text, settings)
    found: list[Match] = []
    for name, scanner in SCANNERS:
        if name in settings.types:
            found.extend(scanner(doc))
    return found


@dataclass(frozen=True, slots=True)
class LeakConfig:
    scan: ScanSettings = field(default_factory=ScanSettings)
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    factors: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FACTORS))
    count_exponent: float = 0.6
    min_confidence: Confidence = Confidence.LOW
    unscannable_score: float = 0.5
    scan_subject: bool = True


@dataclass
class _Group:
    """The distinct values of one type at one location."""

    matches: list[Match] = field(default_factory=list)

    @property
    def confidence(self) -> Confidence:
        return max((m.confidence for m in self.matches), key=lambda c: c.rank)


class LeakDetector(BaseDetector):
    name = NAME

    def __init__(self, config: LeakConfig):
        self.config = config

    def analyse(self, message: Message) -> DetectorResult:
        extraction = extract(message)
        sources = [(p.location, p.text) for p in extraction.parts]
        subject = message.header("Subject") if self.config.scan_subject else None
        if subject:
            sources.insert(0, ("subject", subject))
        groups = self._group(sources)
        findings = self._findings(groups)
        findings.extend(self._unscannable(extraction.unscannable))
        values = [m for g in groups.values() for m in g.matches]
        scores = {
            "leak": float(len(values)),
            "leak_high": float(sum(m.confidence is Confidence.HIGH for m in values)),
            "leak_unscannable": float(len(extraction.unscannable)),
        }
        return DetectorResult(NAME, scores=scores, findings=tuple(findings))

    def _group(self, sources: list[tuple[str, str]]) -> dict[tuple[str, str], _Group]:
        """Distinct values per (type, location); a repeated value stays at its first location."""
        seen: dict[tuple[str, str], tuple[str, str]] = {}
        groups: dict[tuple[str, str], _Group] = {}
        best: dict[tuple[str, str], Match] = {}
        minimum = self.config.min_confidence.rank
        for location, text in sources:
            for match in scan_text(text, self.config.scan):
                if match.confidence.rank < minimum:
                    continue
                ident = (match.type, match.key)
                seen.setdefault(ident, (match.type, location))
                previous = best.get(ident)
                if previous is None or match.confidence.rank > previous.confidence.rank:
                    best[ident] = match
        for ident, slot in seen.items():
            groups.setdefault(slot, _Group()).matches.append(best[ident])
        return groups

    def _findings(self, groups: dict[tuple[str, str], _Group]) -> list[Finding]:
        cfg = self.config
        per_type: dict[str, int] = {}
        for (kind, _), group in groups.items():
            per_type[kind] = per_type.get(kind, 0) + len(group.matches)
        findings = []
        for (kind, location), group in groups.items():
            factor_sum = sum(cfg.factors[m.confidence.value] for m in group.matches)
            score = cfg.weights[kind] * factor_sum * per_type[kind] ** (cfg.count_exponent - 1)
            findings.append(Finding(
                detector=NAME, type=kind, score=score, count=len(group.matches),
                location=location, evidence=_evidence(group.matches),
                confidence=group.confidence, details=_details(group.matches),
            ))
        return findings

    def _unscannable(self, entries: tuple[tuple[str, str], ...]) -> Iterator[Finding]:
        reasons: dict[str, list[str]] = {}
        for location, reason in entries:
            reasons.setdefault(location, []).append(reason)
        for location, why in reasons.items():
            yield Finding(
                detector=NAME, type=UNSCANNABLE, score=self.config.unscannable_score * len(why),
                count=len(why), location=location, evidence="; ".join(why)[:300],
                confidence=Confidence.HIGH,
            )

    def describe(self) -> dict[str, str]:
        return {"model": "rules", "version": "1", **_readers()}


def _evidence(matches: list[Match]) -> str:
    shown = ", ".join(m.evidence for m in matches[:3])
    return shown + (f" (+{len(matches) - 3} more)" if len(matches) > 3 else "")


def _details(matches: list[Match]) -> tuple[tuple[str, str], ...]:
    kinds = sorted({m.detail for m in matches if m.detail})
    return (("kinds", ",".join(kinds)[:200]),) if kinds else ()


def _readers() -> dict[str, str]:
    """Which optional attachment readers are importable (for ``mailwarden check``)."""
    import importlib.util

    return {
        f"reader_{fmt}": "yes" if importlib.util.find_spec(module) else "missing"
        for fmt, module in (("pdf", "pypdf"), ("docx", "docx"), ("xlsx", "openpyxl"))
    }


@register(NAME, summary="validated sensitive data: cards, SSNs, IBANs, keys, tokens, passwords")
def build(options: Options, context: DetectorContext) -> LeakDetector:
    config = read_config(options)
    options.finish()
    return LeakDetector(config)


def read_config(options: Options) -> LeakConfig:
    """The ``[detectors.leak]`` options (every key documented in docs/leak-evaluation.md)."""
    types = options.get_str_list("types", list(TYPES))
    for kind in types:
        if kind not in TYPES:
            raise options.error("types", f"unknown type {kind!r} (known: {', '.join(TYPES)})")
    placeholders = options.get_str_list("password_placeholders", [])
    scan = ScanSettings(
        types=frozenset(types),
        proximity=options.get_int("proximity", 300, minimum=0),
        ignore_test_cards=options.get_bool("ignore_test_cards", True),
        placeholders=frozenset(p.casefold() for p in placeholders),
    )
    return LeakConfig(
        scan=scan,
        weights=_table(options.section("type_weights"), DEFAULT_WEIGHTS),
        factors=_table(options.section("confidence_factors"), DEFAULT_FACTORS),
        count_exponent=options.get_number("count_exponent", 0.6, minimum=0.0),
        min_confidence=Confidence(
            options.get_str("min_confidence", "low", choices=("low", "medium", "high"))
        ),
        unscannable_score=options.get_number("unscannable_score", 0.5, minimum=0.0),
        scan_subject=options.get_bool("scan_subject", True),
    )


def _table(section: Options, defaults: dict[str, float]) -> dict[str, float]:
    values = {key: section.get_number(key, value, minimum=0.0) for key, value in defaults.items()}
    section.finish()
    return values
