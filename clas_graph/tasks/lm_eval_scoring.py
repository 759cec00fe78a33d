"""An lm-evaluation-harness model over several conditions of one compiled spec: lm-eval's requests, encoded as its
`hf` model encodes them, scored through clas_graph's executor.

Responses are cached per condition: a loglikelihood batch is scored for every condition at once (the conditions
share each batch's common prefix, as clas_graph's own tasks do), so evaluating the same lm-eval task under the
next condition (`condition = ...`, then lm-eval's evaluation again) costs no model time for those requests.
Generation runs per condition, on demand. Needs the optional extra `clas-graph[lm-eval]`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import (
    handle_stop_sequences,
    normalize_gen_kwargs,
    postprocess_generated_text,
    resolve_max_length,
)
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from ..compile.plan import Plan
from ..errors import DataError
from ..execution.readouts import ContinuationLogprob
from ..execution.requests import Request

MAX_GEN_TOKS = 256
"""lm-eval's default generation budget when a task gives none (its `hf` model's `max_gen_toks`)."""

RowLanguages = Callable[[Sequence], list[str]]
"""lm-eval requests -> the language each request's row is run as."""


def request_text(request) -> str:
    """The text a request's row language is detected from: its context, else its continuation (lm-eval's
    multiple-choice tasks may put the whole text there); a rolling request's whole text."""
    return request.args[0] or (request.args[1] if len(request.args) > 1 and isinstance(request.args[1], str) else "")


class PlansLM(TemplateLM):
    """lm-eval's model interface over `plans` (condition -> compiled plan) on an nnsight model; `condition` picks
    whose responses lm-eval gets. `row_languages` gives each request's row language (the plan's row rules use
    it); `max_length`: lm-eval's context window (default: as lm-eval's `hf` model derives it from the config)."""

    def __init__(self, model, plans: Mapping[str, Plan], row_languages: RowLanguages, *, batch_size: int = 8,
                 max_length: int | None = None, condition: str | None = None, tokenizer=None, config=None):
        super().__init__()
        self.model = model
        self.plans = dict(plans)
        self.tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        self.config = config if config is not None else model._module.config
        self.row_languages = row_languages
        self.batch_size = batch_size
        self._max_length = max_length
        self.condition = condition or next(iter(self.plans))
        self.responses: dict[str, dict] = {name: {} for name in self.plans}
        self._pending_languages: list[str] | None = None

    # --- what TemplateLM needs -----------------------------------------------------------------------------

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The chat-templated prompt, as lm-eval's `hf` model builds it (a template that refuses a system role
        gets the history without it)."""
        import jinja2

        def render(history):
            return self.tokenizer.apply_chat_template(history, tokenize=False,
                                                      add_generation_prompt=add_generation_prompt,
                                                      continue_final_message=not add_generation_prompt)

        try:
            return render(chat_history)
        except jinja2.exceptions.TemplateError:
            return render([message for message in chat_history if message["role"] != "system"])

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        return self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.eot_token_id

    @property
    def max_length(self) -> int:
        return self._max_length or resolve_max_length(self.config, self.tokenizer)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len=None,
                   **kwargs) -> list[int]:
        options = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        bos = self.tokenizer.bos_token
        if add_special_tokens is None and bos and string.startswith(bos):
            options["add_special_tokens"] = False  # the text carries its BOS already
        encoding = self.tokenizer.encode(string, **options)
        return encoding[-left_truncate_len:] if left_truncate_len else encoding

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, languages=None) -> dict[str, list]:
        """{condition: [(log p(continuation | context), greedy)]} per encoded request ((context, continuation),
        context ids, continuation ids), every condition at once; the input is the last max_length tokens of
        context + continuation without the continuation's last token, as lm-eval's `hf` model scores it."""
        rows, targets = [], []
        for _, context_enc, continuation_enc in requests:
            whole = (context_enc + continuation_enc)[-(self.max_length + 1):]
            rows.append(whole[:-1])
            targets.append(tuple(continuation_enc[-(len(whole) - 1):]))
        row_languages = languages or self._pending_languages
        request = Request("loglikelihood", tuple(map(str, range(len(rows)))), tuple(row_languages),
                          tokens=tuple(map(tuple, rows)), readout=ContinuationLogprob(tuple(targets)),
                          batch_size=self.batch_size)
        scored = self.answer(self.plans, request)
        return {name: [(float(value), bool(flag)) for value, flag in zip(*pair)] for name, pair in scored.items()}

    def answer(self, plans: Mapping[str, Plan], request: Request) -> dict:
        """{condition: answer} of one request, through clas_graph's executor."""
        from ..execution.answers import answer_requests  # tasks sit below execution (docs/architecture.md)

        return answer_requests(self.model, plans, [request])[request.name]

    # --- the three request types ---------------------------------------------------------------------------

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self._cached("loglikelihood", requests, self._score_pairs)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        return self._cached("loglikelihood_rolling", requests, self._score_rolling)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy generation with the plan at every step, cut at the first stop sequence (the task's `until`
        and the EOS text), as lm-eval's `hf` model does; sampling is refused (the condition's effect on greedy
        decoding is what is measured)."""
        return self._cached("generate_until", requests, self._generate, every_condition=False)

    def _cached(self, kind: str, requests, compute, every_condition: bool = True) -> list:
        languages = self.row_languages(requests)
        keys = [(kind, language, json.dumps(request.args, sort_keys=True, default=str))
                for request, language in zip(requests, languages)]
        mine = self.responses[self.condition]
        missing = [i for i, key in enumerate(keys) if key not in mine]
        if missing:
            names = list(self.plans) if every_condition else [self.condition]
            todo = [requests[i] for i in missing]
            computed = compute(todo, [languages[i] for i in missing], {name: self.plans[name] for name in names})
            for name, values in computed.items():
                self.responses[name].update(zip((keys[i] for i in missing), values))
        return [mine[key] for key in keys]

    def _score_pairs(self, requests, languages, plans) -> dict[str, list]:
        # lm-eval's own encoding of (context, continuation), empty contexts included; it hands the encoded
        # requests, in order, to _loglikelihood_tokens, which reads their row languages from here
        self._pending_languages = languages
        try:
            return super().loglikelihood(requests, disable_tqdm=True)
        finally:
            self._pending_languages = None

    def _score_rolling(self, requests, languages, plans) -> dict[str, list]:
        windows, owners, window_languages = [], [], []
        for number, (request, language) in enumerate(zip(requests, languages)):
            for context_enc, continuation_enc in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=self.tok_encode(request.args[0]), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append(((None,), list(context_enc), list(continuation_enc)))
                owners.append(number)
                window_languages.append(language)
        out = {}
        for name, scores in self._loglikelihood_tokens(windows, languages=window_languages).items():
            totals = [0.0] * len(requests)
            for owner, (logprob, _) in zip(owners, scores):
                totals[owner] += logprob
            out[name] = totals
        return out

    def _generate(self, requests, languages, plans) -> dict[str, list]:
        ((name, plan),) = plans.items()
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
            request = Request("generate_until", tuple(str(i) for i in numbers), tuple(languages[i] for i in numbers),
                              texts=tuple(requests[i].args[0] for i in numbers), max_new_tokens=max_gen_toks,
                              batch_size=self.batch_size, max_length=self.max_length - max_gen_toks)
            ids = self.answer({name: plan}, request)[name]
            for i, tokens in zip(numbers, ids):
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                out[i] = postprocess_generated_text(generation=text, stop=list(until), think_end_token=None)
        return {name: out}


class RequestsOf(PlansLM):
    """lm-eval's requests of a task, as clas_graph requests, without a model: lm-eval builds and encodes them as it
    would for `PlansLM`, and every answer is a placeholder (so the metrics lm-eval computes from them mean
    nothing). What the input checks before any weights load read."""

    def __init__(self, tokenizer, config, plans: Mapping[str, Plan], row_languages: RowLanguages, **options):
        super().__init__(None, plans, row_languages, tokenizer=tokenizer, config=config, **options)
        self.recorded: list[Request] = []

    def answer(self, plans: Mapping[str, Plan], request: Request) -> dict:
        self.recorded.append(request)
        count = len(request.ids)
        placeholder = [[] for _ in range(count)] if request.generates else ([0.0] * count, [False] * count)
        return {name: placeholder for name in plans}
