"""Intervention kinds. Each is kind-tagged, states its formula, and compiles to plan ops.

Sites use one vocabulary across architectures (see `clas_graph.sites`):
- `mlp.act_fn.output`: a = act_fn(gate_proj(x)), the gate activation;
- `mlp.down_proj.input`: h = a * up_proj(x), the MLP's intermediate activation (CLAS's site);
- `resid_post`: the residual stream after the decoder layer (the layer's output).

Composition: a condition lists intervention ids; on the same layer and site they apply in that
order, each seeing the previous one's output; across sites, in the model's execution order.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, NonNegativeInt

from .base import FiniteFloat, Identifier, LanguageCode, StrictModel
from .masks import MaskSource
from .rows import RowRule
from .vectors import VectorSource

MlpSite = Literal["mlp.act_fn.output", "mlp.down_proj.input"]
Steps = Literal["all", "prompt", "generated"]


class AutoLayers(StrictModel):
    """Layers chosen by the statistics runner, or every layer of the model."""

    auto: Literal["bridge", "all"]
    """`bridge`: the bridge layers picked by the rule in `stats.bridge`; `all`: every layer (for selections such as
    LAPE that span the whole model)."""


Layers = Union[Annotated[list[NonNegativeInt], Field(min_length=1)], AutoLayers]
"""Explicit 0-based layers, `{auto: bridge}` or `{auto: all}`."""


class _Targeted(StrictModel):
    """What every kind shares: which rows it touches and, during generation, at which steps."""

    rows: RowRule = "non_anchor"
    """Rows to modify: `non_anchor` (default), `all`, or `{languages: [...]}`."""
    steps: Steps = "all"
    """During generation: `all` steps, only the `prompt` forward, or only `generated` tokens."""


class ClasIntervention(_Targeted):
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


class IntMuIntervention(_Targeted):
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


class AddVectorIntervention(_Targeted):
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


class _NeuronEdit(_Targeted):
    """Kinds that edit chosen MLP neurons in chosen layers."""

    layers: Layers
    """Decoder layers, or `{auto: bridge}`."""
    site: MlpSite = "mlp.down_proj.input"
    """The MLP activation to edit."""
    neurons: MaskSource
    """Which neurons: inline, file or `{from_stats: ...}`."""


class ScaleIntervention(_NeuronEdit):
    """Multiply chosen neurons: x[n] <- factor * x[n] for n in `neurons`, at `site`, in `layers`."""

    kind: Literal["scale"]
    id: Identifier = "scale"
    """Name of this intervention; conditions refer to it."""
    factor: FiniteFloat
    """The multiplier (0 ablates, 1 changes nothing)."""


class AblateIntervention(_NeuronEdit):
    """Zero chosen neurons: x[n] <- 0 for n in `neurons`, at `site`, in `layers`."""

    kind: Literal["ablate"]
    id: Identifier = "ablate"
    """Name of this intervention; conditions refer to it."""


class SetIntervention(_NeuronEdit):
    """Set chosen neurons to a statistic (or a constant): x[n] <- factor * value[n] (`mode: replace`) or
    x[n] <- x[n] + factor * value[n] (`mode: add`, CLaS-Bench's 'additive' LAPE steering), for n in `neurons`.

    Activating a target language's experts (Suau et al.: their median pooled response) or LAPE neurons
    (CLaS-Bench: the target's mean act_fn output) toward that language; with `language` unset each row uses its
    own language's statistic (Int-mu-like).
    """

    kind: Literal["set"]
    id: Identifier = "set"
    """Name of this intervention; conditions refer to it."""
    site: Literal["mlp.act_fn.output", "mlp.down_proj.input"] = "mlp.act_fn.output"
    """The MLP activation to set (LAPE's and Mondal et al.'s site by default)."""
    value: Union[Literal["mean", "median", "p90"], FiniteFloat] = "mean"
    """`mean`: the language's mean activation at `site` over counted tokens (statistics artifact); `median` / `p90`:
    median / 90th percentile of the language's max-pooled responses (needs `selections: [experts]` at this site;
    Suau et al.'s on_p50 / on_p90); a number: that constant."""
    language: LanguageCode | None = None
    """Whose statistic: this language for every touched row (e.g. the steering target); default each row's own."""
    mode: Literal["replace", "add"] = "replace"
    """`replace` the activation, or `add` the value to it."""
    factor: FiniteFloat = 1.0
    """Multiplier of the value (CLaS-Bench's s)."""


class DiffMeanIntervention(_Targeted):
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


Intervention = Annotated[
    Union[ClasIntervention, IntMuIntervention, AddVectorIntervention, ScaleIntervention, AblateIntervention,
          SetIntervention, DiffMeanIntervention],
    Field(discriminator="kind"),
]
