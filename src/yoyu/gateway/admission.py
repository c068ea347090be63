"""Admission: may this model be loaded now, and what must be unloaded first?

A pure decision on plain values, as llama-swap's ``Swapper`` and exo's
``plan``: no clocks, no I/O, no logging, so every rule is tested with numbers.
``yoyu.gateway.residency`` observes (live memory, what is loaded), calls
``decide_admission``, and carries the decision out.

The rules, in order:

1. A load must leave at least ``floor_bytes`` of the machine's available
   memory (the guard's floor): ``available - need >= floor``.
2. With a ``budget_bytes``, the models yoyu loaded hold at most that much
   together, the new one included.
3. When either rule fails, idle models (no request in flight) that are not
   pinned are unloaded until both hold: those whose TTL has run out first,
   then the least recently used. Unloading one is assumed to give back what
   it holds.
4. If even unloading every candidate is not enough, the answer is a refusal
   with the figures; the router then takes the next route.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from yoyu.units import format_bytes


@dataclass(frozen=True)
class Resident:
    """A model yoyu loaded, as admission sees it."""

    id: str
    bytes: int
    last_used_s: float  # monotonic time of its last request's end (or its load)
    in_flight: int = 0
    pinned: bool = False
    ttl_s: float = 0.0  # idle seconds before it may go; 0 = no TTL


@dataclass(frozen=True)
class AdmissionRequest:
    """What a load needs, against what the machine has now."""

    model_id: str
    need_bytes: int
    available_bytes: int
    floor_bytes: int
    budget_bytes: int | None
    resident: tuple[Resident, ...]
    now_s: float


@dataclass(frozen=True)
class Admission:
    """The decision: load (after unloading ``evict``, in order) or refuse, and why."""

    admit: bool
    evict: tuple[str, ...]
    reason: str


def decide_admission(request: AdmissionRequest) -> Admission:
    """Load, load after unloading some idle models, or refuse; see the module rules."""
    shortfall = _shortfall(request, freed=0, held=_held(request.resident))
    if shortfall <= 0:
        return Admission(True, (), _fits(request))
    evicted: list[Resident] = []
    for candidate in eviction_order(request.resident, request.now_s):
        evicted.append(candidate)
        freed = sum(model.bytes for model in evicted)
        shortfall = _shortfall(request, freed, _held(request.resident) - freed)
        if shortfall <= 0:
            names = ", ".join(model.id for model in evicted)
            reason = f"{_fits(request, freed)} after unloading idle {names}"
            return Admission(True, tuple(model.id for model in evicted), reason)
    return Admission(False, (), _refusal(request, shortfall, evicted))


def eviction_order(resident: Sequence[Resident], now_s: float) -> list[Resident]:
    """Idle, unpinned models: TTL expired first, then least recently used."""
    idle = [model for model in resident if model.in_flight == 0 and not model.pinned]
    return sorted(idle, key=lambda model: (not ttl_expired(model, now_s), model.last_used_s))


def ttl_expired(model: Resident, now_s: float) -> bool:
    return model.ttl_s > 0 and now_s - model.last_used_s >= model.ttl_s


def expired_models(resident: Sequence[Resident], now_s: float) -> list[str]:
    """Idle, unpinned models whose TTL has run out: the reaper unloads these."""
    return [
        model.id
        for model in resident
        if model.in_flight == 0 and not model.pinned and ttl_expired(model, now_s)
    ]


def _held(resident: Sequence[Resident]) -> int:
    return sum(model.bytes for model in resident)


def _shortfall(request: AdmissionRequest, freed: int, held: int) -> int:
    """Bytes still missing under the tighter of the floor and the budget rule."""
    live = request.need_bytes + request.floor_bytes - (request.available_bytes + freed)
    if request.budget_bytes is None:
        return live
    return max(live, held + request.need_bytes - request.budget_bytes)


def _fits(request: AdmissionRequest, freed: int = 0) -> str:
    left = request.available_bytes + freed - request.need_bytes
    return (
        f"{request.model_id} needs {format_bytes(request.need_bytes)}, leaving "
        f"{format_bytes(left)} available (floor {format_bytes(request.floor_bytes)})"
    )


def _refusal(request: AdmissionRequest, shortfall: int, evictable: Sequence[Resident]) -> str:
    """``shortfall`` is what is still missing once every idle model would be unloaded."""
    budget = (
        f", budget {format_bytes(request.budget_bytes)}" if request.budget_bytes is not None else ""
    )
    after = "even after unloading every idle model" if evictable else "and no model is idle"
    return (
        f"{request.model_id} needs {format_bytes(request.need_bytes)} but only "
        f"{format_bytes(request.available_bytes)} is available (floor "
        f"{format_bytes(request.floor_bytes)}{budget}); {format_bytes(shortfall)} short {after}"
    )
