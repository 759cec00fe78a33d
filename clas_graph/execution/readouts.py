"""Readouts: what a forward trace computes and returns per row, beside the plan's interventions.

A readout is generated source (the tail of a trace, after the intervention statements) plus what the executors
need to know about it: the names of the values it leaves, how many numbers per row they hold (a remote request
is sized by it), whether conditions may run stacked, whether every condition compares with the base model, and
which layer the trace may stop at. Each also builds the per-batch `extra` inputs of its trace and assembles
the batches into the caller's result. A new readout is one class here; the executors need no change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

from ..compile.plan import Plan

if TYPE_CHECKING:
    import torch

# Tasks describe readouts in their requests before any model exists (and spec models import tasks), so this module
# loads without torch: the methods that build or assemble tensors import it.

BASE_LOGPROBS_FROM_EXTRA = 'extra["base_logprobs"].to(lp.device)'
"""Where a condition's trace finds the base model's log-probs of its batch (the executors pass them)."""

EXECUTOR_ROW_EXTRAS = ("base_logprobs", "prefix")
"""Per-row entries the executors add to a trace's `extra` (the base log-probs, the shared prefix)."""

Batches = list[tuple[list[int], object]]
"""One condition's readout of every batch: (row indices, value) in batch order."""


class Readout:
    """What a trace returns per row. Subclasses set the class attributes and `source`."""

    outputs: ClassVar[tuple[str, ...]]
    """The variables the tail leaves (per row, batch first), in the order the trace returns them."""
    stackable: ClassVar[bool] = True
    """Whether conditions may run stacked (one trace over the batch repeated per condition): only for readouts
    whose per-row result is small."""
    compares_with_base: ClassVar[bool] = False
    """Whether every condition's trace needs the base model's log-probs of the same batch (computed in the base
    trace, kept there as `base_logprobs`)."""
    call_kwargs: ClassVar[dict] = {"logits_to_keep": 1}
    """Arguments of the model call (only the last position's logits unless the readout needs every position)."""
    row_extras: ClassVar[tuple[str, ...]] = ()
    """The entries of `extra` (built by `extra`) with one row per batch row: repeated with the batch when
    conditions run stacked."""
    shares_prefix: ClassVar[bool] = True
    """Whether a condition's trace may skip the layers below its first edit (the shared prefix): not for readouts
    that read those layers themselves, whose skipped layers would all return the prefix value."""

    label: ClassVar[str]
    """Short name, in generated file names and messages."""

    @property
    def read_layer(self) -> int | None:
        """The decoder layer whose output the readout reads (the trace stops there); None: the model's output."""
        return None

    def body(self, plan: Plan, indent: str) -> str:
        """The plan's intervention statements, with whatever the readout reads while they run placed among them
        in execution order (default: none; `r` holds `read_layer`'s output when there is one)."""
        from ..compile.emit import emit_body

        return emit_body(plan, indent, read_layer=self.read_layer)

    def source(self, base_logprobs: str) -> str:
        """The tail statements, indented for a trace body, ending in `.save()` of each output."""
        raise NotImplementedError

    def tail(self, *, save: bool = True, base_logprobs: str = BASE_LOGPROBS_FROM_EXTRA) -> tuple[str, str]:
        """(statements after the intervention body, the expression the trace function returns). `save=False`
        inside a session, where the session saves what travels back. `base_logprobs`: the expression for the
        base model's next-token log-probs of these rows (`lp` in the base trace itself)."""
        text = self.source(base_logprobs)
        result = self.outputs[0] if len(self.outputs) == 1 else f"({', '.join(self.outputs)})"
        return (text if save else text.replace(".save()", "")), result

    def row_width(self, config) -> int:
        """Numbers per row one condition's readout returns (float32 on the wire); default: one per output."""
        return len(self.outputs)

    def per_row_extras(self) -> tuple[str, ...]:
        """Every per-row entry a trace's `extra` may hold: the readout's own and the executors'."""
        return self.row_extras + EXECUTOR_ROW_EXTRAS

    def extra(self, tokenizer, inputs: dict, index: list[int]) -> dict:
        """Per-batch tensors the trace reads from `extra` (rows `index` of the caller's texts)."""
        return {}

    def assemble(self, rows: int, batches: Batches, config):
        """One condition's batches as the caller's result over all `rows` texts."""
        raise NotImplementedError

    def for_model(self, hf_model, architecture) -> "Readout":
        """The readout as it runs on this model (a request describes it before the model is known)."""
        return self


@dataclass(frozen=True)
class LastLogits(Readout):
    """Next-token logits at the last position (left padding: the last real token); with `token_ids`, only those
    columns (e.g. XNLI's label tokens), so little travels back from a remote run.

    With `token_ids` and `lm_head`, those logits are computed in float32 from the LM head's input (the final norm's
    output, in the model's dtype): a bfloat16 model's own logits keep 8 significant bits (at 16 the step is 0.125),
    so two labels can tie and an argmax would take the lower label id."""

    label: ClassVar = "last_logits"
    token_ids: tuple[int, ...] | None = None
    lm_head: str | None = None
    """Path of the LM head (no bias), for float32 label logits; None: the model's own logits."""
    softcap: float | None = None
    """The model's final logit soft-capping (Gemma 2), applied as its own forward does."""
    outputs: ClassVar = ("logits",)

    def source(self, base_logprobs: str) -> str:
        if self.token_ids is not None and self.lm_head is not None:
            cap = f"\n        logits = {self.softcap!r} * torch.tanh(logits / {self.softcap!r})" if self.softcap else ""
            return f"""\
        # the logits of extra["token_ids"] at the last position (left padding: the last real token), in float32
        # from the LM head's input: the model's own bfloat16 logits could tie
        last = model.{self.lm_head}.input[:, -1, :]
        weight = model.{self.lm_head}.weight[extra["token_ids"].to(last.device)]
        logits = last.float() @ weight.float().T{cap}
        logits = logits.save()"""
        return """\
        # next-token logits at the last position (left padding: the last real token); with
        # extra["token_ids"], only those columns are kept (e.g. XNLI's label tokens), so little travels back
        logits = model.output.logits[:, -1, :]
        if "token_ids" in extra:
            logits = logits[:, extra["token_ids"].to(logits.device)]
        logits = logits.save()"""

    def row_width(self, config) -> int:
        return len(self.token_ids) if self.token_ids is not None else config.get_text_config().vocab_size

    def extra(self, tokenizer, inputs, index):
        import torch
        return {} if self.token_ids is None else {"token_ids": torch.tensor(list(self.token_ids), dtype=torch.long)}

    def assemble(self, rows, batches, config):
        import torch
        logits = torch.zeros(rows, self.row_width(config)) if batches else torch.empty(0)
        for index, value in batches:
            logits[index] = value.float().cpu()
        return logits


@dataclass(frozen=True)
class NextToken(Readout):
    """The next-token distribution at the last position compared with the base model's on the same batch,
    reduced in the trace to four numbers per row: KL(base || condition), top-1 (this one's and base's) and the
    log-prob of `gold` (-1: none)."""

    label: ClassVar = "next_token"
    gold: tuple[int, ...] = ()
    outputs: ClassVar = ("kl", "top1", "base_top1", "gold_logprob")
    compares_with_base: ClassVar = True
    row_extras: ClassVar = ("gold",)

    def source(self, base_logprobs: str) -> str:
        return f"""\
        # the next-token distribution at the last position, reduced here to four numbers per row: KL from the
        # base model's distribution, top-1 token (this one's and base's) and the log-prob of extra["gold"] (-1: none)
        lp = torch.log_softmax(model.output.logits[:, -1, :].float(), -1)
        base_lp = {base_logprobs}
        kl = (base_lp.exp() * (base_lp - lp)).sum(-1).cpu().save()
        top1 = lp.argmax(-1).cpu().save()
        base_top1 = base_lp.argmax(-1).cpu().save()
        gold = extra["gold"].to(lp.device)
        gold_logprob = lp.gather(1, gold.clamp(min=0)[:, None])[:, 0].cpu().save()"""

    def extra(self, tokenizer, inputs, index):
        import torch
        return {"gold": torch.tensor([self.gold[i] for i in index], dtype=torch.long)}

    def assemble(self, rows, batches, config):
        import torch
        columns = dict(zip(self.outputs, scalar_columns(rows, batches, (torch.float64, torch.long, torch.long,
                                                                          torch.float64))))
        columns["gold_logprob"][torch.tensor(self.gold, dtype=torch.long) < 0] = float("nan")
        return columns


@dataclass(frozen=True)
class TokenNll(Readout):
    """Per row: summed next-token negative log-likelihood (nats) over real target tokens, and their count.

    Not stackable: it needs the full-vocabulary logits of every position, so K stacked conditions would hold K
    times that memory at once."""

    label: ClassVar = "token_nll"
    outputs: ClassVar = ("nll_sum", "counts")
    stackable: ClassVar = False
    call_kwargs: ClassVar = {}

    def source(self, base_logprobs: str) -> str:
        return """\
        # next-token negative log-likelihood over real (non-pad) target tokens, summed per row, as
        # logsumexp - gathered logit: measured on Gemma 3's 262k vocabulary about 4x faster than cross_entropy
        # over the transposed logits and closer to a float64 reference (2e-6 vs 9e-4 nats max)
        logits = model.output.logits[:, :-1].float()
        target = inputs["input_ids"][:, 1:].to(logits.device)
        mask = inputs["attention_mask"].to(logits.device)
        valid = (mask[:, 1:] * mask[:, :-1]).float()
        nll = torch.logsumexp(logits, -1) - logits.gather(-1, target[..., None])[..., 0]
        nll_sum = (nll * valid).sum(-1).cpu().save()
        counts = valid.sum(-1).cpu().save()"""

    def assemble(self, rows, batches, config):
        import torch
        return tuple(scalar_columns(rows, batches, (torch.float64, torch.float64)))


@dataclass(frozen=True)
class ContinuationLogprob(Readout):
    """Per row: the summed log-probability of a continuation given what precedes it, and whether greedy decoding
    would have produced it (lm-evaluation-harness's `loglikelihood`). Each row's input is context + continuation
    without its last token; `targets[i]` are row i's continuation tokens, scored at the row's last
    `len(targets[i])` positions (left padding puts a row's real tokens at the end).

    Not stackable: like token_nll it needs the full-vocabulary log-probs of every position."""

    label: ClassVar = "continuation_logprob"
    targets: tuple[tuple[int, ...], ...] = ()
    outputs: ClassVar = ("logprob", "greedy")
    stackable: ClassVar = False
    call_kwargs: ClassVar = {}
    row_extras: ClassVar = ("targets",)

    def source(self, base_logprobs: str) -> str:
        return """\
        # log-probs of each row's continuation tokens (extra["targets"]: the token each position must predict,
        # -1 where nothing is scored), summed per row, and whether each scored token is the argmax
        lp = torch.log_softmax(model.output.logits.float(), -1)
        target = extra["targets"].to(lp.device)
        scored = target >= 0
        token_lp = lp.gather(-1, target.clamp(min=0)[..., None])[..., 0]
        logprob = (token_lp * scored).sum(-1).cpu().save()
        greedy = ((lp.argmax(-1) == target) | ~scored).all(-1).cpu().save()"""

    def extra(self, tokenizer, inputs, index):
        import torch
        width = inputs["input_ids"].shape[1]
        targets = torch.full((len(index), width), -1, dtype=torch.long)
        for row, i in enumerate(index):
            tokens = self.targets[i]
            targets[row, width - len(tokens):] = torch.tensor(tokens, dtype=torch.long)
        return {"targets": targets}

    def assemble(self, rows, batches, config):
        import torch
        return tuple(scalar_columns(rows, batches, (torch.float64, torch.bool)))


@dataclass(frozen=True)
class Pooled(Readout):
    """[rows, hidden] mean of decoder layer `layer`'s output over each text's tokens (BOS left out unless
    `exclude_bos` is false). The trace stops after that layer; ops above it cannot change the result."""

    label: ClassVar = "pooled"
    layer: int = 0
    exclude_bos: bool = True
    outputs: ClassVar = ("pooled",)
    row_extras: ClassVar = ("pool_mask",)

    @property
    def read_layer(self) -> int:
        return self.layer

    def source(self, base_logprobs: str) -> str:
        return """\
        # mean over the tokens marked in pool_mask (non-pad, BOS left out)
        weight = extra["pool_mask"].to(r.device, torch.float32)[:, :, None]
        pooled = ((r.float() * weight).sum(1) / weight.sum(1).clamp(min=1)).cpu().save()
        tracer.stop()  # the layers above `layer` and the LM head are not needed"""

    def row_width(self, config) -> int:
        return config.get_text_config().hidden_size

    def extra(self, tokenizer, inputs, index):
        mask = inputs["attention_mask"].clone()
        if self.exclude_bos and tokenizer.bos_token_id is not None:
            mask[inputs["input_ids"] == tokenizer.bos_token_id] = 0
        return {"pool_mask": mask}

    def assemble(self, rows, batches, config):
        import torch
        vectors = torch.zeros(rows, self.row_width(config))
        for index, value in batches:
            vectors[index] = value.float()
        return vectors


@dataclass(frozen=True)
class LabelLogits(LastLogits):
    """A few tokens' logits at the last position, as a request describes them before the model loads; on the
    model they are `label_logits` (float32 from the LM head's input when the head has no bias)."""

    label: ClassVar = "label_logits"

    def for_model(self, hf_model, architecture) -> LastLogits:
        return label_logits(hf_model, architecture, self.token_ids)


def label_logits(hf_model, architecture, token_ids: Sequence[int]) -> LastLogits:
    """The readout of a few tokens' logits at the last position, in float32 when the LM head has no bias."""
    head = hf_model.get_output_embeddings()
    cap = getattr(hf_model.config.get_text_config(), "final_logit_softcapping", None)
    float32 = head is not None and getattr(head, "bias", None) is None
    return LastLogits(tuple(int(t) for t in token_ids), lm_head=architecture.lm_head if float32 else None,
                      softcap=float(cap) if cap else None)


def scalar_columns(rows: int, batches: Batches, dtypes: Sequence[torch.dtype]) -> list[torch.Tensor]:
    """For readouts with one number per row and output: one [rows] column per output, batches put in place."""
    import torch
    columns = [torch.zeros(rows, dtype=dtype) for dtype in dtypes]
    for index, values in batches:
        if isinstance(values, torch.Tensor):  # a readout with one output returns it alone, not in a tuple
            values = (values,)
        for column, value in zip(columns, values):
            column[index] = value.to(column.dtype)
    return columns


def gold_ids(gold: Sequence[int | None]) -> tuple[int, ...]:
    """`NextToken.gold` from optional token ids (None: the true next token is not defined)."""
    return tuple(-1 if g is None else int(g) for g in gold)
