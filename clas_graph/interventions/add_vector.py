"""Additive steering: a vector added to the residual stream after chosen layers."""

from __future__ import annotations

from typing import ClassVar, Literal

from ..compile.plan import AddVector
from ..spec.base import FiniteFloat, Identifier
from ..spec.rows import FixedAnchor
from ..spec.vectors import VectorSource
from .base import CompileContext, Layers, Targeted

# torch and the vector resolver (compile.vectors) load inside `compile`, so spec models load without torch:
# `clas-graph validate` and `--help` start fast.


class AddVectorIntervention(Targeted):
    """Additive steering: r <- r + coefficient * v on the residual stream after each layer in `layers`."""

    kind: Literal["add_vector"]
    id: Identifier = "add_vector"
    """Name of this intervention; conditions refer to it."""
    layers: Layers
    """Decoder layers whose output gets the vector, or `{auto: bridge}`."""
    site: Literal["resid_post"] = "resid_post"
    """The residual stream after the layer (the decoder layer's output)."""
    vector: VectorSource
    """The vector v: inline values, a safetensors file, or `{from_stats: diffmean}` (CLaS-Bench's DiffMean)."""
    coefficient: FiniteFloat = 1.0
    """Scale of the vector; negative values steer away."""

    SOURCE_FIELDS: ClassVar[tuple[str, ...]] = ("vector",)

    def compile(self, ctx: CompileContext) -> list:
        import torch

        from ..compile.vectors import resolve_vector

        iv, layers = self, ctx.layers()
        ctx.check_site(iv.site)
        anchor = ctx.spec.anchor.language if isinstance(ctx.spec.anchor, FixedAnchor) else None
        vectors = resolve_vector(iv.vector, layers=layers, dims=ctx.dims, where=ctx.where("vector"),
                                 base_dir=ctx.base_dir, stats=ctx.stats, languages=tuple(ctx.spec.languages),
                                 anchor=anchor)
        ops = []
        for layer in layers:
            vector = (iv.coefficient * vectors[layer].to(torch.float32)).contiguous()
            params = {"coefficient": iv.coefficient, "source": iv.vector.kind,
                      "norm": round(float(vectors[layer].norm(dim=-1).mean()), 6)}
            ops.append(AddVector(**ctx.op_fields(layer, iv.site, params), vector=vector))
        return ops
