"""Placement decisions: pure functions of (ModelSpec, Machine, PlanRequest) -> Plan.

Entry point: ``yoyu.plan.planner.make_plan``. Emitters in ``yoyu.plan.emit``
turn a plan into settings for llama.cpp, Ollama, vLLM, RPC and exo.
"""
