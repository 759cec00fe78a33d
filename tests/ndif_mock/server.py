"""Mock NDIF server: nnsight 0.8.1's remote protocol, served offline on 127.0.0.1.

Run::

    python -m tests.ndif_mock.server --model-dir DIR --port 0 --port-file PATH \
        [--api-key KEY] [--max-lifetime 300] [--idle-timeout 120] [fault flags]

(or ``python tests/ndif_mock/server.py ...``; ``harness.start_mock_ndif`` does this).
It loads ``DIR`` (a ``save_pretrained`` folder: causal LM + tokenizer) as
``TransformersModel(hf_model, tokenizer=tok)``, listens on 127.0.0.1 only (port 0
picks a free port), and writes the port number to ``--port-file`` once it accepts
connections.

Protocol (what ``nnsight.intervention.backends.remote.RemoteBackend`` does)
---------------------------------------------------------------------------
* ``GET /subscribe`` (websocket, header ``ndif-api-key``): the server's first text
  frame is ``{"session_id": "<id>"}``.  Every later frame is one status update of a
  job submitted with that session id: a text frame holding
  ``ResponseModel.model_dump_json()`` or, for a COMPLETED carrying the result
  inline, a binary frame holding ``ResponseModel.pickle()`` (torch.save bytes).
* ``POST /request``: multipart form; field ``data`` = ``RequestModel.metadata()``
  (JSON: ``model_key``, ``session_id``, ``compress``, ``env``), file ``blob`` =
  ``RequestModel.serialize(tracer, compress)`` (zstd when ``compress``).  Headers
  ``ndif-api-key``, ``nnsight-version``, ``python-version``, ``ndif-timestamp``.
  Answer: JSON ``ResponseModel`` with status RECEIVED and the job ``id``.  A bad
  key answers HTTP 401 ``{"detail": "Missing or invalid API key. ..."}`` (what
  NDIF's FastAPI app sends; the client raises ``RemoteError("Failed to send
  request: <detail>")``).  A model key this server doesn't hold answers ERROR.
* Updates on the websocket: QUEUED, RUNNING, then COMPLETED (``data`` = URL of
  ``GET /result/{id}``, or the blob itself with ``--inline-results``) or ERROR
  (``description`` = the server-side exception and traceback; the client raises
  ``RemoteError(description)``).
* ``GET /result/{id}``: the result blob, ``torch.save({saved name: value})``, zstd
  compressed when the request was; deleted once downloaded (like NDIF).
* ``GET /response/{id}``: latest status as JSON (404 before any) -- the
  ``blocking=False`` polling path.
* ``GET /ping``: ``"pong"``.

Execution: ``RequestModel.deserialize(blob, model._remoteable_persistent_objects(),
compress)`` (nnsight's own), ``model._remoteable_set_env(env)``, then
``tracer.execute(tracer.info.code)`` at trace depth 1 in one worker thread (jobs
run one at a time).  The result is exactly the names the trace pushes back into
its frame (the ``.save()``d ones).  nnsight's process-wide source caches
(``nnsight.tracing.globals.SOURCES`` / ``BLOCKS``, keyed by the *client's*
filename) are cleared before every request, or a second request from the same
client file would run the first one's stale source.

Before anything is deserialized, a ``sys.meta_path`` finder makes every import of
``clas_graph`` (and submodules; see ``--refuse``) raise ``ModuleNotFoundError``:
the package is not installed on NDIF, so a request that pickled a reference to it
must fail here too.

Fault injection (CLI flags at start, or ``POST /_admin/faults`` with a JSON object
of the same names; ``{"reset": true}`` restores the defaults first)
----------------------------------------------------------------------------------
* ``error_next`` (int): the next N accepted requests fail with an ERROR status
  over the websocket (after QUEUED), description ``error_message``.
* ``error_message`` (str): that description (default mentions "injected").
* ``drop_next`` (int): the next N requests lose their connection mid-request.
  How, by ``drop_mode``:

  - ``"ws_abort"`` (default): after QUEUED, the websocket's TCP connection is
    aborted (no close frame) -- a network drop;
  - ``"ws_close"``: after QUEUED, the server sends a websocket close frame
    (code 1011) -- a server restart;
  - ``"http"``: the ``POST /request`` connection is aborted before any answer.

  A dropped websocket does not cancel the job (as on NDIF): it still runs, and
  its status/result stay readable at ``/response/{id}`` and ``/result/{id}``.
* ``delay`` (float s): sleep before answering each ``POST /request``.
* ``queue_delay`` (float s): sleep between QUEUED and RUNNING of each job (the
  client is then blocked reading the websocket).
* ``inline_results`` (bool): send COMPLETED as a binary frame carrying the result
  bytes instead of a download URL.

Admin/introspection: ``GET /_admin/faults``, ``GET /_admin/jobs`` (every received
job: id, status, model_key, headers, the names that travelled in the payload,
sizes, timings, error), ``POST /_admin/shutdown``.

Lifetime: the process exits by itself after ``--max-lifetime`` seconds, after
``--idle-timeout`` seconds without a request, on SIGTERM/SIGINT, and when its
parent process dies (``PR_SET_PDEATHSIG`` plus a parent-pid poll).

Only the standard library is imported at module level, so ``harness`` can import
the constants here without loading torch/aiohttp or the import guard.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.abc
import io
import json
import os
import signal
import sys
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

DEFAULT_API_KEY = "mock-ndif-test-key"
INVALID_KEY_DETAIL = "Missing or invalid API key. Please visit https://login.ndif.us/ to create a new one."
REFUSED_PACKAGES = ("clas_graph",)
DROP_MODES = ("ws_abort", "ws_close", "http")
DEFAULT_FAULTS: dict[str, Any] = {
    "error_next": 0,
    "error_message": "Mock NDIF injected error (error_next): the job failed on the server.",
    "drop_next": 0,
    "drop_mode": "ws_abort",
    "delay": 0.0,
    "queue_delay": 0.0,
    "inline_results": False,
}
# Model classes whose keys this server answers for (LanguageModel keys as TransformersModel).
SERVED_CLASSES = ("nnsight.modeling.transformers.TransformersModel", "nnsight.modeling.language.LanguageModel")


class RefuseImports(importlib.abc.MetaPathFinder):
    """A meta-path finder that makes importing the given top-level packages fail."""

    def __init__(self, roots: tuple[str, ...]) -> None:
        self.roots = tuple(roots)

    def find_spec(self, fullname, path=None, target=None):
        root = fullname.partition(".")[0]
        if root in self.roots:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (import of {root!r} refused by the mock NDIF server: "
                "the package is not installed on NDIF)",
                name=fullname,
            )
        return None


def install_import_guard(roots: tuple[str, ...] = REFUSED_PACKAGES) -> RefuseImports:
    """Refuse ``roots`` in THIS process (only ever called by the server's main)."""
    for name in list(sys.modules):
        if name.partition(".")[0] in roots:
            del sys.modules[name]
    guard = RefuseImports(roots)
    sys.meta_path.insert(0, guard)
    return guard


def _log(message: str) -> None:
    print(f"[mock-ndif {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Job:
    id: str
    received_at: float
    model_key: str = ""
    session_id: str = ""
    compress: bool = False
    env: dict = dataclasses.field(default_factory=dict)
    nnsight_version: str = ""
    python_version: str = ""
    payload_bytes: int = 0
    fault: str | None = None  # "error" | "drop:<mode>" | None
    status: str = "RECEIVED"
    statuses: list = dataclasses.field(default_factory=list)
    shipped_globals: list = dataclasses.field(default_factory=list)
    shipped_locals: list = dataclasses.field(default_factory=list)
    saved: list = dataclasses.field(default_factory=list)
    result_bytes: int = 0
    execution_s: float | None = None
    error: str | None = None
    ws_dropped: bool = False

    def record(self) -> dict:
        return dataclasses.asdict(self)


class _PushRecorder(dict):
    """Stands in for the deserialized frame's ``f_locals``; remembers what the trace pushes back.

    ``nnsight.tracing.util.push`` writes a finished block's saved values with
    ``frame.f_locals.update(...)`` -- exactly what a local run would bind in the
    caller's frame, and so exactly what the client expects back.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pushed: list[str] = []

    def update(self, other=(), **kwargs) -> None:  # noqa: D102
        items = dict(other, **kwargs)
        for key in items:
            if key not in self.pushed:
                self.pushed.append(key)
        super().update(items)


class MockNdif:
    """The aiohttp application and its state (built inside ``main``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch
        from aiohttp import web
        from nnsight.modeling.transformers import TransformersModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.web = web
        self.args = args
        self.api_key = args.api_key
        self.faults: dict[str, Any] = dict(DEFAULT_FAULTS)
        self.faults.update(_cli_faults(args))
        self.jobs: dict[str, Job] = {}
        self.rejected: list[dict] = []
        self.sessions: dict[str, Any] = {}  # session id -> (WebSocketResponse, request)
        self.responses: dict[str, str] = {}  # job id -> latest ResponseModel JSON
        self.results: dict[str, bytes] = {}
        self.tasks: set = set()
        self.base_url = ""
        self.started = time.monotonic()
        self.last_activity = time.monotonic()
        self.stop_event: asyncio.Event | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mock-ndif-job")

        t0 = time.perf_counter()
        model_dir = Path(args.model_dir)
        torch.set_num_threads(args.threads)
        hf_model = AutoModelForCausalLM.from_pretrained(model_dir)
        hf_model.eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = TransformersModel(hf_model, tokenizer=tokenizer)
        self.repo_ids = {str(model_dir), os.path.realpath(model_dir), str(hf_model.name_or_path), *args.repo_id}
        _log(f"loaded {type(hf_model).__name__} from {model_dir} in {time.perf_counter() - t0:.1f}s; "
             f"serving repo ids {sorted(self.repo_ids)}")

    # -- helpers ---------------------------------------------------------------------------

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def _check_model_key(self, model_key: str) -> str | None:
        """None if this server holds the model, else the error description."""
        cls, _, suffix = model_key.partition(":")
        try:
            repo_id = json.loads(suffix).get("repo_id")
        except (ValueError, AttributeError):
            repo_id = None
        if cls in SERVED_CLASSES and repo_id in self.repo_ids:
            return None
        return (f"Model with key {model_key!r} is not deployed on this (mock) NDIF server; "
                f"it serves {SERVED_CLASSES[0]} with repo_id in {sorted(self.repo_ids)}.")

    def _take_fault(self) -> str | None:
        """Consume the next pending fault (error_next before drop_next)."""
        if self.faults["error_next"] > 0:
            self.faults["error_next"] -= 1
            return "error"
        if self.faults["drop_next"] > 0:
            self.faults["drop_next"] -= 1
            return f"drop:{self.faults['drop_mode']}"
        return None

    async def _emit(self, job: Job, status: str, description: str = "", data: Any = None,
                    meta: dict | None = None, inline: bytes | None = None) -> None:
        """Record a status update and send it on the job's websocket (if still open).

        ``inline``: send the update as a binary frame whose ``data`` is these bytes
        (the result itself) instead of ``data``; the recorded copy that
        ``/response/{id}`` serves keeps ``data`` (the download URL).
        """
        from nnsight.schema.response import ResponseModel

        job.status = status
        job.statuses.append(status)
        response = ResponseModel(id=job.id, status=status, description=description, data=data, meta=meta)
        self.responses[job.id] = response.model_dump_json()
        entry = self.sessions.get(job.session_id)
        if entry is None or entry[0].closed:
            return
        try:
            if inline is not None:
                frame = ResponseModel(id=job.id, status=status, description=description, data=inline, meta=meta)
                await entry[0].send_bytes(frame.pickle())
            else:
                await entry[0].send_str(response.model_dump_json())
        except Exception as error:  # noqa: BLE001 - the client may be gone; the job goes on
            _log(f"job {job.id}: could not send {status}: {error!r}")

    async def _drop_ws(self, job: Job, mode: str) -> None:
        entry = self.sessions.get(job.session_id)
        job.ws_dropped = True
        if entry is None:
            return
        ws, request = entry
        if mode == "ws_close":
            await ws.close(code=1011, message=b"mock NDIF dropped the connection (drop_next)")
        else:  # ws_abort: kill the TCP connection, no close frame
            transport = request.transport
            if transport is not None:
                transport.abort()
        _log(f"job {job.id}: websocket dropped ({mode})")

    # -- execution (worker thread) ------------------------------------------------------------

    def _execute(self, job: Job, blob: bytes) -> bytes:
        import torch
        from nnsight.schema.request import RequestModel
        from nnsight.tracing import globals as tracing_globals
        from nnsight.tracing.tracer import dec, inc

        t0 = time.perf_counter()
        # The caches are keyed by the client's filename and never re-validated.
        tracing_globals.SOURCES.clear()
        tracing_globals.BLOCKS.clear()
        tracer = RequestModel.deserialize(blob, self.model._remoteable_persistent_objects(), compress=job.compress)
        frame = tracer.info.frame
        job.shipped_globals = sorted(frame.f_globals)
        job.shipped_locals = sorted(frame.f_locals)
        recorder = _PushRecorder(frame.f_locals)
        frame.f_locals = recorder
        self.model._remoteable_set_env(job.env)
        inc()  # trace depth 1: push_result hands back only the .save()d values
        try:
            tracer.execute(tracer.info.code)
        finally:
            dec()
            tracer.info.frame = None
        saves = {name: recorder[name] for name in recorder.pushed}
        job.saved = list(saves)
        buffer = io.BytesIO()
        torch.save(saves, buffer)
        data = buffer.getvalue()
        if job.compress:
            import zstandard

            data = zstandard.ZstdCompressor(level=6).compress(data)
        job.result_bytes = len(data)
        job.execution_s = round(time.perf_counter() - t0, 4)
        return data

    async def _run_job(self, job: Job, blob: bytes) -> None:
        await self._emit(job, "QUEUED", "Your job has been queued.")
        if job.fault and job.fault.startswith("drop:ws"):
            await self._drop_ws(job, job.fault.partition(":")[2])
        if job.fault == "error":
            job.error = self.faults["error_message"]
            await self._emit(job, "ERROR", self.faults["error_message"])
            return
        if self.faults["queue_delay"]:
            await asyncio.sleep(float(self.faults["queue_delay"]))
        await self._emit(job, "RUNNING", "Your job has started running.")
        loop = asyncio.get_running_loop()
        try:
            data = await loop.run_in_executor(self.executor, self._execute, job, blob)
        except Exception as error:  # noqa: BLE001 - any failure is the job's ERROR
            tb = "".join(traceback.format_exception(error))
            job.error = f"{type(error).__name__}: {error}"
            _log(f"job {job.id}: ERROR {job.error}")
            await self._emit(job, "ERROR", f"{type(error).__name__}: {error}\n\nServer traceback:\n{tb}")
            return
        finally:
            self.touch()
        self.results[job.id] = data
        meta = {"mock": True, "execution_s": job.execution_s, "result_bytes": len(data)}
        await self._emit(job, "COMPLETED", "Your job has been completed.", data=f"{self.base_url}/result/{job.id}",
                         meta=meta, inline=data if self.faults["inline_results"] else None)
        _log(f"job {job.id}: COMPLETED in {job.execution_s}s, saved {job.saved}")

    # -- handlers ----------------------------------------------------------------------------

    async def subscribe(self, request):
        web = self.web
        self.touch()
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        session_id = uuid.uuid4().hex
        self.sessions[session_id] = (ws, request)
        try:
            await ws.send_str(json.dumps({"session_id": session_id}))
            async for _ in ws:  # the client never sends; just wait for it to close
                pass
        finally:
            self.sessions.pop(session_id, None)
        return ws

    async def post_request(self, request):
        from nnsight.schema.request import RequestModel
        from nnsight.schema.response import ResponseModel

        web = self.web
        self.touch()
        api_key = request.headers.get("ndif-api-key")
        if api_key != self.api_key:
            self.rejected.append({"at": time.time(), "api_key": api_key})
            return web.json_response({"detail": INVALID_KEY_DETAIL}, status=401)
        form = await request.post()
        envelope = RequestModel.model_validate_json(form["data"])
        blob = form["blob"].file.read()
        job = Job(
            id=str(uuid.uuid4()),
            received_at=time.time(),
            model_key=envelope.model_key,
            session_id=envelope.session_id,
            compress=envelope.compress,
            env=dict(envelope.env),
            nnsight_version=request.headers.get("nnsight-version", ""),
            python_version=request.headers.get("python-version", ""),
            payload_bytes=len(blob),
        )
        self.jobs[job.id] = job
        job.fault = self._take_fault()
        _log(f"job {job.id}: received {len(blob)} bytes for {job.model_key} (fault={job.fault})")
        if self.faults["delay"]:
            await asyncio.sleep(float(self.faults["delay"]))
        if job.fault == "drop:http":
            job.status = "DROPPED"
            job.statuses.append("DROPPED")
            _log(f"job {job.id}: POST connection dropped (http)")
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)  # never reaches the client: the connection is gone
        problem = self._check_model_key(job.model_key)
        if problem is not None:
            job.error = problem
            job.status = "ERROR"
            job.statuses.append("ERROR")
            response = ResponseModel(id=job.id, status="ERROR", description=problem)
            return web.Response(text=response.model_dump_json(), content_type="application/json")
        job.statuses.append("RECEIVED")
        response = ResponseModel(id=job.id, status="RECEIVED",
                                 description="Your job has been received and is waiting to be queued.")
        self.responses[job.id] = response.model_dump_json()
        task = asyncio.get_running_loop().create_task(self._run_job(job, blob))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.Response(text=response.model_dump_json(), content_type="application/json")

    async def get_response(self, request):
        web = self.web
        self.touch()
        text = self.responses.get(request.match_info["id"])
        if text is None:
            return web.json_response({"detail": "not found"}, status=404)
        return web.Response(text=text, content_type="application/json")

    async def get_result(self, request):
        web = self.web
        self.touch()
        data = self.results.pop(request.match_info["id"], None)
        if data is None:
            return web.json_response({"detail": "not found"}, status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def ping(self, request):
        return self.web.json_response("pong")

    async def admin_faults(self, request):
        web = self.web
        if request.method == "POST":
            body = await request.json()
            if body.pop("reset", False):
                self.faults = dict(DEFAULT_FAULTS)
            unknown = set(body) - set(DEFAULT_FAULTS)
            if unknown:
                return web.json_response({"detail": f"unknown faults {sorted(unknown)}"}, status=400)
            if body.get("drop_mode", self.faults["drop_mode"]) not in DROP_MODES:
                return web.json_response({"detail": f"drop_mode must be one of {DROP_MODES}"}, status=400)
            self.faults.update(body)
        return web.json_response(self.faults)

    async def admin_jobs(self, request):
        return self.web.json_response({"jobs": [job.record() for job in self.jobs.values()],
                                       "rejected": self.rejected})

    async def admin_shutdown(self, request):
        self.stop_event.set()
        return self.web.json_response({"stopping": True})

    def app(self):
        web = self.web
        app = web.Application(client_max_size=1 << 30)
        app.router.add_get("/subscribe", self.subscribe)
        app.router.add_post("/request", self.post_request)
        app.router.add_get("/response/{id}", self.get_response)
        app.router.add_get("/result/{id}", self.get_result)
        app.router.add_get("/ping", self.ping)
        app.router.add_route("*", "/_admin/faults", self.admin_faults)
        app.router.add_get("/_admin/jobs", self.admin_jobs)
        app.router.add_post("/_admin/shutdown", self.admin_shutdown)
        return app

    # -- lifetime ----------------------------------------------------------------------------

    async def _watchdog(self, parent_pid: int) -> None:
        args = self.args
        while not self.stop_event.is_set():
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if now - self.started > args.max_lifetime:
                _log(f"max lifetime {args.max_lifetime}s reached, exiting")
                break
            if now - self.last_activity > args.idle_timeout and not self.tasks:
                _log(f"idle for {args.idle_timeout}s, exiting")
                break
            if parent_pid and os.getppid() != parent_pid:
                _log("parent process died, exiting")
                break
        self.stop_event.set()

    async def serve(self) -> None:
        web = self.web
        self.stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.args.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        if self.args.port_file:
            tmp = Path(f"{self.args.port_file}.tmp")
            tmp.write_text(str(port))
            tmp.replace(self.args.port_file)
        _log(f"listening on {self.base_url}")
        self.touch()  # the idle timeout counts from here, the max lifetime from process start
        watchdog = loop.create_task(self._watchdog(self.args.parent_pid))
        await self.stop_event.wait()
        watchdog.cancel()
        try:
            await asyncio.wait_for(runner.cleanup(), timeout=3)
        except Exception as error:  # noqa: BLE001
            _log(f"cleanup: {error!r}")


def _cli_faults(args: argparse.Namespace) -> dict:
    return {
        "error_next": args.error_next,
        "error_message": args.error_message or DEFAULT_FAULTS["error_message"],
        "drop_next": args.drop_next,
        "drop_mode": args.drop_mode,
        "delay": args.delay,
        "queue_delay": args.queue_delay,
        "inline_results": args.inline_results,
    }


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM us when the parent dies (best effort)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the parent-pid poll still covers it
        pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", default=None)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--repo-id", action="append", default=[],
                        help="extra repo ids accepted in model keys (the model dir is always accepted)")
    parser.add_argument("--refuse", action="append", default=None,
                        help=f"top-level packages whose import is refused (default {REFUSED_PACKAGES})")
    parser.add_argument("--max-lifetime", type=float, default=300.0)
    parser.add_argument("--idle-timeout", type=float, default=120.0)
    parser.add_argument("--parent-pid", type=int, default=0, help="exit when this is no longer our parent")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--error-next", type=int, default=0)
    parser.add_argument("--error-message", default=None)
    parser.add_argument("--drop-next", type=int, default=0)
    parser.add_argument("--drop-mode", choices=DROP_MODES, default="ws_abort")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--queue-delay", type=float, default=0.0)
    parser.add_argument("--inline-results", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # First, before nnsight/torch are imported and long before anything is deserialized.
    install_import_guard(tuple(args.refuse or REFUSED_PACKAGES))
    _die_with_parent()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    server = MockNdif(args)
    try:
        asyncio.run(server.serve())
    finally:
        server.executor.shutdown(wait=False, cancel_futures=True)
    _log("stopped")
    # A job stuck in the worker thread must not keep the process alive.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
