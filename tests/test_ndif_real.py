"""Opt-in: the same plans on the real NDIF service. Skipped unless NDIF_API_KEY is set.

    NDIF_API_KEY=... NDIF_TEST_MODEL=meta-llama/Llama-3.1-8B .venv/bin/python -m pytest tests/test_ndif_real.py -v

Needs network access to the Hugging Face hub (config and tokenizer only) and to NDIF.
"""

from __future__ import annotations

import os

import pytest
import torch

import clas_graph
from clas_graph.execution.context import use
from clas_graph.execution.ndif import NdifExecutor, preflight
from clas_graph.loading import load_remote_model
from clas_graph.spec.load import validate_data
from clas_graph.spec.model_ref import ModelRef

pytestmark = pytest.mark.skipif(not os.environ.get("NDIF_API_KEY"), reason="real NDIF tests need NDIF_API_KEY")
MODEL = os.environ.get("NDIF_TEST_MODEL", "meta-llama/Llama-3.1-8B")
TEXTS = ["The capital of France is", "Die Hauptstadt von Frankreich ist"]
ROWS = ["en", "de"]


@pytest.fixture(scope="module")
def remote():
    execution = NdifExecutor(host=True, retries=2, backoff_s=5.0)
    preflight(execution)
    # The hub is needed for config and tokenizer; the test process may have inherited HF_HUB_OFFLINE=1.
    os.environ.pop("HF_HUB_OFFLINE", None)
    os.environ.pop("TRANSFORMERS_OFFLINE", None)
    return execution, load_remote_model(ModelRef(id=MODEL, dtype="bfloat16"))


def test_clas_on_ndif_leaves_the_anchor_row_and_moves_the_other(remote):
    execution, model = remote
    spec = validate_data({"schema_version": 1, "name": "ndif", "model": {"id": MODEL}, "languages": ["en", "de"],
                          "interventions": [{"kind": "clas", "layers": [24, 25], "alpha": 1.0, "beta": 0.6,
                                             "shared": {"neurons": {24: list(range(0, 4000)),
                                                                    25: list(range(0, 4000))}},
                                             "specific": {"neurons": {24: list(range(4000, 6000))}}}]})
    plan = clas_graph.compile_plan(spec, model)
    with use(execution):
        base = clas_graph.forward(model, None, TEXTS, ROWS)
        steered = clas_graph.forward(model, plan, TEXTS, ROWS)
        text = clas_graph.generate(model, plan, TEXTS, ROWS, max_new_tokens=4)
    torch.testing.assert_close(steered[0], base[0], atol=1e-2, rtol=0)  # bf16 on the server
    assert (steered[1] - base[1]).abs().max() > 1e-2
    assert len(text) == 2 and execution.job_ids
