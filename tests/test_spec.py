"""Spec loading and validation: every file in specs/ validates; malformed specs fail clearly via the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from clas_graph import SpecError, load_spec
from clas_graph.cli import app
from clas_graph.interventions.clas import ClasIntervention
from clas_graph.spec.masks import InlineMask
from clas_graph.spec.run_spec import RunSpec

SPECS = sorted((Path(__file__).parent.parent / "specs").glob("*.yaml"))
runner = CliRunner()

GOOD = """\
schema_version: 1
name: tiny
model: {path: model}
languages: [en, fr, de]
interventions:
  - kind: clas
    id: clas
    layers: [1, 2]
    shared: {neurons: {1: [0, 1, 2]}}
    specific: {neurons: {2: [5]}}
    beta: 0.4
    gamma: 0.2
    alpha: -0.5
"""


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_shipped_spec_validates(path):
    spec = load_spec(path)
    assert isinstance(spec, RunSpec)
    assert spec.interventions, "shipped specs demonstrate at least one intervention"


def test_good_spec_parses_fields(write):
    spec = load_spec(write("good.yaml", GOOD))
    clas = spec.interventions[0]
    assert isinstance(clas, ClasIntervention)
    assert isinstance(clas.shared, InlineMask) and clas.shared.neurons == {1: [0, 1, 2]}
    assert clas.alpha == -0.5  # negative alpha is allowed
    assert clas.rows == "non_anchor"
    assert spec.resolved_conditions == {"clas": ["clas"]}
    assert spec.source.endswith("good.yaml")


def test_json_and_yaml_give_the_same_spec(write):
    import yaml

    from_yaml = load_spec(write("s.yaml", GOOD))
    from_json = load_spec(write("s.json", json.dumps(yaml.safe_load(GOOD))))
    assert from_yaml.model_dump() == from_json.model_dump()


def test_mask_kind_may_be_explicit(write):
    spec = load_spec(write("s.yaml", GOOD.replace("shared: {neurons:", "shared: {kind: inline, neurons:")))
    assert isinstance(spec.interventions[0].shared, InlineMask)


def test_spec_is_frozen(write):
    spec = load_spec(write("good.yaml", GOOD))
    with pytest.raises(ValidationError, match="frozen"):
        spec.interventions[0].beta = 1.0


# (name, text, substrings the message must contain)
BAD = [
    ("unknown_key", GOOD.replace("beta: 0.4", "betta: 0.4"),
     ["interventions[0].betta", "unknown key 'betta'", "did you mean 'beta'", ":11"]),
    ("wrong_type", GOOD.replace("beta: 0.4", "beta: lots"), ["interventions[0].beta", "valid number", ":11"]),
    ("yaml_syntax", GOOD.replace("languages: [en, fr, de]", "languages: [en, fr, de"),
     ["YAML syntax error", "bad.yaml:"]),
    ("empty_file", "", ["the file is empty"]),
    ("missing_model", GOOD.replace("model: {path: model}\n", ""), ["model", "required field is missing"]),
    ("layer_out_of_range", GOOD.replace("layers: [1, 2]", "layers: [1, 2, 40]"),
     ["interventions[0].layers[2]", "layer 40 is out of range", "4 layers"]),
    ("mask_index_out_of_range", GOOD.replace("{2: [5]}", "{2: [5, 999]}"),
     ["interventions[0].specific.neurons.2[1]", "neuron index 999", "64 intermediate"]),
    ("duplicate_id", GOOD + "  - {kind: clas, id: clas, layers: [0]}\n",
     ["interventions[1].id", "duplicate intervention id 'clas'"]),
    ("non_finite", GOOD.replace("alpha: -0.5", "alpha: .nan"), ["interventions[0].alpha", "finite"]),
    ("infinite", GOOD.replace("gamma: 0.2", "gamma: .inf"), ["interventions[0].gamma", "finite"]),
    ("duplicate_key", GOOD.replace("    beta: 0.4\n", "    beta: 0.4\n    beta: 0.5\n"), ["duplicate key 'beta'"]),
    ("unknown_kind", GOOD.replace("kind: clas", "kind: clasp"), ["interventions[0]", "'clasp'"]),
    ("anchor_not_in_languages", GOOD.replace("languages: [en, fr, de]", "languages: [fr, de]"),
     ["anchor.language", "'en' is not in `languages`"]),
    ("empty_layers", GOOD.replace("layers: [1, 2]", "layers: []"), ["interventions[0].layers", "at least 1"]),
    ("overlapping_masks", GOOD.replace("{2: [5]}", "{1: [2]}"),
     ["interventions[0].specific", "in both `shared` and `specific`"]),
    ("not_a_mapping", "- just\n- a list\n", ["top level must be a mapping"]),
    ("bad_mask_form", GOOD.replace("shared: {neurons: {1: [0, 1, 2]}}", "shared: {indices: [1]}"),
     ["interventions[0].shared", "a mask is"]),
    ("unknown_condition_ref", GOOD + "conditions: {both: [clas, nope]}\n",
     ["conditions.both[1]", "unknown intervention id 'nope'"]),
]


@pytest.fixture
def tiny_config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=64, num_hidden_layers=4,
                       num_attention_heads=2, num_key_value_heads=1)


@pytest.mark.parametrize("name,text,expected", BAD, ids=[case[0] for case in BAD])
@pytest.mark.parametrize("command", ["validate", "compile"])
def test_malformed_specs_fail_with_one_clear_message(name, text, expected, command, write, tiny_config, monkeypatch):
    # `compile` needs a model config; a tiny one stands in for the model folder.
    monkeypatch.setattr("clas_graph.loading.load_config", lambda ref, base_dir=None: tiny_config)
    path = write("bad.yaml", text)
    compile_only = name in {"layer_out_of_range", "mask_index_out_of_range", "overlapping_masks"}
    result = runner.invoke(app, [command, str(path)])
    if compile_only and command == "validate":
        assert result.exit_code == 0, result.output  # fits the schema; only the model's sizes rule it out
        return
    assert result.exit_code == 2, result.output
    message = result.stderr if hasattr(result, "stderr") else result.output
    assert "Traceback" not in result.output + message
    assert str(path) in message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_load_spec_raises_spec_error_with_location(write):
    path = write("bad.yaml", GOOD.replace("beta: 0.4", "beta: lots"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert f"{path}:11" in str(info.value)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_schema_command_prints_json_schema_with_field_docs():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    clas = schema["$defs"]["ClasIntervention"]
    assert "h1 = h*(1 + beta*M_shared)" in clas["properties"]["beta"]["description"]
    assert clas["additionalProperties"] is False


def test_validate_reports_every_file(write):
    good = write("good.yaml", GOOD)
    bad = write("bad.yaml", "")
    result = runner.invoke(app, ["validate", str(good), str(bad)])
    assert result.exit_code == 2
    assert "good.yaml" in result.stdout and "bad.yaml" in result.stderr
