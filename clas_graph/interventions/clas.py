"""CLAS: Cross-Lingual Activation Steering (Pokharel et al.) on h, the input of `down_proj`."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from ..compile.plan import SITE_H, ScaleNeurons
from ..errors import CompileError
from ..spec.base import FiniteFloat, Identifier
from ..spec.masks import MaskSource
from .base import CompileContext, Layers, Targeted

# torch loads inside the functions that make tensors, so spec models load without torch: `clas-graph validate`
# and `--help` start fast.
if TYPE_CHECKING:
    import torch

FORMULA = "(1-alpha)*h + alpha*h*(1+beta*M_shared)*(1-gamma*M_spec) == h * scale"
"""What the generated trace's comment says a CLAS op computes."""


class ClasIntervention(Targeted):
    """Cross-Lingual Activation Steering (Pokharel et al.), on h = input of `down_proj`, in `layers`.

    For touched rows: h1 = h*(1 + beta*M_shared); h2 = h1*(1 - gamma*M_spec);
    h_final = (1 - alpha)*h + alpha*h2. Untouched rows (the anchor language) keep h.
    """

    kind: Literal["clas"]
    id: Identifier = "clas"
    """Name of this intervention; conditions refer to it."""
    layers: Layers
    """Decoder layers to steer (the paper's 'bridge' layers), 0-based, e.g. [24, 25, 26, 27, 28, 29],
    or `{auto: bridge}` for the statistics runner's choice."""
    shared: MaskSource | None = None
    """M_shared: neurons boosted by beta (partial-shared neurons). Omitted means empty."""
    specific: MaskSource | None = None
    """M_spec: neurons damped by gamma (language-specific neurons). Omitted means empty."""
    beta: FiniteFloat = 0.4
    """Boost of shared neurons: h1 = h*(1 + beta*M_shared). Paper grid {0.2, 0.4, 0.6}; chosen 0.4."""
    gamma: FiniteFloat = 0.2
    """Damping of language-specific neurons: h2 = h1*(1 - gamma*M_spec). Paper grid {0.1, 0.2, 0.4}; chosen 0.2."""
    alpha: FiniteFloat = 1.0
    """Blend: h_final = (1-alpha)*h + alpha*h2. Any real; negative values push the other way."""
    require_disjoint: bool = True
    """The paper's categories are exclusive, so a neuron in both masks is an error unless this is false."""

    SOURCE_FIELDS: ClassVar[tuple[str, ...]] = ("shared", "specific")
    RECORDED_FIELDS: ClassVar[tuple[str, ...]] = ("alpha", "beta", "gamma")  # the paper's Fig. 6 compares them

    def compile(self, ctx: CompileContext) -> list:
        iv, layers = self, ctx.layers()
        ctx.check_site(SITE_H)
        shared, specific = ctx.mask("shared", layers), ctx.mask("specific", layers)
        ops = []
        for layer in layers:
            overlap = (shared[layer] & specific[layer]).nonzero().flatten().tolist()
            if overlap and iv.require_disjoint:
                raise CompileError(
                    f"layer {layer}: {len(overlap)} neuron(s) are in both `shared` and `specific` "
                    f"(e.g. {overlap[:5]}); the paper's categories are exclusive",
                    where=ctx.where("specific"), fix="remove them from one mask, or set `require_disjoint: false`",
                )
            scale = clas_scale(shared[layer], specific[layer], beta=iv.beta, gamma=iv.gamma, alpha=iv.alpha)
            params = {"beta": iv.beta, "gamma": iv.gamma, "alpha": iv.alpha,
                      "shared_neurons": int(shared[layer].sum()), "specific_neurons": int(specific[layer].sum())}
            ops.append(ScaleNeurons(**ctx.op_fields(layer, SITE_H, params), scale=scale, formula=FORMULA))
        return ops


def clas_scale(shared: torch.Tensor, specific: torch.Tensor, *, beta: float, gamma: float,
               alpha: float) -> torch.Tensor:
    """Per-neuron factor s with h_final = h * s, equal to (1-alpha)*h + alpha*h*(1+beta*Ms)*(1-gamma*Mspec).

    Computed in float64 so the float32 result is the correctly rounded factor;
    untouched neurons get exactly 1.0 (so alpha=0 or empty masks change nothing).
    """
    import torch

    ms = shared.to(torch.float64)
    mspec = specific.to(torch.float64)
    scale = (1.0 - alpha) + alpha * (1.0 + beta * ms) * (1.0 - gamma * mspec)
    return scale.to(torch.float32)
