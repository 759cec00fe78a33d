"""The latent-language lens figure (Wendler et al. 2024, Fig. 2 style) and the record of the token -> language map."""

from __future__ import annotations

from pathlib import Path

from ..records import TaskResult, atomic_write_json
from ..spec.base import BASE_CONDITION
from .figures import plt, save_figure


def lens_figure(key: str, task: TaskResult, path: Path) -> Path:
    """One panel per prompt language: per-layer probability in the prompt language (solid) and in the anchor
    (dashed), one colour per condition; the crossover layer (anchor first above the prompt language) in the legend."""
    per_condition = task.per_language
    conditions = [BASE_CONDITION] + [c for c in per_condition if c != BASE_CONDITION]
    languages = task.languages
    columns = min(4, len(languages)) or 1
    rows = -(-len(languages) // columns) or 1
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.7 * rows), squeeze=False, sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis in axes.flat[len(languages):]:
        axis.set_visible(False)
    for axis, language in zip(axes.flat, languages):
        anchor = None
        for index, condition in enumerate(conditions):
            unit = per_condition[condition][language]
            anchor = unit["anchor"]
            colour = colours[index % len(colours)]
            cross = unit["crossover_layer"]
            axis.plot(unit["layers"], unit["curves"]["prompt"], color=colour, linewidth=1.6,
                      label=f"{condition}: {language}")
            axis.plot(unit["layers"], unit["curves"]["anchor"], color=colour, linewidth=1.6, linestyle="--",
                      label=f"{condition}: {anchor} (crossover {cross if cross is not None else 'none'})")
            if cross is not None:
                axis.axvline(cross, color=colour, linewidth=0.8, linestyle=":")
        reads = per_condition[BASE_CONDITION][language]["reads"]
        axis.set_title(f"{language} prompts ({reads})", fontsize=9)
        axis.set_xlabel("layer")
        axis.set_ylim(0, 1)
        axis.legend(fontsize=6, frameon=False, loc="upper left")
    axes[0, 0].set_ylabel("probability")
    figure.suptitle(f"{key}: logit lens, prompt language (solid) vs anchor (dashed)", fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path)


def token_languages_record(key: str, task: TaskResult, path: Path) -> Path | None:
    """The token -> language map the units used (definition, sizes, digest, examples and the token ids of every
    language a unit read), as JSON beside the figures; None when the lens read no language masses."""
    record: dict = {}
    for by_language in task.per_language.values():
        for unit in by_language.values():
            found = unit.get("token_languages")
            if found is None:
                continue
            tokens = {**record.get("tokens", {}), **found["tokens"]}
            record = {**found, "tokens": dict(sorted(tokens.items()))}
    if not record:
        return None
    atomic_write_json(path, record, indent=1)
    return path
