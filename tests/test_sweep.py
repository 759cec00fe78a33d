"""Sweeps: expansion into conditions, malformed sweeps through the CLI, dev/test disjointness per task kind,
and a sweep run on a tiny model whose choice is checked against an independent hook computation."""

from __future__ import annotations

import json

import pytest
import torch
from reference import ClasRef, ref_last_logits
from tiny import BOOST_YAML, clas_yaml, spec_folder, spec_yaml, tiny_model, tiny_tokenizer
from typer.testing import CliRunner

from clas_graph.cli import app
from clas_graph.errors import DataError
from clas_graph.records import spec_hash
from clas_graph.spec.load import load_spec
from clas_graph.spec.sweep import expand
from clas_graph.tasks.base import DEV, TEST, check_disjoint, item_ids
from clas_graph.tasks.lm_loss import LmLossRunner
from clas_graph.tasks.next_token import NextTokenRunner

runner = CliRunner()
LANGS = ["en", "de", "fr"]
SHARED = {1: [0, 3, 5, 8, 13, 21, 34], 2: [1, 2, 40, 41]}
SPECIFIC = {1: [10, 11, 12], 2: [60]}

BASE = spec_yaml("tiny-sweep", LANGS, "interventions:\n", clas_yaml(SHARED, SPECIFIC, beta=0.6, gamma=0.4), BOOST_YAML,
                 model="{path: model, chat_template: none}")
TASKS = """\
tasks:
  - kind: next_token
    corpus: {kind: bible, limit: 3, offset: 20, seed: 0}
  - kind: lm_loss
    corpus: {kind: bible, limit: 2, offset: 40, seed: 0}
batch_size: 4
"""
SPEC = BASE + "sweep:\n  clas.alpha: [-1, 0.5, 1]\n" + TASKS


# --- expansion -------------------------------------------------------------------------------


def test_expansion_gives_readable_stable_ids_and_keeps_unswept_conditions_as_baselines(write):
    text = BASE + ("conditions: {clas: [clas], both: [clas, boost], boost: [boost]}\n"
                   "sweep: {clas.alpha: [-1, 0.5, 1.0], clas.beta: [0.4]}\n")
    expansion = expand(load_spec(write("s.yaml", text)))
    conditions = expansion.spec.resolved_conditions
    assert [p.condition for p in expansion.points] == [
        "clas[alpha=-1,beta=0.4]", "clas[alpha=0.5,beta=0.4]", "clas[alpha=1,beta=0.4]",
        "both[alpha=-1,beta=0.4]", "both[alpha=0.5,beta=0.4]", "both[alpha=1,beta=0.4]"]
    assert expansion.baselines == ["boost"] and conditions["boost"] == ["boost"]
    assert conditions["both[alpha=0.5,beta=0.4]"] == ["clas[alpha=0.5,beta=0.4]", "boost"]  # order kept
    assert "clas" not in conditions  # a swept condition is replaced by its grid points
    variant = expansion.spec.intervention("clas[alpha=-1,beta=0.4]")
    assert (variant.alpha, variant.beta, variant.gamma) == (-1.0, 0.4, 0.4)
    # 1 and 1.0 are the same point, so the same id: a rerun written either way reuses its units
    again = expand(load_spec(write("t.yaml", text.replace("1.0]", "1]"))))
    assert [p.condition for p in again.points] == [p.condition for p in expansion.points]


def test_a_list_of_grids_joins_their_points_once(write):
    text = BASE + ("sweep:\n  - {clas.beta: [0, 0.2], clas.gamma: [0]}\n"
                   "  - {clas.beta: [0], clas.gamma: [0, 0.1]}\n")
    expansion = expand(load_spec(write("s.yaml", text)))
    assert [p.condition for p in expansion.points] == [
        "clas[beta=0,gamma=0]", "clas[beta=0.2,gamma=0]", "clas[beta=0,gamma=0.1]"]


def test_widening_the_grid_keeps_the_run_identity(write):
    narrow = load_spec(write("a.yaml", SPEC))
    wide = load_spec(write("b.yaml", SPEC.replace("[-1, 0.5, 1]", "[-2, -1, 0.5, 1, 2]")))
    assert spec_hash(narrow) == spec_hash(wide)
    assert spec_hash(narrow) != spec_hash(load_spec(write("c.yaml", SPEC.replace("gamma: 0.4", "gamma: 0.3"))))


# --- malformed sweeps: one line, exit 2 ---------------------------------------------------------

BAD = [
    ("unknown_field", "sweep: {clas.alpah: [1]}\n", ["sweep.clas.alpah", "no field 'alpah'", "did you mean 'alpha'"]),
    ("unknown_id", "sweep: {clsa.alpha: [1]}\n", ["sweep.clsa.alpha", "unknown intervention id 'clsa'", "'clas'"]),
    ("field_of_other_kind", "sweep: {boost.alpha: [1]}\n", ["sweep.boost.alpha", "(scale) has no field 'alpha'"]),
    ("empty_values", "sweep: {clas.alpha: []}\n", ["sweep.clas.alpha", "empty list of values"]),
    ("empty_grid", "sweep: {}\n", ["sweep", "empty sweep grid"]),
    ("wrong_type", "sweep: {clas.alpha: [0.5, lots]}\n", ["sweep.clas.alpha[1]", "'lots'", "valid number"]),
    ("rejected_value", "sweep: {clas.rows: [all, sometimes]}\n", ["sweep.clas.rows[1]", "'sometimes'", "non_anchor"]),
    ("structured_value", "sweep: {clas.alpha: [{a: 1}]}\n", ["sweep.clas.alpha[0]", "not a number"]),
    ("bad_key", "sweep: {alpha: [1]}\n", ["sweep.alpha", "INTERVENTION_ID.FIELD"]),
    ("not_a_grid", "sweep: 3\n", ["sweep", "a sweep is a mapping"]),
    ("kind_not_sweepable", "sweep: {clas.kind: [scale]}\n", ["sweep.clas.kind", "no field 'kind'"]),
    ("unused", "conditions: {boost: [boost]}\nsweep: {clas.alpha: [1]}\n", ["sweep.clas.alpha", "in no condition"]),
    ("select_without_sweep", "select: {languages: all}\n", ["select", "needs a `sweep:`"]),
    ("unknown_select_key", "sweep: {clas.alpha: [1]}\nselect: {metrc: loss}\n", ["select.metrc", "unknown key"]),
    ("dev_overlaps_test", "sweep: {clas.alpha: [1]}\ntasks:\n  - kind: lm_loss\n"
     "    corpus: {kind: bible, limit: 4, offset: 10}\n    dev: {offset: 12}\n",
     ["tasks[0].dev.offset", "overlaps the test slice [10, 14)", "Start it at 14"]),
]


@pytest.mark.parametrize("name,tail,needles", BAD, ids=[b[0] for b in BAD])
def test_malformed_sweep_is_one_line_and_exit_2(write, name, tail, needles):
    path = write("bad.yaml", BASE + tail)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert "Traceback" not in result.output and len(message.splitlines()) == 1, message
    assert "bad.yaml:" in message
    for needle in needles:
        assert needle in message, (needle, message)


# --- dev items are never test items -------------------------------------------------------------


def _xnli(write, name, n, lang):
    rows = [{"premise": f"{lang} p{i}", "hypothesis": f"{lang} h{i}", "label": i % 3} for i in range(n)]
    return str(write(name, "".join(json.dumps(r) + "\n" for r in rows)))


def _xquad(write, name, n, lang):
    rows = [{"id": f"q{i}", "context": f"{lang} c{i}", "question": f"{lang} q{i}?",
             "answers": {"text": [f"a{i}"], "answer_start": [0]}} for i in range(n)]
    return str(write(name, "".join(json.dumps(r) + "\n" for r in rows)))


def _task(write, text):
    return load_spec(write("s.yaml", BASE + "sweep: {clas.alpha: [1]}\ntasks:\n" + text)).tasks[0]


def _split_ids(task, languages, split):
    return {lang: item_ids(task, languages, lang, split) for lang in languages}


def test_xnli_dev_from_the_test_files_leaves_out_the_test_rows(write):
    files = {lang: _xnli(write, f"x_{lang}.jsonl", 30, lang) for lang in LANGS}
    task = _task(write, f"  - {{kind: xnli, limit: 10, data_files: {json.dumps(files)}, dev: {{limit: 20}}}}\n")
    test, dev = _split_ids(task, LANGS, TEST), _split_ids(task, LANGS, DEV)
    for lang in LANGS:
        assert len(test[lang]) == 10 and len(dev[lang]) == 20
        assert not set(dev[lang]) & set(test[lang])
        assert set(dev[lang]) | set(test[lang]) == {f"test-{i}" for i in range(30)}  # same id space: all rows
    assert dev["de"] == dev["fr"]  # the same items in every language
    check_disjoint(task, LANGS)
    too_many = _task(write, f"  - {{kind: xnli, limit: 10, data_files: {json.dumps(files)}, dev: {{limit: 21}}}}\n")
    with pytest.raises(DataError, match="20 rows after leaving out the 10 test items"):
        item_ids(too_many, LANGS, "de", DEV)


def test_xnli_dev_from_its_own_split_files_and_the_same_file_named_twice(write):
    test_files = {lang: _xnli(write, f"t_{lang}.jsonl", 12, lang) for lang in LANGS}
    dev_files = {lang: _xnli(write, f"v_{lang}.jsonl", 12, lang) for lang in LANGS}
    task = _task(write, f"  - {{kind: xnli, limit: 6, data_files: {json.dumps(test_files)}, "
                        f"dev: {{limit: 6, data_files: {json.dumps(dev_files)}}}}}\n")
    assert all(i.startswith("validation-") for i in item_ids(task, LANGS, "de", DEV))
    check_disjoint(task, LANGS)
    # The test files given again as dev files are the same rows: they must be left out, not reused.
    same = _task(write, f"  - {{kind: xnli, limit: 6, data_files: {json.dumps(test_files)}, "
                        f"dev: {{limit: 6, data_files: {json.dumps(test_files)}}}}}\n")
    for lang in LANGS:
        dev = item_ids(same, LANGS, lang, DEV)
        assert not set(dev) & set(item_ids(same, LANGS, lang, TEST)) and len(dev) == 6


def test_xquad_dev_is_disjoint_from_the_test_questions(write):
    files = {lang: _xquad(write, f"q_{lang}.jsonl", 25, lang) for lang in LANGS}
    task = _task(write, f"  - {{kind: xquad, limit: 8, data_files: {json.dumps(files)}, "
                        "dev: {limit: 15, seed: 3}}\n")
    test, dev = _split_ids(task, LANGS, TEST), _split_ids(task, LANGS, DEV)
    for lang in LANGS:
        assert len(dev[lang]) == 15 and not set(dev[lang]) & set(test[lang])
    assert dev["en"] == dev["de"] == dev["fr"]
    check_disjoint(task, LANGS)


@pytest.mark.parametrize("kind", ["lm_loss", "retrieval", "next_token"])
def test_corpus_dev_slice_is_disjoint_from_the_test_slice(write, kind):
    default = _task(write, f"  - {{kind: {kind}, corpus: {{kind: bible, limit: 5, offset: 100}}}}\n")
    test, dev = item_ids(default, LANGS, "de", TEST), item_ids(default, LANGS, "de", DEV)
    assert len(test) == len(dev) == 5 and not set(test) & set(dev)
    # the dev slice is the next slice of the same seeded order
    following = item_ids(_task(write, f"  - {{kind: {kind}, corpus: {{kind: bible, limit: 5, offset: 105}}}}\n"),
                         LANGS, "de", TEST)
    assert dev == following
    explicit = _task(write, f"  - {{kind: {kind}, corpus: {{kind: bible, limit: 5, offset: 100}}, "
                            "dev: {offset: 50, limit: 7}}\n")
    assert len(item_ids(explicit, LANGS, "de", DEV)) == 7
    check_disjoint(explicit, LANGS)


# --- a sweep run on a tiny model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory, model_dir):
    folder = tmp_path_factory.mktemp("sweep")
    spec_file = spec_folder(folder, model_dir, SPEC)
    result = runner.invoke(app, ["run", str(spec_file), "--runs-dir", str(folder / "runs")])
    assert result.exit_code == 0, result.output
    (run_dir,) = (folder / "runs").iterdir()
    return spec_file, run_dir


def _rows(path):
    return [json.loads(line) for line in path.open()]


def test_sweep_run_records_dev_scores_choice_and_held_out_comparison(finished):
    _, run_dir = finished
    metrics = json.loads((run_dir / "metrics.json").read_text())
    sweep = metrics["sweep"]
    points = ["clas[alpha=-1]", "clas[alpha=0.5]", "clas[alpha=1]"]
    assert [p["condition"] for p in sweep["points"]] == points and sweep["baselines"] == ["boost"]
    assert sweep["rule"] == {"metric": None, "languages": "non_anchor", "goal": "auto"}
    dev = json.loads((run_dir / "dev" / "metrics.json").read_text())
    for key, task in sweep["tasks"].items():
        assert set(task["points"]) == set(points) and task["languages"] == ["de", "fr"]
        chosen = task["chosen"]["clas"]
        # test phase: base, the baseline and only this task's chosen point
        assert set(metrics["tasks"][key]["per_language"]) == {"base", "boost", chosen}
        # dev phase: base and every grid point, never the baseline
        assert set(dev["tasks"][key]["per_language"]) == {"base", *points}
        for name in points:  # the recorded dev mean is the mean of the dev units
            per_lang = dev["tasks"][key]["per_language"][name]
            primary = dev["tasks"][key]["primary"]
            mean = (per_lang["de"][primary] + per_lang["fr"][primary]) / 2
            assert task["points"][name]["mean"] == pytest.approx(mean)
    units = {p.name for p in (run_dir / "units").iterdir()}
    assert ("lm_loss_de_clas[alpha=0.5].json" not in units
            or sweep["tasks"]["lm_loss"]["chosen"]["clas"] == "clas[alpha=0.5]")
    summary = (run_dir / "summary.md").read_text()
    assert "## Sweep: chosen on dev items, reported on held-out items" in summary
    assert f"chose `{sweep['tasks']['lm_loss']['chosen']['clas']}`" in summary and "### next_token" in summary
    assert (run_dir / "figures" / "sweep_clas_alpha.png").stat().st_size > 1000


def test_no_dev_sample_is_a_test_sample(finished):
    _, run_dir = finished
    for task in ("next_token", "lm_loss"):
        for lang in LANGS:
            dev = {r["id"] for r in _rows(run_dir / "dev" / "samples" / f"{task}_{lang}_base.jsonl")}
            test = {r["id"] for r in _rows(run_dir / "samples" / f"{task}_{lang}_base.jsonl")}
            assert dev and test and not dev & test, (task, lang)


def test_choice_and_dev_scores_equal_an_independent_hook_computation(finished):
    """Recompute every grid point's dev log p(gold) with plain PyTorch hooks and choose from those numbers."""
    _, run_dir = finished
    hf, tok = tiny_model("llama"), tiny_tokenizer()

    def mask(indices):
        m = torch.zeros(64)
        m[indices] = 1.0
        return m

    means = {}
    for alpha in (-1.0, 0.5, 1.0):
        ref = ClasRef({layer: (mask(SHARED[layer]), mask(SPECIFIC.get(layer, []))) for layer in (1, 2)},
                      beta=0.6, gamma=0.4, alpha=alpha)
        name = f"clas[alpha={alpha:g}]"
        per_lang = []
        for lang in ("de", "fr"):
            rows = _rows(run_dir / "dev" / "samples" / f"next_token_{lang}_{name}.jsonl")
            logp = torch.log_softmax(ref_last_logits(hf, tok, [r["prompt"] for r in rows], [True] * len(rows), ref), -1)
            gold = [logp[i, r["gold_token"]].item() for i, r in enumerate(rows) if r["gold_token"] is not None]
            for r, value in zip([r for r in rows if r["gold_token"] is not None], gold):
                assert r["gold_logprob"] == pytest.approx(value, abs=1e-5)
            per_lang.append(sum(gold) / len(gold))
        means[name] = sum(per_lang) / 2
    task = json.loads((run_dir / "metrics.json").read_text())["sweep"]["tasks"]["next_token"]
    for name, value in means.items():
        assert task["points"][name]["mean"] == pytest.approx(value, abs=1e-5)
    assert task["chosen"]["clas"] == max(means, key=means.get)


def test_widened_grid_reuses_the_finished_points(finished, monkeypatch):
    spec_file, run_dir = finished
    spec_file.write_text(SPEC.replace("[-1, 0.5, 1]", "[-1, 0.5, 1, 2]"))
    calls = []
    for cls in (NextTokenRunner, LmLossRunner):
        original = cls.run_many  # the evaluation loop runs all unfinished conditions of a (task, language) at once

        def record(self, model, plans, language, _original=original):
            calls.extend((self.split, name) for name in plans)
            return _original(self, model, plans, language)

        monkeypatch.setattr(cls, "run_many", record)
    try:
        result = runner.invoke(app, ["run", str(spec_file), "--runs-dir", str(run_dir.parent)])
    finally:
        spec_file.write_text(SPEC)
    assert result.exit_code == 0, result.output
    assert len(list(run_dir.parent.iterdir())) == 1  # same run directory
    dev_calls = [c for s, c in calls if s == DEV]
    assert dev_calls == ["clas[alpha=2]"] * len(dev_calls) and len(dev_calls) == 2 * len(LANGS)
    chosen = json.loads((run_dir / "metrics.json").read_text())["sweep"]["tasks"]
    for split, condition in calls:  # the test phase runs only a newly chosen point, nothing already finished
        if split == TEST:
            assert condition == "clas[alpha=2]" and any(t["chosen"]["clas"] == condition for t in chosen.values())


def test_compile_lists_the_expanded_conditions_and_names_a_grid_point_that_does_not_fit(tmp_path, model_dir):
    spec_file = spec_folder(tmp_path, model_dir, SPEC)
    result = runner.invoke(app, ["compile", str(spec_file)])
    assert result.exit_code == 0, result.output
    for name in ("clas[alpha=-1]", "clas[alpha=0.5]", "clas[alpha=1]", "boost"):
        assert f"plan '{name}'" in result.output
    assert "3 grid point(s) over clas.alpha" in result.output
    spec_file.write_text(SPEC.replace("clas.alpha: [-1, 0.5, 1]", "clas.layers: [[1, 2], [1, 2, 9]]"))
    bad = runner.invoke(app, ["compile", str(spec_file)])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert "sweep grid point 'clas[layers=1+2+9]' does not fit the model" in bad.stderr
    assert "layer 9 is out of range" in bad.stderr


def test_unknown_selection_metric_is_refused_before_any_evaluation(tmp_path, model_dir, monkeypatch):
    spec_file = spec_folder(tmp_path, model_dir, SPEC.replace("tasks:", "select: {metric: acuracy}\ntasks:"))
    monkeypatch.setattr(NextTokenRunner, "run", lambda *a, **k: pytest.fail("evaluated"))
    result = runner.invoke(app, ["run", str(spec_file), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "select.metric" in result.stderr and "no metric 'acuracy'" in result.stderr
    assert "gold_logprob" in result.stderr


def test_figures_for_a_beta_gamma_grid(tmp_path):
    """Fig. 6 curves (beta with gamma = 0, gamma with beta = 0, at alpha = 1) and a heatmap come from a 2-D grid."""
    from clas_graph.report.sweep import dev_markdown, sweep_figures

    points, task_points = [], {}
    for beta in (0, 0.2, 0.4):
        for gamma in (0, 0.1):
            name = f"clas[beta={beta:g},gamma={gamma:g}]"
            values = {"clas.beta": beta, "clas.gamma": gamma}
            points.append({"condition": name, "family": "clas", "values": values})
            task_points[name] = {"family": "clas", "values": values, "mean": 50 + 10 * beta - 5 * gamma,
                                 "delta": 10 * beta - 5 * gamma,
                                 "effective": {"alpha": 1.0, "beta": beta, "gamma": gamma}}
    task = {"metric": "accuracy", "higher_is_better": True, "languages": ["de"], "dev_items": "x", "base": 50.0,
            "points": task_points, "chosen": {"clas": "clas[beta=0.4,gamma=0]"}}
    sweep = {"points": points, "tasks": {"xnli": task}}
    names = [p.name for p in sweep_figures(sweep, tmp_path)]
    assert names == ["sweep_clas_beta.png", "sweep_clas_gamma.png", "sweep_beta_gamma_at_alpha1.png",
                     "sweep_heatmap_clas.png"]
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)
    table = dev_markdown("xnli", task)
    assert "| `clas[beta=0.4,gamma=0]` | 54.000 | +4.000 | ✓ |" in table
    # a 1-D grid has no heatmap and, without beta and gamma both at 0 somewhere, no Fig. 6 curves
    one = {"points": points[:1], "tasks": {"xnli": {**task, "points": dict(list(task_points.items())[:1])}}}
    assert [p.name for p in sweep_figures(one, tmp_path / "one")] == ["sweep_clas_beta.png", "sweep_clas_gamma.png"]
