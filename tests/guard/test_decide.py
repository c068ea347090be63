"""The pure decision, with plain numbers: floors, the trend, the ladder, episodes."""

from __future__ import annotations

import dataclasses
import os

from yoyu.guard import (
    GuardState,
    Level,
    Observation,
    Step,
    Thresholds,
    advance,
    assess,
    decide,
    seconds_to_floor,
    slope_bytes_per_s,
)
from yoyu.guard.decide import unload_finished
from yoyu.guard.signals import signal_tree

MIB = 1024**2
FLOORS = Thresholds(
    capacity_bytes=1024 * MIB,
    caution_bytes=512 * MIB,
    abort_bytes=256 * MIB,
    kill_bytes=128 * MIB,
    swap_growth_bytes=256 * MIB,
    gpu_free_floor_bytes=100 * MIB,
    psi_some=40.0,
    psi_full=60.0,
    grace_s=2.0,
    lead_time_s=1.0,
)


def seen(t_s: float, available_mib: float, **fields: object) -> Observation:
    return Observation(t_s=t_s, available_bytes=int(available_mib * MIB), **fields)  # type: ignore[arg-type]


def ramp(t_s: float, available_mib: float, mib_per_s: float) -> Observation:
    """An observation whose last 5 samples, 20 ms apart, fell at ``mib_per_s``."""
    points = tuple(
        (t_s - 0.02 * k, int((available_mib + mib_per_s * 0.02 * k) * MIB))
        for k in range(4, -1, -1)
    )
    return Observation(t_s=t_s, available_bytes=int(available_mib * MIB), trend=points)


def state(**fields: object) -> GuardState:
    return GuardState(FLOORS, **fields)  # type: ignore[arg-type]


def test_plenty_of_memory_needs_nothing() -> None:
    assert decide(state(), seen(0, 900)) is None


def test_below_abort_terminates_at_once_when_there_is_nothing_to_unload() -> None:
    action = decide(state(), seen(0, 200))
    assert action is not None and action.step is Step.TERMINATE
    assert action.trigger is not None and action.trigger.floor == "abort"
    assert not action.trigger.predicted
    assert "200.00 MiB is below the abort floor 256.00 MiB" in action.message


def test_below_abort_unloads_first_when_the_target_can() -> None:
    action = decide(state(can_unload=True), seen(0, 200))
    assert action is not None and action.step is Step.UNLOAD


def test_a_fast_ramp_is_caught_before_it_crosses() -> None:
    # 700 MiB available, falling 1 GiB/s: the abort floor is 0.43 s away, inside the 1 s lead.
    action = decide(state(), ramp(1.0, 700, 1024))
    assert action is not None and action.step is Step.TERMINATE
    assert action.trigger is not None and action.trigger.predicted
    assert action.trigger.seconds_to_floor is not None
    assert 0.4 < action.trigger.seconds_to_floor < 0.46


def test_a_slow_ramp_far_from_the_floor_is_left_alone() -> None:
    # 100 MiB/s with 444 MiB to go to abort is 4.4 s away; caution (188 MiB away) 1.9 s.
    assert decide(state(), ramp(1.0, 700, 100)) is None


def test_a_ramp_that_stopped_is_not_judged_by_its_past_slope() -> None:
    points = ((0.0, 900 * MIB), (0.02, 700 * MIB), (0.04, 600 * MIB), (0.06, 600 * MIB),
              (0.08, 600 * MIB))  # fmt: skip
    observation = Observation(t_s=0.08, available_bytes=600 * MIB, trend=points)
    assert slope_bytes_per_s(points) is not None and slope_bytes_per_s(points) < 0  # type: ignore[operator]
    assert seconds_to_floor(observation, 256 * MIB) is None
    assert decide(state(), observation) is None


def test_a_load_within_its_plan_is_not_a_runaway_ramp() -> None:
    # The same 1 GiB/s fall as above, from a load the plan says stops at 600 MiB available.
    loading = ramp(1.0, 700, 1024)
    within_plan = dataclasses.replace(loading, planned_low_bytes=600 * MIB)
    assert seconds_to_floor(within_plan, 256 * MIB) is None
    assert decide(state(), within_plan) is None
    # below where the plan said it would stop, the plan was wrong: the trend counts again
    past_plan = dataclasses.replace(ramp(1.0, 550, 1024), planned_low_bytes=600 * MIB)
    action = decide(state(), past_plan)
    assert action is not None and action.step is Step.TERMINATE
    # a plan that itself ends below the floor protects nothing
    into_floor = dataclasses.replace(loading, planned_low_bytes=200 * MIB)
    assert decide(state(), into_floor) is not None


def test_too_few_points_give_no_trend() -> None:
    assert slope_bytes_per_s([(0.0, 100), (0.02, 50)]) is None
    assert slope_bytes_per_s([(0.0, 100), (0.0, 50), (0.0, 10)]) is None


def test_caution_warns_once_then_unloads_after_the_grace_period() -> None:
    current = state(can_unload=True)
    first = decide(current, seen(0.0, 400))
    assert first is not None and first.step is Step.WARN
    current = advance(current, seen(0.0, 400), first)
    assert decide(current, seen(1.0, 400)) is None  # warned; still within grace
    later = decide(current, seen(2.5, 400))
    assert later is not None and later.step is Step.UNLOAD


def test_caution_never_signals() -> None:
    current = state()
    for t_s in (0.0, 1.0, 3.0, 10.0):
        action = decide(current, seen(t_s, 400))
        assert action is None or action.step is Step.WARN
        current = advance(current, seen(t_s, 400), action)


def test_sigterm_is_followed_by_sigkill_after_grace_even_if_memory_recovers() -> None:
    current = advance(state(), seen(0.0, 200), decide(state(), seen(0.0, 200)))
    assert current.terminated_at == 0.0
    assert decide(current, seen(1.0, 900)) is None
    action = decide(current, seen(2.0, 900))
    assert action is not None and action.step is Step.KILL and action.trigger is None
    assert "grace period" in action.message


def test_below_the_kill_floor_sigkill_does_not_wait_for_grace() -> None:
    current = state(terminated_at=0.0)
    action = decide(current, seen(0.1, 100))
    assert action is not None and action.step is Step.KILL


def test_nothing_more_once_killed_or_when_the_tree_has_gone() -> None:
    assert decide(state(killed_at=0.0), seen(1.0, 10)) is None
    assert decide(state(terminated_at=0.0), seen(5.0, 10, tree_alive=False)) is None


def test_an_unload_under_way_gets_its_grace_then_sigterm_follows() -> None:
    current = state(can_unload=True, unload_started_at=0.0)
    assert decide(current, seen(1.0, 200)) is None
    action = decide(current, seen(2.0, 200))
    assert action is not None and action.step is Step.TERMINATE
    done = unload_finished(current)
    action = decide(done, seen(0.5, 200))  # unload returned and the tree still takes memory
    assert action is not None and action.step is Step.TERMINATE


def test_a_calm_spell_ends_the_episode_so_the_next_trouble_warns_again() -> None:
    current = advance(state(), seen(0.0, 400), decide(state(), seen(0.0, 400)))
    current = advance(current, seen(0.5, 900), None)
    assert current.warned_at is not None  # calm for too short a time
    current = advance(current, seen(1.6, 900), None)
    assert current.warned_at is None
    again = decide(current, seen(2.0, 400))
    assert again is not None and again.step is Step.WARN


def test_a_stopped_tree_that_has_gone_resets_the_ladder() -> None:
    current = state(terminated_at=0.0)
    assert advance(current, seen(0.1, 900, tree_alive=True), None).terminated_at == 0.0
    assert advance(current, seen(0.1, 900, tree_alive=False), None).terminated_at is None


def test_other_signals_set_their_levels() -> None:
    cases = {
        "psi_full": (seen(0, 900, psi_full=70.0), Level.ABORT),
        "psi_some": (seen(0, 900, psi_some=50.0), Level.CAUTION),
        "swap_growth": (seen(0, 900, swap_growth_bytes=300 * MIB), Level.CAUTION),
        "gpu_free": (seen(0, 900, gpu_free_bytes=50 * MIB), Level.CAUTION),
    }
    for floor, (observation, level) in cases.items():
        trigger = assess(FLOORS, observation)
        assert trigger is not None and (trigger.floor, trigger.level) == (floor, level)
        assert trigger.message


def test_macos_pressure_levels() -> None:
    warn = assess(FLOORS, seen(0, 900, macos_pressure="warn"))
    critical = assess(FLOORS, seen(0, 900, macos_pressure="critical"))
    assert warn is not None and warn.level is Level.CAUTION
    assert critical is not None and critical.level is Level.ABORT
    assert "critical" in critical.message
    assert assess(FLOORS, seen(0, 900, macos_pressure="normal")) is None


def test_abort_outranks_caution_signals() -> None:
    trigger = assess(FLOORS, seen(0, 200, psi_some=90.0, swap_growth_bytes=10**12))
    assert trigger is not None and trigger.floor == "abort"


def test_signal_tree_spares_the_guard_and_protected_names() -> None:
    report = signal_tree([os.getpid(), 1], 0, protected=frozenset())
    assert report.signalled == ()
    assert {pid for pid, _ in report.spared} == {os.getpid(), 1}
