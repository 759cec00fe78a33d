"""The example plugin (a task kind, an intervention kind, a readout) runs from a spec without any change to
clas_graph: validated and in the JSON Schema like built-in kinds, equal to plain PyTorch hooks on the same model
(1e-5 nats), the same through the mock NDIF server, and found through an installed package's entry point."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from typer.testing import CliRunner

from clas_graph.cli import app
from clas_graph.data.corpora import load_corpus
from clas_graph.spec import plugins
from clas_graph.spec.corpora import BibleCorpus
from clas_graph.spec.load import load_spec
from clas_graph.spec.schema import editor_schema

LANGS = ["en", "de", "fr"]
NEURONS, LAYERS, STRENGTH = [1, 4, 9, 30], [1, 2], 0.75
CORPUS = {"kind": "bible", "limit": 3, "offset": 40}


def spec_text(plugin_line: str = "plugins: [clas_graph_example.kinds]\n", backend: str = "") -> str:
    return f"""\
schema_version: 1
name: plugin
{plugin_line}model: {{path: model, chat_template: none}}
languages: {json.dumps(LANGS)}
interventions:
  - {{kind: dampen, id: dampen, layers: {LAYERS}, neurons: {NEURONS}, strength: {STRENGTH}}}
tasks:
  - {{kind: next_token_entropy, corpus: {json.dumps(CORPUS)}}}
batch_size: 2
{backend}"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_model_dir):
    path = tmp_path_factory.mktemp("plugin")
    (path / "model").symlink_to(tiny_model_dir("llama"))
    (path / "spec.yaml").write_text(spec_text())
    return path


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def reference_entropy(model_dir, language: str, dampen: bool) -> list[float]:
    """Plain transformers + hooks, one text at a time: the last token's next-token entropy, with the listed
    neurons of the down-projection input multiplied by (1 - strength) in LAYERS on non-anchor rows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    hooks = []
    if dampen and language != "en":
        def scale(module, args):
            (x,) = args
            x = x.clone()
            x[..., NEURONS] *= 1 - STRENGTH
            return (x,)
        hooks = [model.model.layers[layer].mlp.down_proj.register_forward_pre_hook(scale) for layer in LAYERS]
    out = []
    with torch.no_grad():
        for sample in load_corpus(BibleCorpus(**CORPUS), [language], None):
            logits = model(**tokenizer(sample.texts[language], return_tensors="pt")).logits[0, -1].double()
            logprobs = torch.log_softmax(logits, -1)
            out.append(float(-(logprobs.exp() * logprobs).sum()))
    for hook in hooks:
        hook.remove()
    return out


@pytest.fixture(scope="module")
def local_run(folder):
    result = cli("run", folder / "spec.yaml", "--runs-dir", folder / "runs")
    assert result.exit_code == 0, result.output
    (run_dir,) = (folder / "runs").iterdir()
    return run_dir


def samples(run_dir, language, condition):
    path = run_dir / "samples" / f"next_token_entropy_{language}_{condition}.jsonl"
    return [json.loads(line)["entropy"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("language", LANGS)
def test_the_plugin_kinds_equal_plain_hooks(local_run, folder, language):
    for condition, dampen in (("base", False), ("dampen", True)):
        want = reference_entropy(folder / "model", language, dampen)
        assert samples(local_run, language, condition) == pytest.approx(want, abs=1e-5)
    changed = [a - b for a, b in zip(samples(local_run, language, "dampen"), samples(local_run, language, "base"))]
    assert (max(map(abs, changed)) > 1e-4) == (language != "en")  # the anchor's rows stay untouched


def test_the_plugin_runs_through_the_mock_ndif_server_with_the_local_numbers(folder, local_run):
    pytest.importorskip("aiohttp")
    from ndif_mock.harness import start_mock_ndif

    model_dir = (folder / "model").resolve()
    remote = folder / "remote"
    remote.mkdir()
    (remote / "model").symlink_to(model_dir)
    with start_mock_ndif(model_dir, repo_ids=[str(remote / "model")]) as server:
        (remote / "spec.yaml").write_text(spec_text(backend=f"backend: {{kind: ndif, host: '{server.url}', "
                                                            "retries: 1, backoff_s: 0.05}\n"))
        result = cli("run", remote / "spec.yaml", "--runs-dir", remote / "runs")
        assert result.exit_code == 0, result.output
        assert server.job_ids(), "nothing ran on the server"
    (run_dir,) = (remote / "runs").iterdir()
    for language in LANGS:
        for condition in ("base", "dampen"):
            assert samples(run_dir, language, condition) == pytest.approx(samples(local_run, language, condition),
                                                                          abs=1e-5)


def test_plugin_kinds_are_validated_and_in_the_json_schema(folder):
    schema = json.dumps(editor_schema(plugins.spec_model(("clas_graph_example.kinds",))))
    assert '"next_token_entropy"' in schema and '"dampen"' in schema
    assert '"dampen"' not in json.dumps(editor_schema(plugins.spec_model(())))
    bad = folder / "bad.yaml"
    bad.write_text(spec_text().replace(f"strength: {STRENGTH}", "strength: 3"))
    result = cli("validate", bad)
    assert result.exit_code == 2 and "interventions[0].strength" in result.output and "bad.yaml:7" in result.output
    without = folder / "without.yaml"
    without.write_text(spec_text(plugin_line=""))
    result = cli("validate", without)
    assert result.exit_code == 2 and "'dampen'" in result.output, result.output


def test_a_plugin_that_cannot_be_imported_is_one_line_naming_it(folder):
    missing = folder / "missing.yaml"
    missing.write_text(spec_text(plugin_line="plugins: [no_such_package.kinds]\n"))
    result = cli("validate", missing)
    assert result.exit_code == 2 and "Traceback" not in result.output
    head = result.output.strip().splitlines()[0]
    assert "missing.yaml:3: plugins[0]" in head and "no_such_package.kinds" in head and "Fix:" in head


def test_an_installed_packages_entry_point_needs_no_plugins_line(folder, tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "clas_graph_example_plugin-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: clas-graph-example-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[clas_graph.plugins]\nexample = clas_graph_example.kinds\n")
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    plugins.spec_model.cache_clear()
    try:
        assert plugins.installed_plugins() == ("clas_graph_example.kinds",)
        without = folder / "installed.yaml"
        without.write_text(spec_text(plugin_line=""))
        spec = load_spec(without)
        assert [task.kind for task in spec.tasks] == ["next_token_entropy"] and spec.plugins == []
    finally:
        plugins.spec_model.cache_clear()
