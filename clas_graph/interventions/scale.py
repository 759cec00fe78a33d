"""Scale chosen neurons by a factor."""

from __future__ import annotations

from typing import Literal

from ..compile.plan import ScaleNeurons
from ..spec.base import FiniteFloat, Identifier
from .base import CompileContext
from .neurons import NeuronEdit

# torch loads inside `compile`, so spec models load without torch: `clas-graph validate` and `--help` start fast.


class ScaleIntervention(NeuronEdit):
    """Multiply chosen neurons: x[n] <- factor * x[n] for n in `neurons`, at `site`, in `layers`."""

    kind: Literal["scale"]
    id: Identifier = "scale"
    """Name of this intervention; conditions refer to it."""
    factor: FiniteFloat
    """The multiplier (0 ablates, 1 changes nothing)."""

    def compile(self, ctx: CompileContext) -> list:
        import torch

        iv, layers = self, ctx.layers()
        ctx.check_site(iv.site)
        masks = ctx.mask("neurons", layers)
        return [ScaleNeurons(**ctx.op_fields(layer, iv.site, {"factor": iv.factor, "neurons": int(masks[layer].sum())}),
                             scale=torch.where(masks[layer], torch.tensor(float(iv.factor)), torch.tensor(1.0)))
                for layer in layers]
