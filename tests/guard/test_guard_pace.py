"""The guard's pace against a real process: slow while nothing moves, fast from the first
sample of a ramp (the pure choice is tested with plain numbers in test_pace.py)."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from conftest import MIB, Hog
from yoyu.guard import AuditLog, Guard, GuardPolicy, ProcessTarget
from yoyu.guard.pace import FAST_HOLD_S
from yoyu.testing.waiting import wait_until

GIB = 1024 * MIB
# Caution at 2 GiB, plus the 1 GiB idle margin: the guard may go slow until 1 GiB is taken.
IDLE_BUDGET = 4 * GIB
RAMP_MIB_S = 1024
RAMP_LIMIT_MIB = 512
FAST_GAP_S = 0.1  # a gap this short is the fast pace (20 ms), with room for a busy machine


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


@pytest.mark.slow
def test_an_idle_guard_samples_slowly_and_fast_from_the_first_sample_of_a_ramp(
    start_hog: Callable[..., Hog], tmp_path: Path
) -> None:
    if psutil.virtual_memory().available < IDLE_BUDGET + GIB:
        pytest.skip("needs 5 GiB available for the guard to start idle under a 4 GiB budget")
    hog = start_hog(RAMP_MIB_S, "--limit", str(RAMP_LIMIT_MIB), "--wait-stdin")
    assert hog.read_line() == "waiting"
    policy = GuardPolicy(budget_bytes=IDLE_BUDGET)
    with Guard(ProcessTarget(hog.pid), policy, audit=AuditLog(tmp_path / "guard.jsonl")) as guard:
        wait_until(
            lambda: guard.interval_s == policy.idle_interval_s,
            FAST_HOLD_S + 3, "the guard to slow down", poll_s=0.05,
        )  # fmt: skip
        time.sleep(4 * policy.idle_interval_s)
        assert hog.process.stdin is not None
        hog.process.stdin.write(b"go\n")
        hog.process.stdin.flush()
        hog.read_until_taken(RAMP_LIMIT_MIB * MIB)
        time.sleep(0.2)
        times = [sample.t_s for sample in guard.samples()]
    ramp_start = hog.taken_levels()[0][0]
    before = [t for t in times if t < ramp_start]
    after = [t for t in times if t >= ramp_start]
    assert statistics.median(gaps(before[-4:])) >= 0.8 * policy.idle_interval_s
    # The second sample after the ramp began has seen at least a quarter second of it,
    # 256 MiB: from it on, the gaps are the fast pace.
    assert max(gaps(after[1:])) < FAST_GAP_S, gaps(after)
    assert after[1] - ramp_start <= 2 * policy.idle_interval_s + FAST_GAP_S
