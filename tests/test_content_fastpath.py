"""The content detector's scan path equals its reference path exactly.

:meth:`TextPrep.counts` (raw tokens counted in C, one feature lookup per distinct raw token behind
a bounded cache) must give ``Counter(TextPrep.tokens(text))`` with the same order, and
:class:`ModelSet` (one shared vocabulary lookup for the three models) must give each model's own
``probability`` bit for bit, so the shipped models score exactly as they were validated.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mailwarden.detectors.base import DetectorContext
from mailwarden.detectors.content.detector import build, load_models, stacks, text_function
from mailwarden.detectors.content.phish_cues import message_cues
from mailwarden.detectors.content.portable import ModelSet, PortableModel
from mailwarden.detectors.content.textprep import _FLAGS, _PATTERN, TextPrep, raw_counts
from mailwarden.files.sources import iter_sources
from mailwarden.message import Envelope, Message
from mailwarden.options import Options
from mailwarden.training.content.corpus import message_from_bytes

REPO = Path(__file__).resolve().parent.parent
CORPORA = Path(os.environ.get("MAILWARDEN_CORPORA", REPO.parent / "shared" / "corpora"))
SA = CORPORA / "spamassassin"
needs_corpora = pytest.mark.skipif(not (SA / "spam.tar.gz").exists(),
                                   reason="shared SpamAssassin corpus not present")

FINDALL = re.compile(_PATTERN, _FLAGS).findall
TRICKY = [
    "",
    "!!! $100 €5,00 £3 ¥7 42.000,5 www.example.com https://x.example/a?b=c bob@example.org",
    "Größe GRÖSSE naïve café ΑΘΗΝΑ москва 東京 the and of running runner runs ran",
    "x" * 31 + " " + "y" * 30 + " a b cc " + "verify " * 50 + "Verify VERIFY verification",
    "snake_case under_score digits123abc 123abc abc123 e-mail co-operate don't it's",
    "https://. http:// www. (www.) www.x https://x.example/?a=(1) <http://y> 'www.z'",
    "$ 100 $\t5 \u20ac 3 \u00a3\n7 \u00a5  9 $x 5$ 1 $,5 price:$ 20, total $1,000.50!",
    "(bob@example.org) <a.b+c@x.co.uk>, -x@y.z @ @@ a@ @b mail@host",
    "---------- ====== ....... +-+-+ __init__ \u00abquote\u00bb \u201cdone\u201d \u2014dash\u2014",
    "cafe\u0301 na\u00efve \u00bd \u00b2 \u2167 x\u00b2 \u0660\u0661 \ufb01ne \u0130stanbul",
    "hello!!! !hello! ! !! a!b 1!2 wow!!!!",
]


def corpus_texts(limit: int) -> list[str]:
    text = text_function()
    out = []
    for name in ("easy_ham.tar.gz", "spam.tar.gz", "hard_ham.tar.gz"):
        for i, raw in enumerate(iter_sources([SA / name])):
            if i >= limit:
                break
            out.append(text(message_from_bytes(raw.data)))
    return out


def assert_counts_match(texts: list[str], prep: TextPrep) -> None:
    reference = TextPrep()
    for text in texts:
        expected = Counter(reference.tokens(text))
        got = prep.counts(text)
        assert list(got.items()) == list(expected.items())


def test_counts_equal_counted_tokens_in_order() -> None:
    assert_counts_match(TRICKY, TextPrep())
    assert_counts_match(TRICKY * 3, TextPrep())  # second and third pass hit the cache


def test_non_ascii_fast_path_equals_reference_and_nltk_3_8_tokens() -> None:
    # Failed on nltk >= 3.10.3 while the reference went through nltk's RegexpTokenizer (``regex``
    # engine): the reference gave ["naïv", "__num__", "ﬁne"], the fast path the tokens below.
    text = "cafe\u0301 na\u00efve \u00bd \u00b2 \u2167 x\u00b2 \u0660\u0661 \ufb01ne \u0130stanbul"
    prep = TextPrep()
    expected = ["cafe", "na\u00efv", "__num__", "__num__", "\ufb01ne", "stanbul"]
    assert prep.tokens(text) == expected
    assert list(prep.counts(text).items()) == list(Counter(expected).items())
    assert prep.raw_tokens(text) == FINDALL(text.lower())


def test_raw_counts_equal_counting_the_regular_expression() -> None:
    for text in TRICKY:
        low = text.lower()
        assert list(raw_counts(low, FINDALL).items()) == list(Counter(FINDALL(low)).items())


def test_raw_counts_equal_the_expression_on_random_text() -> None:
    pieces = ["a", "Z", "\u00e9", "\u00df", "1", "0", "_", ".", ",", "@", "!", "$", "$ 5", "\u20ac",
              "-", "+", ":", "/", "w", "www.", "http://", "https://", " ", "  ", "\t", "\n",
              "(", ")", "<", ">", "'", '"', "\u00bd", "\u0301", "\u2014", "#", "x@y.z"]
    rng = random.Random(4)
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 40)))
        low = text.lower()
        assert list(raw_counts(low, FINDALL).items()) == list(Counter(FINDALL(low)).items()), text


def test_counts_respect_max_chars() -> None:
    text = "invoice paid; invoice overdue"
    assert TextPrep(max_chars=12).counts(text) == {"invoic": 1, "paid": 1}


def test_feature_cache_is_bounded_and_results_stay_right() -> None:
    prep = TextPrep(cache_size=4)
    words = " ".join(f"word{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(200))
    assert_counts_match([words, words + " alpha beta", *TRICKY], prep)
    assert 0 < prep.feature_cache_size <= 4


def tiny_models() -> dict[str, PortableModel]:
    rng = np.random.default_rng(5)

    def model(name: str, terms: tuple[str, ...], bias: float, sublinear: bool) -> PortableModel:
        n = len(terms)
        return PortableModel(name, terms, rng.uniform(1, 5, n), rng.normal(0, 2, n),
                             bias=bias, slope=-1.7, offset=0.2, sublinear_tf=sublinear)

    return {"a": model("a", ("cheap", "pill", "!", "offer"), 0.3, False),
            "b": model("b", ("agenda", "meet", "cheap"), -0.4, True),
            "c": model("c", ("zzz",), 0.0, False)}


def test_model_set_equals_each_model_exactly() -> None:
    models = tiny_models()
    joint = ModelSet(models)
    docs = [{}, {"unknown": 3}, {"cheap": 2, "agenda": 1}, {"!": 5, "offer": 1, "zzz": 2},
            {"meet": 1, "cheap": 4, "pill": 1, "nope": 7}]
    for counts in docs:
        got = joint.probabilities(counts)
        assert got == {name: m.probability(counts) for name, m in models.items()}
    # an empty message scores each model's bias alone
    assert len(set(joint.probabilities({}).values())) >= 2


@needs_corpora
def test_shipped_models_score_corpus_mail_exactly_as_the_reference_path() -> None:
    models = load_models(REPO / "models" / "content")
    joint, fast, reference = ModelSet(models), TextPrep(), TextPrep()
    seen = []
    for text in corpus_texts(150):
        low = text.lower()
        assert list(raw_counts(low, FINDALL).items()) == list(Counter(FINDALL(low)).items())
        tokens = reference.tokens(text)
        expected = {name: m.probability(tokens) for name, m in models.items()}
        assert joint.probabilities(fast.counts(text)) == expected
        seen.append(expected["spam"])
    assert min(seen) < 0.1 and max(seen) > 0.9  # both classes were compared


@needs_corpora
def test_detector_scores_equal_per_model_probabilities() -> None:
    detector = build(Options({}, "detectors.content"), DetectorContext(REPO / "models", REPO))
    models, text, prep = load_models(REPO / "models" / "content"), text_function(), TextPrep()
    for i, raw in enumerate(iter_sources([SA / "spam.tar.gz"])):
        if i >= 60:
            break
        message = Message(Envelope("Q", "a@example.org", ("b@example.org",)), raw.data,
                          len(raw.data))
        tokens = prep.tokens(text(message))
        expected = {name: m.probability(tokens) for name, m in models.items()}
        cues = message_cues(message, text(message))
        for name, stack in stacks(models).items():  # the manifest's score layer on top
            expected[name] = stack.probability(expected[name], cues)
        assert detector.analyse(message).scores == expected
