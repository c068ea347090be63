"""The sampling pace, with plain numbers: slow while all is still, fast on any sign of
movement (a falling slope, the caution floor near, an episode, a load)."""

from __future__ import annotations

import pytest

from yoyu.guard import GuardState, Observation, Thresholds
from yoyu.guard.pace import (
    FAST_HOLD_S,
    MOVING_BYTES_PER_S,
    MOVING_HORIZON_S,
    falling_bytes_per_s,
    idle_margin_bytes,
    needs_watching,
    next_interval,
    ramp_bytes_per_s,
)

MIB = 1024**2
GIB = 1024**3
FAST_S, IDLE_S = 0.02, 0.25
FLOORS = Thresholds(
    capacity_bytes=32 * GIB, caution_bytes=4 * GIB, abort_bytes=2 * GIB, kill_bytes=GIB
)
CALM = GuardState(FLOORS)
PLENTY = 20 * GIB  # far above caution + the idle margin (4 + 1 GiB)


def watching(
    available: int = PLENTY,
    previous: int = PLENTY,
    state: GuardState = CALM,
    loading: bool = False,
) -> bool:
    """Whether the pace is fast at t = 1.25 s, one idle interval after a point at 1.0 s."""
    recent = [(1.0, previous), (1.0 + IDLE_S, available)]
    seen = Observation(t_s=1.0 + IDLE_S, available_bytes=available)
    return needs_watching(state, seen, recent, loading=loading, idle_interval_s=IDLE_S)


def test_still_memory_far_from_the_floors_is_sampled_slowly() -> None:
    assert not watching()
    assert next_interval(FAST_S, IDLE_S, quiet_s=FAST_HOLD_S) == IDLE_S


def test_the_first_sample_of_a_fast_fall_switches_to_fast() -> None:
    assert watching(previous=PLENTY, available=PLENTY - GIB)  # 4 GiB/s seen from idle
    near = 6 * GIB  # 2 GiB above caution: 512 MiB/s reaches it in 4 s
    assert watching(previous=near, available=near - 128 * MIB)


def test_a_slow_fall_far_from_the_floor_or_a_rise_stays_slow() -> None:
    assert not watching(previous=PLENTY, available=PLENTY - 256 * MIB)  # 1 GiB/s, 16 s away
    assert not watching(previous=6 * GIB, available=6 * GIB - 8 * MIB)  # 32 MiB/s
    assert not watching(previous=PLENTY - GIB, available=PLENTY)  # memory given back


def test_a_ramp_is_a_fall_that_would_reach_caution_within_the_horizon() -> None:
    assert ramp_bytes_per_s(16 * GIB) == 16 * GIB / MOVING_HORIZON_S
    assert ramp_bytes_per_s(0) == MOVING_BYTES_PER_S


def test_near_the_caution_floor_is_fast_even_when_still() -> None:
    margin = idle_margin_bytes(IDLE_S)
    assert margin == GIB  # what a 4 GiB/s ramp takes in one idle interval
    near = FLOORS.caution_bytes + margin - MIB
    assert watching(available=near, previous=near)
    far = FLOORS.caution_bytes + margin + MIB
    assert not watching(available=far, previous=far)


def test_an_episode_or_a_load_is_fast() -> None:
    assert watching(state=GuardState(FLOORS, warned_at=0.5))
    assert watching(state=GuardState(FLOORS, unload_started_at=0.5))
    assert watching(state=GuardState(FLOORS, terminated_at=0.5))
    assert watching(loading=True)


def test_fast_holds_a_while_after_the_last_movement() -> None:
    assert next_interval(FAST_S, IDLE_S, quiet_s=0.0) == FAST_S
    assert next_interval(FAST_S, IDLE_S, quiet_s=FAST_HOLD_S - 0.01) == FAST_S
    assert next_interval(FAST_S, IDLE_S, quiet_s=FAST_HOLD_S + 0.01) == IDLE_S


def test_an_idle_interval_equal_to_the_fast_one_turns_adaptation_off() -> None:
    assert next_interval(FAST_S, FAST_S, quiet_s=3600.0) == FAST_S
    assert next_interval(FAST_S, 0.01, quiet_s=3600.0) == FAST_S


def test_the_fall_rate_needs_two_points_in_time_order() -> None:
    assert falling_bytes_per_s([], IDLE_S) == 0.0
    assert falling_bytes_per_s([(1.0, GIB)], IDLE_S) == 0.0
    assert falling_bytes_per_s([(1.0, GIB), (1.0, 0)], IDLE_S) == 0.0
    assert falling_bytes_per_s([(0.0, 3 * GIB), (1.0, 2 * GIB), (1.5, GIB)], 0.5) == 2 * GIB


def test_the_fall_rate_is_taken_over_an_idle_interval_not_one_fast_gap() -> None:
    # At 50 Hz, 8 MiB taken by someone else within 20 ms is 400 MiB/s between two samples,
    # but 32 MiB/s over the last quarter second: not a ramp.
    points = [(t / 50, PLENTY) for t in range(13)] + [(13 / 50, PLENTY - 8 * MIB)]
    assert falling_bytes_per_s(points, IDLE_S) == pytest.approx(8 * MIB / 0.26)
    assert falling_bytes_per_s(points, IDLE_S) < MOVING_BYTES_PER_S
    # A ramp over the same quarter second is one.
    ramp = [(t / 50, PLENTY - t * 80 * MIB) for t in range(14)]
    assert falling_bytes_per_s(ramp, IDLE_S) == pytest.approx(4000 * MIB)  # 80 MiB per 20 ms
