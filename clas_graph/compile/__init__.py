"""Spec -> Plan (pure data) -> generated nnsight trace source."""

from .compiler import clas_scale, compile_plan, compile_plans
from .emit import EmittedTrace, emit, emit_source
from .plan import SITE_H, Plan, RowSelect, ScaleNeurons

__all__ = ["EmittedTrace", "Plan", "RowSelect", "SITE_H", "ScaleNeurons", "clas_scale", "compile_plan",
           "compile_plans", "emit", "emit_source"]
