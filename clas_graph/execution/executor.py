"""The executor: where traces run, behind one interface for every runner.

    with clas_graph.execution.context.use(NdifExecutor(host=True)):
        clas_graph.forward(model, plan, texts, languages)   # same call, now remote

`LocalExecutor` runs traces in this process; `NdifExecutor` sends them to NDIF (nnsight `remote=`) with
retries, several batches per request. Callers name a readout and the conditions' plans; how batches share a
prefix, stack, or travel in groups is the executor's business. Traces are generated source reading only torch
and plain tensors (compile/emit.py), so the same plan runs unchanged on a server without this package.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from ..compile.plan import Plan
from .readouts import Batches, Readout

Encode = Callable[[list[int]], dict]
"""Row indices of the caller's texts -> the batch's model inputs (input_ids, attention_mask)."""


class Executor:
    """Runs generated trace functions and readouts over batches. Subclasses: `LocalExecutor`, `NdifExecutor`."""

    weights_on_server: bool = False
    """Whether the model's weights live only on the server (this process loads an empty model)."""

    def __init__(self, *, stack_rows: int | None = None):
        self.stack_rows = stack_rows
        """Rows per stacked trace when several conditions share a batch's prefix; None: four batches' worth.
        At most the batch size: no stacking."""
        self.job_ids: list[str] = []
        """Remote job ids, in order (they go into the run manifest)."""

    def stack(self, batch_size: int) -> int:
        """Conditions per stacked trace for batches of `batch_size` rows."""
        return (self.stack_rows or 4 * batch_size) // batch_size

    def call(self, model, fn: Callable, *args, call_kwargs: dict):
        """Call a generated trace function `fn(model, *args, call_kwargs)` where this executor runs traces."""
        raise NotImplementedError

    def request_groups(self, batches: list[list[int]], row_bytes: int = 0) -> list[list[list[int]]]:
        """Batches grouped into requests (one group per call of a batch-or-session trace): each batch alone
        locally; remotely several, bounded by the result size `row_bytes` per row."""
        return [[index] for index in batches]

    def call_grouped(self, model, single: Callable, session: Callable, payloads: list[tuple], *, shared: tuple = (),
                     call_kwargs: dict):
        """One request for a group of batch payloads: `single(model, *payload, *shared, call_kwargs)` for one
        batch, else `session(model, payloads, *shared, session_kwargs)`, one `model.session` that keeps running
        sums on the server and returns only them."""
        if len(payloads) == 1:
            return self.call(model, single, *payloads[0], *shared, call_kwargs=call_kwargs)
        return self.call(model, session, payloads, *shared, call_kwargs={})

    def readouts(self, model, plans: Mapping[str, Plan], base: Plan, batches: list[list[int]], encode: Encode,
                 row_languages: Sequence[str], readout: Readout, *, batch_size: int) -> dict[str, Batches]:
        """Per condition, `readout` of every batch as (row indices, value); every batch visits every condition,
        sharing what the conditions have in common (clas_graph.execution.schedule). `encode` builds a batch's
        inputs; `batch_size` is the rows per batch the caller asked for (it sizes stacked traces)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """For manifests: what ran where (never the API key)."""
        raise NotImplementedError

    def preflight(self) -> None:
        """Before any work: what the executor needs is there (one clear sentence otherwise)."""
