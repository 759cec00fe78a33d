"""What the run evaluates for every condition, per language."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, NonNegativeInt, PositiveInt

from .base import LanguageCode, StrictModel
from .corpora import BibleCorpus, Corpus

XNLI_PROMPT = (
    "Premise: {premise}\n"
    "Hypothesis: {hypothesis}\n"
    "Does the premise entail the hypothesis? "
    "Answer with a single number: 0 for entailment, 1 for neutral, 2 for contradiction.\n"
    "Answer:"
)
XQUAD_PROMPT = (
    "Answer the question using a short span from the context.\n\n"
    "Context: {context}\n"
    "Question: {question}\n"
    "Answer:"
)


class _TaskBase(StrictModel):
    languages: list[LanguageCode] | None = Field(None, min_length=1)
    """Languages this task evaluates; default: the spec's `languages`. They may differ from the statistics'
    (e.g. XNLI's 15 vs XQuAD's 12): CLAS's masks are language-independent and act on any row language; a
    per-language intervention (int_mu, per-language DiffMean) needs statistics in every language it touches."""


class XnliDev(StrictModel):
    """XNLI items a sweep tunes on. From another split they are disjoint by construction; from the test's own
    source (same split, or the task's local files) they are drawn from the rows not in the test subset."""

    split: str = "validation"
    """Split to draw from (XNLI has `validation` and `test`)."""
    data_files: dict[LanguageCode, str] | None = None
    """Local files of the dev split per language; default: the hub's `split`, or the task's own `data_files`
    (then dev rows are the rows the test subset does not use)."""
    limit: PositiveInt = 200
    """Pairs per language (the paper tunes on 200 samples per language)."""
    seed: int = 0
    """Seed of the dev subset."""


class XquadDev(StrictModel):
    """XQuAD items a sweep tunes on: XQuAD has one split, so they are a seeded sample of the questions that
    are not in the test subset (same ids in every language)."""

    limit: PositiveInt = 200
    """Questions per language (the paper tunes on 200 samples per language)."""
    seed: int = 0
    """Seed of the dev subset."""


class CorpusDev(StrictModel):
    """Parallel texts a sweep tunes on: another slice of the same seeded corpus order, disjoint from the test slice."""

    offset: NonNegativeInt | None = None
    """Start of the dev slice; default: right after the test slice (corpus offset + limit)."""
    limit: PositiveInt | None = None
    """Texts in the dev slice; default: the test slice's size (retrieval difficulty depends on it)."""


class NextTokenTask(_TaskBase):
    """Next-token probe: each parallel text is cut at about 60% and the model predicts what follows.

    Reports per language and condition: top-1 agreement with the base model, KL(base || condition)
    and the log-probability of the true next token.
    """

    kind: Literal["next_token"]
    corpus: Corpus = BibleCorpus(limit=8)
    """Where the parallel prompts come from."""
    cut: float = Field(0.6, gt=0.0, lt=1.0)
    """Fraction of each text kept as the prompt (cut at a word boundary where the script has spaces)."""
    dev: CorpusDev | None = None
    """Dev texts for a sweep's selection (default: the slice after the test slice)."""


class XnliTask(_TaskBase):
    """XNLI (paper section 3.2): the prompt asks for one integer; the logits of the three label tokens at the
    last position decide (0 entailment, 1 neutral, 2 contradiction). Accuracy and macro F1 per language."""

    kind: Literal["xnli"]
    split: str = "test"
    limit: PositiveInt | None = 200
    """Pairs per language (the same items in every language); null takes the whole split."""
    seed: int = 0
    """Seed of the subset."""
    data_files: dict[LanguageCode, str] | None = None
    """Local files per language in the hub's columns (premise, hypothesis, label), instead of the hub."""
    hub_id: str = "facebook/xnli"
    prompt: str = XNLI_PROMPT
    """Template with {premise} and {hypothesis}; it should end where the label token comes next."""
    labels: tuple[str, str, str] = ("0", "1", "2")
    """The label strings; each must be one token for the model's tokenizer (checked before running)."""
    dev: XnliDev | None = None
    """Dev items for a sweep's selection (default: 200 pairs per language from `validation`)."""


class XquadTask(_TaskBase):
    """XQuAD (paper section 3.2): context and question, greedy decoding with the plan at every step,
    SQuAD-style token F1 and exact match per language."""

    kind: Literal["xquad"]
    split: str = "validation"
    limit: PositiveInt | None = 100
    """Questions per language (the same ids in every language); null takes all."""
    seed: int = 0
    data_files: dict[LanguageCode, str] | None = None
    """Local files per language (hub columns, or the original SQuAD-format JSON), instead of the hub."""
    hub_id: str = "google/xquad"
    prompt: str = XQUAD_PROMPT
    """Template with {context} and {question}."""
    max_new_tokens: PositiveInt = 32
    """Greedy decoding budget (the paper's 32)."""
    dev: XquadDev | None = None
    """Dev items for a sweep's selection (default: 200 questions per language not in the test subset)."""


class RetrievalTask(_TaskBase):
    """Cross-lingual retrieval (Sundar et al. 2025): for each non-anchor text, find its parallel anchor text
    among all anchor texts of the corpus by cosine similarity of mean-pooled hidden states at `layer`."""

    kind: Literal["retrieval"]
    corpus: Corpus = BibleCorpus(limit=100, offset=100)
    """Held-out parallel text; the number of candidates is the corpus size."""
    layer: NonNegativeInt | None = None
    """Decoder layer whose output is pooled; default: the middle layer."""
    center: bool = False
    """Subtract each language's mean pooled vector first (removes a language offset; see the design notes)."""
    dev: CorpusDev | None = None
    """Dev texts for a sweep's selection (default: the slice after the test slice, same size)."""


class LmLossTask(_TaskBase):
    """Language-modelling loss: mean next-token cross-entropy (nats per token) per language on held-out text."""

    kind: Literal["lm_loss"]
    corpus: Corpus = BibleCorpus(limit=50, offset=100)
    """Held-out text."""
    dev: CorpusDev | None = None
    """Dev texts for a sweep's selection (default: the slice after the test slice)."""


class LanguageSteeringTask(StrictModel):
    """Language steering (CLaS-Bench-style): prompts in a source language, greedy generation under a condition that
    steers toward a target language; `forcing` = % of outputs an offline identifier (Lingua) labels as the target,
    `fluency` = 100 * exp(-mean NLL per output token given the prompt, under the unsteered model) (our offline
    stand-in for CLaS-Bench's LLM judge), `steering` = their harmonic mean. The base condition's target is the
    source language itself (does the unsteered model answer in the prompt's language)."""

    kind: Literal["language_steering"]
    corpus: Corpus = BibleCorpus(limit=10, offset=400)
    """Where prompts come from (any parallel corpus: the Bible offline, or a local `file`); each source language
    uses its own column."""
    prompt: str = "{text}"
    """Template with {text}, the corpus text in the source language (through the chat template when the spec asks)."""
    max_new_tokens: PositiveInt = 24
    """Greedy decoding budget (CLaS-Bench: 1024, far beyond 2 CPU cores)."""
    sources: list[LanguageCode] | None = None
    """Source languages (rows of the matrix); default: every spec language."""
    targets: dict[str, LanguageCode] | None = None
    """Condition -> target language; default: the `target` of the condition's `diffmean` intervention or the
    `language` of its `set` intervention (one target per condition)."""


Task = Annotated[Union[NextTokenTask, XnliTask, XquadTask, RetrievalTask, LmLossTask, LanguageSteeringTask],
                 Field(discriminator="kind")]
