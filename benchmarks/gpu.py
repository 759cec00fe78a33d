"""The flagship's cost on a GPU, measured on a random model with Llama 3.1 8B's layer shapes, and extrapolated.

    python -m benchmarks gpu [--layers 8] [--device cuda] [--dtype bfloat16] [--tiny] [--out benchmarks/results]

Builds a random LlamaForCausalLM (hidden 4096, intermediate 14336, 32 heads / 8 KV heads, vocab 128256) with
`--layers` layers directly on the device, a word-level tokenizer and texts of fixed token counts (nothing is
downloaded; see synthetic.py), then measures, each against a baseline in the same run:
  statistics   the statistics pass (tokens/s) vs a plain batched forward over the same texts
  forward      the compiled CLAS trace (clas_graph.forward) vs a plain HF forward vs plain PyTorch hooks
  conditions   K conditions (base, CLAS, Int-mu) with the shared prefix (forward_many) vs K separate passes
  generation   greedy generation: compiled CLAS (clas_graph.generate_ids) vs plain HF generate vs hooks
with the peak GPU memory of each. Before timing, each compiled result is checked against its reference (hooks
applying the same per-neuron factor, separate passes); a failed check is reported and the command exits 1.
The flagship's time is then extrapolated from the measured per-item costs (formula in `flagship`). Writes
gpu-*.json and gpu-*.md to --out. `--tiny` runs the same code on a tiny model of the same proportions (a CPU
smoke run, part of the test suite).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import torch
from rich.console import Console
from rich.table import Table

from . import synthetic

LANGUAGES = ["en", "ar", "de", "el", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"]  # XQuAD's 12; en the anchor
FLAGSHIP = {"xnli": (15, 5010), "xquad": (12, 1190), "stats_texts": 100 * 12, "conditions": 3}
"""XNLI test: 15 languages x 5010 items; XQuAD: 12 x 1190; statistics: 100 parallel paragraphs x 12 languages;
conditions: base, CLAS, Int-mu."""
DEFAULT_OUT = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Sizes:
    batch: int = 8
    repeats: int = 3
    xnli_items: int = 256
    xnli_tokens: int = 160
    """Prompt tokens of an XNLI-like item (premise, hypothesis, instruction, chat template): an assumption."""
    xquad_items: int = 32
    xquad_tokens: int = 400
    """Prompt tokens of an XQuAD-like item (context, question, instruction): an assumption."""
    new_tokens: int = 32
    stats_texts: int = 8
    """Texts per language in the statistics pass."""
    stats_tokens: int = 256
    """Tokens of a statistics text (an XQuAD paragraph): an assumption."""


TINY_SIZES = Sizes(batch=4, repeats=1, xnli_items=8, xnli_tokens=24, xquad_items=4, xquad_tokens=24, new_tokens=4,
                   stats_texts=1, stats_tokens=16)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("gpu")
    group.add_argument("--layers", type=int, default=None, help="decoder layers to build (default 8; --tiny 4)")
    group.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    group.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    group.add_argument("--tiny", action="store_true", help="a tiny model of the same proportions (CPU smoke run)")
    group.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for gpu-*.json and gpu-*.md")
    for field, default in asdict(Sizes()).items():
        group.add_argument(f"--gpu-{field.replace('_', '-')}", dest=f"gpu_{field}", type=int, default=None,
                           help=f"default {default} (--tiny: {getattr(TINY_SIZES, field)})")


BUILDS_ITS_OWN_MODEL = True
"""`python -m benchmarks` gives this suite no model: it builds its own."""


def main(args, model, console: Console) -> None:
    result = run(args, console)
    if not all(check["ok"] for check in result["checks"]):
        sys.exit(1)


def run(args, console: Console) -> dict:
    """Build, check, measure, extrapolate, report; returns the report as data (also written to args.out)."""
    from clas_graph.loading import wrap

    preset = TINY_SIZES if args.tiny else Sizes()
    sizes = replace(preset, **{f: getattr(args, f"gpu_{f}") for f in asdict(preset)
                               if getattr(args, f"gpu_{f}", None) is not None})
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype)
    shape = synthetic.Shape("tiny (Llama 3.1 8B proportions)" if args.tiny else "Llama 3.1 8B layer shapes",
                            synthetic.TINY if args.tiny else synthetic.LLAMA_31_8B,
                            args.layers or (4 if args.tiny else 8))
    bench = Bench(device, sizes.repeats)
    start = time.perf_counter()
    hf = synthetic.build_model(shape, dtype, device)
    built = time.perf_counter() - start
    model = wrap(hf, synthetic.word_tokenizer())
    weights = sum(p.numel() * p.element_size() for p in hf.parameters()) / 2**30
    console.print(f"[bold]gpu benchmark[/]: {shape.name}, {shape.layers} of {shape.full_layers} layers, {args.dtype} "
                  f"on {bench.device_name} (built in {built:.1f} s; weights {weights:.2f} GiB)")
    report = {"device": bench.device_name, "torch": torch.__version__, "dtype": args.dtype, "shape": shape.name,
              "config": {**shape.config, "num_hidden_layers": shape.layers}, "layers": shape.layers,
              "full_layers": shape.full_layers, "sizes": asdict(sizes), "build_s": built,
              "weights_gib": weights, "sections": {}, "checks": []}
    languages = [LANGUAGES[i % len(LANGUAGES)] for i in range(max(sizes.xnli_items, sizes.xquad_items))]
    with torch.inference_mode():
        artifact = statistics_section(bench, model, sizes, report, console)
        plans = flagship_plans(model, shape, artifact)
        report["plans"] = {name: [op.describe() for op in plan.ops] for name, plan in plans.items() if plan}
        forward_section(bench, model, plans, sizes, languages[:sizes.xnli_items], report, console)
        conditions_section(bench, model, plans, sizes, languages[:sizes.xnli_items], report, console)
        generation_section(bench, model, plans, sizes, languages[:sizes.xquad_items], report, console)
    report["flagship"] = flagship_estimate(report, sizes, shape)
    console.print(report["flagship"]["formula"])
    console.print(f"[bold]flagship estimate[/]: {report['flagship']['total_h']:.1f} h on this device "
                  f"(XNLI {report['flagship']['xnli_h']:.1f} h, XQuAD {report['flagship']['xquad_h']:.1f} h, "
                  f"statistics {report['flagship']['stats_h'] * 60:.1f} min)")
    report["total_s"] = time.perf_counter() - start
    write_report(report, args.out, console)
    return report


# --- timing -----------------------------------------------------------------------------------------------------


class Bench:
    """Timing with device synchronisation, round-robin repeats (drift hits every variant alike), peak memory."""

    def __init__(self, device: str, repeats: int):
        self.device, self.repeats = device, repeats
        self.cuda = torch.device(device).type == "cuda"
        self.device_name = torch.cuda.get_device_name(torch.device(device)) if self.cuda else f"cpu ({device})"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def times(self, variants: dict) -> tuple[dict[str, float], dict[str, float | None]]:
        """{name: median seconds} and {name: peak GiB during its warm-up run (None off CUDA)} of each variant."""
        peaks = {}
        for name, fn in variants.items():  # warm-up, and each variant's peak memory
            if self.cuda:
                torch.cuda.reset_peak_memory_stats(self.device)
            fn()
            self.sync()
            peaks[name] = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.cuda else None
        samples = {name: [] for name in variants}
        for _ in range(self.repeats):
            for name, fn in variants.items():
                self.sync()
                start = time.perf_counter()
                fn()
                self.sync()
                samples[name].append(time.perf_counter() - start)
        return {name: statistics.median(values) for name, values in samples.items()}, peaks


def check(report: dict, name: str, ok: bool, detail: str, console: Console) -> None:
    report["checks"].append({"name": name, "ok": bool(ok), "detail": detail})
    console.print(f"  check {name}: {'ok' if ok else '[red]FAILED[/]'} ({detail})")


def close_enough(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> tuple[bool, str]:
    """Equal up to a few roundings of the model's dtype at the outputs' scale: both sides apply the same per-neuron
    factor, so they differ only where batch composition changes a kernel's rounding."""
    got, want = got.double().cpu(), want.double().cpu()
    diff, scale = float((got - want).abs().max()), float(want.abs().max())
    tolerance = 4 * torch.finfo(dtype).eps * scale
    return diff <= tolerance, f"max |diff| {diff:.3g} <= {tolerance:.3g} (4 eps x max |value| {scale:.3g})"


# --- the plans ----------------------------------------------------------------------------------------------------


def flagship_plans(model, shape: synthetic.Shape, artifact) -> dict:
    """base, CLAS and Int-mu as the flagship spec states them (bridge layers at the same relative depth), with
    masks and means from this run's statistics."""
    import clas_graph
    from clas_graph.spec.load import validate_data

    layers = synthetic.bridge_layers(shape)
    spec = validate_data({
        "schema_version": 1, "name": "gpu-bench", "model": {"path": "synthetic"}, "languages": LANGUAGES,
        "anchor": {"kind": "fixed", "language": "en"},
        "stats": {"corpus": {"kind": "xquad", "field": "context", "limit": 100}},  # as the flagship's; not read here
        "interventions": [
            {"kind": "clas", "id": "clas", "layers": layers, "shared": {"from_stats": "partial_shared"},
             "specific": {"from_stats": "language_specific"}, "beta": 0.4, "gamma": 0.2, "alpha": -1.0},
            {"kind": "int_mu", "id": "int_mu", "layers": layers, "site": "mlp.act_fn.output",
             "rows": {"languages": LANGUAGES[1:]}}],
        "conditions": {"clas": ["clas"], "int_mu": ["int_mu"]}})
    plans = clas_graph.compile_plans(spec, model, stats=artifact)
    return {"base": None, **{name: plan for name, plan in plans.items() if name != "base"}}


def clas_hooks(hf, plan, row_mask: torch.Tensor):
    """Plain forward pre-hooks on down_proj applying the plan's CLAS factor to the masked rows; returns the handles."""
    handles = []
    for op in plan.ops:
        scale = op.scale.to(hf.device, hf.dtype)
        mask = row_mask.to(hf.device)[:, None, None]

        def hook(module, args, scale=scale, mask=mask):  # bound now: no late binding
            return (torch.where(mask, args[0] * scale, args[0]),)
        handles.append(hf.model.layers[op.layer].mlp.down_proj.register_forward_pre_hook(hook))
    return handles


def encoded_batches(model, texts: list[str], batch: int) -> list[dict]:
    tok = model.tokenizer
    out = []
    for i in range(0, len(texts), batch):
        enc = tok(texts[i:i + batch], padding=True, return_tensors="pt")
        out.append({"input_ids": enc["input_ids"].to(model._module.device),
                    "attention_mask": enc["attention_mask"].to(model._module.device)})
    return out


def row_masks(plan, languages: list[str], batch: int) -> list[torch.Tensor]:
    key = plan.ops[0].rows.key
    return [plan.row_inputs(languages[i:i + batch])[key] for i in range(0, len(languages), batch)]


# --- sections -----------------------------------------------------------------------------------------------------


def statistics_section(bench: Bench, model, sizes: Sizes, report: dict, console: Console):
    """Statistics pass (quantile T_act, one pass) vs a plain forward of the same batches; returns the artifact."""
    from clas_graph.runners import stats as runner
    from clas_graph.spec.stats import BridgeRule, QuantileThreshold
    from clas_graph.stats import build_artifact

    per_language = synthetic.texts(sizes.stats_texts * len(LANGUAGES), sizes.stats_tokens, seed=1)
    samples = [SimpleNamespace(texts={lang: per_language[i * len(LANGUAGES) + g] for g, lang in enumerate(LANGUAGES)})
               for i in range(sizes.stats_texts)]
    texts = [sample.texts[lang] for sample in samples for lang in LANGUAGES]
    batches = encoded_batches(model, texts, sizes.batch)
    tokens = len(texts) * sizes.stats_tokens
    quiet = Console(quiet=True)
    hf = model._module
    found = {}

    def plain():
        for inputs in batches:
            hf(**inputs, logits_to_keep=1)

    def stats_pass():
        found["moments"], _, found["t_act"] = runner.collect(model, samples, LANGUAGES, threshold=QuantileThreshold(),
                                                            batch_size=sizes.batch, console=quiet)

    stats_pass()
    counted = found["moments"].tokens
    expected = sizes.stats_texts * (sizes.stats_tokens - 1)  # BOS is not counted
    check(report, "statistics count every non-BOS token", bool((counted == expected).all())
          and bool(torch.isfinite(found["moments"].h_sum).all()), f"{counted[0]:.0f} tokens per language", console)
    times, peaks = bench.times({"plain batched forward (baseline)": plain,
                                "statistics pass (quantile T_act)": stats_pass})
    base = times["plain batched forward (baseline)"]
    rows = [{"variant": name, "s": t, "tokens_per_s": tokens / t, "x_baseline_throughput": base / t,
             "peak_gib": peaks[name]} for name, t in times.items()]
    report["sections"]["statistics"] = {"texts": len(texts), "tokens": tokens, "rows": rows}
    show(console, f"statistics: {len(texts)} texts x {sizes.stats_tokens} tokens, batch {sizes.batch}", rows)
    # the plans name their layers; the artifact's own bridge choice is not used (any layer may be a candidate)
    rule = BridgeRule(k=1, exclude_last=0, min_layer=0).model_dump()
    return build_artifact(found["moments"], None, found["t_act"], "quantile", LANGUAGES, rule, {})


def forward_section(bench: Bench, model, plans: dict, sizes: Sizes, languages: list[str], report: dict,
                    console: Console) -> None:
    """One condition (CLAS), last-position logits: compiled trace vs plain forward vs plain hooks."""
    import clas_graph

    hf, plan = model._module, plans["clas"]
    texts = synthetic.texts(sizes.xnli_items, sizes.xnli_tokens, seed=2)
    batches, masks = encoded_batches(model, texts, sizes.batch), row_masks(plan, languages, sizes.batch)

    def plain():
        return torch.cat([hf(**inputs, logits_to_keep=1).logits[:, -1] for inputs in batches])

    def hooks():
        out = []
        for inputs, mask in zip(batches, masks):
            handles = clas_hooks(hf, plan, mask)
            try:
                out.append(hf(**inputs, logits_to_keep=1).logits[:, -1])
            finally:
                for handle in handles:
                    handle.remove()
        return torch.cat(out)

    def compiled():
        return clas_graph.forward(model, plan, texts, languages, batch_size=sizes.batch)

    ok, detail = close_enough(compiled(), hooks(), hf.dtype)
    check(report, "compiled CLAS trace = hooks (forward)", ok, detail, console)
    moved = float((hooks().double() - plain().double()).abs().max())
    check(report, "CLAS changes the non-anchor logits", moved > 0, f"max |change| {moved:.3g}", console)
    times, peaks = bench.times({"plain HF forward (baseline)": plain, "plain PyTorch hooks, CLAS": hooks,
                                "compiled CLAS trace (clas_graph.forward)": compiled})
    rows = ratio_rows(times, peaks, "plain HF forward (baseline)", sizes.xnli_items)
    report["sections"]["forward"] = {"items": sizes.xnli_items, "tokens": sizes.xnli_tokens, "rows": rows}
    show(console, f"forward, one condition: {sizes.xnli_items} texts x {sizes.xnli_tokens} tokens, batch {sizes.batch}",
         rows)


def conditions_section(bench: Bench, model, plans: dict, sizes: Sizes, languages: list[str], report: dict,
                       console: Console) -> None:
    """The flagship's conditions on XNLI-like items, three label tokens read: shared prefix vs separate passes."""
    from clas_graph.execution.api import forward_many

    hf = model._module
    texts = synthetic.texts(sizes.xnli_items, sizes.xnli_tokens, seed=2)
    batches = encoded_batches(model, texts, sizes.batch)
    labels = [3, 4, 5]  # three token ids, as XNLI reads "0", "1", "2"

    def plain_k():
        for _ in plans:
            for inputs in batches:
                hf(**inputs, logits_to_keep=1)

    def separate():
        return {name: forward_many(model, {name: plan}, texts, languages, batch_size=sizes.batch,
                                   token_ids=labels)[name] for name, plan in plans.items()}

    def shared():
        return forward_many(model, plans, texts, languages, batch_size=sizes.batch, token_ids=labels)

    one_by_one, together = separate(), shared()
    results = [close_enough(together[name], one_by_one[name], hf.dtype) for name in plans]
    check(report, "shared prefix = separate passes", all(ok for ok, _ in results),
          "; ".join(f"{name}: {detail}" for name, (_, detail) in zip(plans, results)), console)
    times, peaks = bench.times({f"plain HF forward x {len(plans)} (baseline)": plain_k,
                                f"{len(plans)} conditions, separate passes": separate,
                                f"{len(plans)} conditions, shared prefix (forward_many)": shared})
    rows = ratio_rows(times, peaks, f"plain HF forward x {len(plans)} (baseline)", sizes.xnli_items)
    first = min(min(op.layer for op in plan.ops) for plan in plans.values() if plan)
    layers, k = hf.config.num_hidden_layers, len(plans)
    ideal = (layers + (k - 1) * (layers - first)) / (layers * k)
    report["sections"]["conditions"] = {"items": sizes.xnli_items, "tokens": sizes.xnli_tokens, "k": k,
                                        "first_edited_layer": first, "ideal_shared_over_separate": ideal,
                                        "rows": rows}
    show(console, f"{k} conditions (base, CLAS, Int-mu from layer {first}), XNLI-like readout: {sizes.xnli_items} "
                  f"texts x {sizes.xnli_tokens} tokens; ideal shared/separate {ideal:.2f}", rows)


def generation_section(bench: Bench, model, plans: dict, sizes: Sizes, languages: list[str], report: dict,
                       console: Console) -> None:
    """Greedy generation, one condition at a time (as the evaluation runner does): compiled vs plain vs hooks."""
    import clas_graph

    hf, plan, n = model._module, plans["clas"], sizes.new_tokens
    texts = synthetic.texts(sizes.xquad_items, sizes.xquad_tokens, seed=3)
    batches, masks = encoded_batches(model, texts, sizes.batch), row_masks(plan, languages, sizes.batch)
    options = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)

    def plain():
        return [hf.generate(**inputs, **options) for inputs in batches]

    def hooks():
        out = []
        for inputs, mask in zip(batches, masks):
            handles = clas_hooks(hf, plan, mask)
            try:
                out += hf.generate(**inputs, **options)[:, inputs["input_ids"].shape[1]:].tolist()
            finally:
                for handle in handles:
                    handle.remove()
        return out

    def compiled(name: str):
        return lambda: clas_graph.generate_ids(model, plans[name], texts, languages, n, batch_size=sizes.batch)

    got, want = compiled("clas")(), hooks()
    same = sum(a == b for g, w in zip(got, want) for a, b in zip(g, w)) / max(1, sum(map(len, want)))
    first_ok = all(g[:1] == w[:1] for g, w in zip(got, want)) and all(len(g) == n for g in got)
    # later tokens may part where two logits tie within bf16 rounding; the prompt step's token may not
    check(report, "compiled CLAS generation = hooks (first token of every row)", first_ok,
          f"{same:.1%} of all {n}-token continuations equal", console)
    variants = {"plain HF generate (baseline)": plain, "plain PyTorch hooks, CLAS": hooks}
    variants.update({f"compiled {name} (clas_graph.generate_ids)": compiled(name) for name in plans})
    times, peaks = bench.times(variants)
    rows = ratio_rows(times, peaks, "plain HF generate (baseline)", sizes.xquad_items)
    report["sections"]["generation"] = {"items": sizes.xquad_items, "tokens": sizes.xquad_tokens, "new_tokens": n,
                                        "token_agreement": same, "rows": rows}
    show(console, f"greedy generation: {sizes.xquad_items} prompts x {sizes.xquad_tokens} tokens, {n} new tokens, "
                  f"batch {sizes.batch}", rows)


def ratio_rows(times: dict, peaks: dict, baseline: str, items: int) -> list[dict]:
    base = times[baseline]
    return [{"variant": name, "s": t, "ms_per_item": 1e3 * t / items, "x_baseline_time": t / base,
             "peak_gib": peaks[name]} for name, t in times.items()]


# --- the flagship's time ------------------------------------------------------------------------------------------


def flagship_estimate(report: dict, sizes: Sizes, shape: synthetic.Shape) -> dict:
    """T = depth x (XNLI items x c_xnli + XQuAD items x c_xquad + statistics tokens / throughput), where c_xnli is
    the measured time per item of the 3 conditions with the shared prefix, c_xquad the sum over the 3 conditions of
    the measured generation time per item, and depth = full layers / built layers. Scaling by depth is an upper
    bound: the embedding, the LM head and per-call overheads do not grow with depth."""
    sections = report["sections"]
    depth = shape.full_layers / shape.layers
    c_xnli = next(r["s"] for r in sections["conditions"]["rows"] if "shared prefix" in r["variant"]) \
        / sections["conditions"]["items"]
    c_xquad = sum(r["s"] for r in sections["generation"]["rows"] if r["variant"].startswith("compiled")) \
        / sections["generation"]["items"]
    rate = next(r["tokens_per_s"] for r in sections["statistics"]["rows"] if r["variant"].startswith("statistics"))
    xnli_items = FLAGSHIP["xnli"][0] * FLAGSHIP["xnli"][1]
    xquad_items = FLAGSHIP["xquad"][0] * FLAGSHIP["xquad"][1]
    stats_tokens = FLAGSHIP["stats_texts"] * sizes.stats_tokens
    xnli, xquad, stats = depth * xnli_items * c_xnli, depth * xquad_items * c_xquad, depth * stats_tokens / rate
    formula = (f"flagship = depth x (XNLI 15x5010 items x c_xnli + XQuAD 12x1190 items x c_xquad + statistics "
               f"1200 texts x {sizes.stats_tokens} tokens / rate)\n"
               f"         = {depth:g} x ({xnli_items} x {c_xnli * 1e3:.3f} ms + {xquad_items} x {c_xquad * 1e3:.3f} ms "
               f"+ {stats_tokens} / {rate:,.0f} tokens/s) = {(xnli + xquad + stats) / 3600:.2f} h\n"
               f"  depth = {shape.full_layers}/{shape.layers} layers (an upper bound: embedding, LM head and per-call "
               f"overheads do not grow with depth); c_xnli: base, CLAS and Int-mu in one shared-prefix pass per item "
               f"({sizes.xnli_tokens}-token prompts, batch {sizes.batch}); c_xquad: the three conditions' greedy "
               f"generations per item, one condition at a time ({sizes.xquad_tokens}-token prompts, "
               f"{sizes.new_tokens} new tokens)")
    return {"formula": formula, "depth_scale": depth, "c_xnli_s": c_xnli, "c_xquad_s": c_xquad,
            "stats_tokens_per_s": rate, "xnli_items": xnli_items, "xquad_items": xquad_items,
            "xnli_h": xnli / 3600, "xquad_h": xquad / 3600, "stats_h": stats / 3600,
            "total_h": (xnli + xquad + stats) / 3600}


# --- output -------------------------------------------------------------------------------------------------------


def show(console: Console, title: str, rows: list[dict]) -> None:
    table = Table(title=title, title_justify="left")
    columns = [key for key in rows[0] if key != "variant"]
    table.add_column("variant")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["variant"], *(_fmt(row[c]) for c in columns))
    console.print(table)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def markdown(report: dict) -> str:
    lines = [f"# GPU benchmark: {report['shape']}, {report['layers']} of {report['full_layers']} layers, "
             f"{report['dtype']}", "",
             f"Device: {report['device']}; torch {report['torch']}; weights {_fmt(report['weights_gib'])} GiB; "
             f"whole run {report['total_s']:.0f} s.", ""]
    for name, section in report["sections"].items():
        rows = section["rows"]
        columns = [key for key in rows[0] if key != "variant"]
        lines += [f"## {name}", "", "| variant | " + " | ".join(columns) + " |",
                  "|---|" + "---:|" * len(columns)]
        lines += ["| " + row["variant"] + " | " + " | ".join(_fmt(row[c]) for c in columns) + " |" for row in rows]
        lines.append("")
    lines += ["## checks (before timing)", ""]
    lines += [f"- {'ok' if c['ok'] else 'FAILED'}: {c['name']} ({c['detail']})" for c in report["checks"]]
    lines += ["", "## flagship estimate", "", "```", report["flagship"]["formula"], "```", ""]
    return "\n".join(lines)


def write_report(report: dict, out: Path, console: Console) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = out / f"gpu-{report['layers']}L-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    base.with_suffix(".md").write_text(markdown(report))
    console.print(f"wrote {base}.json and {base}.md")
