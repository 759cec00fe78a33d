"""Where a run executes. Not part of a run's identity: the same spec gives the same numbers either way."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from .base import StrictModel


class LocalBackend(StrictModel):
    """Run on this machine (CPU or GPU per `model.device`)."""

    kind: Literal["local"] = "local"


class NdifBackend(StrictModel):
    """Run on NDIF (nnsight remote execution). The API key comes from NDIF_API_KEY or nnsight's config,
    never from the spec."""

    kind: Literal["ndif"] = "ndif"
    host: str | None = None
    """Service URL; default: NDIF_HOST or nnsight's configured host (https://api.ndif.us)."""
    retries: NonNegativeInt = 3
    """Extra attempts after a network or server error, with exponential backoff."""
    backoff_s: PositiveFloat = 2.0
    """First wait between attempts, doubled each time."""
    session_batches: PositiveInt = 8
    """Statistics batches sent in one request (`model.session`); only their running sums come back."""


Backend = Annotated[Union[LocalBackend, NdifBackend], Field(discriminator="kind")]
