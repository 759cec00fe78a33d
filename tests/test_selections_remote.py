"""Selections on NDIF: several batches per request (`model.session`), the local numbers, and the request count.

The equality tests go through nnsight's in-process serialize/deserialize simulation of a remote run
(`remote="local"`); the request count is also checked against the mock NDIF server (tests/ndif_mock)."""

from __future__ import annotations

import math

import pytest
import torch

import clas_graph.execution.ndif
from clas_graph.data.bible import load_bible
from clas_graph.execution.context import use
from clas_graph.execution.ndif import NdifExecutor
from clas_graph.runners import selections as sel_runner

LANGS = ["en", "de", "fr", "zh"]
LAPE = dict(lape=True, expert_layers=[], expert_site="mlp.act_fn.output", max_length=512, exclude_bos=True)
BOTH = dict(LAPE, expert_layers=[0, 2, 3], expert_site="mlp.down_proj.input")


@pytest.fixture(scope="module")
def samples():
    return load_bible(LANGS, limit=6, seed=3)  # 24 rows


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def model(request, tiny_lm):
    return tiny_lm(request.param)


class Counting(NdifExecutor):
    """A remote execution that records, per request, which generated function ran and on how many batches."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.requests: list[tuple[str, int]] = []

    def call(self, model, fn, *args, call_kwargs):
        self.requests.append((fn.__name__, len(args[0]) if fn.__name__ == "selection_session" else 1))
        return super().call(model, fn, *args, call_kwargs=call_kwargs)


def assert_same(got, want):
    for name, a, b in zip(("positive", "tokens", "pooled", "row_language"), got, want):
        assert (a is None) == (b is None), name
        if a is not None:
            assert torch.equal(a, b), name  # same batches, same forward: identical


@pytest.mark.parametrize("options", [LAPE, BOTH], ids=["lape", "lape+experts"])
def test_remote_sessions_give_the_local_numbers(model, samples, options):
    local = sel_runner.collect(model, samples, LANGS, batch_size=5, **options)
    execution = Counting(host="local", session_batches=2)
    with use(execution):
        remote = sel_runner.collect(model, samples, LANGS, batch_size=5, **options)
    # 24 rows in batches of 5: 5 batches, 2 a request (the last one alone, as a plain trace).
    assert execution.requests == [("selection_session", 2), ("selection_session", 2), ("selection_trace", 1)]
    assert_same(remote, local)
    assert local[0] is not None and local[0].sum() > 0  # the comparison is not vacuous
    if options is BOTH:
        assert local[2].shape == (3, 24, 64) and torch.isfinite(local[2]).all()


@pytest.mark.parametrize("rows_allowed, want", [(8, [2, 2, 2]), (1, [1] * 6)])
def test_pooled_rows_cut_a_group_at_the_result_budget(samples, monkeypatch, rows_allowed, want, tiny_lm):
    model = tiny_lm("llama")
    row_bytes = 4 * 3 * 64  # float32 x 3 expert layers x intermediate 64
    monkeypatch.setattr(clas_graph.execution.ndif, "RESULT_BUDGET", rows_allowed * row_bytes)
    local = sel_runner.collect(model, samples, LANGS, batch_size=4, **BOTH)
    execution = Counting(host="local", session_batches=4)
    with use(execution):
        remote = sel_runner.collect(model, samples, LANGS, batch_size=4, **BOTH)
    # 6 batches of 4 rows; 8 rows fit the budget: 2 batches a request, not 4. Never fewer than one batch.
    assert [n for _, n in execution.requests] == want
    assert_same(remote, local)

    monkeypatch.setattr(clas_graph.execution.ndif, "RESULT_BUDGET", 0)  # LAPE's counts do not grow with the group
    execution = Counting(host="local", session_batches=4)
    with use(execution):
        sel_runner.collect(model, samples, LANGS, batch_size=4, **LAPE)
    assert [n for _, n in execution.requests] == [4, 2]


class _Captured(Exception):
    pass


def test_session_payload_references_nothing_from_clas_graph(samples, tiny_lm):
    from nnsight.schema.request import RequestModel

    model = tiny_lm("llama")
    blobs = []

    class Capture(NdifExecutor):
        def call(self, model, fn, *args, call_kwargs):
            def backend(tracer):
                blobs.append(RequestModel.serialize(tracer, compress=False))
                raise _Captured
            assert fn.__name__ == "selection_session"
            with pytest.raises(_Captured):
                fn(model, *args, {**call_kwargs, "backend": backend})
            raise _Captured

    with use(Capture(host="capture", session_batches=3)), pytest.raises(_Captured):
        sel_runner.collect(model, samples, LANGS, batch_size=4, **BOTH)
    assert len(blobs[0]) > 1000 and b"clas_graph" not in blobs[0] and b"clas-graph" not in blobs[0]


# --- the mock NDIF server: requests actually sent ---------------------------------------------------------------


@pytest.mark.parametrize("batch_size, per_request", [(5, 2), (3, 3)])
def test_mock_server_sees_one_request_per_group(samples, batch_size, per_request, mock_ndif):
    ndif, model = mock_ndif
    local = sel_runner.collect(model, samples, LANGS, batch_size=batch_size, **LAPE)
    before = len(ndif.jobs())
    with use(NdifExecutor(host=True, session_batches=per_request)):
        remote = sel_runner.collect(model, samples, LANGS, batch_size=batch_size, **LAPE)
    jobs = ndif.jobs()[before:]
    batches = math.ceil(24 / batch_size)
    assert len(jobs) == math.ceil(batches / per_request) < batches
    assert all(job["status"] == "COMPLETED" for job in jobs), [job["status"] for job in jobs]
    assert_same(remote, local)
