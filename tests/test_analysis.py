"""Analysis runner: every number in analysis.json against an independent computation (plain PyTorch hooks for the
representations; numpy / scipy / scikit-learn directly on the saved representations), caching, and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from reference import ClasRef, clas_hooks, encode
from safetensors.numpy import load_file
from scipy import stats as scipy_stats
from tiny import BOOST_YAML, clas_yaml, spec_data, spec_folder, spec_yaml, tiny_model, tiny_tokenizer
from typer.testing import CliRunner

from clas_graph.cli import app
from clas_graph.data.corpora import load_parallel

LANGS = ["en", "de", "fr", "es", "ru"]
SHARED = {1: [0, 3, 5, 8, 13, 21, 34], 2: [1, 2, 40, 41]}
SPECIFIC = {1: [10, 11, 12], 2: [60]}
ITEMS = 6
ANALYSIS_CORPUS = {"kind": "bible", "limit": ITEMS, "offset": 30, "seed": 0}

SPEC = spec_yaml("tiny-analysis", LANGS, "interventions:\n",
                 clas_yaml(SHARED, SPECIFIC, beta=0.6, gamma=0.4, alpha=3.0), f"""\
tasks:
  - kind: lm_loss
    corpus: {{kind: bible, limit: 3, offset: 10}}
batch_size: 4
analysis:
  corpus: {json.dumps(ANALYSIS_CORPUS)}
  probe: {{folds: 3}}
  tsne: {{perplexity: 5}}
""")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, model_dir):
    folder = tmp_path_factory.mktemp("analysis")
    spec_file = spec_folder(folder, model_dir, SPEC)
    runs = folder / "runs"
    result = CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    (run_dir,) = runs.iterdir()
    return spec_file, runs, run_dir, json.loads((run_dir / "analysis.json").read_text())


def saved(run_dir, condition, layer):
    """The cached representations, in the spec's language order (safetensors sorts its keys)."""
    tensors = load_file(run_dir / "analysis" / f"{condition}_layer{layer}.safetensors")
    return {lang: tensors[lang].astype(np.float64) for lang in LANGS}


def test_run_writes_analysis_json_figures_and_summary(finished):
    _, _, run_dir, doc = finished
    assert doc["schema_version"] == 2 and doc["anchor"] == "en" and doc["conditions"] == ["base", "clas"]
    assert set(doc) == {  # the versioned format: a change here needs a schema_version bump
        "schema_version", "spec_name", "anchor", "languages", "conditions", "layers", "tsne_layer", "metric", "corpus",
        "items", "definitions", "alignment", "separation", "probe", "alignment_mean", "separation_mean",
        "delta_alignment", "delta_separation", "tests", "tsne", "sweep", "relation", "seconds"}
    assert doc["sweep"] is None  # no sweep: nothing was chosen
    assert doc["layers"] == [1, 2]  # default: the layers the condition intervenes on
    assert doc["tsne_layer"] == 2   # default: the penultimate layer of 4
    for name in ("alignment", "relation", "heatmap", "tsne"):
        assert (run_dir / "figures" / f"analysis_{name}.png").stat().st_size > 10_000, name
    summary = (run_dir / "summary.md").read_text()
    assert summary.count("## Analysis") == 1 and "figures/analysis_tsne.png" in summary
    assert "## Findings" in summary  # the evaluation's part is kept


def test_representations_equal_plain_pytorch_hooks(finished, model_dir):
    _, _, run_dir, doc = finished
    hf, tok = tiny_model("llama"), tiny_tokenizer()
    samples = load_parallel("bible", LANGS, **{k: v for k, v in ANALYSIS_CORPUS.items() if k != "kind"})
    assert [s.id for s in samples] == doc["items"]

    def vec(indices):
        m = torch.zeros(64)
        m[indices] = 1.0
        return m

    clas = ClasRef({layer: (vec(SHARED[layer]), vec(SPECIFIC[layer])) for layer in (1, 2)}, beta=0.6, gamma=0.4,
                   alpha=3.0)
    for condition, ref in (("base", None), ("clas", clas)):
        for layer in (1, 2):
            reps = saved(run_dir, condition, layer)
            for lang in LANGS:
                enc = encode(tok, [s.texts[lang] for s in samples])
                with torch.no_grad(), clas_hooks(hf, ref, torch.full((ITEMS,), lang != "en")):
                    hidden = hf(**enc, output_hidden_states=True).hidden_states[layer + 1]
                mask = enc["attention_mask"].clone()
                mask[enc["input_ids"] == tok.bos_token_id] = 0
                expected = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
                np.testing.assert_allclose(reps[lang], expected.double().numpy(), atol=1e-5, rtol=1e-5)
    assert not np.allclose(saved(run_dir, "base", 2)["de"], saved(run_dir, "clas", 2)["de"])
    np.testing.assert_array_equal(saved(run_dir, "base", 2)["en"], saved(run_dir, "clas", 2)["en"])  # anchor kept


def numpy_silhouette(points, labels):
    """Rousseeuw's silhouette with cosine distance, written out: s = (b - a) / max(a, b)."""
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    distance = 1 - unit @ unit.T
    out = np.zeros(len(points))
    for i in range(len(points)):
        own = (labels == labels[i]) & (np.arange(len(points)) != i)
        a = distance[i, own].mean()
        b = min(distance[i, labels == other].mean() for other in set(labels) - {labels[i]})
        out[i] = (b - a) / max(a, b)
    return out


def test_alignment_and_separation_match_numpy(finished):
    _, _, run_dir, doc = finished
    item_cos = {}
    for condition in ("base", "clas"):
        for layer in (1, 2):
            reps = saved(run_dir, condition, layer)
            for lang in LANGS[1:]:
                a, b = reps[lang], reps["en"]
                cos = np.array([x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)])
                item_cos.setdefault((condition, lang), []).append(cos)
                got = doc["alignment"][condition][str(layer)][lang]
                assert got["mean"] == pytest.approx(cos.mean(), abs=1e-9)
                assert got["std"] == pytest.approx(cos.std(ddof=1), abs=1e-9)
            points = np.concatenate([reps[lang] for lang in LANGS])
            labels = np.repeat(np.arange(len(LANGS)), ITEMS)
            sil = numpy_silhouette(points, labels)
            got = doc["separation"][condition][str(layer)]
            assert got["overall"] == pytest.approx(sil.mean(), abs=1e-6)
            for index, lang in enumerate(LANGS):
                assert got["per_language"][lang] == pytest.approx(sil[labels == index].mean(), abs=1e-6)
    for lang in LANGS[1:]:
        for condition in ("base", "clas"):
            layer_mean = np.mean(item_cos[(condition, lang)], axis=0)
            assert doc["alignment_mean"][condition][lang]["mean"] == pytest.approx(layer_mean.mean(), abs=1e-9)
            assert doc["alignment_mean"][condition][lang]["std"] == pytest.approx(layer_mean.std(ddof=1), abs=1e-9)
        expected = np.mean(item_cos[("clas", lang)]) - np.mean(item_cos[("base", lang)])
        assert doc["delta_alignment"]["clas"][lang] == pytest.approx(expected, abs=1e-9)
        sep = [doc["separation"][c][str(layer)]["per_language"][lang] for c in ("clas", "base") for layer in (1, 2)]
        assert doc["delta_separation"]["clas"][lang] == pytest.approx((sep[0] + sep[1] - sep[2] - sep[3]) / 2)
    base = [doc["alignment_mean"]["base"][lang]["mean"] for lang in LANGS[1:]]
    after = [doc["alignment_mean"]["clas"][lang]["mean"] for lang in LANGS[1:]]
    assert doc["tests"]["clas"]["alignment"]["p"] == pytest.approx(scipy_stats.ttest_rel(after, base).pvalue)


def test_relation_matches_an_independent_fit(finished):
    _, _, run_dir, doc = finished
    metrics = json.loads((run_dir / "metrics.json").read_text())["tasks"]["lm_loss"]
    entry = doc["relation"]["lm_loss"]["clas"]
    languages = LANGS[1:]
    gain = np.array([-metrics["delta"]["clas"][lang] for lang in languages])  # loss: lower is better
    assert [entry["gain"][lang] for lang in languages] == pytest.approx(gain)
    for key in ("alignment", "separation"):
        y = np.array([doc[f"delta_{key}"]["clas"][lang] for lang in languages])
        slope, intercept = np.polyfit(gain, y, 1)
        r, p = scipy_stats.pearsonr(gain, y)
        fit = entry[key]
        assert (fit["slope"], fit["intercept"], fit["r"], fit["p"], fit["n"]) == pytest.approx(
            (slope, intercept, r, p, len(languages)), rel=1e-6, abs=1e-12)


def test_probe_and_tsne(finished):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from clas_graph.eval.geometry import tsne

    _, _, run_dir, doc = finished
    reps = saved(run_dir, "clas", 1)
    points = np.concatenate([reps[lang] for lang in LANGS])
    labels = np.repeat(np.arange(len(LANGS)), ITEMS)
    scores = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), points, labels,
                             cv=StratifiedKFold(3, shuffle=True, random_state=0))
    assert doc["probe"]["clas"]["1"]["mean"] == pytest.approx(scores.mean())
    assert doc["probe"]["clas"]["1"]["chance"] == pytest.approx(1 / len(LANGS))
    entry = doc["tsne"]["clas"]
    for lang in LANGS:
        assert len(entry["points"][lang]) == ITEMS
        assert entry["centroids"][lang] == pytest.approx(np.mean(entry["points"][lang], axis=0), abs=1e-3)
    again = tsne(saved(run_dir, "clas", 2), metric="cosine", perplexity=5, seed=0)  # fixed seed: reproducible
    assert again["points"] == entry["points"]


def test_analyze_reuses_cached_representations(finished, monkeypatch):
    spec_file, runs, run_dir, doc = finished

    def no_model_calls(*args, **kwargs):
        raise AssertionError("representations should come from the cache")

    monkeypatch.setattr("clas_graph.runners.analyze.pooled_hidden", no_model_calls)
    result = CliRunner().invoke(app, ["analyze", str(spec_file), "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    again = json.loads((run_dir / "analysis.json").read_text())
    assert again["delta_alignment"] == doc["delta_alignment"] and again["relation"] == doc["relation"]
    assert (run_dir / "summary.md").read_text().count("## Analysis") == 1  # the section is replaced, not added


def _fails(tmp_path, model_dir, spec_text, *args):
    spec_file = spec_folder(tmp_path, model_dir, spec_text)
    runs = [] if args == ("validate",) else ["--runs-dir", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, [*args, str(spec_file), *runs])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.stderr.split())


def test_layer_out_of_range_fails_before_evaluation(tmp_path, model_dir):
    message = _fails(tmp_path, model_dir, SPEC + "  layers: [1, 9]\n", "run")
    assert "analysis.layers" in message and "layer 9 is out of range: the model has 4 layers" in message
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "metrics.json").exists()  # refused before any evaluation


def test_language_without_parallel_text(tmp_path, model_dir):
    spec = SPEC.replace(json.dumps(LANGS), json.dumps(LANGS + ["ja"])) + "  relation: false\n"
    message = _fails(tmp_path, model_dir, spec, "analyze")
    # caught at validation, before any model work: the spec's languages are checked against its offline corpora
    assert "languages[5]" in message and "'ja'" in message and "Bible" in message and "Fix:" in message


def test_analyze_without_metrics_creates_nothing(tmp_path, model_dir):
    message = _fails(tmp_path, model_dir, SPEC, "analyze")
    assert "analysis.relation" in message and "no evaluated run" in message and "clas-graph run" in message
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_spec_errors_name_the_field(tmp_path, model_dir):
    message = _fails(tmp_path, model_dir, SPEC + "  conditions: [clsa]\n", "validate")
    assert "analysis.conditions[0]" in message and "unknown condition 'clsa'" in message
    (tmp_path / "second").mkdir()
    message = _fails(tmp_path / "second", model_dir, SPEC + "  languages: [de, fr]\n", "validate")
    assert "analysis.languages" in message and "anchor 'en' must be analysed" in message


def test_geometry_edge_cases():
    from clas_graph.eval import geometry

    assert geometry.regression([1.0, 2.0], [3.0, 4.0])["slope"] is None          # fewer than 3 points
    assert geometry.regression([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])["p"] is None     # no spread in the gains
    rng = np.random.default_rng(0)
    centres = {lang: rng.normal(size=16) * 10 for lang in ("en", "de", "fr")}
    clusters = {lang: c + rng.normal(size=(8, 16)) * 0.01 for lang, c in centres.items()}
    assert geometry.silhouette(clusters)["overall"] > 0.95
    assert geometry.probe_accuracy(clusters, folds=10, seed=0, max_iter=500)["folds"] == 8  # capped at items
    same = {"en": clusters["en"], "de": clusters["en"] * 3.0}
    assert geometry.cosine_to_anchor(same, "en")["de"]["mean"] == pytest.approx(1.0)


def test_findings_say_no_relation_unless_significant():
    from clas_graph.eval.geometry import regression
    from clas_graph.report.analysis import findings

    langs = ["de", "fr", "es", "ru", "zh", "ar"]
    gain = {lang: float(i) for i, lang in enumerate(langs)}
    separation = {lang: 0.01 * i for i, lang in enumerate(langs)}          # rises exactly with the gain
    alignment = {lang: v for lang, v in zip(langs, [0.3, -0.2, 0.1, 0.25, -0.3, 0.05])}  # unrelated
    x = list(gain.values())
    test = {"mean_delta": 0.0, "n": 6, "p": 0.5}
    doc = {"anchor": "en", "layers": [3], "conditions": ["base", "c"], "metric": "cosine",
           "tests": {"c": {"alignment": test, "separation": test, "overall_separation_delta": 0.0}},
           "delta_alignment": {"c": alignment}, "delta_separation": {"c": separation},
           "separation_mean": {"base": {"overall": 0.1}},
           "relation": {"t": {"c": {"gain": gain, "primary": "f1", "higher_is_better": True,
                                    "alignment": regression(x, list(alignment.values())),
                                    "separation": regression(x, list(separation.values()))}}}}
    text = "\n".join(findings(doc))
    assert "no relation between Δalignment and the gain" in text
    assert "Δseparation rises with the gain" in text and "is supported" in text


def test_analysis_section_is_not_part_of_the_run_identity(tmp_path, model_dir):
    from clas_graph.records import spec_hash
    from clas_graph.spec.load import load_spec

    with_analysis = load_spec(spec_folder(tmp_path, model_dir, SPEC))
    (tmp_path / "plain").mkdir()
    without = load_spec(spec_folder(tmp_path / "plain", model_dir, SPEC.split("analysis:")[0]))
    assert with_analysis.analysis is not None and without.analysis is None
    assert spec_hash(with_analysis) == spec_hash(without)  # editing the analysis reuses the evaluation


def test_representations_through_the_remote_path_equal_local(tmp_path):
    """nnsight's local simulation of remote execution (serialize, run, deserialize) gives the same vectors."""
    import clas_graph
    from clas_graph.execution.context import use
    from clas_graph.execution.ndif import NdifExecutor
    from clas_graph.loading import wrap
    from clas_graph.runners.analyze import representations
    from clas_graph.spec.load import validate_data

    model = wrap(tiny_model("llama"), tiny_tokenizer())
    spec = validate_data(spec_data(LANGS[:3], interventions=[{"kind": "clas", "layers": [1],
                                                              "shared": {"neurons": {1: [1, 2]}},
                                                              "specific": {"neurons": {1: [5]}}}],
                                   analysis={"corpus": {"kind": "bible", "limit": 3}}))
    plan = clas_graph.compile_plan(spec, model, "clas")
    samples = load_parallel("bible", LANGS[:3], limit=3)
    local = representations(spec, model, plan, 1, samples, LANGS[:3], tmp_path / "local")
    with use(NdifExecutor(host="local")):
        remote = representations(spec, model, plan, 1, samples, LANGS[:3], tmp_path / "remote")
    for lang in LANGS[:3]:
        np.testing.assert_allclose(remote[lang], local[lang], atol=1e-6, rtol=0)


# --- the analysis of a sweep: base, the baselines and each task's chosen point, on the test phase's metrics ---

# Two tasks that choose different grid points on their dev items (retrieval alpha=1, LM loss alpha=-3; checked
# below), so a relation that used another task's point, or an unchosen point, would show.
SWEEP_SPEC = spec_yaml("tiny-sweep-analysis", LANGS, "interventions:\n",
                       clas_yaml(SHARED, SPECIFIC, beta=0.6, gamma=0.4), BOOST_YAML, f"""\
sweep: {{clas.alpha: [1, -3, 0.5]}}
tasks:
  - kind: retrieval
    layer: 3
    corpus: {{kind: bible, limit: 4, offset: 20, seed: 0}}
  - kind: lm_loss
    corpus: {{kind: bible, limit: 3, offset: 10, seed: 0}}
batch_size: 4
analysis:
  corpus: {json.dumps(ANALYSIS_CORPUS)}
  tsne: {{perplexity: 5}}
""")
GRID = ["clas[alpha=1]", "clas[alpha=-3]", "clas[alpha=0.5]"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory, model_dir):
    folder = tmp_path_factory.mktemp("sweep-analysis")
    spec_file = spec_folder(folder, model_dir, SWEEP_SPEC)
    result = CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(folder / "runs")])
    assert result.exit_code == 0, result.output
    (run_dir,) = (folder / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return run_dir, metrics, json.loads((run_dir / "analysis.json").read_text())


def test_sweep_analysis_compares_the_chosen_points_only(swept):
    run_dir, metrics, doc = swept
    chosen = {key: task["chosen"] for key, task in metrics["sweep"]["tasks"].items()}
    assert chosen == {"retrieval": {"clas": "clas[alpha=1]"}, "lm_loss": {"clas": "clas[alpha=-3]"}}
    assert doc["conditions"] == ["base", "boost", "clas[alpha=1]", "clas[alpha=-3]"]  # each distinct point once
    assert doc["sweep"] == {"chosen": chosen, "baselines": ["boost"]}
    text = json.dumps(doc)
    assert "clas[alpha=0.5]" not in text  # never chosen: not analysed, not even named
    assert not list((run_dir / "analysis").glob("clas[[]alpha=0.5[]]_*"))
    assert {p.name for p in (run_dir / "analysis").glob("clas*_layer1.safetensors")} == {
        "clas[alpha=1]_layer1.safetensors", "clas[alpha=-3]_layer1.safetensors"}
    for condition in ("boost", "clas[alpha=1]", "clas[alpha=-3]"):
        assert set(doc["delta_alignment"][condition]) == set(LANGS[1:])
    summary = (run_dir / "summary.md").read_text()
    assert "retrieval → `clas[alpha=1]`; lm_loss → `clas[alpha=-3]`" in summary
    assert "baselines (`boost`)" in summary and summary.count("## Analysis") == 1
    assert "## Sweep: chosen on dev items" in summary  # the sweep's own report is kept
    for name in ("alignment", "relation", "heatmap", "tsne"):
        assert (run_dir / "figures" / f"analysis_{name}.png").stat().st_size > 10_000, name


def test_sweep_relation_uses_each_tasks_own_chosen_point_and_its_test_metrics(swept):
    _, metrics, doc = swept
    languages = LANGS[1:]
    for key, task in metrics["tasks"].items():
        point = metrics["sweep"]["tasks"][key]["chosen"]["clas"]
        assert set(doc["relation"][key]) == {"boost", point}  # not the other task's point
        sign = 1.0 if task["higher_is_better"] else -1.0
        gain = np.array([sign * task["delta"][point][lang] for lang in languages])
        assert np.ptp(gain) > 0, key  # a fit exists, so the comparison below means something
        entry = doc["relation"][key][point]
        assert [entry["gain"][lang] for lang in languages] == pytest.approx(gain, abs=1e-12)
        for what in ("alignment", "separation"):
            y = np.array([doc[f"delta_{what}"][point][lang] for lang in languages])
            fit = scipy_stats.linregress(gain, y)
            assert (entry[what]["slope"], entry[what]["intercept"], entry[what]["r"], entry[what]["p"]) == \
                pytest.approx((fit.slope, fit.intercept, fit.rvalue, fit.pvalue), rel=1e-9, abs=1e-12)


def test_sweep_analysis_reads_the_chosen_points_representations(swept):
    """The vectors analysed as `clas[alpha=-3]` are those of CLAS at alpha = -3 (plain PyTorch hooks)."""
    run_dir, _, _ = swept
    hf, tok = tiny_model("llama"), tiny_tokenizer()
    samples = load_parallel("bible", LANGS, **{k: v for k, v in ANALYSIS_CORPUS.items() if k != "kind"})

    def vec(indices):
        m = torch.zeros(64)
        m[indices] = 1.0
        return m

    clas = ClasRef({layer: (vec(SHARED[layer]), vec(SPECIFIC[layer])) for layer in (1, 2)}, beta=0.6, gamma=0.4,
                   alpha=-3.0)
    enc = encode(tok, [s.texts["de"] for s in samples])
    with torch.no_grad(), clas_hooks(hf, clas, torch.ones(ITEMS, dtype=torch.bool)):
        hidden = hf(**enc, output_hidden_states=True).hidden_states[3]
    mask = enc["attention_mask"].clone()
    mask[enc["input_ids"] == tok.bos_token_id] = 0
    expected = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    np.testing.assert_allclose(saved(run_dir, "clas[alpha=-3]", 2)["de"], expected.double().numpy(),
                               atol=1e-5, rtol=1e-5)


def test_analyze_after_a_sweep_compiles_and_reads_only_the_chosen_points(swept, monkeypatch):
    from clas_graph.runners import analyze as analyze_module

    run_dir, _, doc = swept
    compiled = []
    compile_condition = analyze_module.compile_condition

    def record(expansion, model, name, stats=None):
        compiled.append(name)
        return compile_condition(expansion, model, name, stats)

    monkeypatch.setattr(analyze_module, "compile_condition", record)
    monkeypatch.setattr("clas_graph.runners.analyze.pooled_hidden",
                        lambda *a, **k: pytest.fail("representations should come from the cache"))
    spec_file = run_dir.parent.parent / "spec.yaml"
    result = CliRunner().invoke(app, ["analyze", str(spec_file), "--runs-dir", str(run_dir.parent)])
    assert result.exit_code == 0, result.output
    assert compiled == ["base", "boost", "clas[alpha=1]", "clas[alpha=-3]"]
    again = json.loads((run_dir / "analysis.json").read_text())
    assert again["sweep"] == doc["sweep"] and again["relation"] == doc["relation"]


def test_which_conditions_a_sweep_analysis_compares(tmp_path, model_dir):
    from clas_graph.runners.analyze_sweep import candidate_conditions, chosen_conditions
    from clas_graph.spec.load import load_spec

    spec = load_spec(spec_folder(tmp_path, model_dir, SWEEP_SPEC))
    same = {"retrieval": {"clas": "clas[alpha=1]"}, "lm_loss": {"clas": "clas[alpha=1]"}}
    assert chosen_conditions(spec, same) == (["boost", "clas[alpha=1]"], {
        "retrieval": ["boost", "clas[alpha=1]"], "lm_loss": ["boost", "clas[alpha=1]"]})
    assert candidate_conditions(spec) == ["boost", *GRID]  # before the choice: what the layer check covers
    (tmp_path / "only").mkdir()
    only = load_spec(spec_folder(tmp_path / "only", model_dir, SWEEP_SPEC + "  conditions: [clas]\n"))
    assert chosen_conditions(only, same) == (["clas[alpha=1]"], {"retrieval": ["clas[alpha=1]"],
                                                                 "lm_loss": ["clas[alpha=1]"]})


def _one_line_exit_2(result) -> str:
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert "Traceback" not in result.output and len(message.splitlines()) == 1, message
    return message


def test_analyze_before_the_sweep_finished_exits_2(tmp_path, model_dir, monkeypatch):
    from clas_graph.runners import sweep as sweep_module
    from clas_graph.tasks.base import TEST

    spec_file = spec_folder(tmp_path, model_dir, SWEEP_SPEC)
    runs = tmp_path / "runs"
    never_run = _one_line_exit_2(CliRunner().invoke(app, ["analyze", str(spec_file), "--runs-dir", str(runs)]))
    assert "no choice is recorded yet" in never_run and "Fix: run `clas-graph run SPEC` first" in never_run
    assert not runs.exists() or not any(runs.iterdir())  # refused before a run directory is made

    evaluate = sweep_module.evaluate

    def stop_at_the_test_phase(*args, split, **kwargs):
        if split == TEST:
            raise KeyboardInterrupt
        return evaluate(*args, split=split, **kwargs)

    monkeypatch.setattr(sweep_module, "evaluate", stop_at_the_test_phase)
    interrupted = CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)])
    assert interrupted.exit_code == 130, interrupted.output
    (run_dir,) = runs.iterdir()
    assert (run_dir / "dev" / "metrics.json").is_file() and not (run_dir / "metrics.json").exists()
    message = _one_line_exit_2(CliRunner().invoke(app, ["analyze", str(spec_file), "--runs-dir", str(runs)]))
    assert f"{run_dir / 'metrics.json'}: the analysis of a sweep compares each task's chosen grid point, but no " \
           "choice is recorded yet (the sweep's test phase has not finished)" in message
    assert "Fix: run `clas-graph run SPEC` first" in message
    assert not (run_dir / "analysis").exists() and not (run_dir / "analysis.json").exists()


def test_analyze_refuses_a_choice_made_on_another_grid(tmp_path, model_dir, swept):
    run_dir, _, _ = swept
    shutil.copytree(run_dir, tmp_path / "runs" / run_dir.name)
    wider = spec_folder(tmp_path, model_dir, SWEEP_SPEC.replace("[1, -3, 0.5]", "[1, -3, 0.5, 2]"))
    message = _one_line_exit_2(CliRunner().invoke(app, ["analyze", str(wider), "--runs-dir", str(tmp_path / "runs")]))
    assert "the recorded choice was made on another sweep grid or `select:` rule than the spec's" in message
    assert "clas-graph run SPEC" in message


def test_sweep_analysis_layer_out_of_range_fails_before_the_dev_phase(tmp_path, model_dir):
    message = _fails(tmp_path, model_dir, SWEEP_SPEC + "  layers: [1, 9]\n", "run")
    assert "analysis.layers" in message and "layer 9 is out of range: the model has 4 layers" in message
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "dev").exists()  # refused before any grid point was evaluated
