"""Latent-language lens (Wendler et al. 2024, "Do Llamas Work in English?"): per decoder layer, the final norm and
unembedding applied to the residual at one position (the last by default), softmax, under base and every
condition (the conditions' interventions act while the lens reads).

Per prompt language L (the unit) and lens layer: the probability of the expected answer in L and in the anchor
language (word-translation or cloze items in Wendler et al.'s file format), or, with no word lists, the probability
mass on the tokens the statistics corpus marks as typical of L and of the anchor (clas_graph/stats/
token_languages.py). Curves are means over the unit's items; the crossover layer is the first lens layer where the
anchor curve exceeds L's and reaches `crossover_floor`.

Primary metric `anchor_mean`: the mean over lens layers of the anchor curve. A scalar defined for every unit, so
deltas and paired tests over languages are always defined; the crossover layer is coarse (an integer) and often
undefined (the anchor never leads), so it is reported beside it, not tested. Its direction (higher = more latent
anchor) only orients the tables: more anchor mass is not "better" in itself.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Union

from pydantic import Field, NonNegativeInt, PositiveInt

from ..data.corpora import load_corpus
from ..data.files import local_file, read_columns, require_columns
from ..data.languages import check_corpus
from ..errors import DataError
from ..execution.lens import lens_readout
from ..sites import architecture_for
from ..spec.base import FieldError, LanguageCode, StrictModel
from ..spec.corpora import BibleCorpus, Corpus
from ..spec.rows import FixedAnchor
from .base import TEST, LanguagesField, TaskRunner, TaskSpec, check_split
from .next_token import cut_text

if TYPE_CHECKING:
    from ..stats.token_languages import TokenLanguages

# Spec models load without torch or matplotlib (`clas-graph validate` and `--help` start fast): the methods that
# score or draw import them.

WORD_EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch", "fr": "Français", "ru": "Русский", "zh": "中文", "es": "Español",
                  "ar": "العربية", "hi": "हिन्दी", "tr": "Türkçe", "vi": "Tiếng Việt", "sw": "Kiswahili", "ro": "Română",
                  "it": "Italiano", "ja": "日本語", "ko": "한국어", "pt": "Português", "nl": "Nederlands"}
"""Names in the translation prompt: Wendler et al.'s for fr, de, ru, en, zh; the others (our choice) native too."""


class CorpusPrompts(StrictModel):
    """Prompts from a parallel corpus (offline, no word lists): each text cut at about `cut` of its length; the lens
    reads the mass on each language's typical tokens (`token_languages`)."""

    kind: Literal["corpus"] = "corpus"
    corpus: Corpus = BibleCorpus(limit=24, offset=100)
    """Where the prompts come from (default: held-out Bible verses, after the statistics' first 100)."""
    cut: float = Field(0.6, gt=0.0, lt=1.0)
    """Fraction of each text kept (cut at a word boundary where the script has spaces); ours."""


class WordColumns(StrictModel):
    """Column names of the word files (defaults: Wendler et al.'s `data/langs/<lang>/clean.csv`)."""

    anchor: str = "word_original"
    """The word in the anchor language (Wendler et al.: English)."""
    word: str = "word_translation"
    """The word in the file's language."""
    cloze: str = "blank_prompt_translation_masked"
    """The cloze sentence in the file's language, its target word blanked ("___") and repeated as the answer at the
    end (`cloze` format only)."""


class WordPrompts(StrictModel):
    """Word-translation or cloze items from local files in Wendler et al.'s format, one file per language.

    `translation`: `shots` demonstrations `{source name}: "{source word}" - {name}: "{word}"`, then the item's line
    cut after the opening quote of its answer (Wendler et al.: 4 demonstrations). `cloze`: `shots` other items'
    cloze sentences, then the item's cut right before the last occurrence of its answer (Wendler et al.: 2, cut at
    the first colon). Items of the same anchor word are joined across files, as Wendler et al. do."""

    kind: Literal["words"]
    format: Literal["translation", "cloze"] = "translation"
    data_files: dict[LanguageCode, str]
    """Per language, a table (csv/tsv/json/jsonl/parquet) with the `columns`; relative paths start at the spec's
    folder. Needs every task language, and the `source` language for translation unless it is the anchor."""
    source: LanguageCode | None = None
    """Translation: the language of the words given in the prompt (Wendler et al.: e.g. fr for a zh target).
    Required for translation; the source equal to a unit's language is their repetition task."""
    shots: PositiveInt | None = None
    """Demonstrations per prompt; default Wendler et al.'s: 4 for translation, 2 for cloze."""
    limit: PositiveInt | None = None
    """At most this many items per language (file order); default: all."""
    seed: int = 0
    """Seed of each item's choice of demonstrations."""
    columns: WordColumns = WordColumns()
    names: dict[LanguageCode, str] | None = None
    """Language names in the translation prompt (default: a built-in table of native names)."""
    drop_overlap: bool = True
    """Drop items whose answer and anchor token sets share a token, or whose anchor word is part of the answer
    (case-insensitively), as Wendler et al. do: their two curves could not be told apart."""

    @property
    def demonstrations(self) -> int:
        return self.shots or (4 if self.format == "translation" else 2)


Prompts = Annotated[Union[CorpusPrompts, WordPrompts], Field(discriminator="kind")]


class TokenLanguagesSpec(StrictModel):
    """The token -> language map (ours; see clas_graph/stats/token_languages.py): a token is typical of the language
    with the largest share of its frequency-normalised occurrences when that share is at least `min_share` and it
    occurs there at least `min_count` times."""

    corpus: Corpus | None = None
    """Parallel texts the counts come from; default: the spec's statistics corpus (`stats.corpus`), else 100 Bible
    verses."""
    min_share: float = Field(0.9, gt=0.0, le=1.0)
    min_count: PositiveInt = 3


@dataclass(frozen=True)
class LensItem:
    id: str
    prompt: str
    answer: str | None = None
    anchor_answer: str | None = None


# --- items -----------------------------------------------------------------------------------------------------


def items(task: "LensTask", language: str, base_dir: Path | None) -> list[LensItem]:
    """The unit's prompts (and answers, for word items), before tokenization."""
    prompts = task.prompts
    if isinstance(prompts, CorpusPrompts):
        samples = load_corpus(prompts.corpus, [language], base_dir)
        return [LensItem(s.id, cut_text(s.texts[language], prompts.cut)) for s in samples]
    table = word_table(prompts, language, base_dir)
    if prompts.format == "cloze":
        return cloze_items(prompts, language, table)
    if prompts.source not in prompts.data_files:  # the anchor (validation allows no other): its words are in every file
        source = {concept: {"word": row["anchor"]} for concept, row in table.items()}
    else:
        source = table if prompts.source == language else word_table(prompts, prompts.source, base_dir)
    return translation_items(prompts, language, table, source)


def word_table(prompts: WordPrompts, language: str, base_dir: Path | None) -> dict[str, dict]:
    """{anchor word: {"anchor", "word"(, "cloze")}} of one language's file, first row per anchor word, in file order;
    DataError naming the file, row and column for a missing column or an empty word."""
    if language not in prompts.data_files:
        raise DataError(f"no word file for language '{language}'", where="prompts.data_files",
                        fix=f"add `{language}: PATH` to data_files")
    file = local_file(prompts.data_files[language], base_dir, WORD_EXTENSIONS, name=f"word file for '{language}'")
    columns = read_columns(file, typed=False, name=f"word file for '{language}'")
    fields = {"anchor": prompts.columns.anchor, "word": prompts.columns.word}
    if prompts.format == "cloze":
        fields["cloze"] = prompts.columns.cloze
    where = f"prompts.data_files.{language} ({file})"
    require_columns(list(columns), list(fields.values()), where=where, subject=f"the word file for '{language}'",
                    fix="name the columns with `columns:` (defaults: Wendler et al.'s clean.csv)")
    out: dict[str, dict] = {}
    for row in range(len(columns[fields["anchor"]])):
        values = {key: str(columns[name][row] if columns[name][row] is not None else "").strip()
                  for key, name in fields.items()}
        for key, name in fields.items():
            if not values[key]:
                raise DataError(f"row {row + 1}, column '{name}' is empty", where=where,
                                fix="fill it in or delete the row")
        out.setdefault(values["anchor"], values)
    if not out:
        raise DataError("the word file has no rows", where=where)
    return out


def _demos(prompts: WordPrompts, language: str, concepts: list[str], concept: str) -> list[str]:
    """The item's demonstrations: other items, chosen by a seed of (seed, language, concept)."""
    others = [c for c in concepts if c != concept]
    chooser = random.Random(f"{prompts.seed}:{language}:{concept}")
    return chooser.sample(others, min(prompts.demonstrations, len(others)))


def translation_items(prompts: WordPrompts, language: str, table: dict, source: dict) -> list[LensItem]:
    names = {**LANGUAGE_NAMES, **(prompts.names or {})}
    src_name, name = names.get(prompts.source, prompts.source), names.get(language, language)
    concepts = [c for c in table if c in source][: prompts.limit]
    out = []
    for concept in concepts:
        lines = [f'{src_name}: "{source[c]["word"]}" - {name}: "{table[c]["word"]}"'
                 for c in _demos(prompts, language, concepts, concept)]
        lines.append(f'{src_name}: "{source[concept]["word"]}" - {name}: "')
        out.append(LensItem(concept, "\n".join(lines), table[concept]["word"], concept))
    return out


def cloze_items(prompts: WordPrompts, language: str, table: dict) -> list[LensItem]:
    concepts = list(table)[: prompts.limit]
    out = []
    for concept in concepts:
        row = table[concept]
        cut = row["cloze"].rfind(row["word"])
        if cut <= 0:
            raise DataError(f"the cloze sentence of '{concept}' does not contain its answer '{row['word']}'",
                            where=f"prompts.data_files.{language}", fix="end each cloze sentence with its answer")
        lines = [table[c]["cloze"] for c in _demos(prompts, language, concepts, concept)]
        out.append(LensItem(concept, "\n".join(lines + [row["cloze"][:cut]]), row["word"], concept))
    return out


def answer_tokens(tokenizer, word: str) -> list[int]:
    """Token ids that start `word` (Wendler et al.: every prefix of the word, with and without a leading space, that
    is one vocabulary entry), found by encoding instead of SentencePiece strings so that byte-level BPE works too;
    plus (ours, for scripts whose characters are several tokens) the first token of the word's own encoding, with
    and without a leading space, when it is not blank."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    found: set[int] = set()
    for end in range(1, len(word) + 1):
        for text in (word[:end], " " + word[:end]):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) == 1:
                found.add(ids[0])
    for text in (word, " " + word):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if ids and tokenizer.decode(ids[:1]).strip():
            found.add(ids[0])
    return sorted(found - special)


# --- runner ------------------------------------------------------------------------------------------------------


class LensRunner(TaskRunner):
    def languages(self):
        anchor = self.lens_anchor
        return [lang for lang in self.spec.task_languages(self.task) if lang != anchor]

    @property
    def lens_anchor(self) -> str:
        return self.task.anchor_language(self.spec)

    def check_model(self, config, tokenizer) -> None:
        """Before any model work: the sites table knows the final norm, the layers exist, and every answer word
        has tokens. DataError names the field."""
        lens_readout(config, architecture_for(config), self.layers(config), sets=[[0]])
        for language in self.languages():
            units = self.word_groups(tokenizer, language)[0] if isinstance(self.task.prompts, WordPrompts) \
                else self.items(language)
            self._check_position(tokenizer, units, language)

    def _check_position(self, tokenizer, units: list[LensItem], language: str) -> None:
        """Every prompt has the token the lens reads (`position` counts from its end)."""
        need = -self.task.position
        for item in units:
            count = len(tokenizer(self.templated(tokenizer, item.prompt))["input_ids"])
            if count < need:
                raise DataError(f"position {self.task.position} reads token {need} from the end, but prompt "
                                f"'{item.id}' ({language}) has {count} tokens",
                                where="position", fix=f"use a position between -{count} and -1 (-1: the last token)")

    def layers(self, config) -> list[int]:
        count = config.get_text_config().num_hidden_layers
        layers = list(range(count)) if self.task.layers is None else sorted(set(self.task.layers))
        bad = [layer for layer in layers if layer >= count]
        if bad:
            raise DataError(f"layer {bad[0]} is out of range: the model has {count} layers",
                            where="layers", fix=f"use 0-{count - 1}")
        return layers

    def items(self, language: str) -> list[LensItem]:
        return self.cached(("items", language), lambda: items(self.task, language, self.base_dir))

    def word_groups(self, tokenizer, language: str) -> tuple[list[LensItem], list[tuple[list[int], list[int]]], int]:
        """(kept items, their (answer, anchor answer) token ids, items dropped for overlap); DataError for an
        answer with no tokens."""
        key = ("groups", language)
        if key in self._cache:
            return self._cache[key]
        kept, groups, dropped = [], [], 0
        for item in self.items(language):
            ids = []
            for word, field in ((item.answer, self.task.prompts.columns.word),
                                (item.anchor_answer, self.task.prompts.columns.anchor)):
                tokens = answer_tokens(tokenizer, word)
                if not tokens:
                    raise DataError(f"the answer '{word}' of item '{item.id}' ({language}) has no tokens",
                                    where=f"prompts.data_files.{language}: column '{field}'",
                                    fix="fix or delete the row")
                ids.append(tokens)
            overlap = set(ids[0]) & set(ids[1]) or item.anchor_answer.lower() in item.answer.lower()
            if self.task.prompts.drop_overlap and overlap:
                dropped += 1
                continue
            kept.append(item)
            groups.append((ids[0], ids[1]))
        if not kept:
            raise DataError(f"every item in '{language}' was dropped: answer and anchor answer share tokens",
                            where=f"tasks ({self.key}).prompts", fix="set `drop_overlap: false`, or add items")
        self._cache[key] = (kept, groups, dropped)
        return self._cache[key]

    def token_map(self, tokenizer, config) -> TokenLanguages | None:
        from ..stats.token_languages import token_languages

        spec = self.task.token_languages
        if spec is None:
            return None
        if "token_map" not in self._cache:
            languages = self.task.map_languages(self.spec)
            samples = load_corpus(self.task.map_corpus(self.spec), languages, self.base_dir)
            texts = {lang: [s.texts[lang] for s in samples] for lang in languages}
            vocab = config.get_text_config().vocab_size
            self._cache["token_map"] = token_languages(tokenizer, texts, vocab, min_share=spec.min_share,
                                                       min_count=spec.min_count)
        return self._cache["token_map"]

    def reading(self, unit):
        """(the items read, their answer token groups, items dropped, curve names, token-set names, token sets)."""
        if isinstance(self.task.prompts, WordPrompts):
            units, groups, dropped = self.word_groups(unit.tokenizer, unit.language)
            curve_names = ("answer", "anchor_answer")
        else:
            units, groups, dropped = self.items(unit.language), [], 0
            curve_names = ()
        token_map = self.token_map(unit.tokenizer, unit.config)
        set_names = list(token_map.languages) if token_map is not None else []
        sets = [token_map.tokens[lang] or (0,) for lang in set_names]  # an empty set: token 0, masked in scoring
        return units, groups, dropped, curve_names, set_names, sets

    def requests(self, unit):
        units, groups, _, _, _, sets = self.reading(unit)
        texts = [item.prompt for item in units]  # plain text: Wendler et al.'s prompts are continuations
        config = unit.config
        readout = lens_readout(config, architecture_for(config), self.layers(config), position=self.task.position,
                               row_groups=groups, sets=sets)
        return [self.new_request("prompts", [item.id for item in units], self.row_languages(texts, unit.language),
                                 texts=tuple(texts), readout=readout)]

    def score(self, unit, requests, answers):
        units, _, dropped, curve_names, set_names, _ = self.reading(unit)
        token_map = self.token_map(unit.tokenizer, unit.config)
        layers = self.layers(unit.config)
        empty = [k for k, lang in enumerate(set_names) if not token_map.tokens[lang]]
        out = {}
        for name, value in answers["prompts"].items():
            lens = value["lens"].clone()
            for k in empty:
                lens[:, :, len(curve_names) + k] = float("nan")
            out[name] = self.scored(unit.tokenizer, units, lens, value["top1"], layers, curve_names, set_names,
                                    unit.language, self.lens_anchor, dropped, token_map)
        return out

    def scored(self, tokenizer, units, lens, top1, layers, curve_names, set_names, language, anchor, dropped,
              token_map):
        names = [*curve_names, *(f"mass:{lang}" for lang in set_names)]
        floor = self.task.crossover_floor
        column = {n: k for k, n in enumerate(names)}
        if curve_names:  # word items: the answers' probabilities are the curves
            prompt_col, anchor_col = column["answer"], column["anchor_answer"]
        else:
            prompt_col, anchor_col = column[f"mass:{language}"], column[f"mass:{anchor}"]
        mean = lens.mean(0)  # [layers, groups]
        prompt_curve, anchor_curve = mean[:, prompt_col], mean[:, anchor_col]
        rows = []
        for i, item in enumerate(units):
            row = {"id": item.id, "prompt": item.prompt, "layers": layers,
                   "p_prompt": _rounded(lens[i, :, prompt_col]), "p_anchor": _rounded(lens[i, :, anchor_col]),
                   "crossover_layer": crossover(lens[i, :, anchor_col], lens[i, :, prompt_col], layers, floor),
                   "top1": [tokenizer.decode([int(t)]) for t in top1[i]]}
            if item.answer is not None:
                row.update(answer=item.answer, anchor_answer=item.anchor_answer)
            rows.append(self.annotate([row], [item.prompt], language)[0])
        peak = int(anchor_curve.argmax())
        metrics = {
            "anchor_mean": float(anchor_curve.mean()), "prompt_mean": float(prompt_curve.mean()),
            "prompt_last": float(prompt_curve[-1]), "anchor_peak": float(anchor_curve[peak]),
            "anchor_peak_layer": layers[peak],
            "crossover_layer": crossover(anchor_curve, prompt_curve, layers, floor), "crossover_floor": floor,
            "layers": layers, "curves": {"prompt": _rounded(prompt_curve), "anchor": _rounded(anchor_curve)},
            "reads": "answer probability" if curve_names else "language token mass",
            "anchor": anchor, "n": len(units), "n_dropped": dropped,
        }
        if set_names:
            metrics["mass"] = {lang: _rounded(mean[:, column[f"mass:{lang}"]]) for lang in set_names}
            metrics["token_languages"] = {**token_map.describe(tokenizer),
                                          "tokens": {lang: list(token_map.tokens[lang])
                                                     for lang in dict.fromkeys([language, anchor])}}
        return rows, metrics


def crossover(anchor, prompt, layers, floor: float = 0.0) -> int | None:
    """The first lens layer where the anchor's probability exceeds the prompt language's and is at least `floor`
    (None: never)."""
    import torch

    anchor = torch.as_tensor(anchor)
    above = torch.nonzero((anchor > torch.as_tensor(prompt)) & (anchor >= floor))
    return layers[int(above[0, 0])] if len(above) else None


def _rounded(values) -> list:
    import torch

    return [None if v != v else round(float(v), 7) for v in torch.as_tensor(values).tolist()]


class LensTask(LanguagesField, TaskSpec):
    """Latent-language lens (Wendler et al. 2024): per layer, the final norm and unembedding at one position, and
    the probability of the answer (or of each language's typical tokens) in the prompt's and the anchor language."""

    metrics = {"anchor_mean": True, "prompt_mean": True, "prompt_last": True, "anchor_peak": True}
    primary = "anchor_mean"
    runner_class = LensRunner
    translated_ids = True

    kind: Literal["lens"]
    prompts: Prompts = CorpusPrompts()
    """Where prompts and answers come from: `{kind: corpus}` (offline default, language masses) or `{kind: words}`."""
    layers: list[NonNegativeInt] | None = None
    """Decoder layers whose output the lens reads (0-based); default: every layer. The last layer's lens is the
    model's own next-token distribution."""
    position: int = Field(-1, lt=0)
    """Read position, counted from the end of each prompt (-1: the last token, Wendler et al.'s)."""
    crossover_floor: float = Field(0.05, ge=0.0, le=1.0)
    """The crossover layer is the first where the anchor's probability exceeds the prompt language's *and* is at
    least this (ours: near-zero probabilities in the lowest layers cross by noise; 0: the literal rule)."""
    anchor: LanguageCode | None = None
    """The latent language compared with each prompt's (default: the spec's fixed anchor)."""
    token_languages: TokenLanguagesSpec | None = TokenLanguagesSpec()
    """The map for language masses; with word items also read beside the answers; null: off (word items only)."""

    def anchor_language(self, spec) -> str | None:
        return self.anchor or (spec.anchor.language if isinstance(spec.anchor, FixedAnchor) else None)

    def map_corpus(self, spec) -> Corpus:
        if self.token_languages.corpus is not None:
            return self.token_languages.corpus
        return spec.stats.corpus if spec.stats is not None else BibleCorpus(limit=100)

    def map_languages(self, spec) -> list[str]:
        return list(dict.fromkeys([*spec.languages, *spec.task_languages(self), self.anchor_language(spec)]))

    def check_references(self, spec, index):
        anchor = self.anchor_language(spec)
        if anchor is None:
            raise FieldError(("tasks", index, "anchor"), "the lens compares each language with an anchor, but the "
                             "spec has no fixed anchor; set `anchor: en` in the task")
        if self.anchor is not None and anchor not in spec.all_languages:
            raise FieldError(("tasks", index, "anchor"), f"language '{anchor}' is not in `languages` {spec.languages}")
        if isinstance(self.prompts, CorpusPrompts) and self.token_languages is None:
            raise FieldError(("tasks", index, "token_languages"), "corpus prompts have no answers: the lens reads "
                             "language masses, which need `token_languages`; remove the null or use word items")
        if self.token_languages is not None:
            check_corpus(self.map_corpus(spec), self.map_languages(spec), ("tasks", index, "token_languages", "corpus"),
                         ("tasks", index, "token_languages", "corpus"))

    def check_languages(self, spec, index, languages, field):
        prompts, anchor = self.prompts, self.anchor_language(spec)
        if isinstance(prompts, CorpusPrompts):
            check_corpus(prompts.corpus, languages, ("tasks", index, "prompts", "corpus"), field)
            return
        where = ("tasks", index, "prompts")
        if prompts.format == "translation" and prompts.source is None:
            raise FieldError(where + ("source",), "translation prompts need the `source` language of the given words "
                             "(Wendler et al.: e.g. fr)")
        needed = [lang for lang in languages if lang != anchor]
        if prompts.format == "translation" and prompts.source != anchor:
            needed.append(prompts.source)
        for lang in needed:
            if lang not in prompts.data_files:
                raise FieldError(where + ("data_files",), f"no word file for language '{lang}' (files for: "
                                 f"{', '.join(prompts.data_files) or 'none'}); add `{lang}: PATH`")

    def item_ids(self, languages, language, split, base_dir):
        check_split(split)
        if split != TEST:
            raise DataError("the lens has no dev items", where=f"tasks ({self.kind})",
                            fix="leave the lens out of sweeps (it describes, it does not select)")
        return [item.id for item in items(self, language, base_dir)]

    def describe(self, split):
        prompts = self.prompts
        if isinstance(prompts, CorpusPrompts):
            c = prompts.corpus
            return (f"{c.kind} texts [{c.offset}, {c.offset + c.limit}) of the order with seed {c.seed}, "
                    f"cut at {prompts.cut}")
        return f"{prompts.format} items from local word files ({prompts.demonstrations} demonstrations)"

    def data_loads(self, languages, base_dir):
        if isinstance(self.prompts, CorpusPrompts):
            return [(None, functools.partial(load_corpus, self.prompts.corpus, languages, base_dir))]
        return super().data_loads(languages, base_dir)

    def report(self, key, task, run_dir):
        from ..report.lens import lens_figure, token_languages_record

        lens_figure(key, task, run_dir / "figures" / f"{key}_lens.png")
        token_languages_record(key, task, run_dir / "lens" / f"{key}_token_languages.json")
