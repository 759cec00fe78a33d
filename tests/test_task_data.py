"""Tests for clas_graph.data.xnli, clas_graph.data.xquad and clas_graph.data.templates: local XNLI/XQuAD files,
seeded parallel subsets, prompts, errors."""

from __future__ import annotations

import json
import random
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clas_graph.data.templates import render, template_fields
from clas_graph.data.xnli import XNLI_PROMPT, XnliExample, load_xnli, xnli_prompt
from clas_graph.data.xquad import XQUAD_PROMPT, QaExample, load_xquad_qa, xquad_prompt
from clas_graph.errors import DataError

N = 12  # rows per language


def _xnli_rows(lang: str) -> list[dict]:
    return [
        {"premise": f"{lang} premise {i}", "hypothesis": f"{lang} hypothesis {i}", "label": i % 3}
        for i in range(N)
    ]


def _write_jsonl(write, name: str, rows: list[dict]):
    return write(name, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _write_delimited(write, name: str, rows: list[dict], sep: str):
    header = sep.join(rows[0])
    lines = [sep.join(str(value) for value in row.values()) for row in rows]
    return write(name, "\n".join([header, *lines]) + "\n")


# --- XNLI -----------------------------------------------------------------------------------


def test_xnli_same_rows_across_languages_and_formats(write):
    files = {
        "de": str(_write_jsonl(write, "de.jsonl", _xnli_rows("de"))),
        "fr": str(_write_delimited(write, "fr.csv", _xnli_rows("fr"), ",")),
        "sw": str(_write_delimited(write, "sw.tsv", _xnli_rows("sw"), "\t")),
    }
    expected = sorted(random.Random(7).sample(range(N), 5))
    by_lang = {lang: load_xnli(lang, limit=5, seed=7, data_files=files) for lang in files}
    for lang, examples in by_lang.items():
        assert [ex.id for ex in examples] == [f"test-{i}" for i in expected]
        # Each example is that row of that language's file.
        assert examples[0] == XnliExample(
            f"test-{expected[0]}",
            f"{lang} premise {expected[0]}",
            f"{lang} hypothesis {expected[0]}",
            expected[0] % 3,
        )
        assert all(type(ex.label) is int for ex in examples)
    other_seed = load_xnli("de", limit=5, seed=8, data_files=files)
    assert [ex.id for ex in other_seed] != [ex.id for ex in by_lang["de"]]
    # No limit: every row in file order; the split names the ids.
    full = load_xnli("fr", split="validation", data_files=files)
    assert [ex.id for ex in full] == [f"validation-{i}" for i in range(N)]


def test_xnli_parquet_base_dir_label_names_and_tsv_quotes(write, tmp_path):
    rows = _xnli_rows("ru")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ru.parquet")
    assert load_xnli("ru", data_files={"ru": "ru.parquet"}, base_dir=tmp_path) == load_xnli(
        "ru", data_files={"ru": str(_write_jsonl(write, "ru.jsonl", rows))}
    )
    # Label names, quote marks in a TSV (no quoting), a number-only premise.
    path = write(
        "tr.tsv",
        'premise\thypothesis\tlabel\n'
        'He said "hi"\t"Quoted" start\tcontradiction\n'
        '1990\tA year.\tEntailment\n',
    )
    a, b = load_xnli("tr", data_files={"tr": str(path)})
    assert (a.premise, a.hypothesis, a.label) == ('He said "hi"', '"Quoted" start', 2)
    assert (b.premise, b.label) == ("1990", 0)


def test_xnli_missing_column(write):
    rows = [{"premise": "p", "label": 0, "extra": 1}]
    path = _write_jsonl(write, "de.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_xnli("de", data_files={"de": str(path)})
    message = str(info.value)
    assert "'hypothesis'" in message and "'premise'" not in message.split("found")[0]
    assert "'de'" in message and str(path) in message
    assert "premise, hypothesis, label" in message  # the fix names the hub's columns


def test_xnli_bad_values(write):
    bad_label = _write_jsonl(write, "a.jsonl", [{"premise": "p", "hypothesis": "h", "label": 3}])
    with pytest.raises(DataError, match=r"row 0 has label 3"):
        load_xnli("de", data_files={"de": str(bad_label)})
    no_text = _write_jsonl(write, "b.jsonl", [{"premise": None, "hypothesis": "h", "label": 0}])
    with pytest.raises(DataError, match=r"row 0 has no 'premise'"):
        load_xnli("de", data_files={"de": str(no_text)})
    broken = write("c.jsonl", '{"premise": "p", "hypothesis": \n')
    with pytest.raises(DataError, match="could not be read as json") as info:
        load_xnli("de", data_files={"de": str(broken)})
    assert str(broken) in str(info.value)


def test_xnli_file_errors(write, tmp_path):
    path = str(_write_jsonl(write, "de.jsonl", _xnli_rows("de")))
    with pytest.raises(DataError, match=r"no file for language 'fr' \(has: de\)"):
        load_xnli("fr", data_files={"de": path})
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match="not found") as info:
        load_xnli("de", data_files={"de": str(missing)})
    assert str(missing) in str(info.value)
    with pytest.raises(DataError, match="unsupported extension '.txt'"):
        load_xnli("de", data_files={"de": str(write("de.txt", "x"))})
    with pytest.raises(DataError, match=f"has {N} rows, fewer than limit={N + 1}"):
        load_xnli("de", limit=N + 1, data_files={"de": path})
    with pytest.raises(DataError, match="limit must be a positive integer"):
        load_xnli("de", limit=0, data_files={"de": path})


def test_hub_offline_and_unknown_language():
    # tests/conftest.py sets HF_HUB_OFFLINE=1. An id that is never cached fails for sure.
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        load_xnli("de", hub_id="clas-graph-tests/no-such-xnli")
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "hub" in message and "'de'" in message and "data_files" in message
    assert "Traceback" not in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(DataError, match=r"XQuAD.*'zh'.*xquad\.zh.*data_files"):
        load_xquad_qa("zh", hub_id="clas-graph-tests/no-such-xquad")
    # The default hub ids know their languages: no network needed to reject a bad one.
    with pytest.raises(DataError, match=r"no language 'DE'\. Did you mean 'de'\?"):
        load_xnli("DE")
    with pytest.raises(DataError, match=r"XQuAD on the hub has no language 'bg'"):
        load_xquad_qa("bg")


# --- XQuAD -----------------------------------------------------------------------------------

IDS = [f"q{i:02d}" for i in (5, 1, 9, 3, 7, 0, 8, 2)]  # file order is not id order


def _qa_rows(lang: str) -> list[dict]:
    return [
        {
            "id": qid,
            "context": f"{lang} context {n // 3}",  # three questions per paragraph
            "question": f"{lang} question {qid}",
            "answers": {"text": [f"{lang} answer {qid}"], "answer_start": [0]},
        }
        for n, qid in enumerate(IDS)
    ]


def _squad_nested(rows: list[dict]) -> dict:
    """SQuAD layout: consecutive rows with the same context share a paragraph."""
    paragraphs: list[dict] = []
    for row in rows:
        if not paragraphs or paragraphs[-1]["context"] != row["context"]:
            paragraphs.append({"context": row["context"], "qas": []})
        answers = [
            {"text": t, "answer_start": s}
            for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])
        ]
        paragraphs[-1]["qas"].append(
            {"id": row["id"], "question": row["question"], "answers": answers}
        )
    return {"version": "1.0", "data": [{"title": "T", "paragraphs": paragraphs}]}


def test_xquad_nested_json_jsonl_and_parquet_agree(write, tmp_path):
    rows = _qa_rows("es")
    rows[2]["answers"] = {"text": ["es two", "es answers"], "answer_start": [0, 3]}
    nested = write("es.json", json.dumps(_squad_nested(rows), ensure_ascii=False))
    flat = _write_jsonl(write, "es.jsonl", rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "es.parquet")
    from_nested = load_xquad_qa("es", data_files={"es": str(nested)})
    assert from_nested == load_xquad_qa("es", data_files={"es": str(flat)})
    assert from_nested == load_xquad_qa("es", data_files={"es": "es.parquet"}, base_dir=tmp_path)
    assert [ex.id for ex in from_nested] == IDS  # file order
    assert from_nested[2] == QaExample(
        "q09", "es context 0", "es question q09", ("es two", "es answers")
    )


def test_xquad_same_ids_across_languages(write):
    files = {
        "en": str(_write_jsonl(write, "en.jsonl", _qa_rows("en"))),
        "vi": str(write("vi.json", json.dumps(_squad_nested(_qa_rows("vi")), ensure_ascii=False))),
    }
    chosen = set(random.Random(3).sample(sorted(IDS), 3))
    en = load_xquad_qa("en", limit=3, seed=3, data_files=files)
    vi = load_xquad_qa("vi", limit=3, seed=3, data_files=files)
    assert [ex.id for ex in en] == [ex.id for ex in vi] == [q for q in IDS if q in chosen]
    assert [ex.question for ex in vi] == [f"vi question {q}" for q in IDS if q in chosen]
    # The selection is by id, not position: reversing a file keeps the same questions.
    files["en"] = str(_write_jsonl(write, "en_rev.jsonl", _qa_rows("en")[::-1]))
    rev = load_xquad_qa("en", limit=3, seed=3, data_files=files)
    assert sorted(ex.id for ex in rev) == sorted(chosen)


def test_xquad_answer_layouts(write):
    rows = [
        {"id": "a", "context": "c", "question": "q", "answers": [{"text": "x", "answer_start": 0}]},
        {"id": "b", "context": "c", "question": "q", "answers": ["y", "z"]},
    ]
    path = _write_jsonl(write, "de.jsonl", rows)
    examples = load_xquad_qa("de", data_files={"de": str(path)})
    assert [ex.answers for ex in examples] == [("x",), ("y", "z")]


def test_xquad_errors(write):
    rows = _qa_rows("de")
    no_answers = [{k: v for k, v in row.items() if k != "answers"} for row in rows]
    path = _write_jsonl(write, "a.jsonl", no_answers)
    with pytest.raises(DataError, match=r"'de' lacks column\(s\) 'answers'") as info:
        load_xquad_qa("de", data_files={"de": str(path)})
    assert str(path) in str(info.value) and "id, context, question, answers" in str(info.value)

    dup = _write_jsonl(write, "b.jsonl", rows + rows[:1])
    with pytest.raises(DataError, match="id 'q05' more than once"):
        load_xquad_qa("de", data_files={"de": str(dup)})

    empty = [dict(rows[0], answers={"text": [], "answer_start": []})]
    with pytest.raises(DataError, match="question 'q05' has no answer text"):
        load_xquad_qa("de", data_files={"de": str(_write_jsonl(write, "c.jsonl", empty))})

    nested = _squad_nested(rows)
    del nested["data"][0]["paragraphs"][1]["qas"][0]["id"]
    path = write("d.json", json.dumps(nested))
    with pytest.raises(DataError, match=r"data\[0\]\.paragraphs\[1\]\.qas\[0\] lacks key 'id'"):
        load_xquad_qa("de", data_files={"de": str(path)})


# --- prompts ----------------------------------------------------------------------------------


def test_default_prompts():
    assert template_fields(XNLI_PROMPT) == ["premise", "hypothesis"]
    assert template_fields(XQUAD_PROMPT) == ["context", "question"]
    assert XNLI_PROMPT.endswith("Answer:") and XQUAD_PROMPT.endswith("Answer:")
    for meaning in ("0 for entailment", "1 for neutral", "2 for contradiction"):
        assert meaning in XNLI_PROMPT
    text = xnli_prompt(XnliExample("test-0", "A {cat} sat.", "It sat.", 0))
    assert text.startswith("Premise: A {cat} sat.\nHypothesis: It sat.\n")  # braces in data kept
    qa = xquad_prompt(QaExample("q", "Paris is big.", "What is big?", ("Paris",)))
    assert qa == (
        "Answer the question using a short span from the context.\n\n"
        "Context: Paris is big.\nQuestion: What is big?\nAnswer:"
    )


def test_render_errors():
    assert render("{a} and {{literal}}", a="x") == "x and {literal}"
    unknown = r"unknown placeholder \{premis\}.*use only \{premise\}, \{hypothesis\}"
    with pytest.raises(DataError, match=unknown):
        render("P: {premis}", premise="p", hypothesis="h")
    with pytest.raises(DataError, match=r"unknown placeholder \{width\}"):
        render("{premise:{width}}", premise="p")
    with pytest.raises(DataError, match="malformed"):
        render("P: {premise", premise="p")
    with pytest.raises(DataError, match="positional placeholder"):
        render("P: {}", premise="p")
