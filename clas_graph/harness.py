"""clas_graph as an lm-evaluation-harness model: one condition of a spec applied to every request lm-eval makes.

`ClasGraphLM("specs/clas_llama.yaml", condition="clas", languages={"xnli_de": "de"})` goes wherever lm-eval takes
a model, e.g. `lm_eval.simple_evaluate(model=lm, tasks=["xnli_de"])` (docs/lm-eval.md).

Requests are encoded as lm-eval's `hf` model encodes them (its `TemplateLM` context/continuation split, its rolling
windows, its stop-sequence handling, the model's maximum length) and scored through clas_graph's executor, so
the plan's row rules apply: each request's row language comes from its lm-eval task name (`languages`, or the
name's language suffix). Needs
the optional extra: `pip install clas-graph[lm-eval]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

try:
    from lm_eval.api.registry import register_model
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.loggers import EvaluationTracker

    from .tasks.lm_eval_scoring import PlansLM
except ImportError as exc:  # an optional extra: say which
    raise ImportError("clas_graph.harness needs lm-evaluation-harness: pip install 'clas-graph[lm-eval]'") from exc

from .compile.compiler import compile_plan
from .errors import DataError
from .loading import load_model_for_spec, load_tokenizer_for_spec
from .runners.stats import existing_stats
from .spec.load import load_spec
from .spec.run_spec import RunSpec
from .tasks.base import anchor_language, row_languages_of
from .tasks.lm_eval import chat_options, check_chat_template, check_no_code, check_task_names, task_manager_for
from .tasks.lm_eval_scoring import request_text

MODEL_NAME = "clas_graph"
"""The name lm-eval knows `ClasGraphLM` by: `--model clas_graph --model_args spec=SPEC,condition=NAME`."""


@register_model(MODEL_NAME)
class ClasGraphLM(PlansLM):
    """An lm-eval model that runs `condition` of `spec` (a path or a loaded RunSpec; `base`: the unmodified model).

    `languages`: lm-eval task name -> the language its rows carry (the anchor rule and per-language tables use
    it); a task not listed takes its name's last `_` part when that is one of the spec's languages (`xnli_de`),
    else it is an error when the plan modifies anything and runs as the anchor language under `base`. With the
    spec's `anchor: {kind: detected}`, each row's language is detected from its text, as in clas_graph's tasks.
    `max_length`: lm-eval's context window (default: as lm-eval's `hf` model derives it
    from the model config). `model`: an already loaded nnsight model of the spec (saves loading it again);
    `runs_root`: where the spec's statistics are looked up when the condition needs them.
    """

    def __init__(self, spec: RunSpec | str | Path, condition: str = "base", *,
                 languages: Mapping[str, str] | str | None = None, batch_size: int | str | None = None,
                 max_length: int | None = None, model=None, runs_root: str | Path = "runs", overrides=(),
                 **lm_eval_options):
        # lm-eval's command line passes `device` and `max_batch_size` too: the spec says where the model runs
        spec = spec if isinstance(spec, RunSpec) else load_spec(spec, overrides)
        if isinstance(languages, str):  # from --model_args: languages=xnli_de:de;xnli_fr:fr
            languages = dict(item.split(":", 1) for item in languages.split(";") if item)
        # an int, or lm-eval's text ("8", "auto"); "auto" and None: the spec's batch size
        batch_size = int(batch_size) if str(batch_size).isdigit() else None
        max_length = int(max_length) if max_length is not None else None
        model = model if model is not None else load_model_for_spec(spec)
        stats = existing_stats(spec, Path(runs_root)) if spec.stats is not None else None
        plan = compile_plan(spec, model, condition, stats)
        super().__init__(model, {condition: plan}, self.request_languages, batch_size=batch_size or spec.batch_size,
                         max_length=max_length)
        self.spec = spec
        self.plan = plan
        self.languages = dict(languages or {})
        self._detected: dict = {}

    def request_languages(self, requests) -> list[str]:
        labels = [self.row_language(request) for request in requests]
        return row_languages_of(self.spec, [request_text(r) for r in requests], labels, self._detected)

    def anchor_language(self) -> str:
        return anchor_language(self.spec)

    def row_language(self, request) -> str:
        """The language a request's row is labelled with: its task's entry in `languages`, else the task name's
        last `_` part when it is one of the spec's languages (`xnli_de` -> de; lm-eval names its per-language
        tasks so; our rule); under `base`, the anchor."""
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


def run_harness(spec: RunSpec, condition: str, tasks: list[str], *, languages: Mapping[str, str] | None = None,
                limit: int | None = None, num_fewshot: int | None = None, include_path: str | Path | None = None,
                output_path: str | Path | None = None, runs_root: str | Path = "runs",
                apply_chat_template: bool = False, system_instruction: str | None = None,
                fewshot_as_multiturn: bool | None = None, trust_remote_code: bool = False) -> dict:
    """`clas-graph lm-eval`: lm-eval's own evaluation of `tasks` under one condition of the spec; its results dict
    (and, with `output_path`, lm-eval's results file). Task names and the chat options are checked before the
    model is loaded."""
    task_manager = task_manager_for(include_path)
    check_task_names(tasks, task_manager, where="--tasks")
    if not trust_remote_code:  # before lm-eval loads a task file, which imports its `!function` modules
        check_no_code(tasks, task_manager, where="--tasks",
                      fix="add --trust-remote-code (trust_remote_code=True) if you trust that code")
    if fewshot_as_multiturn and not apply_chat_template:
        raise DataError("few-shot examples as chat turns need a chat template", where="--fewshot-as-multiturn",
                        fix="add --apply-chat-template, or drop --fewshot-as-multiturn")
    if apply_chat_template:
        check_chat_template(load_tokenizer_for_spec(spec), where="--apply-chat-template")
    lm = ClasGraphLM(spec, condition, languages=languages, runs_root=runs_root)
    tracker = EvaluationTracker(output_path=str(output_path)) if output_path else None
    results = simple_evaluate(model=lm, tasks=tasks, num_fewshot=num_fewshot, limit=limit,
                              task_manager=task_manager, evaluation_tracker=tracker,
                              **chat_options(apply_chat_template, system_instruction, fewshot_as_multiturn))
    if tracker is not None:
        tracker.save_results_aggregated(results=results, samples=None)
    return results


def lm_eval_main() -> None:
    """lm-eval's own command line with clas_graph's model registered: `python -m clas_graph.harness run --model
    clas_graph --model_args spec=specs/clas_llama.yaml,condition=clas --tasks xnli_de` (lm-eval 0.4 finds models
    only among those imported into its process; the plain `lm_eval` command does not import clas_graph)."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    lm_eval_main()
