"""How often the guard samples, pure: fast while anything moves, slowly while all is still.

A gateway's guard lives for weeks and sampling costs ~0.6 ms a time: at 50 Hz
that is ~3 % of a core spent watching nothing. So the guard samples at the
policy's ``interval_s`` only while memory needs watching, and at ``idle_interval_s``
otherwise. Memory needs watching (``needs_watching``) when

- a caller says a load is under way (``Guard.loading()``);
- the guard is in an episode: warned, unloading, signalled;
- available memory fell, over the last idle interval, fast enough to reach the
  caution floor within ``MOVING_HORIZON_S`` (and faster than ``MOVING_BYTES_PER_S``),
  so the first sample that shows a ramp switches to fast. Measured against the
  floor, not as a plain rate: another program on a busy machine moves 100 MiB/s
  now and then, which matters near the floor and not 16 GiB above it;
- available memory is within ``idle_margin_bytes`` of the caution floor: the
  fastest ramp we expect, unseen for one idle interval, must not carry memory
  from above that margin to the caution floor, let alone the abort floor.

After the last sign of movement the guard stays fast for ``FAST_HOLD_S``, so a
ramp that pauses between chunks is not sampled slowly in its pauses. Nothing
here reads the clock or the machine; the ``Guard`` thread applies the result.
"""

from __future__ import annotations

from collections.abc import Sequence

from yoyu.guard.decide import GuardState, Observation
from yoyu.units import GIB, MIB

MOVING_BYTES_PER_S = 64 * MIB  # the least fall that counts as a ramp
MOVING_HORIZON_S = 5.0  # a fall that would reach the caution floor within this is a ramp
# The fastest ramp the guard must expect (benchmarks/guard_reaction.py: a hog writing
# 4 GiB/s; a model read from the page cache loads at a few GiB/s).
FASTEST_RAMP_BYTES_PER_S = 4 * GIB
FAST_HOLD_S = 2.0  # fast this long after the last sign of movement


def idle_margin_bytes(idle_interval_s: float) -> int:
    """How far above the caution floor sampling may slow down: what the fastest ramp takes
    in one idle interval (1 GiB at 0.25 s)."""
    return round(FASTEST_RAMP_BYTES_PER_S * idle_interval_s)


def ramp_bytes_per_s(headroom_bytes: int) -> float:
    """The fall that counts as a ramp with ``headroom_bytes`` above the caution floor."""
    return max(MOVING_BYTES_PER_S, headroom_bytes / MOVING_HORIZON_S)


def falling_bytes_per_s(points: Sequence[tuple[float, int]], span_s: float) -> float:
    """How fast available memory fell over the last ``span_s`` of ``(t_s, bytes)`` points: from
    the newest point at least that old (else the oldest) to the latest; 0 when it rose.

    Over a span, not between the last two points: at 50 Hz, 8 MiB that another program
    takes within 20 ms reads as 400 MiB/s, and would keep an idle guard fast for ever.
    """
    if len(points) < 2:
        return 0.0
    t1, v1 = points[-1]
    t0, v0 = next((p for p in reversed(points) if p[0] <= t1 - span_s), points[0])
    if t1 <= t0:
        return 0.0
    return max(0.0, (v0 - v1) / (t1 - t0))


def in_episode(state: GuardState) -> bool:
    """The ladder has started (a warning, an unload, a signal) and not yet ended."""
    return any(
        at is not None
        for at in (state.warned_at, state.unload_started_at, state.terminated_at, state.killed_at)
    )


def needs_watching(
    state: GuardState,
    observation: Observation,
    recent: Sequence[tuple[float, int]],
    *,
    loading: bool,
    idle_interval_s: float,
) -> bool:
    """Whether memory needs fast sampling now; ``recent`` holds ``(t_s, available_bytes)``
    points over at least the last idle interval (whatever the trend window), the latest last."""
    headroom = observation.available_bytes - state.thresholds.caution_bytes
    return (
        loading
        or in_episode(state)
        or falling_bytes_per_s(recent, idle_interval_s) > ramp_bytes_per_s(headroom)
        or headroom < idle_margin_bytes(idle_interval_s)
    )


def next_interval(fast_s: float, idle_s: float, quiet_s: float) -> float:
    """Seconds to the next sample, ``quiet_s`` seconds after memory last needed watching.
    An idle interval no longer than the fast one turns the adaptation off."""
    if idle_s <= fast_s or quiet_s < FAST_HOLD_S:
        return fast_s
    return idle_s
