"""Compiler and emitter: plan contents, execution order, mask sources, golden plan and trace source."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny import spec_data
from transformers import Gemma3TextConfig, LlamaConfig

from clas_graph import CompileError, compile_plan
from clas_graph.compile.emit import emit, emit_source
from clas_graph.interventions.clas import clas_scale
from clas_graph.spec.load import validate_data

GOLDEN = Path(__file__).parent / "golden"


def config(layers=4, intermediate=64):
    return LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=intermediate, num_hidden_layers=layers,
                       num_attention_heads=2, num_key_value_heads=1)


def spec_with(**clas):
    iv = {"kind": "clas", "id": "clas", "layers": [1, 2], **clas}
    return validate_data({**spec_data(["en", "de", "fr"]),
                          "interventions": [iv]})


def test_clas_scale_is_the_papers_formula():
    shared = torch.tensor([1, 0, 1, 0], dtype=torch.bool)
    specific = torch.tensor([0, 1, 0, 0], dtype=torch.bool)
    beta, gamma, alpha = 0.4, 0.2, -0.7
    h = torch.tensor([2.0, -3.0, 0.5, 7.0], dtype=torch.float64)
    h1 = h * (1 + beta * shared.double())
    h2 = h1 * (1 - gamma * specific.double())
    want = (1 - alpha) * h + alpha * h2
    got = h * clas_scale(shared, specific, beta=beta, gamma=gamma, alpha=alpha).double()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    assert clas_scale(shared, specific, beta=beta, gamma=gamma, alpha=0.0).eq(1.0).all()


def test_ops_follow_execution_order_whatever_the_spec_order():
    plan = compile_plan(spec_with(layers=[3, 0, 2], shared={"neurons": {3: [1], 0: [2]}}), config())
    assert [op.layer for op in plan.ops] == [0, 2, 3]
    assert plan.ops[0].params["shared_neurons"] == 1 and plan.ops[1].params["shared_neurons"] == 0


def test_rows_default_to_non_anchor():
    plan = compile_plan(spec_with(), config())
    assert plan.row_inputs(["en", "de", "fr", "en"])["except:en"].tolist() == [False, True, True, False]


def test_golden_plan_and_trace_source():
    spec = spec_with(shared={"neurons": {1: [0, 5, 9], 2: [3]}}, specific={"neurons": {1: [7]}}, beta=0.6, gamma=0.1,
                     alpha=0.5, rows={"languages": ["de"]})
    plan = compile_plan(spec, config())
    got_plan = json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n"
    got_source = emit_source(plan)
    if os.environ.get("UPDATE_GOLDEN"):  # UPDATE_GOLDEN=1 pytest ... after an intended change; review the diff
        GOLDEN.mkdir(exist_ok=True)
        (GOLDEN / "plan_llama_tiny.json").write_text(got_plan)
        (GOLDEN / "trace_llama_tiny.py.txt").write_text(got_source)
    assert got_plan == (GOLDEN / "plan_llama_tiny.json").read_text()
    assert got_source == (GOLDEN / "trace_llama_tiny.py.txt").read_text()


def test_generated_source_needs_only_torch():
    plan = compile_plan(spec_with(shared={"neurons": {1: [0]}}), config())
    source = emit_source(plan)
    assert "clas_graph" not in source and "clas-graph" not in source
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["import torch"]
    trace = emit(plan)
    assert set(trace.forward.__globals__) >= {"torch"}
    assert not any("clas_graph" in str(value) for value in trace.forward.__globals__.values() if value is not torch)
    assert "clas_graph" not in trace.filename


def test_site_paths_come_from_the_architecture_table():
    gemma = Gemma3TextConfig(vocab_size=100, hidden_size=16, intermediate_size=64, num_hidden_layers=4,
                             num_attention_heads=2, num_key_value_heads=1, head_dim=8)
    source = emit_source(compile_plan(spec_with(), gemma))
    assert "mlp = model.model.layers[1].mlp" in source
    assert "a = mlp.act_fn.output" in source and "h = a * mlp.up_proj.output" in source
    assert "mlp.down_proj.input = h" in source


def test_unsupported_architecture_names_the_supported_ones():
    from transformers import GPT2Config

    with pytest.raises(CompileError) as info:
        compile_plan(spec_with(), GPT2Config())
    assert "gpt2" in str(info.value) and "llama" in str(info.value) and "qwen2" in str(info.value)


def test_overlap_allowed_when_the_spec_says_so():
    plan = compile_plan(spec_with(shared={"neurons": {1: [4]}}, specific={"neurons": {1: [4]}}, require_disjoint=False),
                        config())
    assert plan.ops[0].scale[4].item() == pytest.approx(1.4 * 0.8)


def test_mask_for_a_layer_not_in_layers_is_an_error():
    with pytest.raises(CompileError, match=r"shared.neurons.3: the mask lists neurons for layer 3"):
        compile_plan(spec_with(shared={"neurons": {3: [1]}}), config())


def test_condition_selection():
    spec = validate_data({**spec_data(["en", "de"]),
                          "interventions": [{"kind": "clas", "id": "a", "layers": [1]},
                                            {"kind": "clas", "id": "b", "layers": [2]}]})
    with pytest.raises(CompileError, match="2 conditions"):
        compile_plan(spec, config())
    assert [op.layer for op in compile_plan(spec, config(), "b").ops] == [2]
    assert compile_plan(spec, config(), "base").ops == ()
    with pytest.raises(CompileError, match="unknown condition 'c'"):
        compile_plan(spec, config(), "c")


# --- masks from safetensors files -------------------------------------------------------------


def write_mask(path: Path, tensor: torch.Tensor, key="shared") -> str:
    save_file({key: tensor}, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_spec(tmp_path, digest, key="shared"):
    spec = spec_with(shared={"file": "mask.safetensors", "key": key, "sha256": digest})
    spec._source = str(tmp_path / "spec.yaml")  # relative paths resolve against the spec file
    return spec


def test_file_mask_is_read_relative_to_the_spec(tmp_path):
    mask = torch.zeros(4, 64, dtype=torch.bool)
    mask[1, [3, 4]] = True
    mask[2, 10] = True
    digest = write_mask(tmp_path / "mask.safetensors", mask)
    plan = compile_plan(file_spec(tmp_path, digest), config())
    assert plan.ops[0].scale.ne(1.0).nonzero().flatten().tolist() == [3, 4]
    assert plan.ops[1].scale.ne(1.0).nonzero().flatten().tolist() == [10]


def test_file_mask_with_wrong_sha256_names_the_actual_hash(tmp_path):
    digest = write_mask(tmp_path / "mask.safetensors", torch.zeros(4, 64))
    with pytest.raises(CompileError) as info:
        compile_plan(file_spec(tmp_path, "0" * 64), config())
    assert f"set `sha256: {digest}`" in str(info.value) and "shared.sha256" in str(info.value)


@pytest.mark.parametrize("tensor,key,message", [
    (torch.zeros(3, 64), "shared", "has shape [3, 64], but the model needs"),
    (torch.full((4, 64), 0.5), "shared", "only 0 and 1"),
    (torch.zeros(4, 64), "other", "tensor 'shared' is not in"),
])
def test_bad_file_masks(tmp_path, tensor, key, message):
    digest = write_mask(tmp_path / "mask.safetensors", tensor, key=key)
    with pytest.raises(CompileError, match=re.escape(message)):
        compile_plan(file_spec(tmp_path, digest), config())


def test_missing_mask_file(tmp_path):
    with pytest.raises(CompileError, match="does not exist"):
        compile_plan(file_spec(tmp_path, "0" * 64), config())
