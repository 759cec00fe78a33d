"""What a plugin's kinds build on (docs/plugins.md): one import for a task kind, an intervention kind and a
readout defined outside clas_graph.

    from clas_graph.plugin_api import LanguagesField, Readout, TaskRunner, TaskSpec, Targeted, ScaleNeurons
"""

from .compile.plan import AddVector, ScaleNeurons, SetNeurons
from .data.corpora import load_corpus
from .errors import CompileError, DataError
from .execution.readouts import Readout, scalar_columns
from .execution.requests import Answers, Request
from .interventions.base import CompileContext, Layers, Targeted
from .spec.base import FiniteFloat, Identifier, StrictModel
from .spec.corpora import BibleCorpus, Corpus
from .tasks.base import TEST, LanguagesField, TaskRunner, TaskSpec, Unit

__all__ = ["AddVector", "Answers", "BibleCorpus", "CompileContext", "CompileError", "Corpus", "DataError",
           "FiniteFloat", "Identifier", "LanguagesField", "Layers", "Readout", "Request", "ScaleNeurons",
           "SetNeurons", "StrictModel", "TEST", "TaskRunner", "TaskSpec", "Targeted", "Unit", "load_corpus",
           "scalar_columns"]
