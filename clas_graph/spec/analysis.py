"""The `analysis:` section: why a condition helped (paper sections 4.2-4.3, Appendix A).

Representations are mean-pooled hidden states (non-pad tokens, BOS left out) of parallel texts, read
through the same plans as evaluation; alignment, separation and their relation to the run's metrics are
computed from them. Choices the paper leaves open are fields here; their defaults are ours.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from .base import Identifier, LanguageCode, StrictModel
from .corpora import BibleCorpus, Corpus


class ProbeConfig(StrictModel):
    """A linear probe of the row language: logistic regression on standardised pooled vectors,
    accuracy by stratified k-fold cross-validation (scikit-learn). Not in the paper."""

    folds: int = Field(5, ge=2)
    """Cross-validation folds (stratified by language, shuffled with `analysis.seed`)."""
    max_iter: PositiveInt = 2000
    """Iterations of the lbfgs solver."""


class TsneConfig(StrictModel):
    """t-SNE of the pooled vectors, before | after, with language centroids (paper Figure 4)."""

    layer: NonNegativeInt | None = None
    """Decoder layer whose output is embedded; default: the penultimate layer (num_layers - 2), as in the paper."""
    perplexity: float = Field(30.0, gt=0)
    """t-SNE perplexity (capped at (points - 1) / 3 for small sets). The paper gives none; 30 is scikit-learn's."""


class AnalysisConfig(StrictModel):
    """Alignment and separation of languages before and after each condition, and their relation to the gains."""

    corpus: Corpus = BibleCorpus(limit=50, offset=100)
    """Parallel texts whose pooled hidden states are compared. The paper uses each task's own inputs; one
    parallel corpus for all tasks is our default (offline, aligned by construction)."""
    languages: list[LanguageCode] | None = None
    """Languages to analyse (must include the anchor); default: all of the spec's languages."""
    conditions: list[Identifier] | None = None
    """Conditions compared with `base`; default: every condition of the spec. With a sweep, a swept condition stands
    for each task's chosen grid point (the conditions of the test phase are analysed, never the whole grid)."""
    layers: list[NonNegativeInt] | None = None
    """Layers for alignment, separation and the relation (headline numbers average over them); default: the
    layers the analysed conditions intervene on (the bridge layers for `{auto: bridge}`), as in the paper."""
    metric: Literal["cosine", "euclidean"] = "cosine"
    """Distance for the silhouette score and t-SNE on the pooled vectors (ours; the paper names none)."""
    probe: ProbeConfig | None = None
    """Optional linear probe of the language (off by default)."""
    tsne: TsneConfig | None = TsneConfig()
    """t-SNE figure; null skips it."""
    relation: bool = True
    """Regress alignment and separation changes on each task's per-language gains (needs the run's metrics.json)."""
    seed: int = 0
    """Seed of t-SNE and the probe's folds."""
    batch_size: PositiveInt | None = None
    """Rows per forward pass; default: the spec's `batch_size`."""


def config_of(spec) -> AnalysisConfig:
    """The spec's `analysis:` section, or the defaults when it has none (`clas-graph analyze`)."""
    return spec.analysis if spec.analysis is not None else AnalysisConfig()
