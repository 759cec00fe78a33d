"""Human-facing output: rich tables (figures come with the evaluation runner)."""
