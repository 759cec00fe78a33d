"""Inputs that only the task's texts reveal are checked for every unit before any unit runs: a position selector
that does not fit the last language's prompts stops the run before the first unit's model work, naming the field,
and units finished earlier are skipped by the check (resume)."""

from __future__ import annotations

import json

import pytest
from tiny import spec_data

import clas_graph
from clas_graph.errors import DataError
from clas_graph.execution.context import InputsChecked, checking_inputs
from clas_graph.runners.evaluate import evaluate, unit_path
from clas_graph.spec.load import validate_data

LABELS = ["0", "1", "2"]


def xnli_file(write, lang: str, words: int) -> str:
    rows = [{"premise": " ".join(["word"] * words) + f" {i}", "hypothesis": f"{lang} {i}", "label": i % 3}
            for i in range(3)]
    return str(write(f"{lang}.jsonl", "".join(json.dumps(row) + "\n" for row in rows)))


def prompt_lengths(model, spec) -> dict[str, int]:
    """The shortest prompt per language, in tokens (as the XNLI runner builds them)."""
    from clas_graph.data.tasks import render

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
    monkeypatch.setattr("clas_graph.runners.input_checks.checking_inputs",
                        lambda: checked.append(1) or checking_inputs())
    evaluate(spec, model, plans, tmp_path)
    assert checked == []  # every unit finished: nothing to check, nothing rerun


def test_checking_inputs_stops_the_first_model_call_after_its_checks(setup):
    model, make, lengths = setup
    plan = clas_graph.compile_plan(make(lengths["fr"] + 1), model, "boost")
    with checking_inputs(), pytest.raises(DataError, match="outside"):
        clas_graph.forward(model, plan, ["un"], ["fr"])
    with checking_inputs(), pytest.raises(InputsChecked):
        clas_graph.forward(model, plan, ["word " * 200], ["en"])
    assert clas_graph.forward(model, plan, ["word " * 200], ["en"]).shape[0] == 1


def test_token_rows_are_checked_too(setup):
    """lm-evaluation-harness requests arrive as token ids: their selectors are checked on the rows' lengths."""
    from clas_graph.execution.api import read_tokens_many
    from clas_graph.execution.readouts import ContinuationLogprob

    model, make, _ = setup
    plans = {"boost": clas_graph.compile_plan(make(5), model, "boost")}
    with pytest.raises(DataError, match=r"interventions\[0\]\.positions: token index 5 .* outside a text of 4 tokens"):
        read_tokens_many(model, plans, [[5, 6, 7, 8]], ["de"], ContinuationLogprob(((1,),)))
    with checking_inputs(), pytest.raises(InputsChecked):
        read_tokens_many(model, plans, [list(range(5, 15))], ["de"], ContinuationLogprob(((1,),)))
