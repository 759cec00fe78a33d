"""The logit lens readout (nostalgebraist 2020; as used by Wendler et al. 2024): at each chosen decoder layer, the
model's final norm and unembedding applied to the residual stream at one position, softmax, and the probability
of a few token groups, all reduced inside the trace.

Per row and lens layer only `groups` numbers (and the top-1 token) leave the trace, never the vocabulary: the
groups are per-row token sets (e.g. an item's answer in the prompt's and in the anchor language) and sets shared by
every row (e.g. the tokens typical of each language). A set's probability is the sum of its tokens' probabilities.

The lens reads every lens layer while the plan's interventions run (its reads sit among the intervention
statements in execution order), so CLAS and other edits apply below and at each layer it reads; a layer's
resid_post ops act before that layer is read. The shared prefix is off for it: a condition's trace that skipped
the layers below its first edit would read the prefix value at every skipped layer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Sequence

from ..compile.plan import Plan
from ..errors import DataError
from .readouts import Readout


@dataclass(frozen=True)
class LayerLens(Readout):
    """Per row: [layers, groups] probabilities (the per-row groups first, then the shared sets) and the top-1
    token id per layer. `row_groups[i]` are row i's token sets (the same number for every row); `sets` are shared."""

    label: ClassVar = "lens"
    outputs: ClassVar = ("lens", "top1")
    row_extras: ClassVar = ("lens_ids",)
    shares_prefix: ClassVar = False
    layers: tuple[int, ...] = ()
    final_norm: str = "model.norm"
    lm_head: str = "lm_head"
    softcap: float | None = None
    """The model's final logit soft-capping (Gemma 2): cap * tanh(logits / cap), as its own forward does."""
    position: int = -1
    """Read position from the end of each row (left padding: -1 is the last real token)."""
    row_groups: tuple[tuple[tuple[int, ...], ...], ...] = ()
    sets: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self):
        if not self.layers or list(self.layers) != sorted(set(self.layers)):
            raise ValueError(f"lens layers must be increasing and distinct, got {self.layers}")
        if self.position >= 0:
            raise ValueError(f"the lens position counts from the end (-1: last token), got {self.position}")
        if len({len(groups) for groups in self.row_groups}) > 1:
            raise ValueError("every row needs the same number of token groups")
        if not self.groups:
            raise ValueError("a lens needs at least one token group (per row) or shared set")

    @property
    def row_group_count(self) -> int:
        return len(self.row_groups[0]) if self.row_groups else 0

    @property
    def groups(self) -> int:
        return self.row_group_count + len(self.sets)

    @property
    def read_layer(self) -> int:
        return self.layers[-1]

    def body(self, plan: Plan, indent: str) -> str:
        from ..compile.emit import emit_body  # the readout is described without torch (see readouts.py)

        parts = [indent + "lens_mass, lens_top1 = [], []"]
        below = -1
        for layer in self.layers:  # each layer's ops, then its read, in execution order
            here = replace(plan, ops=tuple(op for op in plan.ops if below < op.layer <= layer))
            parts += [emit_body(here, indent, read_layer=layer), self._read(layer, indent)]
            below = layer
        return "\n".join(parts)

    def _read(self, layer: int, indent: str) -> str:
        lines = [f"# lens at layer {layer}: final norm, unembedding, softmax at the read position",
                 f"logits = model.{self.lm_head}(model.{self.final_norm}(r[:, {self.position}, :])).float()"]
        if self.softcap:
            lines.append(f"logits = {self.softcap!r} * torch.tanh(logits / {self.softcap!r})")
        lines += ["p = torch.softmax(logits, -1)", "lens_top1.append(p.argmax(-1))", "mass = []"]
        if self.row_groups:  # each row's own token sets: [rows, groups, tokens], -1 pads
            lines += ['ids = extra["lens_ids"].to(p.device)',
                      "mass.append((p.gather(1, ids.clamp(min=0).flatten(1)).view(ids.shape) * (ids >= 0)).sum(-1))"]
        if self.sets:  # sets shared by every row: token ids and the set each belongs to
            lines += [f'mass.append(torch.zeros(p.shape[0], {len(self.sets)}, device=p.device, dtype=p.dtype)'
                      '.index_add_(1, extra["lens_set_of"].to(p.device), p[:, extra["lens_set_ids"].to(p.device)]))']
        lines.append("lens_mass.append(torch.cat(mass, -1))")
        return "\n".join(indent + line for line in lines)

    def source(self, base_logprobs: str) -> str:
        return """\
        # per row: [lens layers, groups] probabilities and the top-1 token per layer; nothing above is needed
        lens = torch.stack(lens_mass, 1).cpu().save()
        top1 = torch.stack(lens_top1, 1).cpu().save()
        tracer.stop()"""

    def row_width(self, config) -> int:
        return len(self.layers) * (self.groups + 1)

    def extra(self, tokenizer, inputs, index):
        import torch
        lengths = inputs["attention_mask"].sum(-1)
        if bool((lengths < -self.position).any()):
            raise DataError(f"a prompt has fewer than {-self.position} tokens, so the lens position "
                            f"{self.position} would read padding", where="tasks (lens).position",
                            fix="use a position closer to the end (-1: the last token), or longer prompts")
        out = {}
        if self.row_groups:
            width = max([len(ids) for i in index for ids in self.row_groups[i]] + [1])
            ids = torch.full((len(index), self.row_group_count, width), -1, dtype=torch.long)
            for row, i in enumerate(index):
                for group, tokens in enumerate(self.row_groups[i]):
                    ids[row, group, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            out["lens_ids"] = ids
        if self.sets:
            out["lens_set_ids"] = torch.tensor([t for tokens in self.sets for t in tokens], dtype=torch.long)
            out["lens_set_of"] = torch.tensor([k for k, tokens in enumerate(self.sets) for _ in tokens],
                                              dtype=torch.long)
        return out

    def assemble(self, rows, batches, config):
        import torch
        lens = torch.zeros(rows, len(self.layers), self.groups, dtype=torch.float64)
        top1 = torch.zeros(rows, len(self.layers), dtype=torch.long)
        for index, (mass, top) in batches:
            lens[index] = mass.to(torch.float64)
            top1[index] = top.to(torch.long)
        return {"lens": lens, "top1": top1}


def lens_readout(config, architecture, layers: Sequence[int], *, position: int = -1,
                 row_groups: Sequence[Sequence[Sequence[int]]] = (), sets: Sequence[Sequence[int]] = ()) -> LayerLens:
    """The lens for a model (its sites table entry and HF config); DataError when the table knows no final norm."""
    if architecture.final_norm is None:
        raise DataError(f"the sites table knows no final norm for '{architecture.family}', so no lens can read it",
                        where="model", fix="add `final_norm` to its entry in clas_graph/sites, or use another "
                                                   "model")
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    cap = getattr(text, "final_logit_softcapping", None)
    return LayerLens(layers=tuple(int(layer) for layer in layers), final_norm=architecture.final_norm,
                     lm_head=architecture.lm_head, softcap=float(cap) if cap else None, position=int(position),
                     row_groups=tuple(tuple(tuple(int(t) for t in g) for g in groups) for groups in row_groups),
                     sets=tuple(tuple(int(t) for t in tokens) for tokens in sets))
