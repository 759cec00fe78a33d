"""End to end through nnsight's real remote client against the mock NDIF server (tests/ndif_mock): statistics and
evaluation give the local numbers; server errors and dropped connections are retried; exhausted retries fail
clearly and a rerun resumes."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import spec_data
from typer.testing import CliRunner

from clas_graph.cli import app
from clas_graph.stats import StatsArtifact

pytest.importorskip("aiohttp")
from ndif_mock.harness import start_mock_ndif  # noqa: E402

LANGS = ["en", "de", "fr"]


def spec_text(model_dir, backend: str = "") -> str:
    return f"""\
schema_version: 1
name: remote-e2e
model: {{path: {model_dir}, chat_template: none}}
languages: {json.dumps(LANGS)}
stats:
  corpus: {{kind: bible, limit: 2, seed: 4}}
  bridge: {{k: 2, exclude_last: 1, min_layer: 1}}
interventions:
  - kind: clas
    layers: {{auto: bridge}}
    shared: {{from_stats: partial_shared}}
    specific: {{from_stats: language_specific}}
  - kind: add_vector
    id: toward_en
    layers: [1]
    vector: {{from_stats: diffmean}}
    coefficient: -0.5
tasks:
  - {{kind: lm_loss, corpus: {{kind: bible, limit: 2, offset: 20}}}}
  - {{kind: retrieval, layer: 2, corpus: {{kind: bible, limit: 3, offset: 20}}}}
  - {{kind: xquad, limit: null, max_new_tokens: 3, data_files: {{en: qa.jsonl, de: qa.jsonl, fr: qa.jsonl}}}}
batch_size: 4
{backend}"""


@pytest.fixture(scope="module")
def ndif(model_dir):
    with start_mock_ndif(model_dir, repo_ids=[str(model_dir)]) as server:
        yield server


@pytest.fixture(scope="module")
def folder(tmp_path_factory, model_dir):
    path = tmp_path_factory.mktemp("specs")
    with (path / "qa.jsonl").open("w") as out:
        for i in range(2):
            out.write(json.dumps({"id": f"q{i}", "context": "Paris is in France.", "question": "Where is Paris?",
                                  "answers": {"text": ["France"], "answer_start": [9]}}) + "\n")
    (path / "local.yaml").write_text(spec_text(model_dir))
    (path / "remote.yaml").write_text(spec_text(model_dir, "backend: {kind: ndif, retries: 2, backoff_s: 0.05}\n"))
    return path


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def local_run(folder):
    result = cli("run", folder / "local.yaml", "--runs-dir", folder / "local_runs")
    assert result.exit_code == 0, result.output
    (run_dir,) = (folder / "local_runs").iterdir()
    return run_dir


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())["tasks"]


def assert_same_metrics(got, want):
    for task in want:
        for condition, by_language in want[task]["per_language"].items():
            for language, values in by_language.items():
                for key, value in values.items():
                    assert got[task]["per_language"][condition][language][key] == pytest.approx(value, abs=1e-4), \
                        (task, condition, language, key)


def test_remote_run_gives_the_local_numbers(ndif, folder, local_run):
    runs = folder / "remote_runs"
    result = cli("run", folder / "remote.yaml", "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    (run_dir,) = runs.iterdir()
    assert_same_metrics(metrics(run_dir), metrics(local_run))
    remote_stats = StatsArtifact.load(run_dir / "stats.safetensors")
    local_stats = StatsArtifact.load(local_run / "stats.safetensors")
    torch.testing.assert_close(remote_stats.tensors["mean"], local_stats.tensors["mean"], atol=1e-5, rtol=1e-5)
    assert torch.equal(remote_stats.category, local_stats.category)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["backend"]["kind"] == "ndif" and manifest["backend"]["host"] == ndif.url
    assert set(manifest["backend"]["job_ids"]) <= set(ndif.job_ids()) and len(manifest["backend"]["job_ids"]) > 10
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert ndif.api_key.encode() not in path.read_bytes(), path


def test_server_errors_and_dropped_connections_are_retried(ndif, folder, local_run):
    runs = folder / "flaky_runs"
    ndif.set_faults(error_next=1)
    first = cli("eval" if False else "stats", folder / "remote.yaml", "--runs-dir", runs)
    assert first.exit_code == 0, first.output
    ndif.set_faults(drop_next=1)
    second = cli("run", folder / "remote.yaml", "--runs-dir", runs)
    assert second.exit_code == 0, second.output
    ndif.reset_faults()
    (run_dir,) = runs.iterdir()
    assert_same_metrics(metrics(run_dir), metrics(local_run))


def test_exhausted_retries_fail_clearly_and_a_rerun_resumes(ndif, folder, local_run):
    runs = folder / "broken_runs"
    assert cli("stats", folder / "remote.yaml", "--runs-dir", runs).exit_code == 0
    (run_dir,) = runs.iterdir()
    ndif.set_faults(error_next=100)
    failed = cli("run", folder / "remote.yaml", "--runs-dir", runs)
    ndif.reset_faults()
    assert failed.exit_code == 2, failed.output
    assert "remote execution failed after 3 attempts" in failed.stderr and "Traceback" not in failed.output
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "failed"
    resumed = cli("run", folder / "remote.yaml", "--runs-dir", runs)
    assert resumed.exit_code == 0, resumed.output
    assert_same_metrics(metrics(run_dir), metrics(local_run))


def test_a_slow_server_is_waited_for(ndif, folder, local_run):
    # nnsight's client waits for a slow answer (its read timeout is 600 s); the run just takes longer.
    runs = folder / "slow_runs"
    ndif.set_faults(delay=0.3)
    try:
        result = cli("stats", folder / "remote.yaml", "--runs-dir", runs)
    finally:
        ndif.reset_faults()
    assert result.exit_code == 0, result.output
    (run_dir,) = runs.iterdir()
    slow = StatsArtifact.load(run_dir / "stats.safetensors")
    assert torch.equal(slow.category, StatsArtifact.load(local_run / "stats.safetensors").category)


def test_grouped_sessions_cut_requests_and_bytes(ndif, model_dir):
    """Several conditions, label logits only, 4 batches per request: the mock server sees fewer, smaller
    requests than one full-logits request per (batch, condition), and the numbers are the local ones."""
    import clas_graph
    from clas_graph.backends import forward, forward_many
    from clas_graph.execution.context import use
    from clas_graph.execution.ndif import NdifExecutor
    from clas_graph.spec.load import validate_data
    from clas_graph.spec.model_ref import ModelRef

    model = clas_graph.load_model(ModelRef(path=str(model_dir)))
    spec = validate_data({**spec_data(LANGS, model={"path": str(model_dir)}),
                          "interventions": [
                              {"kind": "clas", "layers": [2, 3], "shared": {"neurons": {2: [1, 2, 3], 3: [9]}},
                               "specific": {"neurons": {2: [5]}}},
                              {"kind": "scale", "layers": [1], "factor": 2.0, "neurons": {"neurons": {1: [0, 4]}}}]})
    plans = clas_graph.compile_plans(spec, model)
    texts = [f"Premise {i}: the sky is blue. Hypothesis: it rains. Answer 0, 1 or 2:" for i in range(16)]
    rows = [LANGS[i % 3] for i in range(16)]
    labels = [15, 16, 17]
    local = forward_many(model, plans, texts, rows, token_ids=labels, batch_size=2)

    def measured(fn, session_batches=4):
        before = len(ndif.jobs())
        with use(NdifExecutor(host=True, session_batches=session_batches)):
            value = fn()
        jobs = ndif.jobs()[before:]
        return value, len(jobs), sum(job["result_bytes"] for job in jobs)

    old, old_requests, old_bytes = measured(  # the way before sessions: one request per (batch, condition)
        lambda: {name: forward(model, plan, texts, rows, batch_size=2) for name, plan in plans.items()},
        session_batches=1)
    new, new_requests, new_bytes = measured(
        lambda: forward_many(model, plans, texts, rows, token_ids=labels, batch_size=2))
    assert old_requests == 8 * len(plans) and new_requests == 2  # 8 batches: per (batch, condition) vs 4 a request
    assert new_bytes < old_bytes / 4
    for name in plans:
        torch.testing.assert_close(new[name], local[name], atol=1e-5, rtol=0)
        torch.testing.assert_close(old[name][:, labels], local[name], atol=1e-5, rtol=0)


def test_stacked_conditions_and_next_token_through_the_server(ndif, model_dir, monkeypatch):
    """Two conditions starting at one layer run stacked inside the generated session (the batch repeated on
    the server), and next_token comes back reduced (four numbers per row): both equal the local numbers."""
    import clas_graph
    import clas_graph.execution.schedule as shared
    from clas_graph.backends import next_token_many, pooled_hidden_many
    from clas_graph.execution.context import use
    from clas_graph.execution.ndif import NdifExecutor
    from clas_graph.spec.load import validate_data
    from clas_graph.spec.model_ref import ModelRef

    model = clas_graph.load_model(ModelRef(path=str(model_dir)))
    clas = {"kind": "clas", "layers": [2, 3], "shared": {"neurons": {2: [1, 2, 3], 3: [9]}},
            "specific": {"neurons": {2: [5]}}}
    spec = validate_data({**spec_data(LANGS, model={"path": str(model_dir)}),
                          "interventions": [{**clas, "id": "weak", "beta": 0.2},
                                            {**clas, "id": "strong", "beta": 2.0}]})
    plans = clas_graph.compile_plans(spec, model)
    texts = [f"Sentence number {i} is about the weather" for i in range(6)]
    rows = [LANGS[i % 3] for i in range(6)]
    gold = [5, None, 7, 8, 9, 10]
    local = (next_token_many(model, plans, texts, rows, gold, batch_size=2),
             pooled_hidden_many(model, plans, texts, rows, 3, batch_size=2))
    stacked = []
    real = shared.stack_plans
    monkeypatch.setattr(shared, "stack_plans", lambda named: stacked.append([n for n, _ in named]) or real(named))
    before = len(ndif.jobs())
    with use(NdifExecutor(host=True, session_batches=4)):
        remote = (next_token_many(model, plans, texts, rows, gold, batch_size=2),
                  pooled_hidden_many(model, plans, texts, rows, 3, batch_size=2))
    jobs = ndif.jobs()[before:]
    assert stacked == [["weak", "strong"], ["weak", "strong"]]  # once per readout
    assert len(jobs) == 2 and sum(job["result_bytes"] for job in jobs) < 20_000
    for name in plans:
        for column, value in local[0][name].items():
            torch.testing.assert_close(remote[0][name][column], value, atol=1e-5, rtol=0, equal_nan=True)
        torch.testing.assert_close(remote[1][name], local[1][name], atol=1e-5, rtol=0)
    assert (local[0]["strong"]["kl"] - local[0]["weak"]["kl"]).abs().max() > 1e-6
