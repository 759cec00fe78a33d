"""Position selectors on every kind's op, against plain PyTorch hooks on each text alone (tests/reference_patch.py):
left-padded, mixed-length batches must select each text's own tokens, in a forward and in generation.

Tolerance: 1e-5 max abs on float32 logits of tiny random models (padded batches match one-by-one runs to ~1e-6).
"""

from __future__ import annotations

import pytest
import torch
from reference_patch import greedy, last_logits, positions_of
from tiny import spec_data, tiny_tokenizer
from typer.testing import CliRunner

import clas_graph
from clas_graph.errors import DataError
from clas_graph.records import spec_hash
from clas_graph.spec.load import validate_data

ATOL = 1e-5
LANGS = ["en", "de", "fr"]
TEXTS = ["Der Himmel ist blau und die Sonne scheint", "Le ciel", "The sky is blue and", "Bonjour mes amis"]
ROWS = ["de", "fr", "en", "fr"]
NEURONS = [3, 7, 11, 40]
VECTOR = [0.3 * ((i % 5) - 2) for i in range(32)]
SELECTORS = ["last", {"first": 2}, {"last": 3}, [0, -2], "prompt", "generated", "all"]


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma3"])
def model(request, tiny_lm):
    return tiny_lm(request.param)


def spec_for(positions, **extra):
    return validate_data(spec_data(LANGS, interventions=[
        {"kind": "scale", "id": "scale", "layers": [1], "factor": 3.0, "neurons": {"neurons": {1: NEURONS}},
         "rows": "all", "positions": positions, **extra},
        {"kind": "add_vector", "id": "add", "layers": [2], "vector": {"values": VECTOR}, "positions": positions,
         "rows": {"languages": ["de", "fr"]}},
        {"kind": "ablate", "id": "ablate", "site": "mlp.act_fn.output", "layers": [0],
         "neurons": {"neurons": {0: NEURONS}}, "rows": "all", "positions": positions}],
        conditions={"all": ["scale", "add", "ablate"]}))


def reference_edits(positions, text_length, language, in_generation=False):
    """The three ops of `spec_for` as hook edits on one text."""
    def at(x):  # the positions this step's forward touches (None: none)
        prompt = x.shape[1] > 1 if in_generation else True
        if positions == "generated":
            return None if prompt else list(range(x.shape[1]))
        if not prompt:
            return list(range(x.shape[1])) if positions == "all" else None
        return positions_of(positions, text_length)

    def scale(x):
        chosen = at(x)
        if chosen is None:
            return x
        new = x.clone()
        for p in chosen:
            new[0, p, NEURONS] *= 3.0
        return new

    def add(x):
        chosen = at(x)
        if chosen is None or language == "en":
            return x
        new = x.clone()
        new[0, chosen] += torch.tensor(VECTOR, dtype=x.dtype)
        return new

    def ablate(x):
        chosen = at(x)
        if chosen is None:
            return x
        new = x.clone()
        for p in chosen:
            new[0, p, NEURONS] = 0.0
        return new

    return [(1, "h", scale), (2, "resid", add), (0, "act", ablate)]


@pytest.mark.parametrize("positions", SELECTORS, ids=str)
def test_selectors_match_hooks_on_each_text_alone(model, positions):
    tok = tiny_tokenizer()
    hf = model._module
    plan = clas_graph.compile_plan(spec_for(positions), model, "all")
    got = clas_graph.forward(model, plan, TEXTS, ROWS, batch_size=4)
    lengths = [len(tok(t)["input_ids"]) for t in TEXTS]
    want = torch.stack([last_logits(hf, tok, t, reference_edits(positions, n, lang))
                        for t, n, lang in zip(TEXTS, lengths, ROWS)])
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    base = clas_graph.forward(model, None, TEXTS, ROWS, batch_size=4)
    if positions == "generated":
        assert torch.equal(got, base)  # a forward is the prompt: nothing is generated
    else:
        assert (got - base).abs().amax() > 1e-3
    generated = clas_graph.generate_ids(model, plan, TEXTS, ROWS, 3, batch_size=4)
    assert generated == [greedy(hf, tok, t, reference_edits(positions, n, lang, in_generation=True), 3)
                         for t, n, lang in zip(TEXTS, lengths, ROWS)]


@pytest.mark.parametrize("positions", [{"first": 2}, [0, -2], "generated"], ids=str)
def test_selectors_through_the_mock_ndif_server_give_the_local_numbers(mock_ndif_each, positions):
    """nnsight's real client against the mock server, on each tiny architecture: forward and generation equal the
    local executor's (which equals the hooks above)."""
    from clas_graph.execution.context import use
    from clas_graph.execution.ndif import NdifExecutor

    server, model = mock_ndif_each
    plan = clas_graph.compile_plan(spec_for(positions), model, "all")
    local = clas_graph.forward(model, plan, TEXTS, ROWS, batch_size=4)
    local_ids = clas_graph.generate_ids(model, plan, TEXTS, ROWS, 3, batch_size=4)
    before = len(server.jobs())
    with use(NdifExecutor(host=True)):
        remote = clas_graph.forward(model, plan, TEXTS, ROWS, batch_size=4)
        remote_ids = clas_graph.generate_ids(model, plan, TEXTS, ROWS, 3, batch_size=4)
    assert len(server.jobs()) > before
    torch.testing.assert_close(remote, local, atol=ATOL, rtol=0)
    assert remote_ids == local_ids


def test_token_selectors_act_in_the_prompt_forward_only(tiny_lm):
    model = tiny_lm("llama")
    plan = clas_graph.compile_plan(spec_for("last"), model, "all")
    assert {op.steps for op in plan.ops} == {"prompt"}
    source = clas_graph.compile.emit.emit_source(plan)
    assert "if step == 0:" in source and 'inputs["attention_mask"]' in source
    assert {op.steps for op in clas_graph.compile_plan(spec_for("generated"), model, "all").ops} == {"generated"}


def test_a_selector_outside_a_text_is_refused_before_any_trace(tiny_lm):
    model = tiny_lm("llama")
    plan = clas_graph.compile_plan(spec_for({"first": 7}), model, "all")  # "Le ciel" is 6 tokens
    with pytest.raises(DataError, match=r"<spec>: interventions\[2\]\.positions: `\{first: 7\}` needs 7 tokens, but a "
                                        r"text has 6 \(row 1, fr: 6 tokens\)\. Fix:") as error:
        clas_graph.forward(model, plan, TEXTS, ROWS)
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match=r"index 9 .*outside a text"):
        clas_graph.generate_ids(model, clas_graph.compile_plan(spec_for([9]), model, "all"), TEXTS, ROWS, 2)


def test_positions_that_exclude_the_steps_are_a_field_error(write):
    from clas_graph.cli import app

    text = ("schema_version: 1\nname: t\nmodel: {path: m}\nlanguages: [en, de]\ninterventions:\n"
            "  - {kind: scale, layers: [1], factor: 2, neurons: {neurons: {1: [1]}}, positions: last, "
            "steps: generated}\n")
    result = CliRunner().invoke(app, ["validate", str(write("s.yaml", text))])
    assert result.exit_code == 2
    assert "interventions[0].positions" in result.output and "steps: generated" in result.output
    bad = text.replace("positions: last", "positions: [1, 1]").replace(", steps: generated", "")
    result = CliRunner().invoke(app, ["validate", str(write("t.yaml", bad))])
    assert result.exit_code == 2 and "interventions[0].positions" in result.output


def test_the_default_keeps_existing_identities_and_other_values_change_them():
    plain = validate_data(spec_data(LANGS, interventions=[
        {"kind": "scale", "layers": [1], "factor": 3.0, "neurons": {"neurons": {1: NEURONS}}}]))
    explicit = validate_data(spec_data(LANGS, interventions=[
        {"kind": "scale", "layers": [1], "factor": 3.0, "neurons": {"neurons": {1: NEURONS}}, "positions": "all"}]))
    last = validate_data(spec_data(LANGS, interventions=[
        {"kind": "scale", "layers": [1], "factor": 3.0, "neurons": {"neurons": {1: NEURONS}}, "positions": "last"}]))
    assert spec_hash(plain) == spec_hash(explicit) != spec_hash(last)
