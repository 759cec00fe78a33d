"""The result files' schemas (clas_graph/records/results.py): what the writers build passes them, what a reader
gets back is what was written, and a file of another version or shape is refused in one line naming it."""

from __future__ import annotations

import json

import pytest

from clas_graph.errors import DataError
from clas_graph.eval.metrics import paired_test
from clas_graph.records import MetricsDocument, UnitRecord, read_record, strict_json, validated


def metrics_document() -> dict:
    base = {"en": 50.0, "de": 40.0, "fr": 30.0}
    clas = {"en": 50.0, "de": 45.0, "fr": 31.0}
    summary = {name: strict_json(paired_test(base, scores, "en")) for name, scores in (("base", base),
                                                                                       ("clas", clas))}
    return {"schema_version": 1, "spec_name": "t", "anchor": "en", "conditions": ["base", "clas"],
            "tasks": {"xnli": {"kind": "xnli", "primary": "accuracy", "higher_is_better": True,
                               "languages": ["en", "de", "fr"],
                               "per_language": {"base": {k: {"accuracy": v, "n": 3} for k, v in base.items()},
                                                "clas": {k: {"accuracy": v, "n": 3} for k, v in clas.items()}},
                               "delta": {"base": {k: 0.0 for k in base}, "clas": {k: clas[k] - base[k] for k in base}},
                               "summary": summary}}}


def test_the_paired_test_record_has_every_key_the_test_returns():
    document = metrics_document()
    assert validated(MetricsDocument, document) is document  # the writer's dict, unchanged
    record = MetricsDocument.model_validate(document).tasks["xnli"].summary["clas"]
    assert record.mean_delta == pytest.approx(3.0) and record.n == 2 and record.languages == ["de", "fr"]


def test_a_metrics_file_reads_back_as_written(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics_document()))
    read = read_record(MetricsDocument, path).model_dump(mode="json", exclude_unset=True)
    assert read == metrics_document()


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.update(schema_version=7), "schema_version"),
    (lambda d: d["tasks"]["xnli"].update(higher_is_better="maybe"), "tasks.xnli.higher_is_better"),
    (lambda d: d["tasks"]["xnli"]["summary"]["clas"].pop("p"), "tasks.xnli.summary.clas.p"),
    (lambda d: d.update(extra_key=1), "extra_key"),
])
def test_a_metrics_file_of_another_shape_is_refused_in_one_line(tmp_path, edit, field):
    document = metrics_document()
    edit(document)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(document))
    with pytest.raises(DataError) as error:
        read_record(MetricsDocument, path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and field in message and "Fix:" in message


def test_a_truncated_file_is_refused_too(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics_document())[:100])
    with pytest.raises(DataError, match="damaged"):
        read_record(MetricsDocument, path)


def test_a_writer_cannot_write_what_its_schema_refuses():
    with pytest.raises(ValueError):
        validated(UnitRecord, {"task": "xnli", "language": "de", "condition": "clas"})  # no metrics
    unit = {"task": "xnli", "language": "de", "condition": "clas", "metrics": {"accuracy": 40.0},
            "samples": {"sha256": "0" * 64, "rows": 3}}
    assert validated(UnitRecord, unit) is unit
