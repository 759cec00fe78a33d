"""The kinds that edit chosen MLP neurons in chosen layers (`scale`, `ablate`, `set`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from ..selections.registry import SELECTION_NAMES
from ..spec.base import FieldError
from ..spec.masks import MaskSource, StatsMask
from .base import Layers, MlpSite, Targeted

# torch is only named in annotations here, so spec models load without torch: `clas-graph validate` and `--help`
# start fast.
if TYPE_CHECKING:
    import torch

    from ..spec.run_spec import RunSpec


class NeuronEdit(Targeted):
    """Kinds that edit chosen MLP neurons in chosen layers."""

    layers: Layers
    """Decoder layers, or `{auto: bridge}`."""
    site: MlpSite = "mlp.down_proj.input"
    """The MLP activation to edit."""
    neurons: MaskSource
    """Which neurons: inline, file or `{from_stats: ...}`."""

    SOURCE_FIELDS: ClassVar[tuple[str, ...]] = ("neurons",)

    def check_selections(self, spec: RunSpec, index: int) -> None:
        """`{from_stats: lape}` / `experts` neurons are computed only when `stats.selections` asks for them."""
        source = self.neurons
        chosen = getattr(spec.stats, "selections", None) if spec.stats is not None else None
        if isinstance(source, StatsMask) and source.from_stats in SELECTION_NAMES:
            if chosen is None or getattr(chosen, source.from_stats) is None:
                raise FieldError(("interventions", index, "neurons", "from_stats"),
                                 f"`{source.from_stats}` neurons are computed only when asked for; add "
                                 f"`selections: [{source.from_stats}]` to the `stats:` section")


def neuron_counts(mask: torch.Tensor, languages) -> dict:
    """Plan params: how many neurons a mask holds (per language for a per-language table)."""
    if mask.dim() == 2:  # per-language table: each row's own language's neurons
        return {"neurons_per_language": dict(zip(languages, mask.sum(1).tolist()))}
    return {"neurons": int(mask.sum())}
