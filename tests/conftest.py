"""Shared fixtures. Tests never touch the network: the hub is forced offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# `from tiny import ...` / `from reference import ...` in every test module.
sys.path.insert(0, str(Path(__file__).parent))

from tiny import save_tiny, tiny_model, tiny_tokenizer  # noqa: E402


@pytest.fixture(autouse=True)
def _threads(request):
    """Tiny models run fastest on one thread; the embedded model (marked slow) gets all cores."""
    before = torch.get_num_threads()
    if request.node.get_closest_marker("slow") is None:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> path of a file in a fresh temp dir."""

    def _write(name: str, text: str):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return _write


# --- tiny models, built once per session ---------------------------------------------------------------------
# Tests only read these (a test that changes a model folder or a model's weights makes its own).


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """tiny_model_dir(arch="llama", layers=4) -> a folder with that tiny model and the tiny tokenizer saved in it
    (a model folder as users have them), saved once per session."""
    saved = {}

    def _model_dir(arch: str = "llama", layers: int = 4):
        if (arch, layers) not in saved:
            saved[arch, layers] = save_tiny(tmp_path_factory.mktemp(f"tiny-{arch}-{layers}"), arch, layers=layers)
        return saved[arch, layers]

    return _model_dir


@pytest.fixture(scope="module")
def model_dir(request, tiny_model_dir):
    """The saved tiny model of the test module's architecture: `MODEL_ARCH = "qwen2"` in the module (default llama)."""
    return tiny_model_dir(getattr(request.module, "MODEL_ARCH", "llama"))


@pytest.fixture(scope="session")
def tiny_lm():
    """tiny_lm(arch="llama") -> the nnsight model around the tiny model of that architecture (layers 4, seed 0),
    wrapped once per session; `tiny_lm(arch)._module` is its HF model."""
    from clas_graph.loading import wrap

    wrapped = {}

    def _lm(arch: str = "llama"):
        if arch not in wrapped:
            wrapped[arch] = wrap(tiny_model(arch), tiny_tokenizer())
        return wrapped[arch]

    return _lm


def _serve(model_dir):
    """(the mock NDIF server serving `model_dir`, the local nnsight model of that folder) while in the block."""
    pytest.importorskip("aiohttp")
    from ndif_mock.harness import start_mock_ndif

    from clas_graph.loading import load_model
    from clas_graph.spec.model_ref import ModelRef

    with start_mock_ndif(model_dir, repo_ids=[str(model_dir)]) as server:
        yield server, load_model(ModelRef(path=str(model_dir)))


@pytest.fixture(scope="module")
def mock_ndif(tiny_model_dir):
    """(the mock NDIF server serving the tiny Llama folder, the local nnsight model of that folder), per module."""
    yield from _serve(tiny_model_dir("llama"))


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma3"])
def mock_ndif_each(request, tiny_model_dir):
    """`mock_ndif` for each tiny architecture in turn (one server at a time), per module."""
    yield from _serve(tiny_model_dir(request.param))
