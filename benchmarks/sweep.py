"""A sweep's dev phase against G separate `run` calls, measured in the same run.

    python -m benchmarks sweep [--sweep-points 4] [--sweep-texts 8]

Setup: Gemma 3 270M, 3 languages, CLAS with random inline masks on layers 13-15, a retrieval task over
`--sweep-texts` Bible verses per language (dev slice of the same size), alpha swept over G values.
Baseline: G separate `clas_graph.run` calls, one per alpha, each loading the model and evaluating base and
that alpha on the same number of verses. Sweep: one `run` with `sweep: {clas.alpha: [...]}`; its dev phase
(base once + G points) is timed inside the runner (metrics.json `sweep.timing_s`), its wall time includes the
model load and the held-out phase (base, the chosen alpha). No statistics (inline masks): a spec with
`{from_stats: ...}` masks would compute them once either way, since separate runs reuse the cached artifact.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import clas_graph
from clas_graph.spec.load import validate_data

ALPHAS = [-2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0, 4.0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sweep-points", type=int, default=3, help="grid points G (alpha values)")
    parser.add_argument("--sweep-texts", type=int, default=8, help="verses per language in the test and dev slices")


def _spec(alphas: list[float] | None, alpha: float, texts: int) -> clas_graph.RunSpec:
    gen = torch.Generator().manual_seed(0)
    layers = [13, 14, 15]
    shared = {layer: sorted(torch.randperm(2048, generator=gen)[:1000].tolist()) for layer in layers}
    specific = {layer: sorted(set(torch.randperm(2048, generator=gen)[:500].tolist()) - set(shared[layer]))
                for layer in layers}
    data = {"schema_version": 1, "name": "bench-sweep", "model": {"embedded": "gemma-3-270m", "device": "cpu"},
            "languages": ["en", "de", "fr"],
            "interventions": [{"kind": "clas", "layers": layers, "shared": {"neurons": shared},
                               "specific": {"neurons": specific}, "alpha": alpha}],
            "tasks": [{"kind": "retrieval", "layer": 15, "corpus": {"kind": "bible", "limit": texts, "offset": 100}}]}
    if alphas is not None:
        data["sweep"] = {"clas.alpha": alphas}
    return validate_data(data)


def main(args, model, console: Console) -> None:
    del model  # each measured side loads the model itself, as `clas-graph run` does
    alphas = ALPHAS[: args.sweep_points]
    quiet = Console(file=io.StringIO(), width=160)
    with tempfile.TemporaryDirectory(prefix="clas_graph_bench_sweep_") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        for index, alpha in enumerate(alphas):
            # the dev slice of the sweep is verses [100 + texts, 100 + 2*texts): give the separate runs that slice
            spec = _spec(None, alpha, args.sweep_texts)
            spec = spec.model_copy(update={"tasks": [spec.tasks[0].model_copy(update={
                "corpus": spec.tasks[0].corpus.model_copy(update={"offset": 100 + args.sweep_texts})})]})
            clas_graph.run(spec, runs_root=root / f"separate{index}", console=quiet)
        separate = time.perf_counter() - start

        start = time.perf_counter()
        path = clas_graph.run(_spec(alphas, 1.0, args.sweep_texts), runs_root=root / "sweep", console=quiet)
        sweep_wall = time.perf_counter() - start
        timing = json.loads((Path(path) / "metrics.json").read_text())["sweep"]["timing_s"]

    table = Table(title=f"sweep of G={len(alphas)} alphas on Gemma 3 270M: retrieval, 3 languages x "
                        f"{args.sweep_texts} verses, {torch.get_num_threads()} threads", title_justify="left")
    for column in ("variant", "seconds", "G separate runs ÷ this"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    table.add_row(f"{len(alphas)} separate `run` calls (baseline)", f"{separate:.1f}", "1.00")
    table.add_row("sweep: dev phase (base once + G points)", f"{timing['dev']:.1f}", f"{separate / timing['dev']:.2f}")
    table.add_row("sweep: whole run (load, dev, choice, held-out)", f"{sweep_wall:.1f}", f"{separate / sweep_wall:.2f}")
    console.print(table)
