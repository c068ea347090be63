"""How much memory a managed model will take: the plan's estimate, asked once per model.

The plan is a pure function of (model, machine, settings); this module reads
the GGUF header, probes the machine once, and keeps the answer, so admission
costs a dictionary lookup after the first request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from yoyu.estimate.types import RunSettings
from yoyu.gateway.config import ServedModel
from yoyu.machine.probe import probe_machine
from yoyu.machine.types import Machine
from yoyu.models.resolve import read_model_path
from yoyu.plan.planner import make_plan
from yoyu.plan.types import PlanRequest

DEFAULT_CTX = 4096


@dataclass(frozen=True)
class Sizing:
    """What a model needs, and the plan's verdict on this machine (``None``: not planned)."""

    need_bytes: int
    verdict: str | None
    source: str  # "config" (the user's memory = ...) or "plan"


class PlanSizer:
    """``need(model)`` from the config's ``memory`` or the plan; thread-safe and cached."""

    def __init__(self, machine: Callable[[], Machine] = probe_machine) -> None:
        self._machine_source = machine
        self._machine: Machine | None = None
        self._cache: dict[str, Sizing] = {}
        self._lock = threading.Lock()

    def size(self, model: ServedModel) -> Sizing:
        with self._lock:
            cached = self._cache.get(model.id)
            if cached is None:
                cached = self._size(model)
                self._cache[model.id] = cached
            return cached

    def _size(self, model: ServedModel) -> Sizing:
        if model.memory_bytes is not None:
            return Sizing(model.memory_bytes, None, "config")
        if model.path is None:
            return Sizing(0, None, "config")
        if self._machine is None:
            self._machine = self._machine_source()
        spec = read_model_path(model.path)
        settings = run_settings(model.settings, spec.context_length)
        plan = make_plan(spec, self._machine, PlanRequest(settings=settings, propose_moves=False))
        return Sizing(plan.estimate.total_bytes, plan.verdict.value, "plan")


def run_settings(settings: Mapping[str, object], context_length: int | None) -> RunSettings:
    """The estimator's view of a served model's load settings (llama.cpp names)."""
    n_ctx = _int(settings.get("n_ctx")) or min(DEFAULT_CTX, context_length or DEFAULT_CTX)
    n_batch = _int(settings.get("n_batch")) or 512
    return RunSettings(
        n_ctx=n_ctx,
        n_batch=n_batch,
        n_ubatch=min(_int(settings.get("n_ubatch")) or 512, n_batch),
        n_gpu_layers=_int(settings.get("n_gpu_layers")) or 0,
        flash_attn=bool(settings.get("flash_attn", False)),
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
