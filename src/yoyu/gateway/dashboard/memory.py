"""The Memory page's reading: ``yoyu watch``'s view (machine, engines, GPUs, floors) of the
gateway's own engines, each named by the model it serves, plus the floor admission keeps.

A gateway with no models (``yoyu dashboard``) shows every engine running on the
machine instead, found by name as ``yoyu watch`` finds them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import psutil

from yoyu.backends.protocol import Backend
from yoyu.errors import YoyuError
from yoyu.gateway.service import GatewayService
from yoyu.guard.view import WatchReader, WatchView, engine_pids

Roots = Callable[[], Sequence[tuple[int, str]]]
SEARCH_EVERY_S = 5.0


def gateway_engines(service: GatewayService) -> Roots:
    """The root process of each engine the gateway started, named by its model; an engine
    still starting (no model listed yet) by its backend."""

    def roots() -> list[tuple[int, str]]:
        found: list[tuple[int, str]] = []
        for name, backend in service.backends.items():
            if not backend.remote:
                found += _backend_roots(name, backend)
        return found

    return roots


def _backend_roots(name: str, backend: Backend) -> list[tuple[int, str]]:
    try:
        members = backend.pids()
        if not members:  # nothing of yoyu's runs there (a daemon's engines, or none yet)
            return []
        loaded = [(model.pid, model.id) for model in backend.loaded_models() if model.pid]
    except YoyuError:
        return []
    # pids() lists whole trees: with no model listed yet, its first pid is an engine starting
    starting = [(members[0], f"{name} (starting)")] if members and not loaded else []
    return [(pid, model_id) for pid, model_id in loaded] + starting


class MachineEngines:
    """Every engine on the machine (``yoyu watch``'s search), named by its process; the
    search walks every process (about 6 ms of CPU for 90 of them), so it runs at most
    every ``every_s`` and the trees found are read at each reading in between (one that
    exited drops out of the reading at once)."""

    def __init__(
        self, every_s: float = SEARCH_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._every_s, self._clock = every_s, clock
        self._found: list[tuple[int, str]] = []
        self._searched_at: float | None = None

    def __call__(self) -> list[tuple[int, str]]:
        now = self._clock()
        if self._searched_at is None or now - self._searched_at >= self._every_s:
            self._found = [(pid, _process_name(pid)) for pid in engine_pids()]
            self._searched_at = now
        return self._found


def _process_name(pid: int) -> str:
    try:
        return str(psutil.Process(pid).name())
    except psutil.Error:
        return "?"


def memory_reader(service: GatewayService, gpus: Any = None) -> WatchReader:
    """A reader of the machine and the engines the Memory page shows."""
    roots = gateway_engines(service) if service.config.served else MachineEngines()
    return WatchReader(service.config.guard, gpus=gpus, engines=roots)


def memory_point(view: WatchView, floor_bytes: int, held_bytes: int) -> dict[str, Any]:
    """One reading as the page draws it (bytes as ints; ``t`` in seconds since the epoch)."""
    system = view.system
    return {
        "t": system.wall_time,
        "total_bytes": system.total_bytes,
        "available_bytes": system.available_bytes,
        "swap_total_bytes": system.swap_total_bytes,
        "swap_used_bytes": system.swap_used_bytes,
        "psi_some": system.psi_some_avg10,
        "psi_full": system.psi_full_avg10,
        "macos_pressure": system.macos_pressure,
        "caution_bytes": view.thresholds.caution_bytes,
        "abort_bytes": view.thresholds.abort_bytes,
        "floor_bytes": floor_bytes,
        "held_bytes": held_bytes,
        "level": view.level,
        "reason": view.reason,
        "engines": [asdict(tree) for tree in view.trees],
        "gpus": [asdict(gpu) for gpu in view.gpus],
    }


def timeline_row(point: dict[str, Any]) -> list[float | int | None]:
    """The few figures the timeline keeps per reading: [t, available, swap used, engines'
    resident, engines' anonymous, GPUs used]."""
    engines = point["engines"]
    gpus = point["gpus"]
    return [
        point["t"],
        point["available_bytes"],
        point["swap_used_bytes"],
        sum(engine["rss_bytes"] for engine in engines),
        sum(engine["anon_bytes"] or 0 for engine in engines),
        sum(gpu["used_bytes"] for gpu in gpus) if gpus else None,
    ]
