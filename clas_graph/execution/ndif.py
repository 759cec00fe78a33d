"""NDIF (nnsight remote execution): requests with retries, several batches per request, results reduced on the
server. The API key is never logged or recorded.

Each readout request is one `model.session` (execution/traces.py) that runs, per batch, the base trace and
every condition's trace from its shared prefix; only the readouts come back. A group holds at most
`session_batches` batches and at most RESULT_BUDGET bytes of results, because the server sends results of
more than about 4 MiB outside the websocket (see the NDIF server notes) and each request must finish well
within the server's one-hour limit (fewer batches per request: less work each).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Mapping, Sequence
from urllib.parse import urlparse

import torch

from ..compile.plan import Plan
from ..errors import BackendError
from .executor import Encode, Executor
from .readouts import Batches, Readout
from .schedule import batch_plan, traces_for
from .traces import emit_session

RESULT_BUDGET = 3 * 2**20
"""Bytes of results per request (float32 on the wire); below the websocket's ~4 MiB."""


def groups(batches: list[list[int]], per_request: int, row_bytes: int) -> list[list[list[int]]]:
    """Consecutive batches, at most `per_request` and RESULT_BUDGET bytes a group (always at least one batch)."""
    out: list[list[list[int]]] = []
    for index in batches:
        last = out[-1] if out else None
        if last is not None and len(last) < per_request and \
                (sum(map(len, last)) + len(index)) * row_bytes <= RESULT_BUDGET:
            last.append(index)
        else:
            out.append([index])
    return out


class NdifExecutor(Executor):
    """Traces on NDIF. `host`: True for the configured host (NDIF_HOST or nnsight's), a URL, or "local" for
    nnsight's serialize/deserialize dry run in this process (catches payloads a server could not run)."""

    def __init__(self, host: bool | str = True, *, retries: int = 3, backoff_s: float = 2.0,
                 session_batches: int = 1, stack_rows: int | None = None):
        super().__init__(stack_rows=stack_rows)
        self.host = host
        self.retries = retries
        """Extra attempts after a network or server error."""
        self.backoff_s = backoff_s
        """Wait before retry k is backoff_s * 2**k seconds."""
        self.session_batches = session_batches
        """Batches per request where they can be grouped (statistics, selections, readouts)."""

    @property
    def weights_on_server(self) -> bool:
        return self.host != "local"

    def describe(self) -> dict:
        return {"kind": "ndif", "host": host_of(self.host), "job_ids": list(self.job_ids)}

    def preflight(self) -> None:
        preflight(self)

    def call(self, model, fn, *args, call_kwargs):
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            backend = _recording(model._remote_backend(self.host, True, None, False))
            try:
                result = fn(model, *args, {**call_kwargs, "backend": backend})
            except _retryable() as exc:
                last = exc
                if attempt < self.retries:
                    time.sleep(self.backoff_s * 2 ** attempt)
                continue
            finally:
                job = getattr(backend, "job_id", None)
                if job and job not in self.job_ids:
                    self.job_ids.append(job)
            return _detached(result)  # a server may compute with autograd on: results are plain tensors here
        raise BackendError(
            f"remote execution failed after {self.retries + 1} attempts: {_scrub(str(last)) or type(last).__name__}",
            where=f"NDIF at {host_of(self.host)}",
            fix="check the service status and your quota, then rerun: finished units are kept",
        )

    def request_groups(self, batches, row_bytes=0):
        return groups(batches, self.session_batches, row_bytes)

    def readouts(self, model, plans: Mapping[str, Plan], base: Plan, batches: list[list[int]], encode: Encode,
                 row_languages: Sequence[str], readout: Readout, *, batch_size: int) -> dict[str, Batches]:
        schedule = batch_plan(plans, readout, row_languages=row_languages, stack=self.stack(batch_size))
        traces = traces_for(schedule, plans)
        base_readout = schedule.base_readout
        session = emit_session(base, [("+".join(t.names), t.plan, t.start, len(t.names)) for t in traces], readout,
                               schedule.prefix_layers, base_readout)
        trace_plans = ([base] if schedule.needs_base_trace else []) + [t.plan for t in traces]
        all_tensors = [plan.tensors() for plan in trace_plans]
        # per output list: the conditions whose results it holds, in block order (as_base: one block, shared)
        outputs = ([(tuple(schedule.as_base), 1)] if base_readout else []) + [(t.names, len(t.names)) for t in traces]
        kwargs = {**readout.call_kwargs, "use_cache": False}
        rows_out = sum(count for _, count in outputs)  # result rows per input row
        out: Batches = {name: [] for name in plans}
        for group in self.request_groups(batches, 4 * readout.row_width(model._module.config) * rows_out):
            payload = []
            for index in group:
                inputs = encode(index)
                languages = [row_languages[i] for i in index]
                payload.append((inputs, readout.extra(model.tokenizer, inputs, index),
                                [plan.row_inputs(languages) for plan in trace_plans]))
            with torch.inference_mode():
                results = self.call(model, session.run, payload, all_tensors, kwargs, call_kwargs={})
            for (names, count), values in zip(outputs, results):
                start = 0
                for index in group:  # each batch left count * len(index) rows: block k is names[k] (or all as_base)
                    rows = count * len(index)
                    blocks = [[value[start + k * len(index):start + (k + 1) * len(index)] for value in values]
                              for k in range(count)]
                    start += rows
                    for k, block in enumerate(blocks):
                        value = tuple(block) if len(readout.outputs) > 1 else block[0]
                        for name in (names if count == 1 else names[k:k + 1]):
                            out[name].append((index, value))
        return out


def _recording(backend):
    """nnsight's blocking client drops the job id; keep it (for the manifest and for recovering a dropped job)."""
    post = getattr(backend, "_post", None)
    if post is None:
        return backend

    def recorded(request, blob):
        response = post(request, blob)
        backend.job_id = getattr(response, "id", None) or backend.job_id
        return response

    backend._post = recorded
    return backend


def _detached(value):
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, dict):
        return {key: _detached(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_detached(item) for item in value)
    return value


def _retryable() -> tuple:
    """Network failures and server-side errors (nnsight's RemoteError)."""
    kinds: list = [OSError, TimeoutError]
    try:
        from nnsight.intervention.backends.remote import RemoteError

        kinds.append(RemoteError)
    except ImportError:  # pragma: no cover - older nnsight
        pass
    for module, name in (("websocket", "WebSocketException"), ("httpx", "HTTPError")):
        try:
            kinds.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(kinds)


def _scrub(message: str) -> str:
    key = api_key()
    return message.replace(key, "***") if key else message


def api_key() -> str | None:
    from nnsight import CONFIG

    return os.environ.get("NDIF_API_KEY") or CONFIG.API.APIKEY


def host_of(remote: bool | str) -> str:
    from nnsight import CONFIG

    if remote == "local":
        return "local simulation"
    return remote if isinstance(remote, str) else (os.environ.get("NDIF_HOST") or CONFIG.API.HOST)


def preflight(executor: "NdifExecutor", timeout: float = 5.0) -> None:
    """Before any work: an API key exists and the host answers a TCP connect; one clear sentence otherwise."""
    if executor.host == "local":
        return
    if not api_key():
        raise BackendError("no NDIF API key is set", where="backend",
                           fix="export NDIF_API_KEY=... (get a key at https://login.ndif.us), or run without --remote")
    host = host_of(executor.host)
    url = urlparse(host)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise BackendError(f"'{host}' is not an http(s) URL", where="backend.host", fix="use e.g. https://api.ndif.us")
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
    except OSError as exc:
        raise BackendError(f"the NDIF host {host} is unreachable ({exc.strerror or exc})", where="backend.host",
                           fix="check the network or NDIF_HOST, or run without --remote") from None
    from nnsight import CONFIG

    mismatch = environment_mismatch() if host == CONFIG.API.HOST else None  # nnsight asks its configured host
    if mismatch:
        raise BackendError(mismatch, where="backend",
                           fix="install the server's version (pip install nnsight==<server version>); "
                               "`python -c 'import nnsight; print(nnsight.compare())'` shows every package")


def environment_mismatch() -> str | None:
    """Before spending queue time: the server's nnsight must be the client's (the request format and the
    generated traces depend on it). One sentence when it differs; None when it matches or the server does
    not publish its environment (nnsight's `/env`; a private server may not have it). torch/transformers
    differences are reported by `nnsight.compare()` but not refused: they change no request."""
    import importlib.metadata

    try:
        from nnsight.ndif import get_remote_env

        remote = get_remote_env().get("packages", {})
    except Exception:  # noqa: BLE001 - an optional endpoint: no answer means nothing to compare
        return None
    local = importlib.metadata.version("nnsight")
    server = remote.get("nnsight")
    if server is None or server == local:
        return None
    return f"the NDIF server runs nnsight {server}, this client {local}"
