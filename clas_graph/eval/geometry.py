"""Geometry of pooled representations (paper sections 4.2-4.3): alignment to the anchor, language separation,
a language probe, the relation of changes to gains, and t-SNE. Plain numpy in, plain floats out.

`vectors` is always {language: array [items, hidden]} with item i parallel across languages.
"""

from __future__ import annotations

import math

import numpy as np


def _none_if_nan(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def item_cosines(vectors: dict[str, np.ndarray], anchor: str) -> dict[str, np.ndarray]:
    """Per non-anchor language: cosine similarity of each item's vector to the anchor's parallel item's vector."""
    ref = np.asarray(vectors[anchor], dtype=np.float64)
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True).clip(min=1e-12)
    out = {}
    for language, values in vectors.items():
        if language != anchor:
            values = np.asarray(values, dtype=np.float64)
            out[language] = (values / np.linalg.norm(values, axis=1, keepdims=True).clip(min=1e-12) * ref).sum(1)
    return out


def spread(values: np.ndarray) -> dict:
    """Mean and standard deviation (ddof=1) over items."""
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else None,
            "n": len(values)}


def cosine_to_anchor(vectors: dict[str, np.ndarray], anchor: str) -> dict[str, dict]:
    """Per non-anchor language: mean and std over items of the cosine to the anchor's parallel item."""
    return {language: spread(values) for language, values in item_cosines(vectors, anchor).items()}


def _stack(vectors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    languages = list(vectors)
    points = np.concatenate([np.asarray(vectors[lang], dtype=np.float64) for lang in languages])
    labels = np.concatenate([np.full(len(vectors[lang]), index) for index, lang in enumerate(languages)])
    return points, labels, languages


def silhouette(vectors: dict[str, np.ndarray], metric: str = "cosine") -> dict:
    """Silhouette of the language labels (scikit-learn `silhouette_samples` with `metric`): `overall` is the mean
    over all points (= `silhouette_score`), `per_language` the mean over that language's points. In [-1, 1];
    higher means languages form tighter, better separated clusters."""
    from sklearn.metrics import silhouette_samples

    points, labels, languages = _stack(vectors)
    values = silhouette_samples(points, labels, metric=metric)
    return {"overall": float(values.mean()),
            "per_language": {lang: float(values[labels == index].mean()) for index, lang in enumerate(languages)}}


def probe_accuracy(vectors: dict[str, np.ndarray], *, folds: int, seed: int, max_iter: int) -> dict:
    """Language-identification accuracy of a linear probe (standardised features, logistic regression),
    stratified `folds`-fold cross-validation; mean and std over folds, and chance (1 / languages)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    points, labels, languages = _stack(vectors)
    folds = min(folds, int(np.bincount(labels).min()))
    if folds < 2:
        return {"mean": None, "std": None, "folds": folds, "chance": 1 / len(languages)}
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    scores = cross_val_score(probe, points, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return {"mean": float(scores.mean()), "std": float(scores.std(ddof=1)), "folds": folds,
            "chance": 1 / len(languages)}


def regression(x: list[float], y: list[float]) -> dict:
    """Least-squares line y = slope * x + intercept with Pearson r and the two-sided p of slope = 0
    (`scipy.stats.linregress`). Undefined (null) with fewer than 3 points or no spread in x."""
    from scipy.stats import linregress

    n = len(x)
    if n < 3 or np.ptp(np.asarray(x, dtype=np.float64)) == 0:
        return {"slope": None, "intercept": None, "r": None, "p": None, "n": n}
    fit = linregress(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return {"slope": _none_if_nan(fit.slope), "intercept": _none_if_nan(fit.intercept),
            "r": _none_if_nan(fit.rvalue), "p": _none_if_nan(fit.pvalue), "n": n}


def tsne(vectors: dict[str, np.ndarray], *, metric: str, perplexity: float, seed: int) -> dict:
    """2-D t-SNE of all points (scikit-learn, PCA init, fixed seed; perplexity capped at (points - 1) / 3)
    and each language's centroid, the mean 2-D position of its points (the paper's definition)."""
    from sklearn.manifold import TSNE

    points, labels, languages = _stack(vectors)
    perplexity = min(perplexity, max((len(points) - 1) / 3, 1.0))
    embedded = TSNE(n_components=2, perplexity=perplexity, metric=metric, init="pca", random_state=seed,
                    ).fit_transform(points)
    return {"perplexity": perplexity,
            "points": {lang: embedded[labels == i].round(4).tolist() for i, lang in enumerate(languages)},
            "centroids": {lang: embedded[labels == i].mean(0).round(4).tolist() for i, lang in enumerate(languages)}}
