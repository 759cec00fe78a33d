"""Evaluation throughput against plain transformers on the same inputs, measured in the same run.

    python -m benchmarks evaluation [--eval-prompts 32] [--eval-new-tokens 16]

Logit task (XNLI-style): clas_graph.forward with a CLAS plan (3 layers) vs a plain batched HF forward
(logits_to_keep=1) over the same batches. Generation (XQuAD-style): clas_graph.generate_ids with the plan
applied at every step vs plain HF greedy `generate` without intervention, same batches and token budget.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

import clas_graph
from clas_graph.data.bible import BIBLE_LANGUAGES, load_bible
from clas_graph.execution.api import batches as index_batches
from clas_graph.execution.api import encode
from clas_graph.spec.load import validate_data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--eval-prompts", type=int, default=32)
    parser.add_argument("--eval-new-tokens", type=int, default=16)
    parser.add_argument("--eval-repeats", type=int, default=3,
                        help="timed repetitions, baseline and variant alternating (the median of each is kept)")


def main(args, model, console: Console) -> None:
    hf, tokenizer = model._module, model.tokenizer
    languages = [lang for lang in BIBLE_LANGUAGES if lang != "en"][:4]
    samples = load_bible(languages, limit=max(1, args.eval_prompts // len(languages)), seed=5)
    texts = [s.texts[lang] for s in samples for lang in languages]
    rows = [lang for _ in samples for lang in languages]
    gen = torch.Generator().manual_seed(0)
    layers = [13, 14, 15]
    shared = {layer: sorted(torch.randperm(2048, generator=gen)[:1000].tolist()) for layer in layers}
    specific = {layer: sorted(set(torch.randperm(2048, generator=gen)[:500].tolist()) - set(shared[layer]))
                for layer in layers}
    spec = validate_data({"schema_version": 1, "name": "bench", "model": {"embedded": "gemma-3-270m"},
                          "languages": languages, "anchor": {"kind": "none"},
                          "interventions": [{"kind": "clas", "layers": layers, "shared": {"neurons": shared},
                                             "specific": {"neurons": specific}}]})
    plan = clas_graph.compile_plan(spec, model)
    batches = [[texts[i] for i in index] for index in index_batches(tokenizer, texts, 8, 512)]
    n_new = args.eval_new_tokens

    def plain_forward():
        for batch in batches:
            hf(**encode(tokenizer, batch, 512), logits_to_keep=1)

    def plan_forward():
        clas_graph.forward(model, plan, texts, rows, batch_size=8)

    def plain_generate():
        for batch in batches:
            hf.generate(**encode(tokenizer, batch, 512), max_new_tokens=n_new, min_new_tokens=n_new,
                        do_sample=False, pad_token_id=tokenizer.pad_token_id)

    def plan_generate():
        # min == max so both sides decode the same number of steps (the plan side stops at EOS otherwise)
        from transformers import GenerationConfig

        from clas_graph.compile.emit import emit

        trace = emit(plan)
        config = GenerationConfig(max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                                  pad_token_id=tokenizer.pad_token_id)
        for index in index_batches(tokenizer, texts, 8, 512):
            inputs = encode(tokenizer, [texts[i] for i in index], 512)
            trace.generate(model, inputs, plan.row_inputs([rows[i] for i in index]), plan.tensors(),
                           {"generation_config": config})

    tokens = sum(len(ids) for ids in tokenizer(texts)["input_ids"])
    pairs = [("plain HF forward (baseline)", plain_forward, "clas_graph.forward, CLAS plan", plan_forward),
             ("plain HF generate (baseline)", plain_generate, "clas_graph generate, CLAS every step", plan_generate)]
    times: dict[str, list[float]] = {}
    with torch.inference_mode():
        for baseline, baseline_fn, variant, variant_fn in pairs:
            baseline_fn(), variant_fn()  # warm-up
            for _ in range(args.eval_repeats):  # alternating, so a slow spell of the machine hits both
                for name, fn in ((baseline, baseline_fn), (variant, variant_fn)):
                    start = time.perf_counter()
                    fn()
                    times.setdefault(name, []).append(time.perf_counter() - start)
    times = {name: statistics.median(values) for name, values in times.items()}
    table = Table(title=f"evaluation on Gemma 3 270M: {len(texts)} prompts ({tokens} tokens), batch 8, "
                        f"{n_new} new tokens, {torch.get_num_threads()} threads, median of {args.eval_repeats}",
                  title_justify="left")
    for column in ("variant", "seconds", "throughput × baseline"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for baseline, _, variant, _ in pairs:
        table.add_row(baseline, f"{times[baseline]:.2f}", "1.00")
        table.add_row(variant, f"{times[variant]:.2f}", f"{times[baseline] / times[variant]:.2f}")
    console.print(table)
