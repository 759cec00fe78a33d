"""What users write: the pydantic models of a spec file, and the loader."""

from .interventions import ClasIntervention, Intervention
from .load import load_spec, validate_data
from .masks import FileMask, InlineMask, MaskSource
from .model_ref import ModelRef
from .rows import AnchorRule, FixedAnchor, LanguageRows, NoAnchor, RowRule
from .run_spec import BASE_CONDITION, RunSpec
from .tasks import BibleCorpus, NextTokenTask, Task

__all__ = [
    "AnchorRule", "BASE_CONDITION", "BibleCorpus", "ClasIntervention", "FileMask", "FixedAnchor",
    "InlineMask", "Intervention", "LanguageRows", "MaskSource", "ModelRef", "NextTokenTask",
    "NoAnchor", "RowRule", "RunSpec", "Task", "load_spec", "validate_data",
]
