"""Values between inputs: cross-lingual patching and the latent-language lens, against plain PyTorch hooks.

    python -m benchmarks patching [--patch-texts 16] [--patch-repeats 3]

Patching (English-to-X at the last token of layer 9, Gemma 3 270M, parallel Bible verses): clas_graph runs the
source rows in the same batches as the target rows; the baseline is the papers' two passes with forward hooks
(one batched forward of the English texts recording layer 9's output, one of the targets writing it at each
row's last real token). Ideal ratio: 1 (the same two passes' worth of rows). Also against a plain forward of the
targets alone, where the ideal is about 2 (every target row brings its source row).

Lens (every layer's last-position residual through the final norm and unembedding, two token sets summed in the
trace): against one hooked forward that keeps every layer's last-position residual and applies the norm and head
afterwards. Ideal ratio: 1.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

import clas_graph
from clas_graph.data.bible import load_bible
from clas_graph.execution.api import encode, lens_many
from clas_graph.spec.load import validate_data

LAYER = 9
LANGUAGES = ["de", "fr", "es", "ru"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patch-texts", type=int, default=16, help="target texts (mixed languages)")
    parser.add_argument("--patch-repeats", type=int, default=3, help="timed repetitions (median kept)")


def _timed(fn, repeats: int):
    fn()  # warm-up (traces compiled)
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


def _hook_patch(hf, tokenizer, targets, sources, batch_size=8):
    """Two batched passes with forward hooks: record the sources' layer output at their last token, write it at
    each target's last token. Rows are left-padded, so the last real token is position -1."""
    layer = hf.model.layers[LAYER]
    recorded: dict = {}

    def record(module, args, output):
        recorded["h"] = _hidden(output)[:, -1].clone()

    def write(module, args, output):
        _hidden(output)[:, -1] = recorded["h"]
        return output

    out = []
    for start in range(0, len(targets), batch_size):
        handle = layer.register_forward_hook(record)
        hf(**encode(tokenizer, sources[start:start + batch_size], 512), logits_to_keep=1)
        handle.remove()
        handle = layer.register_forward_hook(write)
        out.append(hf(**encode(tokenizer, targets[start:start + batch_size], 512), logits_to_keep=1).logits[:, -1])
        handle.remove()
    return torch.cat(out).float()


def _hook_lens(hf, tokenizer, texts, sets, batch_size=8):
    """One hooked forward per batch keeping each layer's last-position residual; norm, head, softmax after."""
    kept: list = []

    def keep(module, args, output):
        kept.append(_hidden(output)[:, -1])

    out = []
    for start in range(0, len(texts), batch_size):
        kept.clear()
        handles = [layer.register_forward_hook(keep) for layer in hf.model.layers]
        hf(**encode(tokenizer, texts[start:start + batch_size], 512), logits_to_keep=1)
        for handle in handles:
            handle.remove()
        probs = torch.stack([torch.softmax(hf.lm_head(hf.model.norm(h)).float(), -1) for h in kept], 1)
        out.append(torch.stack([probs[..., s].sum(-1) for s in sets], -1))
    return torch.cat(out).double()


def main(args, model, console: Console) -> None:
    hf, tokenizer = model._module, model.tokenizer
    per_language = max(1, args.patch_texts // len(LANGUAGES))
    samples = load_bible(["en", *LANGUAGES], limit=per_language, seed=3, offset=300)
    targets = [s.texts[lang] for s in samples for lang in LANGUAGES]
    rows = [lang for _ in samples for lang in LANGUAGES]
    sources = [s.texts["en"] for s in samples for _ in LANGUAGES]
    spec = validate_data({"schema_version": 1, "name": "bench-patch", "model": {"embedded": "gemma-3-270m"},
                          "languages": ["en", *LANGUAGES], "anchor": {"kind": "fixed", "language": "en"},
                          "interventions": [{"kind": "patch", "id": "p", "layers": [LAYER],
                                             "source": {"language": "en"}}]})
    plans = clas_graph.compile_plans(spec, model)
    table = Table(title=f"Patching and lens on Gemma 3 270M: {len(targets)} target texts, batch 8, "
                        f"{torch.get_num_threads()} threads (median of {args.patch_repeats})", title_justify="left")
    for column in ("case", "clas_graph s", "baseline", "baseline s", "ratio", "ideal"):
        table.add_column(column, justify="left" if column in ("case", "baseline") else "right")
    with torch.inference_mode():
        ours_s, ours = _timed(lambda: clas_graph.forward(model, plans["p"], targets, rows, parallel={"en": sources}),
                              args.patch_repeats)
        hooks_s, hooks = _timed(lambda: _hook_patch(hf, tokenizer, targets, sources), args.patch_repeats)
        torch.testing.assert_close(ours, hooks, atol=2e-3, rtol=1e-3)  # a benchmark of a wrong result is worthless
        plain_s, _ = _timed(lambda: clas_graph.forward(model, None, targets, rows), args.patch_repeats)
        table.add_row("patch en->X, L9 last", f"{ours_s:.2f}", "two hooked passes", f"{hooks_s:.2f}",
                      f"{ours_s / hooks_s:.2f}", "1.00")
        table.add_row("patch en->X, L9 last", f"{ours_s:.2f}", "plain forward of targets", f"{plain_s:.2f}",
                      f"{ours_s / plain_s:.2f}", "~2")
        layers = list(range(hf.config.get_text_config().num_hidden_layers))
        sets = [tokenizer(" the", add_special_tokens=False)["input_ids"], tokenizer(" der",
                                                                                   add_special_tokens=False)["input_ids"]]
        lens_s, lens = _timed(lambda: lens_many(model, {"base": None}, targets, rows, layers, sets=sets)["base"],
                              args.patch_repeats)
        ref_s, ref = _timed(lambda: _hook_lens(hf, tokenizer, targets, sets), args.patch_repeats)
        torch.testing.assert_close(lens["lens"], ref, atol=1e-4, rtol=1e-3)
        table.add_row(f"lens, {len(layers)} layers", f"{lens_s:.2f}", "hooked forward + norm/head", f"{ref_s:.2f}",
                      f"{lens_s / ref_s:.2f}", "1.00")
    console.print(table)
