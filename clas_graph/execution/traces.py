"""Generated trace sources around a plan's intervention statements: a readout trace, the shared-prefix base
trace, and a remote session over several batches (see compile/emit.py for why traces are generated source).

Each reads only torch, the model and plain tensors, so it runs unchanged on a server without this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..compile.emit import INDENT, compile_source, without_comments
from ..compile.plan import Plan
from .readouts import Readout

SESSION_INDENT = INDENT + " " * 8  # def + session + for + trace


def skip_lines(plan: Plan, skip_to: int, prefix: str = 'extra["prefix"]', indent: str = INDENT) -> str:
    """Layers below `skip_to` are not run: each returns `prefix`, the base run's output of layer skip_to - 1
    (identical for every condition, since no op of this plan acts below skip_to)."""
    if any(op.layer < skip_to and op.steps != "generated" for op in plan.ops):
        raise ValueError(f"plan {plan.condition!r} has ops below layer {skip_to}: its prefix is not the base one")
    return "\n".join(indent + line for line in [
        f"# shared prefix: layers 0-{skip_to - 1} ran once in the base trace of this batch; skipped here",
        f"prefix = {prefix}",
        f"for i in range({skip_to}):",
        f"    model.{plan.architecture.layers_path}[i].skip(prefix)",
    ])


def emit_readout_source(plan: Plan, readout: Readout, *, skip_to: int | None = None) -> str:
    """A forward trace of the plan with a readout's tail. With `skip_to`, layers below it are skipped and take
    extra["prefix"] (see `emit_prefix_source`)."""
    body = readout.body(plan, INDENT)
    tail, result = readout.tail()
    if skip_to:
        body = skip_lines(plan, skip_to) + "\n" + body
    shared = f" from layer {skip_to} (shared prefix)" if skip_to else ""
    return f'''# Generated {readout.label} readout for condition {plan.condition!r} on {plan.model_type}{shared}.
import torch


def readout_trace(model, inputs, rows, tensors, extra, trace_kwargs):
    with model.trace(inputs, **trace_kwargs) as tracer:
{body}
{tail}
    return {result}
'''


def emit_readout(plan: Plan, readout: Readout, *, skip_to: int | None = None) -> Callable:
    """readout_trace(model, inputs, rows, tensors, extra, trace_kwargs) for the plan (cached by source)."""
    source = emit_readout_source(plan, readout, skip_to=skip_to)
    return compile_source(source, f"{readout.label}-{plan.condition}")["readout_trace"]


def emit_prefix_source(base: Plan, readout: Readout, save_layers: tuple[int, ...], *, with_readout: bool) -> str:
    """The base trace of a batch shared by several conditions: it saves the outputs of `save_layers` (the
    prefixes other conditions start from) and, `with_readout`, computes the base readout (and keeps the base
    log-probs when the readout compares with base); without it, it stops after the last saved layer."""
    if base.ops:
        raise ValueError("the shared prefix comes from the unmodified model: the base plan must have no ops")
    layers_path = base.architecture.layers_path
    lines = ["# outputs of the layers other conditions start after (kept for this batch only)"]
    lines += [f"prefix_{i} = model.{layers_path}[{i}].output.save()" for i in sorted(save_layers)]
    saved = "{" + ", ".join(f"{i}: prefix_{i}" for i in sorted(save_layers)) + "}"
    if not with_readout:
        body = "\n".join(INDENT + line for line in lines + ["tracer.stop()  # nothing above is needed"])
        tail, result = "", "None"
    else:
        layer = readout.read_layer
        if layer is not None and save_layers and max(save_layers) >= layer:
            raise ValueError(f"{readout.label} readout at layer {layer} cannot share a prefix ending at "
                             f"{max(save_layers)}")
        body = "\n".join(INDENT + line for line in lines) + "\n" + readout.body(base, INDENT)
        tail, result = readout.tail(base_logprobs="lp")
        if readout.compares_with_base:  # the conditions of this batch compare with these
            tail += "\n" + INDENT + "base_logprobs = lp.save()"
            saved = saved[:-1] + (", " if save_layers else "") + '"base_logprobs": base_logprobs}'
    label = readout.label if with_readout else "prefix only"
    return f'''# Generated shared-prefix base trace ({label}) on {base.model_type}.
import torch


def prefix_trace(model, inputs, rows, tensors, extra, trace_kwargs):
    with model.trace(inputs, **trace_kwargs) as tracer:
{body}
{tail}
    return {result}, {saved}
'''


def emit_prefix(base: Plan, readout: Readout, save_layers: tuple[int, ...], *, with_readout: bool) -> Callable:
    """prefix_trace(model, inputs, rows, tensors, extra, trace_kwargs) -> (base readout or None, {layer: output}),
    the dict also holding "base_logprobs" [rows, vocab] when the readout compares with base."""
    source = emit_prefix_source(base, readout, tuple(sorted(save_layers)), with_readout=with_readout)
    return compile_source(source, f"prefix-{readout.label if with_readout else None}")["prefix_trace"]


@dataclass(frozen=True)
class SessionTrace:
    source: str
    run: Callable
    """run(model, batches, all_tensors, trace_kwargs, session_kwargs) -> [per trace: [per readout name: tensor]],
    each tensor the batches' rows concatenated in order. `batches`: [(inputs, extra, [rows per trace])]."""


def _indented(text: str, extra: str) -> str:
    return "\n".join(extra + line if line.strip() else line for line in text.splitlines())


def emit_session_source(base: Plan, traces: list[tuple[str, Plan, int, int]], readout: Readout,
                        prefix_layers: tuple[int, ...], base_readout: bool) -> str:
    """Several batches and conditions in one remote request: per batch, the base trace (saving the shared
    prefixes, and the base readout when needed) and then each condition's trace from its first changed layer,
    as the local executor does. The prefixes stay on the server; only the reduced readouts travel back.

    `traces`: (label, plan, start, count) for each trace after the base trace (start 0: full trace; count > 1:
    a stacked plan over the batch repeated `count` times, compile/stack.py). The base trace comes first when
    `base_readout` or `prefix_layers`; its readout (if any) is output 0."""
    names = readout.outputs
    per_row = readout.per_row_extras()  # repeated with the batch in a stacked trace
    base_tail = _indented(readout.tail(save=False, base_logprobs="lp")[0], " " * 8)
    if readout.compares_with_base:  # the batch's later traces compare with these (they stay on the server)
        base_tail += "\n" + SESSION_INDENT + "base_logprobs = lp"
    blocks: list[str] = []
    outputs: list[int] = []  # trace number of every output list
    number = 0
    if base_readout or prefix_layers:
        lines = [f"prefix_{i} = model.{base.architecture.layers_path}[{i}].output" for i in prefix_layers]
        block = [SESSION_INDENT + line for line in ["# base trace: the shared prefixes stay on the server"] + lines]
        if base_readout:
            block.append(readout.body(base, SESSION_INDENT))
            block.append(base_tail)
            block += [SESSION_INDENT[:-4] + f"out_{number}_{name}.append({name})" for name in names]
            outputs.append(number)
        else:
            block.append(SESSION_INDENT + "tracer.stop()  # nothing above is needed")
        blocks.append(_trace_block(number, "\n".join(block), 1, per_row))
        number += 1
    for label, plan, start, count in traces:
        # a stacked trace repeats the batch's server-side values (prefix, base log-probs) once per condition
        def repeat(value: str, dims: int, count: int = count) -> str:
            return f"{value}.repeat({count}{', 1' * dims})" if count > 1 else value

        tail, _ = readout.tail(save=False, base_logprobs=repeat("base_logprobs", 1))
        parts = [SESSION_INDENT + f"# condition(s) {label!r}" + (f", from layer {start}" if start else "")]
        if start:
            parts.append(skip_lines(plan, start, prefix=repeat(f"prefix_{start - 1}", 2), indent=SESSION_INDENT))
        parts += [readout.body(plan, SESSION_INDENT), _indented(tail, " " * 8)]
        parts += [SESSION_INDENT[:-4] + f"out_{number}_{name}.append({name})" for name in names]
        blocks.append(_trace_block(number, "\n".join(parts), count, per_row))
        outputs.append(number)
        number += 1
    blocks = [without_comments(block) for block in blocks]
    lists = "\n".join(f"{INDENT}out_{k}_{name} = []" for k in outputs for name in names)
    saved = "\n".join(f"{INDENT}result_{k}_{name} = torch.cat(out_{k}_{name}).cpu().save()"
                      for k in outputs for name in names)
    result = "[" + ", ".join("[" + ", ".join(f"result_{k}_{name}" for name in names) + "]" for k in outputs) + "]"
    header = (f"# Generated session: {len(traces)} condition trace(s) per batch, readout {readout.label}, "
              f"on {base.model_type}.")
    return f'''{header}
# Reads only torch, the model and plain tensors: runs unchanged on a remote server.
import torch


def many_session(model, batches, all_tensors, trace_kwargs, session_kwargs):
    # Per batch: trace 0 is the base model (it keeps the outputs of the layers the conditions start after,
    # prefix_N, on the server); every later trace is one condition, skipping the layers below its first
    # edit (they return prefix_N). Readouts are reduced in the traces; only their concatenation is saved.
    # (No comments below: see without_comments in clas_graph/compile/emit.py.)
    with model.session(**session_kwargs):
{lists}
        for batch_inputs, batch_extra, all_rows in batches:
{chr(10).join(blocks)}
{saved}
    return {result}
'''


def _trace_block(number: int, body: str, count: int, per_row: tuple[str, ...]) -> str:
    head = INDENT + " " * 4
    if count == 1:
        inputs = [f"{head}inputs, extra = batch_inputs, batch_extra"]
    else:  # the batch repeated block after block, one block per stacked condition
        inputs = [f"{head}inputs = {{key: value.repeat({count}, 1) for key, value in batch_inputs.items()}}",
                  f"{head}extra = {{key: value.repeat({count}, *([1] * (value.dim() - 1))) if key in {per_row!r} "
                  f"else value for key, value in batch_extra.items()}}"]
    return "\n".join([f"{head}rows, tensors = all_rows[{number}], all_tensors[{number}]", *inputs,
                      f"{head}with model.trace(inputs, **trace_kwargs) as tracer:", body])


def emit_session(base: Plan, traces: list[tuple[str, Plan, int, int]], readout: Readout,
                 prefix_layers: tuple[int, ...], base_readout: bool) -> SessionTrace:
    source = emit_session_source(base, traces, readout, tuple(prefix_layers), base_readout)
    return SessionTrace(source, compile_source(source, f"session-{readout.label}")["many_session"])
