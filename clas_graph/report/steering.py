"""The language-steering matrix: source language (rows) x condition with its target (columns)."""

from __future__ import annotations

from pathlib import Path

from ..records import TaskResult
from ..spec.base import BASE_CONDITION
from .figures import plt, save_figure


def steering_matrix_figure(key: str, task: TaskResult, path: Path) -> Path:
    """Heatmaps of forcing % and steering score per (source, condition -> target); base's target is the source."""
    per_condition = task.per_language
    conditions = [c for c in per_condition if c != BASE_CONDITION] + [BASE_CONDITION]
    sources = task.languages
    labels = []
    for condition in conditions:
        targets = sorted({m["target"] for m in per_condition[condition].values()})
        labels.append(f"{condition}\n→ {'source' if condition == BASE_CONDITION else ','.join(targets)}")
    figure, axes = plt.subplots(1, 2, figsize=(2.2 + 1.3 * len(conditions) * 2, 1.2 + 0.45 * len(sources)),
                                squeeze=False)
    for axis, metric in zip(axes[0], ("forcing", "steering")):
        grid = [[per_condition[c][s][metric] for c in conditions] for s in sources]
        image = axis.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                axis.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8,
                          color="white" if value < 50 else "black")
        axis.set_xticks(range(len(conditions)))
        axis.set_xticklabels(labels, fontsize=7)
        axis.set_yticks(range(len(sources)))
        axis.set_yticklabels(sources)
        axis.set_ylabel("source language")
        axis.set_title(f"{key}: {metric} (%)", fontsize=10)
        figure.colorbar(image, ax=axis, fraction=0.04)
    figure.tight_layout()
    return save_figure(figure, path)
