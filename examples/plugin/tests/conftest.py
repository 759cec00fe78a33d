"""The example plugin's tests: the plugin folder is importable (as it would be once installed), and they use
clas_graph's own test helpers (tiny models, the mock NDIF server) from the project's tests folder."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PLUGIN = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PLUGIN))
sys.path.insert(0, str(PLUGIN.parent.parent / "tests"))

from tiny import save_tiny  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """tiny_model_dir(arch) -> a folder with clas_graph's tiny test model of that architecture and its tokenizer."""
    saved = {}

    def _model_dir(arch: str = "llama"):
        if arch not in saved:
            saved[arch] = save_tiny(tmp_path_factory.mktemp(f"tiny-{arch}"), arch)
        return saved[arch]

    return _model_dir
