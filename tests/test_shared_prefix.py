"""Several conditions with a shared prefix (clas_graph.execution.schedule) give the single-plan numbers.

Reference: the single-plan `forward` / `token_nll` / `pooled_hidden` (themselves tested against plain PyTorch
hooks in test_forward.py / test_composition.py), run separately per condition. Tolerance 1e-5 max abs
(measured: 0, the skip is exact). Batches mix languages and are left-padded.
"""

from __future__ import annotations

import pytest
import torch
from tiny import spec_data, tiny_model, tiny_tokenizer

import clas_graph
from clas_graph.backends import forward, forward_many, pooled_hidden, pooled_hidden_many, token_nll, token_nll_many
from clas_graph.execution.context import use
from clas_graph.execution.local import LocalExecutor
from clas_graph.execution.ndif import NdifExecutor
from clas_graph.execution.readouts import LastLogits, Pooled, TokenNll
from clas_graph.execution.schedule import batch_plan, first_changed_layer
from clas_graph.loading import wrap
from clas_graph.spec.load import validate_data

ATOL = 1e-5
LANGS = ["en", "de", "fr", "zh"]
TEXTS = ["The sky is blue and", "Der Himmel ist blau und", "Le ciel est bleu et la mer", "天空是蓝色的",
         "Die Katze schläft", "Hello there my friend", "Bonjour mes amis, comment", "Ich lese gern Bücher am Abend"]
ROWS = ["en", "de", "fr", "zh", "de", "en", "fr", "de"]
LAYERS = 6
READ_LAYER = 3


def spec():
    interventions = [
        {"kind": "clas", "id": "clas", "layers": [2, 3], "shared": {"neurons": {2: [1, 2, 3, 40], 3: [9, 10]}},
         "specific": {"neurons": {2: [5, 6]}}, "beta": 0.6, "gamma": 0.4},
        {"kind": "add_vector", "id": "steer", "layers": [1], "vector": {"values": [0.3] * 32}, "rows": "all"},
        {"kind": "ablate", "id": "late", "layers": [4, 5], "neurons": {"neurons": {4: [0, 1, 2], 5: [7]}},
         "site": "mlp.act_fn.output"},
        {"kind": "scale", "id": "first", "layers": [0], "neurons": {"neurons": {0: [3, 4]}}, "factor": 3.0},
        {"kind": "ablate", "id": "gen_only", "layers": [2], "neurons": {"neurons": {2: [0]}}, "steps": "generated"},
    ]
    conditions = {"clas": ["clas"], "steer": ["steer"], "late": ["late"], "first": ["first"],
                  "gen_only": ["gen_only"], "clas_late": ["clas", "late"]}
    return validate_data({**spec_data(LANGS),
                          "interventions": interventions, "conditions": conditions})


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma3"])
def setup(request):
    model = wrap(tiny_model(request.param, layers=LAYERS), tiny_tokenizer())
    return model, clas_graph.compile_plans(spec(), model)


def test_schedule_starts_at_each_conditions_first_changed_layer(setup):
    _, plans = setup
    starts = batch_plan(plans, LastLogits()).starts
    assert starts == {"base": None, "clas": 2, "steer": 1, "late": 4, "first": 0, "gen_only": None, "clas_late": 2}
    pooled = batch_plan(plans, Pooled(READ_LAYER)).starts
    assert pooled["late"] is None and pooled["clas_late"] == 2  # ops above the read layer cannot change it
    assert batch_plan(plans, LastLogits(), share=False).starts["clas"] == 0
    assert first_changed_layer(None) is None
    # on anchor-language rows only, a non_anchor condition is base (steer acts on all rows)
    english = batch_plan(plans, LastLogits(), row_languages=["en", "en"]).starts
    assert english["clas"] is None and english["late"] is None and english["steer"] == 1
    # one condition alone gains nothing from a prefix trace: it runs its full trace
    assert batch_plan({"clas": plans["clas"]}, LastLogits()).starts == {"clas": 0}
    assert batch_plan({"clas": plans["clas"], "late": plans["late"]}, LastLogits()).starts == {"clas": 2, "late": 4}


def test_forward_many_equals_single_plan_forward(setup):
    model, plans = setup
    many = forward_many(model, plans, TEXTS, ROWS, batch_size=3)
    for name, plan in plans.items():
        single = forward(model, plan, TEXTS, ROWS, batch_size=3)
        torch.testing.assert_close(many[name], single, atol=ATOL, rtol=0, msg=name)
    # the conditions really differ from base (the test would pass vacuously otherwise)
    for name in ("clas", "steer", "late", "first"):
        assert (many[name] - many["base"]).abs().max() > 1e-3, name
    torch.testing.assert_close(many["gen_only"], many["base"], atol=0, rtol=0)


def test_selected_token_logits_are_the_full_logits_columns(setup):
    model, plans = setup
    ids = [5, 17, 42]
    selected = forward_many(model, plans, TEXTS, ROWS, token_ids=ids)
    full = forward_many(model, plans, TEXTS, ROWS)
    for name in plans:
        assert selected[name].shape == (len(TEXTS), 3)
        torch.testing.assert_close(selected[name], full[name][:, ids], atol=ATOL, rtol=0)
    torch.testing.assert_close(forward(model, plans["clas"], TEXTS, ROWS, token_ids=ids), full["clas"][:, ids],
                               atol=ATOL, rtol=0)


def test_token_nll_many_equals_single_plan(setup):
    model, plans = setup
    many = token_nll_many(model, plans, TEXTS, ROWS, batch_size=4)
    for name, plan in plans.items():
        nll, counts = token_nll(model, plan, TEXTS, ROWS, batch_size=4)
        torch.testing.assert_close(many[name][0], nll, atol=ATOL, rtol=0, msg=name)
        torch.testing.assert_close(many[name][1], counts, atol=0, rtol=0)


def test_pooled_hidden_many_equals_single_plan(setup):
    model, plans = setup
    many = pooled_hidden_many(model, plans, TEXTS, ROWS, READ_LAYER, batch_size=3)
    for name, plan in plans.items():
        single = pooled_hidden(model, plan, TEXTS, ROWS, READ_LAYER, batch_size=3)
        torch.testing.assert_close(many[name], single, atol=ATOL, rtol=0, msg=name)
    assert (many["clas"] - many["base"]).abs().max() > 1e-3


def test_batching_and_row_order_do_not_matter(setup):
    model, plans = setup
    reference = forward_many(model, plans, TEXTS, ROWS, batch_size=8)
    order = [5, 2, 7, 0, 3, 6, 1, 4]
    shuffled = forward_many(model, plans, [TEXTS[i] for i in order], [ROWS[i] for i in order], batch_size=2)
    for name in plans:
        torch.testing.assert_close(shuffled[name], reference[name][order], atol=ATOL, rtol=0, msg=name)


def test_anchor_rows_only_give_base_results_for_non_anchor_conditions(setup):
    model, plans = setup
    english = [text for text, lang in zip(TEXTS, ROWS) if lang == "en"]
    many = forward_many(model, plans, english, ["en"] * len(english))
    for name, plan in plans.items():
        torch.testing.assert_close(many[name], forward(model, plan, english, ["en"] * len(english)), atol=ATOL,
                                   rtol=0, msg=name)
    assert torch.equal(many["clas"], many["base"]) and not torch.equal(many["steer"], many["base"])


def test_a_subset_without_base_still_shares_the_prefix(setup):
    model, plans = setup
    subset = {name: plans[name] for name in ("clas", "late")}
    many = token_nll_many(model, subset, TEXTS, ROWS)
    for name, plan in subset.items():
        torch.testing.assert_close(many[name][0], token_nll(model, plan, TEXTS, ROWS)[0], atol=ATOL, rtol=0)


def test_remote_sessions_give_the_local_numbers(setup):
    """nnsight's local simulation of the remote path runs the generated session (several batches and every
    condition per request, prefixes kept in the session) through serialization and back."""
    model, plans = setup
    subset = {name: plans[name] for name in ("base", "clas", "late", "first", "gen_only")}
    local = (forward_many(model, subset, TEXTS, ROWS, token_ids=[3, 4], batch_size=3),
             token_nll_many(model, subset, TEXTS, ROWS, batch_size=3),
             pooled_hidden_many(model, subset, TEXTS, ROWS, READ_LAYER, batch_size=3))
    execution = NdifExecutor(host="local", session_batches=2)
    with use(execution):
        remote = (forward_many(model, subset, TEXTS, ROWS, token_ids=[3, 4], batch_size=3),
                  token_nll_many(model, subset, TEXTS, ROWS, batch_size=3),
                  pooled_hidden_many(model, subset, TEXTS, ROWS, READ_LAYER, batch_size=3))
    for want, got in zip(local, remote):
        for name in subset:
            pairs = zip(want[name], got[name]) if isinstance(want[name], tuple) else [(want[name], got[name])]
            for a, b in pairs:
                torch.testing.assert_close(b, a, atol=ATOL, rtol=0, msg=name)


def test_result_budget_groups_batches():
    from clas_graph.execution.ndif import RESULT_BUDGET, groups

    batches = [[0, 1], [2, 3], [4, 5], [6]]
    assert groups(batches, 8, 4) == [batches]
    assert groups(batches, 2, 4) == [[[0, 1], [2, 3]], [[4, 5], [6]]]
    big = RESULT_BUDGET // 3  # bytes per row: three rows fit, a fourth does not
    assert groups(batches, 8, big) == [[[0, 1]], [[2, 3]], [[4, 5], [6]]]
    assert groups([[0, 1, 2, 3, 4]], 8, big) == [[[0, 1, 2, 3, 4]]]  # one batch always goes, even when large


# --- stacked conditions: one trace over the batch repeated once per condition (compile/stack.py) ----------


def test_conditions_with_one_start_stack_up_to_the_limit(setup):
    _, plans = setup
    traces = batch_plan(plans, LastLogits(), stack=2).traces
    assert traces == [(("clas", "clas_late"), 2), (("steer",), 1), (("late",), 4), (("first",), 0)]
    assert batch_plan(plans, TokenNll(), stack=4).traces == [(("clas",), 2), (("clas_late",), 2), (("steer",), 1),
                                                              (("late",), 4), (("first",), 0)]
    assert batch_plan(plans, LastLogits()).traces[0] == (("clas",), 2)  # default: one condition per trace


def _per_language_plan(plan, languages):
    """`plan` with its SetNeurons ops made per language: each language overwrites different neurons with its
    own values (as Int-mu's tables), so a stacked trace must index every block's rows by their own language."""
    import dataclasses

    from clas_graph.compile.plan import SetNeurons

    generator = torch.Generator().manual_seed(3)
    ops = []
    for op in plan.ops:
        if isinstance(op, SetNeurons):
            size = op.mask.shape[-1]
            mask = torch.rand(len(languages), size, generator=generator) < 0.3
            op = dataclasses.replace(op, mask=mask, values=torch.randn(len(languages), size, generator=generator))
        ops.append(op)
    return dataclasses.replace(plan, condition=plan.condition + "_per_language", ops=tuple(ops))


@pytest.mark.parametrize("stack_rows", [3, 6, 100])
def test_stacked_conditions_give_each_conditions_own_numbers(setup, monkeypatch, stack_rows):
    """Stacked or not (stack_rows = batch size: one trace each), every condition equals its single-plan run,
    per-language tables included; the spy proves the stacked path ran when it should."""
    import clas_graph.execution.schedule as shared

    model, plans = setup
    subset = {name: plans[name] for name in ("base", "clas", "clas_late", "late")}
    subset["late_per_language"] = _per_language_plan(plans["late"], plans["late"].languages)
    subset["clas_per_language"] = _per_language_plan(plans["clas_late"], plans["late"].languages)
    stacked = []
    real = shared.stack_plans
    monkeypatch.setattr(shared, "stack_plans", lambda named: stacked.append([n for n, _ in named]) or real(named))
    with use(LocalExecutor(stack_rows=stack_rows)):
        logits = forward_many(model, subset, TEXTS, ROWS, batch_size=3)
        pooled = pooled_hidden_many(model, subset, TEXTS, ROWS, 5, batch_size=3)
    for name, plan in subset.items():
        torch.testing.assert_close(logits[name], forward(model, plan, TEXTS, ROWS, batch_size=3), atol=ATOL, rtol=0,
                                   msg=name)
        torch.testing.assert_close(pooled[name], pooled_hidden(model, plan, TEXTS, ROWS, 5, batch_size=3), atol=ATOL,
                                   rtol=0, msg=name)
    assert (logits["late_per_language"] - logits["late"]).abs().max() > 1e-3  # the tables really act
    if stack_rows == 3:
        assert stacked == []
    elif stack_rows == 6:
        assert ["clas", "clas_late"] in stacked and ["late", "late_per_language"] in stacked
    else:
        assert ["clas", "clas_late", "clas_per_language"] in stacked


# --- next_token: compared with base inside the trace, four numbers per row ---------------------------------


def _next_token_reference(model, plans, gold):
    """From the single-plan full-vocabulary logits, in float64 numpy (an independent reduction)."""
    import numpy as np

    base = torch.log_softmax(forward(model, None, TEXTS, ROWS).double(), -1).numpy()
    out = {}
    for name, plan in plans.items():
        lp = torch.log_softmax(forward(model, plan, TEXTS, ROWS).double(), -1).numpy()
        out[name] = {"kl": (np.exp(base) * (base - lp)).sum(-1), "top1": lp.argmax(-1), "base_top1": base.argmax(-1),
                     "gold_logprob": np.array([lp[i, g] if g is not None else np.nan for i, g in enumerate(gold)])}
    return out


@pytest.mark.parametrize("where", ["local", "remote-simulated"])
def test_next_token_many_equals_a_reduction_of_the_full_logits(setup, where):
    from clas_graph.backends import next_token_many

    model, plans = setup
    subset = {name: plans[name] for name in ("clas", "clas_late", "late", "first", "gen_only")}
    gold = [5, None, 17, 3, 250, None, 0, 42]
    execution = NdifExecutor(host="local", session_batches=2) if where != "local" else LocalExecutor()
    with use(execution):
        got = next_token_many(model, subset, TEXTS, ROWS, gold, batch_size=3)
    want = _next_token_reference(model, subset, gold)
    for name in subset:
        for column in ("kl", "gold_logprob"):
            torch.testing.assert_close(got[name][column], torch.from_numpy(want[name][column]), atol=ATOL, rtol=0,
                                       equal_nan=True, msg=f"{name} {column}")
        for column in ("top1", "base_top1"):
            assert got[name][column].tolist() == want[name][column].tolist(), (name, column)
    assert got["gen_only"]["kl"].abs().max() == 0 and got["clas"]["kl"].min() > -1e-6  # float32 rounding
    assert got["clas"]["kl"].max() > 1e-4 and got["first"]["kl"].max() > 1e-4  # the conditions really differ
    assert got["clas"]["gold_logprob"].isnan().tolist() == [g is None for g in gold]
