"""Tests for clas_graph.eval.metrics: hand-worked values, not re-implementations."""

from __future__ import annotations

import math
import unicodedata

import numpy as np
import pytest
import torch
from scipy import stats

from clas_graph.errors import DataError
from clas_graph.eval.metrics import (
    answer_tokens,
    best_over_golds,
    classification_scores,
    exact_match,
    normalize_answer,
    paired_test,
    retrieval_ranks,
    retrieval_top1,
    token_f1,
)

# --- normalisation and tokens ----------------------------------------------------------


def test_normalize_punctuation_case_articles_whitespace():
    assert normalize_answer("  The  Eiffel\tTower! ", "en") == "eiffel tower"
    # Punctuation is deleted, not replaced by a space (SQuAD): hyphens join words.
    assert normalize_answer("New-York", "en") == "newyork"
    # Unicode punctuation (category P*): curly quotes, guillemets, CJK full stop.
    assert normalize_answer("«Paris»", "fr") == "paris"
    assert normalize_answer("“北京”。", "zh") == "北 京"
    # string.punctuation symbols outside category P ($, +) go too, like MLQA.
    assert normalize_answer("$5+", "en") == "5"
    # Articles only as whole words: "another", "theatre" stay.
    assert normalize_answer("a theatre and another", "en") == "theatre and another"


def test_articles_are_per_language():
    assert normalize_answer("la casa", "es") == "casa"
    assert normalize_answer("la casa", "en") == "la casa"  # not an English article
    assert normalize_answer("the house", "es") == "the house"
    assert normalize_answer("Die Universität", "de") == "universität"
    assert normalize_answer("những cái bàn", "vi") == "bàn"
    # MLQA's Arabic rule drops the letters "ال" wherever they occur.
    assert normalize_answer("الكتاب", "ar") == "كتاب"
    # No article table: French, Russian; language tags reduce to the primary subtag.
    assert normalize_answer("le chat", "fr") == "le chat"
    assert normalize_answer("The Cat", "en-US") == "cat"


def test_answer_tokens_unspaced_scripts():
    assert answer_tokens("北京大学", "zh") == ["北", "京", "大", "学"]
    # Mixed text: CJK characters split, other runs kept as words, in any language.
    assert answer_tokens("iPhone 手机2代", "zh") == ["iphone", "手", "机", "2", "代"]
    assert answer_tokens("Tokyo 東京", "en") == ["tokyo", "東", "京"]
    assert answer_tokens("ひらがなカタカナ", "ja") == list("ひらがなカタカナ")
    # Thai: one token per character, combining vowel/tone marks attached (รุ = ร + ุ).
    assert answer_tokens("กรุงเทพ", "th") == ["ก", "รุ", "ง", "เ", "ท", "พ"]
    assert answer_tokens("ไม่", "th") == ["ไ", "ม่"]
    # Korean is written with spaces: words stay whole.
    assert answer_tokens("서울 특별시", "ko") == ["서울", "특별시"]


# --- token F1 and exact match ------------------------------------------------------------


def test_token_f1_hand_worked():
    assert token_f1("Paris.", "paris", "en") == 1.0
    assert token_f1("the Eiffel Tower", "Eiffel Tower", "en") == 1.0
    # pred {big, red, dog} vs gold {red, dog, barks}: 2 common, P = R = 2/3 -> F1 = 2/3.
    assert token_f1("the big red dog", "a red dog barks", "en") == pytest.approx(2 / 3)
    # pred {red, dog} vs gold {big, brown, dog, barks}: 1 common, P = 1/2, R = 1/4
    # -> F1 = 2 * 1/8 / (3/4) = 1/3.
    assert token_f1("red dog", "big brown dog barks", "en") == pytest.approx(1 / 3)
    # Repeated tokens count as a multiset: pred {dog, dog} vs gold {dog}: 1 common,
    # P = 1/2, R = 1 -> 2/3.
    assert token_f1("dog dog", "dog", "en") == pytest.approx(2 / 3)
    assert token_f1("cat", "dog", "en") == 0.0


def test_token_f1_empty():
    assert token_f1("", "Paris", "en") == 0.0
    assert token_f1("Paris", "", "en") == 0.0
    assert token_f1("", "", "en") == 1.0
    # Both normalise to nothing (article, punctuation): counted as a match.
    assert token_f1("the", "...", "en") == 1.0
    assert exact_match("", "Paris", "en") == 0.0


def test_token_f1_unicode():
    # German: umlauts and ß are letters, the hyphen goes; article "die" dropped.
    assert token_f1("Müller-Straße", "müllerstraße", "de") == 1.0
    # pred {universität, münchen} vs gold {universität}: P = 1/2, R = 1 -> 2/3.
    assert token_f1("Die Universität München", "Universität", "de") == pytest.approx(2 / 3)
    # Decomposed umlaut (u + U+0308) equals the composed one after NFC.
    decomposed = unicodedata.normalize("NFD", "München")
    assert decomposed != "München" and token_f1(decomposed, "München", "de") == 1.0
    # French: accents are kept (école != ecole); the apostrophe (also U+2019) is deleted.
    assert token_f1("ecole", "école", "fr") == 0.0
    # pred {lécole, normale} vs gold {lécole}: P = 1/2, R = 1 -> 2/3.
    assert token_f1("L'École normale", "l\u2019école", "fr") == pytest.approx(2 / 3)


def test_token_f1_chinese_character_level():
    # pred 北 京 大 学 (4 tokens), gold 北 京 (2): 2 common, P = 2/4, R = 2/2 -> F1 = 2/3.
    assert token_f1("北京大学", "北京", "zh") == pytest.approx(2 / 3)
    # pred 北 京 (2), gold 南 京 市 (3): 1 common, P = 1/2, R = 1/3 -> 2 * (1/6) / (5/6) = 2/5.
    assert token_f1("北京", "南京市", "zh") == pytest.approx(2 / 5)
    # Spaces do not matter between Chinese characters.
    assert exact_match("北 京", "北京", "zh") == 1.0


def test_token_f1_thai_character_level():
    # pred ก รุ ง เ ท พ (6 tokens), gold เ ท ศ (3): common {เ, ท} = 2,
    # P = 2/6, R = 2/3 -> F1 = 2 * (2/9) / 1 = 4/9.
    assert token_f1("กรุงเทพ", "เทศ", "th") == pytest.approx(4 / 9)
    assert token_f1("กรุงเทพ", "กรุงเทพ", "th") == 1.0


def test_exact_match():
    assert exact_match("The Eiffel Tower!", "eiffel tower", "en") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower", "en") == 0.0
    assert exact_match("la casa", "casa", "es") == 1.0
    assert exact_match("la casa", "casa", "en") == 0.0


def test_best_over_golds():
    # vs "red": P = 1/2, R = 1 -> 2/3; vs "big dog": P = R = 1/2 -> 1/2; max 2/3.
    assert best_over_golds(token_f1, "red dog", ["red", "big dog"], "en") == pytest.approx(2 / 3)
    assert best_over_golds(token_f1, "red dog", ["cat", "The red dog."], "en") == 1.0
    assert best_over_golds(exact_match, "red dog", ("cat", "dog"), "en") == 0.0
    assert best_over_golds(exact_match, "北京", ["南京", "北 京"], "zh") == 1.0
    with pytest.raises(DataError, match="no gold answers"):
        best_over_golds(token_f1, "x", [], "en")


# --- classification ----------------------------------------------------------------------


def test_classification_scores_hand_count():
    preds = [0, 0, 0, 1, 2, 2, 1]
    golds = [0, 0, 1, 1, 2, 0, 2]
    scores = classification_scores(preds, golds)
    # Correct at positions 0, 1, 3, 4 -> 4/7.
    assert scores["accuracy"] == pytest.approx(4 / 7)
    # class 0: TP 2, FP 1, FN 1 -> 2/3; class 1: TP 1, FP 1, FN 1 -> 1/2;
    # class 2: TP 1, FP 1, FN 1 -> 1/2; macro = (2/3 + 1/2 + 1/2) / 3 = 5/9.
    assert scores["per_class_f1"] == pytest.approx({0: 2 / 3, 1: 1 / 2, 2: 1 / 2})
    assert scores["macro_f1"] == pytest.approx(5 / 9)
    assert scores["n"] == 7


def test_classification_scores_absent_class_and_errors():
    # Only class 0 occurs: classes 1 and 2 score 0 (zero_division=0) and count in the mean.
    scores = classification_scores([0, 0], [0, 0])
    assert scores["accuracy"] == 1.0 and scores["macro_f1"] == pytest.approx(1 / 3)
    with pytest.raises(DataError, match="3 predictions but 2"):
        classification_scores([0, 1, 2], [0, 1])
    with pytest.raises(DataError, match="no examples"):
        classification_scores([], [])


# --- paired test -----------------------------------------------------------------------------


BASE = {"en": 0.90, "de": 0.50, "fr": 0.60, "zh": 0.40, "sw": 0.30}
COND = {"en": 0.20, "de": 0.55, "fr": 0.62, "zh": 0.47, "sw": 0.31, "xx": 0.99}


def test_paired_test_matches_scipy_and_excludes_anchor():
    out = paired_test(BASE, COND, anchor="en")
    langs = ["de", "fr", "sw", "zh"]  # in both, minus the anchor; "xx" is only in COND
    assert out["languages"] == langs and out["n"] == 4
    b = [BASE[x] for x in langs]
    c = [COND[x] for x in langs]
    expected = stats.ttest_rel(c, b)
    assert out["t"] == pytest.approx(expected.statistic)
    assert out["p"] == pytest.approx(expected.pvalue)
    assert out["t"] > 0  # condition above base in every language
    assert out["mean_base"] == pytest.approx(0.45)
    assert out["mean_condition"] == pytest.approx((0.55 + 0.62 + 0.31 + 0.47) / 4)
    assert out["mean_delta"] == pytest.approx((0.05 + 0.02 + 0.01 + 0.07) / 4)
    # Sample std (ddof=1): base deviations from 0.45 are .05, .15, -.15, -.05 ->
    # sqrt((.0025 + .0225 + .0225 + .0025) / 3) = sqrt(0.05 / 3).
    assert out["std_base"] == pytest.approx(math.sqrt(0.05 / 3))
    assert out["std_condition"] == pytest.approx(np.std(c, ddof=1))
    # With the anchor's big drop included the result would differ.
    with_en = paired_test(BASE, COND, anchor=None)
    assert with_en["n"] == 5 and with_en["t"] < 0


def test_paired_test_too_few_languages():
    one = paired_test({"en": 1.0, "de": 0.5}, {"en": 0.0, "de": 0.7}, anchor="en")
    assert one["n"] == 1
    assert one["mean_delta"] == pytest.approx(0.2)
    assert all(math.isnan(one[key]) for key in ("t", "p", "std_base", "std_delta"))
    none = paired_test({"en": 1.0}, {"en": 0.0}, anchor="en")
    assert none["n"] == 0 and math.isnan(none["mean_base"]) and math.isnan(none["t"])


# --- retrieval ---------------------------------------------------------------------------------


def test_retrieval_identity_and_scale_invariance():
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(6, 16))
    assert retrieval_top1(queries, queries) == 1.0
    # Cosine ignores each key's length.
    assert retrieval_top1(queries, queries * rng.uniform(0.1, 10.0, size=(6, 1))) == 1.0
    assert retrieval_top1(torch.tensor(queries, dtype=torch.float32), torch.tensor(queries)) == 1.0


def test_retrieval_permuted_keys():
    queries = np.eye(5)
    perm = [3, 1, 4, 0, 2]  # only position 1 stays in place
    keys = queries[perm]
    # Query i's best key is the row holding e_i; it sits at i only for i = 1.
    assert retrieval_top1(queries, keys) == pytest.approx(1 / 5)
    keys2 = queries[[1, 0, 2, 3, 4]]  # swap the first two: 3 of 5 in place
    assert retrieval_top1(queries, keys2) == pytest.approx(3 / 5)


def test_retrieval_ranks_and_ties():
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    keys = np.array([[1.0, 0.1], [1.0, 0.0], [1.0, 1.0]])
    # Own key of query i is key i. q0 = e1: s = [0.995, 1.0, 0.707] -> own (0.995) 2nd;
    # q1 = e2: s = [0.0995, 0.0, 0.707] -> own (0.0) 3rd; q2: s = [0.774, 0.707, 1.0] -> 1st.
    assert retrieval_ranks(queries, keys).tolist() == [2, 3, 1]
    assert retrieval_top1(queries, keys) == pytest.approx(1 / 3)
    # A tie with another key is not a hit; zero vectors never are.
    assert retrieval_top1(np.ones((2, 3)), np.ones((2, 3))) == 0.0
    assert retrieval_top1(np.zeros((2, 3)), np.eye(2, 3)) == 0.0
    with pytest.raises(DataError, match="same shape"):
        retrieval_top1(np.eye(3), np.eye(2, 3))
    with pytest.raises(DataError, match="2-D"):
        retrieval_top1(np.ones(3), np.ones(3))
