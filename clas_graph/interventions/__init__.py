"""Intervention kinds, one module each: its spec model, its compile rule (spec -> plan ops), the fields that need
the statistics artifact, and its cross-reference checks.

- `base.py`: what every kind shares (`rows`, `steps`, layers, sites) and the compile context;
- `neurons.py`: the kinds that edit chosen MLP neurons (`scale`, `ablate`, `set`);
- `clas.py`, `int_mu.py`, `add_vector.py`, `scale.py`, `ablate.py`, `set.py`, `diffmean.py`: the kinds;
- `registry.py`: the list of kinds and the `Intervention` union specs use.

Sites use one vocabulary across architectures (see `clas_graph.sites`):
- `mlp.act_fn.output`: a = act_fn(gate_proj(x)), the gate activation;
- `mlp.down_proj.input`: h = a * up_proj(x), the MLP's intermediate activation (CLAS's site);
- `resid_post`: the residual stream after the decoder layer (the layer's output).

Composition: a condition lists intervention ids; on the same layer and site they apply in that
order, each seeing the previous one's output; across sites, in the model's execution order.
"""
