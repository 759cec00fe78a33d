"""Shared prefix: what each batch runs when several conditions read the same readout on the same texts.

Every condition equals the unmodified model below its lowest intervened layer `s`. Per batch, one base
trace runs the model and saves the output of layer s-1 for each distinct `s` among the conditions (and
gives the base readout, when a condition needs it); each condition then runs a trace that *skips* layers
0..s-1 (nnsight 0.8.1 `layers[i].skip(value)`: the layer returns `value` without running) and applies its
ops from layer s on.

Why skip and not calling the upper layers by hand: the model's own forward still runs, so the embeddings,
position embeddings (RoPE, Gemma 3's local and global ones), causal/padding masks and Gemma's per-layer
sliding windows are built exactly as in an unshared run; only the skipped layers' work disappears. The
result is bit-identical to the full trace (tested on tiny Llama, Qwen2 and Gemma 3 with left-padded,
mixed-language batches). Skipped layers would leave no KV-cache entries, so shared traces run with
`use_cache=False` (a single forward does not reuse its cache anyway). Generation is not shared: every
decoding step needs the skipped layers' KV cache of the condition's own earlier tokens.

When a readout compares every condition with base (next_token), the base trace always runs and its
log-probs go to the conditions' traces.

Conditions with the same start run *stacked* (compile/stack.py): one trace over the batch repeated once
per condition, each condition's ops on its own block of rows, up to `stack` conditions per trace, for the
readouts that allow it (`Readout.stackable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from ..compile.plan import Plan
from ..compile.stack import can_stack, stack_plans
from .readouts import Readout


def first_changed_layer(plan: Plan | None, read_layer: int | None = None,
                        row_languages: Sequence[str] | None = None) -> int | None:
    """The lowest layer where `plan` differs from the unmodified model in a forward pass (ops on generated
    tokens only do not act there); with `read_layer`, ops above it do not count; with `row_languages`, ops
    whose rows are none of these languages do not count (e.g. CLAS on English text: `torch.where` keeps
    every value, so the result is base's, bit for bit). None: no difference."""
    if plan is None:
        return None
    layers = [op.layer for op in plan.ops if op.steps != "generated"
              and (read_layer is None or op.layer <= read_layer)
              and (row_languages is None or any(op.rows.applies(lang) for lang in row_languages))]
    return min(layers) if layers else None


@dataclass(frozen=True)
class Schedule:
    """What each batch runs for a set of conditions and one readout."""

    readout: Readout
    starts: dict[str, int | None]
    """Per condition, the first layer its own trace must run (None: its result is the base readout)."""
    stack: int = 1
    """At most this many conditions with the same start run as one stacked trace."""

    @property
    def traces(self) -> list[tuple[tuple[str, ...], int]]:
        """(conditions, start) of every trace after the base trace: conditions with one start, `stack` at most."""
        size = self.stack if self.readout.stackable else 1
        by_start: dict[int, list[str]] = {}
        for name, start in self.starts.items():
            if start is not None:
                by_start.setdefault(start, []).append(name)
        return [(tuple(names[i:i + size]), start) for start, names in by_start.items()
                for i in range(0, len(names), size)]

    @property
    def as_base(self) -> list[str]:
        return [name for name, start in self.starts.items() if start is None]

    @property
    def prefix_layers(self) -> tuple[int, ...]:
        """Layers whose output the base trace saves: s - 1 for every shared start s > 0."""
        return tuple(sorted({start - 1 for start in self.starts.values() if start}))

    @property
    def base_readout(self) -> bool:
        """Whether the base trace computes the readout: some condition's result is base's, or every condition
        compares with base."""
        return bool(self.as_base) or self.readout.compares_with_base

    @property
    def needs_base_trace(self) -> bool:
        return self.base_readout or bool(self.prefix_layers)


def batch_plan(plans: Mapping[str, Plan | None], readout: Readout, *, share: bool = True,
               row_languages: Sequence[str] | None = None, stack: int = 1) -> Schedule:
    """The schedule for `plans` on texts in `row_languages` (None: any). Without `share` every condition runs
    its full trace (conditions equal to the base model still reuse the base readout). `stack`: conditions per
    stacked trace (1: one trace each)."""
    languages = None if row_languages is None else sorted(set(row_languages), key=str)  # labels may be SourceRows
    starts = {name: first_changed_layer(plan, readout.read_layer, languages) for name, plan in plans.items()}
    own = [start for start in starts.values() if start is not None]
    # a prefix pays off when the base trace runs anyway or at least two conditions start above layer 0
    base_runs = len(own) < len(starts) or readout.compares_with_base
    if not share or not readout.shares_prefix or not (base_runs or sum(1 for start in own if start) >= 2):
        starts = {name: (None if start is None else 0) for name, start in starts.items()}
    return Schedule(readout, starts, max(1, stack))


@dataclass(frozen=True)
class Trace:
    """One trace after the base trace: a condition's plan, or several conditions' plans stacked."""

    names: tuple[str, ...]
    start: int
    plan: Plan


def traces_for(schedule: Schedule, plans: Mapping[str, Plan | None]) -> list[Trace]:
    """The traces each batch runs after the base trace (stacked plans are built once, here)."""
    out: list[Trace] = []
    for names, start in schedule.traces:
        group = [(name, plans[name]) for name in names]
        if len(group) > 1 and can_stack([plan for _, plan in group]):
            out.append(Trace(names, start, stack_plans(group)))
        else:
            out += [Trace((name,), start, plan) for name, plan in group]
    return out
