"""The Models page: every served model with its state, its plan beside what its engine
measured, what is in flight, and the graph of routes and aliases over them.

Everything comes from the service (``list_models``, ``model_states``, residency,
the backends' own ``loaded_models``): the page keeps no state of its own.
"""

from __future__ import annotations

from typing import Any

from yoyu.backends.protocol import LoadedModel
from yoyu.errors import UnknownModelError, YoyuError
from yoyu.gateway.config import ServedModel
from yoyu.gateway.service import GatewayService, ModelEntry

# The plan's components beside the buffer kinds llama.cpp prints for them.
PLAN_VS_BUFFERS = (
    ("weights", "weights_bytes", "model"),
    ("KV cache", "kv_bytes", "kv"),
    ("compute", "compute_bytes", "compute"),
    ("output", "output_bytes", "output"),
)


def model_states(service: GatewayService) -> list[dict[str, Any]]:
    """The cheap part, sent every second: state, requests answered now and waiting in
    the model's line (of how many it takes), idle time."""
    resident = {info.id: info for info in service.residency.snapshot()}
    queues = {queue.model: queue for queue in service.queues()}
    states = []
    for state in service.model_states():
        info, queue = resident.get(state.id), queues.get(state.id)
        states.append(
            {
                "id": state.id,
                "state": state.state,
                "detail": state.detail,
                "running": queue.running if queue else 0,
                "waiting": queue.waiting if queue else 0,
                "max_concurrent": queue.max_concurrent if queue else None,
                "max_queue": queue.max_queue if queue else None,
                "idle_s": round(info.idle_s) if info else None,
                "held_bytes": info.bytes if info else None,
            }
        )
    return states


def models_view(service: GatewayService) -> dict[str, Any]:
    """Every served model with its plan and measured buffers; routes and aliases."""
    listing = service.list_models()
    engines = _loaded_by_id(service)
    states = {state["id"]: state for state in model_states(service)}
    served = [entry for entry in listing.served if entry.kind == "model"]
    return {
        "models": [_model_row(service, entry, engines.get(entry.id), states) for entry in served],
        "routes": {e.id: list(e.targets) for e in listing.served if e.kind == "route"},
        "aliases": {e.id: e.targets[0] for e in listing.served if e.kind == "alias"},
    }


def _model_row(
    service: GatewayService,
    entry: ModelEntry,
    engine: LoadedModel | None,
    states: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    components, plan_error = _plan_components(service, entry)
    return {
        "id": entry.id,
        "backend": entry.backend,
        "managed": entry.managed,
        "remote": entry.remote,
        "loaded": entry.loaded,
        "pinned": entry.pinned,
        "private": entry.private,
        "ttl_s": entry.ttl_s,
        "size_bytes": entry.size_bytes,
        "need_bytes": entry.need_bytes,
        "verdict": entry.verdict,
        **{key: value for key, value in states.get(entry.id, {}).items() if key != "id"},
        "components": _components(components, engine),
        "plan_error": plan_error,
        "engine_pid": engine.pid if engine else None,
        "load_s": engine.load_s if engine else None,
    }


def _plan_components(service: GatewayService, entry: ModelEntry) -> tuple[dict[str, int], str]:
    if not entry.managed:
        return {}, ""
    try:
        return dict(service.sizing(entry.id).components), ""
    except YoyuError as error:
        return {}, str(error)


def _components(planned: dict[str, int], engine: LoadedModel | None) -> list[dict[str, Any]]:
    """Each component: the plan's bytes and the engine's own buffer (None: not measured)."""
    buffers = engine.buffers if engine is not None else None
    return [
        {
            "name": name,
            "planned_bytes": planned.get(plan_key),
            "measured_bytes": buffers.total(kind) if buffers and kind in buffers.by_kind else None,
        }
        for name, plan_key, kind in PLAN_VS_BUFFERS
    ]


def _loaded_by_id(service: GatewayService) -> dict[str, LoadedModel]:
    found: dict[str, LoadedModel] = {}
    for backend in service.backends.values():
        if backend.remote:
            continue
        try:
            found.update((model.id, model) for model in backend.loaded_models())
        except YoyuError:
            continue
    return found


def managed_model(service: GatewayService, model_id: str) -> ServedModel:
    """The served model the Load button names, if the gateway loads it itself."""
    served = service.config.served.get(model_id)
    if served is None:
        raise UnknownModelError(f"model {model_id!r} is not served here")
    if not served.managed:
        raise UnknownModelError(
            f"{model_id} is loaded by its backend ({served.backend}), not by yoyu; ask it there"
        )
    return served


def load_model(service: GatewayService, model_id: str) -> dict[str, Any]:
    """Load as a request would: admission first, then a lease released at once."""
    served = managed_model(service, model_id)
    service.residency.lease(served).release()
    return {"id": model_id, "loaded": True}


def unload_model(service: GatewayService, model_id: str) -> dict[str, Any]:
    """Unload now if idle; a model with requests in flight stays (and the answer says so)."""
    managed_model(service, model_id)
    unloaded = service.unload(model_id)
    busy = next((i.in_flight for i in service.residency.snapshot() if i.id == model_id), 0)
    reason = f"{busy} request(s) in flight" if busy else ("" if unloaded else "not loaded")
    return {"id": model_id, "unloaded": unloaded, "reason": reason}
