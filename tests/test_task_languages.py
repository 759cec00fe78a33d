"""Task languages beyond the statistics' (CLAS acts, Int-mu refuses or leaves them alone), task data checked
before any model work, damaged unit files and cached statistics recomputed, remote runs of a local folder refused."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import spec_folder, tiny_model
from typer.testing import CliRunner

import clas_graph
from clas_graph.cli import app
from clas_graph.errors import CompileError
from clas_graph.runners import run as run_module
from clas_graph.spec.load import load_spec
from clas_graph.stats import StatsArtifact

STATS_SPEC = """\
schema_version: 1
name: tiny-langs
model: {path: model, chat_template: none}
languages: [en, de, es]
stats:
  corpus: {kind: bible, limit: 3, seed: 1}
  bridge: {k: 2, exclude_last: 1, min_layer: 1}
interventions:
  - kind: clas
    id: clas
    layers: {auto: bridge}
    shared: {from_stats: partial_shared}
    specific: {from_stats: language_specific}
  - kind: int_mu
    id: int_mu
    layers: {auto: bridge}
tasks:
  - kind: lm_loss
    languages: [en, de, fr]
    corpus: {kind: bible, limit: 2, offset: 10}
batch_size: 4
"""


@pytest.fixture
def spec_file(tmp_path, model_dir):
    return spec_folder(tmp_path, model_dir, STATS_SPEC)


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, model_dir):
    folder = tmp_path_factory.mktemp("langs-stats")
    spec_file = spec_folder(folder, model_dir, STATS_SPEC)
    assert cli("stats", spec_file, "--runs-dir", folder / "runs").exit_code == 0
    (run_dir,) = (folder / "runs").iterdir()
    return StatsArtifact.load(run_dir / "stats.safetensors")


def test_int_mu_on_a_language_without_statistics_is_a_compile_error_naming_it(spec_file, artifact):
    spec = load_spec(spec_file)
    with pytest.raises(CompileError) as info:
        clas_graph.compile_plan(spec, tiny_model("llama").config, "int_mu", artifact)
    message = str(info.value)
    assert "tasks[0] evaluates 'fr', which the statistics did not see (their languages: en, de, es)" in message
    assert "interventions[1]" in message and "rows: {languages: [...]}" in message
    plan = clas_graph.compile_plan(spec, tiny_model("llama").config, "clas", artifact)  # CLAS: language-independent
    assert plan.languages == ("en", "de", "es", "fr")


def test_clas_acts_on_an_unseen_language_and_restricted_int_mu_leaves_it_alone(spec_file, artifact):
    spec = load_spec(spec_file, ["interventions.1.rows={languages: [de, es]}"])
    model = clas_graph.load_model(spec.model, spec_file.parent)
    clas = clas_graph.compile_plan(spec, model, "clas", artifact)
    int_mu = clas_graph.compile_plan(spec, model, "int_mu", artifact)
    assert int_mu.languages == ("en", "de", "es", "fr")
    op = int_mu.ops[0]
    assert op.mask.shape[0] == 4 and not op.mask[3].any()
    assert torch.equal(op.mask[:3], artifact_mask(artifact, op.layer))
    texts = ["Le chat dort sur le canapé.", "Die Katze schläft auf dem Sofa."]
    base = clas_graph.forward(model, None, texts, ["fr", "de"])
    assert not torch.allclose(clas_graph.forward(model, clas, texts, ["fr", "de"])[0], base[0])  # CLAS acts on fr
    with_int_mu = clas_graph.forward(model, int_mu, texts, ["fr", "de"])
    torch.testing.assert_close(with_int_mu[0], base[0], rtol=0, atol=1e-6)  # no statistics for fr: untouched


def artifact_mask(artifact, layer):
    owner = artifact.tensors["specific_language"][layer].to(torch.long)
    return owner[None, :] == torch.arange(3)[:, None]


def test_task_data_is_checked_before_the_model_loads_or_a_run_directory_exists(tmp_path, model_dir, monkeypatch):
    spec_file = spec_folder(tmp_path, model_dir, STATS_SPEC.replace(
        "  - kind: lm_loss\n    languages: [en, de, fr]\n    corpus: {kind: bible, limit: 2, offset: 10}\n",
        "  - kind: xnli\n    limit: null\n    data_files: {en: en.jsonl, de: missing.jsonl, es: en.jsonl}\n"))
    (tmp_path / "en.jsonl").write_text(json.dumps({"premise": "a", "hypothesis": "b", "label": 0}) + "\n")
    monkeypatch.setattr(run_module, "load_model_for_spec", lambda *a, **k: pytest.fail("the model was loaded"))
    result = cli("run", spec_file, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "tasks[0] (xnli), language 'de'" in result.stderr and "missing.jsonl" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_damaged_unit_file_is_recomputed_and_said_so(spec_file, tmp_path):
    spec_file.write_text(STATS_SPEC.replace("    languages: [en, de, fr]\n", ""))
    runs = tmp_path / "runs"
    assert cli("run", spec_file, "--runs-dir", runs).exit_code == 0
    (run_dir,) = runs.iterdir()
    before = json.loads((run_dir / "metrics.json").read_text())
    unit = run_dir / "units" / "lm_loss_de_clas.json"
    unit.write_text(unit.read_text()[:25])  # truncated, as by a full disk
    again = cli("run", spec_file, "--runs-dir", runs)
    assert again.exit_code == 0, again.output
    said = again.stderr.replace("\n", "")
    assert "lm_loss_de_clas.json is damaged;" in said and "recomputing the unit" in said
    assert json.loads(unit.read_text())["metrics"] == before["tasks"]["lm_loss"]["per_language"]["clas"]["de"]
    assert json.loads((run_dir / "metrics.json").read_text()) == before


def test_damaged_cached_statistics_are_recomputed_but_a_given_artifact_is_refused(spec_file, tmp_path):
    runs = tmp_path / "runs"
    assert cli("stats", spec_file, "--runs-dir", runs).exit_code == 0
    (run_dir,) = runs.iterdir()
    tensors = run_dir / "stats.safetensors"
    good = StatsArtifact.load(tensors)
    tensors.write_bytes(tensors.read_bytes()[:-7] + b"garbage")
    failed = cli("eval", spec_file, "--runs-dir", runs)  # eval does not compute statistics: says how to
    assert failed.exit_code == 2 and "clas-graph stats SPEC" in failed.stderr and "Traceback" not in failed.output
    fixed = cli("stats", spec_file, "--runs-dir", runs)  # ... and that fix works
    assert fixed.exit_code == 0, fixed.output
    assert "are damaged" in fixed.output.replace("\n", "")
    again = StatsArtifact.load(tensors)
    assert all(torch.equal(again.tensors[k], good.tensors[k]) for k in good.tensors)

    tensors.write_bytes(tensors.read_bytes()[:-7] + b"garbage")
    given = spec_file.with_name("given.yaml")
    given.write_text(STATS_SPEC.replace("  bridge:", f"  artifact: {tensors}\n  bridge:"))
    refused = cli("compile", given, "--runs-dir", tmp_path / "other")
    assert refused.exit_code == 2 and "stats.artifact" in refused.stderr and "sha256 differs" in refused.stderr
    assert "point `stats.artifact` at an intact artifact" in refused.stderr


@pytest.mark.parametrize("model, message", [
    ("{path: model}", "a remote run needs a hub id the NDIF server serves, but `model.path` is a local folder"),
    ("{embedded: gemma-3-270m}", "the embedded model is not served remotely"),
])
def test_remote_runs_of_a_local_folder_or_the_embedded_model_stop_before_any_work(tmp_path, model_dir, monkeypatch,
                                                                                  model, message):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    spec_file = spec_folder(tmp_path, model_dir, STATS_SPEC.replace("{path: model, chat_template: none}", model))
    for command in ("run", "stats"):
        result = cli(command, spec_file, "--remote", "--runs-dir", tmp_path / "runs")
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()
