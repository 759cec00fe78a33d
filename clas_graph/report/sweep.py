"""Sweep report: dev scores per grid point (table), the choice per task, and figures.

- metric vs each swept field per task, one line per setting of the other fields (the paper's Fig. 5 for alpha);
- beta-only (gamma = 0) and gamma-only (beta = 0) curves at alpha = 1 when the grid has them (the paper's Fig. 6);
- a heatmap per task for two-field grids.
All dev numbers: the test items never enter a choice.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..spec.sweep import format_value, is_number
from .figures import plt, save_figure
from .summary import FINDINGS, Section, Summary


def _num(value, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _values(values: dict) -> str:
    return ", ".join(f"{key}={format_value(v)}" for key, v in values.items()) or "(defaults)"


def conditions_table(expansion) -> Table:
    """What `clas-graph compile` lists for a sweep: every expanded condition and the phase it runs in."""
    table = Table(title=f"sweep: {len(expansion.points)} grid point(s) over {', '.join(expansion.keys)}; "
                        f"{len(expansion.baselines)} baseline(s)", title_justify="left", header_style="bold")
    for column in ("condition", "from", "values", "evaluated on"):
        table.add_column(column)
    table.add_row("base", "", "", "dev and test items")
    for point in expansion.points:
        table.add_row(escape(point.condition), point.family, escape(_values(point.values)),
                      "dev items; test items if chosen")
    for name in expansion.baselines:
        table.add_row(escape(name), name, "", "test items")
    return table


def dev_table(key: str, task: dict) -> Table:
    direction = "higher is better" if task["higher_is_better"] else "lower is better"
    title = (f"{key} dev: mean {task['metric']} over {len(task['languages'])} language(s) ({direction}); "
             f"{task['dev_items']}")
    table = Table(title=escape(title), title_justify="left", header_style="bold")
    for column in ("grid point", "dev mean", "Δ base", "chosen"):
        table.add_column(column, justify="left" if column == "grid point" else "right")
    table.add_row("base", _num(task["base"]), "", "")
    chosen = set(task["chosen"].values())
    for name, point in task["points"].items():
        table.add_row(escape(name), _num(point["mean"]), _num(point["delta"], signed=True),
                      "✓" if name in chosen else "", style="bold" if name in chosen else None)
    return table


def dev_markdown(key: str, task: dict) -> str:
    chosen = set(task["chosen"].values())
    lines = [f"| grid point | dev mean {task['metric']} | Δ base | chosen |", "|---|---:|---:|:---:|",
             f"| base | {_num(task['base'])} | | |"]
    for name, point in task["points"].items():
        mark = "✓" if name in chosen else ""
        lines.append(f"| `{name}` | {_num(point['mean'])} | {_num(point['delta'], signed=True)} | {mark} |")
    return "\n".join(lines)


def selection_sentences(document: dict) -> list[str]:
    sweep = document["sweep"]
    rule = sweep["rule"]
    out = []
    for key, task in sweep["tasks"].items():
        for family, chosen in task["chosen"].items():
            point = task["points"][chosen]
            among = sum(1 for p in task["points"].values() if p["family"] == family)
            out.append(f"- {key}: chose `{chosen}` for `{family}` among {among} "
                       f"grid points: dev mean {task['metric']} {_num(point['mean'])} vs base {_num(task['base'])} "
                       f"({_num(point['delta'], signed=True)}), on {task['dev_items']}. Held-out comparison on "
                       f"{task['test_items']}." + ("" if _beats_base(task, point) else
                                                   " No grid point beat base on the dev items."))
    goal = "the task's direction" if rule["goal"] == "auto" else rule["goal"]
    out.append(f"- Rule: best mean {rule['metric'] or 'primary metric'} over {rule['languages'].replace('_', '-')} "
               f"languages on the dev items ({goal}); ties go to the earlier grid point. The test items never entered "
               "the choice; dev scores of every point: `dev/metrics.json` and the tables below.")
    return out


def _beats_base(task: dict, point: dict) -> bool:
    delta = point["delta"]
    return delta is not None and (delta > 0 if task["higher_is_better"] else delta < 0)


def report_sweep(document: dict, path: Path, console: Console, summary: Summary) -> None:
    """Print the dev tables, draw the figures, and add the sweep's sections to `summary`: how the point was chosen
    (before the findings) and the dev scores per grid point (at the end)."""
    sweep = document["sweep"]
    for key, task in sweep["tasks"].items():
        console.print(dev_table(key, task))
    figures = sweep_figures(sweep, path / "figures")
    summary.insert_before(FINDINGS, Section("Sweep: chosen on dev items, reported on held-out items", [
        "", *selection_sentences(document), "",
        "The tables under Findings compare base, the chosen point and the baselines on the held-out items.", ""]))
    dev = [""]
    for key, task in sweep["tasks"].items():
        dev += [f"### {key}", "", dev_markdown(key, task), ""]
    dev += [f"![{figure.stem}](figures/{figure.name})" for figure in figures] + [""]
    summary.sections.append(Section("Sweep: dev scores per grid point", dev))


def _numeric_keys(sweep: dict) -> list[str]:
    keys = list(dict.fromkeys(k for p in sweep["points"] for k in p["values"]))
    return [k for k in keys if all(is_number(p["values"][k]) for p in sweep["points"] if k in p["values"])]


def sweep_figures(sweep: dict, folder: Path) -> list[Path]:
    figures = []
    for key in _numeric_keys(sweep):
        figures.append(curve_figure(sweep, key, folder / f"sweep_{key.replace('.', '_')}.png"))
    beta_gamma = beta_gamma_figure(sweep, folder / "sweep_beta_gamma_at_alpha1.png")
    if beta_gamma is not None:
        figures.append(beta_gamma)
    for family in dict.fromkeys(p["family"] for p in sweep["points"]):
        heat = heatmap_figure(sweep, family, folder / f"sweep_heatmap_{family}.png")
        if heat is not None:
            figures.append(heat)
    return figures


def _axes(count: int, width: float = 4.2):
    figure, axes = plt.subplots(1, count, figsize=(width * count, 3.3), squeeze=False)
    return figure, axes[0]


def _base_line(axis, task) -> None:
    if task["base"] is not None:
        axis.axhline(task["base"], color="black", linestyle="--", linewidth=0.9, label="base")


def curve_figure(sweep: dict, key: str, path: Path) -> Path:
    """Dev mean metric vs one swept field per task; one line per family and setting of the other fields."""
    tasks = sweep["tasks"]
    figure, axes = _axes(len(tasks))
    field = key.split(".", 1)[1]
    for axis, (task_key, task) in zip(axes, tasks.items()):
        series: dict[str, list] = {}
        for name, point in task["points"].items():
            if key not in point["values"]:
                continue
            others = {k: v for k, v in point["values"].items() if k != key}
            label = point["family"] + (f" ({_values(others)})" if others else "")
            series.setdefault(label, []).append((point["values"][key], point["mean"], name))
        chosen = set(task["chosen"].values())
        for label, rows in series.items():
            rows = sorted((x, y, n) for x, y, n in rows if y is not None)
            axis.plot([x for x, _, _ in rows], [y for _, y, _ in rows], marker="o", markersize=4, label=label)
            for x, y, name in rows:
                if name in chosen:
                    axis.plot([x], [y], marker="*", markersize=14, color="crimson", zorder=5)
        _base_line(axis, task)
        axis.set_xlabel(field)
        axis.set_ylabel(f"dev mean {task['metric']}")
        axis.set_title(f"{task_key} ({'higher' if task['higher_is_better'] else 'lower'} is better; ★ chosen)",
                       fontsize=9)
        if len(series) <= 6:
            axis.legend(fontsize=7, frameon=False)
    figure.suptitle(f"dev score vs {field}", fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path)


def beta_gamma_figure(sweep: dict, path: Path) -> Path | None:
    """Beta-only (gamma = 0) and gamma-only (beta = 0) curves at alpha = 1, as the paper's Fig. 6."""
    tasks = sweep["tasks"]
    curves = {}
    for task_key, task in tasks.items():
        beta_only, gamma_only = [], []
        for point in task["points"].values():
            eff = point.get("effective", {})
            if not all(is_number(eff.get(k)) for k in ("alpha", "beta", "gamma")) or eff["alpha"] != 1:
                continue
            if point["mean"] is None:
                continue
            if eff["gamma"] == 0:
                beta_only.append((eff["beta"], point["mean"]))
            if eff["beta"] == 0:
                gamma_only.append((eff["gamma"], point["mean"]))
        curves[task_key] = (sorted(set(beta_only)), sorted(set(gamma_only)))
    if not any(len(b) >= 2 or len(g) >= 2 for b, g in curves.values()):
        return None
    figure, axes = _axes(len(tasks))
    for axis, (task_key, task) in zip(axes, tasks.items()):
        beta_only, gamma_only = curves[task_key]
        if beta_only:
            axis.plot(*zip(*beta_only), marker="o", color="tab:blue", label="vary β (γ = 0)")
        if gamma_only:
            axis.plot(*zip(*gamma_only), marker="s", color="tab:red", label="vary γ (β = 0)")
        _base_line(axis, task)
        axis.set_xlabel("β or γ")
        axis.set_ylabel(f"dev mean {task['metric']}")
        axis.set_title(f"{task_key}: α = 1", fontsize=9)
        axis.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    return save_figure(figure, path)


def heatmap_figure(sweep: dict, family: str, path: Path) -> Path | None:
    """Dev mean per cell of a two-field grid, per task (missing cells blank)."""
    points = [p for p in sweep["points"] if p["family"] == family]
    keys = list(dict.fromkeys(k for p in points for k in p["values"]))
    if len(keys) != 2 or any(not isinstance(p["values"].get(k, 0), (int, float, str)) for p in points for k in keys):
        return None
    rows = sorted({p["values"][keys[0]] for p in points if keys[0] in p["values"]}, key=_order)
    cols = sorted({p["values"][keys[1]] for p in points if keys[1] in p["values"]}, key=_order)
    if len(rows) < 2 or len(cols) < 2:
        return None
    tasks = sweep["tasks"]
    figure, axes = _axes(len(tasks), width=1.0 + 0.9 * len(cols))
    for axis, (task_key, task) in zip(axes, tasks.items()):
        grid = [[math.nan] * len(cols) for _ in rows]
        for point in task["points"].values():
            values = point["values"]
            if point["family"] == family and keys[0] in values and keys[1] in values and point["mean"] is not None:
                grid[rows.index(values[keys[0]])][cols.index(values[keys[1]])] = point["mean"]
        image = axis.imshow(grid, cmap="viridis" if task["higher_is_better"] else "viridis_r", aspect="auto")
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if not math.isnan(value):
                    axis.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=7, color="white")
        axis.set_xticks(range(len(cols)), [format_value(c) for c in cols])
        axis.set_yticks(range(len(rows)), [format_value(r) for r in rows])
        axis.set_xlabel(keys[1])
        axis.set_ylabel(keys[0])
        axis.set_title(f"{task_key}: dev mean {task['metric']}", fontsize=9)
        figure.colorbar(image, ax=axis, shrink=0.8)
    figure.tight_layout()
    return save_figure(figure, path)


def _order(value):
    return (0, value, "") if is_number(value) else (1, 0, str(value))
