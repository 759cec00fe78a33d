"""One writer per run directory and statistics cache: two processes at once do the work once, a second one
waits (saying who holds the lock) or refuses in one line, and a lock left by a SIGKILLed process is taken over,
with the killed run recorded as interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tiny import CLAS_FROM_STATS_YAML, spec_folder, spec_yaml
from typer.testing import CliRunner

from clas_graph.cli import app

MODEL_ARCH = "gemma3"  # the `model_dir` fixture (conftest.py)
REPO = Path(__file__).resolve().parents[1]
SPEC = spec_yaml("tiny-locks", ["en", "de", "fr"], """\
stats:
  corpus: {kind: bible, limit: 4, seed: 2}
  bridge: {k: 2, exclude_last: 1, min_layer: 1}
interventions:
""", CLAS_FROM_STATS_YAML, """\
tasks:
  - kind: lm_loss
    corpus: {kind: bible, limit: 2, offset: 10, seed: 0}
""")

# A process that holds the spec's run directory as a running command does (lock held, manifest `running`),
# says "ready", then sleeps until it is killed or its time is up.
HOLDER = """
import sys, time
from pathlib import Path
from clas_graph.records import RunDir
from clas_graph.spec.load import load_spec
spec = load_spec(sys.argv[1])
run = RunDir.for_spec(spec, Path(sys.argv[2]))
run.start(spec, backend={}, seeds={})
print("ready", flush=True)
time.sleep(float(sys.argv[3]))
run.release()
"""


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}
    env.pop("CLAS_GRAPH_LOCK_WAIT", None)
    return {**env, **extra}


def _holder(spec_file, runs, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(spec_file), str(runs), str(seconds)],
                               stdout=subprocess.PIPE, text=True, env=_env())
    assert process.stdout.readline().strip() == "ready"
    return process


def test_two_stats_commands_at_once_compute_once_into_one_directory(tmp_path, model_dir):
    spec_file = spec_folder(tmp_path, model_dir, SPEC)
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "clas_graph.cli", "stats", str(spec_file), "--runs-dir", str(runs)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    outputs = [process.communicate(timeout=300)[0] for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert not any("Traceback" in output for output in outputs), outputs
    (run_dir,) = runs.iterdir()  # one directory, not two
    assert (run_dir / "stats.safetensors").is_file()
    # one computed the statistics; the other waited for the lock (saying so) and reused them
    assert sum("reusing the artifact" in output for output in outputs) == 1, outputs
    assert sum("waiting:" in output for output in outputs) == 1, outputs
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"


def test_a_second_command_refuses_in_one_line_naming_the_holder(tmp_path, model_dir, monkeypatch):
    spec_file = spec_folder(tmp_path, model_dir, SPEC)
    runs = tmp_path / "runs"
    holder = _holder(spec_file, runs, 60)
    try:
        monkeypatch.setenv("CLAS_GRAPH_LOCK_WAIT", "0")
        result = CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert f"pid {holder.pid}" in lines[0] and "is in use by" in lines[0] and "Fix:" in lines[0]
    (run_dir,) = runs.iterdir()
    assert not (run_dir / "metrics.json").exists()  # nothing was done twice


def test_a_second_command_waits_for_the_holder_then_runs(tmp_path, model_dir):
    spec_file = spec_folder(tmp_path, model_dir, SPEC)
    runs = tmp_path / "runs"
    holder = _holder(spec_file, runs, 4)
    start = time.monotonic()
    result = CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)])
    holder.wait()
    assert result.exit_code == 0, result.output
    assert "waiting:" in result.output and f"pid {holder.pid}" in result.output
    assert time.monotonic() - start >= 2  # it did wait for the holder's release
    (run_dir,) = runs.iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"


def test_a_lock_left_by_a_killed_process_is_taken_over_and_the_killed_run_recorded(tmp_path, model_dir,
                                                                                   monkeypatch):
    spec_file = spec_folder(tmp_path, model_dir, SPEC)
    runs = tmp_path / "runs"
    holder = _holder(spec_file, runs, 60)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    (run_dir,) = runs.iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"  # what SIGKILL leaves
    monkeypatch.setenv("CLAS_GRAPH_LOCK_WAIT", "0")  # a lock still held would refuse at once
    result = CliRunner().invoke(app, ["run", str(spec_file), "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    assert "did not finish" in result.output and "interrupted" in result.output
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["interrupted_runs"]) == 1


def test_two_specs_with_the_same_statistics_compute_them_once(tmp_path, model_dir):
    """The statistics cache has its own lock: another spec (another run directory) with the same statistics waits
    for them and reuses them."""
    first_spec = spec_folder(tmp_path, model_dir, SPEC)
    (tmp_path / "other").mkdir()
    second_spec = spec_folder(tmp_path / "other", model_dir, SPEC.replace("limit: 2, offset: 10", "limit: 1, "
                                                                                                    "offset: 12"))
    runs = tmp_path / "runs"
    processes = [subprocess.Popen([sys.executable, "-m", "clas_graph.cli", "stats", str(spec), "--runs-dir",
                                   str(runs)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=_env()) for spec in (first_spec, second_spec)]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert len(list(runs.iterdir())) == 2  # two specs, two run directories
    assert sum("reusing the artifact" in output for output in outputs) == 1, outputs


HOLD_BARE = """
import sys, time
from pathlib import Path
from clas_graph.records.locks import acquire
lock = acquire(Path(sys.argv[1]), "test")  # held while referenced
print("ready", flush=True)
time.sleep(60)
"""


def test_a_bounded_wait_refuses_after_it_and_an_unreadable_holder_file_is_not_an_error(tmp_path, monkeypatch):
    from clas_graph.errors import BusyError
    from clas_graph.records.locks import acquire, holder_path

    lock = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_BARE, str(lock)], stdout=subprocess.PIPE, text=True,
                              env=_env())
    try:
        assert holder.stdout.readline().strip() == "ready"
        holder_path(lock).write_bytes(b"\xff garbage")
        monkeypatch.setenv("CLAS_GRAPH_LOCK_WAIT", "1.5")
        start = time.monotonic()
        try:
            acquire(lock, "the test folder")
            raise AssertionError("the lock was taken while another process held it")
        except BusyError as refused:
            message = str(refused)
        assert 1.5 <= time.monotonic() - start < 10
        assert "still in use by another process after 1.5 s" in message and "\n" not in message
        monkeypatch.setenv("CLAS_GRAPH_LOCK_WAIT", "soon")
        try:
            acquire(lock, "the test folder")
            raise AssertionError("a bad CLAS_GRAPH_LOCK_WAIT was accepted")
        except BusyError as refused:
            assert "CLAS_GRAPH_LOCK_WAIT='soon' is not a number" in str(refused)
    finally:
        holder.kill()
        holder.wait()
