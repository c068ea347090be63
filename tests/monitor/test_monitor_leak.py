"""Leak verdicts on synthetic series with known slopes and on real processes."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from monitor_children import MIB, MemoryChild

from yoyu.errors import SettingsError
from yoyu.monitor.leak import check_leak, fit_slope, leak_points
from yoyu.monitor.sampler import Sampler


def series(
    mib_per_min: float, noise_mib: float, minutes: float = 10, every_s: float = 5
) -> list[tuple[float, int]]:
    rng = random.Random(20240601)
    times = [i * every_s for i in range(int(minutes * 60 / every_s) + 1)]
    base = 2048 * MIB
    return [
        (t, int(base + mib_per_min * MIB * t / 60 + rng.gauss(0, noise_mib * MIB))) for t in times
    ]


def test_exact_line_has_its_slope_and_no_error() -> None:
    fit = fit_slope([0, 1, 2, 3], [5, 7, 9, 11])
    assert (fit.slope, fit.stderr, fit.n_points) == (2.0, 0.0, 4)


def test_slope_standard_error_matches_the_textbook_formula() -> None:
    xs, ys = [0.0, 1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 5.0, 4.0]
    fit = fit_slope(xs, ys)
    # By hand: slope = 8/10 = 0.8, residuals sum = 3.6, se = sqrt(3.6 / 3 / 10)
    assert fit.slope == pytest.approx(0.8)
    assert fit.stderr == pytest.approx((3.6 / 3 / 10) ** 0.5)


def test_ten_mib_per_minute_under_noise_is_a_leak() -> None:
    check = check_leak(series(10.0, noise_mib=3.0), threshold_mib_per_min=1.0)
    assert check.verdict == "leak"
    assert abs(check.slope_mib_per_min - 10.0) <= 3 * check.stderr_mib_per_min
    assert check.n_points == 121 and check.duration_s == 600


def test_flat_noisy_memory_is_not_a_leak() -> None:
    check = check_leak(series(0.0, noise_mib=3.0), threshold_mib_per_min=1.0)
    assert check.verdict == "no_leak"
    assert abs(check.slope_mib_per_min) < 1.0


def test_short_or_noisy_evidence_is_inconclusive() -> None:
    assert check_leak(series(10.0, 3.0)[:3]).verdict == "inconclusive"
    noisy = series(2.0, noise_mib=200.0, minutes=2, every_s=10)
    check = check_leak(noisy, threshold_mib_per_min=1.0)
    assert check.verdict == "inconclusive", check.reason


def test_slope_needs_two_distinct_times() -> None:
    with pytest.raises(SettingsError):
        fit_slope([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(SettingsError):
        fit_slope([1.0], [1.0])


@pytest.mark.parametrize(("grows", "expected"), [(True, "leak"), (False, "no_leak")])
def test_real_process_growing_in_small_steps_is_flagged_and_a_steady_one_is_not(
    make_child: Callable[[int], MemoryChild], grows: bool, expected: str
) -> None:
    child = make_child(4)
    for _ in range(3):
        child.hold()  # warm up: the interpreter's first loop allocates a little
    with Sampler(lambda: [child.pid], gpus=False) as sampler:
        for turn in range(12):
            if grows:
                child.grow()
            else:
                child.hold()
            sampler.mark("turn", str(turn))
    turn_times = {event.t_s for event in sampler.events()}
    points = leak_points([s for s in sampler.samples() if s.t_s in turn_times])
    # The turns come milliseconds apart, not minutes: put the threshold at 1 MiB per turn
    # (a quarter of the growing child's 4 MiB steps) on this run's own time scale.
    minutes_per_turn = (points[-1][0] - points[0][0]) / 60 / (len(points) - 1)
    check = check_leak(points, threshold_mib_per_min=1.0 / minutes_per_turn)
    assert check.verdict == expected, check.reason
