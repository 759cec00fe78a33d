"""Remote XNLI and next_token evaluation: requests and megabytes per 100 items, before and after, against the
mock NDIF server.

    python -m benchmarks remote [--remote-items 100]

The mock server (tests/ndif_mock, nnsight's real client, a subprocess on 127.0.0.1) serves the embedded
Gemma 3 270M (vocabulary 262,144). Three conditions (base, CLAS and an Int-mu-like overwrite on layers
13-15), batch 8. Before: one request per (batch, condition) bringing back full-vocabulary last-position
logits (the single-plan `forward` path). After: `forward_many` with the label tokens only, 8 batches per
request in one `model.session` with the shared prefix kept on the server. next_token (same prompts): before,
`forward_many` of every condition and base with full-vocabulary rows (the session's result budget then
allows one batch per request); after, `next_token_many`, which compares each condition with base on the
server and brings back four numbers per row. Numbers are checked equal.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import clas_graph
from clas_graph.backends import forward, forward_many, next_token_many
from clas_graph.data.bible import BIBLE_LANGUAGES, load_bible
from clas_graph.data.templates import render
from clas_graph.data.xnli import XNLI_PROMPT
from clas_graph.embedded import embedded_model_dir
from clas_graph.execution.context import use
from clas_graph.execution.ndif import NdifExecutor
from clas_graph.spec.load import validate_data

LAYERS = [13, 14, 15]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--remote-items", type=int, default=100, help="XNLI-style items")


def main(args, model, console: Console) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from ndif_mock.harness import start_mock_ndif

    languages = [lang for lang in BIBLE_LANGUAGES if lang != "en"][:4]
    samples = load_bible(languages, limit=max(1, args.remote_items // len(languages) + 1), seed=3, offset=300)
    pairs = [(s.texts[lang], lang) for s in samples for lang in languages][: args.remote_items]
    prompts = [render(XNLI_PROMPT, premise=text, hypothesis=text[: len(text) // 2]) for text, _ in pairs]
    rows = [lang for _, lang in pairs]
    labels = [model.tokenizer(label, add_special_tokens=False)["input_ids"][0] for label in ("0", "1", "2")]
    gen = torch.Generator().manual_seed(0)
    perms = {layer: torch.randperm(2048, generator=gen).tolist() for layer in LAYERS}
    spec = validate_data({
        "schema_version": 1, "name": "bench", "model": {"embedded": "gemma-3-270m"}, "languages": list(BIBLE_LANGUAGES),
        "interventions": [
            {"kind": "clas", "id": "clas", "layers": LAYERS,
             "shared": {"neurons": {layer: p[:1000] for layer, p in perms.items()}},
             "specific": {"neurons": {layer: p[1000:1500] for layer, p in perms.items()}}},
            {"kind": "ablate", "id": "int_mu_like", "layers": LAYERS, "site": "mlp.act_fn.output",
             "neurons": {"neurons": {layer: p[1000:1500] for layer, p in perms.items()}}}]})
    plans = clas_graph.compile_plans(spec, model)
    folder = embedded_model_dir()
    with start_mock_ndif(folder) as ndif:
        def measured(fn, session_batches=8):
            before = len(ndif.jobs())
            start = time.perf_counter()
            with use(NdifExecutor(host=True, session_batches=session_batches)):
                value = fn()
            seconds = time.perf_counter() - start
            jobs = ndif.jobs()[before:]
            payload, result = sum(j["payload_bytes"] for j in jobs), sum(j["result_bytes"] for j in jobs)
            return value, len(jobs), payload, result, seconds

        # before sessions: one request per (batch, condition), as `forward` of one plan made them
        old = measured(lambda: {name: forward(model, plan, prompts, rows) for name, plan in plans.items()},
                       session_batches=1)
        new = measured(lambda: forward_many(model, plans, prompts, rows, token_ids=labels))
        conditions = {name: plan for name, plan in plans.items() if name != "base"}
        gold = [labels[i % 3] for i in range(len(prompts))]
        old_next = measured(lambda: forward_many(model, {**conditions, "\x00base": None}, prompts, rows))
        new_next = measured(lambda: next_token_many(model, conditions, prompts, rows, gold))
    for name in plans:
        torch.testing.assert_close(new[0][name], old[0][name][:, labels], atol=1e-4, rtol=1e-4)
    base_lp = torch.log_softmax(old_next[0]["\x00base"].double(), -1)
    for name in conditions:
        lp = torch.log_softmax(old_next[0][name].double(), -1)
        torch.testing.assert_close(new_next[0][name]["kl"], (base_lp.exp() * (base_lp - lp)).sum(-1), atol=1e-4,
                                   rtol=1e-3)
    scale = 100 / len(prompts)
    table = Table(title=f"remote XNLI on the mock NDIF server (Gemma 3 270M): {len(prompts)} items x {len(plans)} "
                        "conditions, batch 8; per 100 items", title_justify="left")
    for column in ("path", "requests", "MB sent", "MB returned", "seconds"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for label, (_, requests, sent, returned, seconds) in (
            ("xnli before: a request per (batch, condition), full logits", old),
            ("xnli after: 8 batches x all conditions per session, label logits", new),
            ("next_token before: full-vocabulary rows, 1 batch per session", old_next),
            ("next_token after: KL/top-1/gold reduced on the server", new_next)):
        table.add_row(label, f"{requests * scale:.1f}", f"{sent * scale / 1e6:.2f}", f"{returned * scale / 1e6:.3f}",
                      f"{seconds * scale:.1f}")
    console.print(table)
