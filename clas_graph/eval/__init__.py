"""Scoring: task metrics (QA token F1 / exact match, classification accuracy / macro F1, paired t-tests,
retrieval ranks: `metrics`), representation geometry (alignment, silhouette, probe, t-SNE: `geometry`) and
offline language identification (`langid`). Import from the modules themselves."""
