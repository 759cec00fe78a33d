"""The result files' schemas: a unit's record (`units/*.json`), metrics.json (with a sweep's record) and
analysis.json, as pydantic models. Every writer validates its document through its model before writing, and every
reader reads back through the same model, so a file another version (or a hand) changed is refused in one line
instead of failing deep inside a report.

Per-language metrics stay open mappings (each task kind reports its own); what every run shares is typed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import DataError
from .verified import read_json

METRICS_SCHEMA = 1
ANALYSIS_SCHEMA = 2  # 2: `sweep` (the chosen point analysed per task; null without a sweep)


class Record(BaseModel):
    """A result file's part: unknown keys are refused, numbers are kept as written."""

    model_config = ConfigDict(extra="forbid")


class SamplesRecord(Record):
    sha256: str
    """SHA-256 of the unit's samples file, which must match for the unit to count as finished."""
    rows: int


class UnitRecord(Record):
    """units/<task>_<language>_<condition>.json: a finished unit."""

    task: str
    language: str
    condition: str
    metrics: dict[str, Any]
    samples: SamplesRecord | None = None
    """None in unit files written before units recorded their samples."""


class PairedTest(Record):
    """A condition against base over the non-anchor languages (clas_graph.eval.metrics.paired_test); null where
    undefined (fewer than two languages)."""

    languages: list[str]
    n: int
    mean_base: float | None
    mean_condition: float | None
    mean_delta: float | None
    std_base: float | None
    std_condition: float | None
    std_delta: float | None
    t: float | None
    p: float | None


class TaskResult(Record):
    """One task's part of metrics.json."""

    kind: str
    primary: str
    higher_is_better: bool
    languages: list[str]
    per_language: dict[str, dict[str, dict[str, Any]]]
    """condition -> language -> the unit's metrics."""
    delta: dict[str, dict[str, float | None]]
    """condition -> language -> primary metric minus base's."""
    summary: dict[str, PairedTest]


class SweepPoint(Record):
    condition: str
    family: str
    values: dict[str, Any]


class SweepRecord(Record):
    """metrics.json's `sweep`: the grid, the rule, the dev phase and each task's choice."""

    grid: Any
    rule: dict[str, Any]
    points: list[SweepPoint]
    baselines: list[str]
    dev_metrics: str
    tasks: dict[str, dict[str, Any]]
    timing_s: dict[str, float]


class MetricsDocument(Record):
    """metrics.json."""

    schema_version: Literal[1]
    spec_name: str
    anchor: str | None
    conditions: list[str]
    tasks: dict[str, TaskResult]
    sweep: SweepRecord | None = None


class AnalysisDocument(Record):
    """analysis.json (its numbers are open mappings; clas_graph.runners.analyze defines them)."""

    model_config = ConfigDict(extra="allow")

    schema_version: Literal[2]
    spec_name: str
    anchor: str
    languages: list[str]
    conditions: list[str]
    layers: list[int]
    sweep: dict[str, Any] | None
    relation: dict[str, Any] | None
    seconds: float


def validated(model: type[Record], document: dict) -> dict:
    """`document`, unchanged (key order and numbers as built), once `model` accepts it: a writer never writes a
    file its own schema would refuse to read back."""
    model.model_validate(document)
    return document


def read_record(model: type[Record], path: Path) -> Record:
    """A result file read back through its model; DataError naming the file when it is damaged or of another
    schema (the fix: rerun, which rebuilds it from the finished units)."""
    data = read_json(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise DataError(f"'{path}' is damaged or from another version ({where}: {first['msg']})", where=str(path),
                        fix="rerun `clas-graph run SPEC`: it rebuilds the file from the finished units without "
                            "recomputing them") from None
