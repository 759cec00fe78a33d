"""Remote execution without a server: payloads reference nothing from clas_graph, nnsight's local simulation of the
remote path gives the local numbers, and the preflight/retry rules behave as documented."""

from __future__ import annotations

import socket

import pytest
import torch
from tiny import spec_data

import clas_graph
from clas_graph import BackendError
from clas_graph.backends import pooled_hidden, token_nll
from clas_graph.data.bible import load_bible
from clas_graph.execution.context import use
from clas_graph.execution.ndif import NdifExecutor, preflight
from clas_graph.records import spec_hash
from clas_graph.runners.stats import collect
from clas_graph.spec.load import validate_data
from clas_graph.spec.stats import QuantileThreshold

LANGS = ["en", "de", "fr"]
TEXTS = ["The sky is blue and", "Der Himmel ist blau", "Le ciel est bleu et la mer", "Hello"]
ROWS = ["en", "de", "fr", "en"]


@pytest.fixture(scope="module")
def model(tiny_lm):
    return tiny_lm("llama")


@pytest.fixture(scope="module")
def plan(model):
    spec = validate_data({
        **spec_data(LANGS),
        "interventions": [
            {"kind": "clas", "layers": [1, 2], "shared": {"neurons": {1: [1, 2, 3], 2: [9]}},
             "specific": {"neurons": {1: [5]}}},
            {"kind": "add_vector", "layers": [1], "vector": {"values": [0.05] * 32}, "steps": "prompt"},
            {"kind": "ablate", "layers": [2], "neurons": {"neurons": {2: [0, 1]}}, "steps": "generated"}],
        "conditions": {"all": ["clas", "add_vector", "ablate"]}})
    return clas_graph.compile_plan(spec, model, "all")


class Captured(Exception):
    pass


class CaptureBackend:
    """An nnsight backend that serializes the request exactly as the remote client would, then stops."""

    def __init__(self):
        self.blobs = []

    def __call__(self, tracer):
        from nnsight.schema.request import RequestModel

        self.blobs.append(RequestModel.serialize(tracer, compress=False))
        raise Captured


class CapturingExecution(NdifExecutor):
    def __init__(self, session_batches: int = 1):
        super().__init__(host="capture", session_batches=session_batches)
        self.capture = CaptureBackend()

    def call(self, model, fn, *args, call_kwargs):
        with pytest.raises(Captured):
            fn(model, *args, {**call_kwargs, "backend": self.capture})
        raise Captured


def payloads(call, session_batches: int = 1) -> list[bytes]:
    execution = CapturingExecution(session_batches)
    with use(execution), pytest.raises(Captured):
        call()
    return execution.capture.blobs


@pytest.mark.parametrize("kind", ["forward", "mixed_batch", "generate", "token_nll", "pooled", "statistics",
                                  "statistics_session"])
def test_payloads_reference_nothing_from_clas_graph(model, plan, kind):
    calls = {
        "forward": lambda: clas_graph.forward(model, plan, TEXTS[:1], ROWS[:1]),
        "mixed_batch": lambda: clas_graph.forward(model, plan, TEXTS, ROWS),
        "generate": lambda: clas_graph.generate_ids(model, plan, TEXTS, ROWS, 3),
        "token_nll": lambda: token_nll(model, plan, TEXTS, ROWS),
        "pooled": lambda: pooled_hidden(model, plan, TEXTS, ROWS, 2),
        "statistics": lambda: collect(model, load_bible(LANGS, limit=2), LANGS, threshold=QuantileThreshold()),
        "statistics_session": lambda: collect(model, load_bible(LANGS, limit=2), LANGS, threshold=QuantileThreshold(),
                                              batch_size=2),
    }
    (blob,) = payloads(calls[kind], session_batches=3 if kind == "statistics_session" else 1)[:1]
    assert len(blob) > 1000
    assert b"clas_graph" not in blob and b"clas-graph" not in blob
    if kind != "statistics":
        assert b"torch" in blob  # the plan's tensors travel as tensors


def test_local_simulation_of_the_remote_path_gives_local_numbers(model, plan):
    local_logits = clas_graph.forward(model, plan, TEXTS, ROWS)
    local_nll = token_nll(model, plan, TEXTS, ROWS)
    local_pooled = pooled_hidden(model, plan, TEXTS, ROWS, 2)
    samples = load_bible(LANGS, limit=2)
    local_stats = collect(model, samples, LANGS, threshold=QuantileThreshold(), active_frac=True)
    with use(NdifExecutor(host="local")):
        torch.testing.assert_close(clas_graph.forward(model, plan, TEXTS, ROWS), local_logits, atol=1e-6, rtol=0)
        remote_nll = token_nll(model, plan, TEXTS, ROWS)
        torch.testing.assert_close(remote_nll[0], local_nll[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(pooled_hidden(model, plan, TEXTS, ROWS, 2), local_pooled, atol=1e-6, rtol=0)
        moments, counts, t_act = collect(model, samples, LANGS, threshold=QuantileThreshold(), active_frac=True)
    local_small = collect(model, samples, LANGS, threshold=QuantileThreshold(), batch_size=2, active_frac=True)
    with use(NdifExecutor(host="local", session_batches=2)):  # several batches per request
        batched = collect(model, samples, LANGS, threshold=QuantileThreshold(), batch_size=2, active_frac=True)
    for got, want in zip(batched[0].as_tuple(), local_small[0].as_tuple()):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)
    assert torch.equal(batched[1], local_small[1])
    torch.testing.assert_close(moments.h_sum, local_stats[0].h_sum, atol=1e-6, rtol=1e-9)
    assert torch.equal(counts, local_stats[1])


def test_missing_api_key_is_one_sentence(monkeypatch):
    from nnsight import CONFIG

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    with pytest.raises(BackendError, match="no NDIF API key is set") as info:
        preflight(NdifExecutor(host=True))
    assert "\n" not in str(info.value)


def test_unreachable_host_is_one_sentence(monkeypatch):
    monkeypatch.setenv("NDIF_API_KEY", "secret-key-123")
    with socket.socket() as probe:  # a port on this machine that nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BackendError, match="unreachable") as info:
        preflight(NdifExecutor(host=f"http://127.0.0.1:{port}"), timeout=2)
    assert "secret-key-123" not in str(info.value)
    with pytest.raises(BackendError, match="not an http"):
        preflight(NdifExecutor(host="ftp://x"))


def test_a_server_with_another_nnsight_is_refused_before_any_request(monkeypatch):
    import importlib.metadata

    import nnsight.ndif

    monkeypatch.setenv("NDIF_API_KEY", "secret-key-123")
    with socket.socket() as server:  # a host that answers the TCP connect
        server.bind(("127.0.0.1", 0))
        server.listen()
        host = f"http://127.0.0.1:{server.getsockname()[1]}"
        monkeypatch.setattr(nnsight.CONFIG.API, "HOST", host)
        monkeypatch.setattr(nnsight.ndif, "get_remote_env", lambda: {"packages": {"nnsight": "0.1.0"}})
        with pytest.raises(BackendError, match="runs nnsight 0.1.0, this client") as info:
            preflight(NdifExecutor(host=host), timeout=2)
        assert "pip install nnsight==" in str(info.value) and "\n" not in str(info.value)
        local = importlib.metadata.version("nnsight")
        monkeypatch.setattr(nnsight.ndif, "get_remote_env", lambda: {"packages": {"nnsight": local}})
        preflight(NdifExecutor(host=host), timeout=2)

        def no_endpoint():
            raise RuntimeError("404")

        monkeypatch.setattr(nnsight.ndif, "get_remote_env", no_endpoint)  # a server without /env: nothing to compare
        preflight(NdifExecutor(host=host), timeout=2)


def test_retries_with_backoff_then_a_clear_error(monkeypatch):
    monkeypatch.setenv("NDIF_API_KEY", "secret-key-123")
    sleeps = []
    monkeypatch.setattr("clas_graph.execution.ndif.time.sleep", sleeps.append)

    class FakeModel:
        def _remote_backend(self, remote, blocking, job_id, verbose):
            return type("B", (), {"job_id": f"job-{len(attempts)}"})()

    attempts = []

    def flaky(model, x, kwargs):
        attempts.append(kwargs["backend"])
        if len(attempts) < 3:
            raise ConnectionResetError("connection dropped")
        return x * 2

    execution = NdifExecutor(host="https://ndif.example", retries=3, backoff_s=0.5)
    assert execution.call(FakeModel(), flaky, 21, call_kwargs={}) == 42
    assert sleeps == [0.5, 1.0] and execution.job_ids == ["job-0", "job-1", "job-2"]

    def broken(model, x, kwargs):
        raise ConnectionResetError("server said no for secret-key-123")

    attempts.clear()
    with pytest.raises(BackendError) as info:
        NdifExecutor(host="https://ndif.example", retries=1, backoff_s=0.1).call(FakeModel(), broken, 1, call_kwargs={})
    assert "failed after 2 attempts: server said no for ***" in str(info.value)
    assert "secret-key-123" not in str(info.value)


def test_backend_is_not_part_of_a_runs_identity():
    data = spec_data(["en", "de"])
    local = validate_data(data)
    remote = validate_data({**data, "backend": {"kind": "ndif", "host": "https://example.org"}})
    assert spec_hash(local) == spec_hash(remote)
