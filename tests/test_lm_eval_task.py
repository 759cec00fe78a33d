"""`kind: lm_eval`: lm-eval's own tasks (xnli, mgsm, wikitext) read from local files in their hub columns, run by
clas_graph for base and a CLAS condition. Base must equal `lm_eval.simple_evaluate(model="hf")` on the same items,
metric by metric (stderr included); CLAS must equal lm-eval's `hf` model with the paper's formula applied by plain
PyTorch hooks (tests/reference.py); `ClasGraphLM` must give the task kind's numbers."""

import json

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")

from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from reference import ClasRef, clas_hooks  # noqa: E402
from tiny import spec_data  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from clas_graph.cli import app  # noqa: E402
from clas_graph.compile.compiler import compile_plan  # noqa: E402
from clas_graph.harness import ClasGraphLM  # noqa: E402
from clas_graph.loading import load_model  # noqa: E402
from clas_graph.spec.load import validate_data  # noqa: E402
from clas_graph.spec.model_ref import ModelRef  # noqa: E402
from clas_graph.tasks.base import DEV, TEST, check_disjoint, task_runners  # noqa: E402
from clas_graph.tasks.lm_eval import task_manager_for  # noqa: E402

SHARED = {1: [0, 3, 5, 9, 12], 2: [1, 4, 7]}
BETA, ALPHA = 0.6, -1.5
LIMIT = 5
# lm-eval's metrics are means (or perplexities) of per-document float32 log-probs; the two models batch differently
TOLERANCE = dict(rel=1e-5, abs=1e-5)


def clas_intervention():
    return {"kind": "clas", "id": "clas", "layers": [1, 2], "shared": {"neurons": SHARED}, "beta": BETA,
            "alpha": ALPHA}


def clas_reference(intermediate: int) -> ClasRef:
    def mask(indices):
        out = torch.zeros(intermediate)
        out[indices] = 1.0
        return out

    return ClasRef({layer: (mask(SHARED[layer]), torch.zeros(intermediate)) for layer in SHARED}, BETA, 0.0, ALPHA)


@pytest.fixture(scope="module")
def folder(tiny_model_dir):
    return tiny_model_dir("llama")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm_eval_data")

    def write(name, rows):
        (path / name).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))

    write("xnli_de.jsonl", [{"premise": f"Der Hund {i} bellt laut.", "hypothesis": "Ein Tier macht Lärm.",
                             "label": i % 3} for i in range(9)])
    write("xnli_en.jsonl", [{"premise": f"The dog {i} barks.", "hypothesis": "An animal is loud.", "label": i % 3}
                            for i in range(9)])
    write("mgsm_de.jsonl", [{"question": f"Lisa hat {i} Äpfel und kauft 2 dazu. Wie viele hat sie?", "answer": None,
                             "answer_number": i + 2, "equation_solution": None} for i in range(4)])
    write("wiki_test.jsonl", [{"page": "The quick brown fox jumps over the lazy dog . " * (i + 1)} for i in range(3)])
    write("wiki_validation.jsonl", [{"page": "A short page about dogs . " * (i + 2)} for i in range(3)])
    return path


TASKS = {
    "xnli": {"tasks": {"de": "xnli_de", "en": "xnli_en"}, "files": {"de": "xnli_de.jsonl", "en": "xnli_en.jsonl"}},
    "mgsm": {"tasks": {"de": "mgsm_direct_de"}, "files": {"de": "mgsm_de.jsonl"},
              "config": {"generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": 6}}},
    "wikitext": {"tasks": {"de": "wikitext"},
                 "files": {"de": {"test": "wiki_test.jsonl", "validation": "wiki_validation.jsonl"}}},
}


def lm_eval_task(name, data, **extra):
    info = TASKS[name]
    files = {lang: (str(data / f) if isinstance(f, str) else {s: str(data / p) for s, p in f.items()})
             for lang, f in info["files"].items()}
    return {"kind": "lm_eval", "tasks": info["tasks"], "limit": LIMIT, "data_files": files, "bootstrap_iters": 0,
            **({"config": info["config"]} if "config" in info else {}), **extra}


def make_spec(folder, data, names=("xnli", "mgsm", "wikitext"), **options):
    tasks = [lm_eval_task(name, data) for name in names]
    return validate_data(spec_data(["en", "de"], name="lm-eval-task", model={"path": str(folder)},
                                   interventions=[clas_intervention()], tasks=tasks, batch_size=3, **options))


@pytest.fixture(scope="module")
def spec(folder, data):
    return make_spec(folder, data)


@pytest.fixture(scope="module")
def model(folder):
    return load_model(ModelRef(path=str(folder)))


@pytest.fixture(scope="module")
def ours(spec, model):
    """{task key: {language: {condition: (rows, metrics)}}} for base and clas."""
    plans = {name: compile_plan(spec, model, name, None) for name in ("base", "clas")}
    return {runner.key: {language: runner.run_many(model, plans, language) for language in runner.languages()}
            for runner in task_runners(spec)}


def their_results(lm, runner, language):
    name = runner.task.task_name(language)
    out = simple_evaluate(model=lm, tasks=[runner.task.config_for(language, TEST, None)], limit=LIMIT,
                          bootstrap_iters=0, verbosity="ERROR", task_manager=task_manager_for(None))
    return {key.removesuffix(",none"): value for key, value in out["results"][name].items() if "," in key}


def assert_equal_metrics(ours: dict, theirs: dict):
    assert theirs, "lm-eval reported no metrics"
    for key, value in theirs.items():
        got = ours[key]
        if isinstance(value, (int, float)):
            assert got == pytest.approx(value, **TOLERANCE), key
        else:
            assert got is None, key  # lm-eval's 'N/A' stderr


def test_base_equals_lm_evals_hf_model_metric_by_metric(spec, ours, folder):
    hf = HFLM(pretrained=str(folder), batch_size=1, device="cpu", dtype="float32")
    seen = set()
    for runner in task_runners(spec):
        for language in runner.languages():
            _, metrics = ours[runner.key][language]["base"]
            assert_equal_metrics(metrics, their_results(hf, runner, language))
            assert metrics["n"] == {"mgsm_direct_de": 4, "wikitext": 3}.get(runner.task.task_name(language), LIMIT)
            seen |= set(metrics)
    # one multiple-choice, one generation and one rolling-loglikelihood task, with stderr
    assert {"acc", "acc_stderr", "exact_match,flexible-extract", "exact_match_stderr,remove_whitespace",
            "word_perplexity", "bits_per_byte"} <= seen


def test_clas_equals_lm_evals_hf_model_with_reference_hooks(spec, ours, model):
    hf_model = model._module
    hf = HFLM(pretrained=hf_model, tokenizer=model.tokenizer, batch_size=1)
    moved = []
    for runner in task_runners(spec):
        for language in runner.languages():
            steered = torch.tensor([language != "en"])  # English rows are the anchor: untouched
            with clas_hooks(hf_model, clas_reference(hf_model.config.intermediate_size), steered):
                theirs = their_results(hf, runner, language)
            _, metrics = ours[runner.key][language]["clas"]
            assert_equal_metrics(metrics, theirs)
            _, base = ours[runner.key][language]["base"]
            moved.append(metrics[runner.primary] != pytest.approx(base[runner.primary], abs=1e-9))
    assert any(moved)  # the condition changes lm-eval's numbers somewhere


def test_clas_graph_lm_gives_the_task_kinds_numbers(spec, ours, model):
    for runner in task_runners(spec):
        for language in runner.languages():
            lm = ClasGraphLM(spec, "clas", model=model, batch_size=2,
                             languages={runner.task.task_name(language): language})
            assert_equal_metrics(ours[runner.key][language]["clas"][1], their_results(lm, runner, language))


def test_units_record_lm_evals_version_task_version_and_config_hash(ours):
    _, metrics = ours["lm_eval0"]["de"]["base"]
    record = metrics["lm_eval"]
    assert record["version"] == lm_eval.__version__ and record["task"] == "xnli_de"
    assert record["task_version"] == 1.0 and len(record["config_hash"]) == 64 and record["split"] == "validation"
    rows, _ = ours["lm_eval0"]["de"]["base"]
    assert [row["id"] for row in rows] == [f"validation:{i}" for i in range(LIMIT)]
    assert rows[0]["doc"]["premise"] == "Der Hund 0 bellt laut." and len(rows[0]["resps"]) == 3


def test_dev_items_never_overlap_the_test_items(spec):
    xnli, _, wikitext = task_runners(spec)
    # xnli evaluates its validation split: dev items are the documents after the test subset
    assert xnli.task.item_ids([], "de", TEST, None) == [f"validation:{i}" for i in range(LIMIT)]
    assert xnli.task.item_ids([], "de", DEV, None) == [f"validation:{i}" for i in range(LIMIT, 9)]
    # wikitext has its own test split: dev items come from its validation split
    assert wikitext.task.evaluated_split("de", DEV) == "validation"
    assert wikitext.task.item_ids([], "de", DEV, None) == [f"validation:{i}" for i in range(3)]
    for runner in (xnli, wikitext):
        check_disjoint(runner.task, ["de"])


def test_a_dev_run_evaluates_the_dev_documents(spec, model):
    (xnli,) = [runner for runner in task_runners(spec, DEV) if runner.key == "lm_eval0"]
    rows, metrics = xnli.run(model, compile_plan(spec, model, "base", None), "de")
    assert [row["id"] for row in rows] == [f"validation:{i}" for i in range(LIMIT, 9)] and metrics["n"] == 4


def test_the_run_command_resumes_and_reports_deltas_and_paired_tests(folder, data, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(json.dumps(spec_data(["en", "de"], name="lm-eval-run", model={"path": str(folder)},
                                              interventions=[clas_intervention()],
                                              tasks=[lm_eval_task("xnli", data)])))
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    (run_dir,) = runs.iterdir()
    task = json.loads((run_dir / "metrics.json").read_text())["tasks"]["lm_eval"]
    assert task["primary"] == "acc" and task["higher_is_better"] is True and task["languages"] == ["de", "en"]
    per_language = task["per_language"]
    assert task["delta"]["clas"]["de"] == pytest.approx(per_language["clas"]["de"]["acc"]
                                                        - per_language["base"]["de"]["acc"])
    assert task["delta"]["clas"]["en"] == 0.0  # the anchor's rows are untouched
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["versions"]["lm_eval"] == lm_eval.__version__
    unit = run_dir / "units" / "lm_eval_de_clas.json"
    stamp = unit.stat().st_mtime_ns
    again = CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)])
    assert again.exit_code == 0, again.output
    assert unit.stat().st_mtime_ns == stamp  # finished units are not recomputed


# --- bad input: one line, exit 2, before model work -----------------------------------------------------------


def run_cli(tmp_path, task: dict, folder="/nonexistent/model"):
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(json.dumps(spec_data(["en", "de"], name="bad", model={"path": str(folder)},
                                              tasks=[task])))
    return CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(tmp_path / "runs")])


def assert_one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_unknown_task_name_says_did_you_mean(tmp_path, folder):
    result = run_cli(tmp_path, {"kind": "lm_eval", "tasks": {"de": "xnli_dee", "en": "xnli_en"}}, folder)
    assert_one_line_error(result, "lm-eval has no task 'xnli_dee'", "did you mean 'xnli_de'")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_language_the_map_lacks_is_refused_at_validation(tmp_path):
    result = run_cli(tmp_path, {"kind": "lm_eval", "tasks": {"de": "xnli_de"}, "languages": ["de", "fr"]})
    assert_one_line_error(result, "no lm-eval task for language 'fr'")


def test_a_bad_pattern_is_refused_at_validation(tmp_path):
    result = run_cli(tmp_path, {"kind": "lm_eval", "tasks": "xnli_{language}"})
    assert_one_line_error(result, "unknown placeholder", "{lang}")


def test_a_sampling_task_is_refused_naming_what_cannot_be_scored(tmp_path, folder, data):
    task = lm_eval_task("mgsm", data, config={"generation_kwargs": {"do_sample": True}})
    result = run_cli(tmp_path, task, folder)
    assert_one_line_error(result, "samples its generations", "do_sample")


def test_a_group_is_refused(tmp_path, folder):
    result = run_cli(tmp_path, {"kind": "lm_eval", "tasks": {"de": "xnli", "en": "xnli_en"}}, folder)
    assert_one_line_error(result, "'xnli' is a group", "one lm-eval task per language")


def test_without_lm_eval_the_spec_names_the_extra(tmp_path, monkeypatch):
    import clas_graph.tasks.lm_eval as module

    monkeypatch.setattr(module, "lm_eval_installed", lambda: False)
    result = run_cli(tmp_path, {"kind": "lm_eval", "tasks": "xnli_{lang}"})
    assert_one_line_error(result, "pip install 'clas-graph[lm-eval]'")


# --- row languages detected from the text, and remote execution ------------------------------------------------


def test_detected_anchor_leaves_rows_detected_as_english_untouched(folder, data, model, ours):
    spec = make_spec(folder, data, names=("wikitext",), anchor={"kind": "detected", "language": "en"})
    (runner,) = task_runners(spec)
    plans = {name: compile_plan(spec, model, name, None) for name in ("base", "clas")}
    result = runner.run_many(model, plans, "de")  # English pages labelled German: detected as English
    (_, base), (rows, clas) = result["base"], result["clas"]
    assert clas["word_perplexity"] == pytest.approx(base["word_perplexity"], rel=1e-6)
    assert {row["detected_language"] for row in rows} == {"en"} and {row["row_language"] for row in rows} == {"en"}
    _, labelled_clas = ours["lm_eval2"]["de"]["clas"]  # the same pages run as German are steered
    assert labelled_clas["word_perplexity"] != pytest.approx(base["word_perplexity"], rel=1e-6)


def test_the_same_spec_through_the_mock_ndif_server_gives_the_local_numbers(folder, data, tmp_path):
    pytest.importorskip("aiohttp")
    from ndif_mock.harness import start_mock_ndif

    def spec_file(name, **options):
        path = tmp_path / f"{name}.yaml"
        path.write_text(json.dumps(spec_data(["en", "de"], name="lm-eval-remote", model={"path": str(folder)},
                                             interventions=[clas_intervention()], batch_size=4,
                                             tasks=[lm_eval_task("xnli", data, limit=3),
                                                    lm_eval_task("mgsm", data, limit=2)], **options)))
        return path

    local = CliRunner().invoke(app, ["run", str(spec_file("local")), "--runs-dir", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    with start_mock_ndif(folder, repo_ids=[str(folder)]):
        remote = CliRunner().invoke(app, ["run", str(spec_file("remote", backend={"kind": "ndif", "retries": 2})),
                                          "--runs-dir", str(tmp_path / "remote")])
    assert remote.exit_code == 0, remote.output

    def metrics(root):
        (run_dir,) = root.iterdir()
        return json.loads((run_dir / "metrics.json").read_text())["tasks"]

    (remote_dir,) = (tmp_path / "remote").iterdir()
    manifest = json.loads((remote_dir / "manifest.json").read_text())
    assert manifest["backend"]["kind"] == "ndif" and manifest["backend"]["job_ids"]  # scored by the server
    want, got = metrics(tmp_path / "local"), metrics(tmp_path / "remote")
    for key, task in want.items():
        for condition, by_language in task["per_language"].items():
            for language, values in by_language.items():
                numbers = {k: v for k, v in values.items() if isinstance(v, float)}
                assert numbers, (key, condition, language)
                for name, value in numbers.items():
                    assert got[key]["per_language"][condition][language][name] == pytest.approx(value, abs=1e-5)


def test_a_sweep_tunes_on_dev_documents_and_tests_the_chosen_point(folder, data, tmp_path):
    spec_file = tmp_path / "sweep.yaml"
    spec_file.write_text(json.dumps(spec_data(
        ["en", "de"], name="lm-eval-sweep", model={"path": str(folder)}, interventions=[clas_intervention()],
        tasks=[lm_eval_task("xnli", data, limit=4, dev={"limit": 3})], sweep={"clas.alpha": [-1.5, 2.0]})))
    result = CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    document = json.loads((run_dir / "metrics.json").read_text())
    selection = document["sweep"]["tasks"]["lm_eval"]
    assert selection["metric"] == "acc" and selection["dev_n"] == {"de": 3, "en": 3}
    assert selection["chosen"]["clas"] in {"clas[alpha=-1.5]", "clas[alpha=2]"}
    for language in ("de", "en"):
        dev = (run_dir / "dev" / "samples" / f"lm_eval_{language}_base.jsonl").read_text().splitlines()
        test = (run_dir / "samples" / f"lm_eval_{language}_base.jsonl").read_text().splitlines()
        # the dev slice is the 3 documents after the 4 test documents of the same split
        assert [json.loads(row)["id"] for row in dev] == [f"validation:{i}" for i in range(4, 7)]
        assert [json.loads(row)["id"] for row in test] == [f"validation:{i}" for i in range(4)]
    assert set(document["conditions"]) == {"base", selection["chosen"]["clas"]}


@pytest.mark.slow
def test_base_equals_lm_evals_hf_model_on_the_embedded_gemma(data):
    from clas_graph.embedded import embedded_model_dir

    gemma = embedded_model_dir("gemma-3-270m")
    spec = validate_data(spec_data(["en", "de"], name="lm-eval-gemma", model={"embedded": "gemma-3-270m"},
                                   tasks=[lm_eval_task("xnli", data, limit=3), lm_eval_task("wikitext", data)]))
    embedded = load_model(spec.model)
    plans = {"base": compile_plan(spec, embedded, "base", None)}
    hf = HFLM(pretrained=str(gemma), batch_size=1, device="cpu", dtype="float32")
    for runner in task_runners(spec):
        for language in runner.languages()[:1]:
            _, metrics = runner.run_many(embedded, plans, language)["base"]
            name = runner.task.task_name(language)
            out = simple_evaluate(model=hf, tasks=[runner.task.config_for(language, TEST, None)],
                                  limit=runner.task.limit, bootstrap_iters=0, verbosity="ERROR",
                                  task_manager=task_manager_for(None))
            theirs = {key.removesuffix(",none"): value for key, value in out["results"][name].items() if "," in key}
            assert_equal_metrics(metrics, theirs)


# --- chat templates: lm-eval's --apply_chat_template, --system_instruction, --fewshot_as_multiturn -----------------

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory):
    """The tiny Llama folder with a chat template in its tokenizer."""
    from tiny import save_tiny
    from transformers import AutoTokenizer

    path = save_tiny(tmp_path_factory.mktemp("tiny-chat"), "llama")
    tokenizer = AutoTokenizer.from_pretrained(path)  # its own copy: the shared tiny tokenizer stays template-free
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return path


def test_chat_templated_prompts_equal_lm_evals_hf_model(chat_folder, data):
    """With apply_chat_template, a system instruction and two multi-turn shots, base equals lm-eval's `hf` model
    under the same options, metric by metric, and the prompts are the template's."""
    spec = validate_data(spec_data(["en", "de"], name="chat", model={"path": str(chat_folder)}, batch_size=3,
                                   tasks=[lm_eval_task("xnli", data, apply_chat_template=True, num_fewshot=2,
                                                       system_instruction="Answer briefly.")]))
    model = load_model(ModelRef(path=str(chat_folder)))
    (runner,) = task_runners(spec)
    rows, metrics = runner.run_many(model, {"base": compile_plan(spec, model, "base", None)}, "de")["base"]
    assert rows[0]["text"].startswith("<system>Answer briefly.</system><user>")
    assert rows[0]["text"].count("<assistant>") == 3  # two shots as turns, then the generation prompt
    hf = HFLM(pretrained=str(chat_folder), batch_size=1, device="cpu", dtype="float32")
    theirs = simple_evaluate(model=hf, tasks=[runner.task.config_for("de", TEST, None)], limit=LIMIT,
                             num_fewshot=2, bootstrap_iters=0, verbosity="ERROR", apply_chat_template=True,
                             fewshot_as_multiturn=True, system_instruction="Answer briefly.",
                             task_manager=task_manager_for(None))
    assert_equal_metrics(metrics, {key.removesuffix(",none"): value
                                   for key, value in theirs["results"]["xnli_de"].items() if "," in key})
    plain = validate_data(spec_data(["en", "de"], name="chat", model={"path": str(chat_folder)}, batch_size=3,
                                    tasks=[lm_eval_task("xnli", data)]))
    (plain_runner,) = task_runners(plain)
    plain_rows, _ = plain_runner.run_many(model, {"base": compile_plan(plain, model, "base", None)}, "de")["base"]
    assert "<user>" not in plain_rows[0]["text"]  # off by default, whatever the tokenizer has


def test_a_chat_template_the_tokenizer_lacks_and_multiturn_without_one_are_refused(tmp_path, folder, data):
    result = run_cli(tmp_path, lm_eval_task("xnli", data, apply_chat_template=True), folder)
    assert_one_line_error(result, "apply_chat_template", "the tokenizer has no chat template")
    result = run_cli(tmp_path, lm_eval_task("xnli", data, fewshot_as_multiturn=True), folder)
    assert_one_line_error(result, "fewshot_as_multiturn", "need a chat template")
