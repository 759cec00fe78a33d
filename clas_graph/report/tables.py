"""Rich tables shaped like the paper's: language rows, base value and a delta column per condition."""

from __future__ import annotations

import math

from rich.table import Table


def _fmt(value: float, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def probe_table(metrics: dict, languages: list[str], anchor: str | None, title: str) -> Table:
    """metrics[condition][language] -> table of gold log-prob (base), its delta, top-1 agreement and KL."""
    conditions = [name for name in metrics if name != "base"]
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("lang")
    table.add_column("base\nlog p(gold)", justify="right")
    for name in conditions:
        table.add_column(f"{name}\nΔ log p(gold)", justify="right")
        table.add_column(f"{name}\ntop-1 = base", justify="right")
        table.add_column(f"{name}\nKL(base‖·)", justify="right")
    for language in languages:
        base = metrics["base"][language]
        cells = [language + (" (anchor)" if language == anchor else ""), _fmt(base["gold_logprob"])]
        for name in conditions:
            row = metrics[name][language]
            cells += [
                _fmt(row["gold_logprob"] - base["gold_logprob"], signed=True),
                f"{row['top1_agreement']:.0%}",
                f"{row['kl_from_base']:.4f}",
            ]
        table.add_row(*cells)
    return table
