"""The hook a run offers to whatever must watch it while a model is resident.

A watcher is a function that gets the run's backend, sampler and store and
returns a context manager; the run enters it just before loading and leaves
it just after the last answer settles, before unloading. The guard plugs in
here without the runner knowing it::

    def guard_watcher(context: WatchContext) -> Guard:
        return Guard(BackendTarget(context.backend), policy_from_settings())

    ModelRun(config, watchers=[guard_watcher])
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from yoyu.backends.protocol import Backend
from yoyu.monitor.sampler import Sampler
from yoyu.monitor.store import RunStore


@dataclass(frozen=True)
class WatchContext:
    """What a watcher may look at: the engine, the live samples, and where the run is stored."""

    backend: Backend
    sampler: Sampler
    store: RunStore
    run_id: int
    model_id: str
    planned_bytes: int | None = None  # the plan's peak on the host for this run


Watcher = Callable[[WatchContext], AbstractContextManager[object]]
