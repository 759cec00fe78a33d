"""Evaluation report: paper-shaped tables (rich and markdown), honest summary sentences, and a delta figure."""

from __future__ import annotations

import math
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ..records import MetricsDocument, TaskResult
from ..spec.base import BASE_CONDITION
from .figures import plt, save_figure
from .summary import FINDINGS, Section, Summary

UNITS = {"accuracy": "acc. %", "f1": "F1 %", "top1": "top-1 %", "loss": "nats/token", "gold_logprob": "log p(gold)"}


def _stars(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    return "**" if p < 0.001 else "*" if p < 0.05 else ""


def _rows(task: TaskResult, anchor: str | None) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, body rows and footer of one task's table, shaped like the paper's Tables 1-2."""
    conditions = [c for c in task.per_language if c != BASE_CONDITION]
    primary = task.primary
    header = ["lang", f"base ({UNITS.get(primary, primary)})"] + [f"Δ {c}" for c in conditions]
    body = []
    for language in task.languages:
        base = task.per_language[BASE_CONDITION][language][primary]
        cells = [language + (" (anchor)" if language == anchor else ""), f"{base:.2f}"]
        cells += [f"{task.delta[c][language]:+.2f}" for c in conditions]
        body.append(cells)
    summary = task.summary
    avg = ["Avg.", _num(summary[BASE_CONDITION].mean_base)]
    avg += [_num(summary[c].mean_delta, signed=True) + _stars(summary[c].p) for c in conditions]
    sigma = ["σ", _num(summary[BASE_CONDITION].std_base)] + [_num(summary[c].std_condition) for c in conditions]
    pvals = ["p (paired t)", ""] + [_num(summary[c].p, digits=3) for c in conditions]
    return header, body, [avg, sigma, pvals]


def _num(value, signed: bool = False, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def task_table(key: str, task: TaskResult, anchor: str | None) -> Table:
    header, body, footer = _rows(task, anchor)
    direction = "higher is better" if task.higher_is_better else "lower is better"
    table = Table(title=f"{key}: {task.primary} per language ({direction}); Avg./σ/p over non-anchor languages",
                  title_justify="left", header_style="bold")
    for index, column in enumerate(header):  # escaped: sweep condition ids like clas[alpha=-1] look like markup
        table.add_column(escape(column), justify="left" if index == 0 else "right")
    for row in body:
        table.add_row(*row)
    table.add_section()
    for index, row in enumerate(footer):
        table.add_row(*row, style="bold" if index == 0 else None)
    return table


def markdown_table(key: str, task: TaskResult, anchor: str | None) -> str:
    header, body, footer = _rows(task, anchor)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body + footer]
    return "\n".join(lines)


def verdicts(key: str, task: TaskResult) -> list[str]:
    """One plain sentence per condition: what changed on average, and whether the paired t-test supports it."""
    out = []
    for condition, summary in task.summary.items():
        if condition == BASE_CONDITION:
            continue
        delta, p, n = summary.mean_delta, summary.p, summary.n
        if delta is None:
            out.append(f"- `{condition}` on {key}: no non-anchor languages to compare.")
            continue
        better = (delta > 0) == task.higher_is_better
        if p is not None and p < 0.05 and delta != 0:
            word = "improved" if better else "worsened"
            out.append(f"- `{condition}` {word} {key} {task.primary} by {delta:+.3f} on average over {n} "
                       f"non-anchor languages (paired t-test p = {p:.3g}).")
        else:
            ptext = f"p = {p:.3g}" if p is not None else "p undefined"
            out.append(f"- `{condition}` changed {key} {task.primary} by {delta:+.3f} on average over {n} "
                       f"non-anchor languages; not significant ({ptext}), so no effect is claimed.")
    return out


def evaluation_summary(document: MetricsDocument, *, spec_name: str, model: str, stats_meta: dict | None) -> Summary:
    """summary.md's sections: the run, the findings (one sentence per condition and task), each task's table."""
    anchor = document.anchor
    head = [f"# {spec_name}", "", f"Model: {model}. Anchor language: {anchor or 'none'}. "
            f"Conditions: {', '.join(document.conditions)}.", ""]
    if stats_meta:
        bridge = stats_meta.get("bridge", {})
        head += [f"Statistics: {stats_meta.get('samples')} parallel samples of "
                 f"{stats_meta.get('corpus', {}).get('kind')}, "
                 f"T_act {stats_meta.get('threshold', {}).get('kind')}, bridge layers {bridge.get('layers')} "
                 f"({bridge.get('rule')}).", ""]
    findings = [line for key, task in document.tasks.items() for line in verdicts(key, task)]
    sections = [Section(None, head), Section(FINDINGS, ["", *findings, "", "Stars: * p < 0.05, ** p < 0.001 (paired "
                                                        "t-test over non-anchor languages, anchor excluded).", ""])]
    sections += [Section(key, ["", markdown_table(key, task, anchor), ""]) for key, task in document.tasks.items()]
    sections.append(Section(None, ["![deltas per language](figures/deltas.png)", ""]))
    return Summary(sections, findings)


def deltas_figure(document: MetricsDocument, path: Path) -> Path:
    """Per task, grouped bars of each condition's delta vs base per language."""
    tasks = document.tasks
    figure, axes = plt.subplots(len(tasks), 1, figsize=(9, 2.8 * len(tasks)), squeeze=False)
    for axis, (key, task) in zip(axes[:, 0], tasks.items()):
        conditions = [c for c in task.delta if c != BASE_CONDITION]
        languages = task.languages
        width = 0.8 / max(len(conditions), 1)
        for index, condition in enumerate(conditions):
            xs = [i + (index - (len(conditions) - 1) / 2) * width for i in range(len(languages))]
            axis.bar(xs, [task.delta[condition][lang] for lang in languages], width=width, label=condition)
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_xticks(range(len(languages)))
        axis.set_xticklabels(languages)
        better = "higher is better" if task.higher_is_better else "lower is better"
        axis.set_ylabel(f"Δ {task.primary}")
        axis.set_title(f"{key}: change vs base per language ({better})", fontsize=10)
        if conditions:
            axis.legend(fontsize=8, frameon=False)
    figure.tight_layout()
    return save_figure(figure, path)
