"""Text preprocessing shared by content-classifier training and the ``content`` detector.

It sits between text extraction (subject plus body/attachment text of one message) and the
portable TF-IDF models: :class:`TextPrep` lower-cases the text, tokenises it with one regular
expression compiled by the standard library's ``re`` (see :data:`_FLAGS` for why not nltk's
``RegexpTokenizer``), folds URLs, e-mail addresses, numbers and money amounts into placeholder
tokens, drops English stop words (scikit-learn's built-in list, copied here so features cannot
drift with library versions) and stems words with nltk's Snowball English stemmer behind a bounded
per-instance LRU cache. Training and scanning call the same code, and :data:`FEATURE_SCHEMA` names
the feature definition recorded in every model manifest. The scan path uses
:meth:`TextPrep.counts`: the same features as :meth:`TextPrep.tokens`, counted. Its raw tokens are
those of the regular expression, found without running it over the whole text
(:func:`raw_counts`): whitespace-separated chunks are counted in C, a chunk of letters (give or
take punctuation at its edges) is one word, and only the other distinct chunks go through the
expression. Each distinct raw token is then mapped to its feature once, through a bounded cache.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable

from nltk.stem.snowball import SnowballStemmer

# Bump when the token stream for a given text changes: models record it and refuse a mismatch.
FEATURE_SCHEMA = "content-tokens-v1"

# Placeholder tokens (not secrets).
URL_TOKEN = "__url__"  # noqa: S105
EMAIL_TOKEN = "__email__"  # noqa: S105
NUMBER_TOKEN = "__num__"  # noqa: S105
MONEY_TOKEN = "__money__"  # noqa: S105
BANG_TOKEN = "!"  # noqa: S105

# URLs, e-mail addresses, money amounts, numbers, runs of letters (any script), "!".
_PATTERN = (
    r"(?:https?://|www\.)[^\s<>\"'()]+"
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|[$\u20ac\u00a3\u00a5]\s?\d+(?:[.,]\d+)*"
    r"|\d+(?:[.,]\d+)*"
    r"|[^\W\d_]+"
    r"|!"
)

# scikit-learn's ENGLISH_STOP_WORDS (BSD-3-Clause, from the Glasgow IR group), 318 words.
STOP_WORDS: frozenset[str] = frozenset("""
a about above across after afterwards again against all almost alone along already also although
always am among amongst amoungst amount an and another any anyhow anyone anything anyway
anywhere are around as at back be became because become becomes becoming been before beforehand
behind being below beside besides between beyond bill both bottom but by call can cannot cant co
con could couldnt cry de describe detail do done down due during each eg eight either eleven
else elsewhere empty enough etc even ever every everyone everything everywhere except few
fifteen fifty fill find fire first five for former formerly forty found four from front full
further get give go had has hasnt have he hence her here hereafter hereby herein hereupon hers
herself him himself his how however hundred i ie if in inc indeed interest into is it its itself
keep last latter latterly least less ltd made many may me meanwhile might mill mine more
moreover most mostly move much must my myself name namely neither never nevertheless next nine
no nobody none noone nor not nothing now nowhere of off often on once one only onto or other
others otherwise our ours ourselves out over own part per perhaps please put rather re same see
seem seemed seeming seems serious several she should show side since sincere six sixty so some
somehow someone something sometime sometimes somewhere still such system take ten than that the
their them themselves then thence there thereafter thereby therefore therein thereupon these
they thick thin third this those though three through throughout thru thus to together too top
toward towards twelve twenty two un under until up upon us very via was we well were what
whatever when whence whenever where whereafter whereas whereby wherein whereupon wherever
whether which while whither who whoever whole whom whose why will with within without would yet
you your yours yourself yourselves
""".split())  # noqa: SIM905

MIN_WORD = 2
MAX_WORD = 30
DEFAULT_CACHE_SIZE = 65_536
DEFAULT_MAX_CHARS = 200_000
# The tokens are stdlib ``re.compile(_PATTERN, _FLAGS).findall``: exactly what nltk 3.8's
# RegexpTokenizer did (same flags, no gaps), which the shipped models were trained with. They are
# not found through nltk any more: since 3.10.3 nltk compiles RegexpTokenizer patterns with the
# third-party ``regex`` engine (nltk.redos), whose Unicode classes differ from ``re``'s: its ``\w``
# takes combining marks ("cafe\u0301" is one word, not "cafe"; "i\u0307stanbul" is not "i" plus
# "stanbul") and leaves out other numbers ("\u00bd" is no token, "x\u00b2" is "x"), so the
# features would drift with nltk's version. (nltk's English Snowball stems did not change from 3.8
# to 3.10.4: tests/test_textprep.py pins some, the shipped-model tests score with them.)
_FLAGS = re.UNICODE | re.MULTILINE | re.DOTALL
_CURRENCY = "$\u20ac\u00a3\u00a5"
# The one token that can span whitespace: a currency sign, one whitespace character, a digit.
_MONEY_ACROSS = re.compile(r"[$\u20ac\u00a3\u00a5]\s\d", _FLAGS).finditer
# Characters that never start or continue a token next to a run of letters when the chunk has
# no "@": punctuation except "!" (a token), "@" (addresses) and the currency signs.
_EDGE = ('"#%&\'()*+,-./:;<=>?[\\]^_`{|}~'
         "\u00ab\u00bb\u2018\u2019\u201a\u201c\u201d\u201e\u2013\u2014\u2026")
_URL_STARTS = frozenset({"http", "https", "www"})  # "http" + "://x" or "www" + ".x" is a URL


class TextPrep:
    """Text to feature tokens. Thread-safe: the stemmer is stateless and ``lru_cache`` locks."""

    def __init__(
        self, cache_size: int = DEFAULT_CACHE_SIZE, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        self._findall: Callable[[str], list[str]] = re.compile(_PATTERN, _FLAGS).findall
        self._max_chars = max_chars
        stemmer = SnowballStemmer("english")
        self._stem: Callable[[str], str] = functools.lru_cache(maxsize=cache_size)(stemmer.stem)
        # raw token -> feature ("" for none); emptied when full. A dict's get and set are atomic
        # under the GIL, so threads share it without a lock (a lost entry is only recomputed).
        self._features: dict[str, str] = {}
        self._features_max = cache_size

    @property
    def max_chars(self) -> int:
        return self._max_chars

    def stem(self, word: str) -> str:
        """The cached Snowball stem of a lower-case word."""
        return self._stem(word)

    def cache_info(self) -> tuple[int, int, int]:
        """(hits, misses, current size) of the stem cache."""
        info = self._stem.cache_info()  # type: ignore[attr-defined]
        return int(info.hits), int(info.misses), int(info.currsize)

    @property
    def feature_cache_size(self) -> int:
        """Raw tokens currently held by the feature cache of :meth:`counts`."""
        return len(self._features)

    def raw_tokens(self, text: str) -> list[str]:
        """Lower-cased tokens before stop-word removal and stemming (at most ``max_chars``)."""
        return self._findall(text[: self._max_chars].lower())

    def tokens(self, text: str) -> list[str]:
        """The feature tokens of a text: placeholders and stemmed non-stop words, in order."""
        out: list[str] = []
        for token in self.raw_tokens(text):
            feature = self._feature(token)
            if feature:
                out.append(feature)
        return out

    __call__ = tokens

    def counts(self, text: str) -> dict[str, int]:
        """Feature token -> count, in order of first occurrence: ``Counter(self.tokens(text))``,
        computed once per distinct raw token instead of once per token."""
        raw = raw_counts(text[: self._max_chars].lower(), self._findall)
        cache = self._features
        out: dict[str, int] = {}
        for token, n in raw.items():
            feature = cache.get(token)
            if feature is None:
                feature = self._feature(token) or ""
                if token[0].isalpha():  # numbers and URLs are mostly unique: not worth keeping
                    if len(cache) >= self._features_max:
                        cache.clear()
                    cache[token] = feature
            if feature:
                out[feature] = out.get(feature, 0) + n
        return out

    def _feature(self, token: str) -> str | None:
        first = token[0]
        if first.isalpha() and token.isalpha():
            if token in STOP_WORDS or not MIN_WORD <= len(token) <= MAX_WORD:
                return None
            return self._stem(token)
        return placeholder(token)


def raw_counts(low: str, findall: Callable[[str], list[str]]) -> dict[str, int]:
    """``Counter(findall(low))`` (same keys, counts and first-occurrence order), faster.

    Tokens never span whitespace (``str.split`` and ``\\s`` agree on what it is) except a
    currency sign, one whitespace character and a digit; away from those few spots, the text's
    tokens are the concatenation of each whitespace-separated chunk's. A chunk whose letters
    (``str.isalpha``, a subset of the word class) are surrounded only by :data:`_EDGE`
    characters is that one word; any other distinct chunk, and the chunks around an amount
    written across whitespace, are tokenised by the expression itself, in text order.
    """
    out: dict[str, int] = {}
    done = 0
    for start, end in _money_regions(low):
        _count_chunks(low[done:start], findall, out)
        for token in findall(low[start:end]):
            out[token] = out.get(token, 0) + 1
        done = end
    _count_chunks(low[done:], findall, out)
    return out


def _money_regions(low: str) -> list[tuple[int, int]]:
    """Whole chunks around each currency sign followed by one whitespace and a digit."""
    if not any(sign in low for sign in _CURRENCY):
        return []
    regions: list[tuple[int, int]] = []
    for match in _MONEY_ACROSS(low):
        start, end = match.start(), match.end()
        while start > 0 and not low[start - 1].isspace():
            start -= 1
        while end < len(low) and not low[end].isspace():
            end += 1
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(end, regions[-1][1]))
        else:
            regions.append((start, end))
    return regions


def _count_chunks(text: str, findall: Callable[[str], list[str]], out: dict[str, int]) -> None:
    get = out.get
    for chunk, n in Counter(text.split()).items():
        if chunk.isalpha():
            word: str | None = chunk
        elif "@" in chunk:
            word = None
        else:
            word = chunk.strip(_EDGE)
            if not word:
                continue  # punctuation only: no token
            if not word.isalpha() or word in _URL_STARTS:
                word = None
        if word is not None:
            out[word] = get(word, 0) + n
            continue
        for token in findall(chunk):
            out[token] = get(token, 0) + n


def placeholder(token: str) -> str | None:
    """The placeholder for a non-word token (URL, address, money, number, "!"), else None."""
    if "@" in token:
        return EMAIL_TOKEN
    if "/" in token or token.startswith("www."):
        return URL_TOKEN
    if token[0] in "$\u20ac\u00a3\u00a5":
        return MONEY_TOKEN
    if token[0].isdigit():
        return NUMBER_TOKEN
    if token == BANG_TOKEN:
        return BANG_TOKEN
    return None
