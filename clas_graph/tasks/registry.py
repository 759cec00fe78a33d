"""The task kinds a spec's `tasks:` may name, one module each; this list is the only place that knows them all.

Adding a task kind: write its module (a `TaskSpec` subclass with a `kind` literal, its runner, its metrics),
and add it here.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from .language_steering import LanguageSteeringTask
from .lens import LensTask
from .lm_eval import LmEvalTask
from .lm_loss import LmLossTask
from .next_token import NextTokenTask
from .retrieval import RetrievalTask
from .xnli import XnliTask
from .xquad import XquadTask

KINDS = (NextTokenTask, XnliTask, XquadTask, RetrievalTask, LmLossTask, LanguageSteeringTask, LmEvalTask,
         LensTask)
"""Every task kind's spec model, in the order the JSON Schema lists them."""

Task = Annotated[Union[KINDS], Field(discriminator="kind")]
"""One task of a spec: the kind's spec model, chosen by `kind`."""

