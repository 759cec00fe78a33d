"""clas_graph: declarative, spec-driven activation interventions compiled into nnsight traces.

The calls in order: `load_spec(path)` gives a `RunSpec`, `load_model(spec.model)` the nnsight model,
`compile_plan(spec, model, condition="clas")` a `Plan`, `forward(model, plan, texts, languages)` the last
token's logits (`generate` the greedy continuations), and `run(spec)` the whole experiment, as `clas-graph run`.
A complete example, run by the test suite: docs/python-api.md.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from .errors import BackendError, ClasGraphError, CompileError, DataError, SpecError

if TYPE_CHECKING:
    from .compile.compiler import compile_plan, compile_plans
    from .compile.plan import Plan
    from .execution.api import forward, generate, generate_ids
    from .loading import load_model
    from .spec.load import load_spec
    from .spec.run_spec import RunSpec

try:
    __version__ = version("clas-graph")  # the one place it is written is pyproject.toml
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

# The names below load on first use (PEP 562), so importing a submodule (`clas_graph.spec.masks`) or starting
# `clas-graph --help` does not import torch and nnsight; `from clas_graph import forward` works as before.
_LAZY = {
    "Plan": "clas_graph.compile.plan",
    "RunSpec": "clas_graph.spec.run_spec",
    "compile_plan": "clas_graph.compile.compiler",
    "compile_plans": "clas_graph.compile.compiler",
    "forward": "clas_graph.execution.api",
    "generate": "clas_graph.execution.api",
    "generate_ids": "clas_graph.execution.api",
    "load_model": "clas_graph.loading",
    "load_spec": "clas_graph.spec.load",
}
"""Public name -> the module defining it."""


def __getattr__(name: str):
    if name not in _LAZY:  # a submodule, as `clas_graph.backends.forward_many(...)` after `import clas_graph`
        try:
            return import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def run(spec: RunSpec, **options):
    """The whole experiment (statistics if needed, every condition x task x language, report); see
    `clas_graph.runners.run.run`. Returns the run directory."""
    from .runners.run import run as run_experiment

    return run_experiment(spec, **options)


__all__ = [
    "BackendError", "ClasGraphError", "CompileError", "DataError", "Plan", "RunSpec", "SpecError",
    "compile_plan", "compile_plans", "forward", "generate", "generate_ids", "load_model", "load_spec", "run",
]
