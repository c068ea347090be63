"""The Plan page: a model (served, installed, catalog or a path) on a machine (this one,
a preset, or presets as a cluster): the plan, its per-device bars, its moves, and the
launch settings to copy.

The plan is ``make_plan``'s, with a served model's own load settings as admission
sizes it (as the MCP ``plan_model`` tool does); the settings are
``emit_settings``', as ``yoyu plan --emit`` prints them. A row of "What fits here"
(``fitting``) opens its model here with the ranking's engine and free memory, so the
plan it shows is made as the row was.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from yoyu.errors import BadRequestError, ConfigError, ModelFileError, SettingsError, YoyuError
from yoyu.estimate.engine import ENGINES
from yoyu.gateway.dashboard.fitting import size_field
from yoyu.gateway.service import GatewayService
from yoyu.gateway.sizing import served_settings
from yoyu.machine.presets import list_presets, load_machine
from yoyu.machine.types import Machine
from yoyu.models import resolve_model
from yoyu.models.catalog import USES, catalog_entries, catalog_names, relatives_of
from yoyu.plan.emit import emit_settings
from yoyu.plan.planner import make_plan
from yoyu.plan.ranking import FIT_ENGINE
from yoyu.plan.types import PlanRequest

SINGLE_TARGETS = ("llama-server", "ollama")
CLUSTER_TARGETS = ("llama-server", "rpc", "exo")
NO_CLUSTER = "# exo splits a model over machines: pick two or more presets under Cluster\n"
MAX_NODES = 8


@dataclass(frozen=True)
class PlanForm:
    """The Plan form's choices, read."""

    model: str
    machine: str | None  # a preset or machine file; None: this machine
    nodes: Sequence[str]  # cluster presets, the head first
    ctx: int | None  # None: the served or default context; 0: the model's own
    engine: str | None  # None: the engine that would load it here
    ram_free_bytes: int | None
    gpu_free_bytes: int | None


def plan_choices(service: GatewayService) -> dict[str, Any]:
    """What the pickers offer: served, installed and catalog models; machine presets;
    the catalog's families and uses, and the engine "What fits here" ranks for."""
    listing = service.list_models(installed=True)
    return {
        "served": [entry.id for entry in listing.served if entry.kind == "model"],
        "installed": [dataclasses.asdict(model) for model in listing.installed],
        "catalog": catalog_names(),
        "presets": [{"name": p.name, "description": p.description} for p in list_presets()],
        "families": sorted({entry.family for entry in catalog_entries()}),
        "uses": list(USES),
        "fit_engine": FIT_ENGINE,
    }


class Planner:
    """Plans for the page; this machine is probed once, on the first plan that needs it."""

    def __init__(self, service: GatewayService, probe: Callable[[], Machine]) -> None:
        self.service = service
        self._probe = probe
        self._machine: Machine | None = None
        self._lock = threading.Lock()

    def plan(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The plan for the form's choices; a choice that cannot be planned is the asker's
        mistake (400), as a bad flag is the CLI user's."""
        try:
            return self._plan(payload)
        except (SettingsError, ConfigError, ModelFileError) as error:
            raise BadRequestError(str(error)) from None

    def _plan(self, payload: dict[str, Any]) -> dict[str, Any]:
        form = _parse(payload)
        served = self.service.config.served.get(form.model)
        ref = str(served.path) if served is not None and served.path else form.model
        spec = resolve_model(ref)
        settings = served_settings(
            served.settings if served else {}, spec.context_length,
            form.engine or self.service.planning_engine(form.model),
        )  # fmt: skip
        if form.ctx is not None:
            settings = dataclasses.replace(settings, n_ctx=form.ctx or spec.context_length or 0)
        cluster = [load_machine(name) for name in form.nodes]
        machine = form.machine
        target = cluster[0] if cluster else (load_machine(machine) if machine else self.here())
        request = PlanRequest(
            settings=settings, ram_free_bytes=form.ram_free_bytes,
            gpu_free_bytes=form.gpu_free_bytes,
        )  # fmt: skip
        catalog = relatives_of(spec)  # the smaller models a "smaller model" move may name
        plan = make_plan(spec, target, request, nodes=cluster or None, catalog=catalog)
        emitted = {}
        for name in CLUSTER_TARGETS if cluster else SINGLE_TARGETS:
            try:
                emitted[name] = emit_settings(name, plan, spec, ref, target, request).text
            except YoyuError as error:
                emitted[name] = f"# {error}\n"
        if not cluster:
            emitted["exo"] = NO_CLUSTER
        return {**plan.to_dict(), "emitted": emitted}

    def here(self) -> Machine:
        with self._lock:
            if self._machine is None:
                self._machine = self._probe()
            return self._machine


def _parse(payload: dict[str, Any]) -> PlanForm:
    """The form's choices; each one that cannot be read says how to write it."""
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequestError('name a model: {"model": "a served id, an installed name or a path"}')
    machine = payload.get("machine") or None
    nodes = payload.get("nodes") or []
    ctx = payload.get("ctx")
    engine = payload.get("engine") or None
    if machine is not None and not isinstance(machine, str):
        raise BadRequestError('"machine" is a preset name, or empty for this machine')
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise BadRequestError('"nodes" is a list of machine presets, the head first')
    if len(nodes) == 1 or len(nodes) > MAX_NODES:
        raise BadRequestError(f"a cluster has 2 to {MAX_NODES} nodes, not {len(nodes)}")
    if ctx is not None and (isinstance(ctx, bool) or not isinstance(ctx, int) or ctx < 0):
        raise BadRequestError('"ctx" is a number of tokens (0: the model\'s own)')
    if engine is not None and (not isinstance(engine, str) or engine not in ENGINES):
        raise BadRequestError(f'"engine" is one of {", ".join(sorted(ENGINES))}, not {engine!r}')
    return PlanForm(
        model.strip(), machine, nodes, ctx, engine,
        ram_free_bytes=size_field("free", payload.get("free")),
        gpu_free_bytes=size_field("gpu_free", payload.get("gpu_free")),
    )  # fmt: skip
