"""Which optional dependency groups (extras) a validated spec needs, checked when the spec is validated.

Spec models declare their own needs with a `needed_extras()` method (the embedded model, the Bible corpus, a
detected anchor, language steering); this walks every model in the spec, defaults included, so a missing extra
is one error at the field that needs it, before any model work.
"""

from __future__ import annotations

from typing import Iterator

from pydantic import BaseModel

from ..extras import Need, missing_extra_error, missing_modules
from .base import FieldError


def check_extras(spec: BaseModel) -> None:
    """Raise FieldError at the first field whose feature needs an extra that is not installed."""
    for loc, need in needs(spec):
        missing = missing_modules(need)
        if missing:
            raise FieldError(loc, str(missing_extra_error(need, missing)))


def needs(model: BaseModel, loc: tuple = ()) -> Iterator[tuple[tuple, Need]]:
    """(field path, need) for every model in the tree that declares needs; fields a model marks as unused
    (`unused_fields()`, e.g. the statistics corpus when an artifact is given) are skipped."""
    for need in getattr(model, "needed_extras", lambda: ())():
        yield loc, need
    unused = getattr(model, "unused_fields", lambda: ())()
    for name in type(model).model_fields:
        if name not in unused:
            yield from _needs_in(getattr(model, name), loc + (name,))


def _needs_in(value, loc: tuple) -> Iterator[tuple[tuple, Need]]:
    if isinstance(value, BaseModel):
        yield from needs(value, loc)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _needs_in(item, loc + (index,))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _needs_in(item, loc + (key,))
