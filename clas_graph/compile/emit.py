"""Plan -> nnsight trace body, as generated Python source.

Why source and not closures: nnsight sends a with-block's *source text* plus
the pickled values it reads to a remote server. Functions from a pip-installed
package are pickled by reference and fail there, so the math is inlined and the
block reads only `torch`, the nnsight model, and plain tensors in dicts. The
source is registered in `linecache` under a unique file name so that nnsight
(and tracebacks) can read it back.
"""

from __future__ import annotations

import hashlib
import linecache
from dataclasses import dataclass
from itertools import groupby
from typing import Callable

import torch

from .plan import (LANGUAGE_INDEX, SITE_ACT, SITE_H, SITE_RESID, AddVector, AddVectorKeepNorm, Plan, ScaleNeurons,
                   SetNeurons)

INDENT = " " * 8  # inside `def` + `with`


@dataclass(frozen=True)
class EmittedTrace:
    """Generated trace functions for one plan, and the source they came from."""

    source: str
    filename: str
    forward: Callable
    """forward(model, inputs, rows, tensors, trace_kwargs) -> last-position logits [batch, vocab]."""
    generate: Callable
    """generate(model, inputs, rows, tensors, generate_kwargs) -> token ids [batch, prompt + new]."""


def _op_lines(op, x: str) -> list[str]:
    """Statements applying one op to the site value held in variable `x`."""

    def tensor(part: str, cast: bool = True) -> str:
        to = f"{x}.device, {x}.dtype" if cast else f"{x}.device"
        return f"tensors[{op.tensor_name(part)!r}].to({to})"

    def per_row(expr: str) -> str:  # a [languages, dim] table -> each row's own language, broadcast over tokens
        return f"{expr}[rows[{LANGUAGE_INDEX!r}].to({x}.device)][:, None, :]"

    lines = [f"# {op.kind} '{op.intervention}' on {op.rows.describe()}: {_formula(op)}",
             f"rows_here = rows[{op.rows.key!r}].to({x}.device)[:, None, None]"]
    if isinstance(op, ScaleNeurons):
        lines.append(f"{x} = torch.where(rows_here, {x} * {tensor('scale')}, {x})")
    elif isinstance(op, SetNeurons):
        mask, values = tensor("mask", cast=False), tensor("values")
        if op.per_language:
            mask, values = per_row(mask), per_row(values)
        lines.append(f"{x} = torch.where(rows_here & {mask}, {values}, {x})")
    elif isinstance(op, AddVectorKeepNorm):  # before AddVector: it is a subclass
        vector = per_row(tensor("vector")) if op.per_language else tensor("vector")
        lines += [f"steered = {x} + {vector}",
                  f"steered = steered * ({x}.norm(dim=-1, keepdim=True) / steered.norm(dim=-1, keepdim=True).clamp(min=1e-12))",
                  f"{x} = torch.where(rows_here, steered, {x})"]
    elif isinstance(op, AddVector):
        vector = per_row(tensor("vector")) if op.per_language else tensor("vector")
        lines.append(f"{x} = torch.where(rows_here, {x} + {vector}, {x})")
    else:  # pragma: no cover - every Op subclass is handled above
        raise NotImplementedError(type(op).__name__)
    return lines


def _formula(op) -> str:
    if op.formula is not None:  # the kind's own terms (CLAS's blend of boosted and damped neurons)
        return op.formula
    return {ScaleNeurons: "x * scale", SetNeurons: "x[n] = value[n] where mask[n]",
            AddVector: "x + coefficient * v", AddVectorKeepNorm: "(x + v) * |x| / |x + v|"}[type(op)]


def _guarded(op, lines: list[str], in_generation: bool) -> list[str]:
    """Restrict an op to the prompt forward (step 0) or to generated tokens (steps > 0)."""
    if not in_generation or op.steps == "all":
        return lines
    condition = "step == 0" if op.steps == "prompt" else "step > 0"
    return [f"if {condition}:  # steps: {op.steps}"] + ["    " + line for line in lines]


def emit_body(plan: Plan, indent: str = INDENT, *, in_generation: bool = False, read_layer: int | None = None) -> str:
    """The intervention statements in execution order: per layer, act_fn output, then h, then the residual.

    With `read_layer`, ops after that layer are left out and the variable `r` ends up holding that
    layer's output (after its own residual ops), for readouts of hidden states.
    """
    arch = plan.architecture
    ops = [op for op in plan.ops if in_generation or op.steps != "generated"]  # a plain forward is a prompt step
    if read_layer is not None:
        ops = [op for op in ops if op.layer <= read_layer]
    lines: list[str] = []
    for layer, group in groupby(ops, key=lambda op: op.layer):
        by_site = {site: [op for op in group_ops if op.site == site]
                   for group_ops in [list(group)] for site in (SITE_ACT, SITE_H, SITE_RESID)}
        layer_path = f"model.{arch.layer_path(layer)}"
        if by_site[SITE_ACT] or by_site[SITE_H]:
            lines += [f"# layer {layer}: a = act_fn(gate_proj(x)); h = a * up_proj(x) is the input of down_proj",
                      f"mlp = {layer_path}.{arch.mlp}",
                      f"a = mlp.{arch.act_fn}.output"]
            for op in by_site[SITE_ACT]:
                lines += _guarded(op, _op_lines(op, "a"), in_generation)
            if by_site[SITE_ACT]:
                lines.append(f"mlp.{arch.act_fn}.output = a")
            if by_site[SITE_H]:
                lines.append(f"h = a * mlp.{arch.up_proj}.output")
                for op in by_site[SITE_H]:
                    lines += _guarded(op, _op_lines(op, "h"), in_generation)
                lines.append(f"mlp.{arch.down_proj}.input = h")
        if by_site[SITE_RESID]:
            lines += [f"# layer {layer}: the residual stream after the layer", f"r = {layer_path}.output"]
            for op in by_site[SITE_RESID]:
                lines += _guarded(op, _op_lines(op, "r"), in_generation)
            lines.append(f"{layer_path}.output = r")
    if read_layer is not None and not any(op.layer == read_layer and op.site == SITE_RESID for op in ops):
        lines += [f"# layer {read_layer}: read its output", f"r = model.{arch.layer_path(read_layer)}.output"]
    if not lines:
        lines = ["pass  # no intervention"]
    return "\n".join(indent + line for line in lines)


READOUTS = ("last_logits", "token_nll", "pooled", "next_token")


READOUT_NAMES = {"last_logits": ("logits",), "token_nll": ("nll_sum", "counts"), "pooled": ("pooled",),
                 "next_token": ("kl", "top1", "base_top1", "gold_logprob")}
"""The variables each readout leaves (per row, batch first), in the order it returns them."""

BASE_LOGPROBS_FROM_EXTRA = 'extra["base_logprobs"].to(lp.device)'
"""Where a condition's next_token trace finds the base model's log-probs of its batch (run_batch passes them)."""


def _readout_tail(readout: str, save: bool = True, base_logprobs: str = BASE_LOGPROBS_FROM_EXTRA) -> tuple[str, str]:
    """Statements after the intervention body that compute and save a readout, and what to return.
    `save=False` inside a session, where the session saves what travels back. `base_logprobs` (next_token only):
    the expression for the base model's next-token log-probs of these rows ("lp" in the base trace itself)."""
    tail, result = _readout_source(readout, base_logprobs)
    return (tail if save else tail.replace(".save()", "")), result


def _readout_source(readout: str, base_logprobs: str) -> tuple[str, str]:
    if readout == "last_logits":
        return """\
        # next-token logits at the last position (left padding: the last real token); with
        # extra["token_ids"], only those columns are kept (e.g. XNLI's label tokens), so little travels back
        logits = model.output.logits[:, -1, :]
        if "token_ids" in extra:
            logits = logits[:, extra["token_ids"].to(logits.device)]
        logits = logits.save()""", "logits"
    if readout == "next_token":
        return f"""\
        # the next-token distribution at the last position, reduced here to four numbers per row: KL from the
        # base model's distribution, top-1 token (this one's and base's) and the log-prob of extra["gold"] (-1: none)
        lp = torch.log_softmax(model.output.logits[:, -1, :].float(), -1)
        base_lp = {base_logprobs}
        kl = (base_lp.exp() * (base_lp - lp)).sum(-1).cpu().save()
        top1 = lp.argmax(-1).cpu().save()
        base_top1 = base_lp.argmax(-1).cpu().save()
        gold = extra["gold"].to(lp.device)
        gold_logprob = lp.gather(1, gold.clamp(min=0)[:, None])[:, 0].cpu().save()""", \
            "(kl, top1, base_top1, gold_logprob)"
    if readout == "token_nll":
        return """\
        # next-token negative log-likelihood over real (non-pad) target tokens, summed per row, as
        # logsumexp - gathered logit: measured on Gemma 3's 262k vocabulary about 4x faster than cross_entropy
        # over the transposed logits and closer to a float64 reference (2e-6 vs 9e-4 nats max)
        logits = model.output.logits[:, :-1].float()
        target = inputs["input_ids"][:, 1:].to(logits.device)
        mask = inputs["attention_mask"].to(logits.device)
        valid = (mask[:, 1:] * mask[:, :-1]).float()
        nll = torch.logsumexp(logits, -1) - logits.gather(-1, target[..., None])[..., 0]
        nll_sum = (nll * valid).sum(-1).cpu().save()
        counts = valid.sum(-1).cpu().save()""", "(nll_sum, counts)"
    if readout == "pooled":
        return """\
        # mean over the tokens marked in pool_mask (non-pad, BOS left out)
        weight = extra["pool_mask"].to(r.device, torch.float32)[:, :, None]
        pooled = ((r.float() * weight).sum(1) / weight.sum(1).clamp(min=1)).cpu().save()
        tracer.stop()  # the layers above `layer` and the LM head are not needed""", "pooled"
    raise ValueError(f"unknown readout {readout!r}; expected one of {READOUTS}")


def _skip_lines(plan: Plan, skip_to: int, prefix: str = 'extra["prefix"]', indent: str = INDENT) -> str:
    """Layers below `skip_to` are not run: each returns extra["prefix"], the base run's output of layer
    skip_to - 1 (identical for every condition, since no op of this plan acts below skip_to)."""
    if any(op.layer < skip_to and op.steps != "generated" for op in plan.ops):
        raise ValueError(f"plan {plan.condition!r} has ops below layer {skip_to}: its prefix is not the base one")
    return "\n".join(indent + line for line in [
        f"# shared prefix: layers 0-{skip_to - 1} ran once in the base trace of this batch; skipped here",
        f"prefix = {prefix}",
        f"for i in range({skip_to}):",
        f"    model.{plan.architecture.layers_path}[i].skip(prefix)",
    ])


def emit_readout_source(plan: Plan, readout: str, layer: int | None = None, *, skip_to: int | None = None) -> str:
    """A forward trace with a readout: `last_logits` (last position; optionally selected token ids),
    `token_nll` (per-row summed next-token NLL and token counts), `pooled` (masked mean of layer `layer`'s output).

    With `skip_to`, layers below it are skipped and take extra["prefix"] (see `emit_prefix_source`)."""
    body = emit_body(plan, read_layer=layer if readout == "pooled" else None)
    tail, result = _readout_tail(readout)
    if skip_to:
        body = _skip_lines(plan, skip_to) + "\n" + body
    shared = f" from layer {skip_to} (shared prefix)" if skip_to else ""
    return f'''# Generated {readout} readout for condition {plan.condition!r} on {plan.model_type}{shared}.
import torch


def readout_trace(model, inputs, rows, tensors, extra, trace_kwargs):
    with model.trace(inputs, **trace_kwargs) as tracer:
{body}
{tail}
    return {result}
'''


def emit_readout(plan: Plan, readout: str, layer: int | None = None, *, skip_to: int | None = None) -> Callable:
    """readout_trace(model, inputs, rows, tensors, extra, trace_kwargs) for the plan (cached by source)."""
    source = emit_readout_source(plan, readout, layer, skip_to=skip_to)
    return compile_source(source, f"{readout}-{plan.condition}")["readout_trace"]


def emit_prefix_source(base: Plan, readout: str | None, layer: int | None, save_layers: tuple[int, ...]) -> str:
    """The base trace of a batch shared by several conditions: it saves the outputs of `save_layers` (the
    prefixes other conditions start from) and, unless `readout` is None, computes the base readout;
    without a readout it stops after the last saved layer."""
    if base.ops:
        raise ValueError("the shared prefix comes from the unmodified model: the base plan must have no ops")
    layers_path = base.architecture.layers_path
    lines = ["# outputs of the layers other conditions start after (kept for this batch only)"]
    lines += [f"prefix_{i} = model.{layers_path}[{i}].output.save()" for i in sorted(save_layers)]
    saved = "{" + ", ".join(f"{i}: prefix_{i}" for i in sorted(save_layers)) + "}"
    if readout is None:
        body = "\n".join(INDENT + line for line in lines + ["tracer.stop()  # nothing above is needed"])
        tail, result = "", "None"
    else:
        if readout == "pooled" and save_layers and max(save_layers) >= layer:
            raise ValueError(f"pooled readout at layer {layer} cannot share a prefix ending at {max(save_layers)}")
        body = "\n".join(INDENT + line for line in lines) + "\n" + emit_body(
            base, read_layer=layer if readout == "pooled" else None)
        tail, result = _readout_tail(readout, base_logprobs="lp")
        if readout == "next_token":  # the conditions of this batch compare with these
            tail += "\n" + INDENT + "base_logprobs = lp.save()"
            saved = saved[:-1] + (", " if save_layers else "") + '"base_logprobs": base_logprobs}'
    return f'''# Generated shared-prefix base trace ({readout or "prefix only"}) on {base.model_type}.
import torch


def prefix_trace(model, inputs, rows, tensors, extra, trace_kwargs):
    with model.trace(inputs, **trace_kwargs) as tracer:
{body}
{tail}
    return {result}, {saved}
'''


def emit_prefix(base: Plan, readout: str | None, layer: int | None, save_layers: tuple[int, ...]) -> Callable:
    """prefix_trace(model, inputs, rows, tensors, extra, trace_kwargs) -> (base readout or None, {layer: output}),
    the dict also holding "base_logprobs" [rows, vocab] for the next_token readout (the conditions compare with it)."""
    source = emit_prefix_source(base, readout, layer, tuple(sorted(save_layers)))
    return compile_source(source, f"prefix-{readout}")["prefix_trace"]


def emit_source(plan: Plan) -> str:
    body = emit_body(plan)
    if plan.ops:
        loop_body = emit_body(plan, indent=INDENT + " " * 8, in_generation=True)
        embed = f"model.{plan.architecture.embed_path}.output"
        per_step = f"""\
        with tracer.invoke(inputs):
            # every decoding step, prompt included
            for step in tracer.iter[:]:
                # wait for this step's forward even when no op applies to it (a loop body that touches
                # no module would spin without the model advancing)
                {embed}
{loop_body}
        with tracer.invoke():
            token_ids = tracer.result.save()"""
    else:
        per_step = """\
        with tracer.invoke(inputs):
            pass  # no intervention
        with tracer.invoke():
            token_ids = tracer.result.save()"""
    return f'''# Generated trace for condition {plan.condition!r} on {plan.model_type}.
# Reads only torch, the model and the plan's tensors: runs unchanged on a remote server
# (nothing here may import or name the package that generated it).
import torch


def forward_trace(model, inputs, rows, tensors, trace_kwargs):
    with model.trace(inputs, **trace_kwargs):
{body}
        logits = model.output.logits[:, -1, :].save()
    return logits


def generate_trace(model, inputs, rows, tensors, generate_kwargs):
    with model.generate(**generate_kwargs) as tracer:
{per_step}
    return token_ids
'''


_NAMESPACES: dict[str, dict] = {}


def compile_source(source: str, label: str) -> dict:
    """Execute generated source once (cached by content) and return its namespace (`__file__`: the name it is
    registered under in linecache). Every generated trace, session and statistics pass is compiled here."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    if digest not in _NAMESPACES:
        filename = f"<generated-{label}-{digest}>"
        # nnsight reads the with-block back through linecache, as inspect does for files.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace: dict = {"torch": torch, "__name__": f"generated_{digest}", "__file__": filename}
        exec(compile(source, filename, "exec"), namespace)  # safe: our own generated source from a validated plan
        _NAMESPACES[digest] = namespace
    return _NAMESPACES[digest]


def emit(plan: Plan) -> EmittedTrace:
    """Compile the plan's generated source into callable trace functions (cached by source)."""
    source = emit_source(plan)
    namespace = compile_source(source, f"trace-{plan.condition}")
    return EmittedTrace(source, namespace["__file__"], namespace["forward_trace"], namespace["generate_trace"])
