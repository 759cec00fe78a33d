"""The latent-language lens: readout, token -> language map, the task kind end to end, and its input checks.

Reference: plain PyTorch forward hooks on each decoder layer's output (tests/reference.py's CLAS pre-hooks for the
CLAS condition), model.model.norm and lm_head applied by hand at the last (or second-to-last) real token, softmax,
token groups summed. Tolerance 1e-5 absolute on probabilities (measured: ~1e-8). Batches mix languages and lengths
(left-padded), through the local executor and nnsight's real client against the mock NDIF server.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from reference import ClasRef, clas_hooks, encode
from tiny import spec_data, tiny_model, tiny_tokenizer
from typer.testing import CliRunner

import clas_graph
from clas_graph.cli import app
from clas_graph.errors import DataError
from clas_graph.execution.api import lens_many
from clas_graph.execution.context import use
from clas_graph.execution.lens import LayerLens
from clas_graph.loading import wrap
from clas_graph.spec.load import validate_data
from clas_graph.stats.token_languages import token_languages

ATOL = 1e-5
LANGS = ["en", "de", "fr"]
TEXTS = ["The sky is blue and", "Der Himmel ist blau und die Sonne scheint hell", "Le ciel", "Bonjour mes amis",
         "Ich lese gern Bücher am Abend und trinke"]
ROWS = ["en", "de", "fr", "fr", "de"]
SHARED = {1: [1, 2, 3, 40], 2: [9, 10, 33]}
SPECIFIC = {1: [5, 6], 2: [7]}
BETA, GAMMA, ALPHA = 0.6, 0.4, 1.5
GROUPS = [[[5, 6, 7], [8]], [[30], [31, 32]], [[5], [40, 41, 42, 43]], [[100], [101]], [[7, 8], [9]]]
SETS = [[10, 11, 12], [20, 21], [200]]


def clas_spec(model=None):
    return validate_data({**spec_data(LANGS, **({"model": model} if model else {})), "anchor":
                          {"kind": "fixed", "language": "en"}, "interventions": [
                              {"kind": "clas", "id": "clas", "layers": [1, 2], "shared": {"neurons": SHARED},
                               "specific": {"neurons": SPECIFIC}, "beta": BETA, "gamma": GAMMA, "alpha": ALPHA}]})


def mask(neurons):
    out = torch.zeros(64)
    out[neurons] = 1.0
    return out


@torch.no_grad()
def reference_lens(hf, tokenizer, texts, rows, *, clas: bool, position: int = -1):
    """[rows, layers, groups] and top-1 [rows, layers] with plain hooks: each layer's output, norm and head by hand."""
    outputs = {}
    handles = [layer.register_forward_hook(lambda module, args, out, k=k: outputs.__setitem__(k, out))
               for k, layer in enumerate(hf.model.layers)]
    ref = ClasRef({layer: (mask(SHARED[layer]), mask(SPECIFIC.get(layer, []))) for layer in SHARED}, BETA, GAMMA, ALPHA)
    try:
        with clas_hooks(hf, ref if clas else None, torch.tensor([lang != "en" for lang in rows])):
            hf(**encode(tokenizer, texts), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    probs = torch.stack([torch.softmax(hf.lm_head(hf.model.norm(outputs[k][:, position])).float(), -1)
                         for k in range(len(hf.model.layers))], 1)
    columns = [torch.stack([probs[i, :, g].sum(-1) for i, g in enumerate(group)]) for group in zip(*GROUPS)]
    columns += [probs[..., s].sum(-1) for s in SETS]
    return torch.stack(columns, -1), probs.argmax(-1)


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma3"])
def arch(request):
    return request.param


@pytest.fixture(scope="module")
def setup(arch):
    hf = tiny_model(arch, layers=4)
    assert getattr(hf.config, "final_logit_softcapping", None) is None  # the reference applies none
    model = wrap(hf, tiny_tokenizer())
    return hf, model, clas_graph.compile_plans(clas_spec(), model)


@pytest.mark.parametrize("position", [-1, -2])
def test_lens_equals_forward_hooks(setup, position):
    hf, model, plans = setup
    got = lens_many(model, plans, TEXTS, ROWS, [0, 1, 2, 3], position=position, row_groups=GROUPS, sets=SETS,
                    batch_size=3)
    for name, clas in (("base", False), ("clas", True)):
        want, top1 = reference_lens(hf, tiny_tokenizer(), TEXTS, ROWS, clas=clas, position=position)
        torch.testing.assert_close(got[name]["lens"], want.double(), atol=ATOL, rtol=0, msg=name)
        assert torch.equal(got[name]["top1"], top1), name
    change = (got["clas"]["lens"] - got["base"]["lens"]).abs()
    assert change[:, 0].max() == 0  # CLAS starts at layer 1: the layer-0 lens cannot move
    assert change[1, 1:].max() > 1e-4  # non-anchor rows move from layer 1 on
    assert change[0].max() == 0  # the anchor row is untouched


def test_lens_reads_only_chosen_layers_and_stops(setup):
    _, model, plans = setup
    full = lens_many(model, plans, TEXTS, ROWS, [0, 1, 2, 3], sets=SETS, batch_size=8)
    some = lens_many(model, plans, TEXTS, ROWS, [1, 2], sets=SETS, batch_size=8)
    torch.testing.assert_close(some["clas"]["lens"], full["clas"]["lens"][:, 1:3], atol=ATOL, rtol=0)
    # the last layer's lens is the model's own next-token distribution
    last = lens_many(model, plans, TEXTS, ROWS, [3], sets=[[t] for t in range(30)], batch_size=2)
    own = torch.softmax(clas_graph.forward(model, plans["clas"], TEXTS, ROWS), -1)[:, :30]
    torch.testing.assert_close(last["clas"]["lens"][:, 0], own.double(), atol=ATOL, rtol=0)
    with pytest.raises(DataError, match="fewer than 9 tokens"):
        lens_many(model, plans, TEXTS, ROWS, [0], position=-9, sets=SETS)


def test_lens_readout_is_small_and_refuses_bad_layers():
    lens = LayerLens(layers=(0, 3), row_groups=((( 1, 2), (3,)),), sets=((4,), (5, 6)))
    assert lens.row_width(None) == 2 * (4 + 1)
    with pytest.raises(ValueError, match="increasing"):
        LayerLens(layers=(3, 1), sets=((1,),))
    with pytest.raises(ValueError, match="at least one token group"):
        LayerLens(layers=(1,))


def test_lens_through_the_mock_ndif_server(mock_ndif_each):
    """nnsight's real client against the mock server: the per-layer group probabilities equal the hooks' numbers,
    and only they travel back (no vocabulary rows)."""
    from clas_graph.execution.ndif import NdifExecutor

    server, model = mock_ndif_each
    plans = clas_graph.compile_plans(clas_spec({"path": model._module.config._name_or_path}), model)
    before = len(server.jobs())
    with use(NdifExecutor(host=True, session_batches=4)):
        got = lens_many(model, plans, TEXTS, ROWS, [0, 1, 2, 3], row_groups=GROUPS, sets=SETS, batch_size=3)
    jobs = server.jobs()[before:]
    assert len(jobs) == 1
    assert sum(job["result_bytes"] for job in jobs) < 20_000  # a vocabulary row per layer would be 5 x 4 x 1.6 KB x 2
    for name, clas in (("base", False), ("clas", True)):
        want, top1 = reference_lens(model._module, model.tokenizer, TEXTS, ROWS, clas=clas)
        torch.testing.assert_close(got[name]["lens"], want.double(), atol=ATOL, rtol=0, msg=name)
        assert torch.equal(got[name]["top1"], top1), name


# --- token -> language map --------------------------------------------------------------------------------------

CORPUS = {"en": ["the cat and the dog", "the sun is hot", "a cat"],
          "de": ["die Katze und der Hund", "die Sonne ist heiß", "eine Katze"],
          "fr": ["le chat et le chien", "le soleil est chaud", "un chat est"]}


def test_token_language_map_equals_numpy():
    tokenizer = tiny_tokenizer()
    vocab = len(tokenizer)
    found = token_languages(tokenizer, CORPUS, vocab, min_share=0.7, min_count=2)
    # independent numpy computation of the documented rule
    counts = np.zeros((3, vocab))
    for row, lang in enumerate(CORPUS):
        for text in CORPUS[lang]:
            for token in tokenizer.encode(text, add_special_tokens=False):
                counts[row, token] += 1
    counts[:, tokenizer.all_special_ids] = 0
    freq = counts / counts.sum(1, keepdims=True)
    total = freq.sum(0)
    share = np.divide(freq, total, out=np.zeros_like(freq), where=total > 0)
    best = share.argmax(0)
    keep = (total > 0) & (share.max(0) >= 0.7) & (counts[best, np.arange(vocab)] >= 2)
    for row, lang in enumerate(CORPUS):
        want = np.nonzero(keep & (best == row))[0].tolist()
        assert list(found.tokens[lang]) == want, lang
        assert list(found.counts[lang]) == counts[row, want].astype(int).tolist()
    assert all(found.tokens.values())  # each language has typical tokens here (the check is not vacuous)
    shared = tokenizer.encode(" est", add_special_tokens=False)  # fr only: typical of fr; " Katze": de
    assert shared[0] in found.tokens["fr"] or len(shared) > 1
    assert found.describe(tokenizer)["sizes"] == {lang: len(found.tokens[lang]) for lang in CORPUS}
    strict = token_languages(tokenizer, CORPUS, vocab, min_share=1.0, min_count=100)
    assert not any(strict.tokens.values())


# --- the task kind ------------------------------------------------------------------------------------------------

WORDS = {  # Wendler et al.'s clean.csv columns; the anchor (English) word is word_original
    "de": [("book", "Buch", 'Ein "___" wird zum Lesen verwendet. Antwort: "Buch".'),
           ("cloud", "Wolke", 'Eine "___" schwebt am Himmel. Antwort: "Wolke".'),
           ("fire", "Feuer", 'Ein "___" ist heiß. Antwort: "Feuer".'),
           ("moon", "Mond", 'Der "___" scheint nachts. Antwort: "Mond".')],
    "fr": [("book", "livre", 'Un "___" sert à lire. Réponse: "livre".'),
           ("cloud", "nuage", 'Un "___" flotte dans le ciel. Réponse: "nuage".'),
           ("fire", "feu", 'Le "___" est chaud. Réponse: "feu".'),
           ("moon", "lune", 'La "___" brille la nuit. Réponse: "lune".')],
}


def write_words(folder, rows=WORDS, header="word_original,word_translation,blank_prompt_translation_masked"):
    for lang, items in rows.items():
        lines = [header] + [",".join('"' + cell.replace('"', '""') + '"' for cell in item) for item in items]
        (folder / f"{lang}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def lens_spec(model_dir, prompts: str, **extra) -> str:
    extra_lines = "".join(f"    {key}: {value}\n" for key, value in extra.items())
    return f"""\
schema_version: 1
name: lens-t
model: {{path: {model_dir}, chat_template: none}}
languages: [en, de, fr]
anchor: {{kind: fixed, language: en}}
interventions:
  - {{kind: clas, id: clas, layers: [1, 2], shared: {{neurons: {{1: [1, 2, 3]}}}}, specific: {{neurons: {{2: [5]}}}},
     alpha: 4.0}}
tasks:
  - kind: lens
    prompts: {prompts}
    token_languages: {{corpus: {{kind: bible, limit: 6}}, min_share: 0.8, min_count: 2}}
{extra_lines}batch_size: 4
"""


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


TRANSLATION = "{kind: words, format: translation, source: fr, shots: 2, data_files: {de: de.csv, fr: fr.csv}}"


def test_translation_and_cloze_prompts_follow_wendler(tmp_path):
    from clas_graph.tasks.lens import WordPrompts, items

    write_words(tmp_path)
    spec = validate_data({**spec_data(LANGS), "anchor": {"kind": "fixed", "language": "en"},
                          "tasks": [{"kind": "lens", "prompts": {"kind": "words", "format": "translation",
                                                                  "source": "fr", "data_files": {"de": "de.csv",
                                                                                                 "fr": "fr.csv"}}}]})
    task = spec.tasks[0]
    found = items(task, "de", tmp_path)
    assert [item.id for item in found] == ["book", "cloud", "fire", "moon"]
    lines = found[0].prompt.split("\n")
    # Wendler et al.'s 4 demonstrations, capped by the 3 other items here, then the item cut after its quote
    assert len(lines) == 4 and lines[-1] == 'Français: "livre" - Deutsch: "'
    assert all(line.startswith('Français: "') and '" - Deutsch: "' in line and line.endswith('"') for line in lines[:3])
    assert 'Deutsch: "Buch"' not in found[0].prompt  # the item's own answer is never a demonstration
    assert found[0].answer == "Buch" and found[0].anchor_answer == "book"
    assert items(task, "de", tmp_path) == found  # the seeded demonstrations are reproducible
    cloze = task.model_copy(update={"prompts": WordPrompts(kind="words", format="cloze", data_files={"de": "de.csv"})})
    query = items(cloze, "de", tmp_path)[2]
    assert query.prompt.split("\n")[-1] == 'Ein "___" ist heiß. Antwort: "' and len(query.prompt.split("\n")) == 3


def test_lens_task_runs_end_to_end_and_resumes(tmp_path, tiny_model_dir):
    model_dir = tiny_model_dir("llama", 4)
    write_words(tmp_path)
    (tmp_path / "lens.yaml").write_text(lens_spec(model_dir, TRANSLATION, layers="[0, 2, 3]"))
    result = cli("run", tmp_path / "lens.yaml", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    task = json.loads((run_dir / "metrics.json").read_text())["tasks"]["lens"]
    assert task["primary"] == "anchor_mean" and task["languages"] == ["de", "fr"]  # the anchor is no unit
    for condition in ("base", "clas"):
        for lang in ("de", "fr"):
            unit = task["per_language"][condition][lang]
            assert unit["layers"] == [0, 2, 3] and len(unit["curves"]["anchor"]) == 3
            assert unit["anchor_mean"] == pytest.approx(sum(unit["curves"]["anchor"]) / 3, abs=1e-6)
            curves = unit["curves"]
            first = next((layer for layer, a, p in zip(unit["layers"], curves["anchor"], curves["prompt"])
                          if a > p and a >= 0.05), None)
            assert unit["crossover_layer"] == first
            assert set(unit["mass"]) == {"en", "de", "fr"} and unit["reads"] == "answer probability"
    assert task["delta"]["clas"]["de"] != 0  # CLAS moved the lens
    samples = (run_dir / "samples" / "lens_de_clas.jsonl").read_text().splitlines()
    assert json.loads(samples[0])["answer"] == "Buch" and len(json.loads(samples[0])["p_anchor"]) == 3
    assert (run_dir / "figures" / "lens_lens.png").stat().st_size > 1000
    record = json.loads((run_dir / "lens" / "lens_token_languages.json").read_text())
    assert set(record["tokens"]) == {"de", "fr", "en"} and record["min_share"] == 0.8
    again = cli("run", tmp_path / "lens.yaml", "--runs-dir", tmp_path / "runs")
    assert again.exit_code == 0 and json.loads((run_dir / "metrics.json").read_text())["tasks"]["lens"] == task


def one_line_exit_2(result, *needles):
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert "Traceback" not in result.output and len(message.splitlines()) == 1, message
    for needle in needles:
        assert needle in message, message


def test_a_model_without_a_known_final_norm_is_refused_before_model_work(tmp_path, tiny_model_dir, monkeypatch):
    import clas_graph.loading as loading
    from clas_graph import sites

    monkeypatch.setitem(sites.ARCHITECTURES, "llama", replace(sites.ARCHITECTURES["llama"], final_norm=None))
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    write_words(tmp_path)
    (tmp_path / "lens.yaml").write_text(lens_spec(tiny_model_dir("llama", 4), TRANSLATION))
    one_line_exit_2(cli("run", tmp_path / "lens.yaml", "--runs-dir", tmp_path / "runs"),
                    "tasks[0] (lens): model", "no final norm for 'llama'")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("case, needles", [
    ("language", ("tasks[0].prompts.data_files", "no word file for language 'fr'")),
    ("column", ("tasks[0] (lens)", "lacks column(s) 'word_translation'")),
    ("empty", ("tasks[0] (lens)", "row 2, column 'word_translation' is empty")),
    ("layer", ("tasks[0] (lens): layers", "layer 7 is out of range")),
])
def test_bad_lens_input_is_one_line_before_model_work(tmp_path, tiny_model_dir, monkeypatch, case, needles):
    import clas_graph.loading as loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    words = {lang: list(rows) for lang, rows in WORDS.items()}
    prompts, extra = TRANSLATION, {}
    if case == "language":
        prompts = TRANSLATION.replace(", fr: fr.csv", "")
    if case == "empty":
        words["de"][1] = ("cloud", "  ", "x")
    if case == "layer":
        extra = {"layers": "[0, 7]"}
    write_words(tmp_path, words, header="word_original,word,blank_prompt_translation_masked" if case == "column"
                else "word_original,word_translation,blank_prompt_translation_masked")
    (tmp_path / "lens.yaml").write_text(lens_spec(tiny_model_dir("llama", 4), prompts, **extra))
    one_line_exit_2(cli("run", tmp_path / "lens.yaml", "--runs-dir", tmp_path / "runs"), *needles)
    assert not (tmp_path / "runs").exists()


def test_an_answer_with_no_tokens_is_refused_naming_the_field(tmp_path):
    from clas_graph.tasks.base import task_runners

    write_words(tmp_path)
    (tmp_path / "lens.yaml").write_text(lens_spec("m", TRANSLATION))
    spec = clas_graph.load_spec(tmp_path / "lens.yaml")
    (runner,) = task_runners(spec)

    class Dropping:  # a tokenizer whose normalizer drops "Wolke" entirely
        all_special_ids = [0]

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [] if "Wolke"[:1] in text and text.strip() in "Wolke" else [7]}

        def decode(self, ids):
            return "x"

    config = tiny_model("llama", layers=4).config
    with pytest.raises(DataError, match=r"answer 'Wolke' of item 'cloud' \(de\) has no tokens") as error:
        runner.check_model(config, Dropping())
    assert "prompts.data_files.de: column 'word_translation'" in str(error.value)
