"""The guard: stop a model (or any process tree) before the machine runs out of memory.

When memory runs short the kernel's OOM killer picks a victim, often the
user's editor or agent rather than the model. The guard acts first, on the
right process, gracefully when it can: warn, unload through the backend,
SIGTERM to the guarded tree, SIGKILL after a grace period. Protected
processes (the guard itself and its ancestors, editors, terminals, agents)
are never signalled. Every step is logged with the samples behind it.

Using it around anything that has ``pids()`` (and optionally ``unload()``)::

    from yoyu.guard import Guard, BackendTarget, policy_from_settings

    with Guard(BackendTarget(backend), policy_from_settings()):
        ...  # load and serve; the guard unloads or stops the engines if memory runs out

    Guard(target, policy=None, *, audit=None, on_record=None)
        target     pids() -> root pids (their descendants are found by the sampler);
                   optional unload() -> the graceful step (BackendTarget: every model)
        policy     GuardPolicy (defaults; or policy_from_settings() reads [guard])
        audit      AuditLog(path, store, run_id): JSON lines + run-store events
        on_record  called with each AuditRecord as it is written
    guard.stopped_target / guard.first_stop   whether, and why, it stopped the target

Modules: ``policy`` (floors, budget, protected names, ``[guard]`` keys),
``decide`` (the pure decision and ladder), ``guard`` (the thread),
``signals`` (signalling a tree, sparing protected processes), ``audit``
(the log), ``targets`` (what can be guarded), ``command`` (``run_guarded``
for ``yoyu guard -- CMD`` and ``watch_pid`` for ``--pid``), ``view`` (the
figures ``yoyu watch`` shows).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from yoyu.config import read_document
from yoyu.errors import ConfigError
from yoyu.guard.decide import (
    Action,
    GuardState,
    Level,
    Observation,
    Step,
    Trigger,
    advance,
    assess,
    decide,
    seconds_to_floor,
    slope_bytes_per_s,
)
from yoyu.guard.policy import (
    DEFAULT_PROTECTED,
    Floor,
    GuardPolicy,
    Thresholds,
    parse_floor,
    parse_size,
    policy_from_config,
    with_overrides,
)
from yoyu.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from yoyu.guard.audit import AuditLog, AuditRecord, default_audit_path, read_audit
    from yoyu.guard.command import GUARD_STOPPED_EXIT, GuardedRun, run_guarded, watch_pid
    from yoyu.guard.guard import Baseline, Guard, effective_available, observe
    from yoyu.guard.targets import BackendTarget, GuardTarget, ProcessTarget
else:  # policy and decide are small and eager (``decide`` also names a submodule)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "yoyu.guard.audit": ("AuditLog", "AuditRecord", "default_audit_path", "read_audit"),
            "yoyu.guard.command": ("GUARD_STOPPED_EXIT", "GuardedRun", "run_guarded", "watch_pid"),
            "yoyu.guard.guard": ("Baseline", "Guard", "effective_available", "observe"),
            "yoyu.guard.targets": ("BackendTarget", "GuardTarget", "ProcessTarget"),
        },
    )


def policy_from_settings(env: Mapping[str, str] | None = None) -> GuardPolicy:
    """The policy of ``[guard]`` in ``yoyu.toml`` (defaults when there is none)."""
    path, document = read_document(env)
    section = document.get("guard", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: guard must be a table, e.g. [guard]")
    return policy_from_config(section, path)


__all__ = [
    "DEFAULT_PROTECTED",
    "GUARD_STOPPED_EXIT",
    "Action",
    "AuditLog",
    "AuditRecord",
    "BackendTarget",
    "Baseline",
    "Floor",
    "Guard",
    "GuardPolicy",
    "GuardState",
    "GuardTarget",
    "GuardedRun",
    "Level",
    "Observation",
    "ProcessTarget",
    "Step",
    "Thresholds",
    "Trigger",
    "advance",
    "assess",
    "decide",
    "default_audit_path",
    "effective_available",
    "observe",
    "parse_floor",
    "parse_size",
    "policy_from_config",
    "policy_from_settings",
    "read_audit",
    "run_guarded",
    "seconds_to_floor",
    "slope_bytes_per_s",
    "watch_pid",
    "with_overrides",
]
