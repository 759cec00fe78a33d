"""The base every spec model derives from, and small shared field types."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

BASE_CONDITION = "base"
"""The unmodified model's condition: always evaluated, never a name a spec may define."""

# Unknown keys are errors (a typo must never be silently ignored), specs are
# immutable once loaded, and each field's docstring becomes its JSON Schema
# description (editors show it on hover).
STRICT = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class StrictModel(BaseModel):
    model_config = STRICT


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
"""A real number; NaN and infinities are refused."""

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$", max_length=64)]
"""A name usable in file names and tables: letters, digits, '_' and '-'."""

LanguageCode = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]+)?$")]
"""An ISO 639 code such as 'en', 'zh' or 'sw', optionally with a region ('pt-BR')."""


class NewField:
    """Field metadata: a field added after run identities were pinned. At its default value it is left out of the
    spec hash (clas_graph.records.spec_hash), so adding it with a default keeps every existing spec's identity;
    any other value is part of it. Use as `Annotated[T, NewField()]`."""

    def __repr__(self) -> str:
        return "NewField()"


def is_new_field_at_default(model: BaseModel, name: str) -> bool:
    """Whether field `name` of `model` is a `NewField` holding its default."""
    info = type(model).model_fields[name]
    return any(isinstance(item, NewField) for item in info.metadata) and getattr(model, name) == info.get_default(
        call_default_factory=True)


class FieldError(ValueError):
    """A cross-field check that knows which field is wrong.

    Raised inside model validators; the loader reads ``loc`` to point at the
    exact field (and YAML line) instead of the enclosing model.
    """

    def __init__(self, loc: tuple, message: str):
        self.loc = tuple(loc)
        super().__init__(message)


class SafetensorsRef(StrictModel):
    """A tensor in a safetensors file, pinned by the file's hash (never pickle)."""

    file: str
    """Path to a .safetensors file (relative paths are relative to the spec file)."""
    key: str
    """Name of the tensor inside the file."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the file (`sha256sum FILE`), so a run records exactly which tensor it used."""


def distinct(noun: str) -> AfterValidator:
    """A list field's check that no item repeats ("list each <noun> once")."""
    def check(items: list) -> list:
        repeated = next((item for index, item in enumerate(items) if item in items[:index]), None)
        if repeated is not None:
            raise ValueError(f"{noun} {repeated!r} is listed more than once; list each {noun} once")
        return items

    return AfterValidator(check)
