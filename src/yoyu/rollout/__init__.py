"""Staged migration to a bigger model, with rollback (``yoyu migrate``).

    preflight -> fetch -> smoke -> soak -> verdict (promote | rollback)

start_migration(Request)   a new migration, run to its verdict (state saved after each phase)
resume_migration()         the current migration, from the phase it stopped in
rollback_migration()       back to the old model: engine stopped, alias restored, why recorded
load_current()             the current migration's state (``--status``)

Modules: ``thresholds`` ([migrate] and the pure checks), ``state`` (the JSON
state file), ``phases`` (the four measuring phases), ``aliases`` (the careful
``yoyu.toml`` edit), ``report`` (Markdown + plots), ``procedure`` (the order).
"""

from __future__ import annotations

from yoyu.rollout.aliases import Promotion, plan_promotion
from yoyu.rollout.procedure import (
    Hooks,
    Request,
    resume_migration,
    rollback_migration,
    start_migration,
    stop_leftover_engine,
    thresholds_from_settings,
)
from yoyu.rollout.state import PHASES, MigrationState, PhaseRecord, current_or_none, load_current
from yoyu.rollout.thresholds import MigrateThresholds, smoke_decision, with_flags

__all__ = [
    "PHASES",
    "Hooks",
    "MigrateThresholds",
    "MigrationState",
    "PhaseRecord",
    "Promotion",
    "Request",
    "current_or_none",
    "load_current",
    "plan_promotion",
    "resume_migration",
    "rollback_migration",
    "smoke_decision",
    "start_migration",
    "stop_leftover_engine",
    "thresholds_from_settings",
    "with_flags",
]
