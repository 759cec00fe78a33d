"""Task kinds, one module each: its spec model, its items per split (test and the dev items a sweep tunes on),
the languages it can evaluate, its runner (readout and metrics, with their direction) and its report hook.
`registry.py` lists the kinds and builds the `tasks:` union of a spec; `base.py` holds what they share."""
