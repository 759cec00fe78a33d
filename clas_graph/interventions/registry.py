"""The intervention kinds, listed explicitly, and the `Intervention` union specs validate against."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from .ablate import AblateIntervention
from .add_vector import AddVectorIntervention
from .clas import ClasIntervention
from .diffmean import DiffMeanIntervention
from .int_mu import IntMuIntervention
from .patch import PatchIntervention
from .scale import ScaleIntervention
from .set import SetIntervention

INTERVENTION_KINDS = (ClasIntervention, IntMuIntervention, AddVectorIntervention, ScaleIntervention,
                      AblateIntervention, SetIntervention, DiffMeanIntervention, PatchIntervention)
"""Every kind's model, in the union's order (the JSON Schema lists them so)."""

Intervention = Annotated[Union[INTERVENTION_KINDS], Field(discriminator="kind")]
"""One intervention of a spec, told apart by its `kind`."""


def kind_names() -> tuple[str, ...]:
    """The `kind` tags, in the union's order."""
    return tuple(model.model_fields["kind"].annotation.__args__[0] for model in INTERVENTION_KINDS)
