"""Statistics runner throughput and memory, against baselines measured in the same run.

    python -m benchmarks stats [--stats-verses 10]

Baselines: a plain batched HF forward over exactly the same batches (the
ceiling: statistics cannot be faster than the forward they observe), and the
paper's protocol, one sample at a time. Peak memory (process RSS high-water
mark) is compared with the model's own parameter bytes.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from rich.console import Console
from rich.table import Table

from clas_graph.data.bible import BIBLE_LANGUAGES, load_bible
from clas_graph.runners import stats as runner
from clas_graph.spec.stats import AbsoluteThreshold, QuantileThreshold


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stats-verses", type=int, default=10, help="parallel verses (x 12 languages)")
    parser.add_argument("--stats-batch", type=int, default=8)


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main(args, model, console: Console) -> None:
    hf = model._module
    languages = list(BIBLE_LANGUAGES)
    samples = load_bible(languages, limit=args.stats_verses, seed=0)
    rows = runner._rows(samples, languages)
    batches = list(runner._batches(model.tokenizer, rows, args.stats_batch, 512))
    tokens = sum(n for _, n in batches)
    quiet = Console(quiet=True)

    def plain():
        for index, _ in batches:
            encoded = model.tokenizer([rows[i][0] for i in index], padding=True, return_tensors="pt")
            hf(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], logits_to_keep=1)

    def stats_quantile():
        runner.collect(model, samples, languages, threshold=QuantileThreshold(), batch_size=args.stats_batch,
                       console=quiet)

    def stats_quantile_active():
        runner.collect(model, samples, languages, threshold=QuantileThreshold(), batch_size=args.stats_batch,
                       console=quiet, active_frac=True)

    def stats_absolute():
        runner.collect(model, samples, languages, threshold=AbsoluteThreshold(), batch_size=args.stats_batch,
                       console=quiet)

    one_sample = samples[: max(1, len(samples) // 5)]
    one_tokens = sum(len(model.tokenizer(s.texts[lang])["input_ids"]) for s in one_sample for lang in languages)

    def one_at_a_time():
        runner.collect(model, one_sample, languages, threshold=QuantileThreshold(), batch_size=1, console=quiet)

    model_bytes = sum(p.numel() * p.element_size() for p in hf.parameters())
    results = {}
    with torch.inference_mode():
        plain()  # warm-up
        rss_before = _peak_rss_bytes()
        for name, fn, n in (("plain batched forward (baseline)", plain, tokens),
                            ("stats, default: quantile T_act (1 pass)", stats_quantile, tokens),
                            ("stats, absolute T_act + active_frac (1 pass)", stats_absolute, tokens),
                            ("stats, quantile T_act + active_frac (2 passes)", stats_quantile_active, tokens),
                            ("stats, one sample at a time (paper protocol)", one_at_a_time, one_tokens)):
            start = time.perf_counter()
            fn()
            results[name] = n / (time.perf_counter() - start)
        peak = _peak_rss_bytes()

    base = results["plain batched forward (baseline)"]
    protocol = results["stats, one sample at a time (paper protocol)"]
    table = Table(title=f"statistics on Gemma 3 270M: {len(samples)} verses x {len(languages)} languages, "
                        f"{tokens} tokens, batch {args.stats_batch}, {torch.get_num_threads()} threads",
                  title_justify="left")
    for column in ("variant", "tokens/s", "× plain forward", "× one-at-a-time"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, rate in results.items():
        table.add_row(name, f"{rate:,.0f}", f"{rate / base:.2f}", f"{rate / protocol:.2f}")
    console.print(table)
    console.print(f"peak RSS {peak / 2**30:.2f} GiB (after the model and the forward baseline: "
                  f"{rss_before / 2**30:.2f} GiB); model parameters {model_bytes / 2**30:.2f} GiB; "
                  f"statistics added {(peak - rss_before) / model_bytes:.2f}× the model's size")
