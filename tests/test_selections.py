"""LAPE and expert-neuron selections against independent recomputations (plain hooks, numpy, scikit-learn)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from tiny import spec_data, spec_folder
from typer.testing import CliRunner

from clas_graph import CompileError, compile_plan
from clas_graph.cli import app
from clas_graph.data.bible import load_bible
from clas_graph.runners import selections as sel_runner
from clas_graph.selections import rules as sel
from clas_graph.spec.load import load_spec, validate_data
from clas_graph.stats import StatsArtifact

LANGS = ["en", "de", "fr", "zh"]


@pytest.fixture(scope="module")
def samples():
    return load_bible(LANGS, limit=6, seed=3)


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def model(request, tiny_lm):
    return tiny_lm(request.param)


def hook_responses(hf, tokenizer, samples, languages, site="act"):
    """One text at a time with plain forward hooks (BOS left out): positive counts [L, G, I], tokens [G],
    max-pooled responses [L, N, I] and row languages [N]."""
    layers = hf.model.layers
    captured = {}
    if site == "act":
        handles = [layer.mlp.act_fn.register_forward_hook(
            lambda mod, args, out, i=i: captured.__setitem__(i, out.detach())) for i, layer in enumerate(layers)]
    else:
        handles = [layer.mlp.down_proj.register_forward_pre_hook(
            lambda mod, args, i=i: captured.__setitem__(i, args[0].detach())) for i, layer in enumerate(layers)]
    n, inter = len(layers), hf.config.intermediate_size
    positive = np.zeros((n, len(languages), inter))
    tokens = np.zeros(len(languages))
    pooled, row_language = [], []
    try:
        for sample in samples:
            for g, lang in enumerate(languages):
                ids = tokenizer(sample.texts[lang], return_tensors="pt")
                with torch.no_grad():
                    hf(**ids)
                tokens[g] += ids["input_ids"].shape[1] - 1
                row = []
                for i in range(n):
                    x = captured[i][0, 1:].double().numpy()
                    positive[i, g] += (x > 0).sum(0)
                    row.append(x.max(0))
                pooled.append(row)
                row_language.append(g)
    finally:
        for handle in handles:
            handle.remove()
    return positive, tokens, np.asarray(pooled).transpose(1, 0, 2), np.asarray(row_language)


def numpy_lape(prob, top_rate=0.01, filter_q=0.95, bar_q=0.95):
    """Tang et al.'s identify.py, transcribed to numpy: prob [L, I, G]."""
    normed = prob / prob.sum(-1, keepdims=True)
    normed[np.isnan(normed)] = 0
    with np.errstate(divide="ignore"):
        logp = np.where(normed > 0, np.log(normed), 0)
    entropy = -(normed * logp).sum(-1)
    flat = np.sort(prob.flatten())
    top = flat[round(flat.size * filter_q) - 1]
    entropy[(prob > top).sum(-1) == 0] = np.inf
    keep = round(entropy.size * top_rate)
    chosen = np.argsort(entropy.flatten(), kind="stable")[:keep]
    bar = flat[round(flat.size * bar_q) - 1]
    mask = np.zeros(prob.shape, dtype=bool)
    for index in chosen:
        layer, neuron = divmod(index, prob.shape[1])
        mask[layer, neuron] = prob[layer, neuron] > bar
    return entropy, mask


@pytest.mark.parametrize("batch_size", [1, 5])
def test_lape_probabilities_and_selection_match_plain_hooks(model, samples, batch_size):
    positive, tokens, _, _ = sel_runner.collect(model, samples, LANGS, lape=True, expert_layers=[],
                                                expert_site="mlp.act_fn.output", batch_size=batch_size,
                                                max_length=512, exclude_bos=True)
    ref_positive, ref_tokens, _, _ = hook_responses(model._module, model.tokenizer, samples, LANGS)
    np.testing.assert_array_equal(tokens.numpy(), ref_tokens)
    np.testing.assert_array_equal(positive.numpy(), ref_positive)  # integer counts: exact
    prob = ref_positive / ref_tokens[None, :, None]  # [L, G, I]
    for rate in (0.01, 0.1):
        entropy, mask, info = sel.lape(torch.tensor(prob).transpose(0, 1), top_rate=rate, filter_quantile=0.95,
                                       activation_bar_quantile=0.95)
        ref_entropy, ref_mask = numpy_lape(prob.transpose(0, 2, 1), top_rate=rate)
        finite = np.isfinite(ref_entropy)
        np.testing.assert_array_equal(np.isfinite(entropy.numpy()), finite)
        np.testing.assert_allclose(entropy.numpy()[finite], ref_entropy[finite], rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(mask.numpy(), ref_mask.transpose(2, 0, 1))
        assert info["kept_pairs"] == round(prob.shape[0] * prob.shape[2] * rate)
        assert ref_mask.any()  # the comparison is not vacuous


def test_lape_edge_cases_by_hand():
    # 1 layer x 4 neurons x 2 languages: n0 fires only for language 0, n1 for both, n2 never, n3 only for language 1.
    prob = torch.tensor([[[0.9, 0.5, 0.0, 0.0]], [[0.0, 0.5, 0.0, 0.8]]])  # [G, L, I]
    entropy, mask, _ = sel.lape(prob, top_rate=0.5, filter_quantile=0.5, activation_bar_quantile=0.5)
    assert entropy[0, 0] == 0 and entropy[0, 3] == 0 and abs(float(entropy[0, 1]) - np.log(2)) < 1e-6
    assert torch.isinf(entropy[0, 2])  # never active: filtered out
    assert mask[0, 0].tolist() == [True, False, False, False]
    assert mask[1, 0].tolist() == [False, False, False, True]


def test_average_precision_matches_sklearn_with_ties():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (40, 30), generator=gen).double()  # many ties
    scores[:, 0] = torch.randn(40, generator=gen).double()  # and one column without
    labels = torch.rand(40, generator=gen) < 0.3
    got = sel.average_precision(scores, labels)
    want = [average_precision_score(labels.numpy(), scores[:, j].numpy()) for j in range(scores.shape[1])]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    both = sel.average_precision(scores, torch.stack([labels, ~labels]))  # several label sets, one sort
    np.testing.assert_allclose(both[0].numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(both[1].numpy(), [average_precision_score(~labels.numpy(), scores[:, j].numpy())
                                                 for j in range(scores.shape[1])], rtol=1e-12)


@pytest.mark.parametrize("site", ["mlp.act_fn.output", "mlp.down_proj.input"])
def test_expert_ranking_matches_sklearn_average_precision(model, samples, site):
    layers = [0, 2, 3]
    _, _, pooled, rows = sel_runner.collect(model, samples, LANGS, lape=False, expert_layers=layers, expert_site=site,
                                            batch_size=4, max_length=512, exclude_bos=True)
    _, _, ref_pooled, ref_rows = hook_responses(model._module, model.tokenizer, samples, LANGS,
                                                site="act" if site == "mlp.act_fn.output" else "h")
    np.testing.assert_array_equal(rows.numpy(), ref_rows)
    np.testing.assert_allclose(pooled.numpy(), ref_pooled[layers], rtol=1e-5, atol=1e-6)
    ref = ref_pooled[layers]
    found = sel.experts(torch.tensor(ref), torch.tensor(ref_rows), len(LANGS), layers, 4, top_k=7)
    for g in range(len(LANGS)):
        ap = np.array([[average_precision_score(ref_rows == g, ref[j, :, n]) for n in range(ref.shape[2])]
                       for j in range(len(layers))])
        np.testing.assert_allclose(found["experts.ap"][g, layers].numpy(), ap, rtol=1e-5)
        assert torch.isnan(found["experts.ap"][g, 1]).all()  # layer 1 not searched
        best = np.argsort(-ap.flatten(), kind="stable")[:7]
        want = np.zeros(ap.size, dtype=bool)
        want[best] = True
        np.testing.assert_array_equal(found["experts.mask"][g, layers].numpy().flatten(), want)
        mine = ref[:, ref_rows == g]
        np.testing.assert_allclose(found["experts.p50"][g, layers].numpy(), np.median(mine, axis=1),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(found["experts.p90"][g, layers].numpy(), np.percentile(mine, 90, axis=1),
                                   rtol=1e-5, atol=1e-6)


# --- spec, artifact, resolution ------------------------------------------------------------------

SPEC = """\
schema_version: 1
name: tiny-selections
model: {path: model}
languages: [en, de, fr, zh]
stats:
  corpus: {kind: bible, limit: 4, seed: 2}
  bridge: {k: 2, exclude_last: 1, min_layer: 1}
  selections: {lape: {top_rate: 0.05}, experts: {top_k: 5}}
interventions:
  - {kind: ablate, id: lape_de, layers: {auto: all}, site: mlp.act_fn.output,
     neurons: {from_stats: lape, languages: [de]}, rows: all}
  - {kind: ablate, id: lape_own, layers: {auto: all}, site: mlp.act_fn.output,
     neurons: {from_stats: lape, per_row: true}, rows: all}
  - {kind: set, id: experts_fr, layers: {auto: all}, neurons: {from_stats: experts, languages: [fr]},
     value: median, language: fr, rows: all}
"""


MODEL_ARCH = "gemma3"  # the `model_dir` fixture (conftest.py)


def test_stats_command_stores_selections_and_specs_resolve_them(tmp_path, model_dir, monkeypatch):
    (tmp_path / "wider").mkdir()
    spec_file = spec_folder(tmp_path, model_dir, SPEC)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["stats", str(spec_file), "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    (run_dir,) = runs.iterdir()
    artifact = StatsArtifact.load(run_dir / "stats.safetensors")
    meta = json.loads((run_dir / "stats.json").read_text())["selections"]
    assert meta["requested"] == {"lape": {"top_rate": 0.05, "filter_quantile": 0.95, "activation_bar_quantile": 0.95},
                                 "experts": {"top_k": 5, "site": "mlp.act_fn.output", "layers": None}}
    assert set(meta["language_axis"]) == {"lape.prob", "lape.mask", "experts.ap", "experts.mask", "experts.p50",
                                          "experts.p90"}
    assert list(artifact.tensors["lape.mask"].shape) == [4, 4, 64]
    assert artifact.tensors["lape.mask"].any(0).sum() <= round(0.05 * 4 * 64)
    assert (artifact.tensors["experts.mask"].sum((1, 2)) == 5).all()

    # Reused as is: no second pass over the corpus.
    monkeypatch.setattr(sel_runner, "collect", lambda *a, **k: pytest.fail("selections recomputed"))
    again = CliRunner().invoke(app, ["stats", str(spec_file), "--runs-dir", str(runs)])
    assert again.exit_code == 0, again.output

    # Other LAPE parameters: the selection is redone from the stored probabilities, without a pass over the corpus.
    wider = spec_folder(tmp_path / "wider", model_dir, SPEC.replace("top_rate: 0.05", "top_rate: 0.1"))
    again = CliRunner().invoke(app, ["stats", str(wider), "--runs-dir", str(runs)])
    assert again.exit_code == 0, again.output
    (newer,) = [path for path in runs.iterdir() if path != run_dir]
    redone = StatsArtifact.load(newer / "stats.safetensors")
    assert torch.equal(redone.tensors["lape.prob"], artifact.tensors["lape.prob"])
    assert torch.equal(redone.tensors["experts.ap"].nan_to_num(), artifact.tensors["experts.ap"].nan_to_num())
    want = sel.lape(artifact.tensors["lape.prob"], top_rate=0.1, filter_quantile=0.95, activation_bar_quantile=0.95)[1]
    assert torch.equal(redone.tensors["lape.mask"], want)

    # Language order does not matter: the artifact is reordered with its selections.
    reordered = artifact.for_languages(["zh", "fr", "de", "en"])
    assert torch.equal(reordered.tensors["lape.mask"][0], artifact.tensors["lape.mask"][3])
    assert torch.equal(reordered.tensors["experts.p50"][1], artifact.tensors["experts.p50"][2])

    from transformers import AutoConfig
    spec = load_spec(spec_file)
    config = AutoConfig.from_pretrained(model_dir)
    de, fr = LANGS.index("de"), LANGS.index("fr")
    plan = compile_plan(spec, config, "lape_de", stats=artifact)
    assert [op.layer for op in plan.ops] == [0, 1, 2, 3]
    for op in plan.ops:
        assert torch.equal(op.mask, artifact.tensors["lape.mask"][de, op.layer]) and not op.values.any()
    plan = compile_plan(spec, config, "lape_own", stats=artifact)
    assert torch.equal(plan.ops[0].mask, artifact.tensors["lape.mask"][:, 0])
    plan = compile_plan(spec, config, "experts_fr", stats=artifact)
    chosen = artifact.tensors["experts.mask"][fr]
    assert sorted(op.layer for op in plan.ops) == sorted(set(chosen.nonzero()[:, 0].tolist()))
    for op in plan.ops:
        assert torch.equal(op.mask, chosen[op.layer])
        torch.testing.assert_close(op.values[op.mask], artifact.tensors["experts.p50"][fr, op.layer][op.mask])

    # An artifact without the selection: a compile error that says how to get it.
    bare = StatsArtifact(artifact.languages, {k: v for k, v in artifact.tensors.items() if "." not in k}, {})
    with pytest.raises(CompileError, match="selections: \\[lape\\]"):
        compile_plan(spec, config, "lape_de", stats=bare)


def test_selections_must_be_asked_for():
    data = {**spec_data(LANGS),
            "stats": {"selections": ["lape"]},
            "interventions": [{"kind": "ablate", "layers": [0], "neurons": {"from_stats": "experts"}}]}
    from clas_graph.errors import SpecError
    with pytest.raises(SpecError, match="selections: \\[experts\\]"):
        validate_data(data)
    data["interventions"] = [{"kind": "set", "layers": [0], "neurons": {"from_stats": "lape"}, "value": "median"}]
    with pytest.raises(SpecError, match="pooled-response statistic"):
        validate_data(data)
    data["stats"]["selections"] = ["lapes"]
    with pytest.raises(SpecError, match="unknown selection"):
        validate_data(data)


# --- remote: the selections trace needs nothing of this package on the server -----------------------------------


class _Captured(Exception):
    pass


def test_selection_trace_payload_and_local_simulation_of_remote(samples, tiny_lm):
    from nnsight.schema.request import RequestModel

    from clas_graph.execution.context import use
    from clas_graph.execution.ndif import NdifExecutor

    model = tiny_lm("llama")
    blobs = []

    class Capture(NdifExecutor):
        def call(self, model, fn, *args, call_kwargs):
            def backend(tracer):
                blobs.append(RequestModel.serialize(tracer, compress=False))
                raise _Captured
            with pytest.raises(_Captured):
                fn(model, *args, {**call_kwargs, "backend": backend})
            raise _Captured

    options = dict(lape=True, expert_layers=[1, 3], expert_site="mlp.down_proj.input", batch_size=8, max_length=512,
                   exclude_bos=True)
    with use(Capture(host="capture")), pytest.raises(_Captured):
        sel_runner.collect(model, samples[:2], LANGS, **options)
    assert len(blobs[0]) > 1000 and b"clas_graph" not in blobs[0] and b"clas-graph" not in blobs[0]
    local = sel_runner.collect(model, samples[:2], LANGS, **options)
    with use(NdifExecutor(host="local")):
        remote = sel_runner.collect(model, samples[:2], LANGS, **options)
    for got, want in zip(remote, local):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
