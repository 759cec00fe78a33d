"""lm-eval's xnli under base and K-1 CLAS conditions: `kind: lm_eval` (every condition's loglikelihood requests
scored together, sharing each batch's common prefix) vs lm-eval's own `hf` model run once per condition (the
baseline; CLAS applied to it by plain PyTorch hooks costs about the same as base, so K base runs stand for it).

    python -m benchmarks lm_eval [--lm-eval-docs 24] [--lm-eval-k 3]

Local files in XNLI's hub columns (German premises from the Bible corpus), float32 on CPU, batch size 8 for both.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

LAYERS = [13, 14, 15]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lm-eval-docs", type=int, default=24, help="xnli_de documents")
    parser.add_argument("--lm-eval-k", type=int, default=3, help="conditions (base + K-1 CLAS variants)")


def main(args, model, console: Console) -> None:
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        console.print("lm_eval benchmark skipped: pip install 'clas-graph[lm-eval]'")
        return
    from clas_graph.compile.compiler import compile_plan
    from clas_graph.data.bible import load_bible
    from clas_graph.spec.load import validate_data
    from clas_graph.tasks.base import task_runners
    from clas_graph.tasks.lm_eval import task_manager_for

    folder = Path(tempfile.mkdtemp(prefix="bench_lm_eval_"))
    verses = load_bible(["de"], limit=args.lm_eval_docs, seed=3, offset=300)
    (folder / "xnli_de.jsonl").write_text("".join(
        json.dumps({"premise": v.texts["de"], "hypothesis": "Gott spricht.", "label": i % 3}, ensure_ascii=False)
        + "\n" for i, v in enumerate(verses)))
    gen = torch.Generator().manual_seed(0)
    shared = {layer: sorted(torch.randperm(2048, generator=gen)[:1000].tolist()) for layer in LAYERS}
    interventions = [{"kind": "clas", "id": f"clas{i}", "layers": LAYERS, "shared": {"neurons": shared},
                      "beta": 0.2 * (i + 1)} for i in range(args.lm_eval_k - 1)]
    spec = validate_data({"schema_version": 1, "name": "bench-lm-eval", "model": {"embedded": "gemma-3-270m"},
                          "languages": ["en", "de"], "interventions": interventions, "batch_size": 8,
                          "tasks": [{"kind": "lm_eval", "tasks": {"de": "xnli_de"}, "limit": args.lm_eval_docs,
                                     "bootstrap_iters": 0, "data_files": {"de": str(folder / "xnli_de.jsonl")}}]})
    (runner,) = task_runners(spec)
    plans = {name: compile_plan(spec, model, name, None) for name in ["base", *(iv["id"] for iv in interventions)]}
    task = runner.task.config_for("de", "test", None)
    task_manager_for(None)  # index lm-eval's tasks once, outside both timings
    hf = HFLM(pretrained=model._module, tokenizer=model.tokenizer, batch_size=8)

    start = time.perf_counter()
    simple_evaluate(model=hf, tasks=[task], limit=args.lm_eval_docs, bootstrap_iters=0, verbosity="ERROR",
                    task_manager=task_manager_for(None))
    one_hf = time.perf_counter() - start
    start = time.perf_counter()
    runner.run_many(model, plans, "de")
    ours = time.perf_counter() - start

    table = Table(title=f"lm-eval xnli_de, {args.lm_eval_docs} documents (x3 choices), {len(plans)} conditions, "
                        f"Gemma 3 270M, {torch.get_num_threads()} threads", title_justify="left")
    for column in ("path", "seconds", "ratio vs K x hf"):
        table.add_column(column, justify="left" if column == "path" else "right")
    table.add_row(f"lm-eval hf model, K={len(plans)} runs (one measured x K)", f"{one_hf * len(plans):.2f}", "1.00")
    table.add_row("kind: lm_eval, all conditions", f"{ours:.2f}", f"{ours / (one_hf * len(plans)):.2f}")
    console.print(table)
