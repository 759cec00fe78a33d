"""RunSpec: the whole experiment a spec file describes."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, PositiveInt, PrivateAttr, model_validator

from ..interventions.registry import Intervention
from ..tasks.registry import Task
from .analysis import AnalysisConfig
from .backend import Backend, LocalBackend
from .base import BASE_CONDITION, FieldError, Identifier, LanguageCode, NewField, StrictModel
from .languages import all_languages, check_languages, task_languages
from .model_ref import ModelRef
from .needs import check_extras
from .rows import AnchorRule, FixedAnchor, LanguageRows
from .stats import StatsConfig
from .sweep import SelectRule, Sweep, check_sweep

ModuleName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]
"""A dotted Python module path, e.g. `mypkg.kinds`."""


class RunSpec(StrictModel):
    """A clas_graph experiment: model, languages, anchor rule, interventions, conditions and tasks."""

    schema_version: Literal[1]
    """Version of this spec format. Only 1 exists."""
    include: str | list[str] | None = None
    """Spec file(s) to start from (deep merge: mappings merge, lists and values are replaced by this file's).
    Resolved by the loader; relative to the including file. Relative paths inside specs resolve against the
    top-level spec's folder."""
    name: Identifier
    """Short name of the experiment; used in run directory names."""
    plugins: Annotated[list[ModuleName], NewField()] = []
    """Modules whose task and intervention kinds this spec may use besides the built-in ones, e.g.
    `[mypkg.kinds]` (docs/plugins.md); installed packages' plugins (entry points) need no listing."""
    description: str = ""
    """Free text for humans."""
    model: ModelRef
    """The model to run."""
    languages: list[LanguageCode] = Field(min_length=1)
    """Languages of the experiment, e.g. [en, de, fr, zh]. Every input row carries one of them."""
    anchor: AnchorRule = FixedAnchor()
    """Which rows are the untouched reference (default: English)."""
    stats: StatsConfig | None = None
    """Neuron statistics (statistics runner); needed by `{from_stats: ...}` masks and `{auto: bridge}` layers."""
    interventions: list[Intervention] = Field(default_factory=list)
    """Named interventions; a condition applies its listed ones in order."""
    conditions: dict[Identifier, list[Identifier]] | None = None
    """Condition name -> intervention ids applied together, in order. Default: one condition per
    intervention, named by its id. The unmodified model, `base`, is always evaluated too."""
    tasks: list[Task] = Field(default_factory=list)
    """What `clas-graph run` evaluates for every condition."""
    batch_size: PositiveInt = 8
    """Rows per forward pass."""
    stack_rows: PositiveInt | None = None
    """Rows per forward pass when several conditions run *stacked* on one batch (XNLI, retrieval, next_token:
    conditions that start at the same layer run as one trace over the batch repeated once per condition).
    Default: 4 × `batch_size`; set it to `batch_size` to run one trace per condition. Changes speed and memory
    only, never results. Our default, measured on CPU; on a GPU a larger value usually pays."""
    backend: Backend = LocalBackend()
    """Where to run: `{kind: local}` or `{kind: ndif}` (also `clas-graph run --remote`). Not part of the run's
    identity: results must not depend on it."""
    max_length: PositiveInt = 512
    """Longest input in tokens (the paper's 512); longer inputs are truncated on the right."""
    sweep: Sweep | None = None
    """Grid over intervention fields, `{clas.alpha: [-1, 0.5, 1], clas.beta: [0.2, 0.4]}` (or a list of such grids):
    each condition using a swept intervention becomes one condition per grid point, `clas[alpha=-1,beta=0.2]`.
    The grid is evaluated on each task's dev items; the point `select` picks per task is then compared with base
    and the unswept conditions on the test items."""
    select: SelectRule | None = None
    """How a sweep's point is chosen per task on the dev items (default with a sweep: best mean primary metric
    over non-anchor languages)."""
    analysis: AnalysisConfig | None = None
    """Alignment/separation analysis after evaluation (`clas-graph analyze`, and `run` when present). Not part
    of the run's identity: changing it reuses the run's evaluation. With a sweep it analyses the test phase's
    conditions: base, the baselines and each task's chosen grid point."""

    # Where the spec was loaded from; relative file paths resolve against it.
    _source: str | None = PrivateAttr(default=None)
    # `--set KEY=VALUE` overrides applied before validation (recorded in the run's manifest).
    _overrides: tuple[str, ...] = PrivateAttr(default=())
    # Field path (`interventions[0].layers[2]`) -> where its value was written (`file:line`, `--set KEY=VALUE`).
    _places: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_references(self) -> "RunSpec":
        langs = self.languages
        if len(set(langs)) != len(langs):
            dup = next(code for code in langs if langs.count(code) > 1)
            raise FieldError(("languages",), f"language '{dup}' is listed twice")
        if isinstance(self.anchor, FixedAnchor) and self.anchor.language not in langs:
            raise FieldError(
                ("anchor", "language"),
                f"anchor language '{self.anchor.language}' is not in `languages` {langs}; add it there",
            )
        if self.stats is not None and len(langs) < 2:
            raise FieldError(("languages",), "neuron categories compare languages: give at least two")
        check_languages(self)  # each task's own languages first: interventions' checks read them
        seen: dict[str, int] = {}
        for index, intervention in enumerate(self.interventions):
            if intervention.id in seen:
                raise FieldError(
                    ("interventions", index, "id"),
                    f"duplicate intervention id '{intervention.id}' (also interventions[{seen[intervention.id]}]); "
                    "give each intervention its own id",
                )
            seen[intervention.id] = index
            if self.stats is None:
                for field in intervention.stats_fields():
                    raise FieldError(
                        ("interventions", index, field),
                        "this needs neuron statistics, but the spec has no `stats:` section; add one "
                        "(e.g. `stats: {corpus: {kind: bible, limit: 100}}`)",
                    )
            intervention.check_references(self, index)  # languages it names, selections it reads
            if isinstance(intervention.rows, LanguageRows):
                for j, code in enumerate(intervention.rows.languages):
                    if code not in self.all_languages:
                        raise FieldError(
                            ("interventions", index, "rows", "languages", j),
                            f"language '{code}' is neither in `languages` {langs} nor in any task's languages",
                        )
        for name, ids in (self.conditions or {}).items():
            if name == BASE_CONDITION:
                raise FieldError(("conditions", name), "'base' is reserved for the unmodified model; rename it")
            if not ids:
                raise FieldError(("conditions", name), "a condition needs at least one intervention id")
            for j, ident in enumerate(ids):
                if ident not in seen:
                    raise FieldError(
                        ("conditions", name, j),
                        f"unknown intervention id '{ident}'; defined ids: {sorted(seen) or 'none'}",
                    )
        check_sweep(self)
        if self.analysis is not None:
            _check_analysis(self)
        for index, task in enumerate(self.tasks):
            task.check_references(self, index)
        check_extras(self)  # last: a spec's own mistakes come first
        return self

    @property
    def all_languages(self) -> tuple[str, ...]:
        """`languages` (the statistics' languages), then any further language a task evaluates."""
        return all_languages(self)

    def task_languages(self, task) -> list[str]:
        """The languages `task` evaluates: its own `languages:`, or the spec's."""
        return task_languages(self, task)

    @property
    def needs_stats(self) -> bool:
        """Whether compiling any intervention needs the statistics artifact."""
        return any(iv.stats_fields() for iv in self.interventions)

    @property
    def resolved_conditions(self) -> dict[str, list[str]]:
        """Condition name -> intervention ids, with the default of one condition per intervention."""
        if self.conditions is not None:
            return dict(self.conditions)
        return {iv.id: [iv.id] for iv in self.interventions}

    def intervention(self, ident: str):
        return next(iv for iv in self.interventions if iv.id == ident)

    @property
    def source(self) -> str | None:
        """Path of the file this spec was loaded from, if any."""
        return self._source

    def place(self, field: str) -> str:
        """Where `field` (`interventions[0].layers[2]`) or its nearest enclosing field was written: `file:line`,
        or `--set KEY=VALUE`; the spec file when unknown. Errors found after loading point there."""
        path = field
        while path:
            if path in self._places:
                return self._places[path]
            parent = _FIELD_PARENT.sub("", path)
            path = "" if parent == path else parent
        return self.source or "<spec>"

    @property
    def overrides(self) -> tuple[str, ...]:
        """The `--set KEY=VALUE` overrides applied on top of the file, in order."""
        return self._overrides


_FIELD_PARENT = re.compile(r"(\.[^.\[]*|\[[^\]]*\])$")  # the last `.name` or `[index]` of a field path


def _check_analysis(spec: "RunSpec") -> None:
    """The analysis names languages and conditions of this spec, and compares against a fixed anchor."""
    analysis = spec.analysis
    if not isinstance(spec.anchor, FixedAnchor):
        raise FieldError(("analysis",), "alignment is cosine similarity to the anchor language's parallel text, "
                                        "but the spec has no fixed anchor; set `anchor: {kind: fixed, language: en}`")
    for j, code in enumerate(analysis.languages or []):
        if code not in spec.languages:
            raise FieldError(("analysis", "languages", j), f"language '{code}' is not in `languages` {spec.languages}")
    if analysis.languages is not None and spec.anchor.language not in analysis.languages:
        raise FieldError(("analysis", "languages"),
                         f"the anchor '{spec.anchor.language}' must be analysed too "
                         "(alignment is measured against it); add it to `analysis.languages`")
    if len(analysis.languages or spec.languages) < 2:
        raise FieldError(("analysis", "languages") if analysis.languages else ("languages",),
                         "the analysis compares languages with the anchor: give at least two")
    conditions = spec.resolved_conditions
    for j, name in enumerate(analysis.conditions or []):
        if name not in conditions:
            raise FieldError(("analysis", "conditions", j),
                             f"unknown condition '{name}'; the spec's conditions: {sorted(conditions) or 'none'}")


