"""Neuron selections of other methods, computed beside the CLAS statistics, one module each.

- `lape.py`: LAPE (Tang et al. 2024);
- `experts.py`: expert neurons by average precision (Suau et al. 2022; Sundar et al. 2025);
- `rules.py`: the selection rules themselves (LAPE's entropy rule, average precision, expert ranking), pure torch;
- `registry.py`: the list of selections, `SELECTION_NAMES`, the `Selections` spec model and lookup by name.

Each selection's module holds its spec model, what it stores from the traced sums (applying its rule), the tensors
it stores in the statistics artifact, when an artifact's tensors can be reused, and the tensor a mask reads.
`stats: {selections: [lape, experts]}` asks for both with their defaults; the long form sets parameters:
`selections: {lape: {top_rate: 0.05}, experts: {top_k: 100}}`; specs use them as `{from_stats: lape}` /
`{from_stats: experts}`.
"""
