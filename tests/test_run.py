"""`clas-graph run` end to end on a tiny model saved to disk (exercises the local-folder loading path)."""

from __future__ import annotations

import json

import pytest
import torch
from reference import ClasRef, ref_last_logits
from tiny import clas_yaml, spec_folder, spec_yaml, tiny_model, tiny_tokenizer
from typer.testing import CliRunner

from clas_graph.cli import app
from clas_graph.records import RunDir, atomic_write_text, spec_hash
from clas_graph.spec.load import load_spec

LANGS = ["en", "de", "fr", "zh"]
SHARED = {1: [0, 3, 5, 8, 13, 21, 34], 2: [1, 2, 40, 41]}
SPECIFIC = {1: [10, 11, 12], 2: [60]}

SPEC = spec_yaml("tiny-run", LANGS, "interventions:\n", clas_yaml(SHARED, SPECIFIC, beta=0.6, gamma=0.4), """\
tasks:
  - kind: next_token
    corpus: {kind: bible, limit: 3, seed: 0}
batch_size: 5
""")


@pytest.fixture
def spec_file(tmp_path, model_dir):
    return spec_folder(tmp_path, model_dir, SPEC)


def masks():
    def vec(indices):
        m = torch.zeros(64)
        m[indices] = 1.0
        return m

    return ClasRef({layer: (vec(SHARED[layer]), vec(SPECIFIC.get(layer, []))) for layer in (1, 2)},
                   beta=0.6, gamma=0.4, alpha=1.0)


def test_run_writes_a_complete_run_directory_with_correct_metrics(spec_file, tmp_path):
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    (run_dir,) = runs.iterdir()
    assert run_dir.name.endswith(f"_tiny-run_{spec_hash(load_spec(spec_file))[:8]}")
    for name in ("spec.yaml", "spec.resolved.json", "manifest.json", "plan.json", "plan.safetensors",
                 "metrics.json", "traces/clas.py", "traces/base.py"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "spec.yaml").read_text() == SPEC
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["versions"]["torch"].startswith("2.13")
    assert set(json.loads((run_dir / "plan.json").read_text())) == {"base", "clas"}

    metrics = json.loads((run_dir / "metrics.json").read_text())["tasks"]["next_token"]["per_language"]
    assert metrics["clas"]["en"]["kl_from_base"] == 0.0 and metrics["clas"]["en"]["top1_agreement"] == 100.0
    assert all(metrics["clas"][lang]["kl_from_base"] > 0 for lang in ("de", "fr", "zh"))
    assert (run_dir / "summary.md").is_file() and (run_dir / "figures" / "deltas.png").is_file()

    # Independent check: recompute every row's numbers with plain hooks on the same weights.
    hf, tok = tiny_model("llama"), tiny_tokenizer()
    for lang in LANGS:
        base_rows = [json.loads(line) for line in (run_dir / f"samples/next_token_{lang}_base.jsonl").open()]
        clas_rows = [json.loads(line) for line in (run_dir / f"samples/next_token_{lang}_clas.jsonl").open()]
        prompts = [row["prompt"] for row in base_rows]
        base = torch.log_softmax(ref_last_logits(hf, tok, prompts, [False] * 3, None), -1)
        clas = torch.log_softmax(ref_last_logits(hf, tok, prompts, [lang != "en"] * 3, masks()), -1)
        for i, (b, c) in enumerate(zip(base_rows, clas_rows)):
            assert c["top1_token"] == int(clas[i].argmax())
            kl = (base[i].exp() * (base[i] - clas[i])).sum().item()
            assert c["kl_from_base"] == pytest.approx(kl, abs=1e-5)
            if c["gold_token"] is not None:
                assert c["gold_logprob"] == pytest.approx(clas[i, c["gold_token"]].item(), abs=1e-5)
                assert b["gold_logprob"] == pytest.approx(base[i, b["gold_token"]].item(), abs=1e-5)


def test_rerun_reuses_the_run_directory_and_a_changed_spec_gets_a_new_one(spec_file, tmp_path):
    runs = tmp_path / "runs"
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)]).exit_code == 0
    spec_file.write_text(SPEC.replace("batch_size: 5", "batch_size: 2"))  # transport only: same identity
    assert runner.invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)]).exit_code == 0
    assert len(list(runs.iterdir())) == 1
    spec_file.write_text(SPEC.replace("beta: 0.6", "beta: 0.5"))
    assert runner.invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)]).exit_code == 0
    assert len(list(runs.iterdir())) == 2


def test_missing_model_folder_is_one_clear_error(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    result = CliRunner().invoke(app, ["run", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "model.path" in result.stderr and "no config.json" in result.stderr and "Traceback" not in result.output


def test_hub_model_offline_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("{path: model}", "{id: some-org/some-model-not-cached}"))
    result = CliRunner().invoke(app, ["compile", str(path)])
    assert result.exit_code == 2
    assert "not in the local Hugging Face cache and the hub is unreachable" in result.stderr
    assert str(path) in result.stderr


def test_spec_hash_ignores_transport_settings(spec_file):
    spec = load_spec(spec_file)
    same = spec.model_copy(update={"batch_size": 64, "name": "other", "description": "x",
                                   "model": spec.model.model_copy(update={"device": "cuda"})})
    changed = spec.model_copy(update={"languages": ["en", "de"]})
    assert spec_hash(spec) == spec_hash(same)
    assert spec_hash(spec) != spec_hash(changed)


def test_atomic_write_leaves_old_content_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_failed_run_is_recorded_in_the_manifest(spec_file, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr("clas_graph.tasks.next_token.NextTokenRunner.run_many", fail)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)])
    assert result.exit_code != 0
    (run_dir,) = runs.iterdir()
    manifest = RunDir(run_dir, "").manifest()
    assert manifest["status"] == "failed" and "simulated crash" in manifest["error"]
    assert not (run_dir / "metrics.json").exists()
