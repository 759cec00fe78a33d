"""What people read and look at: rich tables, matplotlib figures and summary.md sections, per runner
(`evaluation`, `sweep`, `analysis`, `steering`; `figures` and `tables` are shared). Import from the modules."""
