"""Matplotlib figures written into run directories (headless: Agg backend)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..records import atomic_write_bytes  # noqa: E402

BRIDGE_COLOR = "#8e24aa"
CATEGORY_COLORS = {"dead": "#9e9e9e", "language_specific": "#e4572e", "partial_shared": "#4c72b0",
                   "all_shared": "#55a868"}


def save_figure(figure, path: Path) -> Path:
    """Write the figure as PNG (atomically) and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def category_shares_figure(shares: dict[str, list[float]], bridge: list[int], path: Path, title: str) -> Path:
    """Stacked bars of neuron-category shares per layer (like the paper's Figure 1), bridge layers shaded."""
    layers = range(len(next(iter(shares.values()))))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.42 * len(layers)), 3.6))
    bottom = [0.0] * len(layers)
    for name, color in CATEGORY_COLORS.items():
        values = [100 * v for v in shares[name]]
        axis.bar(list(layers), values, bottom=bottom, color=color, width=0.8, label=name.replace("_", "-"))
        bottom = [b + v for b, v in zip(bottom, values)]
    if bridge:  # outline the bridge layers over the bars, and colour their tick labels
        axis.bar(bridge, [100] * len(bridge), width=0.92, fill=False, edgecolor=BRIDGE_COLOR, linewidth=2.2)
    axis.set_xlabel("layer")
    axis.set_ylabel("% of neurons")
    axis.set_xticks(list(layers))
    for tick in axis.get_xticklabels():
        if int(tick.get_text()) in bridge:
            tick.set_color(BRIDGE_COLOR)
            tick.set_fontweight("bold")
    axis.set_ylim(0, 100)
    axis.set_xlim(-0.6, len(layers) - 0.4)
    axis.set_title(title + (f"  (bridge layers {bridge[0]}-{bridge[-1]} outlined)" if bridge else ""), fontsize=10)
    axis.legend(ncol=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    return save_figure(figure, path)
