"""clas_graph: declarative, spec-driven activation interventions compiled into nnsight traces.

    spec = clas_graph.load_spec("specs/demo.yaml")
    model = clas_graph.load_model(spec.model)
    plan = clas_graph.compile_plan(spec, model, condition="clas")
    logits = clas_graph.forward(model, plan, texts, languages)
"""

from .backends import forward, generate, generate_ids
from .compile import Plan, compile_plan, compile_plans
from .errors import BackendError, ClasGraphError, CompileError, DataError, SpecError
from .loading import load_model
from .spec import RunSpec, load_spec

__version__ = "0.1.0"

__all__ = [
    "BackendError", "ClasGraphError", "CompileError", "DataError", "Plan", "RunSpec", "SpecError",
    "compile_plan", "compile_plans", "forward", "generate", "generate_ids", "load_model", "load_spec",
]
