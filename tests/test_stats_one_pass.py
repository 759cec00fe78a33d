"""Statistics in one pass: the default (quantile T_act) reads the text once; active_frac only when asked,
then checked against an independent hook count; artifacts with and without it load and reorder."""

from __future__ import annotations

import pytest
import torch
from tiny import spec_data

from clas_graph.data.bible import load_bible
from clas_graph.runners import stats as stats_runner
from clas_graph.spec.load import validate_data
from clas_graph.spec.stats import AbsoluteThreshold, QuantileThreshold
from clas_graph.stats import StatsArtifact

LANGS = ["en", "de", "fr", "zh"]


@pytest.fixture(scope="module")
def samples():
    return load_bible(LANGS, limit=4, seed=2)


@pytest.fixture(scope="module")
def model(tiny_lm):
    return tiny_lm("gemma3")


def count_passes(monkeypatch):
    passes = []
    original = stats_runner._stream

    def spy(*args, **kwargs):
        passes.append(kwargs["description"])
        return original(*args, **kwargs)

    monkeypatch.setattr(stats_runner, "_stream", spy)
    return passes


def test_default_quantile_statistics_read_the_text_once(model, samples, monkeypatch):
    passes = count_passes(monkeypatch)
    moments, counts, t_act = stats_runner.collect(model, samples, LANGS, threshold=QuantileThreshold(), batch_size=4)
    assert len(passes) == 1 and counts is None
    _, counts_asked, t_act_asked = stats_runner.collect(model, samples, LANGS, threshold=QuantileThreshold(),
                                                        batch_size=4, active_frac=True)
    assert len(passes) == 3 and counts_asked is not None
    torch.testing.assert_close(t_act, t_act_asked, rtol=0, atol=0)
    passes.clear()
    _, counts_abs, _ = stats_runner.collect(model, samples, LANGS, threshold=AbsoluteThreshold(), batch_size=4)
    assert len(passes) == 1 and counts_abs is not None  # counted in the same pass: free


def test_requested_active_fraction_equals_hook_counts_of_abs_h_above_t_act(model, samples):
    _, counts, t_act = stats_runner.collect(model, samples, LANGS, threshold=QuantileThreshold(), batch_size=3,
                                            active_frac=True)
    hf, tok = model._module, model.tokenizer
    layer = 2
    captured = {}
    handle = hf.model.layers[layer].mlp.down_proj.register_forward_pre_hook(
        lambda m, a: captured.__setitem__("h", a[0]))
    expected = torch.zeros(len(LANGS), hf.config.intermediate_size, dtype=torch.float64)
    try:
        for sample in samples:
            for g, lang in enumerate(LANGS):
                with torch.no_grad():
                    hf(**tok(sample.texts[lang], return_tensors="pt"))
                expected[g] += (captured["h"][0, 1:].double().abs() > t_act[layer]).sum(0).double()  # BOS left out
    finally:
        handle.remove()
    assert expected.sum() > 0
    assert torch.equal(counts[layer], expected)


def spec():
    return validate_data({**spec_data(LANGS),
                          "stats": {"corpus": {"kind": "bible", "limit": 4, "seed": 2}, "batch_size": 4,
                                    "bridge": {"k": 1, "exclude_last": 1}}})


def test_artifact_records_what_was_computed_and_reloads(model, tmp_path):
    lean = stats_runner.compute_stats(spec(), model)
    full = stats_runner.compute_stats(spec(), model, active_frac=True)
    assert "active_frac" not in lean.tensors and "active_frac" not in lean.meta["computed"]
    assert lean.meta["active_frac"].startswith("not computed")
    assert "active_frac" in full.tensors and "active_frac" in full.meta["computed"]
    # categories and bridge layers do not depend on it
    assert torch.equal(lean.category, full.category) and lean.bridge_layers == full.bridge_layers
    for name, artifact in (("lean", lean), ("full", full)):
        artifact.save(tmp_path / name)
        loaded = StatsArtifact.load(tmp_path / name / "stats.safetensors")
        assert sorted(loaded.tensors) == sorted(artifact.tensors)
        reordered = loaded.for_languages(list(reversed(LANGS)))
        torch.testing.assert_close(reordered.tensors["mean"], loaded.tensors["mean"].flip(0))
        if "active_frac" in loaded.tensors:  # an artifact with it (as every older one) keeps it aligned
            torch.testing.assert_close(reordered.tensors["active_frac"], loaded.tensors["active_frac"].flip(0))
