"""Analysis report: the paper's Figures 2, 3, 4 and 7 from analysis.json, and the summary's analysis section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from ..records import atomic_write_text, warn_damaged
from ..spec.base import BASE_CONDITION
from .figures import plt, save_figure

START, END = "<!-- analysis:start -->", "<!-- analysis:end -->"
FIGURES = {"alignment": "figures/analysis_alignment.png", "relation": "figures/analysis_relation.png",
           "heatmap": "figures/analysis_heatmap.png", "tsne": "figures/analysis_tsne.png"}
ANCHOR_COLOR = "black"


def _after(document: dict) -> list[str]:
    return [c for c in document["conditions"] if c != BASE_CONDITION]


def _targets(document: dict) -> list[str]:
    return [lang for lang in document["languages"] if lang != document["anchor"]]


def _layers_text(document: dict) -> str:
    layers = document["layers"]
    return f"layer {layers[0]}" if len(layers) == 1 else f"mean over layers {', '.join(map(str, layers))}"


def alignment_figure(document: dict, path: Path) -> Path:
    """Figure 2: cosine similarity to the anchor per language, base vs each condition (error bars: std over items)."""
    after, targets = _after(document), _targets(document)
    figure, axes = plt.subplots(len(after), 1, figsize=(max(6.5, 0.7 * len(targets) + 2), 3.0 * len(after)),
                                squeeze=False)
    means = document["alignment_mean"]
    xs = np.arange(len(targets))
    for axis, condition in zip(axes[:, 0], after):
        for offset, name, color in ((-0.2, BASE_CONDITION, "#9e9e9e"), (0.2, condition, "#4c72b0")):
            axis.bar(xs + offset, [means[name][lang]["mean"] for lang in targets], width=0.4, color=color,
                     yerr=[means[name][lang]["std"] or 0 for lang in targets], capsize=2,
                     label=f"{'before' if name == BASE_CONDITION else 'after'} ({name})")
        axis.set_xticks(xs)
        axis.set_xticklabels(targets)
        axis.set_ylabel(f"cosine to {document['anchor']}")
        low = min(means[n][lang]["mean"] - (means[n][lang]["std"] or 0) for n in (BASE_CONDITION, condition)
                  for lang in targets)
        axis.set_ylim(max(min(low - 0.05, 0.9), -1.0), 1.0)
        axis.set_title(f"Cosine similarity with {document['anchor']} before/after '{condition}' "
                       f"({_layers_text(document)}; bars: mean over {len(document['items'])} parallel texts ± std)",
                       fontsize=9)
        axis.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    return save_figure(figure, path)


def _fit_text(fit: dict) -> str:
    if fit["slope"] is None:
        return f"n={fit['n']}: no fit"
    return f"slope {fit['slope']:+.3g}, r {fit['r']:+.2f}, p {fit['p']:.2g} (n={fit['n']})"


def relation_figure(document: dict, path: Path) -> Path | None:
    """Figure 3: per task and condition, Δalignment and Δseparation (y) vs gain (x), one point per language,
    with the least-squares line."""
    relation = document.get("relation")
    pairs = [(task, condition) for task, by_condition in (relation or {}).items() for condition in by_condition]
    if not pairs:
        return None
    figure, axes = plt.subplots(len(pairs), 2, figsize=(10, 3.3 * len(pairs)), squeeze=False)
    for row, (task, condition) in enumerate(pairs):
        entry = relation[task][condition]
        gain = entry["gain"]
        languages = list(gain)
        x = np.array([gain[lang] for lang in languages])
        for col, (key, label, deltas) in enumerate((
                ("alignment", f"Δ cosine to {document['anchor']}", document["delta_alignment"][condition]),
                ("separation", "Δ silhouette (own language)", document["delta_separation"][condition]))):
            axis = axes[row, col]
            y = np.array([deltas[lang] for lang in languages])
            axis.scatter(x, y, color="#4c72b0", zorder=3)
            for lang, xi, yi in zip(languages, x, y):
                axis.annotate(lang, (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=8)
            fit = entry[key]
            if fit["slope"] is not None:
                line = np.linspace(x.min(), x.max(), 2)
                axis.plot(line, fit["slope"] * line + fit["intercept"], color="#e4572e", linewidth=1.2)
            axis.axhline(0, color="grey", linewidth=0.6)
            axis.axvline(0, color="grey", linewidth=0.6)
            axis.set_xlabel(_gain_label(task, entry, condition), fontsize=8)
            axis.set_ylabel(label, fontsize=8)
            axis.set_title(f"{task} · {condition}: {_fit_text(fit)}", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)


def _gain_label(task: str, entry: dict, condition: str) -> str:
    if entry["higher_is_better"]:
        return f"gain in {task}: {entry['primary']} of {condition} − base"
    return f"gain in {task}: {entry['primary']} of base − {condition} (lower is better)"


def heatmap_figure(document: dict, path: Path) -> Path:
    """Figure 7: per condition, languages x (Δalignment, Δseparation, gain per task); colour scaled per column
    (each column by its largest |value|), the value written in each cell."""
    after, targets = _after(document), _targets(document)
    relation = document.get("relation") or {}
    figure, axes = plt.subplots(1, len(after), figsize=(max(4.5, 1.3 * (2 + len(relation)) + 1.5) * len(after),
                                                        0.38 * len(targets) + 1.8), squeeze=False)
    for axis, condition in zip(axes[0], after):
        columns = [("Δ cosine", document["delta_alignment"][condition]),
                   ("Δ silhouette", document["delta_separation"][condition])]
        columns += [(f"gain {task}\n({by_condition[condition]['primary']}"
                     f"{'' if by_condition[condition]['higher_is_better'] else ', base − cond.'})",
                     by_condition[condition]["gain"]) for task, by_condition in relation.items()
                    if condition in by_condition]
        values = np.array([[column.get(lang, np.nan) for _, column in columns] for lang in targets], dtype=float)
        scale = np.nanmax(np.abs(values), axis=0)
        scale[~np.isfinite(scale) | (scale == 0)] = 1.0
        scaled = values / scale
        axis.imshow(scaled, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
        for i in range(len(targets)):
            for j in range(len(columns)):
                if np.isfinite(values[i, j]):  # white on the dark ends of the colour map
                    axis.text(j, i, f"{values[i, j]:+.3g}", ha="center", va="center", fontsize=7,
                              color="white" if abs(scaled[i, j]) > 0.6 else "black")
        axis.set_xticks(range(len(columns)))
        axis.set_xticklabels([name for name, _ in columns], fontsize=8)
        axis.set_yticks(range(len(targets)))
        axis.set_yticklabels(targets, fontsize=8)
        axis.set_title(f"'{condition}' vs base per language\n(blue > 0 > red, scaled per column)", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)


def tsne_figure(document: dict, path: Path) -> Path | None:
    """Figure 4: t-SNE before (base) | after (each condition); the anchor as stars, language centroids labelled."""
    tsne = document.get("tsne")
    if not tsne:
        return None
    conditions = document["conditions"]
    languages = document["languages"]
    anchor = document["anchor"]
    colors = plt.get_cmap("tab20" if len(languages) > 10 else "tab10")
    figure, axes = plt.subplots(1, len(conditions), figsize=(5.2 * len(conditions), 5.0), squeeze=False)
    for axis, condition in zip(axes[0], conditions):
        entry = tsne[condition]
        for index, lang in enumerate(languages):
            points = np.array(entry["points"][lang])
            color = ANCHOR_COLOR if lang == anchor else colors(index % colors.N)
            axis.scatter(points[:, 0], points[:, 1], s=40 if lang == anchor else 12, alpha=0.75, color=color,
                         marker="*" if lang == anchor else "o", label=lang + (" (anchor)" if lang == anchor else ""))
            cx, cy = entry["centroids"][lang]
            axis.scatter([cx], [cy], s=120, marker="X", color=color, edgecolors="white", linewidths=1.0, zorder=4)
            axis.annotate(lang, (cx, cy), textcoords="offset points", xytext=(5, 5), fontsize=9, fontweight="bold")
        role = "before" if condition == BASE_CONDITION else "after"
        axis.set_title(f"{role}: {condition} (layer {entry['layer']})", fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0, -1].legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5),
                       title="language (X = centroid)", title_fontsize=7)
    figure.suptitle(f"t-SNE of pooled hidden states ({document['metric']} metric, perplexity "
                    f"{next(iter(tsne.values()))['perplexity']:.0f}), one point per parallel text", fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path)


def _p(value) -> str:
    return "undefined" if value is None else f"{value:.3g}"


def findings(document: dict) -> list[str]:
    """Plain sentences: what moved, whether the paired test supports it, and whether it goes with the gains."""
    anchor, out = document["anchor"], []
    layers = _layers_text(document)
    for condition in _after(document):
        tests = document["tests"][condition]
        align, sep = tests["alignment"], tests["separation"]
        deltas = document["delta_alignment"][condition]
        down = sum(1 for v in deltas.values() if v < 0)
        verdict = "significant" if align["p"] is not None and align["p"] < 0.05 else "not significant"
        out.append(f"- Alignment (`{condition}`, {layers}): cosine to {anchor} changed by "
                   f"{align['mean_delta']:+.4f} on average over {align['n']} languages (lower in {down} of "
                   f"{len(deltas)}); paired t-test p = {_p(align['p'])}, {verdict}.")
        verdict = "significant" if sep["p"] is not None and sep["p"] < 0.05 else "not significant"
        base_overall = document["separation_mean"][BASE_CONDITION]["overall"]
        out.append(f"- Separation (`{condition}`): overall silhouette ({document['metric']}) {base_overall:.4f} → "
                   f"{base_overall + tests['overall_separation_delta']:.4f}; per-language change "
                   f"{sep['mean_delta']:+.4f} on average, paired t-test p = {_p(sep['p'])}, {verdict}.")
    for task, by_condition in (document.get("relation") or {}).items():
        for condition, entry in by_condition.items():
            for key, what in (("alignment", "Δalignment"), ("separation", "Δseparation")):
                fit = entry[key]
                if fit["p"] is None:
                    out.append(f"- {task} · `{condition}`: {what} vs gain undefined ({fit['n']} languages or no "
                               "spread in the gains).")
                elif fit["p"] < 0.05:
                    direction = "rises" if fit["slope"] > 0 else "falls"
                    out.append(f"- {task} · `{condition}`: {what} {direction} with the gain (slope "
                               f"{fit['slope']:+.3g}, r = {fit['r']:+.2f}, p = {fit['p']:.3g}, n = {fit['n']}).")
                else:
                    out.append(f"- {task} · `{condition}`: no relation between {what} and the gain (r = "
                               f"{fit['r']:+.2f}, p = {fit['p']:.3g}, n = {fit['n']}).")
            out.append(f"- {task} · `{condition}`: the paper's reading (gains go with more separation, not with "
                       f"moving toward {anchor}) is {_claim(entry)} here.")
    return out


def _claim(entry: dict) -> str:
    """Whether this run supports the paper's section 4.3 reading; significance at p < 0.05."""
    sep, align = entry["separation"], entry["alignment"]
    if sep["p"] is None:
        return "not testable"
    separation_up = sep["p"] < 0.05 and sep["slope"] > 0
    alignment_up = align["p"] is not None and align["p"] < 0.05 and align["slope"] > 0
    if separation_up and not alignment_up:
        return "supported (significant positive slope of Δseparation, none toward the anchor)"
    if separation_up:
        return "only partly supported (Δseparation rises with the gain, but so does Δalignment)"
    return "not supported (no significant positive slope of Δseparation on the gain)"


def _sweep_lines(document: dict) -> list[str]:
    """Which grid point was analysed for which task (a sweep's analysis compares its test-phase conditions)."""
    sweep = document.get("sweep")
    if not sweep:
        return []
    chosen = "; ".join(f"{task} → " + ", ".join(f"`{point}`" for point in by_family.values())
                       for task, by_family in sweep["chosen"].items() if by_family)
    baselines = ", ".join(f"`{name}`" for name in sweep["baselines"]) or "none"
    return [f"Sweep: analysed base, the baselines ({baselines}) and each task's grid point chosen on its dev items "
            f"(the test phase's conditions): {chosen or 'none'}. A task's relation uses its own chosen point.", ""]


def summary_section(document: dict, figures: dict[str, Path | None]) -> str:
    corpus = document["corpus"]
    lines = [START, "## Analysis (paper sections 4.2-4.3)", "",
             f"Pooled hidden states (mean over non-pad tokens, BOS left out) of {len(document['items'])} parallel "
             f"texts ({corpus['kind']}, offset {corpus.get('offset', 0)}) in {len(document['languages'])} languages; "
             f"alignment and separation at {_layers_text(document)}, t-SNE at layer {document['tsne_layer']}. "
             "Every number is in `analysis.json` (definitions included).", "", *_sweep_lines(document),
             *findings(document), ""]
    if document.get("probe"):
        lines += ["Linear probe of the language (cross-validated accuracy):", ""]
        for condition, by_layer in document["probe"].items():
            text = ", ".join(f"layer {layer}: {v['mean']:.3f}" for layer, v in by_layer.items()
                             if v["mean"] is not None)
            chance = next(iter(by_layer.values()))["chance"]
            lines.append(f"- `{condition}`: {text} (chance {chance:.3f})")
        lines.append("")
    for key, caption in (("alignment", "cosine to the anchor before/after"), ("relation", "changes vs gains"),
                         ("heatmap", "changes and gains per language"), ("tsne", "t-SNE before | after")):
        if figures.get(key) is not None:
            lines.append(f"![{caption}]({FIGURES[key]})")
    lines += ["", f"Analysis time: {document['seconds']:.1f} s.", END]
    return "\n".join(lines) + "\n"


def _summary_text(summary: Path, spec_name: str) -> str:
    """summary.md as it is, or a fresh heading when there is none or it cannot be read (said on stderr)."""
    if summary.is_file():
        try:
            return summary.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            warn_damaged(summary, "writing the analysis section into a new one (`clas-graph run SPEC` rewrites "
                                  "the rest)")
    return f"# {spec_name}\n\n"


def write_report(document: dict, run_dir: Path, console: Console) -> dict[str, Path | None]:
    """The four figures, and the analysis section of summary.md (replaced in place on a rerun)."""
    figures = {"alignment": alignment_figure(document, run_dir / FIGURES["alignment"]),
               "relation": relation_figure(document, run_dir / FIGURES["relation"]),
               "heatmap": heatmap_figure(document, run_dir / FIGURES["heatmap"]),
               "tsne": tsne_figure(document, run_dir / FIGURES["tsne"])}
    section = summary_section(document, figures)
    summary = run_dir / "summary.md"
    text = _summary_text(summary, document["spec_name"])
    if START in text and END in text:
        text = text[:text.index(START)] + section + text[text.index(END) + len(END):].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    atomic_write_text(summary, text)
    console.print("\n".join(findings(document)), markup=False, highlight=False)
    return figures
