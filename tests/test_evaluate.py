"""Evaluation runner: task metrics against independent computations, t-test, resume and crash safety."""

from __future__ import annotations

import json

import pytest
import torch
from reference import ClasRef, ref_greedy, ref_last_logits
from scipy import stats as scipy_stats
from sklearn.metrics import accuracy_score, f1_score
from tiny import BOOST_YAML, clas_yaml, spec_folder, spec_yaml, tiny_model
from typer.testing import CliRunner

from clas_graph.cli import app
from clas_graph.data.xnli import XNLI_PROMPT
from clas_graph.data.xquad import XQUAD_PROMPT
from clas_graph.eval.metrics import best_over_golds, token_f1
from clas_graph.tasks.lm_loss import LmLossRunner
from clas_graph.tasks.registry import KINDS
from clas_graph.tasks.xnli import XnliRunner
from clas_graph.tasks.xquad import XquadRunner

LANGS = ["en", "de", "fr"]
SHARED = {1: [0, 3, 5, 8, 13, 21, 34, 40, 41, 42], 2: [1, 2, 40, 41, 50, 51, 52]}
SPECIFIC = {1: [10, 11, 12, 60], 2: [60, 61]}

PREMISES = {
    "en": ["A man plays the guitar.", "The cat sleeps on the sofa.", "Two kids run in the park.", "She reads a book.",
           "It is raining today.", "The shop is closed."],
    "de": ["Ein Mann spielt Gitarre.", "Die Katze schläft auf dem Sofa.", "Zwei Kinder rennen im Park.",
           "Sie liest ein Buch.", "Heute regnet es.", "Der Laden ist geschlossen."],
    "fr": ["Un homme joue de la guitare.", "Le chat dort sur le canapé.", "Deux enfants courent dans le parc.",
           "Elle lit un livre.", "Il pleut aujourd'hui.", "Le magasin est fermé."],
}
HYPOTHESES = {"en": "Someone is outside.", "de": "Jemand ist draußen.", "fr": "Quelqu'un est dehors."}
LABELS = [0, 1, 2, 1, 0, 2]
QA = {
    "en": ("Paris is the capital of France. Berlin is the capital of Germany.", "What is the capital of France?",
           "Paris"),
    "de": ("Paris ist die Hauptstadt von Frankreich. Berlin ist die Hauptstadt von Deutschland.",
           "Was ist die Hauptstadt von Frankreich?", "Paris"),
    "fr": ("Paris est la capitale de la France. Berlin est la capitale de l'Allemagne.",
           "Quelle est la capitale de la France ?", "Paris"),
}


def write_task_files(folder):
    for lang in LANGS:
        with (folder / f"xnli_{lang}.jsonl").open("w") as out:
            for premise, label in zip(PREMISES[lang], LABELS):
                out.write(json.dumps({"premise": premise, "hypothesis": HYPOTHESES[lang], "label": label}) + "\n")
        context, question, answer = QA[lang]
        with (folder / f"xquad_{lang}.jsonl").open("w") as out:
            for i in range(3):
                out.write(json.dumps({"id": f"q{i}", "context": context, "question": question,
                                      "answers": {"text": [answer], "answer_start": [0]}}) + "\n")


SPEC = spec_yaml("tiny-eval", LANGS, "interventions:\n", clas_yaml(SHARED, SPECIFIC, beta=0.6, gamma=0.4),
                 BOOST_YAML, """\
tasks:
  - kind: xnli
    limit: null
    data_files: {en: xnli_en.jsonl, de: xnli_de.jsonl, fr: xnli_fr.jsonl}
  - kind: xquad
    limit: null
    max_new_tokens: 4
    data_files: {en: xquad_en.jsonl, de: xquad_de.jsonl, fr: xquad_fr.jsonl}
  - kind: lm_loss
    corpus: {kind: bible, limit: 3, offset: 10}
  - kind: retrieval
    layer: 2
    corpus: {kind: bible, limit: 5, offset: 10}
batch_size: 4
""", model="{path: model, chat_template: none}")
MODEL_ARCH = "qwen2"  # the `model_dir` fixture (conftest.py)


@pytest.fixture
def spec_file(tmp_path, model_dir):
    write_task_files(tmp_path)
    return spec_folder(tmp_path, model_dir, SPEC)


def run(spec_file, runs):
    result = CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)])
    return result


def clas_ref():
    def vec(indices):
        m = torch.zeros(64)
        m[indices] = 1.0
        return m

    return ClasRef({layer: (vec(SHARED[layer]), vec(SPECIFIC.get(layer, []))) for layer in (1, 2)},
                   beta=0.6, gamma=0.4, alpha=1.0)


def reference_pair(model_dir):
    """The weights, and the tokenizer as the model folder defines it (AutoTokenizer may pick an architecture's
    own tokenizer class for the saved files, which pre-tokenizes differently from the in-memory one)."""
    from transformers import AutoTokenizer

    return tiny_model("qwen2"), AutoTokenizer.from_pretrained(model_dir, padding_side="left")


def read_samples(run_dir, task, lang, condition):
    return [json.loads(line) for line in (run_dir / "samples" / f"{task}_{lang}_{condition}.jsonl").open()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, model_dir):
    folder = tmp_path_factory.mktemp("eval")
    write_task_files(folder)
    result = run(spec_folder(folder, model_dir, SPEC), folder / "runs")
    assert result.exit_code == 0, result.output
    (run_dir,) = (folder / "runs").iterdir()
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def test_outputs_and_table(finished):
    run_dir, metrics = finished
    assert metrics["schema_version"] == 1 and metrics["conditions"] == ["base", "clas", "boost"]
    assert set(metrics["tasks"]) == {"xnli", "xquad", "lm_loss", "retrieval"}
    assert metrics["tasks"]["retrieval"]["languages"] == ["de", "fr"]  # the anchor is the target, not a query
    summary = (run_dir / "summary.md").read_text()
    assert "| lang | base (acc. %) | Δ clas | Δ boost |" in summary and "Avg." in summary and "p (paired t)" in summary
    assert (run_dir / "figures" / "deltas.png").stat().st_size > 5000


def test_xnli_metrics_equal_samples_and_hook_reference(finished, model_dir):
    run_dir, metrics = finished
    hf, tok = reference_pair(model_dir)
    label_ids = [tok("0", add_special_tokens=False)["input_ids"][0], tok("1", add_special_tokens=False)["input_ids"][0],
                 tok("2", add_special_tokens=False)["input_ids"][0]]
    for lang in LANGS:
        rows = read_samples(run_dir, "xnli", lang, "clas")
        preds, golds = [r["prediction"] for r in rows], [r["gold"] for r in rows]
        unit = metrics["tasks"]["xnli"]["per_language"]["clas"][lang]
        assert unit["accuracy"] == pytest.approx(100 * accuracy_score(golds, preds))
        assert unit["macro_f1"] == pytest.approx(100 * f1_score(golds, preds, labels=[0, 1, 2], average="macro",
                                                                zero_division=0))
        prompts = [XNLI_PROMPT.format(premise=p, hypothesis=HYPOTHESES[lang]) for p in PREMISES[lang]]
        assert [r["prompt"] for r in rows] == prompts
        logits = ref_last_logits(hf, tok, prompts, [lang != "en"] * len(prompts), clas_ref())
        assert preds == logits[:, label_ids].argmax(-1).tolist()


def test_xquad_f1_equals_samples_and_hook_reference(finished, model_dir):
    run_dir, metrics = finished
    hf, tok = reference_pair(model_dir)
    for lang in LANGS:
        rows = read_samples(run_dir, "xquad", lang, "clas")
        context, question, answer = QA[lang]
        prompts = [XQUAD_PROMPT.format(context=context, question=question)] * 3
        ids = ref_greedy(hf, tok, prompts, [lang != "en"] * 3, clas_ref(), max_new_tokens=4)
        outputs = [tok.decode(row, skip_special_tokens=True) for row in ids]
        assert [r["output"] for r in rows] == outputs
        f1s = [100 * best_over_golds(token_f1, o.strip().split("\n")[0].strip(), [answer], lang) for o in outputs]
        assert [r["f1"] for r in rows] == pytest.approx(f1s)
        assert metrics["tasks"]["xquad"]["per_language"]["clas"][lang]["f1"] == pytest.approx(sum(f1s) / 3)


def test_lm_loss_and_retrieval_equal_plain_model_computations(finished, model_dir):
    run_dir, metrics = finished
    from clas_graph.data.bible import load_bible

    hf, tok = reference_pair(model_dir)
    texts = load_bible(LANGS, limit=3, offset=10)
    for lang in LANGS:
        nll = tokens = 0.0
        for sample in texts:
            enc = tok(sample.texts[lang], return_tensors="pt")
            with torch.no_grad():
                loss = hf(**enc, labels=enc["input_ids"]).loss.item()
            n = enc["input_ids"].shape[1] - 1
            nll, tokens = nll + loss * n, tokens + n
        loss = metrics["tasks"]["lm_loss"]["per_language"]["base"][lang]["loss"]
        assert loss == pytest.approx(nll / tokens, rel=1e-5)
    verses = load_bible(LANGS, limit=5, offset=10)

    def pooled(lang):
        out = []
        for sample in verses:
            enc = tok(sample.texts[lang], return_tensors="pt")
            with torch.no_grad():
                hidden = hf(**enc, output_hidden_states=True).hidden_states[3][0, 1:]  # layer 2 output, no BOS
            out.append(hidden.mean(0))
        return torch.nn.functional.normalize(torch.stack(out), dim=-1)

    keys = pooled("en")
    for lang in ("de", "fr"):
        top1 = (pooled(lang) @ keys.T).argmax(-1).eq(torch.arange(5)).double().mean().item()
        assert metrics["tasks"]["retrieval"]["per_language"]["base"][lang]["top1"] == pytest.approx(100 * top1)


def test_paired_t_test_equals_scipy(finished):
    _, metrics = finished
    task = metrics["tasks"]["lm_loss"]
    base = [task["per_language"]["base"][lang]["loss"] for lang in ("de", "fr")]
    clas = [task["per_language"]["clas"][lang]["loss"] for lang in ("de", "fr")]
    expected = scipy_stats.ttest_rel(clas, base)
    assert task["summary"]["clas"]["t"] == pytest.approx(expected.statistic)
    assert task["summary"]["clas"]["p"] == pytest.approx(expected.pvalue)
    assert task["summary"]["clas"]["mean_delta"] == pytest.approx(sum(c - b for c, b in zip(clas, base)) / 2)


def test_resume_skips_finished_units(spec_file, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    assert run(spec_file, runs).exit_code == 0
    calls = []
    for cls in [kind.runner_class for kind in KINDS]:
        monkeypatch.setattr(cls, "run", lambda self, *a, **k: calls.append(self.key))
        monkeypatch.setattr(cls, "run_many", lambda self, *a, **k: calls.append(self.key))
    again = run(spec_file, runs)
    assert again.exit_code == 0, again.output
    assert calls == []


def test_rerun_computes_only_the_missing_conditions_together(spec_file, tmp_path, monkeypatch, finished):
    _, uninterrupted = finished
    runs = tmp_path / "runs"
    assert run(spec_file, runs).exit_code == 0
    (run_dir,) = runs.iterdir()
    for condition in ("clas", "boost"):
        (run_dir / "units" / f"lm_loss_de_{condition}.json").unlink()
    (run_dir / "units" / "xnli_fr_base.json").unlink()
    seen = []
    for cls in (LmLossRunner, XnliRunner):
        original = cls.run_many

        def spy(self, model, plans, language, original=original):
            seen.append((self.key, language, sorted(plans)))
            return original(self, model, plans, language)

        monkeypatch.setattr(cls, "run_many", spy)
    again = run(spec_file, runs)
    assert again.exit_code == 0, again.output
    assert sorted(seen) == [("lm_loss", "de", ["boost", "clas"]), ("xnli", "fr", ["base"])]
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["tasks"] == uninterrupted["tasks"]


def test_interrupted_run_resumes_to_the_same_metrics(spec_file, tmp_path, monkeypatch, finished):
    _, uninterrupted = finished
    runs = tmp_path / "runs"
    original = XquadRunner.run_many
    count = []

    def crash_on_second_unit(self, *args, **kwargs):  # each call runs one language's conditions
        count.append(1)
        if len(count) == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(XquadRunner, "run_many", crash_on_second_unit)
    first = run(spec_file, runs)
    assert first.exit_code == 130
    (run_dir,) = runs.iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    assert not (run_dir / "metrics.json").exists()
    assert len(list((run_dir / "units").glob("xquad_*.json"))) >= 1  # the first language's units were kept
    monkeypatch.setattr(XquadRunner, "run_many", original)
    second = run(spec_file, runs)
    assert second.exit_code == 0, second.output
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["tasks"] == uninterrupted["tasks"]


def test_label_that_is_not_one_token_is_a_clear_error(spec_file, tmp_path):
    spec_file.write_text(SPEC.replace("  - kind: xnli\n", "  - kind: xnli\n    labels: [zero, one, two]\n"))
    result = run(spec_file, tmp_path / "runs")
    assert result.exit_code == 2
    assert "label 'zero' is" in result.stderr and "not one" in result.stderr
