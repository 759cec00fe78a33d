"""Runners, one job each over a spec: `run` (the whole experiment), `stats`, `selections`, `evaluate`, `sweep`,
`analyze`, with `lifecycle` (run directory, checks before model work, recording how work ended) and
`preflight` (every task's data loads before the model). Import from the modules themselves."""
