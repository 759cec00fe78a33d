"""Which Python code of yours an lm-eval task would run: its YAML's `!function module.name` tags.

lm-eval imports `module.py` next to a task file for each `!function` when it loads the task, i.e. it runs that
file. lm-eval's own task files ship with the installed package; a task file anywhere else (an `include_path`
folder) is your code, run only when the task sets `trust_remote_code: true` (`--trust-remote-code` for
`clas-graph lm-eval`), lm-eval's name for the same opt-in. Files are read as YAML nodes here, never imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

FUNCTION_TAG = "!function"


@dataclass(frozen=True)
class CodeReference:
    file: Path
    line: int
    function: str

    def describe(self) -> str:
        return f"`{FUNCTION_TAG} {self.function}` at {self.file}:{self.line}"


def user_code(yaml_path: str | Path | None) -> list[CodeReference]:
    """Every `!function` in a task file outside the installed lm-eval package and in the files it `include`s."""
    if yaml_path is None:
        return []
    found: list[CodeReference] = []
    pending, seen = [Path(yaml_path).resolve()], set()
    while pending:
        path = pending.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        node = _compose(path)
        if node is None:
            continue
        if not _shipped(path):
            found.extend(CodeReference(path, line, name) for line, name in _function_tags(node))
        pending.extend(path.parent / name for name in _includes(node))
    return found


def _compose(path: Path) -> yaml.Node | None:
    try:
        return yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)  # nodes only: no tags run
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # lm-eval reports a file it cannot read when it indexes it


def _shipped(path: Path) -> bool:
    """Whether the file is part of the installed lm-eval package (its own tasks: code installed with it)."""
    import lm_eval

    return Path(lm_eval.__file__).resolve().parent in path.parents


def _function_tags(node: yaml.Node):
    stack, visited = [node], set()
    while stack:
        current = stack.pop()
        if id(current) in visited:  # an alias: its anchor's node, already walked
            continue
        visited.add(id(current))
        if current.tag == FUNCTION_TAG:
            yield current.start_mark.line + 1, str(current.value)
        if isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            stack.extend(part for pair in current.value for part in pair)


def _includes(node: yaml.Node) -> list[str]:
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "include":
            if isinstance(value, yaml.ScalarNode):
                return [value.value]
            if isinstance(value, yaml.SequenceNode):
                return [item.value for item in value.value if isinstance(item, yaml.ScalarNode)]
    return []


def tasks_code(task_manager, names) -> list[CodeReference]:
    """`user_code` of lm-eval task, group or tag names, following a group's tasks and a tag's members."""
    index = task_manager.task_index
    found: list[CodeReference] = []
    pending, seen = list(names), set()
    while pending:
        name = pending.pop()
        if name in seen or name not in index:
            continue
        seen.add(name)
        entry = index[name]
        found.extend(user_code(entry.yaml_path))
        members = (entry.cfg or {}).get("task")
        if isinstance(members, list):
            pending.extend(member for member in members if isinstance(member, str))
        if entry.kind.name == "TAG":
            pending.extend(other for other, item in index.items() if name in (item.tags or ()))
    return list(dict.fromkeys(found))


def sandbox_templates() -> None:
    """Render lm-eval's Jinja templates (`doc_to_text: "{{premise}}"`) in Jinja's sandbox. lm-eval renders them in
    a plain Environment, where a template (one a spec's `config:` sets, or a task file's) can reach Python through
    attributes such as `cycler.__init__.__globals__`; the sandbox refuses those attributes and keeps everything a
    prompt template does (fields, expressions, filters, loops). Same options and filters as lm-eval's own."""
    import lm_eval.utils
    from jinja2 import BaseLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    if isinstance(lm_eval.utils.env, SandboxedEnvironment):
        return
    environment = SandboxedEnvironment(loader=BaseLoader, undefined=StrictUndefined, keep_trailing_newline=True)
    environment.filters.update(lm_eval.utils.env.filters)
    lm_eval.utils.env = environment


def unsafe_template(config: dict) -> tuple[str, str] | None:
    """(field, template) of the first Jinja template in a task config that reads an attribute or item named with
    a leading underscore, or uses the `attr` filter: a prompt template reads document fields, and these are how a
    template reaches Python (the sandbox refuses them when rendering; this says so before any work)."""
    from jinja2 import Environment, TemplateSyntaxError, nodes

    environment = Environment()
    for field, template in _templates(config, ()):
        try:
            tree = environment.parse(template)
        except TemplateSyntaxError:
            continue  # lm-eval reports its own template errors
        for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
            if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
                return field, template
            if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and \
                    str(node.arg.value).startswith("_"):
                return field, template
            if isinstance(node, nodes.Filter) and node.name == "attr":
                return field, template
    return None


def _templates(value, loc: tuple):
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        yield ".".join(map(str, loc)), value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _templates(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _templates(item, (*loc, index))
