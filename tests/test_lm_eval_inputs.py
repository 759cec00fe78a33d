"""What an lm-eval task and a local file may do, checked before any model work: a task file of yours that runs
Python needs `trust_remote_code`; local files must hold the columns the task config reads; lm-eval refusals name
the spec's file and line; a data file linked out of the spec's folder is refused."""

from __future__ import annotations

import json

import pytest
import yaml
from tiny import spec_data
from typer.testing import CliRunner

from clas_graph.cli import app
from clas_graph.runners import run as run_module
from clas_graph.spec.base import is_new_field_at_default
from clas_graph.spec.load import validate_data

pytest.importorskip("lm_eval")

TASK_YAML = """\
task: my_task_de
dataset_path: json
dataset_kwargs:
  data_files:
    test: {rows}
test_split: test
output_type: multiple_choice
doc_to_text: !function utils.doc_to_text
doc_to_target: label
doc_to_choice: ["yes", "no"]
metric_list:
  - metric: acc
"""

UTILS = """\
import pathlib
pathlib.Path({marker!r}).write_text("ran")


def doc_to_text(doc):
    return doc["text"]
"""


@pytest.fixture
def no_weights(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the weights were loaded before the input was refused")

    monkeypatch.setattr(run_module, "load_model_for_spec", refuse)


@pytest.fixture
def folder(tmp_path, tiny_model_dir):
    (tmp_path / "model").symlink_to(tiny_model_dir("llama"))
    return tmp_path


def write_spec(folder, task: dict) -> str:
    path = folder / "spec.yaml"
    data = spec_data(["en", "de"], name="lme", model={"path": "model"}, tasks=[{"kind": "lm_eval", "limit": 2,
                                                                               "languages": ["de"], **task}])
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def run(folder, spec: str, *extra: str):
    return CliRunner().invoke(app, ["run", spec, "--runs-dir", str(folder / "runs"), *extra])


def code_task(folder):
    tasks = folder / "tasks"
    tasks.mkdir()
    rows = folder / "rows.jsonl"
    rows.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n')
    (tasks / "mytask.yaml").write_text(TASK_YAML.format(rows=rows))
    marker = folder / "ran"
    (tasks / "utils.py").write_text(UTILS.format(marker=str(marker)))
    return marker


def test_a_task_file_that_runs_python_needs_trust_remote_code(folder, no_weights):
    marker = code_task(folder)
    spec = write_spec(folder, {"tasks": {"de": "my_task_de"}, "include_path": "tasks"})
    result = run(folder, spec)
    assert result.exit_code == 2, (result.output, result.exception)
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "spec.yaml:" in line and "trust_remote_code" in line and "utils.doc_to_text" in line
    assert "mytask.yaml:8" in line and "Fix: set `trust_remote_code: true`" in line
    assert not marker.exists(), "the task's Python ran before the opt-in was checked"


def test_with_trust_remote_code_the_task_is_loaded(folder, no_weights):
    marker = code_task(folder)
    spec = write_spec(folder, {"tasks": {"de": "my_task_de"}, "include_path": "tasks", "trust_remote_code": True})
    result = run(folder, spec)
    assert "the weights were loaded" in str(result.exception), result.output  # every check passed
    assert marker.exists()


def test_the_lm_eval_command_needs_the_flag(folder):
    marker = code_task(folder)
    spec = write_spec(folder, {"tasks": {"de": "xnli_de"}})
    result = CliRunner().invoke(app, ["lm-eval", spec, "--tasks", "my_task_de", "--include-path",
                                      str(folder / "tasks"), "--runs-dir", str(folder / "runs")])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "--tasks" in result.output and "--trust-remote-code" in result.output and "Fix:" in result.output
    assert not marker.exists()


def test_trust_remote_code_at_its_default_keeps_the_spec_hash():
    task = {"kind": "lm_eval", "tasks": {"de": "xnli_de"}, "languages": ["de"]}
    spec = validate_data(spec_data(["en", "de"], tasks=[task]))
    assert is_new_field_at_default(spec.tasks[0], "trust_remote_code")


def xnli_rows(label_column: str = "label"):
    return "".join(json.dumps({"premise": f"Der Hund {i} bellt.", "hypothesis": "Ein Tier.", label_column: i % 3})
                   + "\n" for i in range(4))


@pytest.mark.parametrize("config, column", [
    ({}, "label"),  # xnli's doc_to_target: label
    ({"doc_to_target": "{{lbl}}", "doc_to_text": "{{premis}}"}, "premis"),  # a template's variable
])
def test_local_files_without_a_column_the_task_reads_are_refused(folder, no_weights, config, column):
    (folder / "de.jsonl").write_text(xnli_rows("lbl"))
    spec = write_spec(folder, {"tasks": {"de": "xnli_de"}, "data_files": {"de": "de.jsonl"}, "config": config})
    result = run(folder, spec)
    assert result.exit_code == 2, (result.output, result.exception)
    line = result.output.strip()
    assert "spec.yaml:" in line and "data_files.de" in line and f"reads column '{column}'" in line, line
    assert "Fix:" in line and "Traceback" not in line


def test_local_files_with_every_column_pass(folder, no_weights):
    (folder / "de.jsonl").write_text(xnli_rows())
    spec = write_spec(folder, {"tasks": {"de": "xnli_de"}, "data_files": {"de": "de.jsonl"}})
    result = run(folder, spec)
    assert "the weights were loaded" in str(result.exception), result.output


@pytest.mark.parametrize("task, field, message", [
    ({"tasks": {"de": "xnli"}}, "tasks", "is a group, not one task"),
    ({"tasks": {"de": "xnli_dee"}}, "tasks", "has no task 'xnli_dee'"),
    ({"tasks": {"de": "xnli_de"}, "metric": "bleu"}, "metric", "reports no metric 'bleu'"),
    ({"tasks": {"de": "xnli_de"}, "config": {"repeats": 3}}, "tasks", "repeats each request 3 times"),
], ids=["group", "unknown-task", "metric", "repeats"])
def test_lm_eval_refusals_name_the_file_line_and_field(folder, no_weights, task, field, message):
    (folder / "de.jsonl").write_text(xnli_rows())
    spec = write_spec(folder, {**task, "data_files": {"de": "de.jsonl"}})
    result = run(folder, spec)
    assert result.exit_code == 2, (result.output, result.exception)
    line = result.output.strip()
    assert line.startswith(f"error: {spec}:"), line
    assert f"tasks[0] (lm_eval), language 'de': {field}" in line and message in line and "Fix:" in line, line


def test_a_data_file_linked_out_of_the_spec_folder_is_refused(folder, tmp_path_factory, no_weights):
    secret = tmp_path_factory.mktemp("elsewhere") / "secret.jsonl"
    secret.write_text(xnli_rows())
    (folder / "de.jsonl").symlink_to(secret)
    spec = write_spec(folder, {"tasks": {"de": "xnli_de"}, "data_files": {"de": "de.jsonl"}})
    result = run(folder, spec)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "symbolic link" in result.output and str(secret) in result.output and "Fix:" in result.output
    (folder / "spec2.yaml").write_text((folder / "spec.yaml").read_text().replace("de.jsonl", str(secret)))
    result = run(folder, str(folder / "spec2.yaml"))  # the absolute path, written out, is allowed
    assert "the weights were loaded" in str(result.exception), result.output


def test_a_template_that_reaches_python_is_refused_before_any_work(folder, no_weights):
    (folder / "de.jsonl").write_text(xnli_rows())
    payload = "{{ cycler.__init__.__globals__.os.popen('touch " + str(folder / "ran") + "').read() }}"
    spec = write_spec(folder, {"tasks": {"de": "xnli_de"}, "data_files": {"de": "de.jsonl"},
                               "config": {"doc_to_text": payload}})
    result = run(folder, spec)
    assert result.exit_code == 2, (result.output, result.exception)
    line = result.output.strip()
    assert "spec.yaml:" in line and "config" in line and "doc_to_text" in line and "Fix:" in line, line
    assert not (folder / "ran").exists()


def test_lm_eval_templates_render_in_the_sandbox(tmp_path):
    """What the static check cannot see (a name built at render time) the sandbox refuses when rendering."""
    from jinja2.exceptions import SecurityError
    from lm_eval import utils

    from clas_graph.tasks.lm_eval import task_manager_for

    task_manager_for(None)
    assert utils.apply_template("{{premise}}, richtig? {{hypothesis|upper}}", {"premise": "a", "hypothesis": "b"}) \
        == "a, richtig? B"
    with pytest.raises(SecurityError):
        utils.apply_template("{{ (premise|attr('_' * 2 + 'class' + '_' * 2)).__mro__ }}", {"premise": "a"})


def test_dev_files_are_checked_for_the_columns_too(folder, no_weights):
    (folder / "de.jsonl").write_text(xnli_rows())
    (folder / "de_dev.jsonl").write_text(xnli_rows("lbl"))
    spec = write_spec(folder, {"tasks": {"de": "xnli_de"}, "data_files": {"de": "de.jsonl"},
                               "dev": {"data_files": {"de": "de_dev.jsonl"}, "limit": 2}})
    result = run(folder, spec)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "dev.data_files.de" in result.output and "reads column 'label'" in result.output, result.output
