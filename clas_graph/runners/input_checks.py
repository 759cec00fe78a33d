"""Before any unit runs: inputs that only the task's texts can reveal are checked for every unit.

A position selector may not fit a text (`{first: 5}` of a 3-token prompt, index 20 of a short one), and a
patch's source language may lack an item; both show only once the task has built its texts. So when some plan
selects positions or patches, each unfinished (task, language) unit is run dry first: the runner builds its texts
as it would, and its first model call checks them (rows, languages, selectors, sources) and stops there
(`execution.context.checking_inputs`). A bad selector in the last language is then one error before the first
unit's model work, not after hours of it. Costs: each such unit's data loading and tokenization, twice.
"""

from __future__ import annotations

from typing import Sequence

from ..compile.plan import Plan
from ..execution.context import InputsChecked, checking_inputs
from ..execution.patching import selects_positions
from ..tasks.base import TaskRunner
from .patching import task_parallel_texts


def check_unit_inputs(model, units: Sequence[tuple[TaskRunner, str, dict[str, Plan]]]) -> None:
    """Run each (runner, language, plans still to run) unit up to its first model call, once per plan that selects
    positions (a runner may run its plans one by one, and only the first call is reached); raise DataError for the
    first input that does not fit."""
    for runner, language, plans in units:
        selecting = {name: plan for name, plan in plans.items() if selects_positions([plan])}
        if not selecting:
            continue
        with task_parallel_texts(model, runner, selecting, language):
            for name, plan in selecting.items():
                with checking_inputs():
                    try:
                        runner.run_many(model, {name: plan}, language)
                    except InputsChecked:
                        pass
