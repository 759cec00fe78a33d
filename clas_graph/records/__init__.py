"""Run directories: identity (spec hash), atomic writes, manifest."""

from .run_dir import RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text, spec_hash

__all__ = ["RunDir", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "spec_hash"]
