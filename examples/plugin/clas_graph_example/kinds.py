"""The example plugin's kinds (docs/plugins.md walks through them).

- `Entropy`, a readout: the entropy (nats) of each row's next-token distribution at its last token.
- `next_token_entropy`, a task kind: that entropy, averaged per language over a parallel corpus.
- `dampen`, an intervention kind: multiply chosen MLP neurons by (1 - strength) in chosen layers.

A spec uses them after naming this module: `plugins: [clas_graph_example.kinds]` (or with the package installed,
through its entry point, without naming it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import Field, NonNegativeInt

from clas_graph.plugin_api import (
    BibleCorpus,
    CompileError,
    Corpus,
    FiniteFloat,
    Identifier,
    LanguagesField,
    Readout,
    ScaleNeurons,
    Targeted,
    TaskRunner,
    TaskSpec,
    load_corpus,
    scalar_columns,
)

SITE = "mlp.down_proj.input"


@dataclass(frozen=True)
class Entropy(Readout):
    """Per row: the entropy (nats) of the next-token distribution at the last real token (left padding)."""

    label: ClassVar = "entropy"
    outputs: ClassVar = ("entropy",)

    def source(self, base_logprobs: str) -> str:
        return """\
        logprobs = torch.log_softmax(model.output.logits[:, -1, :].float(), -1)
        entropy = (logprobs.exp() * logprobs).sum(-1).neg().cpu().save()"""

    def assemble(self, rows, batches, config):
        return scalar_columns(rows, batches, (torch.float64,))[0]


class EntropyRunner(TaskRunner):
    def samples(self):
        return self.cached("samples", lambda: load_corpus(self.task.corpus, self.data_languages(), self.base_dir))

    def requests(self, unit):
        samples = self.samples()
        texts = [sample.texts[unit.language] for sample in samples]
        return [self.new_request("texts", [sample.id for sample in samples], self.row_languages(texts, unit.language),
                                 texts=tuple(texts), readout=Entropy())]

    def score(self, unit, requests, answers):
        out = {}
        for condition, entropy in answers["texts"].items():
            rows = [{"id": ident, "entropy": round(float(value), 6)}
                    for ident, value in zip(requests["texts"].ids, entropy)]
            out[condition] = rows, {"entropy": float(entropy.mean()), "n": len(rows)}
        return out


class EntropyTask(LanguagesField, TaskSpec):
    """The entropy of the next-token distribution at the end of each corpus text, per language."""

    metrics = {"entropy": False}
    primary = "entropy"
    runner_class = EntropyRunner

    kind: Literal["next_token_entropy"]
    corpus: Corpus = BibleCorpus(limit=8, offset=100)
    """The texts (any parallel corpus clas_graph reads)."""

    def item_ids(self, languages, language, split, base_dir):
        return [sample.id for sample in load_corpus(self.corpus, [language], base_dir)]

    def describe(self, split):
        return f"next-token entropy at the end of {self.corpus.kind} texts"


class DampenIntervention(Targeted):
    """x[n] <- (1 - strength) * x[n] for the listed neurons of the MLP's down-projection input, in `layers`."""

    kind: Literal["dampen"]
    id: Identifier = "dampen"
    layers: list[NonNegativeInt] = Field(min_length=1)
    neurons: list[NonNegativeInt] = Field(min_length=1)
    strength: FiniteFloat = Field(0.5, ge=0, le=1)
    """0 changes nothing, 1 silences the neurons."""

    def compile(self, ctx):
        width = ctx.dims.intermediate_size
        beyond = [n for n in self.neurons if n >= width]
        if beyond:
            raise CompileError(f"neuron {beyond[0]} is beyond the MLP's {width} neurons", where=ctx.where("neurons"),
                               fix=f"use neurons 0-{width - 1}")
        scale = torch.ones(width)
        scale[self.neurons] = 1.0 - self.strength
        return [ScaleNeurons(**ctx.op_fields(layer, SITE, {"strength": self.strength, "neurons": len(self.neurons)}),
                             scale=scale.clone()) for layer in ctx.layers()]


TASKS = (EntropyTask,)
INTERVENTIONS = (DampenIntervention,)
