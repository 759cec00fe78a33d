"""Where clas_graph keeps files between runs (the converted embedded model, locks): one folder per user."""

from __future__ import annotations

import os
import pathlib


def cache_root() -> pathlib.Path:
    """Where converted models and locks live: ``$CLAS_GRAPH_CACHE``, else ``~/.cache/clas_graph``."""
    env = os.environ.get("CLAS_GRAPH_CACHE")
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "clas_graph"
