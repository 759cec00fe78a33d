"""Runners: each does one job over a spec (next-token probe; later statistics and evaluation)."""
