"""The guard's flags for commands that run a model (run, chat, soak, profile).

Every such run is guarded by default with the ``[guard]`` policy of
``yoyu.toml``; ``--no-guard`` opts out and ``--budget SIZE`` makes the guard
act as if only SIZE were available when the run started, as ``yoyu guard``
does. When the guard stops the model the command ends with its reason and
exit 75 instead of the engine's complaint about a vanished server.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from yoyu.backends.llamacpp_server import LlamaCppServerBackend
from yoyu.errors import GuardStoppedError, SettingsError, YoyuError
from yoyu.guard import policy_from_settings
from yoyu.guard.policy import with_overrides
from yoyu.machine.types import Machine
from yoyu.plan.types import RiskThresholds
from yoyu.runner import ModelRun, RunConfig
from yoyu.runner.guarding import RunGuard
from yoyu.runner.watchers import Watcher

NoGuardOpt = Annotated[
    bool,
    typer.Option(
        "--no-guard", help="Do not guard the run (by default the model is unloaded or stopped "
        "before available memory crosses the \\[guard] abort floor).",
    ),
]  # fmt: skip
BudgetOpt = Annotated[
    str | None,
    typer.Option(
        help="Plan and guard as if only SIZE (e.g. 8GiB) were available when the run starts."
    ),
]


def run_guard(no_guard: bool, budget: str | None) -> RunGuard | None:
    """The guard for this command's runs, or ``None`` with ``--no-guard``."""
    if no_guard:
        if budget is not None:
            raise SettingsError.from_message(
                "--budget sets the guard's budget; drop --no-guard to use it"
            )
        return None
    return RunGuard(with_overrides(policy_from_settings(), budget=budget))


def planned_memory(guard: RunGuard | None) -> dict[str, Any]:
    """``RunConfig`` fields for a budget: the plan counts on no more than the guard
    watches over, and keeps the guard's own floors free (so a run the plan admits is
    one the guard lets live)."""
    budget = None if guard is None else guard.policy.budget_bytes
    if guard is None or budget is None:
        return {}
    floors = guard.policy.resolve(budget)
    thresholds = RiskThresholds(safe_bytes=floors.caution_bytes, caution_bytes=floors.abort_bytes)
    return {"free_bytes": budget, "thresholds": thresholds}


def watchers(guard: RunGuard | None) -> list[Watcher]:
    return [] if guard is None else [guard]


def guarded_run(
    config: RunConfig,
    guard: RunGuard | None,
    mode: str,
    seed: int | None,
    machine: Machine | None = None,
    engine: str | None = None,
) -> ModelRun:
    """``config``'s run, planned within the guard's budget and watched by the guard;
    on ``machine`` when given (this one with its ``yoyu node`` workers), else this one;
    on ``engine`` when named (llama-server, llama-cpp-python, vllm), else the default."""
    planned = dataclasses.replace(config, **planned_memory(guard))
    factory = functools.partial(LlamaCppServerBackend, engine=engine)
    return ModelRun(
        planned, mode=mode, seed=seed, watchers=watchers(guard), machine=machine,
        backend_factory=factory,
    )  # fmt: skip


@contextmanager
def guard_verdict(guard: RunGuard | None) -> Iterator[None]:
    """Turn the engine's failure into the guard's reason when the guard caused it.

    A model the guard stopped after its answer also ends the command this way:
    the memory figures of such a run describe a machine in trouble.
    """
    try:
        yield
    except YoyuError:
        _raise_if_stopped(guard)
        raise
    _raise_if_stopped(guard)


def _raise_if_stopped(guard: RunGuard | None) -> None:
    if guard is not None and guard.stop_message is not None:
        raise GuardStoppedError(f"the guard stopped the model: {guard.stop_message}") from None
