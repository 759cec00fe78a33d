"""The columns of a document an lm-eval task config reads, so local files can be checked before any model work.

lm-eval reads `doc_to_text`, `doc_to_target` and `doc_to_choice` as a column when the value names one, and as a
Jinja template otherwise: a file without the `label` column turns `doc_to_target: label` into the literal text
"label" and every answer is scored against it (acc 0, no error). So a bare name must be a column, and a template's
variables must be columns (lm-eval renders with the document's fields only).
"""

from __future__ import annotations

import re

FIELDS = ("doc_to_text", "doc_to_target", "doc_to_choice")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def columns_read(config: dict) -> list[tuple[str, str]]:
    """(config field, column) for every column the config's fields read; none when `process_docs` (Python)
    reshapes the documents first, or a field is Python (`!function`), whose reads are unknown."""
    if config.get("process_docs") is not None:
        return []
    out = []
    for field in FIELDS:
        value = config.get(field)
        if not isinstance(value, str) or not value.strip():
            continue  # a list of literal choices, a number, a function
        if _NAME.match(value.strip()):
            out.append((field, value.strip()))
        elif "{{" in value or "{%" in value:
            out.extend((field, name) for name in sorted(_template_variables(value)))
    return out


def _template_variables(template: str) -> set[str]:
    from jinja2 import Environment, TemplateSyntaxError, meta

    environment = Environment()
    try:
        parsed = environment.parse(template)
    except TemplateSyntaxError:
        return set()  # lm-eval reports its own template errors
    return set(meta.find_undeclared_variables(parsed)) - set(environment.globals)


def missing_columns(config: dict, columns) -> list[tuple[str, str]]:
    """(field, column) pairs of `columns_read` whose column is not among `columns`."""
    have = set(columns)
    return [(field, column) for field, column in columns_read(config) if column not in have]
