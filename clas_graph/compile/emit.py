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

from .plan import SITE_H, Plan

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


def emit_body(plan: Plan, indent: str = INDENT) -> str:
    """The intervention statements, in execution order (one block per layer and site)."""
    lines: list[str] = []
    for (layer, site), group in groupby(plan.ops, key=lambda op: (op.layer, op.site)):
        group = list(group)
        if site != SITE_H:
            raise NotImplementedError(f"site {site} has no emitter")
        mlp = f"model.{plan.architecture.mlp_path(layer)}"
        arch = plan.architecture
        lines += [
            f"# layer {layer}: h = act_fn(gate_proj(x)) * up_proj(x), the input of down_proj",
            f"mlp = {mlp}",
            f"h = mlp.{arch.act_fn}.output * mlp.{arch.up_proj}.output",
        ]
        for op in group:
            lines += [
                f"# {op.kind} '{op.intervention}' on {op.rows.describe()}: "
                "(1-alpha)*h + alpha*h*(1+beta*M_shared)*(1-gamma*M_spec) == h * scale",
                f"rows_here = rows[{op.rows.key!r}].to(h.device)[:, None, None]",
                f"h = torch.where(rows_here, h * tensors[{op.tensor_name!r}].to(h.device, h.dtype), h)",
            ]
        lines.append(f"mlp.{arch.down_proj}.input = h")
    if not lines:
        lines = ["pass  # base condition: no intervention"]
    return "\n".join(indent + line for line in lines)


def emit_source(plan: Plan) -> str:
    body = emit_body(plan)
    loop_body = emit_body(plan, indent=INDENT + " " * 8)
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
        with tracer.invoke(inputs):
            # every decoding step, prompt included
            for step in tracer.iter[:]:
{loop_body}
        with tracer.invoke():
            token_ids = tracer.result.save()
    return token_ids
'''


_CACHE: dict[str, EmittedTrace] = {}


def emit(plan: Plan) -> EmittedTrace:
    """Compile the plan's generated source into callable trace functions (cached by source)."""
    source = emit_source(plan)
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    if digest in _CACHE:
        return _CACHE[digest]
    filename = f"<generated-trace-{plan.condition}-{digest}>"
    # nnsight reads the with-block back through linecache, as inspect does for files.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {"torch": torch, "__name__": f"generated_trace_{digest}"}
    code = compile(source, filename, "exec")
    exec(code, namespace)  # safe: our own generated source, built from a validated plan (no user code)
    emitted = EmittedTrace(source, filename, namespace["forward_trace"], namespace["generate_trace"])
    _CACHE[digest] = emitted
    return emitted
