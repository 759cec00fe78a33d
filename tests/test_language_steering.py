"""The offline language identifier and the language-steering task (end to end on a tiny model)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny import spec_folder, tiny_model, tiny_tokenizer
from typer.testing import CliRunner

from clas_graph.cli import app
from clas_graph.data.bible import load_bible
from clas_graph.eval.langid import detect
from clas_graph.tasks.language_steering import steering_score

BIBLE = ["en", "de", "es", "fr", "ru", "zh", "ar", "hi", "tr", "vi", "sw", "ro"]


def test_identifier_works_offline_on_short_parallel_text(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may come from the network
    samples = load_bible(BIBLE, limit=10, offset=450)
    texts = [s.texts[lang] for s in samples for lang in BIBLE]
    labels = [lang for _ in samples for lang in BIBLE]
    found = detect(texts)
    accuracy = sum(a == b for a, b in zip(found, labels)) / len(labels)
    assert accuracy >= 0.9, accuracy  # measured 98.8% on 60 verses x 12 languages (see clas_graph/eval/langid.py)
    assert detect(["", "   ", "\n"]) == [None, None, None]
    assert detect(["Der Himmel ist blau,\nund die Sonne scheint über der Stadt."]) == ["de"]


def test_steering_score_is_clas_bench_harmonic_mean():
    assert steering_score(50.0, 100.0) == pytest.approx(2 * 50 * 100 / 150)
    assert steering_score(0.0, 90.0) == 0.0 and steering_score(80.0, 0.0) == 0.0


LANGS = ["en", "de", "fr", "zh"]
SPEC = """\
schema_version: 1
name: tiny-steer
model: {path: model}
languages: [en, de, fr, zh]
anchor: {kind: none}
stats:
  corpus: {kind: bible, limit: 3, seed: 2}
  bridge: {k: 1, exclude_last: 1, min_layer: 1}
  selections: {lape: {top_rate: 0.05}}
interventions:
  - {kind: diffmean, id: to_fr, layers: [2], target: fr, alpha: 30.0, rows: all}
  - {kind: ablate, id: lape_off, layers: {auto: all}, site: mlp.act_fn.output,
     neurons: {from_stats: lape, per_row: true}, rows: all}
  - {kind: set, id: on_zh, layers: {auto: all}, neurons: {from_stats: lape, languages: [zh]}, value: mean, language: zh,
     mode: add, rows: all}
conditions:
  diffmean_fr: [to_fr]
  lape_zh: [lape_off, on_zh]
tasks:
  - kind: language_steering
    corpus: {kind: bible, limit: 3, offset: 40}
    max_new_tokens: 6
    sources: [en, de]
batch_size: 4
"""


def nll_of(hf, tok, text):
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = hf(ids).logits[0, :-1].double()
    return float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")), ids.shape[1] - 1


def test_language_steering_run_scores_and_matrix(tmp_path, model_dir):
    spec_file = spec_folder(tmp_path, model_dir, SPEC)
    result = CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())["tasks"]["language_steering"]
    assert metrics["languages"] == ["en", "de"]
    assert assert_targets(metrics) is None
    hf, tok = tiny_model("llama"), tiny_tokenizer()
    for condition in ("base", "diffmean_fr", "lape_zh"):
        for source in ("en", "de"):
            unit = metrics["per_language"][condition][source]
            rows = [json.loads(line) for line in
                    (run_dir / "samples" / f"language_steering_{source}_{condition}.jsonl").read_text().splitlines()]
            assert len(rows) == 3 == unit["n"]
            # forcing: share of recorded outputs the identifier labels as the target
            assert [r["detected"] for r in rows] == detect([r["output"] for r in rows])
            assert unit["forcing"] == pytest.approx(100 * sum(r["detected"] == unit["target"] for r in rows) / 3)
            # fluency: 100 * exp(-NLL per output token given the prompt), recomputed with plain transformers
            for r in rows:
                full, n_full = nll_of(hf, tok, r["prompt"] + r["output"])
                alone, n_alone = nll_of(hf, tok, r["prompt"])
                want = 100 * math.exp(-(full - alone) / (n_full - n_alone)) if r["output"].strip() else 0.0
                assert r["fluency"] == pytest.approx(want, rel=1e-3, abs=1e-3)
            assert unit["steering"] == pytest.approx(steering_score(unit["forcing"], unit["fluency"]))
    assert (run_dir / "figures" / "language_steering_matrix.png").stat().st_size > 5000
    # the DiffMean condition changes the outputs (alpha 30 on a tiny model)
    base = (run_dir / "samples" / "language_steering_de_base.jsonl").read_text()
    assert base != (run_dir / "samples" / "language_steering_de_diffmean_fr.jsonl").read_text()


def assert_targets(metrics):
    per = metrics["per_language"]
    assert per["base"]["de"]["target"] == "de" and per["base"]["en"]["target"] == "en"
    assert per["diffmean_fr"]["de"]["target"] == "fr" and per["lape_zh"]["en"]["target"] == "zh"


def test_a_condition_without_one_target_is_refused(tmp_path, model_dir):
    text = SPEC.replace("  lape_zh: [lape_off, on_zh]", "  lape_zh: [lape_off]")
    spec_file = spec_folder(tmp_path, model_dir, text)
    result = CliRunner().invoke(app, ["validate", str(spec_file)])
    assert result.exit_code == 2
    assert "tasks[0]" in result.stderr and "targets: {lape_zh: LANG}" in result.stderr
    (tmp_path / "fixed").mkdir()
    text = text.replace("sources: [en, de]", "sources: [en, de]\n    targets: {lape_zh: zh}")
    fixed = spec_folder(tmp_path / "fixed", model_dir, text)
    assert CliRunner().invoke(app, ["validate", str(fixed)]).exit_code == 0
