"""Parallel corpora and task data behind small registries."""
