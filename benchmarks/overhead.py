"""Overhead of compiled CLAS traces, measured side by side in one run.

    python -m benchmarks overhead [--repeats 10] [--batch 8] [--tokens 128]

On the embedded Gemma 3 270M: a plain HF forward (baseline), the same forward
through nnsight with no intervention, the compiled CLAS trace (4 layers,
realistic mask sizes), and a plain PyTorch forward-pre-hook implementation of
the same scale. Variants run interleaved (round robin) so drift hits all of
them alike; we report the median and the ratio to the plain forward.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

import clas_graph
from clas_graph.compile.emit import emit
from clas_graph.spec.load import validate_data

LAYERS = [12, 13, 14, 15]


def demo_masks(intermediate: int, seed: int = 0):
    """~1,000 shared and ~500 specific neurons per layer, the sizes the design measured on this model."""
    gen = torch.Generator().manual_seed(seed)
    shared, specific = {}, {}
    for layer in LAYERS:
        perm = torch.randperm(intermediate, generator=gen).tolist()
        shared[layer] = sorted(perm[:1000])
        specific[layer] = sorted(perm[1000:1500])
    return shared, specific


def make_inputs(tokenizer, batch: int, tokens: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (batch, tokens), generator=gen)
    ids[:, 0] = tokenizer.bos_token_id
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)


def main(args, model, console: Console) -> None:
    hf = model._module
    intermediate = hf.config.intermediate_size
    shared, specific = demo_masks(intermediate)
    spec = validate_data({
        "schema_version": 1, "name": "bench", "model": {"embedded": "gemma-3-270m"}, "languages": ["en", "de"],
        "interventions": [{"kind": "clas", "layers": LAYERS, "shared": {"neurons": shared},
                           "specific": {"neurons": specific}, "beta": 0.4, "gamma": 0.2, "alpha": 1.0}],
    })
    plan = clas_graph.compile_plan(spec, model)
    trace = emit(plan)
    inputs = make_inputs(model.tokenizer, args.batch, args.tokens)
    languages = ["de"] * (args.batch - args.batch // 4) + ["en"] * (args.batch // 4)
    rows, tensors = plan.row_inputs(languages), plan.tensors()
    row_mask = rows[plan.ops[0].rows.key]

    def plain():
        return hf(**inputs, logits_to_keep=1).logits

    def nnsight_base():
        with model.trace(inputs, logits_to_keep=1):
            out = model.output.logits.save()
        return out

    def compiled_clas():
        return trace.forward(model, inputs, rows, tensors, {"logits_to_keep": 1})

    def hooks_clas():
        handles = []
        for op in plan.ops:
            def hook(module, hook_args, scale=op.scale):  # bind now: no late-binding bug
                h = hook_args[0]
                return (torch.where(row_mask[:, None, None], h * scale, h),)
            handles.append(hf.model.layers[op.layer].mlp.down_proj.register_forward_pre_hook(hook))
        try:
            return hf(**inputs, logits_to_keep=1).logits
        finally:
            for handle in handles:
                handle.remove()

    variants = {"plain forward (baseline)": plain, "nnsight trace, no intervention": nnsight_base,
                "compiled CLAS trace (4 layers)": compiled_clas, "PyTorch hooks CLAS (4 layers)": hooks_clas}
    times = {name: [] for name in variants}
    with torch.inference_mode():
        torch.testing.assert_close(compiled_clas(), hooks_clas()[:, -1], atol=1e-4, rtol=1e-4)
        for fn in variants.values():  # warm-up
            fn()
        for _ in range(args.repeats):
            for name, fn in variants.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)

    base = statistics.median(times["plain forward (baseline)"])
    hook = statistics.median(times["PyTorch hooks CLAS (4 layers)"])
    table = Table(title=f"Gemma 3 270M, batch {args.batch} x {args.tokens} tokens, {torch.get_num_threads()} threads, "
                        f"median of {args.repeats}", title_justify="left")
    for column in ("variant", "median ms", "min ms", "× plain forward", "× hooks"):
        table.add_column(column, justify="right" if column != "variant" else "left")
    for name, samples in times.items():
        median = statistics.median(samples)
        table.add_row(name, f"{median * 1e3:.1f}", f"{min(samples) * 1e3:.1f}", f"{median / base:.3f}",
                      f"{median / hook:.3f}")
    console.print(table)

