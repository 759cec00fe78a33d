"""Statistics runner (paper section 2.3): neuron statistics over parallel text -> categories, masks, bridges.

Streams batches through a generated nnsight trace that returns only
per-language float64 sums (never activations), so memory stays flat and the
same trace can run remotely. One pass: categories compare each language's
mean |h| (or mean h) with T_act, which the means give. `active_frac` (the
fraction of tokens above T_act) is not used by categories; with an absolute
T_act it is counted in the same pass, with a quantile T_act only on request
(`active_frac=True`), by a second pass once the thresholds are known.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape

from ..compile.emit_stats import emit_stats
from ..data.corpora import load_corpus
from ..errors import DataError
from ..execution.context import current
from ..records import held, read_json, runs_folder_lock, warn_damaged
from ..report.figures import category_shares_figure
from ..report.tables import category_table
from ..sites import architecture_for, dims_of
from ..spec.run_spec import RunSpec
from ..spec.stats import QuantileThreshold
from ..stats import Moments, StatsArtifact, build_artifact, thresholds
from ..stats.artifact import META_FILE, TENSOR_FILE
from .progress import progress_bar
from .selections import has_selections, with_selections


def moments_key(spec: RunSpec) -> str:
    """Identity of the raw sums: model, dtype, languages, corpus and truncation (not threshold/bridge)."""
    stats = spec.stats
    data = {
        "model": spec.model.model_dump(mode="json", exclude={"device"}),
        "languages": list(spec.languages),
        "corpus": stats.corpus.model_dump(mode="json"),
        "max_length": stats.max_length,
        "exclude_bos": stats.exclude_bos,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _rows(samples, languages):
    return [(text, g) for sample in samples for g, lang in enumerate(languages)
            for text in [sample.texts[lang]]]


def _batches(tokenizer, rows, batch_size: int, max_length: int):
    encoded = tokenizer([text for text, _ in rows], truncation=True, max_length=max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    order = sorted(range(len(rows)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        yield index, sum(lengths[i] for i in index)


def _stream(model, rows, languages, *, batch_size, max_length, trace, t_act, description, console, exclude_bos):
    """Run the stats trace over all rows; sum what it returns. The executor groups batches into requests
    (remotely, up to `session_batches` in one `model.session`, so the server keeps the running sums and
    returns only them)."""
    tokenizer = model.tokenizer
    executor = current()
    totals: dict[str, torch.Tensor] = {}
    tokens = torch.zeros(len(languages), dtype=torch.float64)
    batches = list(_batches(tokenizer, rows, batch_size, max_length))
    counted = {tuple(index): n for index, n in batches}
    seen_tokens = 0
    with progress_bar(console) as progress:
        task = progress.add_task(description, total=len(rows), tok_s="-")
        for group in executor.request_groups([index for index, _ in batches]):
            payloads = [_encode_batch(tokenizer, rows, index, languages, max_length, exclude_bos) for index in group]
            with torch.inference_mode():
                out = executor.call_grouped(model, trace.run, trace.session, payloads, shared=(t_act,),
                                            call_kwargs={"logits_to_keep": 1})
            for key, value in out.items():
                totals[key] = totals[key] + value if key in totals else value.clone()
            for _, onehot, mask in payloads:
                tokens += onehot.T @ mask.sum(1)
            seen_tokens += sum(counted[tuple(index)] for index in group)
            elapsed = progress.tasks[task].elapsed or 1e-9
            progress.update(task, advance=sum(map(len, group)), tok_s=f"{seen_tokens / elapsed:,.0f}")
    return totals, tokens


def _encode_batch(tokenizer, rows, index, languages, max_length: int, exclude_bos: bool):
    """(inputs, onehot [B, G], token mask [B, T]) for one batch of rows; BOS masked out when asked."""
    encoded = tokenizer([rows[i][0] for i in index], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    groups = torch.tensor([rows[i][1] for i in index])
    onehot = torch.nn.functional.one_hot(groups, len(languages)).to(torch.float64)
    mask = encoded["attention_mask"].to(torch.float64)
    if exclude_bos and tokenizer.bos_token_id is not None:
        mask[encoded["input_ids"] == tokenizer.bos_token_id] = 0.0
    return inputs, onehot, mask


def collect(model, samples, languages, *, threshold, batch_size: int = 8, max_length: int = 512,
            exclude_bos: bool = True, console: Console | None = None,
            active_frac: bool | None = None) -> tuple[Moments, torch.Tensor | None, torch.Tensor]:
    """(moments, active counts [L, G, I] or None, T_act [L]) over the samples, batched, padding masked out.

    `active_frac`: None counts active tokens only when it costs no extra pass (absolute T_act); True always
    (a second pass for a quantile T_act); False never."""
    console = console or Console(stderr=True)
    config = model._module.config
    arch, dims = architecture_for(config), dims_of(config)
    rows = _rows(samples, languages)
    quantile = isinstance(threshold, QuantileThreshold)
    common = dict(batch_size=batch_size, max_length=max_length, console=console, exclude_bos=exclude_bos)
    if quantile:
        sums, tokens = _stream(model, rows, languages, trace=emit_stats(arch, dims.num_layers), t_act=None,
                               description="statistics: means", **common)
        moments = Moments(sums["h_sum"], sums["h_sqsum"], sums["act_sum"], sums["resid_sum"], tokens)
        t_act = thresholds(moments.mean(), kind="quantile", q=threshold.q)
        if not active_frac:
            return moments, None, t_act
        counts, _ = _stream(model, rows, languages,
                            trace=emit_stats(arch, dims.num_layers, moments=False, active="abs"),
                            t_act=t_act, description="statistics: active tokens", **common)
        return moments, counts["active"], t_act
    t_act = thresholds(torch.zeros(1, dims.num_layers, 1), kind="absolute", value=threshold.value)
    count = active_frac is not False
    sums, tokens = _stream(model, rows, languages, trace=emit_stats(arch, dims.num_layers,
                                                                    active="signed" if count else None),
                           t_act=t_act, description="statistics", **common)
    moments = Moments(sums["h_sum"], sums["h_sqsum"], sums["act_sum"], sums["resid_sum"], tokens)
    return moments, sums["active"] if count else None, t_act


def compute_stats(spec: RunSpec, model, *, console: Console | None = None,
                  active_frac: bool | None = None) -> StatsArtifact:
    """Run the statistics the spec's `stats:` section asks for (no caching; see `ensure_stats`).
    `active_frac`: see `collect` (default: only when it needs no second pass)."""
    stats = spec.stats
    base_dir = Path(spec.source).parent if spec.source else None
    samples = load_corpus(stats.corpus, spec.languages, base_dir)
    moments, counts, t_act = collect(model, samples, list(spec.languages), threshold=stats.threshold,
                                     batch_size=stats.batch_size, max_length=stats.max_length,
                                     exclude_bos=stats.exclude_bos, console=console, active_frac=active_frac)
    config = model._module.config
    dims = dims_of(config)
    meta = {
        "created": datetime.now(timezone.utc).isoformat(),
        "model": {**spec.model.model_dump(mode="json", exclude={"device"}), "model_type": dims.model_type,
                  "num_layers": dims.num_layers, "intermediate_size": dims.intermediate_size,
                  "hidden_size": dims.hidden_size, "revision": getattr(config, "_commit_hash", None)},
        "corpus": stats.corpus.model_dump(mode="json"),
        "samples": len(samples),
        "sample_ids": [sample.id for sample in samples],
        "tokens_per_language": dict(zip(spec.languages, moments.tokens.tolist())),
        "threshold": {**stats.threshold.model_dump(mode="json"), "note": THRESHOLD_NOTE},
        "active_frac": ("fraction of non-pad tokens with " + ("|h| > T_act" if isinstance(
            stats.threshold, QuantileThreshold) else "h > T_act") + " (T_act of the layer)") if counts is not None
        else "not computed (categories do not use it; with a quantile T_act it needs a second pass: "
             "compute_stats(..., active_frac=True))",
        "tokens_counted": ("non-pad tokens except BOS" if stats.exclude_bos else "all non-pad tokens (BOS included)")
        + f", truncated at {stats.max_length}",
        "moments_key": moments_key(spec),
        "bridge_rule": stats.bridge.model_dump(mode="json"),
    }
    return build_artifact(moments, counts, t_act, stats.threshold.kind, spec.languages,
                          stats.bridge.model_dump(), meta)


THRESHOLD_NOTE = ("The paper gives no value for T_act; its wording ('mean activation' above T_act) implies an "
                  "absolute threshold on the signed mean, i.e. {kind: absolute, value: 0.0}. That reading is not "
                  "sign-invariant; the quantile of |mean| is the default here.")


def check_artifact_fits(artifact: StatsArtifact, spec: RunSpec, where: str) -> StatsArtifact:
    """Refuse an artifact from another model or language set; reorder languages if only the order differs."""
    model = artifact.meta.get("model", {})
    wanted = spec.model.model_dump(mode="json", exclude={"device"})
    mismatched = [key for key in ("id", "path", "embedded", "revision") if model.get(key) != wanted.get(key)]
    if mismatched:
        raise DataError(
            f"the statistics artifact was computed on a different model ({_model_name(model)}), "
            f"not {spec.model.display_name}",
            where=where, fix="recompute statistics for this model (`clas-graph stats SPEC`)",
        )
    if set(artifact.languages) != set(spec.languages):
        raise DataError(
            f"the statistics artifact covers languages {list(artifact.languages)}, "
            f"but the spec has {list(spec.languages)}",
            where=where, fix="recompute statistics for this language set; categories depend on it",
        )
    return artifact.for_languages(list(spec.languages))


def _model_name(model: dict) -> str:
    return model.get("id") or model.get("path") or f"embedded:{model.get('embedded')}"


def _cached_candidates(spec: RunSpec, runs_root: Path):
    """Artifacts under `runs_root` with the same raw-sum identity (stats.json says so), newest first."""
    key = moments_key(spec)
    for meta_path in sorted(runs_root.glob(f"*/{META_FILE}"), reverse=True):
        meta = read_json(meta_path)  # the tensors' sha256 in it is checked on load
        if not isinstance(meta, dict):
            warn_damaged(meta_path, "ignoring that artifact (statistics are recomputed if no other fits)")
            continue
        if meta.get("moments_key") == key and (meta_path.parent / TENSOR_FILE).is_file():
            yield meta_path.with_name(TENSOR_FILE)


def find_cached(spec: RunSpec, runs_root: Path) -> Path | None:
    """A complete artifact under `runs_root` with the same raw-sum identity, newest first."""
    return next(_cached_candidates(spec, runs_root), None)


def _load_cached(path: Path) -> StatsArtifact | None:
    """A cached artifact, or None when it is damaged (it is then recomputed, never trusted)."""
    try:
        return StatsArtifact.load(path)
    except (DataError, OSError, ValueError, KeyError) as exc:
        reason = exc.what if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}"
        Console(stderr=True).print(f"[yellow]cached statistics at {escape(str(path))} are damaged "
                                   f"({escape(reason)}); ignoring them, they will be recomputed[/]")
        return None


def existing_stats(spec: RunSpec, runs_root: Path) -> StatsArtifact | None:
    """The spec's explicit artifact or a cached one with the same identity and rule; None if there is none.

    A damaged cached artifact is skipped (and recomputed by `ensure_stats`); a damaged artifact the spec
    names in `stats.artifact` is refused, since it is the user's file.
    """
    stats = spec.stats
    if stats.artifact is not None:
        base = Path(spec.source).parent if spec.source else Path.cwd()
        path = Path(stats.artifact) if Path(stats.artifact).is_absolute() else base / stats.artifact
        where = f"{spec.place('stats.artifact')}: stats.artifact"
        try:
            artifact = StatsArtifact.load(path)
        except DataError as exc:
            raise DataError(exc.what, where=where,
                            fix="point `stats.artifact` at an intact artifact (stats.safetensors with its stats.json), "
                                "or remove `stats.artifact` so `clas-graph stats SPEC` computes the statistics",
                            ) from None
        return check_artifact_fits(artifact, spec, where)
    for cached in _cached_candidates(spec, runs_root):
        artifact = _load_cached(cached)
        if artifact is None:
            continue
        threshold = {k: v for k, v in artifact.meta.get("threshold", {}).items() if k != "note"}
        if threshold != stats.threshold.model_dump(mode="json") or \
                artifact.meta.get("bridge_rule") != stats.bridge.model_dump(mode="json"):
            return None  # same text, other rule: active counts differ, recompute
        return check_artifact_fits(artifact, spec, str(cached))
    return None


def ensure_stats(spec: RunSpec, model, run_dir: Path, runs_root: Path, *,
                 console: Console | None = None) -> StatsArtifact:
    """The spec's statistics: its explicit artifact, a cached one of the same identity, or computed now.

    A cached artifact is reused only when its threshold and bridge rule equal the spec's (otherwise
    the active-token counts would be wrong); whatever is used is saved in `run_dir` (replacing a damaged copy).
    """
    console = console or Console(stderr=True)
    # one process computes a given set of statistics at a time; another waits and then reuses them
    lock = runs_folder_lock(runs_root, f"stats-{moments_key(spec)[:16]}")
    with held(lock, "the statistics cache for this model and corpus", console=console):
        return _ensure_stats(spec, model, run_dir, runs_root, console)


def _ensure_stats(spec: RunSpec, model, run_dir: Path, runs_root: Path, console: Console) -> StatsArtifact:
    artifact = existing_stats(spec, runs_root)
    if artifact is not None:
        console.print(f"statistics: reusing the artifact computed on {artifact.meta.get('created', '?')}")
        own = run_dir / TENSOR_FILE
        if not own.is_file() or _damaged(own):
            artifact.save(run_dir)
        return _ensure_selections(spec, model, artifact, run_dir, console)
    artifact = compute_stats(spec, model, console=console)
    artifact.save(run_dir)
    return _ensure_selections(spec, model, artifact, run_dir, console)


def _ensure_selections(spec: RunSpec, model, artifact: StatsArtifact, run_dir: Path, console: Console) -> StatsArtifact:
    """LAPE / expert selections when `stats.selections` asks for them; saved with the artifact in run_dir."""
    if spec.stats.selections is None or has_selections(artifact, spec):
        return artifact
    samples = load_corpus(spec.stats.corpus, spec.languages, Path(spec.source).parent if spec.source else None)
    artifact = with_selections(artifact, spec, model, samples, console=console)
    artifact.save(run_dir)
    return artifact


def _damaged(path: Path) -> bool:
    try:
        StatsArtifact.load(path)
    except (DataError, OSError, ValueError, KeyError):
        return True
    return False


def report_stats(artifact: StatsArtifact, run_dir: Path, console: Console, title: str) -> Path:
    """Print the per-layer table and write figures/neuron_categories.png; returns the figure path."""
    meta = artifact.meta
    shares, bridge = meta["category_shares"], list(artifact.bridge_layers)
    console.print(category_table(shares, meta["bridge"]["scores"], bridge, meta["t_act_values"],
                                 meta["bridge"]["candidates"], title=title))
    console.print(f"bridge rule: {meta['bridge']['rule']} → layers {bridge}")
    return category_shares_figure(shares, bridge, run_dir / "figures" / "neuron_categories.png", title)
