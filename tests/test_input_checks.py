"""Inputs that only the task's texts reveal are checked for every unit before any unit runs: a position selector
that does not fit the last language's prompts stops the run before the first unit's model work, naming the field,
and units finished earlier are skipped by the check (resume)."""

from __future__ import annotations

import json

import pytest
from tiny import spec_data

import clas_graph
from clas_graph.errors import DataError
from clas_graph.execution.answers import check_requests
from clas_graph.execution.readouts import ContinuationLogprob, LastLogits
from clas_graph.execution.requests import Request
from clas_graph.runners.evaluate import evaluate, unit_path
from clas_graph.spec.load import validate_data
from clas_graph.tasks.xnli import XnliRunner

LABELS = ["0", "1", "2"]


def xnli_file(write, lang: str, words: int) -> str:
    rows = [{"premise": " ".join(["word"] * words) + f" {i}", "hypothesis": f"{lang} {i}", "label": i % 3}
            for i in range(3)]
    return str(write(f"{lang}.jsonl", "".join(json.dumps(row) + "\n" for row in rows)))


def prompt_lengths(model, spec) -> dict[str, int]:
    """The shortest prompt per language, in tokens (as the XNLI runner builds them)."""
    from clas_graph.data.templates import render

    task = spec.tasks[0]
    return {lang: min(len(model.tokenizer(render(task.prompt, premise=e.premise, hypothesis=e.hypothesis))["input_ids"])
                      for e in task.items(lang, "test")) for lang in spec.languages}


@pytest.fixture
def setup(tiny_lm, write):
    model = tiny_lm("llama")
    files = {"en": xnli_file(write, "en", 12), "de": xnli_file(write, "de", 12), "fr": xnli_file(write, "fr", 1)}

    def make(index: int):
        return validate_data(spec_data(["en", "de", "fr"], interventions=[
            {"kind": "scale", "id": "boost", "layers": [1], "factor": 2.0, "neurons": {"neurons": {1: [3, 4]}},
             "rows": "all", "positions": [index]}],
            tasks=[{"kind": "xnli", "data_files": files, "limit": None, "labels": LABELS}]))

    lengths = prompt_lengths(model, make(0))
    assert lengths["fr"] < lengths["de"] - 1
    return model, make, lengths


def test_a_selector_outside_the_last_languages_prompts_stops_the_run_before_any_unit(setup, tmp_path):
    model, make, lengths = setup
    spec = make(lengths["fr"] + 1)  # fits every en and de prompt, no fr prompt
    plans = clas_graph.compile_plans(spec, model)
    with pytest.raises(DataError, match=r"interventions\[0\]\.positions: token index .* outside.*fr") as error:
        evaluate(spec, model, plans, tmp_path)
    assert "fr" in str(error.value)
    assert not list(tmp_path.rglob("*.json")), "no unit may run before the inputs of every unit are checked"


def test_fitting_selectors_run_every_unit_and_finished_units_are_not_rechecked(setup, tmp_path, monkeypatch):
    model, make, lengths = setup
    spec = make(lengths["fr"] - 1)
    plans = clas_graph.compile_plans(spec, model)
    document = evaluate(spec, model, plans, tmp_path)
    assert set(document["tasks"]["xnli"]["per_language"]["boost"]) == {"en", "de", "fr"}
    assert unit_path(tmp_path, "xnli", "fr", "boost").is_file()
    checked = []
    original = XnliRunner.check
    monkeypatch.setattr(XnliRunner, "check", lambda self, unit: checked.append(unit.language) or original(self, unit))
    evaluate(spec, model, plans, tmp_path)
    assert checked == []  # every unit finished: nothing to check, nothing rerun
    unit_path(tmp_path, "xnli", "fr", "boost").unlink()
    evaluate(spec, model, plans, tmp_path)
    assert checked == ["fr"]  # only the unfinished unit is checked (and rerun)


def test_requests_are_checked_without_running_the_model(setup, monkeypatch):
    """The check is a function of the requests, the tokenizer and the plans: no trace runs."""
    model, make, lengths = setup
    plan = clas_graph.compile_plan(make(lengths["fr"] + 1), model, "boost")

    def no_model(*args, **kwargs):
        raise AssertionError("a check ran the model")

    monkeypatch.setattr("clas_graph.execution.local.LocalExecutor.call", no_model)
    monkeypatch.setattr("clas_graph.execution.local.LocalExecutor.readouts", no_model)
    short = Request("prompts", ("a",), ("fr",), texts=("un",), readout=LastLogits())
    with pytest.raises(DataError, match="outside"):
        check_requests(model.tokenizer, {"boost": plan}, [short])
    check_requests(model.tokenizer, {"boost": plan}, [Request("prompts", ("a",), ("en",), texts=("word " * 200,),
                                                              readout=LastLogits())])
    monkeypatch.undo()
    assert clas_graph.forward(model, plan, ["word " * 200], ["en"]).shape[0] == 1


def test_token_rows_are_checked_too(setup):
    """lm-evaluation-harness requests arrive as token ids: their selectors are checked on the rows' lengths."""
    from clas_graph.execution.api import read_tokens_many

    model, make, _ = setup
    plans = {"boost": clas_graph.compile_plan(make(5), model, "boost")}
    with pytest.raises(DataError, match=r"interventions\[0\]\.positions: token index 5 .* outside a text of 4 tokens"):
        read_tokens_many(model, plans, [[5, 6, 7, 8]], ["de"], ContinuationLogprob(((1,),)))
    tokens = Request("ll", ("0",), ("de",), tokens=((5, 6, 7, 8),), readout=ContinuationLogprob(((1,),)))
    with pytest.raises(DataError, match=r"token index 5 .* outside a text of 4 tokens"):
        check_requests(model.tokenizer, plans, [tokens])
    check_requests(model.tokenizer, plans, [Request("ll", ("0",), ("de",), tokens=(tuple(range(5, 15)),),
                                                    readout=ContinuationLogprob(((1,),)))])
