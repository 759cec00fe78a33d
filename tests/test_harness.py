"""clas_graph as an lm-evaluation-harness model: `ClasGraphLM` against lm-eval's own `hf` model on a tiny random
Llama saved to a folder. Under `base` it must give lm-eval's numbers; under a CLAS condition, lm-eval's numbers
with the paper's three-step formula applied by plain PyTorch hooks (tests/reference.py)."""

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from reference import ClasRef, clas_hooks  # noqa: E402
from tiny import spec_data  # noqa: E402

from clas_graph.errors import DataError  # noqa: E402
from clas_graph.harness import ClasGraphLM  # noqa: E402
from clas_graph.loading import load_model  # noqa: E402
from clas_graph.spec.load import validate_data  # noqa: E402
from clas_graph.spec.model_ref import ModelRef  # noqa: E402

SHARED = {1: [0, 3, 5, 9, 12], 2: [1, 4, 7]}
SPECIFIC = {1: [2, 6], 2: [10, 11, 20]}
BETA, GAMMA, ALPHA = 0.6, 0.4, -1.5
TOLERANCE = 1e-4  # summed float32 log-probs of a few tokens; padding layouts differ between the two models

PAIRS = [("The cat sat", " on the mat"), ("Der Hund", " bellt laut"), ("A", " b c d e"),
         ("Question: what is two plus two? Answer:", " four"), ("", "an empty context")]
TEXTS = ["The quick brown fox jumps over the lazy dog. " * 3, "Kurz.", "Ein längerer deutscher Satz über Hunde."]
PROMPTS = ["Once upon a time", "Es war einmal", "Question: where? Answer:"]


def instances(kind: str, arguments, task: str = "xnli_de") -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=args, idx=0, metadata=(task, i, 1))
            for i, args in enumerate(arguments)]


@pytest.fixture(scope="module")
def folder(tiny_model_dir):
    return tiny_model_dir("llama")


@pytest.fixture(scope="module")
def spec(folder):
    clas = {"kind": "clas", "id": "clas", "layers": [1, 2], "shared": {"neurons": SHARED},
            "specific": {"neurons": SPECIFIC}, "beta": BETA, "gamma": GAMMA, "alpha": ALPHA}
    return validate_data(spec_data(["en", "de"], name="harness", model={"path": str(folder)}, interventions=[clas]))


@pytest.fixture(scope="module")
def model(folder):
    return load_model(ModelRef(path=str(folder)))


@pytest.fixture(scope="module")
def hflm(folder):
    return HFLM(pretrained=str(folder), batch_size=1, device="cpu", dtype="float32")


def clas_reference(intermediate: int) -> ClasRef:
    def mask(indices):
        out = torch.zeros(intermediate)
        out[indices] = 1.0
        return out

    return ClasRef({layer: (mask(SHARED[layer]), mask(SPECIFIC[layer])) for layer in SHARED}, BETA, GAMMA, ALPHA)


def test_base_loglikelihood_equals_lm_evals_hf_model(spec, model, hflm):
    ours = ClasGraphLM(spec, "base", model=model, batch_size=2).loglikelihood(instances("loglikelihood", PAIRS))
    theirs = hflm.loglikelihood(instances("loglikelihood", PAIRS))
    assert len(ours) == len(theirs) == len(PAIRS)
    for (a, greedy_a), (b, greedy_b) in zip(ours, theirs):
        assert a == pytest.approx(b, abs=TOLERANCE) and greedy_a == greedy_b
    assert all(value < 0 for value, _ in ours)


def test_base_rolling_loglikelihood_equals_lm_evals_hf_model(spec, model, hflm):
    requests = [(text,) for text in TEXTS]
    ours = ClasGraphLM(spec, "base", model=model, batch_size=2).loglikelihood_rolling(
        instances("loglikelihood_rolling", requests))
    theirs = hflm.loglikelihood_rolling(instances("loglikelihood_rolling", requests))
    assert ours == pytest.approx(theirs, abs=TOLERANCE)


def test_rolling_windows_longer_than_the_context_are_summed(spec, model):
    long_text = [(TEXTS[0] * 4,)]
    short = ClasGraphLM(spec, "base", model=model, max_length=16)
    whole = ClasGraphLM(spec, "base", model=model)
    reference = HFLM(pretrained=model._module, tokenizer=model.tokenizer, batch_size=1, max_length=16)
    assert short.loglikelihood_rolling(instances("loglikelihood_rolling", long_text)) == pytest.approx(
        reference.loglikelihood_rolling(instances("loglikelihood_rolling", long_text)), abs=TOLERANCE)
    # several windows, each conditioned on less: not the single-window number
    assert short.loglikelihood_rolling(instances("loglikelihood_rolling", long_text))[0] != pytest.approx(
        whole.loglikelihood_rolling(instances("loglikelihood_rolling", long_text))[0], abs=1e-3)


def test_base_generation_equals_lm_evals_hf_model(spec, model, hflm):
    requests = [(prompt, {"until": ["\n", "."], "max_gen_toks": 8, "do_sample": False}) for prompt in PROMPTS]
    ours = ClasGraphLM(spec, "base", model=model, batch_size=2).generate_until(instances("generate_until", requests))
    theirs = hflm.generate_until(instances("generate_until", requests))
    assert ours == theirs and len(ours) == len(PROMPTS)


def test_clas_condition_equals_lm_evals_hf_model_with_reference_hooks(spec, model, folder):
    hf = model._module
    reference = HFLM(pretrained=hf, tokenizer=model.tokenizer, batch_size=1)
    clas = clas_reference(hf.config.intermediate_size)
    ours_lm = ClasGraphLM(spec, "clas", model=model, languages={"xnli_de": "de"}, batch_size=3)
    pairs = [pair for pair in PAIRS if pair[0]]
    ours = ours_lm.loglikelihood(instances("loglikelihood", pairs))
    with clas_hooks(hf, clas, torch.tensor([True])):  # every row is German: all steered
        theirs = reference.loglikelihood(instances("loglikelihood", pairs))
        rolling = reference.loglikelihood_rolling(instances("loglikelihood_rolling", [(t,) for t in TEXTS]))
        generated = reference.generate_until(instances("generate_until", [
            (p, {"until": ["\n"], "max_gen_toks": 6, "do_sample": False}) for p in PROMPTS]))
    base = reference.loglikelihood(instances("loglikelihood", pairs))
    for (a, greedy_a), (b, greedy_b) in zip(ours, theirs):
        assert a == pytest.approx(b, abs=TOLERANCE) and greedy_a == greedy_b
    assert any(abs(a - b) > 1e-3 for (a, _), (b, _) in zip(ours, base))  # the condition changes the numbers
    assert ours_lm.loglikelihood_rolling(instances("loglikelihood_rolling", [(t,) for t in TEXTS])) == \
        pytest.approx(rolling, abs=TOLERANCE)
    assert ours_lm.generate_until(instances("generate_until", [
        (p, {"until": ["\n"], "max_gen_toks": 6, "do_sample": False}) for p in PROMPTS])) == generated


def test_anchor_rows_are_left_untouched(spec, model, hflm):
    english = ClasGraphLM(spec, "clas", model=model, languages={"xnli_en": "en"})
    ours = english.loglikelihood(instances("loglikelihood", PAIRS[:3], task="xnli_en"))
    theirs = hflm.loglikelihood(instances("loglikelihood", PAIRS[:3], task="xnli_en"))
    for (a, _), (b, _) in zip(ours, theirs):
        assert a == pytest.approx(b, abs=TOLERANCE)


def test_a_task_without_a_row_language_is_refused_when_the_condition_needs_one(spec, model):
    lm = ClasGraphLM(spec, "clas", model=model, languages={"xnli_de": "de"})
    with pytest.raises(DataError, match="lm-eval task 'xnli_fr' has no row language") as info:
        lm.loglikelihood(instances("loglikelihood", PAIRS[:1], task="xnli_fr"))
    assert "languages={'xnli_fr': LANG}" in str(info.value)


def test_sampling_is_refused(spec, model):
    lm = ClasGraphLM(spec, "base", model=model)
    with pytest.raises(DataError, match="asks for sampling"):
        lm.generate_until(instances("generate_until", [("Hi", {"until": ["\n"], "do_sample": True})]))


# --- lm-eval's own evaluation loop on local task files ------------------------------------------------------

TASKS = {
    "tiny_mc_de": """\
task: tiny_mc_de
dataset_path: json
dataset_kwargs: {{data_files: {{test: {folder}/mc.jsonl}}}}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
  - {{metric: acc_norm, aggregation: mean, higher_is_better: true}}
""",
    "tiny_text_de": """\
task: tiny_text_de
dataset_path: json
dataset_kwargs: {{data_files: {{test: {folder}/text.jsonl}}}}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - {{metric: word_perplexity}}
  - {{metric: byte_perplexity}}
  - {{metric: bits_per_byte}}
""",
    "tiny_gen_de": """\
task: tiny_gen_de
dataset_path: json
dataset_kwargs: {{data_files: {{test: {folder}/gen.jsonl}}}}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs: {{until: ["\\n"], max_gen_toks: 6, do_sample: false}}
metric_list:
  - {{metric: exact_match, aggregation: mean, higher_is_better: true}}
""",
}


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory):
    import json

    folder = tmp_path_factory.mktemp("lm_eval_tasks")
    rows = {
        "mc.jsonl": [{"question": f"Frage {i}: welches Tier bellt?", "choices": [" Hund", " Katze", " Fisch"],
                      "label": i % 3} for i in range(6)],
        "text.jsonl": [{"text": text} for text in TEXTS],
        "gen.jsonl": [{"question": prompt, "answer": " ja"} for prompt in PROMPTS],
    }
    for name, items in rows.items():
        (folder / name).write_text("".join(json.dumps(item) + "\n" for item in items))
    for name, text in TASKS.items():
        (folder / f"{name}.yaml").write_text(text.format(folder=folder))
    return folder


def evaluate(model, task_folder, **options):
    from lm_eval import simple_evaluate

    from clas_graph.tasks.lm_eval import task_manager_for

    out = simple_evaluate(model=model, tasks=sorted(TASKS), task_manager=task_manager_for(str(task_folder)),
                          num_fewshot=0, bootstrap_iters=0, **options)
    return out["results"]


def metric_values(results: dict) -> dict:
    return {(task, metric): value for task, metrics in results.items() for metric, value in metrics.items()
            if isinstance(value, float) and "stderr" not in metric}


def test_simple_evaluate_gives_lm_evals_hf_numbers_under_base(spec, model, folder, task_folder):
    ours = metric_values(evaluate(ClasGraphLM(spec, "base", model=model, batch_size=2), task_folder))
    theirs = metric_values(evaluate("hf", task_folder, model_args=f"pretrained={folder},dtype=float32",
                                    batch_size=1, device="cpu"))
    assert set(ours) == set(theirs) and ("tiny_mc_de", "acc,none") in ours
    assert ("tiny_text_de", "word_perplexity,none") in ours and ("tiny_gen_de", "exact_match,none") in ours
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_simple_evaluate_under_clas_equals_hf_with_reference_hooks(spec, model, task_folder):
    hf = model._module
    languages = {name: "de" for name in TASKS}
    ours = metric_values(evaluate(ClasGraphLM(spec, "clas", model=model, languages=languages), task_folder))
    reference = HFLM(pretrained=hf, tokenizer=model.tokenizer, batch_size=1)
    with clas_hooks(hf, clas_reference(hf.config.intermediate_size), torch.tensor([True])):
        theirs = metric_values(evaluate(reference, task_folder))
    base = metric_values(evaluate(ClasGraphLM(spec, "base", model=model), task_folder))
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    perplexity = ("tiny_text_de", "word_perplexity,none")
    assert ours[perplexity] != pytest.approx(base[perplexity])  # the condition moved lm-eval's metric


def test_the_lm_eval_command_writes_lm_evals_results_file(folder, task_folder, tmp_path):
    import json

    from typer.testing import CliRunner

    from clas_graph.cli import app

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        f"schema_version: 1\nname: harness-cli\nmodel: {{path: {folder}}}\nlanguages: [en, de]\n"
        "interventions:\n  - {kind: clas, id: clas, layers: [1, 2], shared: {neurons: {1: [0, 3, 5]}}, alpha: -1.5}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["lm-eval", str(spec_file), "--tasks", "tiny_mc_de,tiny_gen_de", "--condition",
                                      "clas", "--include-path", str(task_folder), "--output-path", str(out)])
    assert result.exit_code == 0, result.output
    (written,) = list(out.rglob("results_*.json"))
    document = json.loads(written.read_text())
    assert set(document["results"]) == {"tiny_mc_de", "tiny_gen_de"}  # row language de from the task names
    assert 0.0 <= document["results"]["tiny_mc_de"]["acc,none"] <= 1.0 and "configs" in document
    assert "tiny_mc_de" in result.output  # lm-eval's table


def test_an_unknown_lm_eval_task_is_one_line_before_any_model_work(folder, task_folder, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from clas_graph import harness
    from clas_graph.cli import app

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"schema_version: 1\nname: harness-bad\nmodel: {{path: {folder}}}\nlanguages: [en, de]\n")
    monkeypatch.setattr(harness, "ClasGraphLM", lambda *a, **k: pytest.fail("the model was loaded"))
    result = CliRunner().invoke(app, ["lm-eval", str(spec_file), "--tasks", "tiny_mc_dee", "--include-path",
                                      str(task_folder)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "lm-eval has no task 'tiny_mc_dee'; did you mean 'tiny_mc_de'?" in result.output
    for flags, words in ((["--apply-chat-template"], "--apply-chat-template: the tokenizer has no chat template"),
                         (["--fewshot-as-multiturn"], "--fewshot-as-multiturn: few-shot examples as chat turns")):
        result = CliRunner().invoke(app, ["lm-eval", str(spec_file), "--tasks", "tiny_mc_de", "--include-path",
                                          str(task_folder), *flags])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert words in result.output, result.output


def test_detected_anchor_runs_english_requests_of_a_german_task_as_english(folder, model, hflm):
    clas = {"kind": "clas", "id": "clas", "layers": [1, 2], "shared": {"neurons": SHARED},
            "specific": {"neurons": SPECIFIC}, "beta": BETA, "gamma": GAMMA, "alpha": ALPHA}
    detected = validate_data(spec_data(["en", "de"], name="harness-detected", model={"path": str(folder)},
                                       interventions=[clas], anchor={"kind": "detected", "language": "en"}))
    english = [("The weather today is sunny and warm, and the children", " are playing outside in the park")]
    german = [("Das Wetter ist heute sonnig und warm, und die Kinder", " spielen draußen im Park")]
    lm = ClasGraphLM(detected, "clas", model=model)
    (ours,), (theirs,) = lm.loglikelihood(instances("loglikelihood", english)), \
        hflm.loglikelihood(instances("loglikelihood", english))
    assert ours[0] == pytest.approx(theirs[0], abs=TOLERANCE)  # detected as English: the anchor, untouched
    (steered,), (plain,) = lm.loglikelihood(instances("loglikelihood", german)), \
        hflm.loglikelihood(instances("loglikelihood", german))
    assert steered[0] != pytest.approx(plain[0], abs=1e-3)  # detected as German: steered


def test_lm_evals_own_command_line_runs_a_spec_condition_by_model_name(spec, model, folder, task_folder, tmp_path):
    """`python -m clas_graph.harness run --model clas_graph --model_args spec=...,condition=clas` is lm-eval's own
    command line with clas_graph's model registered; it gives the numbers ClasGraphLM gives in-process."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from lm_eval.api.registry import get_model

    assert get_model("clas_graph") is ClasGraphLM
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(json.dumps(spec.model_dump(mode="json", exclude={"include"})))
    out = tmp_path / "out"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "clas_graph.harness", "run", "--model", "clas_graph", "--model_args",
         f"spec={spec_file},condition=clas,languages=tiny_mc_de:de", "--tasks", "tiny_mc_de", "--include_path",
         str(task_folder), "--output_path", str(out), "--num_fewshot", "0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (written,) = list(out.rglob("results_*.json"))
    theirs = json.loads(written.read_text())["results"]["tiny_mc_de"]
    ours = evaluate(ClasGraphLM(spec, "clas", model=model, languages={"tiny_mc_de": "de"}), task_folder)
    for metric in ("acc,none", "acc_norm,none"):
        assert theirs[metric] == pytest.approx(ours["tiny_mc_de"][metric], abs=1e-9), metric
