"""Metrics for the paper's tables: QA token F1 / exact match, XNLI accuracy / macro F1,
cross-language summaries with a paired t-test, and parallel-embedding retrieval.

All functions are pure (no I/O, no global state) and return plain Python floats/dicts.

QA answers (XQuAD) are scored like the MLQA evaluation script (``mlqa_evaluation_v1.py``,
facebookresearch/MLQA), which is SQuAD v1.1's script made multilingual:

1. ``unicodedata.normalize("NFC", s)`` (our addition: composed and decomposed forms of the
   same letter, e.g. ``"ü"`` vs ``"u\\u0308"``, compare equal; a no-op on NFC text),
2. ``s.lower()``,
3. delete punctuation: every character in ``string.punctuation`` or whose Unicode category
   starts with ``"P"`` (``"New-York"`` -> ``"newyork"``, ``"l'école"`` -> ``"lécole"``),
4. replace articles by a space, per language, with MLQA's table (:data:`ARTICLES`),
5. split into tokens (:func:`answer_tokens`) and join them with single spaces.

Token F1 and exact match then follow SQuAD: ``F1 = 2PR / (P + R)`` over the multiset of
tokens, and the best score over all gold answers of a question.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = [
    "ARTICLES",
    "answer_tokens",
    "best_over_golds",
    "classification_scores",
    "exact_match",
    "normalize_answer",
    "paired_test",
    "retrieval_ranks",
    "retrieval_top1",
    "token_f1",
]

# --- QA answer normalisation -------------------------------------------------

#: Article patterns per language, copied from MLQA's ``mlqa_evaluation_v1.py``
#: (``remove_articles``); each match is replaced by a space after punctuation removal.
#: MLQA covers en, es, hi, vi, de, ar, zh; hi and zh have no articles there and every other
#: language (el, ru, tr, th, ro, fr, ...) gets none here either (MLQA would raise instead).
#: Kept verbatim so scores stay comparable with MLQA/XTREME numbers, including two quirks:
#: the Vietnamese list holds non-articles (``của`` "of", ``là`` "is"), and the Arabic pattern
#: deletes the letter pair ``ال`` anywhere, also inside words (its first alternative
#: ``\sال^`` can never match).
ARTICLES: dict[str, str] = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "ar": r"\sال^|ال",
}
_ARTICLE_RE = {
    lang: re.compile(unicodedata.normalize("NFC", pattern)) for lang, pattern in ARTICLES.items()
}

#: Scripts written without spaces between words: every character of these ranges is a token.
#: CJK ideographs (all extension blocks, compatibility ideographs, radicals, 々〆〇), Hiragana,
#: Katakana (also half-width), Thai, Lao, Myanmar and Khmer. Hangul is not here: Korean
#: separates words by spaces.
_UNSPACED_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x3134F),  # CJK extensions B-G, compatibility supplement
)


def _is_unspaced(ch: str) -> bool:
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _UNSPACED_RANGES)


def _is_punct(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def _lang(language: str) -> str:
    """Primary subtag, lower case: ``"en-US"`` -> ``"en"``, ``"zh_Hans"`` -> ``"zh"``."""
    if not isinstance(language, str) or not language.strip():
        raise DataError(f"language must be a non-empty code such as 'en', got {language!r}")
    return language.strip().lower().replace("_", "-").split("-")[0]


def _segment(text: str) -> list[str]:
    """Whitespace tokens; inside each, characters of unspaced scripts become tokens of their own.

    A character of an unspaced script (:data:`_UNSPACED_RANGES`) is one token together with the
    combining marks (Unicode category ``M*``) right after it, so Thai ``"กิ"`` (consonant + vowel
    sign) is one token, not two. Runs of other characters stay whole words: ``"iphone手机"`` ->
    ``["iphone", "手", "机"]`` (MLQA's "mixed segmentation" for Chinese).
    """
    tokens: list[str] = []
    for chunk in text.split():
        run = ""
        cluster_open = False  # the last token is an unspaced-script character
        for ch in chunk:
            if cluster_open and unicodedata.category(ch).startswith("M"):
                tokens[-1] += ch
            elif _is_unspaced(ch):
                if run:
                    tokens.append(run)
                    run = ""
                tokens.append(ch)
                cluster_open = True
            else:
                run += ch
                cluster_open = False
        if run:
            tokens.append(run)
    return tokens


def normalize_answer(text: str, language: str) -> str:
    """Normalise an answer string for comparison (MLQA / SQuAD v1.1 rules, see the module doc).

    NFC, lower case, punctuation deleted, ``language``'s articles (:data:`ARTICLES`) replaced
    by spaces, then the tokens of :func:`answer_tokens` joined by single spaces. ``language`` is
    an ISO 639-1 code; only its primary subtag counts (``"zh-Hans"`` -> ``"zh"``).

    >>> normalize_answer("The Eiffel  Tower!", "en")
    'eiffel tower'
    >>> normalize_answer("北京大学", "zh")
    '北 京 大 学'
    """
    lang = _lang(language)
    s = unicodedata.normalize("NFC", str(text)).lower()
    s = "".join(ch for ch in s if not _is_punct(ch))
    pattern = _ARTICLE_RE.get(lang)
    if pattern is not None:
        s = pattern.sub(" ", s)
    return " ".join(_segment(s))


def answer_tokens(text: str, language: str) -> list[str]:
    """Tokens of ``normalize_answer(text, language)``, the units that token F1 counts.

    Whitespace-separated words, except that every character of a script written without spaces
    (Chinese/Japanese ideographs and kana, Thai, Lao, Myanmar, Khmer) is a token of its own,
    with any combining marks that follow it attached (Thai vowel and tone marks). This is
    decided per character, not per language, so it also applies to CJK text inside English
    answers and to Latin words or digits inside Chinese or Thai ones (kept as whole words).
    For Chinese it equals MLQA's mixed segmentation (MLQA splits ``\\u4e00-\\u9fa5`` only).

    >>> answer_tokens("the big red dog", "en")
    ['big', 'red', 'dog']
    >>> answer_tokens("iPhone 手机", "zh")
    ['iphone', '手', '机']
    """
    return normalize_answer(text, language).split()


def token_f1(prediction: str, gold: str, language: str) -> float:
    """SQuAD token F1 of one prediction against one gold answer.

    With ``p`` and ``g`` the token multisets of :func:`answer_tokens` and
    ``c = |p ∩ g|`` (multiset intersection): ``P = c / |p|``, ``R = c / |g|``,
    ``F1 = 2PR / (P + R)``; 0 when ``c = 0``. If either side has no tokens: 1.0 when both are
    empty (e.g. ``"the"`` vs ``""`` in English), else 0.0.
    """
    pred = answer_tokens(prediction, language)
    ref = answer_tokens(gold, language)
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str, language: str) -> float:
    """1.0 if ``normalize_answer(prediction) == normalize_answer(gold)``, else 0.0."""
    return float(normalize_answer(prediction, language) == normalize_answer(gold, language))


def best_over_golds(
    metric: Callable[[str, str, str], float],
    prediction: str,
    golds: Sequence[str],
    language: str,
) -> float:
    """``max(metric(prediction, g, language) for g in golds)`` (SQuAD's
    ``metric_max_over_ground_truths``). Raises DataError when ``golds`` is empty."""
    if isinstance(golds, str):
        golds = [golds]
    if len(golds) == 0:
        raise DataError("a question has no gold answers, so it cannot be scored")
    return max(float(metric(prediction, gold, language)) for gold in golds)


# --- classification ----------------------------------------------------------


def classification_scores(
    preds: Sequence[int], golds: Sequence[int], labels: Sequence[int] = (0, 1, 2)
) -> dict[str, Any]:
    """Accuracy and macro F1 of predicted class ids against gold ids.

    ``accuracy = #(pred == gold) / n``; ``macro_f1 = mean over labels of F1_k`` with
    ``F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k)`` (sklearn ``f1_score(average="macro",
    labels=labels, zero_division=0)``). Every label in ``labels`` counts, so a label that is
    neither predicted nor gold scores F1 0 and lowers the mean; predictions outside ``labels``
    count as wrong. Returns ``{"accuracy", "macro_f1", "per_class_f1": {label: F1}, "n"}``.
    """
    from sklearn.metrics import f1_score

    preds = [int(p) for p in preds]
    golds = [int(g) for g in golds]
    if len(preds) != len(golds):
        raise DataError(f"{len(preds)} predictions but {len(golds)} gold labels")
    if not golds:
        raise DataError("no examples to score")
    labels = [int(label) for label in labels]
    per_class = f1_score(golds, preds, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": float(np.mean(np.asarray(preds) == np.asarray(golds))),
        "macro_f1": float(np.mean(per_class)),
        "per_class_f1": {label: float(f1) for label, f1 in zip(labels, per_class)},
        "n": len(golds),
    }


# --- statistics across languages ----------------------------------------------


def paired_test(
    base: Mapping[str, float], condition: Mapping[str, float], anchor: str | None
) -> dict[str, Any]:
    """Summary of a condition against the base model over the non-anchor languages.

    Languages: those in both mappings, minus ``anchor``, sorted. With ``b_i``, ``c_i`` the
    scores and ``d_i = c_i - b_i``: ``mean_* = Σx_i / n``; ``std_* = sqrt(Σ(x_i - mean)² /
    (n - 1))`` (sample std, ``ddof=1``: the spread of languages as a sample, like the σ rows
    of the paper's tables); ``t = mean(d) / (std(d) / sqrt(n))`` and its two-sided p-value,
    i.e. ``scipy.stats.ttest_rel(condition, base)`` (t > 0 means the condition scores higher).

    Returns ``{"languages", "n", "mean_base", "mean_condition", "mean_delta", "std_base",
    "std_condition", "std_delta", "t", "p"}``. With fewer than 2 languages the stds, t and p
    are NaN (means are NaN when no language is left); no warning is raised. Identical deltas
    (zero variance) give whatever scipy gives (NaN for all-zero deltas, ±inf t otherwise).
    """
    from scipy import stats

    languages = sorted((set(base) & set(condition)) - {anchor})
    b = np.array([float(base[lang]) for lang in languages], dtype=np.float64)
    c = np.array([float(condition[lang]) for lang in languages], dtype=np.float64)
    d = c - b
    n = len(languages)
    nan = math.nan

    def mean(x: np.ndarray) -> float:
        return float(np.mean(x)) if n else nan

    def std(x: np.ndarray) -> float:
        return float(np.std(x, ddof=1)) if n >= 2 else nan

    t = p = nan
    if n >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ttest_rel(c, b)
        t, p = float(result.statistic), float(result.pvalue)
    return {
        "languages": languages,
        "n": n,
        "mean_base": mean(b),
        "mean_condition": mean(c),
        "mean_delta": mean(d),
        "std_base": std(b),
        "std_condition": std(c),
        "std_delta": std(d),
        "t": t,
        "p": p,
    }


# --- retrieval -----------------------------------------------------------------


def _as_matrix(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().to("cpu").double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise DataError(f"{name} must be a 2-D array [N, d], got shape {tuple(arr.shape)}")
    return arr


def retrieval_ranks(queries: Any, keys: Any) -> np.ndarray:
    """1-based rank of each query's own key (query ``i`` belongs with key ``i``).

    Similarity is cosine, ``s_ij = q_i·k_j / (|q_i| |k_j|)`` (0 for a zero vector), computed in
    float64. ``rank_i = 1 + #{j != i : s_ij >= s_ii}``: ties count against the query, so a
    key that cannot be told apart from another is not a hit. Accepts numpy arrays or torch
    tensors of shape ``[N, d]`` (same shape for both).
    """
    q = _as_matrix(queries, "queries")
    k = _as_matrix(keys, "keys")
    if q.shape != k.shape:
        raise DataError(
            f"queries and keys must have the same shape [N, d], got {q.shape} and {k.shape}"
        )
    if q.shape[0] == 0:
        raise DataError("no queries to retrieve")

    def unit(x: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)

    sims = unit(q) @ unit(k).T
    own = np.diag(sims)[:, None]
    beats = sims >= own
    np.fill_diagonal(beats, False)
    return 1 + beats.sum(axis=1)


def retrieval_top1(queries: Any, keys: Any) -> float:
    """Top-1 accuracy: the fraction of queries whose own key is the unique most similar one,
    ``mean_i [rank_i == 1]`` with ranks from :func:`retrieval_ranks`."""
    return float(np.mean(retrieval_ranks(queries, keys) == 1))
