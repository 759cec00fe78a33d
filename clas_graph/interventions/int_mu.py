"""Int-mu (Mondal et al. 2025): language-specific neurons set to their language's dataset mean."""

from __future__ import annotations

from typing import Literal

from ..compile.plan import SetNeurons
from ..spec.base import Identifier
from .base import CompileContext, Layers, MlpSite, Targeted, mean_tensor

# torch loads inside `compile`, so spec models load without torch: `clas-graph validate` and `--help` start fast.


class IntMuIntervention(Targeted):
    """Int-mu (Mondal et al. 2025): overwrite each row language's language-specific neurons with their
    dataset mean for that language: x[n] <- mean_lang[n] for n in S_lang, at `site`, in `layers`.

    Needs statistics (categories and means). Mondal et al. hook `mlp.act_fn.output`, the default.
    """

    kind: Literal["int_mu"]
    id: Identifier = "int_mu"
    """Name of this intervention; conditions refer to it."""
    layers: Layers
    """Decoder layers, or `{auto: bridge}`."""
    site: MlpSite = "mlp.act_fn.output"
    """Where to overwrite: the gate activation (Mondal et al.) or h, the input of down_proj."""

    def statistics_by_kind(self) -> bool:
        return True  # its neurons and values are statistics by definition

    def compile(self, ctx: CompileContext) -> list:
        import torch

        iv, layers, stats = self, ctx.layers(), ctx.stats
        ctx.check_site(iv.site)
        means = stats.tensors[mean_tensor(iv.site)].to(torch.float32)  # [G, L, I]
        owner = stats.tensors["specific_language"].to(torch.long)  # [L, I], -1 = not language-specific
        languages = torch.arange(len(stats.languages))[:, None]
        ops = []
        for layer in layers:
            mask = owner[layer][None, :] == languages  # [G, I]: neuron n is specific to language g
            params = {"specific_neurons_per_language": dict(zip(stats.languages, mask.sum(1).tolist())),
                      "values": "dataset mean of the row language at this site"}
            ops.append(SetNeurons(**ctx.op_fields(layer, iv.site, params), mask=mask,
                                  values=torch.where(mask, means[:, layer], torch.zeros(()))))
        return ops
