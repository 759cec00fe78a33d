"""`clas-graph run`: the whole experiment a spec describes, recorded in a run directory."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from safetensors.torch import save

from ..compile import compile_plans, emit_source
from ..loading import load_model_for_spec
from ..records import RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text
from ..report.tables import probe_table
from ..spec import FixedAnchor, NextTokenTask, RunSpec
from .probe import run_probe
from .stats import ensure_stats, report_stats


def _save_plans(run: RunDir, plans: dict) -> None:
    atomic_write_json(run.path / "plan.json", {name: plan.to_json() for name, plan in plans.items()})
    tensors = {f"{name}/{key}": value.contiguous() for name, plan in plans.items() for key, value in plan.tensors().items()}
    if tensors:
        atomic_write_bytes(run.path / "plan.safetensors", save(tensors))
    for name, plan in plans.items():
        atomic_write_text(run.path / "traces" / f"{name}.py", emit_source(plan))


def _write_samples(run: RunDir, task_kind: str, samples: dict) -> None:
    for condition, by_language in samples.items():
        for language, rows in by_language.items():
            text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            atomic_write_text(run.path / "samples" / f"{task_kind}_{language}_{condition}.jsonl", text)


def run(spec: RunSpec, *, runs_root: Path = Path("runs"), console: Console | None = None) -> Path:
    """Run every task of `spec` for base and every condition; returns the run directory."""
    console = console or Console()
    run_dir = RunDir.for_spec(spec, runs_root)
    console.print(f"[bold]run[/] {spec.name} → {run_dir.path}")
    run_dir.start(spec, backend={"kind": "local", "device": spec.model.device}, seeds=_seeds(spec))
    try:
        model = load_model_for_spec(spec, console=console)
        stats = None
        if spec.stats is not None:
            stats = ensure_stats(spec, model, run_dir.path, runs_root, console=console)
            report_stats(stats, run_dir.path, console, title=f"{spec.name}: neuron categories per layer")
        plans = compile_plans(spec, model, stats)
        _save_plans(run_dir, plans)
        anchor = spec.anchor.language if isinstance(spec.anchor, FixedAnchor) else None
        results = {}
        for task in spec.tasks:
            if isinstance(task, NextTokenTask):
                with console.status(f"next-token probe: {len(plans)} conditions × {len(spec.languages)} languages"):
                    out = run_probe(model, plans, task, list(spec.languages), batch_size=spec.batch_size,
                                    max_length=spec.max_length, base_dir=Path(spec.source).parent if spec.source else None)
                _write_samples(run_dir, task.kind, out["samples"])
                results[task.kind] = out["metrics"]
                console.print(probe_table(out["metrics"], list(spec.languages), anchor,
                                          title=f"{spec.name}: next-token probe ({task.corpus.limit} parallel verses)"))
        atomic_write_json(run_dir.path / "metrics.json", {"schema_version": 1, "spec_hash": run_dir.spec_hash,
                                                          "tasks": results})
    except BaseException as exc:
        run_dir.update_manifest(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                                error=str(exc)[:2000])
        raise
    run_dir.update_manifest(status="complete")
    return run_dir.path


def _seeds(spec: RunSpec) -> dict:
    seeds = {f"tasks[{i}].corpus.seed": task.corpus.seed for i, task in enumerate(spec.tasks)}
    if spec.stats is not None:
        seeds["stats.corpus.seed"] = spec.stats.corpus.seed
    return seeds


def run_stats(spec: RunSpec, *, runs_root: Path = Path("runs"), console: Console | None = None) -> Path:
    """`clas-graph stats`: the statistics alone (reused when cached), with table and figure."""
    console = console or Console()
    if spec.stats is None:
        from ..errors import SpecError

        raise SpecError("the spec has no `stats:` section", where=spec.source or "<spec>",
                        fix="add e.g. `stats: {corpus: {kind: bible, limit: 100}}`")
    run_dir = RunDir.for_spec(spec, runs_root)
    run_dir.start(spec, backend={"kind": "local", "device": spec.model.device}, seeds=_seeds(spec))
    model = load_model_for_spec(spec, console=console)
    artifact = ensure_stats(spec, model, run_dir.path, runs_root, console=console)
    figure = report_stats(artifact, run_dir.path, console, title=f"{spec.name}: neuron categories per layer")
    console.print(f"artifact: {run_dir.path / 'stats.safetensors'}\nfigure:   {figure}")
    return run_dir.path
