"""Tokenising, stop words, stemming and the stem cache of the content classifiers' text prep."""

from __future__ import annotations

import threading

from mailwarden.detectors.content.textprep import STOP_WORDS, TextPrep


def test_placeholders_stop_words_and_stems() -> None:
    prep = TextPrep()
    tokens = prep.tokens("Please VERIFY your accounts at https://x.example/login now!!! $100")
    assert tokens == ["verifi", "account", "__url__", "!", "!", "!", "__money__"]


def test_addresses_numbers_and_www_links() -> None:
    prep = TextPrep()
    assert prep.tokens("Mail bob@example.org about 42 items on www.example.com") == [
        "mail", "__email__", "__num__", "item", "__url__"]


def test_non_latin_words_are_kept_and_overlong_words_dropped() -> None:
    prep = TextPrep()
    tokens = prep.tokens("Größe " + "x" * 31)
    assert tokens == ["größe"]


def test_stop_word_list_is_the_shipped_one() -> None:
    assert len(STOP_WORDS) == 318
    assert {"the", "your", "please"} <= STOP_WORDS
    assert "password" not in STOP_WORDS


def test_stems_are_cached_and_the_cache_is_bounded() -> None:
    prep = TextPrep(cache_size=3)
    prep.tokens("running runner runs")
    hits_before = prep.cache_info()[0]
    prep.tokens("running")
    assert prep.cache_info()[0] == hits_before + 1
    prep.tokens("alpha beta gamma delta epsilon")
    assert prep.cache_info()[2] == 3


def test_text_is_truncated_to_max_chars() -> None:
    prep = TextPrep(max_chars=12)
    assert prep.tokens("invoice paid; invoice overdue") == ["invoic", "paid"]


def test_concurrent_use_gives_the_sequential_result() -> None:
    prep = TextPrep(cache_size=64)
    texts = [f"verification number {i} of the accounts transferring funds" for i in range(200)]
    expected = [TextPrep().tokens(t) for t in texts]
    results: dict[int, list[list[str]]] = {}

    def work(worker: int) -> None:
        results[worker] = [prep.tokens(t) for t in texts]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results.values())


# Non-ASCII text where nltk >= 3.10.3's RegexpTokenizer (``regex`` engine) and stdlib ``re`` differ:
# a combining accent (U+0301), the dotted capital I whose lower case carries U+0307, other numbers
# (½, ²) and a letter number (Ⅷ, lower-cased ⅷ). The tokens are those of nltk 3.8 / stdlib ``re``,
# the definition the shipped models were trained with, whatever nltk version is installed.
NON_ASCII = "cafe\u0301 na\u00efve \u00bd \u00b2 \u2167 x\u00b2 \u0660\u0661 \ufb01ne \u0130stanbul"


def test_non_ascii_raw_tokens_are_those_of_nltk_3_8() -> None:
    prep = TextPrep()
    assert prep.raw_tokens(NON_ASCII) == [
        "cafe", "na\u00efve", "\u00bd", "\u00b2", "\u2177", "x\u00b2", "\u0660\u0661",
        "\ufb01ne", "i", "stanbul"]
    assert prep.tokens(NON_ASCII) == [
        "cafe", "na\u00efv", "__num__", "__num__", "\ufb01ne", "stanbul"]
    assert prep.tokens("Cafe\u0301 r\u00e9sume\u0301 \u00bd-price x\u00b2 offer") == [
        "cafe", "r\u00e9sume", "price", "offer"]


def test_snowball_stems_are_those_of_nltk_3_8() -> None:
    prep = TextPrep()
    words = ["running", "verification", "accounts", "sayyid", "quyuy", "na\u00efve",
             "na\u00efvety", "gr\u00f6\u00dfe", "r\u00e9sum\u00e9", "fianc\u00e9e", "\ufb01ne"]
    assert [prep.stem(w) for w in words] == [
        "run", "verif", "account", "sayyid", "quyuy", "na\u00efv", "na\u00efveti",
        "gr\u00f6\u00dfe", "r\u00e9sum\u00e9", "fianc\u00e9", "\ufb01ne"]
