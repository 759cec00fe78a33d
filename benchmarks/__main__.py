"""Benchmarks, each printing ratios against a baseline measured in the same run.

    python -m benchmarks            # all but gpu
    python -m benchmarks overhead   # compiled CLAS trace vs plain forward vs PyTorch hooks
    python -m benchmarks stats      # statistics runner vs plain batched forward vs one-at-a-time
    python -m benchmarks evaluation # logit task and generation vs plain transformers on the same inputs
    python -m benchmarks conditions # K conditions with a shared prefix vs K separate passes
    python -m benchmarks remote     # remote XNLI requests and MB per 100 items, before/after (mock NDIF server)
    python -m benchmarks sweep      # a sweep's dev phase vs G separate `run` calls
    python -m benchmarks lm_eval    # lm-eval's xnli under K conditions vs K runs of lm-eval's hf model
    python -m benchmarks patching   # cross-lingual patching and the lens vs plain PyTorch hooks
    python -m benchmarks gpu        # Llama 3.1 8B layer shapes on a GPU; the flagship's time (--tiny: CPU smoke)

All but gpu run on the embedded Gemma 3 270M (converted once into the user cache); gpu builds its own random
model and needs neither the embedded model nor the Bible.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rich.console import Console

SUITES = ("overhead", "stats", "evaluation", "conditions", "remote", "sweep", "lm_eval", "patching", "gpu")
ON_REQUEST = ("gpu",)
"""Suites left out of "all": they need hardware `make bench` does not assume."""


def main() -> None:
    # Only the chosen suites are imported, so one suite's dependencies (the Bible, lm-eval) are not needed by another.
    chosen = [arg for arg in sys.argv[1:] if arg in SUITES] or [name for name in SUITES if name not in ON_REQUEST]
    if {"-h", "--help"} & set(sys.argv[1:]):
        chosen = list(SUITES)
    modules = {name: importlib.import_module(f"{__package__}.{name}") for name in chosen}
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="*", choices=[*SUITES, []], help="which benchmarks (default: all but gpu)")
    for module in modules.values():
        module.add_arguments(parser)
    args = parser.parse_args()
    console = Console(width=max(Console().width, 120))

    model = None
    for module in modules.values():
        if getattr(module, "BUILDS_ITS_OWN_MODEL", False):
            module.main(args, None, console)
            continue
        if model is None:
            import clas_graph
            from clas_graph.spec.model_ref import ModelRef

            model = clas_graph.load_model(ModelRef(embedded="gemma-3-270m"), console=console)
        module.main(args, model, console)


if __name__ == "__main__":
    main()
