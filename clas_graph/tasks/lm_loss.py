"""Language-modelling loss: mean next-token cross-entropy (nats per token) per language on held-out text."""

from __future__ import annotations

from typing import Literal

from ..execution.readouts import TokenNll
from ..spec.corpora import BibleCorpus, Corpus
from .base import LanguagesField
from .corpus import CorpusDev, CorpusRunner, CorpusTask

# Spec models load without torch or matplotlib (`clas-graph validate` and `--help` start fast): the methods that
# score or draw import them.


class LmLossRunner(CorpusRunner):
    def requests(self, unit):
        samples = self.samples()
        texts = [s.texts[unit.language] for s in samples]
        return [self.new_request("texts", [s.id for s in samples], self.row_languages(texts, unit.language),
                                 texts=tuple(texts), readout=TokenNll())]

    def score(self, unit, requests, answers):
        texts = requests["texts"].texts
        return {name: self.scored(self.samples(), nll, counts, texts, unit.language)
                for name, (nll, counts) in answers["texts"].items()}

    def scored(self, samples, nll, counts, texts, language):
        import torch

        rows = [{"id": s.id, "nll": round(float(a), 6), "tokens": int(b), "loss": round(float(a / max(b, 1)), 6)}
                for s, a, b in zip(samples, nll, counts)]
        total = float(nll.sum() / counts.sum().clamp(min=1))
        return self.annotate(rows, texts, language), {"loss": total, "perplexity": float(torch.tensor(total).exp()),
                                                      "tokens": int(counts.sum()), "n": len(rows)}


class LmLossTask(LanguagesField, CorpusTask):
    """Language-modelling loss: mean next-token cross-entropy (nats per token) per language on held-out text."""

    metrics = {"loss": False, "perplexity": False}
    primary = "loss"
    runner_class = LmLossRunner

    kind: Literal["lm_loss"]
    corpus: Corpus = BibleCorpus(limit=50, offset=100)
    """Held-out text."""
    dev: CorpusDev | None = None
    """Dev texts for a sweep's selection (default: the slice after the test slice)."""
