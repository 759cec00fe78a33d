"""Reduced precision: every intervention kind and readout through clas_graph's generated traces, in bfloat16 (and
float16 on Llama), against plain PyTorch hooks run in the same dtype on the same inputs, on tiny random Llama, Qwen2
and Gemma 3 models.

Tolerance. A bf16 model, and any bf16 implementation of an edit, differ from exact arithmetic by rounding (unit
roundoff 2^-8 per operation, 2^-11 in float16, compounded over the layers), and two bf16 implementations need not
round alike: clas_graph folds CLAS into one factor per neuron where the hook takes the paper's three steps, and it
batches rows with left padding where the reference runs each text alone. So both are compared with an exact
reference, the same weights (the bf16 values, exactly representable) and the same hooks in float64, and
clas_graph's error must stay within three times the hook's own:

    max|got - exact| <= 3 * max|hook - exact|

Measured on these models: clas_graph's error is 0.5-1.4x the hook's in every test (bf16 logits of scale ~4 carry
errors of ~0.05-0.15; float16 ~10x less). Each test also asserts that the edit moves the exact output by more than
twice that bound, so a dropped edit, or one on the wrong rows or site, fails. What this cannot see: an error in
the edit itself below the model's own bf16 noise (a CLAS factor 2% off fails the float16 tests, not all bf16 ones).
Greedy generation may take another token where two logits tie within rounding, so it is checked teacher-forced:
each generated token's logit in the hook model (same dtype) is within the bound of that step's maximum. Tests marked
`cuda` run the same checks on a GPU, and `device: auto` (accelerate's device map) on one GPU; skipped without CUDA.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import test_composition as comp
import test_lens as lens
import test_patching as patching
import test_steering_interventions as steer
import torch
from reference_ops import HookOp, op_hooks
from reference_patch import ids
from tiny import save_tiny, tiny_model, tiny_tokenizer

import clas_graph
from clas_graph.backends import next_token_many, pooled_hidden, token_nll
from clas_graph.execution.api import forward_many, lens_many, read_tokens_many
from clas_graph.execution.batching import longest_first, token_lengths
from clas_graph.execution.readouts import ContinuationLogprob
from clas_graph.loading import wrap
from clas_graph.runners import stats as stats_runner
from clas_graph.spec.stats import QuantileThreshold

MODELS = [("llama", torch.bfloat16), ("qwen2", torch.bfloat16), ("gemma3", torch.bfloat16),
          ("llama", torch.float16)]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def low_precision(arch: str, dtype: torch.dtype, device: str = "cpu"):
    """(nnsight model in `dtype`, its HF model, the same weights in float64 on the CPU: the exact reference)."""
    hf = tiny_model(arch).to(dtype)
    exact = copy.deepcopy(hf).to(torch.float64)
    return wrap(hf.to(device), tiny_tokenizer()), hf, exact


@pytest.fixture(scope="module", params=MODELS, ids=[f"{arch}-{str(d)[6:]}" for arch, d in MODELS])
def setup(request):
    return low_precision(*request.param)


def bound(hook, exact) -> float:
    """What clas_graph's error may reach: three times the hook's own error in the same dtype."""
    hook, exact = torch.as_tensor(hook).double().cpu(), torch.as_tensor(exact).double().cpu()
    return 3 * float((hook - exact).abs().max())


def assert_within(got, hook, exact, what: str, moved_from=None) -> float:
    """clas_graph's error against `exact` within `bound`; with `moved_from` (the exact unedited output), the edit
    must move the exact output by more than twice that bound, so a dropped edit would fail the check."""
    got, exact = torch.as_tensor(got).double().cpu(), torch.as_tensor(exact).double().cpu()
    limit = bound(hook, exact)
    error = float((got - exact).abs().max())
    assert limit > 0, f"{what}: the hook reference has no rounding error to compare with"
    assert error <= limit, f"{what}: clas_graph's error {error:.4g} exceeds three times the hook's ({limit:.4g})"
    if moved_from is not None:
        moved = float((exact - torch.as_tensor(moved_from).double()).abs().max())
        assert moved > 2 * limit, f"{what}: the edit moves the output by {moved:.3g}, too little to test at {limit:.3g}"
    return limit


# --- hook references: last logits, teacher-forced generation, per-text reads --------------------------------


@torch.no_grad()
def hooked_logits(hf, texts, rows, ops) -> torch.Tensor:
    """Each text alone (no padding), hooks active: [texts, positions, vocab] logits of every position, padded."""
    out = []
    for text, lang in zip(texts, rows):
        with op_hooks(hf, ops, [lang]):
            out.append(hf(ids(tiny_tokenizer(), text).to(hf.device), use_cache=False).logits[0].double().cpu())
    width = max(len(x) for x in out)
    return torch.stack([torch.nn.functional.pad(x, (0, 0, width - len(x), 0)) for x in out])


def last(hf, texts, rows, ops) -> torch.Tensor:
    return hooked_logits(hf, texts, rows, ops)[:, -1]


@torch.no_grad()
def assert_greedy_within_rounding(generated, hf, texts, rows, ops, limit: float) -> None:
    """Each generated token is, up to `limit`, the argmax of the hook model's logits on the text generated so far."""
    tok = tiny_tokenizer()
    for text, lang, new in zip(texts, rows, generated):
        prompt = tok(text)["input_ids"]
        with op_hooks(hf, ops, [lang]):
            logits = hf(torch.tensor([prompt + new], device=hf.device), use_cache=False).logits[0].double().cpu()
        steps = logits[len(prompt) - 1:len(prompt) - 1 + len(new)]
        chosen = steps.gather(1, torch.tensor(new)[:, None])[:, 0]
        gap = float((steps.max(-1).values - chosen).max()) if new else 0.0
        assert gap <= limit, f"{text!r}: a generated token is {gap:.3g} below the step's best logit (limit {limit:.3g})"


# --- every intervention kind, and a composition --------------------------------------------------------------


def clas_case(shared=comp.SHARED, specific=comp.SPECIFIC, alpha: float = 0.8):
    interventions = [{"kind": "clas", "layers": [1, 2], "shared": {"neurons": shared},
                      "specific": {"neurons": specific}, "beta": 0.6, "gamma": 0.4, "alpha": alpha}]
    return comp, interventions, None, [HookOp(layer, "h", comp.clas_fn(shared[layer], specific[layer], 0.6, 0.4,
                                                                        alpha)) for layer in (1, 2)]


# For the readouts: CLAS on half the neurons, strong enough to move every readout well beyond bf16 rounding.
STRONG = {layer: list(range(0, 64, 2)) for layer in (1, 2)}, {layer: list(range(1, 64, 4)) for layer in (1, 2)}


def int_mu_case(site: str, short: str, table: str):
    def build():
        means = comp.STATS.tensors[table]
        return comp, [{"kind": "int_mu", "layers": [1, 3], "site": site}], None, [
            HookOp(layer, short, comp.int_mu_fn(layer, means)) for layer in (1, 3)]
    return build


def add_vector_case():
    return comp, [{"kind": "add_vector", "layers": [2], "vector": {"from_stats": "diffmean"}, "coefficient": 1.5}], \
        None, [HookOp(2, "resid", comp.add_fn(2, 1.5))]


def scale_case():
    neurons = (comp.STATS.tensors["category"][2] == 2).nonzero().flatten()
    return comp, [{"kind": "scale", "layers": [2], "site": "mlp.act_fn.output", "factor": 2.5, "rows": "all",
                   "neurons": {"from_stats": "partial_shared"}}], None, [
        HookOp(2, "act", comp.scale_fn(neurons, 2.5, touched=lambda lang: True))]


def ablate_case():
    neurons = list(range(0, 64, 3))
    return comp, [{"kind": "ablate", "layers": [1], "neurons": {"neurons": {1: neurons}}}], None, [
        HookOp(1, "h", comp.ablate_fn(neurons))]


def set_case():
    table = steer.STATS.tensors["experts.p90"]
    return steer, [{"kind": "set", "id": "on", "layers": {"auto": "all"}, "value": "p90", "language": "fr",
                    "mode": "add", "factor": 0.5, "rows": "all", "neurons": {"from_stats": "experts",
                                                                            "languages": ["fr"]}}], None, [
        HookOp(layer, "act", steer.set_to(layer, table, "fr", "add", 0.5)) for layer in (0, 2, 3)]


def diffmean_case():
    return steer, [{"kind": "diffmean", "id": "dm", "layers": [2], "target": "fr", "alpha": 4.0,
                    "preserve_norm": True, "rows": "all"}], None, [
        HookOp(2, "resid", steer.diffmean(2, "fr", 4.0, keep_norm=True))]


def lape_case():
    return steer, [{"kind": "ablate", "id": "off", "layers": [0, 2, 3], "site": "mlp.act_fn.output",
                    "neurons": {"from_stats": "lape", "per_row": True}, "rows": "all"}], None, [
        HookOp(layer, "act", steer.lape_off(layer)) for layer in (0, 2, 3)]


def combo_case():
    shared, specific = comp.SHARED, comp.SPECIFIC
    return comp, comp.COMBO, {"combo": ["clas", "add_vector", "ablate"]}, [
        HookOp(1, "h", comp.clas_fn(shared[1], specific[1], 0.6, 0.4, 0.8)), HookOp(1, "resid", comp.add_fn(1, 0.5)),
        HookOp(2, "h", comp.clas_fn(shared[2], specific[2], 0.6, 0.4, 0.8)),
        HookOp(2, "h", comp.ablate_fn([4, 30, 50]))]


CASES = {"clas": lambda: clas_case(*STRONG, alpha=-1.0),
         "int_mu-act": int_mu_case("mlp.act_fn.output", "act", "act_mean"),
         "int_mu-h": int_mu_case("mlp.down_proj.input", "h", "mean"), "add_vector": add_vector_case,
         "scale": scale_case, "ablate": ablate_case, "set": set_case, "diffmean-keep-norm": diffmean_case,
         "lape": lape_case, "clas+add_vector+ablate": combo_case}


def compiled(module, interventions, conditions, model):
    """The case's only condition (or its named composition), compiled with the test module's statistics."""
    the_spec = module.spec(interventions, conditions)
    name = next(iter(conditions)) if conditions else None
    return clas_graph.compile_plan(the_spec, model, name, stats=module.STATS)


@pytest.mark.parametrize("case", CASES)
def test_each_intervention_kind_matches_hooks_in_the_models_dtype(setup, case):
    model, hf, exact = setup
    module, interventions, conditions, ops = CASES[case]()
    texts, rows = module.TEXTS, module.ROWS
    plan = compiled(module, interventions, conditions, model)
    got = clas_graph.forward(model, plan, texts, rows, batch_size=4)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    limit = assert_within(got, last(hf, texts, rows, ops), last(exact, texts, rows, ops), case,
                          moved_from=last(exact, texts, rows, []))
    generated = clas_graph.generate_ids(model, plan, texts, rows, 4, batch_size=4)
    assert_greedy_within_rounding(generated, hf, texts, rows, ops, limit)


def test_clas_keeps_the_anchor_rows_bit_identical(setup):
    model, _, _ = setup
    module, interventions, _, _ = clas_case()
    plan = compiled(module, interventions, None, model)
    got = clas_graph.forward(model, plan, module.TEXTS, module.ROWS, batch_size=4)
    base = clas_graph.forward(model, None, module.TEXTS, module.ROWS, batch_size=4)
    anchor = [i for i, lang in enumerate(module.ROWS) if lang == "en"]
    assert torch.equal(got[anchor], base[anchor])


def test_norm_preserving_steering_beyond_the_range_of_float16():
    """A steering vector of norm 1e5, beyond float16's largest value (65504): the trace takes the norms in float32
    (in float16 the steered norm is inf, and the edit zeroed the residual)."""
    model, hf, exact = low_precision("llama", torch.float16)
    plan = compiled(steer, [{"kind": "diffmean", "id": "dm", "layers": [2], "target": "fr", "alpha": 1e5,
                             "preserve_norm": True, "rows": "all"}], None, model)
    ops = [HookOp(2, "resid", steer.diffmean(2, "fr", 1e5, keep_norm=True))]
    got = clas_graph.forward(model, plan, steer.TEXTS, steer.ROWS, batch_size=4)
    assert_within(got, last(hf, steer.TEXTS, steer.ROWS, ops), last(exact, steer.TEXTS, steer.ROWS, ops),
                  "diffmean, norm 1e5", moved_from=last(exact, steer.TEXTS, steer.ROWS, []))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_specs_dtype_loads_the_model_in_it(tiny_model_dir, dtype):
    """`model: {path: ..., dtype: bfloat16}`: the saved float32 model is loaded in that dtype and edited in it."""
    from clas_graph.spec.model_ref import ModelRef

    model = clas_graph.load_model(ModelRef(path=str(tiny_model_dir("llama")), dtype=dtype))
    hf = model._module
    assert {p.dtype for p in hf.parameters()} == {getattr(torch, dtype)}
    exact = copy.deepcopy(hf).to(torch.float64)
    module, interventions, _, ops = clas_case(*STRONG, alpha=1.5)
    got = clas_graph.forward(model, compiled(module, interventions, None, model), module.TEXTS, module.ROWS)
    assert_within(got, last(hf, module.TEXTS, module.ROWS, ops), last(exact, module.TEXTS, module.ROWS, ops),
                  dtype, moved_from=last(exact, module.TEXTS, module.ROWS, []))


# --- every readout kind, under CLAS ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clas_plans(setup):
    model, hf, exact = setup
    module, interventions, _, ops = clas_case(*STRONG, alpha=1.5)
    return {"base": None, "clas": compiled(module, interventions, None, model)}, ops


def test_next_token_readout(setup, clas_plans):
    model, hf, exact = setup
    plans, ops = clas_plans
    texts, rows = comp.TEXTS, comp.ROWS
    gold = [5, 17, None, 40, 3, 99, 12]
    got = next_token_many(model, plans, texts, rows, gold, batch_size=4)["clas"]

    def reduced(reference):
        lp = torch.log_softmax(last(reference, texts, rows, ops), -1)
        base_lp = torch.log_softmax(last(reference, texts, rows, []), -1)
        gold_lp = torch.stack([lp[i, g] if g is not None else torch.tensor(0.0, dtype=lp.dtype)
                               for i, g in enumerate(gold)])
        return (base_lp.exp() * (base_lp - lp)).sum(-1), gold_lp, lp

    kl_hook, gold_hook, lp_hook = reduced(hf)
    kl_exact, gold_exact, _ = reduced(exact)
    assert_within(got["kl"], kl_hook, kl_exact, "KL(base || clas)", moved_from=torch.zeros_like(kl_exact))
    known = [i for i, g in enumerate(gold) if g is not None]
    assert_within(got["gold_logprob"][known], gold_hook[known], gold_exact[known], "gold log-prob")
    limit = bound(lp_hook, torch.log_softmax(last(exact, texts, rows, ops), -1))
    chosen = lp_hook.gather(1, got["top1"][:, None])[:, 0]
    assert float((lp_hook.max(-1).values - chosen).max()) <= limit, "top-1 is the hook's argmax up to rounding"


def nll_reference(reference, texts, rows, ops):
    logits = hooked_logits(reference, texts, rows, ops)
    sums, counts = [], []
    for k, text in enumerate(texts):
        n = len(tiny_tokenizer()(text)["input_ids"])
        own = logits[k, -n:]
        target = torch.tensor(tiny_tokenizer()(text)["input_ids"][1:])
        nll = torch.logsumexp(own[:-1], -1) - own[:-1].gather(1, target[:, None])[:, 0]
        sums.append(nll.sum())
        counts.append(n - 1)
    return torch.stack(sums), torch.tensor(counts, dtype=torch.float64)


def test_token_nll_readout(setup, clas_plans):
    model, hf, exact = setup
    plans, ops = clas_plans
    texts, rows = comp.TEXTS, comp.ROWS
    nll, counts = token_nll(model, plans["clas"], texts, rows, batch_size=4)
    hook, want_counts = nll_reference(hf, texts, rows, ops)
    assert torch.equal(counts, want_counts)
    assert_within(nll, hook, nll_reference(exact, texts, rows, ops)[0], "token NLL",
                  moved_from=nll_reference(exact, texts, rows, [])[0])


def test_continuation_logprob_readout(setup, clas_plans):
    model, hf, exact = setup
    plans, ops = clas_plans
    texts, rows = comp.TEXTS, comp.ROWS
    encoded = [tiny_tokenizer()(text)["input_ids"] for text in texts]
    targets = tuple(tuple(row[-2:]) for row in encoded)  # the continuation: each text's last two tokens
    got, _ = read_tokens_many(model, {"clas": plans["clas"]}, [row[:-1] for row in encoded], rows,
                              ContinuationLogprob(targets), batch_size=4)["clas"]

    def reference(ref, ops):
        out = []
        for row, lang, target in zip(encoded, rows, targets):
            with op_hooks(ref, ops, [lang]), torch.no_grad():
                lp = torch.log_softmax(ref(torch.tensor([row[:-1]]), use_cache=False).logits[0].double(), -1)
            out.append(lp[-2:].gather(1, torch.tensor(target)[:, None]).sum())
        return torch.stack(out)

    assert_within(got, reference(hf, ops), reference(exact, ops), "continuation log-prob",
                  moved_from=reference(exact, []))


def pooled_reference(reference, texts, rows, ops, layer: int):
    seen = {}
    handle = reference.model.layers[layer].register_forward_hook(lambda m, a, out: seen.__setitem__("x", out))
    try:
        out = []
        for text, lang in zip(texts, rows):
            with op_hooks(reference, ops, [lang]), torch.no_grad():
                reference(ids(tiny_tokenizer(), text), use_cache=False)
            out.append(seen["x"][0, 1:].double().mean(0))  # BOS left out, as the readout's default
        return torch.stack(out)
    finally:
        handle.remove()


def test_pooled_hidden_readout(setup, clas_plans):
    model, hf, exact = setup
    plans, ops = clas_plans
    texts, rows = comp.TEXTS, comp.ROWS
    got = pooled_hidden(model, plans["clas"], texts, rows, 2, batch_size=4)
    assert_within(got, pooled_reference(hf, texts, rows, ops, 2), pooled_reference(exact, texts, rows, ops, 2),
                  "pooled layer 2", moved_from=pooled_reference(exact, texts, rows, [], 2))


def test_label_logits_are_float32_from_the_models_own_last_hidden_state(setup):
    """A few tokens' logits (XNLI's labels) come from the LM head's input in float32: equal to that input times the
    head in float64 to float32 rounding, so no two tie where the model's own bf16 logits do."""
    model, hf, _ = setup
    vocab = list(range(hf.config.vocab_size))  # every token: some are bound to tie in the model's dtype
    seen = []
    handle = hf.lm_head.register_forward_pre_hook(lambda module, args: seen.append(args[0][:, -1].double()))
    try:
        got = forward_many(model, {"base": None}, comp.TEXTS, comp.ROWS, batch_size=8, token_ids=vocab)["base"]
    finally:
        handle.remove()
    order = longest_first(token_lengths(tiny_tokenizer(), comp.TEXTS, 512), 8)[0]  # one batch, longest first
    want = torch.empty(len(comp.TEXTS), len(vocab), dtype=torch.float64)
    want[order] = seen[0] @ hf.lm_head.weight.detach().double().T
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    own = clas_graph.forward(model, None, comp.TEXTS, comp.ROWS)  # the model's logits, in its dtype
    ties = lambda x: sum(len(row) - len(torch.unique(row)) for row in x)  # noqa: E731
    assert ties(own) > 0 and ties(got) == 0


def test_stacked_conditions_with_a_shared_prefix(setup):
    """K conditions in one call (the prefix below the first edit run once, conditions stacked) equal hooks."""
    model, hf, exact = setup
    _, strong, _, strong_ops = clas_case(*STRONG, alpha=1.5)
    module, interventions, conditions, combo_ops = combo_case()
    the_spec = module.spec([*interventions, {**strong[0], "id": "strong"}], {**conditions, "strong": ["strong"]})
    plans = clas_graph.compile_plans(the_spec, model, stats=module.STATS)
    got = forward_many(model, plans, module.TEXTS, module.ROWS, batch_size=4)
    for name, ops in (("base", []), ("strong", strong_ops), ("combo", combo_ops)):
        moved = None if name == "base" else last(exact, module.TEXTS, module.ROWS, [])
        assert_within(got[name], last(hf, module.TEXTS, module.ROWS, ops), last(exact, module.TEXTS, module.ROWS, ops),
                      name, moved_from=moved)


def test_lens_readout(setup):
    model, hf, exact = setup
    plans = clas_graph.compile_plans(lens.clas_spec(), model)
    got = lens_many(model, plans, lens.TEXTS, lens.ROWS, [0, 1, 2, 3], row_groups=lens.GROUPS, sets=lens.SETS,
                    batch_size=3)
    base_exact, _ = lens.reference_lens(exact, tiny_tokenizer(), lens.TEXTS, lens.ROWS, clas=False)
    for name, clas in (("base", False), ("clas", True)):
        hook, _ = lens.reference_lens(hf, tiny_tokenizer(), lens.TEXTS, lens.ROWS, clas=clas)
        want, _ = lens.reference_lens(exact, tiny_tokenizer(), lens.TEXTS, lens.ROWS, clas=clas)
        assert_within(got[name]["lens"], hook, want, f"lens {name}",
                      moved_from=base_exact if clas else None)


# the test_patching cases with the most effect on the last logits, and a half-and-half mix at act_fn's output
PATCHES = [*patching.PATCHES[:2], {"layers": [1], "site": "mlp.act_fn.output", "source": {"language": "es"},
                                   "positions": {"last": 2}, "coefficient": 0.5}]


@pytest.mark.parametrize("patch", PATCHES, ids=["last", "h-last2", "act-last2-mix"])
def test_cross_lingual_patching(setup, patch):
    model, hf, exact = setup
    plan = clas_graph.compile_plan(patching.spec({"kind": "patch", "id": "p", **patch}), model, "p")
    got = clas_graph.forward(model, plan, patching.TEXTS, patching.ROWS, batch_size=8, parallel=patching.PARALLEL)
    language = [patch["source"]["language"]]
    hook = patching.cross_lingual(SimpleNamespace(_module=hf), patch, language)
    want = patching.cross_lingual(SimpleNamespace(_module=exact), patch, language)
    assert_within(got, hook, want, "patch", moved_from=last(exact, patching.TEXTS, patching.ROWS, []))


def test_statistics_sums_are_upcast(setup):
    """The statistics pass sums the model's h in float32 per batch and float64 across batches."""
    model, hf, exact = setup
    languages = ["en", "de", "fr"]
    t = comp.TEXTS
    samples = [SimpleNamespace(texts=dict(zip(languages, group))) for group in ((t[0], t[1], t[2]), (t[5], t[4], t[6]))]
    moments, _, _ = stats_runner.collect(model, samples, languages, threshold=QuantileThreshold(), batch_size=3)

    def sums(reference):
        seen, out = {}, torch.zeros(len(languages), reference.config.intermediate_size, dtype=torch.float64)
        handle = reference.model.layers[2].mlp.down_proj.register_forward_pre_hook(
            lambda m, args: seen.__setitem__("h", args[0]))
        try:
            for sample in samples:
                for g, lang in enumerate(languages):
                    with torch.no_grad():
                        reference(ids(tiny_tokenizer(), sample.texts[lang]), use_cache=False)
                    out[g] += seen["h"][0, 1:].double().sum(0)  # BOS left out, as the runner's default
        finally:
            handle.remove()
        return out

    assert moments.h_sum.dtype == torch.float64
    assert_within(moments.h_sum[2], sums(hf), sums(exact), "h sums")


# --- on a GPU ---------------------------------------------------------------------------------------------------


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_bf16_numerics_on_cuda(arch):
    model, hf, exact = low_precision(arch, device="cuda")
    module, interventions, _, ops = clas_case(*STRONG, alpha=1.5)
    plan = compiled(module, interventions, None, model)
    got = clas_graph.forward(model, plan, module.TEXTS, module.ROWS, batch_size=4)
    hook = last(hf, module.TEXTS, module.ROWS, ops).cpu()
    limit = assert_within(got, hook, last(exact, module.TEXTS, module.ROWS, ops), arch,
                          moved_from=last(exact, module.TEXTS, module.ROWS, []))
    generated = clas_graph.generate_ids(model, plan, module.TEXTS, module.ROWS, 4, batch_size=4)
    assert_greedy_within_rounding(generated, hf, module.TEXTS, module.ROWS, ops, limit)


@cuda
@pytest.mark.cuda
def test_device_auto_on_one_gpu(tmp_path):
    from clas_graph.spec.model_ref import ModelRef

    folder = save_tiny(tmp_path / "m", "llama")
    model = clas_graph.load_model(ModelRef(path=str(folder), dtype="bfloat16", device="auto"))
    hf = model._module
    assert hf.dtype == torch.bfloat16 and {p.device.type for p in hf.parameters()} == {"cuda"}
    exact = copy.deepcopy(hf).cpu().to(torch.float64)
    module, interventions, _, ops = clas_case(*STRONG, alpha=1.5)
    got = clas_graph.forward(model, compiled(module, interventions, None, model), module.TEXTS, module.ROWS)
    assert_within(got, last(hf, module.TEXTS, module.ROWS, ops).cpu(), last(exact, module.TEXTS, module.ROWS, ops),
                  "device: auto", moved_from=last(exact, module.TEXTS, module.ROWS, []))
