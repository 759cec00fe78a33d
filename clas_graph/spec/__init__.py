"""What users write: the pydantic models of a spec file, and the loader."""

from .backend import Backend, LocalBackend, NdifBackend
from .corpora import BibleCorpus, Corpus, FileCorpus, XQuADCorpus
from .interventions import (AblateIntervention, AddVectorIntervention, AutoLayers, ClasIntervention,
                            DiffMeanIntervention, IntMuIntervention, Intervention, ScaleIntervention, SetIntervention)
from .load import apply_overrides, load_spec, validate_data
from .masks import FileMask, InlineMask, MaskSource, StatsMask
from .model_ref import ModelRef
from .rows import AnchorRule, DetectedAnchor, FixedAnchor, LanguageRows, NoAnchor, RowRule
from .run_spec import BASE_CONDITION, RunSpec
from .stats import AbsoluteThreshold, BridgeRule, QuantileThreshold, StatsConfig, Threshold
from .tasks import LanguageSteeringTask, LmLossTask, NextTokenTask, RetrievalTask, Task, XnliTask, XquadTask
from .vectors import FileVector, InlineVector, StatsVector, VectorSource

__all__ = [
    "Backend", "LocalBackend", "NdifBackend",
    "LanguageSteeringTask", "LmLossTask", "RetrievalTask", "XnliTask", "XquadTask",
    "AblateIntervention", "AddVectorIntervention", "FileVector", "InlineVector", "IntMuIntervention",
    "ScaleIntervention", "StatsVector", "VectorSource", "SetIntervention", "DiffMeanIntervention",
    "AbsoluteThreshold", "AutoLayers", "BridgeRule", "Corpus", "FileCorpus", "QuantileThreshold", "StatsConfig",
    "StatsMask", "Threshold", "XQuADCorpus",
    "AnchorRule", "DetectedAnchor", "BASE_CONDITION", "BibleCorpus", "ClasIntervention", "FileMask", "FixedAnchor",
    "InlineMask", "Intervention", "LanguageRows", "MaskSource", "ModelRef", "NextTokenTask",
    "NoAnchor", "RowRule", "RunSpec", "Task", "apply_overrides", "load_spec", "validate_data",
]
