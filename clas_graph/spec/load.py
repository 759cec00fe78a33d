"""Read a spec file (YAML or JSON) into a validated RunSpec, with errors that point at the line."""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import SpecError, field_path
from .base import FieldError
from .limits import (
    MAX_INCLUDED_FILES,
    MAX_SPEC_BYTES,
    BoundedComposer,
    SpecLimitExceeded,
    check_bracket_depth,
    check_size,
)
from .plugins import named_plugins, spec_model
from .run_spec import RunSpec
from .union_errors import choose_union_branches


class _StrictLoader(BoundedComposer, yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one) and documents beyond the
    size and depth limits (spec/limits.py)."""


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
    """File -> (plain data, YAML node tree for line lookup). Raises SpecError on syntax errors and on files
    beyond the limits of spec/limits.py (checked before anything is expanded)."""
    try:
        text = _read_bounded(path)
    except FileNotFoundError:
        raise SpecError("file not found", where=str(path), fix="check the path") from None
    except SpecLimitExceeded as exc:
        raise SpecError(exc.what, where=f"{path}:{exc.line}" if exc.line else str(path), fix=exc.fix) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the file ({exc})", where=str(path),
                        fix="check that it is a readable UTF-8 text file") from None
    if not text.strip():
        raise SpecError("the file is empty", where=str(path),
                        fix="write a spec (see specs/demo.yaml, or `clas-graph schema`)")
    if path.suffix.lower() == ".json":
        try:
            check_bracket_depth(text, json_text=True)
            return json.loads(text), None
        except SpecLimitExceeded as exc:
            raise SpecError(exc.what, where=f"{path}:{exc.line}", fix=exc.fix) from None
        except json.JSONDecodeError as exc:
            raise SpecError(f"JSON syntax error: {exc.msg}", where=f"{path}:{exc.lineno}:{exc.colno}",
                            fix="correct the JSON at that place (or write the spec as YAML)") from None
        except ValueError as exc:  # e.g. an integer beyond Python's digit limit
            raise SpecError(f"JSON value error: {exc}", where=str(path), fix="correct that value") from None
    try:
        data, node = _load_yaml(text)
    except SpecLimitExceeded as exc:
        raise SpecError(exc.what, where=f"{path}:{exc.line}", fix=exc.fix) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise SpecError(f"YAML syntax error: {problem}", where=where,
                        fix="correct the YAML at that place") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {exc}", where=str(path), fix="correct the YAML") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise SpecError(f"YAML value error: {exc}", where=str(path), fix="correct that value") from None
    return data, node


def _read_bounded(path: Path) -> str:
    """The file's text, refusing one beyond MAX_SPEC_BYTES before reading it (and anything that is not a file)."""
    if path.exists() and not path.is_file():
        raise OSError(f"'{path}' is not a regular file")
    check_size(path.stat().st_size)
    with path.open("rb") as handle:  # a file that grew since stat is still read only up to the limit
        raw = handle.read(MAX_SPEC_BYTES + 1)
    check_size(len(raw))
    return raw.decode("utf-8")


def _load_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """(data, node tree) from one bounded composition: the data is constructed from the same checked nodes."""
    check_bracket_depth(text, json_text=False)
    loader = _StrictLoader(text)  # safe: a SafeLoader subclass
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, node


Origins = dict  # field path (tuple) -> (file, 1-based line or None): where each value came from


Overrides = Union[Sequence[str], Mapping[str, Any]]
"""`["KEY=VALUE", ...]` (VALUE is YAML, as on the command line) or `{KEY: value}` (values used as given)."""


def load_spec(path: str | Path, overrides: Overrides = ()) -> RunSpec:
    """Load and validate a spec file (following `include:`), then apply `--set KEY=VALUE` overrides before
    validation. Raises `clas_graph.SpecError` naming file, field and line (or the override)."""
    path = Path(path)
    data, origins = _load_tree(path, chain=(path.resolve(),), files_read=[0])
    data, origins = apply_overrides_traced(data, overrides, origins)
    spec = validate_data(data, where=str(path), origins=origins)
    spec._source = str(path.resolve())
    spec._overrides = tuple(label for label, _, _ in _parsed(overrides))
    spec._places = {field_path(loc): _place(origins, loc, str(path)) for loc in origins}
    return spec


def apply_overrides(data: dict, overrides: Overrides) -> dict:
    """A copy of parsed spec data with the overrides applied (before validation).

    KEY is a dotted path whose list items are indices (`tasks.0.limit`; the index one past the end appends);
    with `KEY=VALUE` strings VALUE is YAML (`[en, de]`, `{de: de.jsonl}`, `null`, `0.5`). Mappings missing on
    the way are created. Raises SpecError naming the override.
    """
    return apply_overrides_traced(data, overrides)[0]


def apply_overrides_traced(data: dict, overrides: Overrides, origins: Origins | None = None) -> tuple[dict, Origins]:
    """`apply_overrides`, also attributing each overridden value to its override in `origins` (field path ->
    (where, line)), so validation errors name the override."""
    data = copy.deepcopy(data)
    origins = dict(origins or {})
    for label, loc, value in _parsed(overrides):
        if loc[0] == "include":
            raise SpecError(f"--set {label}: `include:` is resolved before overrides apply, so it cannot be overridden",
                            fix="write a small spec file that includes the other one")
        _set_path(data, loc, value, label)
        origins = {k: o for k, o in origins.items() if k[: len(loc)] != loc}
        for sub in _paths(value, loc):
            origins[sub] = (f"--set {label}", None)
    return data, origins


def _parsed(overrides: Overrides) -> list[tuple[str, tuple, Any]]:
    """(label as the user wrote it, field path, value) per override."""
    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(overrides, Mapping):
        return [(f"{key}={json.dumps(value, ensure_ascii=False)}", _parse_key(str(key), str(key)), value)
                for key, value in overrides.items()]
    return [(str(raw), *_parse_override(str(raw))) for raw in overrides]


def _parse_override(raw: str) -> tuple[tuple, Any]:
    key, sep, text = str(raw).partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"--set {raw}: an override is KEY=VALUE",
                        fix="write e.g. `--set tasks.0.limit=200` or `--set 'languages=[en, de]'`")
    loc = _parse_key(key, raw)
    label = raw if len(raw) <= 80 else f"{raw[:60]}..."
    try:
        check_size(len(text.encode("utf-8")))
        value = _load_yaml(text)[0] if text.strip() else ""
    except SpecLimitExceeded as exc:
        raise SpecError(f"--set {label}: {exc.what}", fix=exc.fix) from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise SpecError(f"--set {label}: {exc}", fix="correct the value") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"--set {label}: the value is not valid YAML ({problem})",
                        fix="quote the whole override in the shell, e.g. --set 'languages=[en, de]'") from None
    return loc, value


def _parse_key(key: str, raw: str) -> tuple:
    parts = key.split(".")
    if any(not part.strip() for part in parts):
        raise SpecError(f"--set {raw}: '{key}' has an empty part",
                        fix="separate keys with single dots, e.g. model.path")
    return tuple(int(p) if p.lstrip("-").isdigit() else p for p in parts)


def _set_path(data: dict, loc: tuple, value: Any, raw: str) -> None:
    """data[loc[0]][loc[1]]... = value, creating mappings on the way; errors name the override."""
    current: Any = data
    for depth, part in enumerate(loc):
        last = depth == len(loc) - 1
        here = field_path(loc[:depth]) if depth else "the top level"
        if isinstance(current, list):
            if not isinstance(part, int):
                raise SpecError(f"--set {raw}: {here} is a list; '{part}' is not an item index",
                                fix=f"use an index 0-{len(current) - 1}, e.g. {'.'.join(map(str, loc[:depth]))}.0")
            if not 0 <= part <= len(current) or (part == len(current) and not last):
                appends = f" ({len(current)} appends)" if last else ""
                raise SpecError(f"--set {raw}: {here} has {len(current)} item(s), no index {part}",
                                fix=f"use an index 0-{len(current) - 1}{appends}")
            if part == len(current):
                current.append(value)
                return
        elif isinstance(current, dict):
            part = _existing_key(current, part)
            if not last and current.get(part) is None:  # absent or `null` (e.g. `stats:` unset): start a mapping
                current[part] = {}
        else:
            raise SpecError(f"--set {raw}: {here} is a {type(current).__name__} value, so it has no '{part}'",
                            fix=f"set {field_path(loc[:depth])} itself, "
                                f"e.g. --set {'.'.join(map(str, loc[:depth]))}=...")
        if last:
            current[part] = value
        else:
            current = current[part]


def _existing_key(mapping: dict, part: Any) -> Any:
    """The key as the data spells it: YAML keys like `24:` are ints, `tasks.0` addresses them as text."""
    for key in mapping:
        if str(key) == str(part):
            return key
    return str(part) if isinstance(part, int) and any(isinstance(k, str) for k in mapping) else part


def _paths(value: Any, loc: tuple):
    yield loc
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, loc + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, loc + (index,))


def _load_tree(path: Path, chain: tuple, files_read: list[int]) -> tuple[dict, Origins]:
    """One file with its includes merged underneath it: (data, origins). `files_read` counts the files read so
    far for the whole spec (an include tree that repeats files could otherwise read one file exponentially often)."""
    data, node = parse_file(path)
    files_read[0] += 1
    if not isinstance(data, dict):
        raise SpecError(
            f"the top level must be a mapping of fields, not {type(data).__name__}",
            where=str(path), fix="start with `schema_version: 1` and `name: ...`",
        )
    own = _origins(node, str(path), data)
    includes = data.pop("include", None)
    merged: dict = {}
    origins: Origins = {}
    for position, name in enumerate([includes] if isinstance(includes, str) else includes or []):
        field = "include" if isinstance(includes, str) else f"include[{position}]"
        line = own.get(("include",) if isinstance(includes, str) else ("include", position), (None, None))[1]
        where = f"{path}:{line}" if line else str(path)
        if not isinstance(name, str):
            raise SpecError(f"{field}: an include is a file path, not {type(name).__name__}", where=where)
        target = Path(name) if Path(name).is_absolute() else path.parent / name
        if target.resolve() in chain:
            cycle = " -> ".join(str(p) for p in (*chain, target.resolve()))
            raise SpecError(f"{field}: include cycle: {cycle}", where=where, fix="remove one of the includes")
        if not target.is_file():
            raise SpecError(f"{field}: included file '{target}' does not exist", where=where,
                            fix="check the path (relative to the including file)")
        if files_read[0] >= MAX_INCLUDED_FILES + 1:
            raise SpecError(f"{field}: this spec reads more than {MAX_INCLUDED_FILES} files through `include:`",
                            where=where, fix="include each base file once, from fewer levels")
        base, base_origins = _load_tree(target, chain + (target.resolve(),), files_read)
        merged, origins = _merge(merged, origins, base, base_origins, ())
    own = {loc: origin for loc, origin in own.items() if loc[:1] != ("include",)}
    return _merge(merged, origins, data, own, ())


def _merge(base: dict, base_origins: Origins, over: dict, over_origins: Origins, prefix: tuple) -> tuple[dict, Origins]:
    """Deep merge: mappings merge key by key, anything else (lists included) is replaced by `over`."""
    out, origins = dict(base), dict(base_origins)
    for key, value in over.items():
        here = prefix + (key,)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key], origins = _merge(out[key], origins, value, over_origins, here)
            if here in over_origins:
                origins[here] = over_origins[here]
            continue
        origins = {loc: o for loc, o in origins.items() if loc[: len(here)] != here}
        origins.update({loc: o for loc, o in over_origins.items() if loc[: len(here)] == here})
        out[key] = value
    return out, origins


def _origins(node: yaml.Node | None, file: str, data: Any) -> Origins:
    """Every field path of a file -> (file, line); JSON files have no node tree, so lines are None."""
    out: Origins = {}

    def walk(node, loc):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                try:
                    key_value = yaml.safe_load(yaml.serialize(key)) if key.tag != "tag:yaml.org,2002:str" else key.value
                except yaml.YAMLError:
                    key_value = key.value
                out[loc + (key_value,)] = (file, key.start_mark.line + 1)
                walk(value, loc + (key_value,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                out[loc + (index,)] = (file, item.start_mark.line + 1)
                walk(item, loc + (index,))

    def walk_data(value, loc):
        if isinstance(value, dict):
            for key, item in value.items():
                out[loc + (key,)] = (file, None)
                walk_data(item, loc + (key,))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                out[loc + (index,)] = (file, None)
                walk_data(item, loc + (index,))

    if node is None:
        walk_data(data, ())
    else:
        walk(node, ())
    return out


def validate_data(data: dict, *, where: str = "<spec>", origins: Origins | None = None) -> RunSpec:
    """Validate already-parsed spec data (the file-free half of `load_spec`)."""
    try:
        model = spec_model(named_plugins(data))
    except SpecError as error:  # a plugin that cannot be used, named at its line
        loc = tuple(int(part) if part.isdigit() else part for part in re.findall(r"\w+", error.where or "plugins"))
        error.where = f"{_place(origins or {}, loc, where)}: {error.where}"
        error.args = (error.message,)
        raise
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _to_spec_error(exc, data, where, origins or {}) from None


def _to_spec_error(exc: ValidationError, data: Any, where: str, origins: Origins) -> SpecError:
    lines = []
    for error in choose_union_branches(data, exc.errors()):
        loc = _data_path(data, tuple(error["loc"]))
        cause = (error.get("ctx") or {}).get("error")
        message = error["msg"]
        if isinstance(cause, FieldError):  # our own checks know the exact field
            loc, message = loc + cause.loc, str(cause)
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if error["type"] == "extra_forbidden":
            message, fix = _unknown_key_message(loc[-1])
        elif error["type"] == "missing":
            message, fix = "required field is missing", f"add `{loc[-1]}:` here (`clas-graph schema` shows its type)"
        else:
            message, fix = _split_fix(message, error["type"], field_path(loc))
        message = message.rstrip(".") + ("" if message.endswith(("?", "!")) else ".")
        lines.append(f"{_place(origins, loc, where)}: {field_path(loc)}: {message} Fix: {fix}")
    head = lines[0]
    if len(lines) > 1:
        head += f"\n  ({len(lines) - 1} more problem(s):)\n  " + "\n  ".join(lines[1:])
    error = SpecError(head)
    error.where = where
    return error


# Our validators end a message with what to do ("...; use `last` or ..."): that part becomes the fix.
_ADVICE = re.compile(r"^(.*?)[;:] ((?:use|add|choose|remove|write|set|list|give|name|select|put|drop|move|pick|"
                     r"point|rename|make|keep|run|include|split|correct|check|fix) .*)$", re.DOTALL)

_GENERIC_FIXES = {
    "literal_error": "use one of the values listed",
    "enum": "use one of the values listed",
    "union_tag_invalid": "use one of the kinds listed",
    "union_tag_not_found": "add a `kind:` naming one of the kinds (`clas-graph schema` lists them)",
    "greater_than": "use a value within that bound", "greater_than_equal": "use a value within that bound",
    "less_than": "use a value within that bound", "less_than_equal": "use a value within that bound",
    "too_short": "give more items", "too_long": "give fewer items",
    "string_pattern_mismatch": "write a value of that form", "finite_number": "write a finite number",
}


def _split_fix(message: str, kind: str, field: str) -> tuple[str, str]:
    """(what was wrong, how to fix it) for a validation message."""
    advice = _ADVICE.match(message)
    if advice:
        return advice.group(1), advice.group(2)
    if kind in _GENERIC_FIXES:
        return message, _GENERIC_FIXES[kind]
    if kind.endswith(("_type", "_parsing")):
        return message, f"write {field} as that type (`clas-graph schema` shows each field's type)"
    return message, f"correct {field} (`clas-graph schema` shows what each field accepts)"


def _place(origins: Origins, loc: tuple, default: str) -> str:
    """file:line of the deepest part of `loc` some file defined (with includes, the file the value came from)."""
    for end in range(len(loc), 0, -1):
        prefix = loc[:end]
        origin = origins.get(prefix) or origins.get(tuple(str(p) for p in prefix))  # JSON keys are strings
        if origin:
            file, line = origin
            return f"{file}:{line}" if line else file
    has_lines = any(line for _, line in origins.values())
    return f"{default}:1" if has_lines else default


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


def _unknown_key_message(key: Any) -> tuple[str, str]:
    """(what, fix) for an unknown key; the suggestion is never the key itself."""
    names = sorted(_all_field_names() - {str(key)})
    guess = difflib.get_close_matches(str(key), names, n=1)
    if guess:
        return f"unknown key '{key}'; did you mean '{guess[0]}'?", f"rename it to '{guess[0]}', or remove it"
    return f"unknown key '{key}'", "remove it (`clas-graph schema` lists the allowed fields)"
