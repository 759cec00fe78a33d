"""The intervention and selection registries: the spec unions, compile dispatch and statistics needs come from
the kind modules."""

from __future__ import annotations

import importlib
import pkgutil
import typing

import pytest
import torch
from transformers import LlamaConfig

from clas_graph import compile_plan, interventions
from clas_graph.interventions import registry
from clas_graph.interventions.base import Targeted
from clas_graph.selections import registry as selections
from clas_graph.spec.load import validate_data
from clas_graph.spec.masks import StatsMask
from clas_graph.spec.run_spec import RunSpec
from clas_graph.spec.schema import editor_schema

STATS = {"corpus": {"kind": "bible", "limit": 2}, "selections": ["lape", "experts"]}

# Per kind: an intervention that needs no statistics (None: the kind always does), and one that does.
WITHOUT_STATS = {
    "clas": {"layers": [1], "shared": {"neurons": {1: [0]}}},
    "int_mu": None,
    "add_vector": {"layers": [1], "vector": {"values": [0.0] * 16}},
    "scale": {"layers": [1], "neurons": {"neurons": {1: [0]}}, "factor": 2.0},
    "ablate": {"layers": [1], "neurons": {"neurons": {1: [0]}}},
    "set": {"layers": [1], "neurons": {"neurons": {1: [0]}}, "value": 1.5},
    "diffmean": None,
    "patch": {"layers": [1], "source": {"language": "en"}},
}
WITH_STATS = {
    "clas": ({"layers": {"auto": "bridge"}, "shared": {"from_stats": "partial_shared"},
              "specific": {"from_stats": "language_specific"}}, ["layers", "shared", "specific"]),
    "int_mu": ({"layers": [1]}, ["kind"]),
    "add_vector": ({"layers": [1], "vector": {"from_stats": "diffmean"}}, ["vector"]),
    "scale": ({"layers": [1], "neurons": {"from_stats": "lape"}, "factor": 0.0}, ["neurons"]),
    "ablate": ({"layers": {"auto": "bridge"}, "neurons": {"from_stats": "experts"}}, ["layers", "neurons"]),
    "set": ({"layers": [1], "neurons": {"from_stats": "experts"}, "value": "median", "language": "de"},
            ["kind", "neurons"]),
    "diffmean": ({"layers": [1], "target": "de"}, ["kind"]),
    "patch": ({"layers": {"auto": "bridge"}, "source": {"language": "en"}}, ["layers"]),
}


def spec_of(kind: str, fields: dict, stats: bool) -> RunSpec:
    data = {"schema_version": 1, "name": "t", "model": {"path": "m"}, "languages": ["en", "de"],
            "interventions": [{"kind": kind, "id": "x", **fields}]}
    if stats:
        data["stats"] = STATS
    return validate_data(data)


def union_members() -> tuple:
    union, _ = typing.get_args(registry.Intervention)
    return typing.get_args(union)


def kind_literal(model: type) -> str:
    """The one value of a model's `kind: Literal[...]`."""
    (kind,) = typing.get_args(model.model_fields["kind"].annotation)
    return kind


def kind_classes_in_the_package() -> dict[str, type]:
    """Every module-level class of `clas_graph.interventions` that is a kind (a `Targeted` with a `kind` field),
    by the name of the module that defines it."""
    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(interventions.__path__):
        module = importlib.import_module(f"{interventions.__name__}.{info.name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and obj.__module__ == module.__name__ and issubclass(obj, Targeted)
                    and "kind" in obj.model_fields):
                assert info.name not in found, f"{info.name} defines two kinds"
                found[info.name] = obj
    return found


def test_the_spec_union_is_every_kind_module_in_the_registry_order():
    members = union_members()
    assert registry.kind_names() == ("clas", "int_mu", "add_vector", "scale", "ablate", "set", "diffmean", "patch")
    assert tuple(kind_literal(model) for model in members) == registry.kind_names()
    # Each member is the module-level class of the module named after its kind, and no kind module is left out.
    in_package = kind_classes_in_the_package()
    assert {kind_literal(model): model for model in members} == in_package
    for model in members:
        assert getattr(importlib.import_module(model.__module__), model.__name__) is model
        assert model.__module__ == f"{interventions.__name__}.{kind_literal(model)}"
    assert set(WITHOUT_STATS) == set(WITH_STATS) == set(registry.kind_names())
    field = RunSpec.model_fields["interventions"].annotation
    assert typing.get_args(typing.get_args(field)[0]) == typing.get_args(registry.Intervention)


def test_the_json_schema_lists_exactly_the_kinds():
    schema = editor_schema(RunSpec)
    items = schema["else"]["properties"]["interventions"]["items"]
    refs = {kind_literal(model): f"#/$defs/{model.__name__}" for model in kind_classes_in_the_package().values()}
    assert items["discriminator"] == {"propertyName": "kind", "mapping": refs}
    listed = [variant["allOf"][0]["$ref"] for variant in items["oneOf"]]
    assert listed == [refs[kind] for kind in registry.kind_names()]
    for kind, ref in refs.items():
        assert schema["$defs"][ref.removeprefix("#/$defs/")]["properties"]["kind"]["const"] == kind


@pytest.mark.parametrize("model", registry.INTERVENTION_KINDS, ids=lambda model: model.__name__)
def test_each_kind_has_its_own_compile_rule(model):
    assert issubclass(model, Targeted)
    assert model.compile is not Targeted.compile


@pytest.mark.parametrize("kind", list(WITH_STATS))
def test_the_compiler_dispatches_to_the_kind_model(kind, monkeypatch):
    fields, _ = WITH_STATS[kind]
    spec = spec_of(kind, {**fields, "layers": [1]}, stats=True)
    model = type(spec.interventions[0])
    assert model in registry.INTERVENTION_KINDS and spec.interventions[0].kind == kind
    calls = []
    monkeypatch.setattr(model, "compile", lambda self, context: calls.append((self, context)) or [])
    config = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=8, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=1)
    stats = type("Stats", (), {"category": torch.zeros(3, 8)})()
    plan = compile_plan(spec, config, stats=stats)
    assert plan.ops == ()
    assert len(calls) == 1 and calls[0][0] is spec.interventions[0] and calls[0][1].intervention is calls[0][0]


@pytest.mark.parametrize("kind", list(WITH_STATS))
def test_each_kind_declares_the_fields_that_need_statistics(kind):
    fields, expected = WITH_STATS[kind]
    spec = spec_of(kind, fields, stats=True)
    assert spec.interventions[0].stats_fields() == expected
    assert spec.needs_stats
    if WITHOUT_STATS[kind] is not None:
        plain = spec_of(kind, WITHOUT_STATS[kind], stats=False)
        assert plain.interventions[0].stats_fields() == []
        assert not plain.needs_stats


def test_selections_come_from_the_selection_registry():
    assert selections.SELECTION_NAMES == ("lape", "experts")
    assert tuple(selections.Selections.model_fields) == selections.SELECTION_NAMES
    assert set(typing.get_args(StatsMask.model_fields["from_stats"].annotation)) >= set(selections.SELECTION_NAMES)
    for name in selections.SELECTION_NAMES:
        kind = selections.selection_kind(name)
        assert kind.MASK_TENSOR in kind.TENSORS and set(kind.LANGUAGE_AXIS) <= set(kind.TENSORS)
        assert all(tensor.startswith(f"{name}.") for tensor in kind.TENSORS)
    short = selections.Selections.model_validate(["experts"])
    assert short.names() == ["experts"] and short.lape is None


def test_a_selection_mask_is_looked_up_through_its_kind():
    table = torch.zeros(2, 3, 4, dtype=torch.bool)
    table[1, 2, 3] = True
    stats = type("Stats", (), {"tensors": {"lape.mask": table}, "languages": ["en", "de"]})()
    assert selections.has_mask(stats, "lape") and not selections.has_mask(stats, "experts")
    assert selections.mask(stats, "lape", [2])[2].tolist() == [False, False, False, True]
    assert selections.mask(stats, "lape", [2], ["en"])[2].sum() == 0
    assert selections.mask(stats, "lape", [2], per_row=True)[2].shape == (2, 4)
