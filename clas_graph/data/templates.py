"""Prompt templates: ``str.format`` templates whose placeholders are checked against the fields a task gives.

Every task that fills a user's prompt template goes through :func:`render` (XNLI, XQuAD, language steering),
so a typo in a placeholder is one error naming the allowed ones, never a KeyError mid-run.
"""

from __future__ import annotations

import re
import string
from typing import Any

from ..errors import DataError

__all__ = ["render", "template_fields"]


def template_fields(template: str) -> list[str]:
    """Placeholder names used by ``template`` (``"{premise}"`` -> ``["premise"]``), in order.

    Raises DataError for a malformed template (a lone ``{`` or ``}``) or a positional
    placeholder (``{}``, ``{0}``).
    """
    if not isinstance(template, str):
        raise DataError(f"a prompt template must be a string, got {type(template).__name__}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise DataError(
            f"prompt template is malformed ({err})",
            fix="write {{ and }} for literal braces",
        ) from None
    names: list[str] = []
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        name = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not name or name.isdigit():
            raise DataError(
                f"prompt template has a positional placeholder {{{field}}}",
                fix="name every placeholder, e.g. {premise}",
            )
        if name != field:  # `{premise.__class__}`: a prompt reads fields, never their attributes or items
            raise DataError(f"prompt template placeholder {{{field}}} reads an attribute or item of a field",
                            fix=f"write the plain field, {{{name}}}")
        names.append(name)
        if spec and "{" in spec:
            names.extend(template_fields(spec))
    return names


def render(template: str, **fields: Any) -> str:
    """``template.format(**fields)``, after checking that every placeholder is a given field.

    Raises DataError naming the first unknown placeholder and the allowed ones, e.g.
    ``render("{premis}", premise=..., hypothesis=...)``.
    """
    for name in template_fields(template):
        if name not in fields:
            allowed = ", ".join(f"{{{key}}}" for key in fields) or "none"
            raise DataError(
                f"prompt template uses unknown placeholder {{{name}}}",
                fix=f"use only {allowed} (write {{{{ and }}}} for literal braces)",
            )
    try:
        return template.format(**fields)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"prompt template could not be filled in: {err}") from None
