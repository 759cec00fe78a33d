"""clas_graph: declarative, spec-driven activation interventions compiled into nnsight traces.

The calls in order: `load_spec(path)` gives a `RunSpec`, `load_model(spec.model)` the nnsight model,
`compile_plan(spec, model, condition="clas")` a `Plan`, `forward(model, plan, texts, languages)` the last
token's logits (`generate` the greedy continuations), and `run(spec)` the whole experiment, as `clas-graph run`.
A complete example, run by the test suite: docs/python-api.md.
"""

from importlib.metadata import PackageNotFoundError, version

from .compile.compiler import compile_plan, compile_plans
from .compile.plan import Plan
from .errors import BackendError, ClasGraphError, CompileError, DataError, SpecError
from .execution.api import forward, generate, generate_ids
from .loading import load_model
from .runners.run import run as run_experiment
from .spec.load import load_spec
from .spec.run_spec import RunSpec

try:
    __version__ = version("clas-graph")  # the one place it is written is pyproject.toml
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def run(spec: RunSpec, **options):
    """The whole experiment (statistics if needed, every condition x task x language, report); see
    `clas_graph.runners.run.run`. Returns the run directory."""
    return run_experiment(spec, **options)


__all__ = [
    "BackendError", "ClasGraphError", "CompileError", "DataError", "Plan", "RunSpec", "SpecError",
    "compile_plan", "compile_plans", "forward", "generate", "generate_ids", "load_model", "load_spec", "run",
]
