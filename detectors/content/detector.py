"""The ``content`` detector: spam, phishing and sensitive-content probabilities from the text.

It sits after text extraction and before the policy. For each message it takes the subject plus the
extracted text (``mailwarden.detectors.text.extract`` when installed, else a minimal text/plain and
text/html walk), turns it into stemmed token counts once (:class:`~.textprep.TextPrep`, memoised on
the message) and scores them with three portable TF-IDF linear models loaded at build time from
``<model_dir>/content`` (:mod:`mailwarden.detectors.content.portable`, numpy only; one shared
vocabulary lookup per distinct token for the three, bit-for-bit their individual scores). A model
whose manifest carries a score layer (:mod:`.content_stack`) combines its text log-odds with the
message's phishing cues (:mod:`.phish_cues`) and brings its own threshold, chosen offline for a
stated share of held-out ham. The probabilities always go to ``scores`` under ``spam``, ``phishing``
and ``sensitive``; a type whose probability exceeds its threshold adds one finding scored ``weight x
(0.75 + 0.25 x margin)`` (so that a lone spam or phishing finding reaches the default quarantine
score) whose evidence is the probability and the names of the cues that fired, never content.
Everything is read-only after build, so concurrent calls are safe.
"""

from __future__ import annotations

import codecs
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from mailwarden.detectors.base import BaseDetector, DetectorContext, DetectorUnavailable, register
from mailwarden.detectors.content.phish_cues import message_cues
from mailwarden.detectors.content.portable import ModelFormatError, ModelSet, PortableModel, load
from mailwarden.detectors.content.stack import Stack, StackFormatError, from_manifest
from mailwarden.detectors.content.textprep import DEFAULT_MAX_CHARS, FEATURE_SCHEMA, TextPrep
from mailwarden.message import Message
from mailwarden.options import Options
from mailwarden.verdict import Confidence, DetectorResult, Finding

NAME = "content"
TYPES = ("spam", "phishing", "sensitive")
DEFAULT_THRESHOLD = 0.9
# Alone, spam/phishing at p ~ 1 land between quarantine (5) and reject (10); sensitive (trained on
# synthetic text only) stays below quarantine unless another finding adds to it.
DEFAULT_WEIGHTS = {"spam": 7.0, "phishing": 8.0, "sensitive": 4.0}
HIGH_CONFIDENCE = 0.99
# A finding at the threshold scores FLOOR x weight, rising linearly to weight at p = 1.
FLOOR = 0.75
TOKENS_MEMO = "content.tokens"
COUNTS_MEMO = "content.token_counts"
TextFunction = Callable[[Message], str]


@dataclass(frozen=True, slots=True)
class TypeRule:
    threshold: float
    weight: float


class ContentDetector(BaseDetector):
    name = NAME

    def __init__(
        self,
        models: dict[str, PortableModel],
        rules: dict[str, TypeRule],
        prep: TextPrep,
        text: TextFunction,
    ) -> None:
        self._models = models
        self._set = ModelSet(models)
        self._stacks = stacks(models)
        self._rules = rules
        self._prep = prep
        self._text = text

    def tokens(self, message: Message) -> list[str]:
        # The text is computed outside memo(): Message.memo holds a non-reentrant lock while it
        # computes, and extract() memoises on the same message.
        text = self._text(message)
        return message.memo(TOKENS_MEMO, lambda: self._prep.tokens(text))

    def counts(self, message: Message) -> dict[str, int]:
        """Feature token counts of the message (``Counter(self.tokens(message))``), memoised."""
        text = self._text(message)  # outside memo(), as in tokens()
        return message.memo(COUNTS_MEMO, lambda: self._prep.counts(text))

    def analyse(self, message: Message) -> DetectorResult:
        scores = self._set.probabilities(self.counts(message))
        cues: frozenset[str] = frozenset()
        if self._stacks:
            cues = message_cues(message, self._text(message))
            for kind, stack in self._stacks.items():
                scores[kind] = stack.probability(scores[kind], cues)
        findings: list[Finding] = []
        for kind, p in scores.items():
            rule = self._rules[kind]
            if p > rule.threshold and rule.weight > 0:
                fired = cues if kind in self._stacks else frozenset()
                findings.append(self._finding(kind, p, rule, fired))
        return DetectorResult(self.name, scores=scores, findings=tuple(findings))

    def _finding(self, kind: str, p: float, rule: TypeRule, cues: frozenset[str]) -> Finding:
        evidence = f"p={p:.3f}" + (f" cues={','.join(sorted(cues))}" if cues else "")
        return Finding(
            detector=self.name,
            type=kind,
            score=finding_score(p, rule),
            evidence=evidence,
            confidence=Confidence.HIGH if p >= HIGH_CONFIDENCE else Confidence.MEDIUM,
        )

    def describe(self) -> dict[str, str]:
        out = {"model": "content TF-IDF linear (portable)", "feature_schema": FEATURE_SCHEMA}
        for kind, model in self._models.items():
            m = model.manifest
            out[kind] = (f"{m.get('estimator', '?')} trained {m.get('trained_at', '?')} "
                         f"data {str(m.get('training_data_sha256', '?'))[:12]} "
                         f"terms {len(model.terms)} threshold {self._rules[kind].threshold}")
        return out


def finding_score(p: float, rule: TypeRule) -> float:
    """``weight x (FLOOR + (1 - FLOOR) x margin)``; margin: where p sits from threshold to 1."""
    span = 1.0 - rule.threshold
    margin = (p - rule.threshold) / span if span > 0 else 1.0
    return rule.weight * (FLOOR + (1.0 - FLOOR) * min(1.0, max(0.0, margin)))


def stacks(models: dict[str, PortableModel]) -> dict[str, Stack]:
    """The score layer of every model that has one (``stack`` in its manifest)."""
    out = {}
    for kind, model in models.items():
        try:
            stack = from_manifest(model.manifest)
        except StackFormatError as exc:
            raise ModelFormatError(f"{kind}: {exc}") from exc
        if stack is not None:
            out[kind] = stack
    return out


def load_models(directory: Path) -> dict[str, PortableModel]:
    """The three content models from ``directory``; :class:`ModelFormatError` if one is bad."""
    return {kind: load(directory, kind, FEATURE_SCHEMA) for kind in TYPES}


@register(NAME, summary="spam / phishing / sensitive probabilities (TF-IDF linear models)")
def build(options: Options, context: DetectorContext) -> ContentDetector:
    path = options.get_str("model_path", "")
    common = options.get_float("threshold", None, 0.0, 1.0)
    max_chars = options.get_int("max_text_chars", DEFAULT_MAX_CHARS, minimum=1000)
    sections = {kind: options.section(kind) for kind in TYPES}
    options.finish()
    directory = context.model_dir / (path or NAME)
    try:
        models = load_models(directory)
        layers = stacks(models)
    except ModelFormatError as exc:
        raise DetectorUnavailable(str(exc)) from exc
    rules = {kind: _rule(sections[kind], kind, common, layers.get(kind)) for kind in TYPES}
    return ContentDetector(models, rules, TextPrep(max_chars=max_chars), text_function())


def _rule(options: Options, kind: str, common: float | None, stack: Stack | None) -> TypeRule:
    """Threshold: the type's own option, else ``threshold``, else the model's manifest, else 0.9."""
    threshold = options.get_float("threshold", None, 0.0, 1.0)  # unset: what follows decides
    if threshold is None:
        threshold = common
    if threshold is None:
        threshold = stack.threshold if stack is not None else DEFAULT_THRESHOLD
    weight = options.get_number("weight", DEFAULT_WEIGHTS[kind], minimum=0.0)
    options.finish()
    return TypeRule(threshold, weight)


def text_function() -> TextFunction:
    """Subject plus body text, through the shared extractor when it is installed."""
    try:
        module = importlib.import_module("mailwarden.detectors.text.extract")
        extract = module.extract
    except (ImportError, AttributeError):
        return fallback_text

    def text(message: Message) -> str:
        return f"{message.header('Subject') or ''}\n{extract(message).text()}"

    return text


def text_source() -> str:
    """Which extractor :func:`text_function` uses: recorded in model manifests."""
    return "extract" if text_function() is not fallback_text else "fallback"


def fallback_text(message: Message) -> str:
    """Subject plus every inline text/plain and text/html part (HTML reduced to its text)."""
    parts = [message.header("Subject") or ""]
    for part in message.parsed.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if (part.get("Content-Disposition") or "").strip().lower().startswith("attachment"):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        text = payload.decode(_charset(part.get_content_charset()), "replace")
        parts.append(html_text(text) if part.get_content_subtype() == "html" else text)
    return "\n".join(parts)


def _charset(name: str | None) -> str:
    try:
        return codecs.lookup(name or "utf-8").name
    except (LookupError, ValueError):
        return "latin-1"


class _HTMLText(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            if href.lower().startswith(("http://", "https://")):
                self.chunks.append(f" {href} ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.chunks.append(data)


def html_text(html: str) -> str:
    """The visible text of an HTML document (plus link targets), tolerant of broken markup."""
    parser = _HTMLText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001, S110 - malformed HTML must never fail a scan
        pass
    return " ".join(parser.chunks)
