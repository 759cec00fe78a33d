"""Activation patching against an independent two-pass implementation with plain PyTorch hooks
(tests/reference_patch.py): one forward records the source text's values, a second writes them into the target
text's run. clas_graph runs both in one left-padded, mixed-length batch; the numbers must agree to 1e-5 (max abs,
float32 logits of tiny random Llama, Qwen2 and Gemma 3 models), locally and through the mock NDIF server."""

from __future__ import annotations

import json

import pytest
import torch
from reference_patch import greedy, last_logits, patch_edit, positions_of, record
from tiny import spec_data, tiny_tokenizer

import clas_graph
import clas_graph.backends
from clas_graph.errors import DataError
from clas_graph.execution.context import use
from clas_graph.execution.ndif import NdifExecutor
from clas_graph.spec.load import validate_data

ATOL = 1e-5
LANGS = ["en", "de", "fr", "es"]
ITEMS = {  # the same three items in four languages (lengths differ across languages)
    "en": ["The sky is blue and", "Hello my friend", "I like to read books in the evening"],
    "de": ["Der Himmel ist blau und", "Hallo mein Freund", "Ich lese gern Bücher am Abend"],
    "fr": ["Le ciel est bleu et", "Bonjour mon ami", "J'aime lire des livres le soir"],
    "es": ["El cielo es azul y", "Hola mi amigo", "Me gusta leer libros por la noche"],
}
# rows: every item in de, fr and en (en rows are the anchor: untouched by `non_anchor` patches)
TEXTS = [ITEMS[lang][i] for lang in ("de", "fr", "en") for i in range(3)]
ROWS = [lang for lang in ("de", "fr", "en") for _ in range(3)]
ITEM = [i for _ in range(3) for i in range(3)]
PARALLEL = {lang: [ITEMS[lang][i] for i in ITEM] for lang in LANGS}
NEURONS = [2, 5, 9, 30]


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma3"])
def model(request, tiny_lm):
    return tiny_lm(request.param)


def spec(*interventions, conditions=None):
    return validate_data(spec_data(LANGS, interventions=list(interventions), conditions=conditions))


def cross_lingual(model, patch, languages, condition=None, edits_of=lambda text, lang: []):
    """Reference logits: per row, record the sources' values (pass 1), patch them in (pass 2)."""
    tok, hf = tiny_tokenizer(), model._module
    positions = patch.get("positions", "last")
    source_rule = patch.get("source_positions", positions)
    c = patch.get("coefficient", 1.0)
    out = []
    for text, lang, item in zip(TEXTS, ROWS, ITEM):
        edits = list(edits_of(text, lang))
        if lang != "en":
            for layer in patch["layers"]:
                values = []
                for source in languages:
                    source_text = text if condition is not None else ITEMS[source][item]
                    source_edits = list(edits_of(source_text, lang)) if condition not in (None, "base") else []
                    recorded = record(hf, tok, source_text, layer, patch.get("site", "resid_post"), source_edits)
                    values.append(recorded[positions_of(source_rule, recorded.shape[0])])
                n = len(tok(text)["input_ids"])
                edits.append(patch_edit(layer, patch.get("site", "resid_post"), torch.stack(values).mean(0),
                                        positions_of(positions, n), c))
        out.append(last_logits(hf, tok, text, edits))
    return torch.stack(out)


PATCHES = [
    {"layers": [1], "source": {"language": "en"}},  # English-to-X at the last token (the papers' default)
    {"layers": [0, 2], "site": "mlp.down_proj.input", "source": {"language": "en"}, "positions": {"last": 2}},
    {"layers": [1], "site": "mlp.act_fn.output", "source": {"language": "es"}, "positions": {"first": 3},
     "coefficient": 0.5},
    {"layers": [2], "source": {"language": "en"}, "positions": [1, -1], "source_positions": {"last": 2}},
]


@pytest.mark.parametrize("patch", PATCHES, ids=["last", "h-last2", "act-first3-mix", "indices-vs-last2"])
def test_cross_lingual_patch_equals_two_hooked_passes(model, patch):
    plan = clas_graph.compile_plan(spec({"kind": "patch", "id": "p", **patch}), model, "p")
    got = clas_graph.forward(model, plan, TEXTS, ROWS, batch_size=8, parallel=PARALLEL)
    want = cross_lingual(model, patch, [patch["source"]["language"]])
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    base = clas_graph.forward(model, None, TEXTS, ROWS)
    assert (got - base)[:6].abs().amax() > 1e-3
    torch.testing.assert_close(got[6:], base[6:], atol=ATOL, rtol=0)  # en rows (the anchor) untouched


def test_mean_over_languages_equals_the_mean_of_recorded_sources(model):
    patch = {"layers": [1, 2], "source": {"languages": ["en", "fr", "es"], "reduce": "mean"}}
    plan = clas_graph.compile_plan(spec({"kind": "patch", "id": "p", **patch}), model, "p")
    got = clas_graph.forward(model, plan, TEXTS, ROWS, batch_size=5, parallel=PARALLEL)
    torch.testing.assert_close(got, cross_lingual(model, patch, ["en", "fr", "es"]), atol=ATOL, rtol=0)


def ablate_edits(text, lang):
    def fn(x):
        new = x.clone()
        new[..., NEURONS] = 0.0
        return new
    return [(0, "mlp.act_fn.output", fn)] if lang != "en" else []


@pytest.mark.parametrize("positions", ["last", "all"])
def test_restoration_from_base_equals_a_clean_pass_and_a_corrupted_pass(model, positions):
    patch = {"layers": [2], "source": {"condition": "base"}, "positions": positions}
    the_spec = spec({"kind": "ablate", "id": "corrupt", "site": "mlp.act_fn.output", "layers": [0],
                     "neurons": {"neurons": {0: NEURONS}}}, {"kind": "patch", "id": "restore", **patch},
                    conditions={"corrupt": ["corrupt"], "restored": ["corrupt", "restore"]})
    plans = clas_graph.compile_plans(the_spec, model)
    got = clas_graph.backends.forward_many(model, plans, TEXTS, ROWS, batch_size=6)
    want = cross_lingual(model, patch, ["x"], condition="base", edits_of=ablate_edits)
    torch.testing.assert_close(got["restored"], want, atol=ATOL, rtol=0)
    torch.testing.assert_close(got["corrupt"], clas_graph.forward(model, plans["corrupt"], TEXTS, ROWS), atol=ATOL,
                               rtol=0)
    if positions == "all":  # every position of the last layer's input restored: the clean output itself
        torch.testing.assert_close(got["restored"], got["base"], atol=ATOL, rtol=0)
    assert (got["restored"] - got["corrupt"])[:6].abs().amax() > 1e-3


def test_a_source_condition_runs_its_own_ops_on_the_source_rows(model):
    patch = {"layers": [2], "source": {"condition": "corrupt"}, "positions": {"last": 2}}
    the_spec = spec({"kind": "ablate", "id": "corrupt", "site": "mlp.act_fn.output", "layers": [0],
                     "neurons": {"neurons": {0: NEURONS}}}, {"kind": "patch", "id": "inject", **patch},
                    conditions={"corrupt": ["corrupt"], "injected": ["inject"]})
    plan = clas_graph.compile_plan(the_spec, model, "injected")
    assert [op.describe().split(":")[1].strip().split()[0] for op in plan.ops] == ["ablate", "patch"]
    got = clas_graph.forward(model, plan, TEXTS, ROWS, batch_size=4)
    want = cross_lingual(model, patch, ["x"], condition="corrupt",
                         edits_of=lambda text, lang: [])
    # the reference's source pass runs the corrupting ablation (rows non_anchor: the row's own language)
    tok, hf = tiny_tokenizer(), model._module
    rows = []
    for text, lang in zip(TEXTS, ROWS):
        edits = []
        if lang != "en":
            recorded = record(hf, tok, text, 2, "resid_post", ablate_edits(text, lang))
            n = recorded.shape[0]
            edits.append(patch_edit(2, "resid_post", recorded[positions_of({"last": 2}, n)],
                                    positions_of({"last": 2}, n)))
        rows.append(last_logits(hf, tok, text, edits))
    torch.testing.assert_close(got, torch.stack(rows), atol=ATOL, rtol=0)
    assert not torch.allclose(got, want, atol=1e-3)  # a base source would differ


def test_generation_patches_the_prompt_forward_only(model):
    patch = {"layers": [1], "source": {"language": "en"}}
    plan = clas_graph.compile_plan(spec({"kind": "patch", "id": "p", **patch}), model, "p")
    got = clas_graph.generate_ids(model, plan, TEXTS, ROWS, 4, batch_size=6, parallel=PARALLEL)
    tok, hf = tiny_tokenizer(), model._module
    want = []
    for text, lang, item in zip(TEXTS, ROWS, ITEM):
        edits = []
        if lang != "en":
            recorded = record(hf, tok, ITEMS["en"][item], 1, "resid_post")
            edits.append(patch_edit(1, "resid_post", recorded[-1:], [len(tok(text)["input_ids"]) - 1]))
        want.append(greedy(hf, tok, text, edits, 4))
    assert got == want


def test_every_readout_sees_only_the_callers_rows(tiny_lm):
    model = tiny_lm("llama")
    the_spec = spec({"kind": "patch", "id": "p", "layers": [1], "source": {"language": "en"}},
                    {"kind": "scale", "id": "s", "layers": [1], "factor": 2.0, "neurons": {"neurons": {1: NEURONS}}})
    plans = clas_graph.compile_plans(the_spec, model)
    many = clas_graph.backends.forward_many(model, plans, TEXTS, ROWS, batch_size=4, parallel=PARALLEL)
    for name, plan in plans.items():
        torch.testing.assert_close(many[name], clas_graph.forward(model, plan, TEXTS, ROWS, parallel=PARALLEL),
                                   atol=ATOL, rtol=0)
    nt = clas_graph.backends.next_token_many(model, plans, TEXTS, ROWS, [5] * len(TEXTS), parallel=PARALLEL)
    logp = torch.log_softmax(many["p"].double(), -1)
    torch.testing.assert_close(nt["p"]["gold_logprob"], logp[:, 5], atol=1e-4, rtol=0)
    assert nt["p"]["top1"].tolist() == many["p"].argmax(-1).tolist()
    nll, counts = clas_graph.backends.token_nll(model, plans["p"], TEXTS, ROWS, parallel=PARALLEL)
    base_nll, base_counts = clas_graph.backends.token_nll(model, None, TEXTS, ROWS)
    # the last token predicts no scored token, and attention is causal: patching it leaves the loss as it was
    assert torch.equal(counts, base_counts)
    torch.testing.assert_close(nll, base_nll, atol=1e-4, rtol=0)
    pooled = clas_graph.backends.pooled_hidden(model, plans["p"], TEXTS, ROWS, 2, parallel=PARALLEL)
    assert pooled.shape == (len(TEXTS), 32)


def test_the_lens_reads_through_source_rows(model):
    """The lens places its reads among the patch statements: below the patched layer it equals base, at the last
    layer it is the two-pass reference's next-token distribution."""
    from clas_graph.execution.api import lens_many

    patch = {"layers": [1], "source": {"language": "en"}}
    plans = clas_graph.compile_plans(spec({"kind": "patch", "id": "p", **patch}), model)
    sets = [[t] for t in range(40)]
    got = lens_many(model, plans, TEXTS, ROWS, [0, 1, 3], sets=sets, batch_size=4, parallel=PARALLEL)
    want = torch.softmax(cross_lingual(model, patch, ["en"]), -1)[:, :40].double()
    torch.testing.assert_close(got["p"]["lens"][:, 2], want, atol=ATOL, rtol=0)
    torch.testing.assert_close(got["p"]["lens"][:, 0], got["base"]["lens"][:, 0], atol=ATOL, rtol=0)
    assert (got["p"]["lens"][:6, 1] - got["base"]["lens"][:6, 1]).abs().amax() > 1e-4
    torch.testing.assert_close(got["p"]["lens"][6:], got["base"]["lens"][6:], atol=ATOL, rtol=0)


def test_missing_parallel_texts_and_positions_outside_a_source_are_data_errors(tiny_lm):
    model = tiny_lm("llama")
    plan = clas_graph.compile_plan(spec({"kind": "patch", "id": "p", "layers": [1], "source": {"language": "en"}}),
                                   model, "p")
    with pytest.raises(DataError, match="no parallel texts in it were given"):
        clas_graph.forward(model, plan, TEXTS, ROWS)
    plan = clas_graph.compile_plan(spec({"kind": "patch", "id": "p", "layers": [1], "source": {"language": "en"},
                                         "positions": [-1], "source_positions": [20]}), model, "p")
    with pytest.raises(DataError, match=r"interventions\[0\]\.source_positions: token index 20 .* outside"):
        clas_graph.forward(model, plan, TEXTS, ROWS, parallel=PARALLEL)


# --- remote: the same plan through nnsight's client and the mock NDIF server -------------------------------------


def test_patching_through_the_mock_ndif_server_gives_the_local_numbers(mock_ndif_each):
    ndif, model = mock_ndif_each
    the_spec = spec({"kind": "patch", "id": "p", "layers": [1], "source": {"languages": ["en", "es"]}},
                    {"kind": "ablate", "id": "corrupt", "site": "mlp.act_fn.output", "layers": [0],
                     "neurons": {"neurons": {0: NEURONS}}},
                    {"kind": "patch", "id": "restore", "layers": [2], "source": {"condition": "base"}},
                    conditions={"p": ["p"], "restored": ["corrupt", "restore"]})
    plans = clas_graph.compile_plans(the_spec, model)
    local = clas_graph.backends.forward_many(model, plans, TEXTS, ROWS, batch_size=4, parallel=PARALLEL)
    local_nt = clas_graph.backends.next_token_many(model, plans, TEXTS, ROWS, [5] * 9, batch_size=4,
                                                   parallel=PARALLEL)
    local_ids = clas_graph.generate_ids(model, plans["p"], TEXTS, ROWS, 3, batch_size=4, parallel=PARALLEL)
    before = len(ndif.jobs())
    with use(NdifExecutor(host=True, session_batches=2)):
        remote = clas_graph.backends.forward_many(model, plans, TEXTS, ROWS, batch_size=4, parallel=PARALLEL)
        remote_nt = clas_graph.backends.next_token_many(model, plans, TEXTS, ROWS, [5] * 9, batch_size=4,
                                                        parallel=PARALLEL)
        remote_ids = clas_graph.generate_ids(model, plans["p"], TEXTS, ROWS, 3, batch_size=4, parallel=PARALLEL)
    assert len(ndif.jobs()) > before
    for name in plans:
        torch.testing.assert_close(remote[name], local[name], atol=ATOL, rtol=0)
        torch.testing.assert_close(remote_nt[name]["kl"], local_nt[name]["kl"], atol=ATOL, rtol=0)
    assert remote_ids == local_ids


# --- specs: validation, and the evaluation runner's parallel items -------------------------------------------------


def validate_yaml(write, interventions: str, tasks: str = "tasks:\n  - {kind: next_token, corpus: {kind: bible, "
                                                                "limit: 2}}\n"):
    from typer.testing import CliRunner

    from clas_graph.cli import app

    text = (f"schema_version: 1\nname: t\nmodel: {{path: m}}\nlanguages: [en, de, fr]\ninterventions:\n"
            f"{interventions}{tasks}")
    return CliRunner().invoke(app, ["validate", str(write("s.yaml", text))])


@pytest.mark.parametrize("intervention, field, words", [
    ("{kind: patch, layers: [1], source: {language: sw}}", "interventions[0].source.language",
     "neither in `languages`"),
    ("{kind: patch, layers: [1], source: {language: en}, positions: {last: 2}, source_positions: last}",
     "interventions[0].source_positions", "selects 2 positions per row but"),
    ("{kind: patch, layers: [1], source: {language: en}, positions: all}", "interventions[0].positions",
     "no match"),
    ("{kind: patch, layers: [1], source: {condition: nope}}", "interventions[0].source.condition",
     "unknown condition 'nope'"),
    ("{kind: patch, layers: [1], source: {language: en}, positions: generated}", "interventions[0].positions",
     "prompt forward only"),
])
def test_bad_patch_fields_are_one_line_exit_2(write, intervention, field, words):
    result = validate_yaml(write, f"  - {intervention}\n")
    assert result.exit_code == 2, result.output
    assert field in result.output and words in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_source_language_the_task_has_no_text_in_or_a_non_parallel_task_is_refused(write):
    patch = "  - {kind: patch, layers: [1], source: {language: fr}}\n"
    result = validate_yaml(write, patch, "tasks:\n  - {kind: next_token, languages: [en, de], "
                                         "corpus: {kind: bible, limit: 2}}\n")
    assert result.exit_code == 2 and "interventions[0].source.language" in result.output
    assert "has no text in 'fr'" in result.output
    pytest.importorskip("lm_eval")
    result = validate_yaml(write, patch, "tasks:\n  - {kind: lm_eval, tasks: 'xnli_{lang}'}\n")
    assert result.exit_code == 2 and "interventions[0].source" in result.output
    assert "does not have parallel items" in result.output


def test_the_evaluation_runner_patches_from_the_tasks_parallel_items(tiny_lm, tmp_path):
    """A next_token unit in de under an English-to-German patch equals the API call given the English prompts of
    the same verses: the runner found the parallel items itself."""
    from clas_graph.runners.evaluate import run_units
    from clas_graph.tasks.base import task_runners
    from clas_graph.tasks.next_token import build_rows

    model = tiny_lm("llama")
    the_spec = validate_data(spec_data(["en", "de", "fr"], interventions=[
        {"kind": "patch", "id": "p", "layers": [1], "source": {"language": "en"}, "positions": {"last": 2}}],
        tasks=[{"kind": "next_token", "corpus": {"kind": "bible", "limit": 4, "seed": 1}}]))
    plans = clas_graph.compile_plans(the_spec, model)
    (runner,) = task_runners(the_spec)
    metrics = run_units(model, runner, plans, "de", tmp_path)
    task = the_spec.tasks[0]
    de = build_rows(task, ["de"], model.tokenizer)
    en = build_rows(task, ["en"], model.tokenizer)
    assert [r.sample_id for r in de] == [r.sample_id for r in en]
    direct = clas_graph.backends.next_token_many(model, plans, [r.prompt for r in de], ["de"] * len(de),
                                                 [r.gold_token for r in de], parallel={"en": [r.prompt for r in en]})
    kl = direct["p"]["kl"]
    assert metrics["p"]["kl_from_base"] == pytest.approx(float(kl.mean()), abs=1e-6) and float(kl.mean()) > 1e-4


def _xnli_file(write, lang, n=6, item_word="pair"):
    rows = [{"premise": f"{lang} {item_word} {i} is here", "hypothesis": f"{lang} {i} {'more ' * i}", "label": i % 3}
            for i in range(n)]
    return str(write(f"xnli_{lang}_{item_word}.jsonl", "".join(json.dumps(row) + "\n" for row in rows)))


def _xquad_file(write, lang, n=4):
    rows = [{"id": f"q{i}", "context": f"{lang} context {i} {'word ' * i}", "question": f"{lang} question {i}?",
             "answers": {"text": [f"{lang} context"], "answer_start": [0]}} for i in range(n)]
    return str(write(f"xquad_{lang}.jsonl", "".join(json.dumps(row) + "\n" for row in rows)))


def test_xnli_and_xquad_units_patch_from_the_same_items_in_the_source_language(tiny_lm, tmp_path, write):
    """XNLI's and XQuAD's items are translations sharing ids: a de unit under an English patch equals the API call
    given the English prompts of the same items (built here from the files, not by the runner)."""
    from clas_graph.data.templates import render
    from clas_graph.data.xnli import XNLI_PROMPT
    from clas_graph.data.xquad import XQUAD_PROMPT
    from clas_graph.runners.evaluate import run_units, samples_path
    from clas_graph.tasks.base import task_runners

    model = tiny_lm("llama")
    xnli = {lang: _xnli_file(write, lang) for lang in ("en", "de")}
    xquad = {lang: _xquad_file(write, lang) for lang in ("en", "de")}
    the_spec = validate_data(spec_data(["en", "de"], interventions=[
        {"kind": "patch", "id": "p", "layers": [1], "source": {"language": "en"}, "positions": {"last": 2}}],
        tasks=[{"kind": "xnli", "data_files": xnli, "limit": 4, "labels": ["0", "1", "2"]},
               {"kind": "xquad", "data_files": xquad, "limit": 3, "seed": 2, "max_new_tokens": 3}]))
    plans = clas_graph.compile_plans(the_spec, model)
    xnli_runner, xquad_runner = task_runners(the_spec)
    run_units(model, xnli_runner, plans, "de", tmp_path)
    run_units(model, xquad_runner, plans, "de", tmp_path)

    def rows(runner, name):
        path = samples_path(tmp_path, runner.key, "de", name)
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    items = xnli_runner.task.items("de", "test")
    ids = [e.id for e in items]
    en = {e.id: e for e in xnli_runner.task.items("en", "test")}
    prompts = [render(XNLI_PROMPT, premise=e.premise, hypothesis=e.hypothesis) for e in items]
    sources = [render(XNLI_PROMPT, premise=en[i].premise, hypothesis=en[i].hypothesis) for i in ids]
    labels = [model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in ("0", "1", "2")]
    direct = clas_graph.forward(model, plans["p"], prompts, ["de"] * len(prompts), token_ids=labels,
                                parallel={"en": sources})
    got = torch.tensor([row["probs"] for row in rows(xnli_runner, "p")], dtype=torch.float64)
    torch.testing.assert_close(got, torch.softmax(direct.double(), -1), atol=1e-5, rtol=0)
    base = torch.tensor([row["probs"] for row in rows(xnli_runner, "base")], dtype=torch.float64)
    assert (got - base).abs().max() > 1e-4

    questions = xquad_runner.task.items("de", "test")
    en_q = {q.id: q for q in xquad_runner.task.items("en", "test")}
    prompts = [render(XQUAD_PROMPT, context=q.context, question=q.question) for q in questions]
    sources = [render(XQUAD_PROMPT, context=en_q[q.id].context, question=en_q[q.id].question) for q in questions]
    want = clas_graph.generate(model, plans["p"], prompts, ["de"] * len(prompts), 3, parallel={"en": sources})
    assert [row["output"] for row in rows(xquad_runner, "p")] == want


def test_two_items_with_identical_text_each_get_their_own_source(tiny_lm, tmp_path, write):
    """Sources are found by item id, not by text: two German items with the same text are patched from their own,
    different English items (matching by text would give both the first one's source)."""
    from clas_graph.data.templates import render
    from clas_graph.data.xnli import XNLI_PROMPT
    from clas_graph.runners.evaluate import run_units, samples_path
    from clas_graph.tasks.base import task_runners

    model = tiny_lm("llama")
    en = [{"premise": f"en pair {i} is {'here ' * (i + 1)}", "hypothesis": f"en {i}", "label": i % 3} for i in range(3)]
    de = [{"premise": "de gleich", "hypothesis": "de gleich", "label": i % 3} for i in range(2)]
    de.append({"premise": "de anders", "hypothesis": "de 2", "label": 2})
    files = {lang: str(write(f"same_{lang}.jsonl", "".join(json.dumps(row) + "\n" for row in rows)))
             for lang, rows in (("en", en), ("de", de))}
    the_spec = validate_data(spec_data(["en", "de"], interventions=[
        {"kind": "patch", "id": "p", "layers": [1], "source": {"language": "en"}}],
        tasks=[{"kind": "xnli", "data_files": files, "limit": None, "labels": ["0", "1", "2"]}]))
    plans = clas_graph.compile_plans(the_spec, model)
    (runner,) = task_runners(the_spec)
    run_units(model, runner, plans, "de", tmp_path)
    path = samples_path(tmp_path, runner.key, "de", "p")
    got = torch.tensor([json.loads(line)["probs"] for line in path.read_text(encoding="utf-8").splitlines()],
                       dtype=torch.float64)
    items = runner.task.items("de", "test")
    by_id = {e.id: e for e in runner.task.items("en", "test")}
    prompts = [render(XNLI_PROMPT, premise=e.premise, hypothesis=e.hypothesis) for e in items]
    assert prompts[0] == prompts[1]
    sources = [render(XNLI_PROMPT, premise=by_id[e.id].premise, hypothesis=by_id[e.id].hypothesis) for e in items]
    assert sources[0] != sources[1]
    labels = [model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in ("0", "1", "2")]
    direct = clas_graph.forward(model, plans["p"], prompts, ["de"] * 3, token_ids=labels, parallel={"en": sources})
    want = torch.softmax(direct.double(), -1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert (want[0] - want[1]).abs().max() > 1e-4  # the two identical rows differ only by their sources


def test_a_unit_whose_languages_have_different_items_is_refused(tiny_lm, tmp_path, write):
    from clas_graph.runners.evaluate import run_units
    from clas_graph.tasks.base import task_runners

    model = tiny_lm("llama")
    xnli = {"en": _xnli_file(write, "en", n=6), "de": _xnli_file(write, "de", n=7)}
    the_spec = validate_data(spec_data(["en", "de"], interventions=[
        {"kind": "patch", "id": "p", "layers": [1], "source": {"language": "en"}}],
        tasks=[{"kind": "xnli", "data_files": xnli, "limit": None, "labels": ["0", "1", "2"]}]))
    (runner,) = task_runners(the_spec)
    with pytest.raises(DataError, match="items in de and en differ, so they are not parallel"):
        run_units(model, runner, clas_graph.compile_plans(the_spec, model), "de", tmp_path)
    assert not any(tmp_path.rglob("*.json"))  # nothing written for the refused unit


def test_token_rows_take_condition_sources_and_equal_the_text_path(model):
    """lm-evaluation-harness requests arrive as token ids: restoration from base on them equals the same rows
    given as texts (whose tokens they are), and a language source is refused (token rows have no parallel text)."""
    from clas_graph.execution.api import read_many, read_tokens_many
    from clas_graph.execution.readouts import TokenNll

    the_spec = spec({"kind": "ablate", "id": "corrupt", "site": "mlp.act_fn.output", "layers": [0],
                     "neurons": {"neurons": {0: NEURONS}}},
                    {"kind": "patch", "id": "restore", "layers": [2], "source": {"condition": "base"},
                     "positions": {"last": 2}},
                    {"kind": "patch", "id": "p", "layers": [1], "source": {"language": "en"}},
                    conditions={"corrupt": ["corrupt"], "restored": ["corrupt", "restore"], "p": ["p"]})
    plans = clas_graph.compile_plans(the_spec, model)
    language_source = {"p": plans.pop("p")}
    token_rows = [model.tokenizer(text)["input_ids"] for text in TEXTS]
    by_text = read_many(model, plans, TEXTS, ROWS, TokenNll(), batch_size=4)
    by_ids = read_tokens_many(model, plans, token_rows, ROWS, TokenNll(), batch_size=4)
    for name in plans:
        for got, want in zip(by_ids[name], by_text[name]):
            torch.testing.assert_close(got, want, atol=ATOL, rtol=0, msg=name)
    assert (by_ids["restored"][0] - by_ids["corrupt"][0]).abs().max() > 1e-4
    with pytest.raises(DataError, match="patches from another language's text, which token rows do not have"):
        read_tokens_many(model, language_source, token_rows, ROWS, TokenNll())
