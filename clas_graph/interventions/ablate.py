"""Zero chosen neurons."""

from __future__ import annotations

from typing import Literal

from ..compile.plan import SetNeurons
from ..spec.base import Identifier
from .base import CompileContext
from .neurons import NeuronEdit, neuron_counts

# torch loads inside `compile`, so spec models load without torch: `clas-graph validate` and `--help` start fast.


class AblateIntervention(NeuronEdit):
    """Zero chosen neurons: x[n] <- 0 for n in `neurons`, at `site`, in `layers`."""

    kind: Literal["ablate"]
    id: Identifier = "ablate"
    """Name of this intervention; conditions refer to it."""

    def compile(self, ctx: CompileContext) -> list:
        import torch

        iv, layers = self, ctx.layers()
        ctx.check_site(iv.site)
        masks = ctx.mask("neurons", layers, per_row_ok=True)
        return [SetNeurons(**ctx.op_fields(layer, iv.site, neuron_counts(masks[layer], ctx.spec.languages)),
                           mask=masks[layer], values=torch.zeros(masks[layer].shape))
                for layer in layers]
