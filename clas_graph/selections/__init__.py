"""Neuron selections of other methods, computed beside the CLAS statistics, one module each.

- `lape.py`: LAPE (Tang et al. 2024);
- `experts.py`: expert neurons by average precision (Suau et al. 2022; Sundar et al. 2025);
- `registry.py`: the list of selections, `SELECTION_NAMES`, the `Selections` spec model and lookup by name.

Each module holds the selection's spec model, what it computes from the traced sums (the math itself is in
`clas_graph.stats.selections`), the tensors it stores in the statistics artifact, and how a mask is read back.
"""
