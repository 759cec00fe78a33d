"""Scoring: task metrics (QA token F1 / exact match, classification accuracy / macro F1),
cross-language statistics (mean, std, paired t-test against the base model) and retrieval
accuracy of parallel embeddings. See :mod:`clas_graph.eval.metrics`."""
