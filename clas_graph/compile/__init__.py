"""Spec -> Plan (pure data) -> generated nnsight trace source: `plan` (ops, row rules), `compiler`, `stack`
(stacked conditions), `masks`/`vectors` (resolving sources), `emit` (intervention statements and the plain
forward/generate traces). Import from the modules themselves."""
