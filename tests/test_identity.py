"""Run identity: the spec hash of every shipped spec is pinned, so a refactor that changes what a spec means
(a default, a field's name or shape) shows here before it silently starts new run directories."""

from pathlib import Path

import pytest

import clas_graph
from clas_graph.records import spec_hash

SPECS = Path(__file__).resolve().parent.parent / "specs"

# sha256 of the result-relevant part of each resolved spec (clas_graph.records.spec_hash). Change a value here
# only on purpose, when a change is meant to give existing specs new run directories, and say so in the note.
PINNED = {
    "base_gemma.yaml": "7254f3100a2d290e14055e5408fbc0440bcbaf48a28ea54e1851817fffb5d602",
    "clas_llama.yaml": "7f7af043ffa080e264a642e5d61d8f45f6b4a23abbfee889d8fcaf3dfeaefff5",
    "clas_plus_diffmean.yaml": "808b8e92ed8fb46466169896e3c9a827c62caebed57a87c5dd11f26c96b44bd7",
    "clas_qwen.yaml": "535cd861f6f3896a1ac11c04e054e7de398a0d857038bd4829ead9fde4665677",
    "demo.yaml": "9b30efaf460d4c9226c61184c37d6882ea567f4c0b19241b3462ed42e5e05c60",
    "int_mu_baseline.yaml": "f55cff7a13c04ac4622c6c5d13bb534fde718f165be9bc82b6519b5ef71b048e",
    "language_steering.yaml": "6a8b69e8043767f15d78f86e883174c4cf5fadc326e9f2e43b37996de0a3a885",
    "lape_vs_clas.yaml": "6fbd4a76f4318c8fddf702a48d126cf4a3bb06bb147f47e7b26a35d008b6c51e",
    "lens.yaml": "56ec9d3c863e553f6ef2e85d8d88baff374264f13b68103cfd6a7b070e619ede",
    "lm_eval_multilingual.yaml": "c813f43bb7a43551f5ef9d19f002cdcb2fa18210de50b1f3806a5b57a8e4aaac",
    "sweep_alpha_demo.yaml": "0a79ea20b9d40a386171f7fab1090c4d98b8caa996b95a3aa8ef0bc9a6f3dd07",
    "patching.yaml": "6bcdfcdbbdaf7e3f8df50e98fd1536973bb4648352233dd5b0d5926331cf6505",
}


def test_every_shipped_spec_is_pinned():
    assert sorted(p.name for p in SPECS.glob("*.yaml")) == sorted(PINNED)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_shipped_spec_hash_is_unchanged(name):
    assert spec_hash(clas_graph.load_spec(SPECS / name)) == PINNED[name]
