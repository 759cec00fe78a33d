"""Traces in this process: per batch, the base trace (shared prefix, base readout) and each condition's trace
from its first changed layer, conditions with the same start stacked."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..compile.plan import Plan
from ..compile.stack import repeat_rows, split_rows
from .executor import Encode, Executor
from .readouts import Batches, Readout
from .schedule import Schedule, Trace, batch_plan, traces_for
from .traces import emit_prefix, emit_readout


class LocalExecutor(Executor):
    def call(self, model, fn, *args, call_kwargs):
        return fn(model, *args, call_kwargs)

    def describe(self) -> dict:
        return {"kind": "local"}

    def readouts(self, model, plans: Mapping[str, Plan], base: Plan, batches: list[list[int]], encode: Encode,
                 row_languages: Sequence[str], readout: Readout, *, batch_size: int) -> dict[str, Batches]:
        schedule = batch_plan(plans, readout, row_languages=row_languages, stack=self.stack(batch_size))
        traces = traces_for(schedule, plans)
        out: Batches = {name: [] for name in plans}
        for index in batches:
            inputs = encode(index)
            extra = readout.extra(model.tokenizer, inputs, index)
            with torch.inference_mode():
                values = self.run_batch(model, schedule, base, traces, inputs, [row_languages[i] for i in index],
                                        extra)
            for name, value in values.items():
                out[name].append((index, value))
        return out

    def run_batch(self, model, schedule: Schedule, base: Plan, traces: list[Trace], inputs: dict,
                  row_languages: list[str], extra: dict) -> dict[str, object]:
        """Every condition's readout on one batch: the base trace first, then each trace from its start."""
        readout = schedule.readout
        per_row = readout.per_row_extras()
        kwargs = {**readout.call_kwargs, "use_cache": False}
        out: dict[str, object] = {}
        prefixes: dict[int, object] = {}
        if schedule.needs_base_trace:
            trace = emit_prefix(base, readout, schedule.prefix_layers, with_readout=schedule.base_readout)
            value, prefixes = self.call(model, trace, inputs, base.row_inputs(row_languages), {}, extra,
                                        call_kwargs=kwargs)
            for name in schedule.as_base:
                out[name] = value
        if "base_logprobs" in prefixes:
            extra = {**extra, "base_logprobs": prefixes["base_logprobs"]}
        for trace in traces:
            here = {**extra, "prefix": prefixes[trace.start - 1]} if trace.start else dict(extra)
            batch = inputs
            count = len(trace.names)
            if count > 1:
                batch = {key: repeat_rows(value, count) for key, value in inputs.items()}
                here = {key: repeat_rows(value, count) if key in per_row else value for key, value in here.items()}
            function = emit_readout(trace.plan, readout, skip_to=trace.start or None)
            value = self.call(model, function, batch, trace.plan.row_inputs(row_languages), trace.plan.tensors(),
                              here, call_kwargs=kwargs)
            out.update(zip(trace.names, split_rows(value, count) if count > 1 else [value]))
        return out
