"""`clas-graph run` / `stats` / `eval`: the experiment a spec describes, recorded in a run directory."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from safetensors.torch import save

from ..compile.compiler import compile_plans
from ..compile.emit import emit_source
from ..errors import CompileError, SpecError
from ..execution import Execution, preflight, use
from ..loading import check_remote_model, load_model_for_spec
from ..records import RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text
from ..report.evaluation import deltas_figure, summary_markdown, task_table
from ..spec.rows import FixedAnchor
from ..spec.backend import NdifBackend
from ..spec.run_spec import RunSpec
from .evaluate import evaluate
from .preflight import check_task_data
from .stats import ensure_stats, existing_stats, report_stats


def _save_plans(run: RunDir, plans: dict) -> None:
    atomic_write_json(run.path / "plan.json", {name: plan.to_json() for name, plan in plans.items()})
    tensors = {f"{name}/{key}": value.contiguous() for name, plan in plans.items() for key, value in plan.tensors().items()}
    if tensors:
        atomic_write_bytes(run.path / "plan.safetensors", save(tensors))
    for name, plan in plans.items():
        atomic_write_text(run.path / "traces" / f"{name}.py", emit_source(plan))


def _seeds(spec: RunSpec) -> dict:
    seeds = {f"tasks[{i}].seed": getattr(task, "seed", None) or getattr(getattr(task, "corpus", None), "seed", None)
             for i, task in enumerate(spec.tasks)}
    if spec.stats is not None:
        seeds["stats.corpus.seed"] = spec.stats.corpus.seed
    return seeds


def execution_for(spec: RunSpec, remote: bool | str | None = None) -> Execution:
    """The spec's backend, or `--remote` (True, or a host URL) from the command line."""
    backend = spec.backend
    if remote:
        host = remote if isinstance(remote, str) else getattr(backend, "host", None)
        backend = NdifBackend(host=host, **({} if not isinstance(backend, NdifBackend) else
                                            backend.model_dump(exclude={"kind", "host"})))
    if isinstance(backend, NdifBackend):
        return Execution(remote=backend.host or True, retries=backend.retries, backoff_s=backend.backoff_s,
                         session_batches=backend.session_batches, stack_rows=spec.stack_rows)
    return Execution(stack_rows=spec.stack_rows)


def _start(spec: RunSpec, runs_root: Path, console: Console, execution: Execution, *, tasks: bool = True,
           stats_corpus: bool = True) -> RunDir:
    if execution.is_remote and execution.remote != "local":
        check_remote_model(spec)  # a local folder or the embedded model: one sentence before any work
    preflight(execution)  # no key or no host: one sentence before any work
    # every task's data (and the statistics corpus) loads before any model work and before a run directory exists
    check_task_data(spec, runs_root, tasks=tasks, stats_corpus=stats_corpus)
    run_dir = RunDir.for_spec(spec, runs_root)
    console.print(f"[bold]{spec.name}[/] → {run_dir.path}")
    run_dir.start(spec, backend={**execution.describe(), "device": spec.model.device}, seeds=_seeds(spec))
    return run_dir


def _recorded(run_dir: RunDir, execution: Execution, work):
    """Run `work()` under `execution`, recording failure or interruption and remote job ids in the manifest
    (finished units stay on disk)."""
    try:
        with use(execution):
            result = work()
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        run_dir.update_manifest(status=status, error=f"{type(exc).__name__}: {exc}"[:2000],
                                backend=execution.describe())
        raise
    run_dir.update_manifest(status="complete", backend=execution.describe())
    return result


def run(spec: RunSpec, *, runs_root: Path = Path("runs"), console: Console | None = None,
        compute_stats: bool = True, remote: bool | str | None = None) -> Path:
    """Statistics when the spec needs them, then every task for base and every condition, then the report."""
    console = console or Console()
    if not spec.tasks:
        raise SpecError("the spec has no `tasks:` to evaluate", where=spec.source or "<spec>",
                        fix="add e.g. `tasks: [{kind: lm_loss}]` (or use `clas-graph stats` for statistics only)")
    execution = execution_for(spec, remote)
    run_dir = _start(spec, runs_root, console, execution, stats_corpus=compute_stats)

    def work():
        model = load_model_for_spec(spec, console=console, remote=execution.is_remote and execution.remote != "local")
        stats = None
        if spec.stats is not None:
            if compute_stats:
                stats = ensure_stats(spec, model, run_dir.path, runs_root, console=console)
            else:
                stats = existing_stats(spec, runs_root)
                if stats is None and spec.needs_stats:
                    raise CompileError("no statistics for this spec yet", where=f"{spec.source}: stats",
                                       fix="run `clas-graph stats SPEC` first, or `clas-graph run SPEC`")
            if stats is not None:
                report_stats(stats, run_dir.path, console, title=f"{spec.name}: neuron categories per layer")
        from .analyze import check_analysis

        if spec.sweep is not None:  # dev phase, selection, held-out phase (runners/sweep.py)
            from .sweep import run_sweep

            plans = {}

            def compiled(sweep_plans: dict) -> None:
                plans.update(sweep_plans)
                _save_plans(run_dir, sweep_plans)
                if spec.analysis is not None:  # before the dev phase: every point the choice could pick
                    check_analysis(spec, model, sweep_plans)

            document = run_sweep(spec, model, stats, run_dir.path, console=console, save_plans=compiled)
        else:
            plans = compile_plans(spec, model, stats)
            _save_plans(run_dir, plans)
            if spec.analysis is not None:  # its layers are checked before evaluation spends any time
                check_analysis(spec, model, plans)
            document = evaluate(spec, model, plans, run_dir.path, console=console)
        report(spec, document, run_dir.path, console, stats.meta if stats is not None else None)
        if spec.analysis is not None:  # after the report: it relates alignment to the metrics (and a sweep's choice)
            from .analyze import analyze

            analyze(spec, model, plans, run_dir.path, console=console, metrics=document)
        return run_dir.path

    return _recorded(run_dir, execution, work)


def report(spec: RunSpec, document: dict, path: Path, console: Console, stats_meta: dict | None) -> None:
    anchor = spec.anchor.language if isinstance(spec.anchor, FixedAnchor) else None
    for key, task in document["tasks"].items():
        console.print(task_table(key, task, anchor))
    deltas_figure(document, path / "figures" / "deltas.png")
    for key, task in document["tasks"].items():
        if task["kind"] == "language_steering":  # issue 13: source x target matrix
            from ..report.steering import steering_matrix_figure
            steering_matrix_figure(key, task, path / "figures" / f"{key}_matrix.png")
    text = summary_markdown(document, spec_name=spec.name, model=spec.model.display_name, stats_meta=stats_meta)
    if "sweep" in document:
        from ..report.sweep import report_sweep

        text = report_sweep(document, path, console, text)
    atomic_write_text(path / "summary.md", text)
    findings = text.split("## Findings\n\n", 1)[1].split("\n\n", 1)[0]
    console.print(findings, markup=False, highlight=False)


def run_stats(spec: RunSpec, *, runs_root: Path = Path("runs"), console: Console | None = None,
              remote: bool | str | None = None) -> Path:
    """`clas-graph stats`: the statistics alone (reused when cached), with table and figure."""
    console = console or Console()
    if spec.stats is None:
        raise SpecError("the spec has no `stats:` section", where=spec.source or "<spec>",
                        fix="add e.g. `stats: {corpus: {kind: bible, limit: 100}}`")
    execution = execution_for(spec, remote)
    run_dir = _start(spec, runs_root, console, execution, tasks=False)

    def work():
        model = load_model_for_spec(spec, console=console, remote=execution.is_remote and execution.remote != "local")
        artifact = ensure_stats(spec, model, run_dir.path, runs_root, console=console)
        figure = report_stats(artifact, run_dir.path, console, title=f"{spec.name}: neuron categories per layer")
        console.print(f"artifact: {run_dir.path / 'stats.safetensors'}\nfigure:   {figure}")
        return run_dir.path

    return _recorded(run_dir, execution, work)
