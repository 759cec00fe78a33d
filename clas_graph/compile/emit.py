"""Plan -> nnsight trace source: the intervention statements (`emit_body`) and the plain forward and generate
traces; readout, shared-prefix and session traces build on them in clas_graph/execution/traces.py.

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
import re
from dataclasses import dataclass
from itertools import groupby
from typing import Callable

import torch

from .plan import (
    LANGUAGE_INDEX,
    SITE_ACT,
    SITE_H,
    SITE_RESID,
    AddVector,
    AddVectorKeepNorm,
    PatchValues,
    Plan,
    ScaleNeurons,
    SetNeurons,
    source_index_key,
)

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
    if isinstance(op, PatchValues):
        return lines + _patch_lines(op, x)
    if op.positions.mode != "all":
        lines += [f"# at positions {op.positions.label} of each text (padding never counts)",
                  *op.positions.mask_lines(x), "rows_here = rows_here & pos_here[:, :, None]"]
    return lines + op.statements(x, tensor, per_row)


def _patch_lines(op: PatchValues, x: str) -> list[str]:
    """Position t of each patched row takes (1-c)*x[t] + c*(mean over the row's source rows of x[s]), s the
    matching source position; source rows are rows of this batch that no op of the condition touches."""
    c = float(op.coefficient)
    mix = "source_values" if c == 1.0 else f"{1.0 - c!r} * current + {c!r} * source_values"
    return [
        f"# values from {op.source.describe()}, positions {op.positions.label} <- {op.source_positions.label}",
        f"source_rows = rows[{source_index_key(op.source.key)!r}].to({x}.device)",
        *[line for line in op.positions.mask_lines(x)[:3] if not line.startswith("real")],
        f"target_pos = {op.positions.index_expr()}",
        f"source_pos = {op.source_positions.index_expr()}",
        "taken = source_rows.clamp(min=0)",
        f"source_values = {x}[taken[:, :, None], source_pos[taken]].mean(1)",
        f"gather_at = target_pos[:, :, None].expand(-1, -1, {x}.shape[-1])",
        f"current = {x}.gather(1, gather_at)",
        f"patched = torch.where(rows_here & (source_rows[:, 0] >= 0)[:, None, None], {mix}, current)",
        f"{x} = {x}.scatter(1, gather_at, patched.to({x}.dtype))",
    ]


def _formula(op) -> str:
    if op.formula is not None:  # the kind's own terms (CLAS's blend of boosted and damped neurons)
        return op.formula
    return {ScaleNeurons: "x * scale", SetNeurons: "x[n] = value[n] where mask[n]",
            AddVector: "x + coefficient * v", AddVectorKeepNorm: "(x + v) * |x| / |x + v|",
            PatchValues: "x[t] = (1-c)*x[t] + c*mean_k source_k[s]"}[type(op)]


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


def without_comments(source: str) -> str:
    """nnsight 0.8.1 re-reads a session's nested traces by line number after its remote serialization, which
    drops comments: a comment line inside the session shifts every later trace ("no `with` statement at
    line N", or "Cannot access ... outside of interleaving"). Session bodies therefore have none."""
    lines = []
    for line in source.split("\n"):
        if line.strip().startswith("#"):
            continue
        lines.append(re.sub(r"\s+#\s.*$", "", line) if "'" not in line.split("#")[-1] else line)
    return "\n".join(lines)


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
