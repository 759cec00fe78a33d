"""Benchmarks, each printing ratios against a baseline measured in the same run.

    python -m benchmarks            # all
    python -m benchmarks overhead   # compiled CLAS trace vs plain forward vs PyTorch hooks
    python -m benchmarks stats      # statistics runner vs plain batched forward vs one-at-a-time
    python -m benchmarks evaluation # logit task and generation vs plain transformers on the same inputs
    python -m benchmarks conditions # K conditions with a shared prefix vs K separate passes
    python -m benchmarks remote     # remote XNLI requests and MB per 100 items, before/after (mock NDIF server)
    python -m benchmarks sweep      # a sweep's dev phase vs G separate `run` calls
    python -m benchmarks lm_eval    # lm-eval's xnli under K conditions vs K runs of lm-eval's hf model
    python -m benchmarks patching   # cross-lingual patching and the lens vs plain PyTorch hooks

All run on the embedded Gemma 3 270M (converted once into the user cache).
"""

from __future__ import annotations

import argparse

from rich.console import Console

from . import conditions, evaluation, lm_eval, overhead, patching, remote, stats, sweep

SUITES = {"overhead": overhead, "stats": stats, "evaluation": evaluation, "conditions": conditions, "remote": remote,
          "sweep": sweep, "lm_eval": lm_eval, "patching": patching}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="*", choices=[*SUITES, []], help="which benchmarks (default: all)")
    for module in SUITES.values():
        module.add_arguments(parser)
    args = parser.parse_args()
    console = Console(width=max(Console().width, 120))

    import clas_graph
    from clas_graph.spec.model_ref import ModelRef

    model = clas_graph.load_model(ModelRef(embedded="gemma-3-270m"), console=console)
    for name in args.suites or SUITES:
        SUITES[name].main(args, model, console)


if __name__ == "__main__":
    main()
