"""Task runners: each evaluates one (condition plan, language) unit and returns per-sample rows and metrics.

Scores in percent (accuracy, F1, exact match, top-1) as in the paper's tables; lm_loss in nats per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from ..backends import forward_many, generate, next_token_many, pooled_hidden_many, token_nll, token_nll_many
from ..compile.plan import Plan
from ..errors import DataError
from ..eval import metrics as M
from ..spec.rows import DetectedAnchor, FixedAnchor
from ..spec.tasks import LanguageSteeringTask, LmLossTask, NextTokenTask, RetrievalTask, XnliTask, XquadTask
from ..spec.run_spec import RunSpec


@dataclass
class TaskRunner:
    """Shared state of one task across its units (data is loaded once per language)."""

    task: object
    spec: RunSpec
    key: str
    base_dir: Path | None
    _cache: dict = field(default_factory=dict)
    split: str = "test"
    """`test`: the task's items; `dev`: the disjoint items a sweep tunes on (clas_graph.data.splits)."""
    primary: ClassVar[str] = ""
    """The metric tables, deltas and the t-test use."""
    higher_is_better: ClassVar[bool] = True

    @property
    def anchor(self) -> str | None:
        return self.spec.anchor.language if isinstance(self.spec.anchor, FixedAnchor) else None

    def languages(self) -> list[str]:
        """The languages this task reports: its own `languages:`, or the spec's."""
        return self.spec.task_languages(self.task)

    def options(self) -> dict:
        return {"batch_size": self.spec.batch_size, "max_length": self.spec.max_length}

    def prompt(self, model, text: str) -> str:
        """Apply the tokenizer's chat template when the spec asks for it and the tokenizer has one."""
        tokenizer = model.tokenizer
        if self.spec.model.chat_template == "none" or not getattr(tokenizer, "chat_template", None):
            return text
        templated = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                  add_generation_prompt=True)
        bos = tokenizer.bos_token or ""
        return templated[len(bos):] if bos and templated.startswith(bos) else templated  # the tokenizer adds BOS

    def run(self, model, plan: Plan, language: str) -> tuple[list[dict], dict]:
        raise NotImplementedError

    def run_many(self, model, plans: dict[str, Plan], language: str) -> dict[str, tuple[list[dict], dict]]:
        """Every condition of `plans` on this language: {condition: (rows, metrics)}. The default runs them one
        by one; runners that can share work across conditions (a batch's common prefix) override it."""
        return {name: self.run(model, plan, language) for name, plan in plans.items()}

    # Row languages: the data's label, or detected from the text (`anchor: {kind: detected}`).

    def row_languages(self, texts, language: str) -> list[str]:
        """The language each row is run as: its label, or with a detected anchor what the identifier finds."""
        if not isinstance(self.spec.anchor, DetectedAnchor):
            return [language] * len(texts)
        return [self._used(code, language) for code in self._detected(texts)]

    def annotate(self, rows: list[dict], texts, language: str) -> list[dict]:
        """With a detected anchor, record each row's detected, labelled and used language in its sample."""
        if not isinstance(self.spec.anchor, DetectedAnchor):
            return rows
        for row, code in zip(rows, self._detected(texts)):
            row.update(detected_language=code, labelled_language=language, row_language=self._used(code, language))
        return rows

    def _detected(self, texts) -> list[str | None]:
        from ..eval.langid import detect

        cache = self._cache.setdefault("detected", {})
        missing = [text for text in dict.fromkeys(texts) if text not in cache]
        cache.update(zip(missing, detect(missing)))
        return [cache[text] for text in texts]

    def _used(self, detected: str | None, label: str) -> str:
        from ..eval.langid import primary

        by_primary = {primary(code): code for code in self.spec.languages}  # 'pt' finds a spec's 'pt-BR'
        if detected in by_primary:
            return by_primary[detected]
        return self.spec.anchor.language if self.spec.anchor.unknown == "anchor" else label


class _SharedRunner(TaskRunner):
    """A runner whose work is done for all conditions at once (`run_many`); `run` is the one-condition case."""

    def run(self, model, plan, language):
        return self.run_many(model, {plan.condition: plan}, language)[plan.condition]


class XnliRunner(_SharedRunner):
    primary = "accuracy"

    def label_ids(self, model) -> list[int]:
        ids = []
        for label in self.task.labels:
            tokens = model.tokenizer(label, add_special_tokens=False)["input_ids"]
            if len(tokens) != 1:
                raise DataError(f"label '{label}' is {len(tokens)} tokens for this tokenizer, not one",
                                where=f"tasks ({self.key}).labels",
                                fix="choose label strings that are single tokens (e.g. ' 0' with a leading space)")
            ids.append(tokens[0])
        return ids

    def run_many(self, model, plans, language):
        from ..data.splits import xnli_items
        from ..data.tasks import render

        task = self.task
        examples = xnli_items(task, language, self.split, self.base_dir)
        prompts = [self.prompt(model, render(task.prompt, premise=e.premise, hypothesis=e.hypothesis)) for e in examples]
        # only the label tokens' logits are computed into the result (and travel back from a remote run)
        logits = forward_many(model, plans, prompts, self.row_languages(prompts, language),
                              token_ids=self.label_ids(model), **self.options())
        return {name: self.score(examples, prompts, label_logits, language) for name, label_logits in logits.items()}

    def score(self, examples, prompts, label_logits, language):
        probs = torch.softmax(label_logits.double(), -1)
        preds = probs.argmax(-1).tolist()
        golds = [e.label for e in examples]
        scores = M.classification_scores(preds, golds)
        rows = [{"id": e.id, "prompt": p, "gold": e.label, "prediction": pred, "probs": [round(v, 6) for v in pr]}
                for e, p, pred, pr in zip(examples, prompts, preds, probs.tolist())]
        return self.annotate(rows, prompts, language), {"accuracy": 100 * scores["accuracy"], "macro_f1": 100 * scores["macro_f1"], "n": len(rows)}


class XquadRunner(TaskRunner):
    primary = "f1"

    def run(self, model, plan, language):
        from ..data.splits import xquad_items
        from ..data.tasks import render

        task = self.task
        examples = xquad_items(task, language, self.split, self.base_dir)
        prompts = [self.prompt(model, render(task.prompt, context=e.context, question=e.question)) for e in examples]
        outputs = generate(model, plan, prompts, self.row_languages(prompts, language), task.max_new_tokens,
                           **self.options())
        rows = []
        for example, prompt, output in zip(examples, prompts, outputs):
            prediction = output.strip().split("\n")[0].strip()
            rows.append({"id": example.id, "prompt": prompt, "output": output, "prediction": prediction,
                         "golds": list(example.answers),
                         "f1": 100 * M.best_over_golds(M.token_f1, prediction, example.answers, language),
                         "exact_match": 100 * M.best_over_golds(M.exact_match, prediction, example.answers, language)})
        n = max(len(rows), 1)
        return self.annotate(rows, prompts, language), {"f1": sum(r["f1"] for r in rows) / n, "exact_match": sum(r["exact_match"] for r in rows) / n,
                      "n": len(rows)}


class CorpusRunner(TaskRunner):
    """Tasks over a parallel corpus: the samples are loaded once for every language."""

    def text_languages(self) -> list[str]:
        return self.spec.task_languages(self.task)

    @property
    def split_task(self):
        """The task with the corpus slice of this runner's split."""
        from ..data.splits import task_for_split

        return task_for_split(self.task, self.split)

    def samples(self):
        if "samples" not in self._cache:
            from .stats import load_corpus

            self._cache["samples"] = load_corpus(self.split_task.corpus, self.text_languages(), self.base_dir)
        return self._cache["samples"]


class LmLossRunner(CorpusRunner, _SharedRunner):
    primary = "loss"
    higher_is_better = False

    def run_many(self, model, plans, language):
        samples = self.samples()
        texts = [s.texts[language] for s in samples]
        sums = token_nll_many(model, plans, texts, self.row_languages(texts, language), **self.options())
        return {name: self.score(samples, nll, counts, texts, language) for name, (nll, counts) in sums.items()}

    def score(self, samples, nll, counts, texts, language):
        rows = [{"id": s.id, "nll": round(float(a), 6), "tokens": int(b), "loss": round(float(a / max(b, 1)), 6)}
                for s, a, b in zip(samples, nll, counts)]
        total = float(nll.sum() / counts.sum().clamp(min=1))
        return self.annotate(rows, texts, language), {"loss": total, "perplexity": float(torch.tensor(total).exp()), "tokens": int(counts.sum()),
                      "n": len(rows)}


class RetrievalRunner(CorpusRunner, _SharedRunner):
    primary = "top1"

    def languages(self):
        if self.anchor is None:
            raise DataError("retrieval finds each text's anchor-language parallel, but the spec has no anchor",
                            where=f"tasks ({self.key})", fix="set `anchor: {kind: fixed, language: en}`")
        return [lang for lang in self.spec.task_languages(self.task) if lang != self.anchor]

    def text_languages(self) -> list[str]:
        return [*self.languages(), self.anchor]  # queries and the anchor's candidates

    def layer(self, model) -> int:
        layers = model._module.config.get_text_config().num_hidden_layers
        layer = self.task.layer if self.task.layer is not None else layers // 2
        if layer >= layers:
            raise DataError(f"layer {layer} is out of range: the model has {layers} layers",
                            where=f"tasks ({self.key}).layer", fix=f"use 0-{layers - 1}")
        return layer

    def pooled(self, model, plans, language):
        """{condition: [samples, hidden]} for `language`, computed once per (condition, language) for all at once."""
        missing = {name: plan for name, plan in plans.items() if (name, language) not in self._cache}
        if missing:
            texts = [s.texts[language] for s in self.samples()]
            pooled = pooled_hidden_many(model, missing, texts, self.row_languages(texts, language), self.layer(model),
                                        **self.options())
            for name, vectors in pooled.items():
                self._cache[(name, language)] = vectors - vectors.mean(0) if self.task.center else vectors
        return {name: self._cache[(name, language)] for name in plans}

    def run_many(self, model, plans, language):
        queries = self.pooled(model, plans, language)
        keys = self.pooled(model, plans, self.anchor)  # the anchor's texts under the same condition
        return {name: self.score(queries[name], keys[name], model, language) for name in plans}

    def score(self, queries, keys, model, language):
        samples = self.samples()
        ranks = M.retrieval_ranks(queries, keys)
        scores = torch.nn.functional.normalize(queries, dim=-1) @ torch.nn.functional.normalize(keys, dim=-1).T
        best = scores.argmax(-1).tolist()
        rows = [{"id": s.id, "rank": int(r), "retrieved": samples[b].id} for s, r, b in zip(samples, ranks, best)]
        return self.annotate(rows, [s.texts[language] for s in samples], language), {"top1": 100 * float((torch.as_tensor(ranks) == 1).double().mean()),
                      "mrr": float((1.0 / torch.as_tensor(ranks, dtype=torch.float64)).mean()),
                      "candidates": len(samples), "layer": self.layer(model), "n": len(rows)}


class NextTokenRunner(CorpusRunner, _SharedRunner):
    primary = "gold_logprob"

    def run_many(self, model, plans, language):
        from .probe import build_rows

        rows = build_rows(self.split_task, [language], model.tokenizer, self.base_dir)
        prompts = [r.prompt for r in rows]
        # the unmodified model runs in the same batches (the base trace of the shared prefix) and every
        # condition is compared with it inside the trace: four numbers per row come back, not the vocabulary
        reduced = next_token_many(model, plans, prompts, self.row_languages(prompts, language),
                                  [r.gold_token for r in rows], **self.options())
        return {name: self.score(model, rows, value, language) for name, value in reduced.items()}

    def score(self, model, rows, value, language):
        kl, top, gold_lp = value["kl"], value["top1"], value["gold_logprob"]
        out = [{"id": r.sample_id, "prompt": r.prompt, "gold_token": r.gold_token, "top1_token": int(top[i]),
                "top1_text": model.tokenizer.decode([int(top[i])]),
                "gold_logprob": gold_lp[i].item() if r.gold_token is not None else None,
                "kl_from_base": kl[i].item()} for i, r in enumerate(rows)]
        golds = [gold_lp[i].item() for i, r in enumerate(rows) if r.gold_token is not None]
        return self.annotate(out, [r.prompt for r in rows], language), {
            "gold_logprob": sum(golds) / len(golds) if golds else float("nan"),
            "top1_agreement": 100 * float((top == value["base_top1"]).double().mean()),
            "kl_from_base": float(kl.mean()), "n": len(rows), "n_gold": len(golds)}


class LanguageSteeringRunner(CorpusRunner):
    """Prompts in the unit's (source) language, greedy generation under the condition, language of each output."""

    primary = "steering"

    def languages(self):
        return list(self.task.sources or self.spec.languages)

    def target(self, plan, source: str) -> str:
        """The condition's target language (the source itself for base, which steers nowhere)."""
        if self.task.targets and plan.condition in self.task.targets:
            return self.task.targets[plan.condition]
        found = sorted({op.params["target"] for op in plan.ops if "target" in op.params})
        if not plan.ops:
            return source
        if len(found) != 1:
            raise DataError(f"condition '{plan.condition}' steers toward {found or 'no language'}; language steering "
                            "needs exactly one target", where=f"tasks ({self.key})",
                            fix=f"set `targets: {{{plan.condition}: LANG}}` in the task")
        return found[0]

    def run(self, model, plan, language):
        from ..data.tasks import render
        from ..eval.langid import detect, primary

        samples = self.samples()
        target = self.target(plan, language)
        prompts = [self.prompt(model, render(self.task.prompt, text=s.texts[language])) for s in samples]
        rows_of = self.row_languages(prompts, language)
        outputs = generate(model, plan, prompts, rows_of, self.task.max_new_tokens, **self.options())
        detected = detect(outputs)
        # Fluency: NLL of the output given the prompt under the unmodified model (prompt+output minus prompt).
        full, full_n = token_nll(model, None, [p + o for p, o in zip(prompts, outputs)], rows_of, **self.options())
        key = ("prompt_nll", language)  # the unmodified model's NLL of the prompts: the same for every condition
        if key not in self._cache:
            self._cache[key] = token_nll(model, None, prompts, rows_of, **self.options())
        alone, alone_n = self._cache[key]
        rows, forced, fluent = [], [], []
        for s, prompt, output, code, a, an, b, bn in zip(samples, prompts, outputs, detected, full, full_n, alone,
                                                          alone_n):
            tokens = float(an - bn)
            fluency = 100 * float(torch.exp(-(a - b) / tokens)) if tokens > 0 and output.strip() else 0.0
            hit = code == primary(target)
            forced.append(hit)
            fluent.append(fluency)
            rows.append({"id": s.id, "prompt": prompt, "output": output, "source": language, "target": target,
                         "detected": code, "forced": hit, "fluency": round(fluency, 4)})
        n = max(len(rows), 1)
        forcing, fluency = 100 * sum(forced) / n, sum(fluent) / n
        return self.annotate(rows, prompts, language), {"steering": steering_score(forcing, fluency), "forcing": forcing,
                                                        "fluency": fluency, "source": language, "target": target,
                                                        "n": len(rows)}


def steering_score(a: float, b: float) -> float:
    """CLaS-Bench's H(a, b) = 2ab / (a + b), 0 when either is 0."""
    return 0.0 if a <= 0 or b <= 0 else 2 * a * b / (a + b)



RUNNERS = {XnliTask: XnliRunner, XquadTask: XquadRunner, LmLossTask: LmLossRunner, RetrievalTask: RetrievalRunner,
           NextTokenTask: NextTokenRunner, LanguageSteeringTask: LanguageSteeringRunner}


def task_runners(spec: RunSpec, split: str = "test") -> list[TaskRunner]:
    """One runner per task for `split`; keys are the task kind, numbered when a kind repeats."""
    base_dir = Path(spec.source).parent if spec.source else None
    kinds = [task.kind for task in spec.tasks]
    runners = []
    for index, task in enumerate(spec.tasks):
        key = task.kind if kinds.count(task.kind) == 1 else f"{task.kind}{index}"
        runners.append(RUNNERS[type(task)](task=task, spec=spec, key=key, base_dir=base_dir, split=split))
    return runners
