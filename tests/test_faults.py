"""Fault injection: every kind of file a run writes is damaged (truncated, emptied, overwritten with other bytes of
the same size, or edited into valid JSON that says the wrong thing), then the same command runs again; the rerun
must say what it found in one line at most, never a traceback, and end with numbers equal to an undamaged run's.

One undamaged run (statistics, CLAS from the statistics, a sweep with its dev phase, lm_loss, the analysis with
its representation caches) is made once per module on a tiny model; each case damages a copy of it.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors.numpy import load_file
from tiny import CLAS_FROM_STATS_YAML, spec_folder, spec_yaml
from typer.testing import CliRunner

from clas_graph.cli import app

MODEL_ARCH = "gemma3"  # the `model_dir` fixture (conftest.py)
LANGS = ["en", "de", "fr"]
SPEC = spec_yaml("faults", LANGS, """\
stats:
  corpus: {kind: bible, limit: 4, seed: 2}
  bridge: {k: 2, exclude_last: 1, min_layer: 1}
interventions:
""", CLAS_FROM_STATS_YAML, """\
sweep: {clas.alpha: [1, -3]}
tasks:
  - kind: lm_loss
    corpus: {kind: bible, limit: 4, offset: 10, seed: 0}
batch_size: 4
analysis:
  corpus: {kind: bible, limit: 4, offset: 30, seed: 0}
  tsne: null
""")

CHOSEN = "clas[alpha=-3]"  # the grid point lm_loss chooses on its dev items (checked by the fixture)
# Files a rerun reads back and must verify before trusting them (a damaged one is recomputed or rebuilt).
TRUSTED = {
    "manifest": "manifest.json",
    "unit": "units/lm_loss_de_base.json",
    "samples": f"samples/lm_loss_de_{CHOSEN}.jsonl",
    "metrics": "metrics.json",
    "stats_tensors": "stats.safetensors",
    "stats_meta": "stats.json",
    "analysis_cache": f"analysis/{CHOSEN}_layer1.safetensors",
    "sweep_dev_unit": "dev/units/lm_loss_fr_clas[alpha=1].json",
    "sweep_dev_samples": "dev/samples/lm_loss_fr_base.jsonl",
    "sweep_dev_metrics": "dev/metrics.json",
    "lock": ".lock",
}
# Files every run writes again without reading them: a damaged one must simply come back whole.
REWRITTEN = {
    "spec_resolved": "spec.resolved.json",
    "spec_copy": "spec.yaml",
    "plan_json": "plan.json",
    "plan_tensors": "plan.safetensors",
    "trace_source": "traces/base.py",
    "summary": "summary.md",
    "analysis_json": "analysis.json",
    "figure": "figures/deltas.png",
}


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def empty(path):
    path.write_bytes(b"")


def overwrite(path):
    """Same size, other bytes in the middle third (what a bad disk or a stray write leaves)."""
    data = bytearray(path.read_bytes())
    start, stop = len(data) // 3, max(2 * len(data) // 3, len(data) // 3 + 1)
    data[start:stop] = bytes((b ^ 0x5A) or 1 for b in data[start:stop])
    path.write_bytes(bytes(data))


def no_metrics(path):
    """Valid JSON that claims the unit is done but holds nothing."""
    path.write_text(json.dumps({"metrics": {}}))


def other_unit(path):
    """Valid JSON of another unit's record (a file copied over the wrong name)."""
    unit = json.loads(path.read_text())
    path.write_text(json.dumps({**unit, "language": "xx"}))


DAMAGES = {"truncate": truncate, "empty": empty, "overwrite": overwrite}
UNIT_EDITS = {"no_metrics": no_metrics, "other_unit": other_unit}

CASES = ([(kind, name) for kind in TRUSTED for name in DAMAGES]
         + [(kind, name) for kind in ("unit", "sweep_dev_unit") for name in UNIT_EDITS]
         + [(kind, "truncate") for kind in REWRITTEN])


def run(spec_file, runs):
    return CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)])


@pytest.fixture(scope="module")
def undamaged(tmp_path_factory, model_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in every test (conftest.py), so recomputed sums are bit-identical
    folder = tmp_path_factory.mktemp("faults")
    spec_file = spec_folder(folder, model_dir, SPEC)
    result = run(spec_file, folder / "runs")
    assert result.exit_code == 0, result.output
    (run_dir,) = (folder / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["sweep"]["tasks"]["lm_loss"]["chosen"] == {"clas": CHOSEN}
    for relative in [*TRUSTED.values(), *REWRITTEN.values()]:  # (the lock's own case checks it is there)
        assert relative == TRUSTED["lock"] or (run_dir / relative).is_file(), relative
    yield spec_file, run_dir, snapshot(run_dir)
    torch.set_num_threads(threads)


# --- what "equal numbers" means --------------------------------------------------------------------------------

VOLATILE = {"created", "updated", "started", "seconds", "timing_s"}  # clocks, not results


def _numbers(value):
    """JSON without the clock fields."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def snapshot(run_dir) -> dict:
    """Every file of a run as comparable content: JSON and JSON lines parsed (clock fields dropped), tensors as
    arrays, text as text, figures as their PNG signature; the manifest and lock files are checked separately."""
    out = {}
    for path in sorted(run_dir.rglob("*")):
        relative = str(path.relative_to(run_dir))
        if not path.is_file() or relative in ("manifest.json", ".lock"):
            continue
        if path.suffix == ".json":
            out[relative] = _numbers(json.loads(path.read_text()))
        elif path.suffix == ".jsonl":
            out[relative] = [json.loads(line) for line in path.read_text().splitlines()]
        elif path.suffix == ".safetensors":
            out[relative] = {k: v.tolist() for k, v in load_file(path).items()}
        elif path.suffix == ".png":
            out[relative] = path.read_bytes()[:8]
        else:
            text = path.read_text()
            out[relative] = text.split("Analysis time:")[0] if relative == "summary.md" else text
    return out


def assert_equal_numbers(got, want, where=""):
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_equal_numbers(got[key], want[key], f"{where}/{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: length differs"
        for index, (a, b) in enumerate(zip(got, want)):
            assert_equal_numbers(a, b, f"{where}[{index}]")
    elif isinstance(want, float) and not isinstance(got, bool) and isinstance(got, (int, float)):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


# --- the cases -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,damage", CASES, ids=[f"{kind}-{damage}" for kind, damage in CASES])
def test_damaged_file_is_verified_or_redone_and_the_rerun_equals_an_undamaged_run(undamaged, tmp_path, kind, damage):
    spec_file, original, expected = undamaged
    runs = tmp_path / "runs"
    run_dir = runs / original.name
    shutil.copytree(original, run_dir)
    target = run_dir / {**TRUSTED, **REWRITTEN}[kind]
    {**DAMAGES, **UNIT_EDITS}[damage](target)

    result = run(spec_file, runs)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert [path.name for path in runs.iterdir()] == [original.name]  # reused, not a second directory
    if kind in TRUSTED and kind not in ("lock", "metrics", "sweep_dev_metrics"):  # what a rerun reads: said
        assert "damaged" in result.output, result.output
    assert_equal_numbers(snapshot(run_dir), expected, kind)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"


def test_every_file_kind_a_run_writes_is_covered(undamaged):
    """A new kind of file in the run directory needs its fault-injection case here."""
    _, run_dir, _ = undamaged
    covered = {*TRUSTED.values(), *REWRITTEN.values()}
    kinds = {str(p.relative_to(run_dir)).split("/")[0] + ("/" if p.parent != run_dir else "")
             for p in run_dir.rglob("*") if p.is_file()}
    covered_kinds = {c.split("/")[0] + ("/" if "/" in c else "") for c in covered}
    assert kinds - covered_kinds == set(), kinds - covered_kinds


def test_every_json_file_of_a_run_is_strict_json(undamaged):
    """No `NaN`/`Infinity` tokens anywhere: any JSON parser reads every file."""
    _, run_dir, _ = undamaged

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    files = [*run_dir.rglob("*.json"), *run_dir.rglob("*.jsonl")]
    assert len(files) > 20
    for path in files:
        for line in ([path.read_text()] if path.suffix == ".json" else path.read_text().splitlines()):
            json.loads(line, parse_constant=refuse)
