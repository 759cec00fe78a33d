"""DiffMean steering (CLaS-Bench): the normalised difference of two languages' residual means, added."""

from __future__ import annotations

from typing import ClassVar, Literal

from ..compile.plan import AddVector, AddVectorKeepNorm
from ..spec.base import FiniteFloat, Identifier, LanguageCode
from .base import CompileContext, Layers, Targeted

# torch loads inside `compile`, so spec models load without torch: `clas-graph validate` and `--help` start fast.


class DiffMeanIntervention(Targeted):
    """DiffMean steering as in CLaS-Bench (Gurgurov et al. 2026): d = resid_mean(target) - resid_mean(source) at
    the output of each listed layer (means of the statistics artifact), r <- r + alpha * d / (||d|| + 1e-8) at every
    position (prompt and generated). `preserve_norm` rescales each position back to its original norm:
    r <- (r + alpha*d_hat) * ||r|| / ||r + alpha*d_hat|| (our variant; CLaS-Bench adds without rescaling)."""

    kind: Literal["diffmean"]
    id: Identifier = "diffmean"
    """Name of this intervention; conditions refer to it."""
    layers: Layers
    """Decoder layers whose output is steered (CLaS-Bench: one layer; Llama 3.1 8B: 20)."""
    site: Literal["resid_post"] = "resid_post"
    """The residual stream after the layer."""
    target: LanguageCode
    """The language to steer toward."""
    source: LanguageCode | None = None
    """The language steered away from; default: each row's own language (so target rows get d = 0)."""
    alpha: FiniteFloat = 5.0
    """Step along the unit direction (CLaS-Bench's final Llama 3.1 8B setting: 5.0; sweep 1, 2.5, 5, 10)."""
    normalize: bool = True
    """Unit-normalise d (CLaS-Bench); false adds alpha * d itself."""
    preserve_norm: bool = False
    """Keep each position's residual norm (see above)."""

    LANGUAGE_FIELDS: ClassVar[tuple[str, ...]] = ("target", "source")

    def statistics_by_kind(self) -> bool:
        return True  # residual means come from the artifact

    def steering_target(self) -> str | None:
        return self.target

    def compile(self, ctx: CompileContext) -> list:
        import torch

        iv, layers, stats = self, ctx.layers(), ctx.stats
        ctx.check_site(iv.site)
        languages = list(ctx.spec.languages)
        resid = stats.tensors["resid_mean"].to(torch.float64)  # [G, L, H], spec language order
        op_class = AddVectorKeepNorm if iv.preserve_norm else AddVector
        ops = []
        for layer in layers:
            target = resid[languages.index(iv.target), layer]
            source = resid[languages.index(iv.source), layer] if iv.source is not None else resid[:, layer]
            d = target - source  # [H], or [G, H]: one row per source language
            if iv.normalize:
                d = d / (d.norm(dim=-1, keepdim=True) + 1e-8)  # CLaS-Bench's epsilon
            params = {"target": iv.target, "source": iv.source or "row language", "alpha": iv.alpha,
                      "normalize": iv.normalize, "preserve_norm": iv.preserve_norm}
            vector = (iv.alpha * d).to(torch.float32).contiguous()
            ops.append(op_class(**ctx.op_fields(layer, iv.site, params), vector=vector))
        return ops
