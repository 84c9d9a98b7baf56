"""The labelled leak evaluation set: real ham with generated values and look-alikes injected.

Ham comes from the SpamAssassin ham archives (read in place with ``mailwarden.files.sources``) and
is split in two by a hash of each message's source name: ``tune`` and ``test`` never share a ham
message, and their generation seeds differ, so nothing tuned on one half is graded on the other.
Every case records the carrier, the location the values must be reported at, and how many values of
each type were injected. Generation is deterministic for a given split and size.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.leak_eval.carriers import CARRIERS, build
from bench.leak_eval.credential_lookalikes import CREDENTIAL_LOOKALIKES
from bench.leak_eval.credentials import credential
from bench.leak_eval.lookalikes import LOOKALIKE_GENERATORS as VALUE_LOOKALIKES
from bench.leak_eval.secret_values import SECRET_GENERATORS
from bench.leak_eval.values import Snippet, credit_card, iban, us_ssn
from mailwarden.files.sources import iter_sources

CORPUS = Path("/work/shared/corpora/spamassassin")
HAM_ARCHIVES = ("easy_ham.tar.gz", "hard_ham.tar.gz")
GENERATORS = [credit_card, us_ssn, iban, *SECRET_GENERATORS[:3], credential]
LOOKALIKE_GENERATORS = [*VALUE_LOOKALIKES, *CREDENTIAL_LOOKALIKES]
TYPES = ("credit_card", "us_ssn", "iban", "private_key", "aws_access_key", "api_token", "password")
SEEDS = {"tune": 1000, "test": 2000}


@dataclass(frozen=True)
class Ham:
    source: str
    subject: str
    prose: list[str]
    raw: bytes


@dataclass(frozen=True)
class Case:
    carrier: str
    raw: bytes
    location: str
    expected: Counter[str]
    families: tuple[str, ...]


def in_split(source: str, split: str) -> bool:
    bucket = hashlib.sha256(source.encode()).digest()[0] % 2
    return bucket == (0 if split == "tune" else 1)


def load_ham(split: str, corpus: Path = CORPUS) -> list[Ham]:
    out = []
    for raw in iter_sources([corpus / name for name in HAM_ARCHIVES]):
        if not in_split(raw.source, split):
            continue
        msg = email.message_from_bytes(raw.data, policy=email.policy.compat32)
        prose = prose_lines(msg)
        if len(prose) >= 3:
            out.append(Ham(raw.source, str(msg.get("Subject", ""))[:120], prose, raw.data))
    return out


def prose_lines(msg: email.message.Message) -> list[str]:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                text = payload.decode("utf-8", "replace")
                text = "".join(c for c in text if c.isprintable() or c in "\n\t")  # XML-safe
                lines = [line.strip()[:200] for line in text.splitlines() if line.strip()]
                return lines[:40]
    return []


def cases(split: str, hams: list[Ham], per_cell: int, seed: int | None = None) -> Iterator[Case]:
    """About ``per_cell`` values of each type in each carrier, plus look-alike-only messages."""
    seed = SEEDS[split] if seed is None else seed
    per_carrier = (per_cell * len(TYPES) * 2) // 3 + 1  # messages carry 1.5 values on average
    for carrier in CARRIERS:
        for number in range(per_carrier + per_carrier // 3):
            rng = random.Random(f"{seed}:{carrier}:{number}")
            ham = hams[rng.randrange(len(hams))]
            positive = number < per_carrier
            snippets = _pick(rng, number, positive)
            rng.shuffle(snippets)
            raw, location = build(carrier, rng, ham.subject, ham.prose, [s.text for s in snippets])
            expected: Counter[str] = Counter()
            for s in snippets:
                if s.kind:
                    expected[s.kind] += s.count
            families = tuple(s.family for s in snippets if s.kind is None)
            yield Case(carrier, raw, location, expected, families)


def _pick(rng: random.Random, number: int, positive: bool) -> list[Snippet]:
    chosen: list[Snippet] = []
    if positive:
        first = number % len(GENERATORS)
        picks = [first] if rng.random() < 0.5 else [first, (first + rng.randint(1, 6)) % 7]
        chosen = [GENERATORS[i](rng) for i in picks]
    for _ in range(rng.randint(0 if positive else 1, 2 if positive else 3)):
        chosen.append(rng.choice(LOOKALIKE_GENERATORS)(rng))
    return chosen


def lookalike_snippets(split: str, per_family: int, seed: int | None = None) -> Iterator[Snippet]:
    seed = SEEDS[split] if seed is None else seed
    for index, generator in enumerate(LOOKALIKE_GENERATORS):
        for number in range(per_family):
            yield generator(random.Random(f"{seed}:look:{index}:{number}"))
