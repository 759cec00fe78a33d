"""Which of a union's alternatives the user meant, so a validation error reports that one's problems only.

Pydantic tries every alternative of a union (`source: {language: ..} | {languages: ..} | {condition: ..}`) and
reports every alternative's failures: for `{languages: [de, fr], reduce: median}` that is "language: required"
(from the first alternative) before the real problem, "reduce: Input should be 'mean'". Here each union's errors
are grouped by alternative (pydantic names it in the error location) and only the best fit's are kept: the value
has the alternative's type (a mapping for a model, a list for a list...), then the fewest missing or unknown keys,
then the fewest errors; ties go to the alternative declared first.
"""

from __future__ import annotations

from typing import Any

# Errors saying the value is of another type than the alternative takes (not a wrong value of the right type).
_TYPE_MISMATCH = {
    "model_type", "model_attributes_type", "dict_type", "list_type", "tuple_type", "set_type", "int_type",
    "float_type", "string_type", "bool_type", "int_parsing", "float_parsing", "bool_parsing", "is_instance_of",
    "none_required", "union_tag_not_found", "union_tag_invalid",
}
_STRUCTURAL = {"missing", "extra_forbidden"}


def tag_positions(data: Any, error: dict) -> list[int]:
    """Indices of `error['loc']` that name a union alternative rather than a key or index of the data. A location
    points at existing data except the last part of a `missing` error (the absent key), so every other part
    that is not in the data is an alternative's name."""
    loc = tuple(error["loc"])
    out, current = [], data
    for index, part in enumerate(loc):
        last_missing = index == len(loc) - 1 and error["type"] == "missing"
        if isinstance(current, dict) and _has_key(current, part):
            current = _get(current, part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif not last_missing and isinstance(part, str):
            out.append(index)
    return out


def choose_union_branches(data: Any, errors: list[dict]) -> list[dict]:
    """`errors` without those of the union alternatives the user evidently did not mean (outermost union first)."""
    kept = list(errors)
    done: set[tuple] = set()
    while True:
        site = _next_site(data, kept, done)
        if site is None:
            return kept
        done.add(site)
        branches: dict[str, list[dict]] = {}
        for error in kept:
            loc = tuple(error["loc"])
            if loc[: len(site)] == site and len(loc) > len(site) and len(site) in tag_positions(data, error):
                branches.setdefault(loc[len(site)], []).append(error)
        if len(branches) < 2:
            continue
        best = min(branches, key=lambda tag: (*_fit(branches[tag], len(site)), list(branches).index(tag)))
        dropped = {id(error) for tag, group in branches.items() if tag != best for error in group}
        kept = [error for error in kept if id(error) not in dropped]


def _next_site(data: Any, errors: list[dict], done: set[tuple]) -> tuple | None:
    """The shortest location prefix that ends right before an alternative's name and is not handled yet."""
    sites = {tuple(error["loc"])[:index] for error in errors for index in tag_positions(data, error)}
    pending = sorted(sites - done, key=len)
    return pending[0] if pending else None


def _fit(group: list[dict], depth: int) -> tuple[int, int, int]:
    """How badly an alternative fits (lower is better): its type differs from the value's; missing/unknown
    keys; errors."""
    mismatch = any(len(error["loc"]) == depth + 1 and _is_type_mismatch(error) for error in group)
    structural = sum(error["type"] in _STRUCTURAL for error in group)
    return int(mismatch), structural, len(group)


def _is_type_mismatch(error: dict) -> bool:
    if error["type"] in _TYPE_MISMATCH:
        return True
    # A literal ('all', 'last', ...) refusing a mapping or list: another type, not a misspelt word.
    return error["type"] in ("literal_error", "enum") and isinstance(error.get("input"), (dict, list))


def _has_key(mapping: dict, part: Any) -> bool:
    return part in mapping or (isinstance(part, (int, str)) and any(str(k) == str(part) for k in mapping))


def _get(mapping: dict, part: Any) -> Any:
    if part in mapping:
        return mapping[part]
    return next(v for k, v in mapping.items() if str(k) == str(part))
