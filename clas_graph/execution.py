"""Where traces run: locally, or on NDIF (nnsight `remote=`), with retries. One context for every runner.

    with clas_graph.execution.use(Execution(remote=True)):
        clas_graph.forward(model, plan, texts, languages)   # same call, now remote

Traces are generated source reading only torch and plain tensors (see compile/emit.py), so the same plan
runs unchanged on a server without this package. The API key is never logged or recorded.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import torch

from .errors import BackendError


@dataclass
class Execution:
    remote: bool | str = False
    """False: local. True: NDIF at the configured host. A URL: that host. "local": nnsight's serialize/
    deserialize dry run in this process (catches payloads a server could not run)."""
    retries: int = 3
    """Extra attempts after a network or server error."""
    backoff_s: float = 2.0
    """Wait before retry k is backoff_s * 2**k seconds."""
    session_batches: int = 1
    """Batches per remote request where a runner can group them (statistics, selections, forward evaluation)."""
    stack_rows: int | None = None
    """Rows per stacked trace when several conditions share a batch's prefix (clas_graph.shared); None: four
    batches' worth. At most batch size: no stacking."""
    job_ids: list[str] = field(default_factory=list)
    """Remote job ids, in order (go into the run manifest)."""

    @property
    def is_remote(self) -> bool:
        return bool(self.remote)

    def describe(self) -> dict:
        """For manifests: what ran where (never the API key)."""
        if not self.remote:
            return {"kind": "local"}
        return {"kind": "ndif", "host": host_of(self.remote), "job_ids": list(self.job_ids)}

    def run(self, model, fn, *args, call_kwargs: dict):
        """Call a generated trace function `fn(model, *args, call_kwargs)`, remotely if asked, with retries."""
        if not self.remote:
            return fn(model, *args, call_kwargs)
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            backend = _recording(model._remote_backend(self.remote, True, None, False))
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
            where=f"NDIF at {host_of(self.remote)}",
            fix="check the service status and your quota, then rerun: finished units are kept",
        )


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


def preflight(execution: Execution, timeout: float = 5.0) -> None:
    """Before any work: an API key exists and the host answers a TCP connect; one clear sentence otherwise."""
    if not execution.remote or execution.remote == "local":
        return
    if not api_key():
        raise BackendError("no NDIF API key is set", where="backend",
                           fix="export NDIF_API_KEY=... (get a key at https://login.ndif.us), or run without --remote")
    host = host_of(execution.remote)
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


_CURRENT: contextvars.ContextVar[Execution] = contextvars.ContextVar("clas_graph_execution", default=Execution())


def current() -> Execution:
    return _CURRENT.get()


@contextlib.contextmanager
def use(execution: Execution):
    token = _CURRENT.set(execution)
    try:
        yield execution
    finally:
        _CURRENT.reset(token)
