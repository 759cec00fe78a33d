"""A corpus of malformed inputs, each refused before any weights load as one line: exit status 2, where it was
written (`file:line`, or the `--set` override), the field, and a `Fix:`.

Every variant is one override (or a file) on a valid spec over a tiny model folder. Spec-level variants go
through `clas-graph validate`; variants only the model's config, tokenizer or the task files can reveal go
through `clas-graph run` with the weight loader replaced by a failing stub, so a check that came after the
weights would fail the test. All in process (typer's CliRunner); a few true subprocesses check the exit status
and that no traceback reaches the user.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from clas_graph.cli import app
from clas_graph.runners import run as run_module

LANGS = ["en", "de", "fr"]
BASE = """\
schema_version: 1
name: corpus
model: {path: model}
languages: [en, de, fr]
anchor: {kind: fixed, language: en}
interventions:
  - kind: scale
    id: boost
    layers: [1]
    factor: 2.0
    neurons: {neurons: {1: [3, 4]}}
  - kind: patch
    id: pt
    layers: [2]
    source: {language: en}
  - kind: patch
    id: mean
    layers: [2]
    source: {languages: [de, fr], reduce: mean}
    rows: {languages: [de]}
tasks:
  - kind: next_token
    corpus: {kind: file, path: parallel.jsonl, limit: 4}
  - kind: lens
    prompts: {kind: corpus, corpus: {kind: file, path: parallel.jsonl, limit: 4}}
  - kind: retrieval
    layer: 2
    corpus: {kind: file, path: parallel.jsonl, limit: 4}
batch_size: 4
"""

SENTENCES = {
    "en": "The quick brown fox jumps over the lazy dog number {i} today.",
    "de": "Der schnelle braune Fuchs springt heute über den faulen Hund {i}.",
    "fr": "Le renard brun rapide saute par-dessus le chien paresseux {i}.",
}

# (id, overrides, the field the message must name) -- refused by `clas-graph validate`.
VALIDATE = [
    # patch
    ("patch-reduce", ["interventions.2.source.reduce=median"], "interventions[2].source.reduce"),
    ("patch-repeated-language", ["interventions.2.source.languages=[de, de, fr]"], "interventions[2].source.languages"),
    ("patch-first-zero", ["interventions.1.positions={first: 0}"], "interventions[1].positions.first"),
    ("patch-unknown-position-key", ["interventions.1.positions={frst: 2}"], "interventions[1].positions"),
    ("patch-position-word", ["interventions.1.positions=middle"], "interventions[1].positions"),
    ("patch-generated", ["interventions.1.positions=generated"], "interventions[1].positions"),
    ("patch-all-parallel", ["interventions.1.positions=all"], "interventions[1].positions"),
    ("patch-unpaired", ["interventions.1.positions={last: 2}", "interventions.1.source_positions=last"],
     "interventions[1].source_positions"),
    ("patch-unknown-language", ["interventions.1.source={language: xx}"], "interventions[1].source.language"),
    ("patch-bad-language-code", ["interventions.1.source={language: English}"], "interventions[1].source.language"),
    ("patch-source-mixed", ["interventions.1.source={language: de, languages: [fr]}"], "interventions[1].source"),
    ("patch-unknown-condition", ["interventions.1.source={condition: nope}"], "interventions[1].source.condition"),
    ("patch-coefficient-nan", ["interventions.1.coefficient=.nan"], "interventions[1].coefficient"),
    ("patch-site", ["interventions.1.site=mlp.up"], "interventions[1].site"),
    ("patch-negative-layer", ["interventions.1.layers=[-1]"], "interventions[1].layers"),
    ("patch-layer-word", ["interventions.1.layers=[a]"], "interventions[1].layers[0]"),
    ("patch-auto-typo", ["interventions.1.layers={auto: brdge}"], "interventions[1].layers.auto"),
    ("patch-duplicate-index", ["interventions.1.positions=[1, 1]", "interventions.1.source_positions=[1, 1]"],
     "interventions[1].positions"),
    # interventions
    ("intervention-kind", ["interventions.0.kind=scaled"], "interventions[0]"),
    ("intervention-unknown-key", ["interventions.0.factr=2"], "interventions[0].factr"),
    ("intervention-missing-factor", ["interventions.0={kind: scale, id: boost, layers: [1], neurons: {neurons: "
                                     "{1: [3]}}}"], "interventions[0].factor"),
    ("intervention-bad-id", ["interventions.0.id=two words"], "interventions[0].id"),
    ("intervention-rows", ["interventions.0.rows={languages: [qq]}"], "interventions[0].rows.languages[0]"),
    ("intervention-factor-text", ["interventions.0.factor=big"], "interventions[0].factor"),
    ("intervention-neuron-word", ["interventions.0.neurons={neurons: {1: [x]}}"], "interventions[0].neurons"),
    ("intervention-steps", ["interventions.0.steps=sometimes"], "interventions[0].steps"),
    # conditions
    ("condition-unknown-intervention", ["conditions={c: [nope]}"], "conditions"),
    ("condition-base-name", ["conditions={base: [boost]}"], "conditions"),
    # tasks
    ("task-kind", ["tasks.0.kind=next_tokens"], "tasks[0]"),
    ("task-unknown-key", ["tasks.0.limt=3"], "tasks[0].limt"),
    ("task-languages-repeat", ["tasks.0.languages=[en, de, de]"], "tasks[0].languages"),
    ("task-bad-language-code", ["tasks.0.languages=[en, de, fr, Q]"], "tasks[0].languages"),
    ("lens-position-positive", ["tasks.1.position=3"], "tasks[1].position"),
    ("lens-layer-negative", ["tasks.1.layers=[-2]"], "tasks[1].layers"),
    ("retrieval-layer-word", ["tasks.2.layer=top"], "tasks[2].layer"),
    # corpora
    ("corpus-kind", ["tasks.0.corpus.kind=bibel"], "tasks[0].corpus"),
    ("corpus-limit-zero", ["tasks.0.corpus.limit=0"], "tasks[0].corpus.limit"),
    ("corpus-unknown-key", ["tasks.0.corpus.id_col=id"], "tasks[0].corpus.id_col"),
    ("corpus-offset-negative", ["tasks.0.corpus.offset=-1"], "tasks[0].corpus.offset"),
    # top level, model, anchor, selections (statistics)
    ("top-unknown-key", ["languags=[en]"], "languags"),
    ("top-schema-version", ["schema_version=7"], "schema_version"),
    ("top-batch-size", ["batch_size=0"], "batch_size"),
    ("top-languages-repeat", ["languages=[en, en, de, fr]"], "languages"),
    ("model-two-sources", ["model.id=org/name"], "model"),
    ("model-dtype", ["model.dtype=float8"], "model.dtype"),
    ("anchor-language", ["anchor.language=xx"], "anchor.language"),
    ("selection-unknown-stats", ["interventions.0.neurons={from_stats: shared_things}"], "interventions[0].neurons"),
    ("selection-stats-without-stats", ["interventions.0.neurons={from_stats: lape}"], "interventions[0].neurons"),
    ("stats-threshold", ["stats={corpus: {kind: file, path: parallel.jsonl}, threshold: {kind: quantile, q: 2}}"],
     "stats.threshold.q"),
    # sweeps
    ("sweep-unknown-field", ["sweep={boost.factr: [1, 2]}"], "sweep"),
    ("sweep-unknown-intervention", ["sweep={nope.factor: [1, 2]}"], "sweep"),
    ("sweep-empty-values", ["sweep={boost.factor: []}"], "sweep"),
    ("sweep-bad-value", ["sweep={boost.factor: [1, big]}"], "sweep"),
    # overrides
    ("override-no-equals", ["languages"], "languages"),
    ("override-empty-key", ["tasks..limit=3"], "tasks..limit"),
    ("override-index", ["tasks.9.limit=3"], "tasks"),
    ("override-into-scalar", ["name.first=x"], "name"),
    ("override-include", ["include=other.yaml"], "include"),
    ("override-bad-yaml", ["languages=[en, de"], "languages"),
    # limits
    ("limit-override-depth", ["name=" + "[" * 200 + "]" * 200], "name"),
    ("limit-override-aliases", ["name={a: &a [x, x, x, x, x, x, x, x, x, x], b: &b [*a, *a, *a, *a, *a, *a, *a, *a, "
                                "*a, *a], c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b], d: &d [*c, *c, *c, *c, *c, "
                                "*c, *c, *c, *c, *c], e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}"], "name"),
]

# (id, overrides, field) -- only the model's config/tokenizer or the task files reveal these: refused by the
# checks of `clas-graph run` before any weights load.
PREFLIGHT = [
    ("patch-layer-beyond-model", ["interventions.1.layers=[9]"], "interventions[1].layers[0]"),
    ("scale-layer-beyond-model", ["interventions.0.layers=[4]"], "interventions[0].layers[0]"),
    ("scale-neuron-beyond-model", ["interventions.0.neurons={neurons: {1: [100000]}}"], "interventions[0].neurons"),
    ("patch-position-beyond-text", ["interventions.1.positions=[60]"], "interventions[1].positions"),
    ("patch-first-beyond-text", ["interventions.1.positions={first: 80}"], "interventions[1].positions"),
    ("patch-source-position-beyond", ["interventions.1.positions=[0]", "interventions.1.source_positions=[70]"],
     "interventions[1].source_positions"),
    ("lens-position-beyond-prompt", ["tasks.1.position=-500"], "tasks[1]"),
    ("lens-layer-beyond-model", ["tasks.1.layers=[0, 9]"], "tasks[1]"),
    ("retrieval-layer-beyond-model", ["tasks.2.layer=9"], "tasks[2]"),
    ("corpus-file-missing", ["tasks.0.corpus.path=nothing.jsonl"], "tasks[0]"),
    ("corpus-id-column-missing", ["tasks.0.corpus.id_column=uid"], "tasks[0]"),
    ("corpus-link-outside", ["tasks.0.corpus.path=outside.jsonl"], "tasks[0]"),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_model_dir):
    path = tmp_path_factory.mktemp("malformed")
    (path / "model").symlink_to(tiny_model_dir("llama", layers=4))
    rows = [{"id": f"s{i}", **{lang: text.format(i=i) for lang, text in SENTENCES.items()}} for i in range(6)]
    (path / "parallel.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.jsonl"
    outside.write_text((path / "parallel.jsonl").read_text())
    (path / "outside.jsonl").symlink_to(outside)
    (path / "spec.yaml").write_text(BASE)
    return path


@pytest.fixture
def no_weights(monkeypatch):
    """Loading the weights fails the test: every refusal here must come before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("the weights were loaded before the input was refused")

    monkeypatch.setattr(run_module, "load_model_for_spec", refuse)


ONE_LINE = re.compile(r"^(?:✗ |error: )(?P<where>--set [^:]+|\S+:\d+)(?::| \()")


def assert_refused(result, field: str, overrides: list[str]) -> str:
    text = result.output.strip()
    assert result.exit_code == 2, (result.exit_code, text, result.exception)
    assert "Traceback" not in text
    head = text.splitlines()[0]
    match = ONE_LINE.match(head)
    assert match, f"no file:line or --set at the start: {head}"
    if match.group("where").startswith("--set"):  # the override as written (a long one cut with "...")
        written = match.group("where").removesuffix("...")
        assert any(f"--set {o}".startswith(written) for o in overrides), head
    assert field in head, f"field {field!r} not named: {head}"
    assert "Fix:" in text.split("\n  (")[0], f"no Fix: {head}"
    return head


def test_the_base_spec_is_valid_and_passes_the_checks(folder, no_weights, tmp_path):
    result = CliRunner().invoke(app, ["validate", str(folder / "spec.yaml")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["run", str(folder / "spec.yaml"), "--runs-dir", str(tmp_path / "runs")])
    assert "the weights were loaded" in str(result.exception), result.output  # every check passed


@pytest.mark.parametrize("overrides, field", [pytest.param(o, f, id=i) for i, o, f in VALIDATE])
def test_validate_refuses_in_one_line(folder, overrides, field):
    args = ["validate", str(folder / "spec.yaml")]
    for item in overrides:
        args += ["--set", item]
    started = time.perf_counter()
    result = CliRunner().invoke(app, args)
    assert time.perf_counter() - started < 5
    head = assert_refused(result, field, overrides)
    assert "did you mean" not in head or not re.search(r"unknown key '(\w+)'; did you mean '\1'", head)


@pytest.mark.parametrize("overrides, field", [pytest.param(o, f, id=i) for i, o, f in PREFLIGHT])
def test_run_refuses_before_the_weights_load(folder, no_weights, tmp_path, overrides, field):
    args = ["run", str(folder / "spec.yaml"), "--runs-dir", str(tmp_path / "runs")]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert_refused(result, field, overrides)
    assert not (tmp_path / "runs").exists(), "no run directory before the checks pass"


@pytest.mark.parametrize("overrides, field", [
    (["interventions.1.positions=[60]"], "interventions[1].positions"),
    (["tasks.1.position=-500"], "tasks[1]"),
], ids=["patch-position", "lens-position"])
def test_positions_are_refused_with_the_weights_file_absent(folder, tmp_path, overrides, field):
    """The position checks read the tokenizer and the config only: a model folder without its weights file is
    enough to refuse a bad patch or lens position, in one line."""
    weightless = tmp_path / "spec"
    weightless.mkdir()
    model = weightless / "model"
    shutil.copytree(folder / "model", model, symlinks=False)
    for weights in model.glob("*.safetensors"):
        weights.unlink()
    assert not list(model.glob("*.safetensors")) and (model / "config.json").is_file()
    for name in ("spec.yaml", "parallel.jsonl"):
        shutil.copy(folder / name, weightless / name)
    args = ["run", str(weightless / "spec.yaml"), "--runs-dir", str(tmp_path / "runs")]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert_refused(result, field, overrides)
    assert result.output.strip().count("\n") <= 1, result.output  # the error and its fix, no traceback
    assert not (tmp_path / "runs").exists()


def test_a_bad_position_is_refused_before_statistics_are_computed(folder, no_weights, tmp_path, monkeypatch):
    """A spec whose CLAS condition needs statistics not computed yet: the patch condition, which needs none, is
    still compiled and its positions checked before the statistics (and the weights) are touched."""
    from clas_graph.runners import stats as stats_module

    def no_statistics(*args, **kwargs):
        raise AssertionError("statistics were computed before the input was refused")

    monkeypatch.setattr(stats_module, "ensure_stats", no_statistics)
    overrides = ["stats={corpus: {kind: file, path: parallel.jsonl, limit: 4}, bridge: {k: 1, min_layer: 1}}",
                 "interventions.0={kind: clas, id: boost, layers: {auto: bridge}, "
                 "shared: {from_stats: partial_shared}}",
                 "interventions.1.positions=[60]"]
    args = ["run", str(folder / "spec.yaml"), "--runs-dir", str(tmp_path / "runs")]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert_refused(result, "interventions[1].positions", overrides)


def test_union_errors_name_the_alternative_meant_first(folder):
    """`reduce: median` on a `{languages: ...}` source is about `reduce`, not a missing `language` key."""
    result = CliRunner().invoke(app, ["validate", str(folder / "spec.yaml"), "--set",
                                      "interventions.2.source.reduce=median"])
    assert result.output.count("\n") == 1, result.output  # one problem, no other alternatives' complaints
    assert "interventions[2].source.reduce: Input should be 'mean'" in result.output
    assert "required field is missing" not in result.output


# --- files beyond the loading limits: each one line, fast, never expanded -----------------------------------

def billion_laughs() -> str:
    lines = ["schema_version: 1", "name: laughs", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


LIMIT_FILES = [
    ("laughs.yaml", billion_laughs, "laughs.yaml:", "expand to"),
    ("deep.yaml", lambda: "schema_version: 1\nname: x\nx: " + "[" * 100_000 + "]" * 100_000 + "\n",
     "deep.yaml:3", "nest deeper than"),
    ("deep.json", lambda: '{"schema_version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "deep.json:1",
     "nest deeper than"),
    ("big.yaml", lambda: "schema_version: 1\n# " + "x" * (3 * 1024 * 1024) + "\n", "big.yaml", "larger than"),
    ("loop.yaml", lambda: "schema_version: 1\nname: x\na: &a [1, *a]\n", "loop.yaml:3", "contains it"),
    ("digits.yaml", lambda: "schema_version: 1\nname: " + "1" * 5000 + "\n", "digits.yaml", "digits"),
]


@pytest.mark.parametrize("name, text, where, what", LIMIT_FILES, ids=[case[0] for case in LIMIT_FILES])
def test_files_beyond_the_limits_are_refused_fast(tmp_path, name, text, where, what):
    path = tmp_path / name
    path.write_text(text())
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["validate", str(path)])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert where in result.output and what in result.output and "Fix:" in result.output, result.output
    assert result.output.count("\n") == 1, result.output
    assert elapsed < 1.0, f"{name} took {elapsed:.2f} s"


def test_included_files_are_bounded_too(tmp_path):
    (tmp_path / "base.yaml").write_text(billion_laughs().replace("name: laughs\n", ""))
    (tmp_path / "spec.yaml").write_text("include: base.yaml\nschema_version: 1\nname: x\n")
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 2 and "base.yaml:" in result.output and "expand to" in result.output, result.output


def test_an_include_tree_is_bounded(tmp_path):
    """Each file includes the next one twice: 2^20 reads without a bound on the files read."""
    for level in range(20):
        (tmp_path / f"f{level}.yaml").write_text(f"include: [f{level + 1}.yaml, f{level + 1}.yaml]\n")
    (tmp_path / "f20.yaml").write_text("schema_version: 1\n")
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "f0.yaml")])
    assert result.exit_code == 2 and "through `include:`" in result.output and "Fix:" in result.output, result.output
    assert time.perf_counter() - started < 2


# --- true subprocesses: the exit status and no traceback ----------------------------------------------------

@pytest.mark.parametrize("args", [
    ["validate", "{folder}/laughs.yaml"],
    ["validate", "{folder}/spec.yaml", "--set", "interventions.2.source.reduce=median"],
    ["run", "{folder}/spec.yaml", "--runs-dir", "{folder}/no-runs", "--set", "tasks.1.position=-500"],
], ids=["limits", "union", "lens-position"])
def test_the_command_exits_2_without_a_traceback(folder, args):
    (folder / "laughs.yaml").write_text(billion_laughs())
    command = [sys.executable, "-m", "clas_graph.cli", *[arg.format(folder=folder) for arg in args]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr + done.stdout
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 3, done.stderr


def test_a_prompt_template_reads_fields_not_their_attributes():
    """`str.format` would reach `{premise.__class__.__mro__}`; a prompt may only name fields."""
    from clas_graph.data.templates import render
    from clas_graph.errors import DataError

    with pytest.raises(DataError, match=r"placeholder \{premise.__class__\} reads an attribute.*Fix: write the plain"):
        render("{premise.__class__}", premise="x", hypothesis="y")
    assert render("{premise:>3}|{hypothesis}", premise="x", hypothesis="y") == "  x|y"


@pytest.mark.parametrize("override", ["interventions.1.positions=[60]", "tasks.1.position=-500",
                                      "interventions.1.layers=[9]"])
def test_refusals_need_no_weights_file(tmp_path, tiny_model_dir, folder, override):
    """A model folder without its weights: the checks read only the config and tokenizer (and build a weightless
    model), so the refusal is the same one line."""
    model = tmp_path / "model"
    model.mkdir()
    for file in tiny_model_dir("llama", layers=4).iterdir():
        if file.suffix != ".safetensors":
            shutil.copy(file, model / file.name)
    assert not list(model.glob("*.safetensors"))
    for name in ("spec.yaml", "parallel.jsonl"):
        shutil.copy(folder / name, tmp_path / name)
    result = CliRunner().invoke(app, ["run", str(tmp_path / "spec.yaml"), "--runs-dir", str(tmp_path / "runs"),
                                      "--set", override])
    assert_refused(result, override.split("=")[0].split(".")[0], [override])
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_loaded_spec_knows_where_each_field_was_written(folder):
    from clas_graph.spec.load import load_spec

    spec = load_spec(folder / "spec.yaml", ["tasks.2.layer=1"])
    assert spec.place("interventions[1].layers[0]") == f"{folder / 'spec.yaml'}:14"
    assert spec.place("interventions[1].positions") == f"{folder / 'spec.yaml'}:12"  # a default: its item's line
    assert spec.place("tasks[2].layer") == "--set tasks.2.layer=1"
    assert spec.place("stats") == spec.source and spec.place("nothing.at[3]") == spec.source
