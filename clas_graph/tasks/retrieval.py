"""Cross-lingual retrieval (Sundar et al. 2025): for each non-anchor text, find its parallel anchor text among
all anchor texts of the corpus by cosine similarity of mean-pooled hidden states at a layer."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeInt

from ..data.languages import check_corpus
from ..errors import DataError
from ..eval import metrics as M
from ..execution.readouts import Pooled
from ..spec.base import FieldError
from ..spec.corpora import BibleCorpus, Corpus
from .base import LanguagesField
from .corpus import CorpusDev, CorpusRunner, CorpusTask

# Spec models load without torch or matplotlib (`clas-graph validate` and `--help` start fast): the methods that
# score or draw import them.


class RetrievalRunner(CorpusRunner):
    def languages(self):
        if self.anchor is None:
            raise DataError("retrieval finds each text's anchor-language parallel, but the spec has no anchor",
                            where=f"tasks ({self.key})", fix="set `anchor: {kind: fixed, language: en}`")
        return [lang for lang in self.spec.task_languages(self.task) if lang != self.anchor]

    def data_languages(self) -> list[str]:
        return [*self.languages(), self.anchor]  # queries and the anchor's candidates

    def layer_of(self, config) -> int:
        layers = config.get_text_config().num_hidden_layers
        layer = self.task.layer if self.task.layer is not None else layers // 2
        if layer >= layers:
            raise DataError(f"layer {layer} is out of range: the model has {layers} layers",
                            where="layer", fix=f"use 0-{layers - 1}")
        return layer

    def check_model(self, config, tokenizer) -> None:
        """Before any model work: the layer read exists."""
        self.layer_of(config)

    def check_needs_tokenizer(self) -> bool:
        return False

    def pooled_request(self, name: str, language: str, config, **fields):
        texts = [s.texts[language] for s in self.samples()]
        return self.new_request(name, [s.id for s in self.samples()], self.row_languages(texts, language),
                                texts=tuple(texts), readout=Pooled(self.layer_of(config)), **fields)

    def requests(self, unit):
        # the anchor's texts under each condition are the same for every unit: answered once per condition
        return [self.pooled_request("queries", unit.language, unit.config),
                self.pooled_request("keys", self.anchor, unit.config, cached=True)]

    def score(self, unit, requests, answers):
        def centred(vectors):
            return vectors - vectors.mean(0) if self.task.center else vectors

        return {name: self.scored(centred(queries), centred(answers["keys"][name]), unit.config, unit.language)
                for name, queries in answers["queries"].items()}

    def scored(self, queries, keys, config, language):
        import torch

        samples = self.samples()
        ranks = M.retrieval_ranks(queries, keys)
        scores = torch.nn.functional.normalize(queries, dim=-1) @ torch.nn.functional.normalize(keys, dim=-1).T
        best = scores.argmax(-1).tolist()
        rows = [{"id": s.id, "rank": int(r), "retrieved": samples[b].id} for s, r, b in zip(samples, ranks, best)]
        return self.annotate(rows, [s.texts[language] for s in samples], language), {
            "top1": 100 * float((torch.as_tensor(ranks) == 1).double().mean()),
            "mrr": float((1.0 / torch.as_tensor(ranks, dtype=torch.float64)).mean()),
            "candidates": len(samples), "layer": self.layer_of(config), "n": len(rows)}


class RetrievalTask(LanguagesField, CorpusTask):
    """Cross-lingual retrieval (Sundar et al. 2025): for each non-anchor text, find its parallel anchor text
    among all anchor texts of the corpus by cosine similarity of mean-pooled hidden states at `layer`."""

    metrics = {"top1": True, "mrr": True}
    primary = "top1"
    runner_class = RetrievalRunner

    kind: Literal["retrieval"]
    corpus: Corpus = BibleCorpus(limit=100, offset=100)
    """Held-out parallel text; the number of candidates is the corpus size."""
    layer: NonNegativeInt | None = None
    """Decoder layer whose output is pooled; default: the middle layer."""
    center: bool = False
    """Subtract each language's mean pooled vector first (removes a language offset; see the design notes)."""
    dev: CorpusDev | None = None
    """Dev texts for a sweep's selection (default: the slice after the test slice, same size)."""


    def check_languages(self, spec, index, languages, field):
        anchor = getattr(spec.anchor, "language", None)
        if anchor is not None and anchor not in languages:
            raise FieldError(field, f"retrieval looks up each text's anchor ('{anchor}') parallel; "
                                    f"add '{anchor}' to these languages")
        check_corpus(self.corpus, languages, ("tasks", index, "corpus"), field)
