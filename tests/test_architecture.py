"""The package's structure, checked on its source with `ast`: no import cycles, no underscore-private names
imported across modules, and no dispatch on kind or readout names outside the kind modules."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "clas_graph"
KIND_PACKAGES = ("tasks", "interventions", "selections")
"""Where a kind's own module may compare its own `kind` (each kind module holds the behaviour of one kind)."""


def modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def runtime_imports(tree: ast.Module):
    """Every import statement, except those under `if TYPE_CHECKING:` (type hints only, never executed)."""
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            typing_only |= {id(inner) for inner in ast.walk(node)}
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
            and id(node) not in typing_only]


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph():
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    private = []
    for name, (path, is_package) in known.items():
        for node in runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                target = resolve(name, is_package, node)
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    imported = sub if sub in known else target
                    targets.append(imported)
                    if alias.name.startswith("_") and imported in known and imported != name:
                        private.append(f"{name} imports {alias.name} from {imported}")
            else:
                targets = [alias.name for alias in node.names]
            for target in targets:
                parts = target.split(".")
                # importing a module first imports every package above it
                for end in range(1, len(parts) + 1):
                    parent = ".".join(parts[:end])
                    if parent in known and parent != name and not name.startswith(parent + "."):
                        edges[name].add(parent)
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycles():
    edges, _ = import_graph()
    assert "clas_graph.runners.run" in edges and edges["clas_graph.runners.run"]  # the graph is not empty
    assert cycles(edges) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_is_imported_from_another_module():
    _, private = import_graph()
    assert private == []


def _string_constants(node) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [item.value for item in node.elts if isinstance(item, ast.Constant) and isinstance(item.value, str)]
    return []


def registered_names() -> set[str]:
    """Every task, intervention and selection kind and every readout label."""
    from clas_graph.execution import readouts
    from clas_graph.interventions.registry import INTERVENTION_KINDS as INTERVENTIONS
    from clas_graph.selections.registry import SELECTION_NAMES
    from clas_graph.tasks.registry import KINDS as TASKS

    kinds = {model.model_fields["kind"].annotation.__args__[0] for model in (*TASKS, *INTERVENTIONS)}
    labels = {cls.label for cls in vars(readouts).values()
              if isinstance(cls, type) and issubclass(cls, readouts.Readout) and cls is not readouts.Readout}
    return kinds | labels | set(SELECTION_NAMES)


def name_dispatch(path: Path, names: set[str]) -> list[str]:
    """Comparisons of anything with the name of a registered kind or readout, such as `x.kind == "clas"`,
    `task.kind in ("xnli", "xquad")` or `readout == "pooled"`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            literals = [value for other in [node.left, *node.comparators] for value in _string_constants(other)]
            if set(literals) & names:
                found.append(f"{path}:{node.lineno}")
    return found


def test_no_dispatch_on_kind_or_readout_names_outside_the_kind_modules():
    names = registered_names()
    assert {"xnli", "clas", "lape", "pooled"} <= names
    outside = [path for path in PACKAGE.rglob("*.py") if path.relative_to(PACKAGE).parts[0] not in KIND_PACKAGES]
    assert [hit for path in outside for hit in name_dispatch(path, names)] == []


def test_the_dispatch_check_finds_a_string_comparison(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('def f(task, readout):\n    return task.kind == "xnli" or readout in ("pooled",)\n')
    assert len(name_dispatch(sample, {"xnli", "pooled"})) == 2


# --- layers at package level ---------------------------------------------------------------------------------

LAYERS = (
    ("errors", "extras", "sites", "eval", "cache"),
    ("spec", "data", "selections", "interventions", "tasks"),
    ("compile",),
    ("execution",),
    ("runners", "loading", "embedded", "stats", "records", "report", "harness", "backends", "plugin_api", "cli"),
)
"""Packages (and top-level modules) by layer, in the order a spec flows through them (docs/architecture.md)."""

DESCRIPTIONS = ("clas_graph.compile.plan", "clas_graph.compile.positions", "clas_graph.execution.readouts",
                "clas_graph.execution.lens", "clas_graph.execution.requests")
"""Modules that describe what a kind builds (plan ops, readouts, requests) without running anything: they belong to
the spec layer although they live beside the code that compiles and runs them (they import no torch)."""


def layer_of(module: str) -> int:
    if module in DESCRIPTIONS or module == "clas_graph":
        return 1 if module != "clas_graph" else 0
    part = module.split(".")[1]
    return next(index for index, members in enumerate(LAYERS) if part in members)


def import_time_edges() -> list[tuple[str, str]]:
    """(importer, imported) for every import that runs when a module is imported: module-level statements
    (not `if TYPE_CHECKING:`), not those inside functions, where a layer reaches a later one at call time."""
    known = modules()
    edges = []
    for name, (path, is_package) in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.ImportFrom):
                target = resolve(name, is_package, node)
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
            else:
                targets = [alias.name for alias in node.names]
            edges += [(name, target) for target in targets if target in known and target != name]
    return edges


def upward(edges) -> list[str]:
    return [f"{a} imports {b}" for a, b in edges if layer_of(b) > layer_of(a)]


def test_at_import_time_each_package_imports_only_from_its_layer_and_those_before():
    edges = import_time_edges()
    assert ("clas_graph.spec.run_spec", "clas_graph.tasks.registry") in edges  # the graph is not empty
    assert {module.split(".")[1] for module in modules() if "." in module} <= {p for layer in LAYERS for p in layer}
    assert upward(edges) == []


def test_the_layer_check_finds_an_upward_import():
    assert upward([("clas_graph.spec.load", "clas_graph.execution.api")]) == [
        "clas_graph.spec.load imports clas_graph.execution.api"]
    assert upward([("clas_graph.tasks.xnli", "clas_graph.execution.readouts")]) == []
