"""The spec models load without torch or matplotlib (so `clas-graph validate` and `--help` can start fast), and
`clas_graph` exposes its public names lazily (PEP 562) with the same behaviour as eager imports.

Each check runs in a fresh interpreter: this test process has imported torch already (conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import clas_graph

ROOT = Path(__file__).resolve().parent.parent
SPEC_MODEL_MODULES = ("clas_graph.interventions.registry", "clas_graph.selections.registry", "clas_graph.spec.masks",
                      "clas_graph.spec.stats", "clas_graph.spec.vectors", "clas_graph.compile.plan",
                      "clas_graph.tasks.registry", "clas_graph.spec.load", "clas_graph.spec.plugins",
                      "clas_graph.cli")


def fresh(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_spec_model_modules_import_without_torch_or_matplotlib():
    code = (f"import json, sys\nfor name in {SPEC_MODEL_MODULES!r}:\n    __import__(name)\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'matplotlib'})))")
    assert json.loads(fresh(code)) == []


def test_importing_the_package_loads_no_public_name_until_used():
    code = ("import json, sys\nimport clas_graph\nbefore = 'clas_graph.compile.compiler' in sys.modules\n"
            "from clas_graph import compile_plan\n"
            "print(json.dumps([before, 'clas_graph.compile.compiler' in sys.modules, compile_plan.__module__]))")
    assert json.loads(fresh(code)) == [False, True, "clas_graph.compile.compiler"]


def test_every_public_name_resolves_to_its_defining_object():
    from clas_graph.compile.compiler import compile_plan
    from clas_graph.execution.api import forward
    from clas_graph.spec.load import load_spec
    from clas_graph.spec.run_spec import RunSpec

    for name in clas_graph.__all__:
        assert getattr(clas_graph, name) is not None, name
    assert (clas_graph.compile_plan, clas_graph.forward, clas_graph.load_spec, clas_graph.RunSpec) == (
        compile_plan, forward, load_spec, RunSpec)
    assert callable(clas_graph.run) and clas_graph.run.__module__ == "clas_graph"
    assert set(clas_graph.__all__) <= set(dir(clas_graph))
    assert isinstance(clas_graph.__version__, str)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        clas_graph.no_such_name  # noqa: B018


def test_loading_a_spec_and_the_cli_start_leave_torch_and_matplotlib_out(tmp_path):
    """`load_spec` of a shipped spec and `clas-graph --help` / `validate` / `schema` need neither."""
    code = ("import json, sys\nfrom clas_graph.spec.load import load_spec\n"
            "load_spec('specs/clas_llama.yaml')\nfrom typer.testing import CliRunner\nfrom clas_graph.cli import app\n"
            "codes = [CliRunner().invoke(app, args).exit_code for args in (['--help'], "
            "['validate', 'specs/clas_llama.yaml'], ['schema'])]\n"
            "print(json.dumps([codes, sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'matplotlib'})]))")
    assert json.loads(fresh(code)) == [[0, 0, 0], []]


def test_a_submodule_is_reached_from_the_package():
    """`import clas_graph` then `clas_graph.backends.forward_many(...)`, as the README shows."""
    code = "import clas_graph\nprint(clas_graph.backends.forward_many.__module__)"
    assert fresh(code).strip() == "clas_graph.execution.api"
