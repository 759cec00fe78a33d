"""Start the mock NDIF server in a subprocess and point nnsight's real client at it.

    from ndif_mock.harness import start_mock_ndif

    with start_mock_ndif(model_dir) as ndif:          # or as a module-scoped fixture
        client = TransformersModel(str(model_dir), task="text-generation", tokenizer=tok)
        with client.trace("Hello", remote=True):
            logits = client.output.logits.save()
        ndif.set_faults(error_next=1)                 # inject faults per test
        ndif.jobs()                                   # what the server received

Client-side configuration done while the context is open (and undone after):

* ``nnsight.CONFIG.API.HOST = "http://127.0.0.1:<port>"`` -- nnsight 0.8.1 reads
  ``NDIF_HOST`` only once, when ``nnsight`` is imported (``Config.load``), so the
  live config object is what must change; there is no separate SSL switch: the
  scheme of HOST decides http/ws versus https/wss.
* ``nnsight.CONFIG.API.APIKEY = api_key`` (likewise read from ``NDIF_API_KEY`` at
  import only).  ``NDIF_HOST`` / ``NDIF_API_KEY`` are also exported for any child
  process that imports nnsight.
* ``nnsight.modeling.huggingface._ID_CACHE[model_dir] = model_dir`` -- the model
  key (``to_model_key()``) canonicalizes the repo id with
  ``HfApi().model_info(repo_id)`` unless this cache already has it; that is a Hub
  call, impossible offline (and meaningless for a local folder).  A revision does
  not avoid it.  Pass ``repo_ids=[...]`` to pre-fill other spellings.

The subprocess is SIGTERMed (then SIGKILLed) on exit; it also dies by itself
(max lifetime, idle timeout, parent death), see ``server.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .server import DEFAULT_API_KEY, DEFAULT_FAULTS

SERVER_SCRIPT = Path(__file__).with_name("server.py")


@dataclass
class MockNdif:
    """A running mock server (see ``start_mock_ndif``)."""

    port: int
    api_key: str
    model_dir: str
    process: subprocess.Popen
    log_path: Path
    model_key_repo_ids: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        """What ``CONFIG.API.HOST`` / ``NDIF_HOST`` is set to."""
        return f"http://127.0.0.1:{self.port}"

    url = host

    def _call(self, method: str, path: str, body: dict | None = None, timeout: float = 10.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.host + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def set_faults(self, reset: bool = False, **faults: Any) -> dict:
        """Update the server's faults (names in ``server.DEFAULT_FAULTS``); returns them all."""
        unknown = set(faults) - set(DEFAULT_FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {sorted(DEFAULT_FAULTS)}")
        return self._call("POST", "/_admin/faults", {"reset": reset, **faults})

    def reset_faults(self) -> dict:
        return self.set_faults(reset=True)

    def faults(self) -> dict:
        return self._call("GET", "/_admin/faults")

    def jobs(self) -> list[dict]:
        """Every job the server received, oldest first (see ``server.Job``)."""
        return self._call("GET", "/_admin/jobs")["jobs"]

    def job_ids(self) -> list[str]:
        return [job["id"] for job in self.jobs()]

    def rejected(self) -> list[dict]:
        """Requests refused for a bad API key."""
        return self._call("GET", "/_admin/jobs")["rejected"]

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def configure_client(host: str, api_key: str, repo_ids: list[str] = ()) -> Iterator[None]:
    """Point nnsight's client at ``host`` (see the module docstring); restore on exit."""
    from nnsight import CONFIG
    from nnsight.modeling import huggingface

    saved_config = (CONFIG.API.HOST, CONFIG.API.APIKEY)
    saved_env = {name: os.environ.get(name) for name in ("NDIF_HOST", "NDIF_API_KEY")}
    saved_ids = {repo_id: huggingface._ID_CACHE.get(repo_id) for repo_id in repo_ids}
    CONFIG.API.HOST, CONFIG.API.APIKEY = host, api_key
    os.environ["NDIF_HOST"], os.environ["NDIF_API_KEY"] = host, api_key
    for repo_id in repo_ids:
        huggingface._ID_CACHE[repo_id] = repo_id
    try:
        yield
    finally:
        CONFIG.API.HOST, CONFIG.API.APIKEY = saved_config
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for repo_id, value in saved_ids.items():
            if value is None:
                huggingface._ID_CACHE.pop(repo_id, None)
            else:
                huggingface._ID_CACHE[repo_id] = value


def _stop(process: subprocess.Popen, timeout: float = 5.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


@contextlib.contextmanager
def start_mock_ndif(
    model_dir: str | os.PathLike,
    *,
    api_key: str = DEFAULT_API_KEY,
    repo_ids: list[str] = (),
    startup_timeout: float = 60.0,
    max_lifetime: float = 300.0,
    idle_timeout: float = 120.0,
    configure: bool = True,
    log_dir: str | os.PathLike | None = None,
    **faults: Any,
) -> Iterator[MockNdif]:
    """Run the mock server on ``model_dir`` for the duration of the ``with``.

    ``faults`` are the initial faults (``error_next=1``, ``delay=0.5``, ...).
    ``configure=False`` leaves nnsight's client configuration alone (use
    ``configure_client`` yourself).  Raises ``RuntimeError`` (with the server log)
    if the server is not listening within ``startup_timeout`` seconds.
    """
    unknown = set(faults) - set(DEFAULT_FAULTS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; known: {sorted(DEFAULT_FAULTS)}")
    model_dir = str(model_dir)
    workdir = Path(tempfile.mkdtemp(prefix="mock-ndif-", dir=log_dir))
    keep_workdir = log_dir is not None  # under the caller's dir: keep the log; else clean up
    port_file = workdir / "port"
    log_path = workdir / "server.log"
    command = [
        sys.executable, str(SERVER_SCRIPT),
        "--model-dir", model_dir,
        "--port", "0",
        "--port-file", str(port_file),
        "--api-key", api_key,
        "--max-lifetime", str(max_lifetime),
        "--idle-timeout", str(idle_timeout),
        "--parent-pid", str(os.getpid()),
    ]
    for repo_id in repo_ids:
        command += ["--repo-id", repo_id]
    for name, value in faults.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            command += [flag] if value else []
        else:
            command += [flag, str(value)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    # Debug settings of the test process (tracemalloc makes importing torch take minutes).
    for name in ("PYTHONTRACEMALLOC", "PYTHONDEVMODE", "PYTHONBREAKPOINT"):
        env.pop(name, None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = None
    try:
        deadline = time.monotonic() + startup_timeout
        while not port_file.exists():
            if process.poll() is not None:
                raise RuntimeError(f"mock NDIF exited with {process.returncode}:\n"
                                   f"{log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mock NDIF not ready after {startup_timeout}s:\n"
                                   f"{log_path.read_text(errors='replace')}")
            time.sleep(0.05)
        port = int(port_file.read_text())
        ids = [model_dir, os.path.realpath(model_dir), *repo_ids]
        server = MockNdif(port=port, api_key=api_key, model_dir=model_dir, process=process,
                          log_path=log_path, model_key_repo_ids=ids)
        if configure:
            with configure_client(server.host, api_key, ids):
                yield server
        else:
            yield server
    finally:
        _stop(process)
        if not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
