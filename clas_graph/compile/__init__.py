"""Spec -> Plan (pure data) -> generated nnsight trace source."""

from .compiler import clas_scale, compile_plan, compile_plans
from .emit import EmittedTrace, emit, emit_source
from .plan import SITE_ACT, SITE_H, SITE_RESID, AddVector, Op, Plan, RowSelect, ScaleNeurons, SetNeurons

__all__ = ["AddVector", "EmittedTrace", "Op", "Plan", "RowSelect", "SITE_ACT", "SITE_H", "SITE_RESID", "ScaleNeurons",
           "SetNeurons", "clas_scale", "compile_plan", "compile_plans", "emit", "emit_source"]
