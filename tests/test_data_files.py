"""Tests for clas_graph.data.files: the one reader of local data files, as the task loaders and corpora use it.

Each loader keeps what it accepts, its error messages and its cell values; where they differ (extensions,
typed or text cells, strict or lenient SQuAD, how errors name the file) one test pins each side.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clas_graph.data.bible import ParallelSample
from clas_graph.data.corpora import load_file_parallel, load_xquad_parallel
from clas_graph.data.files import (
    CORPUS_EXTENSIONS,
    FORMATS,
    TASK_EXTENSIONS,
    local_file,
    read_columns,
    require_columns,
)
from clas_graph.data.xnli import XnliExample, load_xnli
from clas_graph.data.xquad import QaExample, load_xquad_qa
from clas_graph.errors import DataError

XNLI_ROWS = [
    {"premise": "p0", "hypothesis": "h0", "label": 0},
    {"premise": "1990", "hypothesis": "h1", "label": 2},
]
TABLE_ROWS = [
    {"id": "007", "en": "Hi", "de": "Hallo"},
    {"id": "b", "en": "1", "de": "2.5"},
]
QA_ROWS = [
    {"id": "q1", "context": "c1", "question": "Q1", "answers": {"text": ["a"], "answer_start": [0]}},
    {"id": "q2", "context": "c1", "question": "Q2", "answers": {"text": ["b"], "answer_start": [0]}},
]
ALL_SUFFIXES = [*FORMATS, ".txt", ""]


def write_rows(path, rows):
    """``rows`` in the format ``path``'s suffix names (any case)."""
    fmt = FORMATS[path.suffix.lower()]
    if fmt == "json" and path.suffix.lower() == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        lines = [sep.join(rows[0]), *(sep.join(str(v) for v in row.values()) for row in rows)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def squad_document(rows, drop=None):
    qas = [{k: v for k, v in {"id": r["id"], "question": r["question"],
            "answers": [{"text": t, "answer_start": 0} for t in r["answers"]["text"]]}.items() if k != drop}
           for r in rows]
    return {"version": "1", "data": [{"title": "t", "paragraphs": [{"context": rows[0]["context"], "qas": qas}]}]}


# --- what each loader accepts -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ALL_SUFFIXES)
def test_task_extensions_accepted_and_refused(tmp_path, suffix):
    path = tmp_path / f"de{suffix}"
    if suffix in TASK_EXTENSIONS:
        write_rows(path, XNLI_ROWS)
        assert load_xnli("de", data_files={"de": str(path)}) == [
            XnliExample("test-0", "p0", "h0", 0), XnliExample("test-1", "1990", "h1", 2)
        ]
        return
    path.write_text("premise,hypothesis,label\np,h,0\n")
    with pytest.raises(DataError) as info:
        load_xnli("de", data_files={"de": str(path)})
    assert f"XNLI file for language 'de' has an unsupported extension {suffix or '(none)'!r}" in str(info.value)
    assert "use one of .csv, .json, .jsonl, .ndjson, .parquet, .pq, .tsv" in str(info.value)


@pytest.mark.parametrize("suffix", ALL_SUFFIXES)
def test_corpus_extensions_accepted_and_refused(tmp_path, suffix):
    path = tmp_path / f"pairs{suffix}"
    if suffix in CORPUS_EXTENSIONS:
        write_rows(path, TABLE_ROWS)
        assert load_file_parallel(path, ["en", "de"], id_column="id", limit=2, seed=None) == [
            ParallelSample("007", {"en": "Hi", "de": "Hallo"}), ParallelSample("b", {"en": "1", "de": "2.5"})
        ]
        return
    path.write_text("id,en,de\na,Hi,Hallo\n")
    with pytest.raises(DataError) as info:
        load_file_parallel(path, ["en"], limit=1)
    assert f"unsupported file type {suffix or '(none)'!r}" in str(info.value)
    assert "use one of .json, .jsonl, .csv, .parquet" in str(info.value)


def test_upper_case_suffixes_are_accepted_by_both(tmp_path):
    xnli = write_rows(tmp_path / "de.CSV", XNLI_ROWS)
    assert [ex.premise for ex in load_xnli("de", data_files={"de": str(xnli)})] == ["p0", "1990"]
    table = write_rows(tmp_path / "pairs.Jsonl", TABLE_ROWS)
    assert [s.id for s in load_file_parallel(table, ["en"], id_column="id", limit=2, seed=None)] == ["007", "b"]


def test_json_document_needs_a_lower_case_suffix_only_for_corpora(tmp_path):
    path = tmp_path / "rows.JSON"
    path.write_text(json.dumps([{"id": "a", "en": "Hi", "premise": "p", "hypothesis": "h", "label": 1}], indent=2))
    assert load_xnli("de", data_files={"de": str(path)})[0].label == 1  # datasets reads any JSON
    with pytest.raises(DataError, match=r"line 1 is not valid JSON"):
        load_file_parallel(path, ["en"], limit=1)  # corpora read anything but ".json" as JSON lines


def test_missing_file_wording(tmp_path):
    with pytest.raises(DataError, match=r"XNLI file for language 'de' not found") as info:
        load_xnli("de", data_files={"de": "nope.csv"}, base_dir=tmp_path)
    assert str(tmp_path / "nope.csv") in str(info.value) and "data_files" in str(info.value)
    with pytest.raises(DataError, match=r"file .*nope\.csv does not exist"):
        load_file_parallel("nope.csv", ["en"], limit=1, base_dir=tmp_path)


def test_local_file_resolves_relative_paths_and_checks_after_existence(tmp_path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    assert local_file("a.csv", tmp_path, (".csv",)) == tmp_path / "a.csv"
    assert local_file(tmp_path / "a.csv", "/elsewhere", (".csv",)) == tmp_path / "a.csv"
    with pytest.raises(DataError, match="does not exist"):
        local_file("b.txt", tmp_path, (".csv",))  # a missing file is reported before its extension


# --- typed (task loaders) and text (corpora) cells ----------------------------------------------------------


def test_typed_cells_parse_numbers_and_empty_is_none(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,en,de\n007,NA,\n")
    assert read_columns(path, typed=True) == {"id": [7], "en": [None], "de": [None]}
    with pytest.raises(DataError, match=r"row 0 has no 'hypothesis'"):
        load_xnli("de", data_files={"de": str(write_rows(tmp_path / "x.csv", [
            {"premise": "p", "hypothesis": "", "label": 0}]))})


def test_text_cells_keep_what_is_written(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,en,de\n007,NA,\n")
    assert read_columns(path, typed=False) == {"id": ["007"], "en": ["NA"], "de": [""]}
    with pytest.raises(DataError, match=r"sample '007' \(row 0\) has an empty 'de' cell"):
        load_file_parallel(path, ["en", "de"], id_column="id", limit=1)


def test_tsv_is_typed_with_quote_marks_as_text(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text('premise\thypothesis\tlabel\nHe said "hi"\t"Q" x\tcontradiction\n')
    assert read_columns(path, typed=True) == {
        "premise": ['He said "hi"'], "hypothesis": ['"Q" x'], "label": ["contradiction"]
    }


def test_json_records_without_a_key_give_none(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"en": "a"}\n{"de": "b"}\n')
    assert read_columns(path, typed=False) == {"en": ["a", None], "de": [None, "b"]}


# --- SQuAD-nested JSON: strict (task loader) and lenient (corpora) ---------------------------------------


def test_squad_json_reads_the_same_in_both_modes(tmp_path):
    path = tmp_path / "de.json"
    path.write_text(json.dumps(squad_document(QA_ROWS)))
    expected = {"id": ["q1", "q2"], "context": ["c1", "c1"], "question": ["Q1", "Q2"],
                "answers": [[{"text": "a", "answer_start": 0}], [{"text": "b", "answer_start": 0}]]}
    assert read_columns(path, typed=True, squad="strict") == expected
    assert read_columns(path, typed=False, squad="lenient") == expected
    assert load_xquad_qa("de", data_files={"de": str(path)})[1] == QaExample("q2", "c1", "Q2", ("b",))


def test_squad_missing_key_strict_refuses_lenient_reads_none(tmp_path):
    path = tmp_path / "de.json"
    path.write_text(json.dumps(squad_document(QA_ROWS, drop="answers")))
    with pytest.raises(DataError, match=r"XQuAD data for language 'de': data\[0\]\.paragraphs\[0\]\.qas\[0\] "
                                        r"lacks key 'answers'"):
        load_xquad_qa("de", data_files={"de": str(path)})
    assert read_columns(path, typed=False, squad="lenient")["answers"] == [None, None]
    samples = load_xquad_parallel(["de"], field="question", data_files={"de": str(path)}, limit=2, seed=None)
    assert [s.texts["de"] for s in samples] == ["Q1", "Q2"]


def test_data_key_holding_records(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"data": TABLE_ROWS}))
    with pytest.raises(DataError, match=r"data\[0\] lacks key 'paragraphs'"):
        read_columns(path, typed=True, squad="strict", subject="XQuAD data for language 'de'")
    assert read_columns(path, typed=False, squad="lenient") == {
        "id": ["007", "b"], "en": ["Hi", "1"], "de": ["Hallo", "2.5"]
    }


# --- error wording --------------------------------------------------------------------------------------


def test_unreadable_file_wording(tmp_path):
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"en": "ok"}\n{"en": oops}\n')
    with pytest.raises(DataError, match=r"XNLI file for language 'de' could not be read as json: "):
        load_xnli("de", data_files={"de": str(broken)})
    with pytest.raises(DataError, match=r"line 2 is not valid JSON"):
        load_file_parallel(broken, ["en"], limit=1)
    bad = tmp_path / "b.parquet"
    bad.write_text("not parquet")
    with pytest.raises(DataError, match=r"XNLI file for language 'de' could not be read as parquet: "):
        load_xnli("de", data_files={"de": str(bad)})
    with pytest.raises(DataError, match=r"cannot read parquet file \("):
        load_file_parallel(bad, ["en"], limit=1)
    lists = tmp_path / "l.jsonl"
    lists.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=r"expected JSON objects \(one record per line\) or SQuAD JSON"):
        load_file_parallel(lists, ["en"], limit=1)


def test_require_columns_wording():
    with pytest.raises(DataError) as info:
        require_columns(["a"], ["b", "c"], where="f", fix="x", subject="XNLI data for language 'de'")
    assert "XNLI data for language 'de' lacks column(s) 'b', 'c' (found: a)" in str(info.value)
    with pytest.raises(DataError) as info:
        require_columns(["a"], ["b", "c"], where="f", fix="x")
    assert "missing column 'b' (columns: a)" in str(info.value)
    with pytest.raises(DataError, match=r"\(columns: none\)"):
        require_columns([], ["b"], where="f", fix="x")
    require_columns(["a", "b"], ["b"], where="f", fix="x")
