"""The `clas-graph` command line: one function per subcommand.

User errors (bad spec, model that does not fit, missing weights) print one
readable message and exit with status 2; no traceback.
"""

from __future__ import annotations

import json
import sys
from functools import wraps
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from .errors import ClasGraphError, SpecError, os_error_message
from .spec.load import load_spec
from .spec.plugins import spec_model
from .spec.schema import editor_schema
from .spec.sweep import expand

# `--help`, `validate` and `schema` need the spec layer only: each command that runs or compiles a model imports
# what it needs (torch, nnsight, matplotlib) when it runs.

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Declarative activation interventions (CLAS and friends) compiled into nnsight traces.")
# Rich wraps at 80 columns when output is not a terminal; logs and CI read better wider.
out = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=160)


# `--set KEY=VALUE` (repeatable), shared by every command that reads a spec: declare a parameter
# `overrides: Overrides = None` and pass it to `load_spec(path, overrides or ())`.
Overrides = Annotated[Optional[List[str]], typer.Option(
    "--set", metavar="KEY=VALUE",
    help="Override a spec field before validation (repeatable). KEY is a dotted path, list items by index "
         "(tasks.0.limit); VALUE is YAML: --set model.path=/data/llama --set 'languages=[en, de]'.")]

# Options shared by the commands that run a model (stats, eval, run, analyze).
RunsDir = Annotated[Path, typer.Option(help="Where run directories go.")]
Remote = Annotated[bool, typer.Option("--remote", help="Run on NDIF (needs NDIF_API_KEY).")]
NdifHost = Annotated[Optional[str], typer.Option(help="NDIF host URL (implies --remote).")]


DEBUG_ENV = "CLAS_GRAPH_DEBUG"
_debug = {"on": False}


@app.callback()
def main(debug: bool = typer.Option(
        False, "--debug", envvar=DEBUG_ENV,
        help=f"Show the full traceback of user errors too (for bug reports); or set {DEBUG_ENV}=1.")):
    """Declarative activation interventions (CLAS and friends) compiled into nnsight traces."""
    _debug["on"] = debug


def _say_error(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


def user_errors(command):
    """Turn ClasGraphError and operating-system errors (disk full, permission denied, ...) into a one-message
    exit 2 (with `--debug`: the traceback), Ctrl-C into exit 130."""
    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ClasGraphError as exc:
            if _debug["on"]:
                raise
            _say_error(str(exc))
            raise typer.Exit(2) from None
        except OSError as exc:
            if _debug["on"]:
                raise
            _say_error(os_error_message(exc))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]: finished results are saved; rerun the same command to continue")
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@user_errors
def validate(files: List[Path] = typer.Argument(..., help="Spec files (YAML or JSON)."),
             overrides: Overrides = None):
    """Validate spec files without loading any model."""
    failed = 0
    for path in files:
        try:
            spec = load_spec(path, overrides or ())
        except ClasGraphError as exc:
            failed += 1
            err.print(f"[bold red]✗[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            continue
        expansion = expand(spec)
        grid = f" ({len(expansion.points)} sweep grid point(s))" if expansion.points else ""
        out.print(f"[green]✓[/] {escape(str(path))}: '{spec.name}' on {escape(spec.model.display_name)}, "
                  f"{len(spec.interventions)} intervention(s), {len(expansion.spec.resolved_conditions)} condition(s)"
                  f"{grid}", soft_wrap=True)
    if failed:
        raise typer.Exit(2)


@app.command()
@user_errors
def schema(plugin: Optional[List[str]] = typer.Option(
        None, metavar="MODULE", help="Also a plugin module's kinds (repeatable); installed plugins are included.")):
    """Print the JSON Schema of spec files (for editor completion and validation; include-aware: files that
    include others, or are included, validate too)."""
    sys.stdout.write(json.dumps(editor_schema(spec_model(tuple(plugin or ()))), indent=2) + "\n")


@app.command("compile")
@user_errors
def compile_(spec_file: Path = typer.Argument(..., help="Spec file."),
             condition: Optional[str] = typer.Option(None, help="Only this condition (default: all)."),
             runs_dir: Path = typer.Option(Path("runs"), help="Where to look for computed statistics."),
             overrides: Overrides = None):
    """Print the plan and the generated nnsight trace source for each condition. Runs no model."""
    from .compile.emit import emit_source
    from .loading import load_config_for_spec
    from .report.sweep import conditions_table
    from .runners.stats import existing_stats
    from .runners.sweep import compile_condition

    spec = load_spec(spec_file, overrides or ())
    config = load_config_for_spec(spec)
    stats = None
    if spec.needs_stats:
        stats = existing_stats(spec, runs_dir)
    expansion = expand(spec)  # a sweep's grid points become ordinary conditions
    if expansion.points:
        out.print(conditions_table(expansion))
    names = [condition] if condition else list(expansion.spec.resolved_conditions)
    for name in names:
        plan = compile_condition(expansion, config, name, stats)
        table = Table(title=escape(f"plan '{name}' on {plan.model_type} ({plan.dims.num_layers} layers, "
                            f"{plan.dims.intermediate_size} intermediate)"), title_justify="left")
        for column in ("#", "layer", "site", "intervention", "rows", "params"):
            table.add_column(column)
        for index, op in enumerate(plan.ops):
            params = " ".join(f"{k}={v}" for k, v in op.params.items())
            table.add_row(str(index), str(op.layer), op.site, escape(f"{op.kind} '{op.intervention}'"),
                          op.rows.describe(), params)
        out.print(table)
        source = emit_source(plan)
        if sys.stdout.isatty():
            out.print(Syntax(source, "python", theme="ansi_dark"))
        else:
            sys.stdout.write(source + "\n")


@app.command()
@user_errors
def stats(spec_file: Path = typer.Argument(..., help="Spec file with a `stats:` section."),
          runs_dir: RunsDir = Path("runs"),
          remote: Remote = False,
          ndif_host: NdifHost = None,
          overrides: Overrides = None):
    """Neuron statistics: categories per layer, bridge layers, masks (reused when already computed)."""
    from .runners.run import run_stats

    run_stats(load_spec(spec_file, overrides or ()), runs_root=runs_dir, console=out, remote=ndif_host or remote)


@app.command("eval")
@user_errors
def eval_(spec_file: Path = typer.Argument(..., help="Spec file."),
          runs_dir: RunsDir = Path("runs"),
          remote: Remote = False,
          ndif_host: NdifHost = None,
          overrides: Overrides = None):
    """Evaluation alone: every task for base and each condition (statistics must already exist if needed)."""
    from .runners.run import run as run_experiment

    path = run_experiment(load_spec(spec_file, overrides or ()), runs_root=runs_dir, console=out, compute_stats=False,
                    remote=ndif_host or remote)
    out.print(f"[green]done[/]: {escape(str(path))}")


@app.command()
@user_errors
def run(spec_file: Path = typer.Argument(..., help="Spec file."),
        runs_dir: RunsDir = Path("runs"),
        remote: Remote = False,
        ndif_host: NdifHost = None,
        overrides: Overrides = None):
    """Run the experiment a spec describes and record it under runs/."""
    from .runners.run import run as run_experiment

    spec = load_spec(spec_file, overrides or ())
    path = run_experiment(spec, runs_root=runs_dir, console=out, remote=ndif_host or remote)
    out.print(f"[green]done[/]: {escape(str(path))}")


@app.command()
@user_errors
def analyze(spec_file: Path = typer.Argument(..., help="Spec file (its `analysis:` section, or the defaults)."),
            runs_dir: RunsDir = Path("runs"),
            remote: Remote = False,
            ndif_host: NdifHost = None,
            overrides: Overrides = None):
    """Alignment and separation of languages before/after each condition, related to the run's gains (figures)."""
    from .runners.analyze import run_analysis

    path = run_analysis(load_spec(spec_file, overrides or ()), runs_root=runs_dir, console=out,
                        remote=ndif_host or remote)
    out.print(f"[green]done[/]: {escape(str(path / 'analysis.json'))}")


@app.command("lm-eval")
@user_errors
def lm_eval_(spec_file: Path = typer.Argument(..., help="Spec file."),
             tasks: str = typer.Option(..., help="lm-eval task names, comma-separated (e.g. xnli_de,xnli_fr)."),
             condition: str = typer.Option("base", help="The spec's condition to apply (base: the unmodified model)."),
             language: Optional[List[str]] = typer.Option(
                 None, metavar="TASK=LANG", help="Row language of a task (repeatable); default: the task name's last "
                                                 "`_` part when it is a spec language (xnli_de -> de)."),
             limit: Optional[int] = typer.Option(None, help="Documents per task (lm-eval's --limit)."),
             num_fewshot: Optional[int] = typer.Option(None, help="Few-shot examples (lm-eval's --num_fewshot)."),
             include_path: Optional[Path] = typer.Option(None, help="Folder with more lm-eval task configs."),
             output_path: Optional[Path] = typer.Option(None, help="Where lm-eval writes its results file."),
             apply_chat_template: bool = typer.Option(
                 False, help="Wrap prompts in the tokenizer's chat template (lm-eval's --apply_chat_template)."),
             system_instruction: Optional[str] = typer.Option(
                 None, help="A system message before each prompt (lm-eval's --system_instruction)."),
             fewshot_as_multiturn: Optional[bool] = typer.Option(
                 None, "--fewshot-as-multiturn/--no-fewshot-as-multiturn",
                 help="Few-shot examples as chat turns; default: on with --apply-chat-template (lm-eval's rule)."),
             trust_remote_code: bool = typer.Option(
                 False, "--trust-remote-code",
                 help="Let task files from --include-path run their Python (`!function`), as lm-eval's option."),
             runs_dir: RunsDir = Path("runs"),
             overrides: Overrides = None):
    """lm-evaluation-harness tasks under one condition of a spec; lm-eval's metrics and results file."""
    try:  # an optional extra: the other commands work without it
        from .harness import run_harness
    except ImportError as exc:
        raise SpecError(str(exc), where="clas-graph lm-eval", fix="pip install 'clas-graph[lm-eval]'") from None
    from lm_eval.utils import make_table

    pairs = {}
    for item in language or []:
        name, sep, code = item.partition("=")
        if not sep or not name or not code:
            raise SpecError(f"--language {item}: expected TASK=LANG", fix="write e.g. --language xnli_de=de")
        pairs[name] = code
    spec = load_spec(spec_file, overrides or ())
    results = run_harness(spec, condition, [name.strip() for name in tasks.split(",") if name.strip()],
                          languages=pairs, limit=limit, num_fewshot=num_fewshot, include_path=include_path,
                          output_path=output_path, runs_root=runs_dir, apply_chat_template=apply_chat_template,
                          system_instruction=system_instruction, fewshot_as_multiturn=fewshot_as_multiturn,
                          trust_remote_code=trust_remote_code)
    sys.stdout.write(make_table(results) + "\n")


if __name__ == "__main__":  # pragma: no cover
    app()
