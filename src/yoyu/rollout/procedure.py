"""The migration as a resumable procedure: start, resume, roll back, status.

    state = start_migration(Request("big.gguf", "coder"))   # preflight .. verdict
    resume_migration()        # the next phase of the current migration, after Ctrl-C or a crash
    rollback_migration()      # back to the old model, whatever the state
    load_current()            # where it stands (``state``)

After every phase the state is saved (``state.save_state``); the phase that
was running when the process stopped is run again by ``resume``. Whatever
stops a run, the engine loaded by a test is stopped first: ``ModelRun`` in a
``with`` block stops it on any exception, and an engine left by a killed
process (its pid and start time are in the state while it runs) is stopped
by the next ``resume`` or ``rollback``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from yoyu.backends.llamacpp_server import LlamaCppServerBackend
from yoyu.backends.ollama import OllamaBackend, PullProgress
from yoyu.backends.protocol import Backend
from yoyu.config import config_path, read_document
from yoyu.errors import ConfigError, MigrationError, YoyuError
from yoyu.estimate.types import RunSettings
from yoyu.guard import GuardPolicy, policy_from_settings
from yoyu.machine.types import Machine
from yoyu.models.resolve import resolve_model
from yoyu.monitor.store import RunStore
from yoyu.rollout import phases
from yoyu.rollout.aliases import (
    Promotion,
    apply_promotion,
    plan_promotion,
    read_config,
    undo_promotion,
)
from yoyu.rollout.report import write_report
from yoyu.rollout.state import (
    FETCH,
    INTERRUPTED,
    PHASES,
    PREFLIGHT,
    PROMOTED,
    ROLLED_BACK,
    RUNNING,
    SMOKE,
    SOAK,
    VERDICT,
    MigrationState,
    PhaseRecord,
    current_or_none,
    load_current,
    new_folder,
    save_state,
)
from yoyu.rollout.thresholds import MigrateThresholds, thresholds_from_config
from yoyu.runner import DEFAULT_SETTINGS, RunConfig, SettlePolicy, SoakPoint

ENGINE_STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class Request:
    """``yoyu migrate TARGET --alias NAME [--from CURRENT]`` with its thresholds."""

    target: str
    alias: str
    source: str | None = None
    thresholds: MigrateThresholds = field(default_factory=MigrateThresholds)
    settings: RunSettings = DEFAULT_SETTINGS


@dataclass
class Hooks:
    """What the caller plugs in: the engine to run (tests: llama-cpp-python), progress, the
    machine, the settle policy, ``on_phase`` (called as each phase starts), and for an
    Ollama pull in the fetch phase the Ollama to use and ``on_pull`` (each status line)."""

    backend_factory: Callable[[], Backend] = LlamaCppServerBackend
    on_phase: Callable[[str], None] = lambda phase: None
    on_point: Callable[[SoakPoint], None] | None = None
    machine: Machine | None = None
    settle: SettlePolicy = field(default_factory=SettlePolicy)
    ollama_factory: Callable[[], OllamaBackend] = OllamaBackend
    on_pull: Callable[[PullProgress], None] | None = None


def thresholds_from_settings(env: Mapping[str, str] | None = None) -> MigrateThresholds:
    """``[migrate]`` of ``yoyu.toml`` (defaults when there is none)."""
    path, document = read_document(env)
    section = document.get("migrate", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: migrate must be a table, e.g. [migrate]")
    return thresholds_from_config(section, path)


def start_migration(request: Request, hooks: Hooks | None = None) -> MigrationState:
    """A new migration of ``request.alias`` to ``request.target``, run to its verdict."""
    current = current_or_none()
    if current is not None and not current.finished:
        raise MigrationError(
            f"the migration of {current.alias} to {current.target} stopped at {current.phase} "
            "and is unfinished; run yoyu migrate --resume or yoyu migrate --rollback first"
        )
    state = MigrationState(
        folder=str(new_folder(request.alias)),
        target=request.target,
        alias=request.alias,
        source=request.source,
        settings=dataclasses.asdict(request.settings),
        thresholds=request.thresholds.to_dict(),
        config_path=str(config_path()),
    )
    save_state(state)
    return _run(state, hooks or Hooks())


def resume_migration(hooks: Hooks | None = None, soak_s: float | None = None) -> MigrationState:
    """Go on with the current migration at the phase it stopped in (``soak_s``: a new soak
    duration, e.g. a shorter one after an interrupted long soak)."""
    state = load_current()
    if state.finished:
        raise MigrationError(
            f"the migration of {state.alias} to {state.target} is finished ({state.status}); "
            "start a new one with yoyu migrate TARGET --alias NAME"
        )
    stop_leftover_engine(state)
    state.status = RUNNING
    if soak_s is not None:
        state.thresholds["soak_s"] = soak_s
    save_state(state)
    return _run(state, hooks or Hooks())


def rollback_migration(
    reason: str = "rolled back on request (yoyu migrate --rollback)",
) -> MigrationState:
    """Back to the old model from any state: the engine stopped, the alias restored."""
    state = load_current()
    if state.status == ROLLED_BACK:
        raise MigrationError(
            f"the migration of {state.alias} to {state.target} is already rolled back"
        )
    _rollback(state, [reason])
    return state


# -- running ---------------------------------------------------------------------------


def _run(state: MigrationState, hooks: Hooks) -> MigrationState:
    thresholds = MigrateThresholds.from_dict(state.thresholds)
    policy = _policy(thresholds)
    state.pid = os.getpid()
    with RunStore() as store:
        context = _context(state, thresholds, policy, store, hooks)
        try:
            _phases(state, context, hooks)
        except BaseException as error:
            _interrupted(state, error)
            raise
    return state


def _phases(state: MigrationState, context: phases.Context, hooks: Hooks) -> None:
    context.caution = _smoke_was_cautious(state)
    while state.phase != VERDICT:
        phase = state.phase
        hooks.on_phase(phase)
        state.phases[phase] = PhaseRecord(phase, started=time.time())
        save_state(state)
        record = _run_phase(phase, state, context)
        record.started = state.phases[phase].started
        record.finished = time.time()
        state.phases[phase] = record
        state.phase = VERDICT if not record.passed else PHASES[PHASES.index(phase) + 1]
        save_state(state)
    hooks.on_phase(VERDICT)
    failed = [r for r in state.phases.values() if r.passed is False]
    if failed:
        _rollback(state, [f"{r.name}: {reason}" for r in failed for reason in r.reasons])
    else:
        _promote(state)


def _run_phase(phase: str, state: MigrationState, context: phases.Context) -> PhaseRecord:
    """The phase's record; a user error (no such model, a bad file) fails the phase."""
    try:
        return _phase_body(phase, state, context)
    except YoyuError as error:
        return PhaseRecord(phase, passed=False, reasons=[str(error)])


def _phase_body(phase: str, state: MigrationState, context: phases.Context) -> PhaseRecord:
    if phase == PREFLIGHT:
        return phases.preflight(context, _promotion(state))
    if phase == FETCH:
        return phases.fetch(context)
    if phase == SMOKE:
        return phases.smoke(context)
    if phase == SOAK:
        return phases.soak(context)
    raise AssertionError(f"no phase {phase}")


def _context(
    state: MigrationState,
    thresholds: MigrateThresholds,
    policy: GuardPolicy,
    store: RunStore,
    hooks: Hooks,
) -> phases.Context:
    def on_engine(engine: dict[str, Any] | None) -> None:
        state.engine = engine
        save_state(state)

    config = RunConfig(state.target, RunSettings(**_settings(state.settings)), settle=hooks.settle)
    return phases.Context(
        target=state.target, config=config, thresholds=thresholds, policy=policy, store=store,
        folder=Path(state.folder), backend_factory=hooks.backend_factory, machine=hooks.machine,
        on_engine=on_engine, on_point=hooks.on_point, ollama_factory=hooks.ollama_factory,
        on_pull=hooks.on_pull,
    )  # fmt: skip


def _settings(stored: Mapping[str, Any]) -> dict[str, Any]:
    """JSON turned tuples into lists; RunSettings wants them back."""
    return {
        key: tuple(value) if isinstance(value, list) else value for key, value in stored.items()
    }


def _policy(thresholds: MigrateThresholds) -> GuardPolicy:
    policy = policy_from_settings()
    if thresholds.budget_bytes is None:
        return policy
    return dataclasses.replace(policy, budget_bytes=thresholds.budget_bytes)


def _smoke_was_cautious(state: MigrationState) -> bool:
    record = state.phases.get(SMOKE)
    return record is not None and record.measurements.get("outcome") == "caution"


def _promotion(state: MigrationState) -> Promotion:
    """The edit promoting would make, from the file as it is now (pure but for the read)."""
    spec = resolve_model(state.target)
    path = Path(spec.paths[0]) if spec.paths else Path(state.target)
    n_ctx = state.settings.get("n_ctx")
    return plan_promotion(
        read_config(Path(state.config_path)), state.alias, path.stem, path,
        source=state.source, settings={"n_ctx": n_ctx} if n_ctx else None,
        block=Path(state.folder).name,
    )  # fmt: skip


def _promote(state: MigrationState) -> None:
    promotion = _promotion(state)
    apply_promotion(Path(state.config_path), promotion)
    state.config_change = promotion.to_dict()
    state.verdict = "promote"
    state.status = PROMOTED
    fallback = promotion.fallback or "no fallback"
    state.reasons = [
        f"every phase passed; {state.alias} -> {promotion.value} ({fallback} kept as fallback)"
    ]
    _finish(state)


def _rollback(state: MigrationState, reasons: list[str]) -> None:
    stop_leftover_engine(state)
    if state.config_change is not None:
        undo_promotion(Path(state.config_path), Promotion.from_dict(state.config_change))
        state.config_change = None
    state.verdict = "rollback"
    state.status = ROLLED_BACK
    state.phase = VERDICT
    state.reasons = reasons
    _finish(state)


def _finish(state: MigrationState) -> None:
    save_state(state)
    state.report = str(write_report(state))
    save_state(state)


def _interrupted(state: MigrationState, error: BaseException) -> None:
    """Leave a state ``--resume`` and ``--rollback`` can use; the engine is gone already."""
    stop_leftover_engine(state)
    what = (
        "interrupted (Ctrl-C)"
        if isinstance(error, KeyboardInterrupt)
        else f"{type(error).__name__}: {error}"
    )
    state.interruptions.append(f"{state.phase}: {what}")
    if not state.finished:
        state.status = INTERRUPTED
    save_state(state)


def stop_leftover_engine(state: MigrationState) -> None:
    """Stop the engine a killed run left behind (same pid and start time), and its children."""
    engine, state.engine = state.engine, None
    if not engine:
        return
    try:
        process = psutil.Process(engine["pid"])
        if abs(process.create_time() - engine["create_time"]) > 0.01:
            return  # the pid was reused by another process
        tree = [process, *process.children(recursive=True)]
    except psutil.Error:
        return
    for member in tree:
        with contextlib.suppress(psutil.Error):
            member.terminate()
    _, alive = psutil.wait_procs(tree, timeout=ENGINE_STOP_GRACE_S)
    for member in alive:
        with contextlib.suppress(psutil.Error):
            member.kill()
    psutil.wait_procs(alive, timeout=ENGINE_STOP_GRACE_S)
