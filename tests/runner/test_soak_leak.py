"""Soak's verdict end to end on real processes: one that grows on every turn is a
leak, one that holds steady is not. The real sampler, settling and slope fit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from monitor_children import MemoryChild

from yoyu.monitor.sampler import Sampler
from yoyu.runner import SettlePolicy, SoakPoint, SoakResult, settle_point, soak_loop, soak_result

SETTLE = SettlePolicy(tolerance_bytes=256 * 1024, window_s=0.2, cap_s=3.0)


def soak_child(child: MemoryChild, grow: bool, duration_s: float = 1.5) -> SoakResult:
    sampler = Sampler(lambda: [child.pid], rate_hz=20, gpus=False).start()
    try:
        origin = sampler.sample_now().t_s

        def step(turn: int) -> SoakPoint:
            if grow:
                child.grow()
            else:
                child.hold()
            return settle_point(sampler, SETTLE, turn, origin)

        return soak_result(soak_loop(step, duration_s))
    finally:
        sampler.stop()


@pytest.mark.slow
def test_a_process_growing_every_turn_is_a_leak(
    make_child: Callable[[int], MemoryChild],
) -> None:
    result = soak_child(make_child(2), grow=True)
    assert result.leak.verdict == "leak", result.leak.reason
    growth = [p.growth_bytes for p in result.points]
    assert growth == sorted(growth) and growth[-1] - growth[0] >= 2 * 1024**2 * (len(growth) - 1)
    assert all(point.settled for point in result.points)


@pytest.mark.slow
def test_a_steady_process_is_not(make_child: Callable[[int], MemoryChild]) -> None:
    child = make_child(2)
    child.grow()  # holds memory, just never more
    result = soak_child(child, grow=False)
    assert result.leak.verdict == "no_leak", result.leak.reason
    assert len(result.points) >= 4
