"""Read a spec file (YAML or JSON) into a validated RunSpec, with errors that point at the line."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import SpecError, field_path
from .base import FieldError
from .run_spec import RunSpec


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_file(path: Path) -> tuple[Any, yaml.Node | None]:
    """File -> (plain data, YAML node tree for line lookup). Raises SpecError on syntax errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", where=str(path), fix="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the file ({exc})", where=str(path)) from None
    if not text.strip():
        raise SpecError("the file is empty", where=str(path),
                        fix="write a spec (see specs/demo.yaml, or `clas-graph schema`)")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text), None
        except json.JSONDecodeError as exc:
            raise SpecError(f"JSON syntax error: {exc.msg}", where=f"{path}:{exc.lineno}:{exc.colno}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise SpecError(f"YAML syntax error: {problem}", where=where) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {exc}", where=str(path)) from None
    return data, node


def load_spec(path: str | Path) -> RunSpec:
    """Load and validate a spec file. Raises `clas_graph.SpecError` naming file, field and line."""
    path = Path(path)
    data, node = parse_file(path)
    if not isinstance(data, dict):
        raise SpecError(
            f"the top level must be a mapping of fields, not {type(data).__name__}",
            where=str(path), fix="start with `schema_version: 1` and `name: ...`",
        )
    spec = validate_data(data, where=str(path), node=node)
    spec._source = str(path.resolve())
    return spec


def validate_data(data: dict, *, where: str = "<spec>", node: yaml.Node | None = None) -> RunSpec:
    """Validate already-parsed spec data (the file-free half of `load_spec`)."""
    try:
        return RunSpec.model_validate(data)
    except ValidationError as exc:
        raise _to_spec_error(exc, data, where, node) from None


def _to_spec_error(exc: ValidationError, data: Any, where: str, node: yaml.Node | None) -> SpecError:
    lines = []
    for error in exc.errors():
        loc = _data_path(data, tuple(error["loc"]))
        cause = (error.get("ctx") or {}).get("error")
        message = error["msg"]
        if isinstance(cause, FieldError):  # our own checks know the exact field
            loc, message = loc + cause.loc, str(cause)
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if error["type"] == "extra_forbidden":
            message = _unknown_key_message(loc[-1])
        elif error["type"] == "missing":
            message = "required field is missing"
        line = _line_of(node, loc)
        place = f"{where}:{line}" if line else where
        lines.append(f"{place}: {field_path(loc)}: {message}")
    head = lines[0]
    if len(lines) > 1:
        head += f"\n  ({len(lines) - 1} more problem(s):)\n  " + "\n  ".join(lines[1:])
    error = SpecError(head)
    error.where = where
    return error


def _data_path(data: Any, loc: tuple) -> tuple:
    """Drop pydantic's union tags ('clas', 'inline', 'function-after[...]') that are not keys in the data."""
    out: list = []
    current = data
    for index, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            current = current[part]
            out.append(part)
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
            out.append(part)
        elif isinstance(current, dict) and index == len(loc) - 1 and isinstance(part, str) and "[" not in part:
            out.append(part)  # a missing key: name it
        elif isinstance(current, dict) and isinstance(part, int) and str(part) in map(str, current):
            current = next(v for k, v in current.items() if str(k) == str(part))
            out.append(part)
    return tuple(out)


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the deepest YAML node the location reaches."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if str(k.value) == str(part)), None)
            if match is None:
                break
            key_line = next(k for k, v in node.value if v is match).start_mark.line + 1
            node, line = match, key_line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _all_field_names() -> set[str]:
    names: set[str] = set()

    def visit(model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            names.add(name)
            for arg in _model_types(field.annotation):
                if arg.__name__ not in seen:
                    seen.add(arg.__name__)
                    visit(arg)

    seen: set[str] = set()
    visit(RunSpec)
    return names


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out = []
    for arg in getattr(annotation, "__args__", ()) or ():
        out.extend(_model_types(arg))
    for meta in getattr(annotation, "__metadata__", ()) or ():
        out.extend(_model_types(meta))
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and isinstance(origin, type) and issubclass(origin, BaseModel):
        out.append(origin)
    return out


def _unknown_key_message(key: Any) -> str:
    guess = difflib.get_close_matches(str(key), sorted(_all_field_names()), n=1)
    hint = f"; did you mean '{guess[0]}'?" if guess else "; see `clas-graph schema` for the allowed fields"
    return f"unknown key '{key}'{hint}"
