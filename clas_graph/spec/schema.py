"""The JSON Schema editors use for spec files (`clas-graph schema`), include-aware.

A spec file may be a fragment another file includes, or include one: then the fields it lacks come from
the other file, and a mapping it gives merges key by key with the included one. So the editor schema
- requires no top-level field (completeness is checked by `clas-graph validate` on the merged spec);
- in a file with `include:`, requires no field anywhere (any mapping may be a partial override), while
  still refusing unknown keys, wrong types and values;
- elsewhere requires what the loader requires, including a union's `kind` (pydantic needs it to pick
  the variant), which also makes each `oneOf` unambiguous for validators that ignore `discriminator`.
"""

from __future__ import annotations

import copy
from typing import Any

PARTIAL = "partial."  # prefix of the $defs copies used in files with `include:`


def editor_schema(model) -> dict:
    """`model.model_json_schema()` made include-aware (see the module doc)."""
    full = model.model_json_schema()
    defs = {name: _require_discriminators(body) for name, body in full.pop("$defs", {}).items()}
    top = _require_discriminators(full)
    top.pop("required", None)
    partial_defs = {PARTIAL + name: _relax(body) for name, body in defs.items()}
    header = {key: top.pop(key) for key in ("title", "description") if key in top}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **header,
        "type": "object",
        "if": {"type": "object", "required": ["include"]},
        "then": _relax(top),
        "else": top,
        "$defs": {**defs, **partial_defs},
    }


def _require_discriminators(node: Any) -> Any:
    """Every variant of a discriminated `oneOf` requires the discriminator property."""
    if isinstance(node, list):
        return [_require_discriminators(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _require_discriminators(value) for key, value in node.items()}
    tag = (out.get("discriminator") or {}).get("propertyName")
    if tag and "oneOf" in out:
        out["oneOf"] = [{"allOf": [variant], "required": [tag]} for variant in out["oneOf"]]
    return out


def _relax(node: Any) -> Any:
    """No `required` anywhere, `oneOf` -> `anyOf` (partial variants may overlap), refs to the partial copies."""
    if isinstance(node, list):
        return [_relax(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("required", "discriminator"):
            continue
        if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
            out[key] = "#/$defs/" + PARTIAL + value[len("#/$defs/"):]
            continue
        out["anyOf" if key == "oneOf" else key] = _relax(copy.deepcopy(value))
    return out
