"""clas_graph as an lm-evaluation-harness model: one condition of a spec applied to every request lm-eval makes.

    from clas_graph.harness import ClasGraphLM
    lm = ClasGraphLM("specs/clas_llama.yaml", condition="clas", languages={"xnli_de": "de", "xnli_fr": "fr"})
    lm_eval.simple_evaluate(model=lm, tasks=["xnli_de", "xnli_fr"])

Requests are encoded as lm-eval's `hf` model encodes them (its `TemplateLM` context/continuation split, its rolling
windows, its stop-sequence handling, the model's maximum length) and scored through clas_graph's executor, so
the plan's row rules apply: each request's row language comes from its lm-eval task name (`languages`, or the
name's language suffix). Needs
the optional extra: `pip install clas-graph[lm-eval]`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

try:
    from lm_eval.api.model import TemplateLM
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.models.utils import (
        handle_stop_sequences,
        normalize_gen_kwargs,
        postprocess_generated_text,
        resolve_max_length,
    )
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError as exc:  # an optional extra: say which
    raise ImportError("clas_graph.harness needs lm-evaluation-harness: pip install 'clas-graph[lm-eval]'") from exc

from .compile.compiler import compile_plan
from .errors import DataError, SpecError
from .execution.api import generate_ids, read_tokens_many
from .execution.readouts import ContinuationLogprob
from .loading import load_model_for_spec
from .runners.stats import existing_stats
from .spec.load import load_spec
from .spec.rows import FixedAnchor
from .spec.run_spec import RunSpec

MAX_GEN_TOKS = 256
"""lm-eval's default generation budget when a task gives none (its `hf` model's `max_gen_toks`)."""


class ClasGraphLM(TemplateLM):
    """An lm-eval model that runs `condition` of `spec` (a path or a loaded RunSpec; `base`: the unmodified model).

    `languages`: lm-eval task name -> the language its rows carry (the anchor rule and per-language tables use
    it); a task not listed takes its name's last `_` part when that is one of the spec's languages (`xnli_de`),
    else it is an error when the plan modifies anything and runs as the anchor language under `base`.
    `max_length`: lm-eval's context window (default: as lm-eval's `hf` model derives it
    from the model config). `model`: an already loaded nnsight model of the spec (saves loading it again);
    `runs_root`: where the spec's statistics are looked up when the condition needs them.
    """

    def __init__(self, spec: RunSpec | str | Path, condition: str = "base", *,
                 languages: Mapping[str, str] | None = None, batch_size: int | None = None,
                 max_length: int | None = None, model=None, runs_root: str | Path = "runs", overrides=()):
        super().__init__()
        self.spec = spec if isinstance(spec, RunSpec) else load_spec(spec, overrides)
        self.model = model if model is not None else load_model_for_spec(self.spec)
        stats = existing_stats(self.spec, Path(runs_root)) if self.spec.stats is not None else None
        self.plan = compile_plan(self.spec, self.model, condition, stats)
        self.tokenizer = self.model.tokenizer
        self.languages = dict(languages or {})
        self.batch_size = batch_size or self.spec.batch_size
        self._max_length = max_length
        self._pending_languages: list[str] | None = None

    # --- what TemplateLM needs -----------------------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        return self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.eot_token_id

    @property
    def max_length(self) -> int:
        return self._max_length or resolve_max_length(self.model._module.config, self.tokenizer)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len=None,
                   **kwargs) -> list[int]:
        options = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        bos = self.tokenizer.bos_token
        if add_special_tokens is None and bos and string.startswith(bos):
            options["add_special_tokens"] = False  # the text carries its BOS already
        encoding = self.tokenizer.encode(string, **options)
        return encoding[-left_truncate_len:] if left_truncate_len else encoding

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, languages=None) -> list[tuple[float, bool]]:
        """(log p(continuation | context), greedy) per request ((context, continuation), context ids,
        continuation ids); the input is the last max_length tokens of context + continuation, without the
        continuation's last token, as lm-eval's `hf` model scores it."""
        rows, targets = [], []
        for _, context_enc, continuation_enc in requests:
            whole = (context_enc + continuation_enc)[-(self.max_length + 1):]
            rows.append(whole[:-1])
            targets.append(tuple(continuation_enc[-(len(whole) - 1):]))
        row_languages = languages or self._pending_languages or [self.anchor_language()] * len(rows)
        logprob, greedy = read_tokens_many(self.model, {"plan": self.plan}, rows, row_languages,
                                           ContinuationLogprob(tuple(targets)), batch_size=self.batch_size)["plan"]
        return [(float(value), bool(flag)) for value, flag in zip(logprob, greedy)]

    # --- the three request types ---------------------------------------------------------------------------

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        # lm-eval's own encoding of (context, continuation), empty contexts included; it calls
        # _loglikelihood_tokens with the requests in order, which reads their row languages from here
        self._pending_languages = [self.row_language(request) for request in requests]
        try:
            return super().loglikelihood(requests, disable_tqdm=True)
        finally:
            self._pending_languages = None

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owners, languages = [], [], []
        for number, request in enumerate(requests):
            (string,) = request.args
            for context_enc, continuation_enc in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append(((None,), list(context_enc), list(continuation_enc)))
                owners.append(number)
                languages.append(self.row_language(request))
        totals = [0.0] * len(requests)
        for owner, (logprob, _) in zip(owners, self._loglikelihood_tokens(windows, languages=languages)):
            totals[owner] += logprob
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy generation with the plan at every step, cut at the first stop sequence (the task's `until`
        and the EOS text), as lm-eval's `hf` model does; sampling is refused (the condition's effect on greedy
        decoding is what is measured)."""
        eos = self.tokenizer.decode([self.eot_token_id], skip_special_tokens=False)
        out: list[str | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for number, request in enumerate(requests):
            context, gen_kwargs = request.args
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), MAX_GEN_TOKS)
            if kwargs.get("do_sample"):
                raise DataError(f"task {request.task_name!r} asks for sampling; clas_graph generates greedily",
                                where="generate_until", fix="set `do_sample: false` in the task's generation_kwargs")
            until = tuple(handle_stop_sequences(kwargs.pop("until", None), eos=eos))
            groups.setdefault((until, kwargs.pop("max_gen_toks")), []).append(number)
        for (until, max_gen_toks), numbers in groups.items():
            prompts = [requests[i].args[0] for i in numbers]
            ids = generate_ids(self.model, self.plan, prompts, [self.row_language(requests[i]) for i in numbers],
                               max_gen_toks, batch_size=self.batch_size,
                               max_length=self.max_length - max_gen_toks)
            for i, tokens in zip(numbers, ids):
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                out[i] = postprocess_generated_text(generation=text, stop=list(until), think_end_token=None)
        return out

    # --- row languages -------------------------------------------------------------------------------------

    def anchor_language(self) -> str:
        if isinstance(self.spec.anchor, FixedAnchor):
            return self.spec.anchor.language
        return self.spec.languages[0]

    def row_language(self, request) -> str:
        """The language a request's row carries: its task's entry in `languages`, else the task name's last
        `_` part when it is one of the spec's languages (`xnli_de` -> de; lm-eval names its per-language tasks
        so; our rule); under `base`, the anchor."""
        name = request.task_name
        if name in self.languages:
            return self.languages[name]
        suffix = str(name).rsplit("_", 1)[-1]
        if suffix in self.plan.languages:
            return suffix
        if not self.plan.ops:
            return self.anchor_language()
        raise DataError(f"lm-eval task {name!r} has no row language, and condition {self.plan.condition!r} "
                        "depends on it", where="ClasGraphLM(languages=...)",
                        fix=f"pass languages={{{name!r}: LANG}} (LANG among the spec's languages)")


def check_task_names(names: list[str], task_manager) -> None:
    """Every name is an lm-eval task or group the task manager knows; one line with a 'did you mean' otherwise."""
    known = task_manager.all_tasks
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SpecError(f"lm-eval has no task '{name}'{hint}", where="--tasks",
                            fix="list tasks with `lm_eval ls tasks`, or add yours with --include-path DIR")


def run_harness(spec: RunSpec, condition: str, tasks: list[str], *, languages: Mapping[str, str] | None = None,
                limit: int | None = None, num_fewshot: int | None = None, include_path: str | Path | None = None,
                output_path: str | Path | None = None, runs_root: str | Path = "runs") -> dict:
    """`clas-graph lm-eval`: lm-eval's own evaluation of `tasks` under one condition of the spec; its results dict
    (and, with `output_path`, lm-eval's results file). Task names are checked before the model is loaded."""
    task_manager = TaskManager(include_path=str(include_path) if include_path else None)
    check_task_names(tasks, task_manager)
    lm = ClasGraphLM(spec, condition, languages=languages, runs_root=runs_root)
    tracker = EvaluationTracker(output_path=str(output_path)) if output_path else None
    results = simple_evaluate(model=lm, tasks=tasks, num_fewshot=num_fewshot, limit=limit,
                              task_manager=task_manager, evaluation_tracker=tracker)
    if tracker is not None:
        tracker.save_results_aggregated(results=results, samples=None)
    return results
