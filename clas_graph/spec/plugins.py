"""Kinds defined outside clas_graph: task and intervention kinds a user's own package adds, without a fork.

A plugin is a module that lists its kinds' spec models:

    TASKS = (MyTask,)                  # TaskSpec subclasses, each with a `kind` literal and a runner
    INTERVENTIONS = (MyIntervention,)  # intervention models (clas_graph.interventions.base.Targeted subclasses)

A readout needs no listing: it is a `Readout` subclass the plugin's task puts in its requests.

Plugins come from two places: the modules a spec names (`plugins: [mypkg.kinds]`), and every installed package
that declares one under the entry-point group `clas_graph.plugins` (in its pyproject.toml:
`[project.entry-points."clas_graph.plugins"] mypkg = "mypkg.kinds"`). Their kinds are validated and appear in
the JSON Schema (`clas-graph schema`) exactly as the built-in kinds do.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import Annotated, Sequence, Union

from pydantic import Field, create_model

from ..errors import SpecError
from ..interventions.registry import INTERVENTION_KINDS
from ..tasks.registry import KINDS as TASK_KINDS
from .base import StrictModel
from .run_spec import RunSpec

ENTRY_POINT_GROUP = "clas_graph.plugins"


def installed_plugins() -> tuple[str, ...]:
    """The modules installed packages declare as clas_graph plugins (entry-point group `clas_graph.plugins`)."""
    return tuple(sorted({point.value for point in entry_points(group=ENTRY_POINT_GROUP)}))


def kind_of(model: type) -> str | None:
    """A spec model's `kind` tag (None: not a kind model)."""
    field = getattr(model, "model_fields", {}).get("kind")
    args = getattr(field.annotation, "__args__", ()) if field is not None else ()
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


@functools.cache
def plugin_kinds(module: str, where: str = "plugins") -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(task kinds, intervention kinds) a plugin module lists; SpecError naming `where` when it cannot be used."""
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        raise SpecError(f"plugin module '{module}' cannot be imported ({exc})", where=where,
                        fix="install the package that provides it, or put its folder on PYTHONPATH") from None
    tasks, interventions = tuple(getattr(loaded, "TASKS", ())), tuple(getattr(loaded, "INTERVENTIONS", ()))
    if not tasks and not interventions:
        raise SpecError(f"plugin module '{module}' lists no kinds", where=where,
                        fix="define TASKS = (...) and/or INTERVENTIONS = (...) in it")
    for model in (*tasks, *interventions):
        if not (isinstance(model, type) and issubclass(model, StrictModel) and kind_of(model)):
            raise SpecError(f"plugin '{module}' lists {model!r}, which is not a spec model with a `kind` literal",
                            where=where, fix="list pydantic models subclassing TaskSpec or Targeted, with "
                                             "`kind: Literal['name']`")
    return tasks, interventions


def check_unique(models: Sequence[type], what: str, where: str) -> None:
    seen: dict[str, type] = {}
    for model in models:
        kind = kind_of(model)
        if kind in seen and seen[kind] is not model:
            raise SpecError(f"{what} kind '{kind}' is defined twice ({seen[kind].__module__} and {model.__module__})",
                            where=where, fix="rename one of them (`kind: Literal[...]`)")
        seen[kind] = model


@functools.cache
def spec_model(plugins: tuple[str, ...] = ()) -> type[RunSpec]:
    """The RunSpec model whose `tasks` and `interventions` accept the built-in kinds, the installed plugins' and
    those of the modules named in `plugins` (RunSpec itself when there are none)."""
    tasks, interventions = list(TASK_KINDS), list(INTERVENTION_KINDS)
    named = [(module, "plugins") for module in installed_plugins()]
    named += [(module, f"plugins[{index}]") for index, module in enumerate(plugins)]
    for module, where in named:
        extra_tasks, extra_interventions = plugin_kinds(module, where)
        tasks += [model for model in extra_tasks if model not in tasks]
        interventions += [model for model in extra_interventions if model not in interventions]
    if len(tasks) == len(TASK_KINDS) and len(interventions) == len(INTERVENTION_KINDS):
        return RunSpec
    check_unique(tasks, "task", "plugins")
    check_unique(interventions, "intervention", "plugins")
    task = Annotated[Union[tuple(tasks)], Field(discriminator="kind")]
    intervention = Annotated[Union[tuple(interventions)], Field(discriminator="kind")]
    return create_model(
        "RunSpec", __base__=RunSpec, __module__=RunSpec.__module__, __doc__=RunSpec.__doc__,
        tasks=(list[task], Field(default_factory=list, description=RunSpec.model_fields["tasks"].description)),
        interventions=(list[intervention], Field(default_factory=list,
                                                 description=RunSpec.model_fields["interventions"].description)))


def named_plugins(data) -> tuple[str, ...]:
    """The `plugins:` a spec's raw data names (validated with the spec; anything else counts as none here)."""
    value = data.get("plugins") if isinstance(data, dict) else None
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()
