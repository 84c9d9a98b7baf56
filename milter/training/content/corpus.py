"""Labelled corpora for training and evaluating the content classifiers.

It sits between :mod:`mailwarden.files.sources` (raw messages from archives, mbox, maildir, .eml)
and :mod:`mailwarden.training.content.train` / :mod:`mailwarden.training.content.evaluate`: every
message becomes a :class:`Doc` holding the sha256 of its raw bytes and the exact text the
``content`` detector would see. It also defines the seeded, content-addressed train/held-out split
(a message's bucket depends only on its bytes and the seed, so evaluation can recompute it), the
training-data digest recorded in manifests, and the phishing-cue rule that picks the phishing-like
part of a spam corpus.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailwarden.detectors.content.phish_cues import message_cues, text_cues
from mailwarden.files.sources import iter_sources
from mailwarden.message import Envelope, Message

SPLIT_RULE = "sha256('<seed>:<sha256(raw)>')[:8] as int % 100 < holdout_percent -> held out"

# Cues of credential phishing and advance-fee fraud; a spam message is "phishing-like" when its
# text shows at least PHISHING_MIN_CUES distinct ones.
PHISHING_CUES: tuple[str, ...] = (
    r"\b(?:verify|confirm|update|validate|reactivate|restore) (?:your|the) (?:account|identity|"
    r"information|details|password|billing|records?)",
    r"\byour (?:account|mailbox|password|card) (?:has been|will be|is|was) ",
    r"\b(?:suspend|suspended|suspension|locked|limited|disabled|deactivated)\b",
    r"\b(?:password|passcode|pin number|login|log in|sign in|username)\b",
    r"\b(?:paypal|ebay|citibank|barclays|visa|mastercard|western union|bank account)\b",
    r"\b(?:security (?:alert|notice|update|reasons|measures)|unauthori[sz]ed)\b",
    r"\b(?:social security|credit card (?:number|details|information)|billing information)\b",
    r"\b(?:next of kin|beneficiary|wire transfer|bank draft|barrister|late (?:husband|father))\b",
    r"\b(?:transfer (?:of )?(?:the )?(?:sum|funds?)"
    r"|\d+(?:\.\d+)? ?million (?:united states |us |u\.s\. )?dollars)\b",
    r"\b(?:strict(?:est)? confidence|confidential (?:business )?(?:proposal|transaction)|"
    r"urgent (?:reply|response|assistance))\b",
    r"\b(?:lottery|claim (?:your )?(?:prize|winnings|funds))\b",
)
PHISHING_MIN_CUES = 2
_CUES = tuple(re.compile(p, re.IGNORECASE) for p in PHISHING_CUES)


@dataclass(frozen=True, slots=True)
class Doc:
    """One labelled document: where it came from, the sha256 of its bytes, its text and cues."""

    source: str
    digest: str
    text: str
    cues: frozenset[str] = frozenset()


def message_from_bytes(raw: bytes, source: str = "corpus") -> Message:
    """A :class:`Message` snapshot for offline use (no envelope)."""
    return Message(Envelope(queue_id="", mail_from="", recipients=()), raw, len(raw), source=source)


def load_docs(paths: Iterable[str | Path], text: Callable[[Message], str]) -> list[Doc]:
    """Every message under ``paths`` as a :class:`Doc`; byte-identical duplicates dropped."""
    seen: set[str] = set()
    docs: list[Doc] = []
    for raw in iter_sources(paths):
        digest = hashlib.sha256(raw.data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        docs.append(message_doc(raw.data, raw.source, text, digest))
    return docs


def message_doc(raw: bytes, source: str, text: Callable[[Message], str],
                digest: str = "") -> Doc:
    """A :class:`Doc` through the detector's own message path (text and cues)."""
    message = message_from_bytes(raw, source)
    body = text(message)
    return Doc(source, digest or hashlib.sha256(raw).hexdigest(), body,
               message_cues(message, body))


def text_doc(text: str, source: str) -> Doc:
    """A :class:`Doc` for generated text (its digest is the sha256 of the UTF-8 text)."""
    return Doc(source, hashlib.sha256(text.encode("utf-8")).hexdigest(), text, text_cues(text))


def is_held_out(digest: str, seed: int, holdout_percent: int) -> bool:
    """The content-addressed split (see :data:`SPLIT_RULE`)."""
    bucket = hashlib.sha256(f"{seed}:{digest}".encode("ascii")).hexdigest()[:8]
    return int(bucket, 16) % 100 < holdout_percent


def split(docs: Sequence[Doc], seed: int, holdout_percent: int) -> tuple[list[Doc], list[Doc]]:
    """(training part, held-out part)."""
    train = [d for d in docs if not is_held_out(d.digest, seed, holdout_percent)]
    held = [d for d in docs if is_held_out(d.digest, seed, holdout_percent)]
    return train, held


def data_digest(docs: Iterable[Doc]) -> str:
    """sha256 over the sorted message digests, one per line: the manifest's training-data digest."""
    lines = "".join(f"{d}\n" for d in sorted(doc.digest for doc in docs))
    return hashlib.sha256(lines.encode("ascii")).hexdigest()


def phishing_cues(text: str) -> int:
    """How many distinct phishing / fraud cues a text shows."""
    return sum(1 for cue in _CUES if cue.search(text))


def phishing_like(docs: Iterable[Doc]) -> list[Doc]:
    """The documents (normally spam) with at least :data:`PHISHING_MIN_CUES` cues."""
    return [d for d in docs if phishing_cues(d.text) >= PHISHING_MIN_CUES]
