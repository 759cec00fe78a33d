"""K conditions on the same texts: shared prefix (one pass, `*_many`) vs K separate passes, same run.

    python -m benchmarks conditions [--cond-texts 32] [--cond-k 2 4 8]

Conditions: base plus K-1 CLAS variants (different beta) on layers 13-15 of Gemma 3 270M, as the demo's
bridge layers; "demo (3)" is base + CLAS + an Int-mu-like overwrite at the act_fn site on 13-15.
Naive = the single-plan functions called once per condition (the evaluation path before sharing).
Readouts: last-position logits (XNLI-style; the ideal ratio counts layers: (1 + (K-1)*5/18)/K),
pooled hidden state at layer 15 (retrieval: (16 + (K-1)*3)/(16*K)) and per-token NLL (lm_loss: the
262k-vocabulary LM head runs for every token of every condition and cannot be shared; on this model
it costs more than all 18 layers together, so lm_loss gains less here than on an 8B model; its ideal
counts the head's weights next to the layers'). "shared" = shared prefix + stacked conditions (up to
4 x batch rows per trace; lm_loss does not stack).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

import clas_graph
from clas_graph.backends import forward, forward_many, pooled_hidden, pooled_hidden_many, token_nll, token_nll_many
from clas_graph.data.bible import BIBLE_LANGUAGES, load_bible
from clas_graph.spec.load import validate_data

LAYERS = [13, 14, 15]
READ_LAYER = 15


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cond-texts", type=int, default=32, help="texts per measurement (mixed languages)")
    parser.add_argument("--cond-k", type=int, nargs="*", default=[2, 4, 8], help="numbers of conditions")
    parser.add_argument("--cond-repeats", type=int, default=2,
                        help="timed repetitions (separate and shared alternate; the median of each is kept)")


def _plans(model, k: int, demo: bool) -> dict:
    gen = torch.Generator().manual_seed(0)
    perms = {layer: torch.randperm(2048, generator=gen).tolist() for layer in LAYERS}
    shared = {layer: sorted(perm[:1000]) for layer, perm in perms.items()}  # demo-sized, disjoint masks
    specific = {layer: sorted(perm[1000:1500]) for layer, perm in perms.items()}
    if demo:
        interventions = [{"kind": "clas", "id": "clas", "layers": LAYERS, "shared": {"neurons": shared},
                          "specific": {"neurons": specific}},
                         {"kind": "ablate", "id": "int_mu_like", "layers": LAYERS, "site": "mlp.act_fn.output",
                          "neurons": {"neurons": specific}}]
    else:
        interventions = [{"kind": "clas", "id": f"clas{i}", "layers": LAYERS, "shared": {"neurons": shared},
                          "specific": {"neurons": specific}, "beta": 0.1 * (i + 1)} for i in range(k - 1)]
    spec = validate_data({"schema_version": 1, "name": "bench", "model": {"embedded": "gemma-3-270m"},
                          "languages": list(BIBLE_LANGUAGES), "anchor": {"kind": "fixed", "language": "en"},
                          "interventions": interventions})
    return clas_graph.compile_plans(spec, model)


def main(args, model, console: Console) -> None:
    languages = [lang for lang in BIBLE_LANGUAGES if lang != "en"][:4]
    samples = load_bible(languages, limit=max(1, args.cond_texts // len(languages)), seed=7, offset=200)
    texts = [s.texts[lang] for s in samples for lang in languages]
    rows = [lang for _ in samples for lang in languages]
    options = {"batch_size": 8, "max_length": 512}
    readouts = {
        "last logits (xnli)": (lambda plan: forward(model, plan, texts, rows, **options),
                               lambda plans: forward_many(model, plans, texts, rows, token_ids=[236771, 236770, 236778],
                                                          **options)),
        "pooled L15 (retrieval)": (lambda plan: pooled_hidden(model, plan, texts, rows, READ_LAYER, **options),
                                   lambda plans: pooled_hidden_many(model, plans, texts, rows, READ_LAYER, **options)),
        "token NLL (lm_loss)": (lambda plan: token_nll(model, plan, texts, rows, **options),
                                lambda plans: token_nll_many(model, plans, texts, rows, **options)),
    }
    layers = model._module.config.get_text_config().num_hidden_layers
    table = Table(title=f"K conditions on Gemma 3 270M: {len(texts)} texts, batch 8, conditions edit layers 13-15, "
                        f"{torch.get_num_threads()} threads (median time of one shared pass / K separate passes, "
                        f"{args.cond_repeats} alternating repetitions; shared = shared prefix + stacked conditions)",
                  title_justify="left")
    # lm_loss's ideal also counts the LM head, which every condition runs on every token (per token: layer
    # weights vs head weights; the head is one matmul, the layers' attention is small at these lengths)
    hf = model._module
    layer_weights = sum(p.numel() for p in hf.model.layers.parameters())
    head_weights = hf.lm_head.weight.numel()
    for column in ("conditions", "readout", "separate s", "shared s", "ratio", "ideal"):
        table.add_column(column, justify="left" if column in ("conditions", "readout") else "right")
    cases = [("demo (3)", _plans(model, 3, demo=True))] + [(f"K={k}", _plans(model, k, demo=False))
                                                          for k in args.cond_k]
    with torch.inference_mode():
        for label, plans in cases:
            k = len(plans)
            for name, (single, many) in readouts.items():
                single(plans["base"])  # warm-up (and emitted traces compiled)
                many(plans)
                times_separate, times_shared = [], []
                for _ in range(args.cond_repeats):  # alternating, so a slow spell of the machine hits both
                    start = time.perf_counter()
                    separate = {cond: single(plan) for cond, plan in plans.items()}
                    times_separate.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    shared = many(plans)
                    times_shared.append(time.perf_counter() - start)
                _check(name, separate, shared)
                t_separate, t_shared = statistics.median(times_separate), statistics.median(times_shared)
                if name.startswith("pooled"):
                    ideal = (READ_LAYER + 1 + (k - 1) * (READ_LAYER + 1 - LAYERS[0])) / ((READ_LAYER + 1) * k)
                else:
                    ideal = (layers + (k - 1) * (layers - LAYERS[0])) / (layers * k)
                if name.startswith("token"):
                    upper = layer_weights * (layers - LAYERS[0]) / layers + head_weights
                    ideal = (1 + (k - 1) * upper / (layer_weights + head_weights)) / k
                table.add_row(label, name, f"{t_separate:.2f}", f"{t_shared:.2f}", f"{t_shared / t_separate:.2f}",
                              f"{ideal:.2f}")
                console.print(f"  {label:9} {name:24} separate {t_separate:7.2f} s  shared {t_shared:7.2f} s  "
                              f"ratio {t_shared / t_separate:.2f}  ideal {ideal:.2f}")  # as it goes (long runs)
    console.print(table)
    _generation_share(model, texts, console)


def _generation_share(model, texts, console: Console, new_tokens: int = 32) -> None:
    """What sharing xquad's prompt step could save: the prompt forward's share of a greedy generation
    (XQuAD-like prompts: four verses of context each, batch 8, `new_tokens` new tokens)."""
    from clas_graph.execution.api import encode

    hf, tokenizer = model._module, model.tokenizer
    prompts = [" ".join(texts[i:i + 4]) + " Question: who speaks? Answer:" for i in range(0, 32, 4)][:8]
    inputs = encode(tokenizer, prompts, 512)
    with torch.inference_mode():
        hf(**inputs, logits_to_keep=1)  # warm-up
        start = time.perf_counter()
        hf(**inputs, logits_to_keep=1)
        prompt = time.perf_counter() - start
        start = time.perf_counter()
        hf.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                    pad_token_id=tokenizer.pad_token_id)
        generation = time.perf_counter() - start
    share = prompt / generation
    layers = hf.config.get_text_config().num_hidden_layers
    console.print(f"generation (xquad-like, {inputs['input_ids'].shape[1]} prompt tokens, {new_tokens} new, batch 8): "
                  f"the prompt forward is {share:.0%} of the generation; sharing layers 0-{LAYERS[0] - 1} of the "
                  f"prompt across K=3 conditions would save at most {share * LAYERS[0] / layers * 2 / 3:.0%} of "
                  "their generation time")


def _check(name: str, separate: dict, shared: dict) -> None:
    """The shared numbers must be the separate ones (a benchmark of a wrong result is worthless)."""
    for cond, value in separate.items():
        got = shared[cond]
        if name.startswith("last"):
            value = value[:, [236771, 236770, 236778]]
        pairs = zip(value, got) if isinstance(value, tuple) else [(value, got)]
        for want, have in pairs:
            # float32 rounding scales with the tensor: Gemma's pooled states reach ~2.5e4, where stacked and
            # single traces differ by a few ulps (~4e-3), far above 1e-4 on its small elements
            scale = float(want.abs().max()) if want.numel() else 0.0
            torch.testing.assert_close(have.double(), want.double(), atol=1e-4 + 1e-6 * scale, rtol=1e-4)
