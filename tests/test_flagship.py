"""The flagship specs run UNCHANGED except for `--set` overrides: a tiny random model of the paper's architecture
with the real layer count (Llama 32, Qwen2 28), local XNLI/XQuAD files in the hub's columns, fewer languages and
samples. Checks: CLAS acts on the spec's layers with the statistics' masks, Int-mu runs and leaves languages
without statistics alone, and every reported number equals an independent recomputation from the saved samples.
"""

from __future__ import annotations

import copy
import json
import re
import string
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from scipy import stats as scipy_stats
from sklearn.metrics import accuracy_score, f1_score
from tiny import tiny_model, tiny_tokenizer
from typer.testing import CliRunner

from clas_graph.cli import app

SPECS = Path(__file__).parent.parent / "specs"
STATS_LANGS = ["en", "de", "ar"]          # the statistics' languages (and XQuAD's, by default)
XNLI_LANGS = ["en", "de", "fr"]           # fr has no statistics: CLAS acts on it, Int-mu must not
PARTIAL_SHARED, LANGUAGE_SPECIFIC = 2, 1  # category codes in stats.safetensors (clas_graph/stats/categories.py)
CHAT = ("{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")

PARAGRAPHS = {
    "en": ["Paris is the capital of France.", "The Rhine flows through Germany.", "Tea is popular in England.",
           "The cat sleeps on the sofa.", "Berlin has many museums."],
    "de": ["Paris ist die Hauptstadt von Frankreich.", "Der Rhein fließt durch Deutschland.",
           "Tee ist in England beliebt.", "Die Katze schläft auf dem Sofa.", "Berlin hat viele Museen."],
    "ar": ["باريس هي عاصمة فرنسا.", "يتدفق نهر الراين عبر ألمانيا.", "الشاي مشهور في إنجلترا.",
           "القطة تنام على الأريكة.", "في برلين متاحف كثيرة."],
}
QUESTIONS = {"en": "What is it about?", "de": "Worum geht es?", "ar": "عن ماذا يتحدث؟"}
ANSWERS = {"en": ["Paris", "the Rhine", "tea", "the cat", "museums"],
           "de": ["Paris", "der Rhein", "Tee", "die Katze", "Museen"],
           "ar": ["باريس", "الراين", "الشاي", "القطة", "متاحف"]}
PREMISES = {
    "en": ["A man plays the guitar.", "The cat sleeps.", "Two kids run.", "She reads a book.", "It rains."],
    "de": ["Ein Mann spielt Gitarre.", "Die Katze schläft.", "Zwei Kinder rennen.", "Sie liest ein Buch.",
           "Es regnet."],
    "fr": ["Un homme joue de la guitare.", "Le chat dort.", "Deux enfants courent.", "Elle lit un livre.", "Il pleut."],
}
HYPOTHESES = {"en": "Someone is outside.", "de": "Jemand ist draußen.", "fr": "Quelqu'un est dehors."}
LABELS = [0, 1, 2, 1, 0]


def write_data(folder: Path) -> dict:
    files = {"xquad": {}, "xnli": {}}
    for lang in STATS_LANGS:
        path = folder / f"xquad_{lang}.jsonl"
        with path.open("w") as out:
            for i, (context, answer) in enumerate(zip(PARAGRAPHS[lang], ANSWERS[lang])):
                out.write(json.dumps({"id": f"q{i}", "context": context, "question": QUESTIONS[lang],
                                      "answers": {"text": [answer], "answer_start": [0]}}, ensure_ascii=False) + "\n")
        files["xquad"][lang] = str(path)
    for lang in XNLI_LANGS:
        path = folder / f"xnli_{lang}.jsonl"
        with path.open("w") as out:
            for premise, label in zip(PREMISES[lang], LABELS):
                out.write(json.dumps({"premise": premise, "hypothesis": HYPOTHESES[lang], "label": label}) + "\n")
        files["xnli"][lang] = str(path)
    return files


def save_model(folder: Path, arch: str, layers: int) -> Path:
    """A tiny random model with the real layer count, and an instruct-style chat template."""
    tiny_model(arch, layers=layers).save_pretrained(folder)
    tokenizer = copy.deepcopy(tiny_tokenizer())
    tokenizer.chat_template = CHAT
    tokenizer.save_pretrained(folder)
    return folder


def overrides(model_dir: Path, files: dict, non_anchor_with_stats: list[str]) -> list[str]:
    flow = lambda value: json.dumps(value, ensure_ascii=False)  # noqa: E731 - JSON is YAML
    return [
        "model.id=null", f"model.path={model_dir}", "model.dtype=float32", "model.device=cpu",
        f"languages={flow(STATS_LANGS)}",
        f"stats.corpus.data_files={flow(files['xquad'])}", "stats.corpus.limit=4",
        f"interventions.1.rows={flow({'languages': non_anchor_with_stats})}",
        f"tasks.0.languages={flow(XNLI_LANGS)}", f"tasks.0.data_files={flow(files['xnli'])}",
        f"tasks.1.data_files={flow(files['xquad'])}", "tasks.1.max_new_tokens=2",
    ]


def run_flagship(tmp_path_factory, spec_name: str, arch: str, layers: int):
    folder = tmp_path_factory.mktemp(spec_name)
    model_dir = save_model(folder / "model", arch, layers)
    sets = overrides(model_dir, write_data(folder), ["de", "ar"])
    args = ["run", str(SPECS / spec_name), "--runs-dir", str(folder / "runs")]
    for item in sets:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = (folder / "runs").iterdir()
    return run_dir, yaml.safe_load((SPECS / spec_name).read_text()), sets


@pytest.fixture(scope="module", params=[("clas_llama.yaml", "llama", 32), ("clas_qwen.yaml", "qwen2", 28)],
                ids=["llama-32", "qwen2-28"])
def flagship(request, tmp_path_factory):
    return run_flagship(tmp_path_factory, *request.param)


def samples(run_dir: Path, task: str, lang: str, condition: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples" / f"{task}_{lang}_{condition}.jsonl").open()]


# --- independent references ------------------------------------------------------------------

_PUNCT = {chr(i) for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P")} | set(
    string.punctuation)
_ARTICLES = {"en": r"\b(a|an|the)\b", "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
             "ar": r"\sال^|ال"}  # MLQA's mlqa_evaluation_v1.py
_UNSPACED = re.compile("([\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u2e80-\u2fdf\u3005-\u3007\u3040-\u30ff"
                       "\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f]"
                       "[\u0300-\u036f\u0e31\u0e34-\u0e3a\u0e47-\u0e4e]*)")


def squad_tokens(text: str, lang: str) -> list[str]:
    """MLQA normalisation (NFC, lower, punctuation, articles), whitespace tokens, unspaced-script chars apart."""
    text = "".join(ch for ch in unicodedata.normalize("NFC", text).lower() if ch not in _PUNCT)
    if lang in _ARTICLES:
        text = re.sub(_ARTICLES[lang], " ", text)
    return [token for token in _UNSPACED.sub(r" \1 ", text).split() if token]


def squad_f1(prediction: str, gold: str, lang: str) -> float:
    pred, ref = squad_tokens(prediction, lang), squad_tokens(gold, lang)
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    return 0.0 if same == 0 else 2 * same / (len(pred) + len(ref))


# --- the checks ------------------------------------------------------------------------------


def test_clas_acts_on_the_spec_layers_with_masks_from_statistics(flagship):
    run_dir, spec, _ = flagship
    clas = spec["interventions"][0]
    layers, beta, gamma, alpha = clas["layers"], clas["beta"], clas["gamma"], clas["alpha"]
    stats = load_file(run_dir / "stats.safetensors")
    meta = json.loads((run_dir / "stats.json").read_text())
    assert meta["languages"] == STATS_LANGS and meta["corpus"]["kind"] == "xquad" and meta["samples"] == 4
    plan = json.loads((run_dir / "plan.json").read_text())
    ops = plan["clas"]["ops"]
    assert [op["layer"] for op in ops] == layers and {op["site"] for op in ops} == {"mlp.down_proj.input"}
    tensors = load_file(run_dir / "plan.safetensors")  # keys: condition/intervention.L<layer>.<site>.<part>
    assert sorted(key for key in tensors if key.startswith("clas/")) == sorted(
        f"clas/clas.L{layer}.mlp.down_proj.input.scale" for layer in layers)
    total_specific = 0
    for layer, op in zip(layers, ops):
        shared = (stats["category"][layer] == PARTIAL_SHARED).double()
        specific = (stats["category"][layer] == LANGUAGE_SPECIFIC).double()
        assert shared.sum() > 0, f"layer {layer}: empty M_shared"
        total_specific += int(specific.sum())
        expected = (1 - alpha) + alpha * (1 + beta * shared) * (1 - gamma * specific)
        scale = tensors[f"clas/clas.L{layer}.mlp.down_proj.input.scale"]
        torch.testing.assert_close(scale.double(), expected, rtol=0, atol=1e-7)
        assert op["params"]["shared_neurons"] == int(shared.sum())
    assert total_specific > 0, "no language-specific neuron in any bridge layer"


def test_interventions_change_non_anchor_rows_only_where_they_apply(flagship):
    run_dir, _, _ = flagship
    for lang in XNLI_LANGS:
        base = [row["probs"] for row in samples(run_dir, "xnli", lang, "base")]
        clas = [row["probs"] for row in samples(run_dir, "xnli", lang, "clas")]
        int_mu = [row["probs"] for row in samples(run_dir, "xnli", lang, "int_mu")]
        assert (clas == base) == (lang == "en"), lang  # the anchor is never modified; fr (no statistics) is
        if lang in ("en", "fr"):
            assert int_mu == base, lang  # Int-mu's rows: the non-anchor languages with statistics
    int_mu_ops = json.loads((run_dir / "plan.json").read_text())["int_mu"]["ops"]
    assert len(int_mu_ops) == len(json.loads((run_dir / "plan.json").read_text())["clas"]["ops"])
    assert {op["site"] for op in int_mu_ops} == {"mlp.act_fn.output"}


def test_chat_template_and_overrides_are_recorded(flagship):
    run_dir, spec, sets = flagship
    row = samples(run_dir, "xnli", "de", "base")[0]
    assert row["prompt"].startswith("<|user|>Premise: ") and row["prompt"].endswith("<|assistant|>")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["overrides"] == sets and manifest["status"] == "complete"
    resolved = json.loads((run_dir / "spec.resolved.json").read_text())
    assert resolved["languages"] == STATS_LANGS and resolved["tasks"][0]["languages"] == XNLI_LANGS
    assert resolved["model"]["id"] is None and resolved["model"]["path"].endswith("model")
    assert resolved["interventions"][0]["layers"] == spec["interventions"][0]["layers"]  # the rest is the spec's


def test_every_reported_number_equals_a_recomputation_from_the_samples(flagship):
    run_dir, _, _ = flagship
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["conditions"] == ["base", "clas", "int_mu"]
    xnli, xquad = metrics["tasks"]["xnli"], metrics["tasks"]["xquad"]
    assert xnli["languages"] == XNLI_LANGS and xquad["languages"] == STATS_LANGS
    for condition in metrics["conditions"]:
        for lang in XNLI_LANGS:
            rows = samples(run_dir, "xnli", lang, condition)
            golds, preds = [r["gold"] for r in rows], [r["prediction"] for r in rows]
            assert golds == LABELS and preds == [max(range(3), key=r["probs"].__getitem__) for r in rows]
            unit = xnli["per_language"][condition][lang]
            assert unit["accuracy"] == pytest.approx(100 * accuracy_score(golds, preds), abs=1e-9)
            assert unit["macro_f1"] == pytest.approx(
                100 * f1_score(golds, preds, labels=[0, 1, 2], average="macro", zero_division=0), abs=1e-9)
        for lang in STATS_LANGS:
            rows = samples(run_dir, "xquad", lang, condition)
            assert len(rows) == len(PARAGRAPHS[lang])
            f1s = []
            for row in rows:
                assert row["prediction"] == row["output"].strip().split("\n")[0].strip()
                f1s.append(100 * max(squad_f1(row["prediction"], gold, lang) for gold in row["golds"]))
                assert row["f1"] == pytest.approx(f1s[-1], abs=1e-9)
            assert xquad["per_language"][condition][lang]["f1"] == pytest.approx(sum(f1s) / len(f1s), abs=1e-9)
    for task, langs in ((xnli, XNLI_LANGS), (xquad, STATS_LANGS)):
        primary, others = task["primary"], [lang for lang in langs if lang != "en"]  # the anchor is left out
        base = [task["per_language"]["base"][lang][primary] for lang in others]
        for condition in ("clas", "int_mu"):
            scores = [task["per_language"][condition][lang][primary] for lang in others]
            summary = task["summary"][condition]
            assert summary["languages"] == sorted(others)
            assert summary["mean_delta"] == pytest.approx(sum(s - b for s, b in zip(scores, base)) / len(others))
            for lang, score, b in zip(others, scores, base):
                assert task["delta"][condition][lang] == pytest.approx(score - b, abs=1e-9)
            expected = scipy_stats.ttest_rel(scores, base)
            for key, value in (("t", expected.statistic), ("p", expected.pvalue)):
                if value != value:  # NaN (identical scores): JSON has null
                    assert summary[key] is None
                else:
                    assert summary[key] == pytest.approx(value)
