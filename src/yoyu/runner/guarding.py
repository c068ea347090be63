"""The guard around a run: every model yoyu loads is guarded unless the user opts out.

``RunGuard`` is a watcher factory (see ``watchers``): each run it watches gets
its own ``Guard`` over the run's backend, logging to the audit file and to the
run's store. After the run, ``stop_message`` says whether and why the guard
stopped the model, so a command can tell "the guard stopped it" (exit 75,
as ``yoyu guard``) from "the engine failed" (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from yoyu.guard import AuditLog, BackendTarget, Guard, GuardPolicy
from yoyu.runner.watchers import WatchContext


@dataclass
class RunGuard:
    """Guards for the runs it is given to, and what they did."""

    policy: GuardPolicy
    audit_path: Path | None = None  # None: the default audit log under the data folder
    guards: list[Guard] = field(default_factory=list)

    def __call__(self, context: WatchContext) -> Guard:
        audit = AuditLog(self.audit_path, context.store, context.run_id)
        guard = Guard(
            BackendTarget(context.backend), self.policy, audit=audit,
            planned_bytes=context.planned_bytes,
        )  # fmt: skip
        self.guards.append(guard)
        return guard

    @property
    def stop_message(self) -> str | None:
        """Why the guard stopped a model (the floor and the figure), or ``None``."""
        for guard in self.guards:
            if guard.first_stop is not None:
                return guard.first_stop.message
        return None
