"""`anchor: {kind: detected}`: each row's language comes from the offline identifier, checked on a mixed batch
against the same rows run with hand-written languages."""

from __future__ import annotations

import pytest
from tiny import spec_data

import clas_graph
from clas_graph.data.bible import ParallelSample
from clas_graph.spec.load import validate_data
from clas_graph.tasks.base import task_runners

LANGS = ["en", "de", "fr", "zh"]
# Labelled "de", but the texts are: German, English (mislabelled), French (mislabelled), Italian (not a spec language)
TEXTS = ["Der Himmel ist heute blau und die Kinder spielen draußen im Garten.",
         "The sky is blue today and the children are playing outside in the garden.",
         "Le ciel est bleu aujourd'hui et les enfants jouent dehors dans le jardin.",
         "Il cielo è azzurro oggi e i bambini giocano fuori nel giardino."]


def spec(anchor):
    return validate_data({
        **spec_data(LANGS), "anchor": anchor,
        "interventions": [{"kind": "scale", "id": "boost", "layers": [1, 2], "factor": 3.0,
                           "neurons": {"neurons": {1: list(range(0, 64, 3)), 2: list(range(1, 64, 2))}}}],
        "tasks": [{"kind": "lm_loss"}]})


@pytest.fixture(scope="module")
def model(tiny_lm):
    return tiny_lm("llama")


def run_lm_loss(the_spec, model):
    (runner,) = task_runners(the_spec)
    runner._cache["samples"] = [ParallelSample(f"s{i}", {"de": text}) for i, text in enumerate(TEXTS)]
    plan = clas_graph.compile_plan(the_spec, model, "boost")
    return runner.run(model, plan, "de"), plan


@pytest.mark.parametrize("unknown,used", [("anchor", ["de", "en", "fr", "en"]), ("label", ["de", "en", "fr", "de"])])
def test_detected_languages_drive_the_rows(model, unknown, used):
    (rows, metrics), plan = run_lm_loss(spec({"kind": "detected", "language": "en", "unknown": unknown}), model)
    assert [r["detected_language"] for r in rows] == ["de", "en", "fr", "it"]
    assert [r["labelled_language"] for r in rows] == ["de"] * 4
    assert [r["row_language"] for r in rows] == used
    # the same batch run with the languages written by hand
    nll, counts = clas_graph.backends.token_nll(model, plan, TEXTS, used)
    assert [r["nll"] for r in rows] == [round(float(v), 6) for v in nll]
    # rows used as the anchor are untouched; the others are modified
    base, _ = clas_graph.backends.token_nll(model, None, TEXTS, used)
    for i, lang in enumerate(used):
        assert (abs(float(nll[i] - base[i])) < 1e-4) == (lang == "en")


def test_fixed_anchor_keeps_labels(model):
    (rows, _), plan = run_lm_loss(spec({"kind": "fixed", "language": "en"}), model)
    assert "detected_language" not in rows[0]
    nll, _ = clas_graph.backends.token_nll(model, plan, TEXTS, ["de"] * 4)
    assert [r["nll"] for r in rows] == [round(float(v), 6) for v in nll]
    base, _ = clas_graph.backends.token_nll(model, None, TEXTS, ["de"] * 4)
    assert bool((nll - base).abs().min() > 1e-4)  # every row is modified: all labelled non-anchor
