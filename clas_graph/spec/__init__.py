"""What users write: the pydantic models of a spec file (`run_spec.RunSpec`), the loader (`load`), overrides,
sweeps and the editor schema. Import from the modules themselves; `clas_graph` re-exports the public names."""
