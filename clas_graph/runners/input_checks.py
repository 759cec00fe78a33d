"""Before any unit runs: every unit's requests are checked against its plans, without a model.

A position selector may not fit a text (`{first: 5}` of a 3-token prompt, index 20 of a short one), and a
patch's source language may lack an item; both show only in the task's requests. Every unfinished (task, language)
unit builds its requests (from its data, the tokenizer and the config) and `check_requests` runs on them: a bad
selector in the last language is one error before the first unit's model work, not after hours of it. Costs: each
such unit's data loading and tokenization, once more.
"""

from __future__ import annotations

from typing import Sequence

from ..compile.plan import Plan
from ..execution.patching import selects_positions
from ..tasks.base import TaskRunner, Unit


def check_unit_inputs(tokenizer, config, units: Sequence[tuple[TaskRunner, str, dict[str, Plan]]]) -> None:
    """Check every (runner, language, plans still to run) unit whose plans select positions or read a source
    (the only inputs the task's data checks before cannot see); raise DataError for the first that does not fit."""
    for runner, language, plans in units:
        if selects_positions(list(plans.values())):
            runner.check(Unit(language, dict(plans), tokenizer, config))
