"""Admission decisions on plain numbers: floor, budget, LRU, TTL, pinned, busy."""

from __future__ import annotations

from yoyu.gateway.admission import (
    AdmissionRequest,
    Resident,
    decide_admission,
    eviction_order,
    expired_models,
)
from yoyu.units import GIB


def ask(need: int, available: int, *resident: Resident, floor: int = 0, budget: int | None = None):
    request = AdmissionRequest("new", need, available, floor, budget, tuple(resident), now_s=100.0)
    return decide_admission(request)


def test_a_model_that_fits_loads_without_unloading_anything() -> None:
    decision = ask(4 * GIB, 10 * GIB, floor=2 * GIB)
    assert decision.admit and decision.evict == ()


def test_the_floor_counts_against_what_is_available() -> None:
    decision = ask(4 * GIB, 5 * GIB, floor=2 * GIB)
    assert not decision.admit
    assert "floor 2.00 GiB" in decision.reason and "1.00 GiB short" in decision.reason


def test_idle_models_go_least_recently_used_first_until_it_fits() -> None:
    old = Resident("old", 3 * GIB, last_used_s=10.0)
    recent = Resident("recent", 3 * GIB, last_used_s=90.0)
    older = Resident("older", 1 * GIB, last_used_s=5.0)
    decision = ask(4 * GIB, 2 * GIB, recent, old, older)
    assert decision.admit
    assert decision.evict == ("older", "old")  # 2 + 1 + 3 = 6 >= 4; "recent" stays


def test_busy_and_pinned_models_are_never_unloaded() -> None:
    busy = Resident("busy", 8 * GIB, last_used_s=1.0, in_flight=1)
    pinned = Resident("pinned", 8 * GIB, last_used_s=1.0, pinned=True)
    decision = ask(4 * GIB, 1 * GIB, busy, pinned)
    assert not decision.admit and decision.evict == ()


def test_expired_ttl_goes_before_least_recently_used() -> None:
    stale = Resident("stale", 2 * GIB, last_used_s=50.0, ttl_s=30.0)  # idle 50 s > 30 s
    lru = Resident("lru", 2 * GIB, last_used_s=1.0, ttl_s=0.0)
    assert [m.id for m in eviction_order([lru, stale], now_s=100.0)] == ["stale", "lru"]
    assert expired_models([lru, stale], now_s=100.0) == ["stale"]
    assert expired_models([stale], now_s=60.0) == []  # idle 10 s < 30 s


def test_a_budget_limits_what_yoyu_holds_even_with_memory_to_spare() -> None:
    loaded = Resident("a", 100, last_used_s=1.0)
    assert ask(100, 10 * GIB, budget=250).admit  # nothing held: fits the budget
    decision = ask(100, 10 * GIB, loaded, budget=150)
    assert decision.admit and decision.evict == ("a",)
    assert not ask(200, 10 * GIB, budget=150).admit


def test_a_refusal_after_unloading_every_idle_model_gives_the_shortfall_left_then() -> None:
    idle = Resident("idle", 3 * GIB, last_used_s=1.0)
    decision = ask(10 * GIB, 2 * GIB, idle)  # 8 GiB short now; 5 GiB short with idle gone
    assert not decision.admit
    assert "5.00 GiB short even after unloading every idle model" in decision.reason
