"""Several batches and conditions in one remote request, as generated source (see emit.py for why source).

One `model.session` runs, for every batch of the group, the base trace (saving the shared prefixes, and
the base readout when needed) and then each condition's trace from its first changed layer, exactly as
`clas_graph.shared` does locally. The prefixes stay on the server; only the readouts travel back, each
already reduced there (XNLI: the label tokens' logits; lm_loss: per-row sums; retrieval: pooled vectors).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from .emit import INDENT, READOUT_NAMES, _readout_tail, _skip_lines, compile_source, emit_body
from .plan import Plan
from .stack import ROW_EXTRAS

SESSION_INDENT = INDENT + " " * 8  # def + session + for + trace


@dataclass(frozen=True)
class SessionTrace:
    source: str
    run: Callable
    """run(model, batches, all_tensors, trace_kwargs, session_kwargs) -> [per trace: [per readout name: tensor]],
    each tensor the batches' rows concatenated in order. `batches`: [(inputs, extra, [rows per trace])]."""


def _indented(text: str, extra: str) -> str:
    return "\n".join(extra + line if line.strip() else line for line in text.splitlines())


def emit_session_source(base: Plan, traces: list[tuple[str, Plan, int, int]], readout: str, layer: int | None,
                        prefix_layers: tuple[int, ...], base_readout: bool) -> str:
    """`traces`: (label, plan, start, count) for each trace after the base trace (start 0: full trace; count > 1:
    a stacked plan over the batch repeated `count` times, compile/stack.py). The base trace comes first when
    `base_readout` or `prefix_layers`; its readout (if any) is output 0."""
    read_layer = layer if readout == "pooled" else None
    names = READOUT_NAMES[readout]
    base_tail = _indented(_readout_tail(readout, save=False, base_logprobs="lp")[0], " " * 8)
    if readout == "next_token":  # the batch's later traces compare with these (they stay on the server)
        base_tail += "\n" + SESSION_INDENT + "base_logprobs = lp"
    blocks: list[str] = []
    outputs: list[int] = []  # trace number of every output list
    number = 0
    if base_readout or prefix_layers:
        lines = [f"prefix_{i} = model.{base.architecture.layers_path}[{i}].output" for i in prefix_layers]
        block = [SESSION_INDENT + line for line in ["# base trace: the shared prefixes stay on the server"] + lines]
        if base_readout:
            block.append(emit_body(base, SESSION_INDENT, read_layer=read_layer))
            block.append(base_tail)
            block += [SESSION_INDENT[:-4] + f"out_{number}_{name}.append({name})" for name in names]
            outputs.append(number)
        else:
            block.append(SESSION_INDENT + "tracer.stop()  # nothing above is needed")
        blocks.append(_trace_block(number, "\n".join(block), 1))
        number += 1
    for label, plan, start, count in traces:
        # a stacked trace repeats the batch's server-side values (prefix, base log-probs) once per condition
        repeat = (lambda value, dims: f"{value}.repeat({count}{', 1' * dims})") if count > 1 else \
            (lambda value, dims: value)
        tail, _ = _readout_tail(readout, save=False, base_logprobs=repeat("base_logprobs", 1))
        parts = [SESSION_INDENT + f"# condition(s) {label!r}" + (f", from layer {start}" if start else "")]
        if start:
            parts.append(_skip_lines(plan, start, prefix=repeat(f"prefix_{start - 1}", 2), indent=SESSION_INDENT))
        parts += [emit_body(plan, SESSION_INDENT, read_layer=read_layer), _indented(tail, " " * 8)]
        parts += [SESSION_INDENT[:-4] + f"out_{number}_{name}.append({name})" for name in names]
        blocks.append(_trace_block(number, "\n".join(parts), count))
        outputs.append(number)
        number += 1
    blocks = [without_comments(block) for block in blocks]
    lists = "\n".join(f"{INDENT}out_{k}_{name} = []" for k in outputs for name in names)
    saved = "\n".join(f"{INDENT}result_{k}_{name} = torch.cat(out_{k}_{name}).cpu().save()"
                      for k in outputs for name in names)
    result = "[" + ", ".join("[" + ", ".join(f"result_{k}_{name}" for name in names) + "]" for k in outputs) + "]"
    return f'''# Generated session: {len(traces)} condition trace(s) per batch, readout {readout}, on {base.model_type}.
# Reads only torch, the model and plain tensors: runs unchanged on a remote server.
import torch


def many_session(model, batches, all_tensors, trace_kwargs, session_kwargs):
    # Per batch: trace 0 is the base model (it keeps the outputs of the layers the conditions start after,
    # prefix_N, on the server); every later trace is one condition, skipping the layers below its first
    # edit (they return prefix_N). Readouts are reduced in the traces; only their concatenation is saved.
    # (No comments below: see without_comments in emit_session.py.)
    with model.session(**session_kwargs):
{lists}
        for batch_inputs, batch_extra, all_rows in batches:
{chr(10).join(blocks)}
{saved}
    return {result}
'''


def _trace_block(number: int, body: str, count: int) -> str:
    head = INDENT + " " * 4
    if count == 1:
        inputs = [f"{head}inputs, extra = batch_inputs, batch_extra"]
    else:  # the batch repeated block after block, one block per stacked condition
        inputs = [f"{head}inputs = {{key: value.repeat({count}, 1) for key, value in batch_inputs.items()}}",
                  f"{head}extra = {{key: value.repeat({count}, *([1] * (value.dim() - 1))) if key in {ROW_EXTRAS!r} "
                  f"else value for key, value in batch_extra.items()}}"]
    return "\n".join([f"{head}rows, tensors = all_rows[{number}], all_tensors[{number}]", *inputs,
                      f"{head}with model.trace(inputs, **trace_kwargs) as tracer:", body])


def without_comments(source: str) -> str:
    """nnsight 0.8.1 re-reads a session's nested traces by line number after its remote serialization, which
    drops comments: a comment line inside the session shifts every later trace ("no `with` statement at
    line N", or "Cannot access ... outside of interleaving"). The session body therefore has none."""
    lines = []
    for line in source.split("\n"):
        if line.strip().startswith("#"):
            continue
        lines.append(re.sub(r"\s+#\s.*$", "", line) if "'" not in line.split("#")[-1] else line)
    return "\n".join(lines)


def emit_session(base: Plan, traces: list[tuple[str, Plan, int, int]], readout: str, layer: int | None,
                 prefix_layers: tuple[int, ...], base_readout: bool) -> SessionTrace:
    source = emit_session_source(base, traces, readout, layer, tuple(prefix_layers), base_readout)
    return SessionTrace(source, compile_source(source, f"session-{readout}")["many_session"])
