"""Every call that runs plans on texts, as `clas_graph.backends.*` (defined in clas_graph.execution.api)."""

from .execution.api import (
    forward,
    forward_many,
    generate,
    generate_ids,
    next_token_many,
    pooled_hidden,
    pooled_hidden_many,
    read_many,
    token_nll,
    token_nll_many,
)

__all__ = ["forward", "forward_many", "generate", "generate_ids", "next_token_many", "pooled_hidden",
           "pooled_hidden_many", "read_many", "token_nll", "token_nll_many"]
