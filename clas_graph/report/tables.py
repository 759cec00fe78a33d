"""Rich table of the statistics runner: category shares, T_act and bridge scores per layer."""

from __future__ import annotations

from rich.table import Table


def category_table(shares: dict[str, list[float]], scores: list[float], bridge: list[int], t_act: list[float],
                   candidates: list[int], title: str) -> Table:
    """Per-layer category shares, T_act, bridge score and the chosen layers."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in ("layer", "dead", "specific", "partial", "all-shared", "T_act", "score", "bridge"):
        table.add_column(column, justify="right")
    for layer, score in enumerate(scores):
        mark = "◆" if layer in bridge else ("·" if layer in candidates else "")
        style = "bold magenta" if layer in bridge else None
        table.add_row(str(layer), *(f"{100 * shares[name][layer]:.1f}%" for name in
                                    ("dead", "language_specific", "partial_shared", "all_shared")),
                      f"{t_act[layer]:.4g}", f"{score:+.3f}", mark, style=style)
    return table
