"""Neuron statistics: categories, thresholds, bridge layers, and the artifact that carries them."""

from .artifact import Moments, StatsArtifact, build_artifact
from .categories import CATEGORY_NAMES, bridge_layers, categorize, shares, thresholds

__all__ = ["CATEGORY_NAMES", "Moments", "StatsArtifact", "bridge_layers", "build_artifact", "categorize", "shares",
           "thresholds"]
