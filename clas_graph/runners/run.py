"""`clas-graph run` / `stats` / `eval`: the experiment a spec describes, recorded in a run directory."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from safetensors.torch import save

from ..compile.compiler import compile_plans
from ..compile.emit import emit_source
from ..errors import CompileError, SpecError
from ..loading import load_model_for_spec
from ..records import MetricsDocument, RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text
from ..report.evaluation import deltas_figure, evaluation_summary, task_table
from ..report.sweep import report_sweep
from ..spec.rows import FixedAnchor
from ..spec.run_spec import RunSpec
from ..tasks.base import task_runners
from .analyze import analyze, check_analysis
from .evaluate import evaluate
from .lifecycle import executor_for, recorded, start_run
from .stats import ensure_stats, existing_stats, report_stats
from .sweep import run_sweep


def _save_plans(run: RunDir, plans: dict) -> None:
    atomic_write_json(run.path / "plan.json", {name: plan.to_json() for name, plan in plans.items()})
    # each its own copy: safetensors refuses tensors that share memory (one tensor an op uses in two layers)
    tensors = {f"{name}/{key}": value.contiguous().clone()
               for name, plan in plans.items() for key, value in plan.tensors().items()}
    if tensors:
        atomic_write_bytes(run.path / "plan.safetensors", save(tensors))
    for name, plan in plans.items():
        atomic_write_text(run.path / "traces" / f"{name}.py", emit_source(plan))


def run(spec: RunSpec, *, runs_root: Path = Path("runs"), console: Console | None = None,
        compute_stats: bool = True, remote: bool | str | None = None) -> Path:
    """Statistics when the spec needs them, then every task for base and every condition, then the report."""
    console = console or Console()
    if not spec.tasks:
        raise SpecError("the spec has no `tasks:` to evaluate", where=spec.source or "<spec>",
                        fix="add e.g. `tasks: [{kind: lm_loss}]` (or use `clas-graph stats` for statistics only)")
    executor = executor_for(spec, remote)
    run_dir = start_run(spec, runs_root, console, executor, stats_corpus=compute_stats)

    def work():
        model = load_model_for_spec(spec, console=console, remote=executor.weights_on_server)
        stats = None
        if spec.stats is not None:
            if compute_stats:
                stats = ensure_stats(spec, model, run_dir.path, runs_root, console=console)
            else:
                stats = existing_stats(spec, runs_root)
                if stats is None and spec.needs_stats:
                    raise CompileError("no statistics for this spec yet", where=f"{spec.place('stats')}: stats",
                                       fix="run `clas-graph stats SPEC` first, or `clas-graph run SPEC`")
            if stats is not None:
                report_stats(stats, run_dir.path, console, title=f"{spec.name}: neuron categories per layer")
        if spec.sweep is not None:  # dev phase, selection, held-out phase (runners/sweep.py)
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
            analyze(spec, model, plans, run_dir.path, console=console, metrics=document)
        return run_dir.path

    return recorded(run_dir, executor, work)


def report(spec: RunSpec, document: dict, path: Path, console: Console, stats_meta: dict | None) -> None:
    anchor = spec.anchor.language if isinstance(spec.anchor, FixedAnchor) else None
    typed = MetricsDocument.model_validate(document)
    for key, task in typed.tasks.items():
        console.print(task_table(key, task, anchor))
    deltas_figure(typed, path / "figures" / "deltas.png")
    for runner in task_runners(spec):
        runner.task.report(runner.key, typed.tasks[runner.key], path)
    summary = evaluation_summary(typed, spec_name=spec.name, model=spec.model.display_name, stats_meta=stats_meta)
    if "sweep" in document:
        report_sweep(document, path, console, summary)
    atomic_write_text(path / "summary.md", summary.markdown())
    console.print("\n".join(summary.findings), markup=False, highlight=False)


def run_stats(spec: RunSpec, *, runs_root: Path = Path("runs"), console: Console | None = None,
              remote: bool | str | None = None) -> Path:
    """`clas-graph stats`: the statistics alone (reused when cached), with table and figure."""
    console = console or Console()
    if spec.stats is None:
        raise SpecError("the spec has no `stats:` section", where=spec.source or "<spec>",
                        fix="add e.g. `stats: {corpus: {kind: bible, limit: 100}}`")
    executor = executor_for(spec, remote)
    run_dir = start_run(spec, runs_root, console, executor, tasks=False)

    def work():
        model = load_model_for_spec(spec, console=console, remote=executor.weights_on_server)
        artifact = ensure_stats(spec, model, run_dir.path, runs_root, console=console)
        figure = report_stats(artifact, run_dir.path, console, title=f"{spec.name}: neuron categories per layer")
        console.print(f"artifact: {run_dir.path / 'stats.safetensors'}\nfigure:   {figure}")
        return run_dir.path

    return recorded(run_dir, executor, work)
