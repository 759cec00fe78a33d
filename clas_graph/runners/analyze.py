"""Analysis runner (paper sections 4.2-4.3, Appendix A): why a condition helped, or did not.

For base and each analysed condition, the mean-pooled hidden states of the analysis corpus's parallel texts
are read at the analysis layers (and the t-SNE layer) through the same plans and traces as evaluation (so
remotely too), cached in the run directory as safetensors, and turned into:
alignment (cosine to the anchor's parallel text), separation (silhouette of the language labels), an optional
language probe, the relation of their changes to each task's per-language gains (metrics.json), and t-SNE.
Everything behind the figures goes into analysis.json. A sweep's analysed conditions are those of its test phase
(analyze_sweep.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, save

from ..compile.compiler import compile_plans
from ..compile.plan import Plan
from ..data.corpora import load_corpus
from ..errors import CompileError, DataError
from ..eval import geometry
from ..eval.metrics import paired_test
from ..execution.api import pooled_hidden
from ..loading import load_model_for_spec
from ..records import (
    ANALYSIS_SCHEMA,
    METRICS_SCHEMA,
    AnalysisDocument,
    RunDir,
    atomic_write_bytes,
    atomic_write_json,
    validated,
    warn_damaged,
)
from ..report.analysis import write_report
from ..spec.analysis import config_of
from ..spec.base import BASE_CONDITION
from ..spec.rows import FixedAnchor
from ..spec.run_spec import RunSpec
from ..spec.sweep import expand
from .analyze_sweep import (
    candidate_conditions,
    check_recorded,
    chosen_conditions,
    read_metrics,
    recorded_choice,
    sweep_record,
)
from .lifecycle import executor_for, recorded, start_run
from .stats import existing_stats
from .sweep import compile_condition

REPRESENTATIONS_DIR = "analysis"


def _where(spec: RunSpec, field: str) -> str:
    return f"{spec.place(f'analysis.{field}')}: analysis.{field}"


def _num_layers(model) -> int:
    return model._module.config.get_text_config().num_hidden_layers


def analysis_layers(spec: RunSpec, plans: dict[str, Plan], num_layers: int, conditions: list[str]) -> list[int]:
    """The configured layers, or those the analysed conditions intervene on, or the middle layer."""
    config = config_of(spec)
    if config.layers is not None:
        layers = sorted(set(config.layers))
    else:
        layers = sorted({layer for name in conditions for layer in plans[name].layers})
        layers = layers or [num_layers // 2]
    for layer in layers:
        if layer >= num_layers:
            raise CompileError(f"layer {layer} is out of range: the model has {num_layers} layers",
                               where=_where(spec, "layers"), fix=f"use layers 0-{num_layers - 1}")
    return layers


def tsne_layer(spec: RunSpec, num_layers: int) -> int | None:
    """The t-SNE layer (default: the penultimate, num_layers - 2, as in the paper); None without t-SNE."""
    tsne = config_of(spec).tsne
    if tsne is None:
        return None
    layer = tsne.layer if tsne.layer is not None else max(num_layers - 2, 0)
    if layer >= num_layers:
        raise CompileError(f"layer {layer} is out of range: the model has {num_layers} layers",
                           where=_where(spec, "tsne.layer"), fix=f"use a layer in 0-{num_layers - 1}")
    return layer


def analysed_conditions(spec: RunSpec, choice: dict | None = None) -> list[str]:
    """The conditions compared with base. A sweep's: its baselines and each task's chosen grid point (`choice`,
    from metrics.json); before the choice is known, every point it could pick."""
    if spec.sweep is None:
        return list(config_of(spec).conditions or spec.resolved_conditions)
    return chosen_conditions(spec, choice)[0] if choice is not None else candidate_conditions(spec)


def analysis_languages(spec: RunSpec) -> list[str]:
    return list(config_of(spec).languages or spec.languages)


def check_analysis(spec: RunSpec, model, plans: dict[str, Plan], conditions: list[str] | None = None) -> None:
    """Before any work: the layers fit the model and there are conditions to compare (default: those
    `analysed_conditions` gives before a sweep's choice)."""
    if not isinstance(spec.anchor, FixedAnchor):
        raise DataError("alignment is cosine similarity to the anchor language's parallel text, but the spec has "
                        "no fixed anchor", where=f"{spec.place('anchor')}: anchor",
                        fix="set `anchor: {kind: fixed, language: en}`")
    conditions = analysed_conditions(spec) if conditions is None else conditions
    num_layers = _num_layers(model)
    analysis_layers(spec, plans, num_layers, conditions)
    tsne_layer(spec, num_layers)
    if not conditions:
        raise DataError("the spec has no conditions to compare with base", where=_where(spec, "conditions"),
                        fix="add an intervention (each is a condition) or `conditions:`")


def _load_samples(spec: RunSpec, languages: list[str]):
    base_dir = Path(spec.source).parent if spec.source else None
    try:
        samples = load_corpus(config_of(spec).corpus, languages, base_dir)
    except DataError as exc:
        raise DataError(exc.what, where=_where(spec, "corpus"), fix=exc.fix) from None
    if len(samples) < 2:
        raise DataError(f"the analysis corpus gave {len(samples)} parallel sample(s); cosine spreads and "
                        "silhouettes need at least 2", where=_where(spec, "corpus"), fix="raise `limit`")
    return samples


def _cache_key(spec: RunSpec, plan: Plan, layer: int, languages: list[str], ids: list[str]) -> str:
    data = {"corpus": config_of(spec).corpus.model_dump(mode="json"), "languages": languages, "ids": ids,
            "layer": layer, "plan": plan.to_json(), "max_length": spec.max_length, "exclude_bos": True,
            "model": spec.model.model_dump(mode="json", exclude={"device"})}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def representations(spec: RunSpec, model, plan: Plan, layer: int, samples, languages: list[str], run_dir: Path,
                    ) -> dict[str, np.ndarray]:
    """{language: [items, hidden]} pooled hidden states of `layer`'s output under `plan`; read from
    analysis/<condition>_layer<L>.safetensors when its key matches, else computed and written there."""
    ids = [sample.id for sample in samples]
    key = _cache_key(spec, plan, layer, languages, ids)
    path = run_dir / REPRESENTATIONS_DIR / f"{plan.condition}_layer{layer}.safetensors"
    cached = _cached_representations(path, key, languages)
    if cached is not None:
        return cached
    texts = [sample.texts[lang] for lang in languages for sample in samples]
    rows = [lang for lang in languages for _ in samples]
    config = config_of(spec)
    pooled = pooled_hidden(model, plan, texts, rows, layer, batch_size=config.batch_size or spec.batch_size,
                           max_length=spec.max_length)
    per_language = {lang: pooled[i * len(samples):(i + 1) * len(samples)].contiguous()
                    for i, lang in enumerate(languages)}
    metadata = {"key": key, "condition": plan.condition, "layer": str(layer), "ids": json.dumps(ids),
                "tensors_sha256": _tensors_sha256(per_language)}
    atomic_write_bytes(path, save(per_language, metadata=metadata))
    return {lang: value.double().numpy() for lang, value in per_language.items()}


def _tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names and bytes, in name order: what a cache file's tensors must hash to."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode() + b"\0" + tensors[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def _cached_representations(path: Path, key: str, languages: list[str]) -> dict[str, np.ndarray] | None:
    """The cached representations at `path` when the file is intact and made for `key`; None otherwise (a
    damaged file is said on stderr and recomputed; one for another key is simply recomputed)."""
    if not path.is_file():
        return None
    try:
        blob = path.read_bytes()
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("key") != key:
            return None
        tensors = load(blob)
        intact = metadata.get("tensors_sha256") == _tensors_sha256(tensors) and set(languages) <= set(tensors)
    except (OSError, ValueError, KeyError, SafetensorError):
        intact = False
    if not intact:
        warn_damaged(path, "recomputing these representations")
        return None
    return {lang: tensors[lang].double().numpy() for lang in languages}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def relation(metrics: dict, delta_alignment: dict, delta_separation: dict, anchor: str,
             per_task: dict[str, list[str]] | None = None) -> dict:
    """Per task and condition: gain per non-anchor language (Δmetric, sign flipped where lower is better) and
    linear regressions of Δalignment and Δseparation (y) on the gain (x). `per_task`: the conditions each task's
    relation uses (a sweep's: the baselines and that task's chosen point); default: every analysed condition."""
    if metrics.get("schema_version") != METRICS_SCHEMA:
        raise DataError(f"metrics.json has schema_version {metrics.get('schema_version')!r}; this version reads "
                        f"{METRICS_SCHEMA}", where="metrics.json", fix="rerun `clas-graph run SPEC` with this version")
    out = {}
    for key, task in metrics["tasks"].items():
        sign = 1.0 if task["higher_is_better"] else -1.0
        for condition in (per_task[key] if per_task is not None else delta_alignment):
            deltas = task["delta"].get(condition)
            if deltas is None:
                raise DataError(f"metrics.json has no condition '{condition}' for task '{key}'",
                                where="metrics.json", fix="rerun `clas-graph run SPEC` so every condition is evaluated")
            languages = [lang for lang in task["languages"]
                         if lang != anchor and lang in delta_alignment[condition] and lang in deltas]
            gain = {lang: sign * deltas[lang] for lang in languages}
            x = [gain[lang] for lang in languages]
            out.setdefault(key, {})[condition] = {
                "primary": task["primary"], "higher_is_better": task["higher_is_better"], "gain": gain,
                "alignment": geometry.regression(x, [delta_alignment[condition][lang] for lang in languages]),
                "separation": geometry.regression(x, [delta_separation[condition][lang] for lang in languages]),
            }
    return out


def compute(spec: RunSpec, reps: dict, layers: list[int], tsne_at: int | None, anchor: str,
            console: Console | None = None) -> dict:
    """Every number of analysis.json from representations {condition: {layer: {language: array}}}."""
    config = config_of(spec)
    conditions = list(reps)
    alignment, separation, probe, tsne = {}, {}, {}, {}
    for condition in conditions:
        alignment[condition] = {str(layer): geometry.cosine_to_anchor(reps[condition][layer], anchor)
                                for layer in layers}
        separation[condition] = {str(layer): geometry.silhouette(reps[condition][layer], config.metric)
                                 for layer in layers}
        if config.probe is not None:
            probe[condition] = {str(layer): geometry.probe_accuracy(reps[condition][layer], folds=config.probe.folds,
                                                                    seed=config.seed, max_iter=config.probe.max_iter)
                                for layer in layers}
        if tsne_at is not None:
            if console is not None:
                console.print(f"analysis: t-SNE of {condition} at layer {tsne_at}")
            tsne[condition] = {"layer": tsne_at, **geometry.tsne(reps[condition][tsne_at], metric=config.metric,
                                                                 perplexity=config.tsne.perplexity, seed=config.seed)}
    targets = [lang for lang in next(iter(reps[BASE_CONDITION].values())) if lang != anchor]
    # Headline numbers: the mean over the analysis layers (the paper reports "the bridge layers"); the
    # alignment's spread is over items of their layer-averaged cosine.
    alignment_mean = {}
    for c in conditions:
        per_layer = [geometry.item_cosines(reps[c][layer], anchor) for layer in layers]
        alignment_mean[c] = {lang: geometry.spread(np.mean([cos[lang] for cos in per_layer], axis=0))
                             for lang in targets}
    separation_mean = {c: {"overall": _mean(separation[c][str(layer)]["overall"] for layer in layers),
                           "per_language": {lang: _mean(separation[c][str(layer)]["per_language"][lang]
                                                        for layer in layers)
                                            for lang in [anchor, *targets]}}
                       for c in conditions}
    after = [c for c in conditions if c != BASE_CONDITION]
    delta_alignment = {c: {lang: alignment_mean[c][lang]["mean"] - alignment_mean[BASE_CONDITION][lang]["mean"]
                           for lang in targets} for c in after}
    headline = {c: {lang: alignment_mean[c][lang]["mean"] for lang in targets} for c in conditions}
    delta_separation = {c: {lang: separation_mean[c]["per_language"][lang]
                            - separation_mean[BASE_CONDITION]["per_language"][lang] for lang in targets}
                        for c in after}
    tests = {c: {"alignment": _finite(paired_test(headline[BASE_CONDITION], headline[c], anchor)),
                 "separation": _finite(paired_test(separation_mean[BASE_CONDITION]["per_language"],
                                                   separation_mean[c]["per_language"], anchor)),
                 "overall_separation_delta": separation_mean[c]["overall"] - separation_mean[BASE_CONDITION]["overall"]}
             for c in after}
    return {"alignment": alignment, "separation": separation, "probe": probe or None,
            "alignment_mean": alignment_mean, "separation_mean": separation_mean,
            "delta_alignment": delta_alignment, "delta_separation": delta_separation, "tests": tests,
            "tsne": tsne or None}


def _finite(values: dict) -> dict:
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in values.items()}


DEFINITIONS = {
    "representation": "mean over non-pad tokens (BOS left out) of decoder layer L's output, per parallel text",
    "alignment": "per item, cosine(v_lang, v_anchor) of parallel texts under the same condition; mean and std "
                 "(ddof=1) over items; headline = mean over the analysis layers",
    "separation": "silhouette of the language labels (sklearn silhouette_samples, `metric` on pooled vectors); "
                  "overall = mean over all points, per language = mean over that language's points; headline = "
                  "mean over the analysis layers",
    "delta": "condition minus base",
    "gain": "Δ of the task's primary metric vs base per non-anchor language, sign flipped for lower-is-better tasks",
    "relation": "scipy.stats.linregress(x=gain, y=Δalignment or Δseparation) over non-anchor languages",
    "tests": "paired t-test over non-anchor languages (scipy ttest_rel) of the headline numbers, base vs condition",
    "tsne": "sklearn TSNE(2-D, init=pca, fixed seed) per condition separately; centroid = mean 2-D position",
    "sweep": "chosen: per task, the grid point its dev scores chose (metrics.json `sweep`); a task's relation uses "
             "that point's and the baselines' test metrics",
}


def analyze(spec: RunSpec, model, plans: dict[str, Plan], run_dir: Path, *, console: Console | None = None,
            metrics: dict | None = None) -> dict:
    """Representations (cached), every number, analysis.json, figures and the summary's analysis section."""
    console = console or Console(stderr=True)
    start = time.perf_counter()
    config = config_of(spec)
    anchor = spec.anchor.language
    if metrics is None and (config.relation or spec.sweep is not None):  # a sweep's choice is in metrics.json
        path = run_dir / "metrics.json"
        if not path.is_file():
            if spec.sweep is not None:
                    recorded_choice(spec, None, str(path))  # says what is missing and how to get it
            raise DataError(f"the analysis relates changes to gains, but this run has no metrics yet ({path})",
                            where=_where(spec, "relation"),
                            fix="run `clas-graph run SPEC` (or `clas-graph eval SPEC`) first, or set "
                                "`analysis: {relation: false}`")
        metrics = read_metrics(path)
    sweep, per_task = None, None
    if spec.sweep is not None:
        choice = recorded_choice(spec, metrics, str(run_dir / "metrics.json"))
        analysed, per_task = chosen_conditions(spec, choice)
        sweep = sweep_record(spec, choice)
    else:
        analysed = analysed_conditions(spec)
    check_analysis(spec, model, plans, analysed)
    num_layers = _num_layers(model)
    layers = analysis_layers(spec, plans, num_layers, analysed)
    tsne_at = tsne_layer(spec, num_layers)
    languages = analysis_languages(spec)
    samples = _load_samples(spec, languages)
    conditions = [BASE_CONDITION, *analysed]
    read_layers = sorted(set(layers) | ({tsne_at} if tsne_at is not None else set()))
    reps: dict = {}
    with torch.inference_mode():
        for condition in conditions:
            for layer in read_layers:
                console.print(f"analysis: pooled hidden states of {condition} at layer {layer} "
                              f"({len(samples)} texts x {len(languages)} languages)")
                reps.setdefault(condition, {})[layer] = representations(spec, model, plans[condition], layer,
                                                                        samples, languages, run_dir)
    numbers = compute(spec, reps, layers, tsne_at, anchor, console)
    document = {
        "schema_version": ANALYSIS_SCHEMA, "spec_name": spec.name, "anchor": anchor, "languages": languages,
        "conditions": conditions, "layers": layers, "tsne_layer": tsne_at, "metric": config.metric,
        "corpus": config.corpus.model_dump(mode="json"), "items": [s.id for s in samples],
        "definitions": DEFINITIONS, **numbers, "sweep": sweep,
        "relation": relation(metrics, numbers["delta_alignment"], numbers["delta_separation"], anchor, per_task)
        if config.relation else None,
    }
    document["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_json(run_dir / "analysis.json", validated(AnalysisDocument, document))
    write_report(document, run_dir, console)
    console.print(f"analysis: {document['seconds']:.1f} s")
    return document


def run_analysis(spec: RunSpec, *, runs_root: Path = Path("runs"), console: Console | None = None,
                 remote: bool | str | None = None) -> Path:
    """`clas-graph analyze`: the analysis alone, in the spec's run directory (reusing its metrics.json)."""

    console = console or Console()
    if spec.sweep is not None:  # checked before a run directory is created or touched
        check_recorded(spec, runs_root, RunDir.existing(spec, runs_root))
    elif config_of(spec).relation:
        if RunDir.existing(spec, runs_root, holding="metrics.json") is None:
            suffix = RunDir.name_suffix(spec)
            raise DataError(f"the analysis relates changes to gains, but this spec has no evaluated run under "
                            f"{runs_root} yet (no */metrics.json in a '*{suffix}' directory)",
                            where=_where(spec, "relation"),
                            fix="run `clas-graph run SPEC` (or `clas-graph eval SPEC`) first, or set "
                                "`analysis: {relation: false}`")
    executor = executor_for(spec, remote)
    run_dir = start_run(spec, runs_root, console, executor)

    def work():
        model = load_model_for_spec(spec, console=console, remote=executor.weights_on_server)
        stats = existing_stats(spec, runs_root) if spec.stats is not None else None
        if stats is None and spec.needs_stats:
            raise CompileError("no statistics for this spec yet", where=f"{spec.place('stats')}: stats",
                               fix="run `clas-graph run SPEC` first")
        metrics = None
        if spec.sweep is not None:  # only base and the analysed points: the choice is in metrics.json
            path = run_dir.path / "metrics.json"
            metrics = read_metrics(path)
            names = analysed_conditions(spec, recorded_choice(spec, metrics, str(path)))
            expansion = expand(spec)
            plans = {name: compile_condition(expansion, model, name, stats) for name in [BASE_CONDITION, *names]}
        else:
            plans = compile_plans(spec, model, stats)
        analyze(spec, model, plans, run_dir.path, console=console, metrics=metrics)
        return run_dir.path

    return recorded(run_dir, executor, work)
