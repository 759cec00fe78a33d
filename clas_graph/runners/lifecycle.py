"""What every command that writes a run directory does around its work: choose the executor, check what can
be checked before any model work, create or reuse the run directory, and record how the work ended."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from rich.console import Console

from ..execution.context import use
from ..execution.executor import Executor
from ..execution.local import LocalExecutor
from ..execution.ndif import NdifExecutor
from ..loading import check_remote_model
from ..records import RunDir
from ..spec.backend import NdifBackend
from ..spec.run_spec import RunSpec
from .preflight import check_task_data

T = TypeVar("T")


def executor_for(spec: RunSpec, remote: bool | str | None = None) -> Executor:
    """The spec's backend, or `--remote` (True, or a host URL) from the command line."""
    backend = spec.backend
    if remote:
        host = remote if isinstance(remote, str) else getattr(backend, "host", None)
        backend = NdifBackend(host=host, **({} if not isinstance(backend, NdifBackend) else
                                            backend.model_dump(exclude={"kind", "host"})))
    if isinstance(backend, NdifBackend):
        return NdifExecutor(backend.host or True, retries=backend.retries, backoff_s=backend.backoff_s,
                            session_batches=backend.session_batches, stack_rows=spec.stack_rows)
    return LocalExecutor(stack_rows=spec.stack_rows)


def seeds(spec: RunSpec) -> dict:
    """Every seed the spec sets, by field (for the manifest)."""
    out = {f"tasks[{i}].seed": getattr(task, "seed", None) or getattr(getattr(task, "corpus", None), "seed", None)
           for i, task in enumerate(spec.tasks)}
    if spec.stats is not None:
        out["stats.corpus.seed"] = spec.stats.corpus.seed
    return out


def start_run(spec: RunSpec, runs_root: Path, console: Console, executor: Executor, *, tasks: bool = True,
              stats_corpus: bool = True) -> RunDir:
    """Checks before any model work (remote model, key and host, every task's data and the statistics corpus),
    then the spec's run directory (reused when it exists) with its spec and manifest written."""
    if executor.weights_on_server:
        check_remote_model(spec)  # a local folder or the embedded model: one sentence before any work
    executor.preflight()  # no key or no host: one sentence before any work
    # every task's data (and the statistics corpus) loads before any model work and before a run directory exists
    check_task_data(spec, runs_root, tasks=tasks, stats_corpus=stats_corpus)
    run_dir = RunDir.for_spec(spec, runs_root, console=console)  # locked until `recorded` ends
    try:
        console.print(f"[bold]{spec.name}[/] → {run_dir.path}")
        run_dir.start(spec, backend={**executor.describe(), "device": spec.model.device}, seeds=seeds(spec),
                      console=console)
    except BaseException:
        run_dir.release()
        raise
    return run_dir


def recorded(run_dir: RunDir, executor: Executor, work: Callable[[], T]) -> T:
    """Run `work()` under `executor`, recording failure or interruption and remote job ids in the manifest
    (finished units stay on disk), then give the run directory's lock back."""
    try:
        try:
            with use(executor):
                result = work()
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            run_dir.update_manifest(status=status, error=f"{type(exc).__name__}: {exc}"[:2000],
                                    backend=executor.describe())
            raise
        run_dir.update_manifest(status="complete", backend=executor.describe())
        return result
    finally:
        run_dir.release()
