"""nnsight's REAL remote client (``remote=True``) against the mock NDIF server.

One server per module (``ndif`` fixture) on a tiny random Llama saved to a temp
folder.  The client model is a weightless meta ``TransformersModel`` built from the
same folder -- what a user without the weights holds -- and every remote result is
compared with a local run of a dispatched model.  See ``tests/ndif_mock/``.
"""

from __future__ import annotations

import hashlib
import linecache
import time

import pytest
import torch

pytest.importorskip("aiohttp", reason="the mock NDIF server needs aiohttp")

from ndif_mock.harness import start_mock_ndif  # noqa: E402
from nnsight import CONFIG  # noqa: E402
from nnsight.intervention.backends import remote as remote_backend  # noqa: E402
from nnsight.intervention.backends.remote import RemoteBackend, RemoteError  # noqa: E402
from nnsight.modeling.transformers import TransformersModel  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from clas_graph.errors import field_path  # noqa: E402  (referenced by a trace body on purpose)

PROMPTS = ["The quick brown fox", "Hello, world! What is the capital of France?"]
TOL = 1e-5


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir("llama", layers=2)


_START_FAILED: list[str] = []


@pytest.fixture(scope="module")
def ndif(model_dir, tmp_path_factory):
    if _START_FAILED:  # don't wait for a broken server once per test
        pytest.fail(f"mock NDIF failed to start earlier: {_START_FAILED[0]}")
    try:
        context = start_mock_ndif(model_dir, max_lifetime=240, idle_timeout=120,
                                  log_dir=tmp_path_factory.mktemp("mock_ndif"))
        server = context.__enter__()
    except Exception as error:
        _START_FAILED.append(str(error)[:2000])
        raise
    try:
        yield server
    finally:
        context.__exit__(None, None, None)
    assert not server.alive()


@pytest.fixture(autouse=True)
def _no_faults(request):
    """Every test starts (and leaves) the server without faults."""
    if "ndif" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("ndif")
    server.reset_faults()
    yield
    server.reset_faults()


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def local(model_dir, tokenizer):
    """The reference: real weights, run here."""
    return TransformersModel(AutoModelForCausalLM.from_pretrained(model_dir).eval(), tokenizer=tokenizer)


@pytest.fixture(scope="module")
def client(model_dir, tokenizer, ndif):
    """What a remote user holds: a meta model (no weights) built from the config.

    ``task`` must be given (inferring it asks the Hub) and so must the tokenizer
    (the meta pipeline cannot guess one from a local folder).
    """
    model = TransformersModel(str(model_dir), task="text-generation", tokenizer=tokenizer)
    assert not model.dispatched
    return model


# --------------------------------------------------------------------------- generated source


GENERATED = '''\
# Generated like clas_graph.compile.emit: reads only torch, the model and plain tensors.
import torch


def forward_trace(model, inputs, rows, tensors, trace_kwargs):
    with model.trace(inputs, **trace_kwargs):
        mlp = model.model.layers[1].mlp
        h = mlp.act_fn.output * mlp.up_proj.output
        rows_here = rows["edited"].to(h.device)[:, None, None]
        h = torch.where(rows_here, h * tensors["scale"].to(h.device, h.dtype), h)
        mlp.down_proj.input = h
        logits = model.output.logits[:, -1, :].save()
    return logits


def generate_trace(model, inputs, rows, tensors, generate_kwargs):
    with model.generate(**generate_kwargs) as tracer:
        with tracer.invoke(inputs):
            for step in tracer.iter[:]:
                mlp = model.model.layers[1].mlp
                h = mlp.act_fn.output * mlp.up_proj.output
                rows_here = rows["edited"].to(h.device)[:, None, None]
                h = torch.where(rows_here, h * tensors["scale"].to(h.device, h.dtype), h)
                mlp.down_proj.input = h
        with tracer.invoke():
            token_ids = tracer.result.save()
    return token_ids
'''


@pytest.fixture(scope="module")
def generated():
    digest = hashlib.sha256(GENERATED.encode()).hexdigest()[:12]
    filename = f"<generated-trace-ndif-mock-{digest}>"
    linecache.cache[filename] = (len(GENERATED), None, GENERATED.splitlines(True), filename)
    namespace = {"torch": torch, "__name__": f"generated_trace_{digest}"}
    exec(compile(GENERATED, filename, "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def edit_tensors():
    generator = torch.Generator().manual_seed(0)
    rows = {"edited": torch.tensor([True, False])}
    tensors = {"scale": 1.0 + 2.0 * torch.randn(64, generator=generator)}  # intermediate_size 64
    return rows, tensors


# --------------------------------------------------------------------------- plain traces


def test_plain_trace_matches_local(ndif, client, local):
    with local.trace(PROMPTS):
        expected = local.output.logits.save()
    before = len(ndif.jobs())
    with client.trace(PROMPTS, remote=True):
        logits = client.output.logits.save()
    assert isinstance(logits, torch.Tensor) and logits.shape == expected.shape
    torch.testing.assert_close(logits, expected, atol=TOL, rtol=0)

    jobs = ndif.jobs()
    assert len(jobs) == before + 1
    job = jobs[-1]
    assert job["statuses"] == ["RECEIVED", "QUEUED", "RUNNING", "COMPLETED"]
    assert job["model_key"] == client.to_model_key()
    assert job["nnsight_version"] == "0.8.1" and job["python_version"]
    assert job["compress"] is True  # CONFIG.API.COMPRESS: payload and result are zstd'd
    assert job["env"] == {"attn_implementation": "sdpa"}
    # Only names the block body *reads* travel: `client` (the envoy; its weights,
    # tokenizer and pipeline by persistent id) -- the prompts ride in the tracer.
    assert job["shipped_locals"] == ["client"] and job["shipped_globals"] == []
    assert job["saved"] == ["logits"]


def test_dispatched_model_can_also_go_remote(ndif, local):
    """The local, weight-holding model works with remote=True too (weights never travel)."""
    with local.trace(PROMPTS[0]):
        expected = local.output.logits.save()
    with local.trace(PROMPTS[0], remote=True):
        logits = local.output.logits.save()
    torch.testing.assert_close(logits, expected, atol=TOL, rtol=0)
    assert ndif.jobs()[-1]["payload_bytes"] < 20_000


def test_inline_result_frame(ndif, client, local):
    """COMPLETED may carry the result in a binary frame instead of a download URL."""
    ndif.set_faults(inline_results=True)
    with local.trace(PROMPTS):
        expected = local.model.layers[0].output.save()
    with client.trace(PROMPTS, remote=True):
        hidden = client.model.layers[0].output.save()
    torch.testing.assert_close(hidden, expected, atol=TOL, rtol=0)


# --------------------------------------------------------------------------- generated trace bodies


def test_generated_source_edit_matches_local(ndif, client, local, generated, edit_tensors):
    rows, tensors = edit_tensors
    forward = generated["forward_trace"]
    expected = forward(local, PROMPTS, rows, tensors, {})
    got = forward(client, PROMPTS, rows, tensors, {"remote": True})
    torch.testing.assert_close(got, expected, atol=TOL, rtol=0)

    # The edit did something, on the edited row only.
    with local.trace(PROMPTS):
        plain = local.output.logits[:, -1, :].save()
    assert (expected[0] - plain[0]).abs().max() > 1e-3
    torch.testing.assert_close(expected[1], plain[1], atol=TOL, rtol=0)

    job = ndif.jobs()[-1]
    assert job["shipped_locals"] == ["model", "rows", "tensors"]  # `inputs` rides in the tracer
    assert job["shipped_globals"] == ["torch"]  # a module: pickled by reference
    assert job["saved"] == ["logits"]


def test_generate_with_iter_edits_and_result_invoke(ndif, client, local, generated, edit_tensors):
    rows, tensors = edit_tensors
    generate = generated["generate_trace"]
    kwargs = {"max_new_tokens": 4, "do_sample": False}
    expected = generate(local, PROMPTS, rows, tensors, kwargs)
    got = generate(client, PROMPTS, rows, tensors, {**kwargs, "remote": True})
    assert got.dtype == torch.long and got.shape == expected.shape
    assert torch.equal(got, expected)

    job = ndif.jobs()[-1]
    # `tracer` travels too: the body reads it (`tracer.invoke`), and `as tracer` bound
    # it in the frame before the block ran (pickled once, memoized with the tracer).
    assert job["shipped_locals"] == ["inputs", "model", "rows", "tensors", "tracer"]
    assert job["saved"] == ["token_ids"]


def test_clas_graph_import_refused_on_server(ndif, client, local):
    """A body that calls a clas_graph function pickles it BY REFERENCE; NDIF can't import it."""
    with local.trace(PROMPTS[0]):  # fine locally
        label = field_path(("layers", 1)).save()
        logits = local.output.logits.save()
    assert logits.shape[0] == 1 and label

    with pytest.raises(RemoteError) as raised:
        with client.trace(PROMPTS[0], remote=True):
            label = field_path(("layers", 1)).save()
            logits = client.output.logits.save()
    message = str(raised.value)
    assert "No module named 'clas_graph" in message and "refused" in message
    job = ndif.jobs()[-1]
    assert job["statuses"] == ["RECEIVED", "QUEUED", "RUNNING", "ERROR"]
    assert "ModuleNotFoundError" in job["error"]


def test_remote_local_simulation_does_not_catch_the_clas_graph_reference(local):
    """remote="local" only hides NON-installed modules; an installed clas_graph slips through."""
    with local.trace(PROMPTS[0], remote="local"):
        label = field_path(("layers", 1)).save()
        logits = local.output.logits.save()
    assert label and logits.shape[0] == 1


# --------------------------------------------------------------------------- auth


def test_bad_api_key_rejected(ndif, client):
    saved = CONFIG.API.APIKEY
    CONFIG.API.APIKEY = "not-the-key"
    try:
        with pytest.raises(RemoteError, match="Missing or invalid API key"):
            with client.trace(PROMPTS[0], remote=True):
                _logits = client.output.logits.save()  # rejected before it runs: never bound here
    finally:
        CONFIG.API.APIKEY = saved
    assert ndif.rejected()[-1]["api_key"] == "not-the-key"


# --------------------------------------------------------------------------- faults


def _remote_logits(client):
    with client.trace(PROMPTS[0], remote=True):
        logits = client.output.logits.save()
    return logits


def test_error_next_raises_remote_error_with_server_message(ndif, client):
    ndif.set_faults(error_next=1, error_message="GPU fell over (injected)")
    start = time.monotonic()
    with pytest.raises(RemoteError, match=r"GPU fell over \(injected\)"):
        _remote_logits(client)
    assert time.monotonic() - start < 5
    assert _remote_logits(client).shape[0] == 1  # consumed: the next request succeeds
    assert [job["status"] for job in ndif.jobs()[-2:]] == ["ERROR", "COMPLETED"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # TCP connection lost while waiting on the websocket.
        ("ws_abort", "websocket._exceptions.WebSocketConnectionClosedException"),
        # Server sends a close frame: websocket-client's recv() returns "" and the
        # client feeds it to ResponseModel.model_validate_json -> pydantic error.
        ("ws_close", "pydantic_core._pydantic_core.ValidationError"),
        # POST /request connection dropped before an answer: httpx error wrapped.
        ("http", "nnsight.intervention.backends.remote.RemoteError"),
    ],
)
def test_drop_next(ndif, client, local, mode, expected):
    ndif.set_faults(drop_next=1, drop_mode=mode)
    start = time.monotonic()
    with pytest.raises(Exception) as raised:
        _remote_logits(client)
    assert time.monotonic() - start < 5
    error = raised.value
    assert f"{type(error).__module__}.{type(error).__name__}" == expected
    if mode == "http":
        assert "Failed to send request: Server disconnected without sending a response" in str(error)
        assert ndif.jobs()[-1]["status"] == "DROPPED"
        return

    # A dropped websocket does not cancel the job: it finishes server-side, and
    # the result can be collected by job id with the non-blocking poll path.
    job_id = ndif.jobs()[-1]["id"]
    backend = RemoteBackend(client.to_model_key(), blocking=False, job_id=job_id)
    deadline = time.monotonic() + 10
    result = None
    while result is None and time.monotonic() < deadline:
        result = backend.poll()
        if result is None:
            time.sleep(0.05)
    with local.trace(PROMPTS[0]):
        expected_logits = local.output.logits.save()
    torch.testing.assert_close(result["logits"], expected_logits, atol=TOL, rtol=0)


def test_delay_before_answer_just_waits(ndif, client):
    ndif.set_faults(delay=1.0)
    start = time.monotonic()
    assert _remote_logits(client).shape[0] == 1
    assert time.monotonic() - start >= 1.0


def test_delay_past_post_read_timeout_raises(ndif, client, monkeypatch):
    """The POST has the only client-side timeout: httpx read, 600 s (module constant)."""
    monkeypatch.setattr(remote_backend, "_READ_TIMEOUT", 0.3)
    ndif.set_faults(delay=1.0)
    start = time.monotonic()
    with pytest.raises(RemoteError, match="Failed to send request"):
        _remote_logits(client)
    assert time.monotonic() - start < 1.0


def test_queue_delay_socket_timeouts_are_swallowed(ndif, client):
    """Waiting on the websocket has NO client-side timeout: a socket timeout is retried."""
    import websocket

    ndif.set_faults(queue_delay=1.0)
    before = websocket.getdefaulttimeout()
    websocket.setdefaulttimeout(0.2)
    try:
        start = time.monotonic()
        assert _remote_logits(client).shape[0] == 1
        assert time.monotonic() - start >= 1.0
    finally:
        websocket.setdefaulttimeout(before)


def test_non_blocking_submit_and_poll(ndif, client, local):
    # The block runs remotely only, so `_logits` is never bound here: the result carries it under its name.
    with client.trace(PROMPTS, remote=True, blocking=False) as tracer:
        _logits = client.output.logits.save()
    backend = tracer.backend
    assert backend.job_id in ndif.job_ids()
    deadline = time.monotonic() + 10
    result = None
    while result is None and time.monotonic() < deadline:
        result = backend()
        if result is None:
            time.sleep(0.05)
    with local.trace(PROMPTS):
        expected = local.output.logits.save()
    torch.testing.assert_close(result["_logits"], expected, atol=TOL, rtol=0)
