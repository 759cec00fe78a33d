"""Intervention kinds. Each is kind-tagged, states its formula, and compiles to plan ops.

Sites use one vocabulary across architectures (see `clas_graph.sites`):
`mlp.down_proj.input` is h = act_fn(gate_proj(x)) * up_proj(x), the MLP's
intermediate activation that CLAS rewrites.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, NonNegativeInt

from .base import FiniteFloat, Identifier, StrictModel
from .masks import MaskSource
from .rows import RowRule


class AutoLayers(StrictModel):
    """Layers chosen by the statistics runner."""

    auto: Literal["bridge"]
    """`bridge`: the bridge layers picked by the rule in `stats.bridge`."""


Layers = Union[Annotated[list[NonNegativeInt], Field(min_length=1)], AutoLayers]
"""Explicit 0-based layers, or `{auto: bridge}`."""


class ClasIntervention(StrictModel):
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
    rows: RowRule = "non_anchor"
    """Rows to modify: `non_anchor` (default), `all`, or `{languages: [...]}`."""
    require_disjoint: bool = True
    """The paper's categories are exclusive, so a neuron in both masks is an error unless this is false."""


Intervention = Annotated[Union[ClasIntervention], Field(discriminator="kind")]
