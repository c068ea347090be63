"""The guard's decision, pure: ``decide(state, observation) -> Action | None``.

Nothing here reads the clock, the machine or a process; the ``Guard`` thread
observes, asks, then acts (``yoyu.guard.guard``), as exo's worker plan and
llama-swap's Swapper keep policy apart from machinery. Tests call it with
plain numbers.

Levels: an observation is ``ok``, ``caution`` or ``abort``. Besides the floors
themselves, the trend counts: the least-squares slope of available memory over
the recent samples says when the abort floor will be reached, and a crossing
due within ``lead_time_s`` is an abort *now*, so a fast ramp is caught before
it crosses rather than after.

The ladder, one step per decision, each one logged by the caller::

    caution:  warn -> (still caution after grace, target can unload) unload
    abort:    unload (when the target can) -> SIGTERM to the tree
              -> SIGKILL once grace_s has passed since SIGTERM, or at once
                 when available memory falls below the kill floor

A SIGTERM is a commitment: SIGKILL follows after the grace period even if
memory recovers meanwhile, since a half-stopped process helps no one. At the
abort level the guard does not spend a decision on a warning: the unload or
SIGTERM is the warning.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace

from yoyu.guard.policy import Thresholds
from yoyu.units import format_bytes

MIN_TREND_POINTS = 3
CALM_S = 1.0  # all well for this long ends an episode: the next trouble warns afresh


class Level(enum.IntEnum):
    OK = 0
    CAUTION = 1
    ABORT = 2


class Step(str, enum.Enum):
    WARN = "warn"
    UNLOAD = "unload"
    TERMINATE = "terminate"
    KILL = "kill"


@dataclass(frozen=True)
class Observation:
    """What the guard sees at one instant, budget already applied.

    ``trend`` holds recent ``(t_s, available_bytes)`` points, oldest first,
    ending with this one; ``tree_alive`` whether the guarded tree has any
    process left.
    """

    t_s: float
    available_bytes: int
    trend: tuple[tuple[float, int], ...] = ()
    swap_growth_bytes: int = 0
    gpu_free_bytes: int | None = None  # the least free memory over GPUs
    psi_some: float | None = None
    psi_full: float | None = None
    macos_pressure: str | None = None
    tree_alive: bool = True
    # The least available memory the plan expects while the guarded tree grows to its
    # planned peak: a trend is not extrapolated below it while memory is above it.
    planned_low_bytes: int | None = None


@dataclass(frozen=True)
class Trigger:
    """Which floor an observation crossed, and the figure that crossed it."""

    level: Level
    floor: str  # "abort", "caution", "swap_growth", "gpu_free", "psi_some", "psi_full", "macos"
    threshold: float
    figure: float
    predicted: bool = False
    seconds_to_floor: float | None = None

    @property
    def message(self) -> str:
        return _describe(self)


@dataclass(frozen=True)
class Action:
    step: Step
    trigger: Trigger | None  # None for a KILL that only follows the grace period

    @property
    def message(self) -> str:
        reason = self.trigger.message if self.trigger else "the grace period after SIGTERM ended"
        return f"{self.step.value}: {reason}"


@dataclass(frozen=True)
class GuardState:
    """Where the ladder stands; ``advance`` returns the next one (never mutated)."""

    thresholds: Thresholds
    can_unload: bool = False
    warned_at: float | None = None
    unload_started_at: float | None = None
    unload_done: bool = False
    terminated_at: float | None = None
    killed_at: float | None = None
    calm_since: float | None = None


def slope_bytes_per_s(points: Sequence[tuple[float, int]]) -> float | None:
    """Least-squares slope of available memory, or None with too few points or no time span."""
    if len(points) < MIN_TREND_POINTS:
        return None
    count = len(points)
    mean_t = sum(t for t, _ in points) / count
    mean_v = sum(v for _, v in points) / count
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread <= 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def seconds_to_floor(observation: Observation, floor_bytes: int) -> float | None:
    """When the trend reaches ``floor_bytes`` (0 when already below), None when not falling.

    The trend counts only while memory is still going: the latest point must be
    below the one ``MIN_TREND_POINTS - 1`` samples back, so a process that took
    memory fast and stopped is not judged by the slope of its past ramp. Nor
    while a planned load is still above where its plan says it stops
    (``planned_low_bytes``): a model loading at 1 GiB/s toward a planned
    520 MiB is not a ramp toward the floor. Past that point, the plan was
    wrong and the trend counts again.
    """
    if observation.available_bytes <= floor_bytes:
        return 0.0
    planned_low = observation.planned_low_bytes
    if planned_low is not None and observation.available_bytes > planned_low > floor_bytes:
        return None
    slope = slope_bytes_per_s(observation.trend)
    if slope is None or slope >= 0 or not still_falling(observation.trend):
        return None
    return (observation.available_bytes - floor_bytes) / -slope


def still_falling(points: Sequence[tuple[float, int]]) -> bool:
    return len(points) >= MIN_TREND_POINTS and points[-1][1] < points[-MIN_TREND_POINTS][1]


def assess(thresholds: Thresholds, observation: Observation) -> Trigger | None:
    """The most severe floor crossed (abort before caution), or None when all is well."""
    for check in (_abort_floor, _psi_full, _macos_abort, _caution_floor, *_CAUTION_CHECKS):
        trigger = check(thresholds, observation)
        if trigger is not None:
            return trigger
    return None


def decide(state: GuardState, observation: Observation) -> Action | None:
    """The next step of the ladder, or None when nothing needs doing now."""
    if state.killed_at is not None:
        return None
    trigger = assess(state.thresholds, observation)
    if state.terminated_at is not None:
        return _after_terminate(state, observation, trigger)
    if trigger is None:
        return None
    if trigger.level is Level.ABORT:
        return _on_abort(state, observation, trigger)
    return _on_caution(state, observation, trigger)


def advance(state: GuardState, observation: Observation, action: Action | None) -> GuardState:
    """The state once ``action`` was taken at ``observation`` (episodes end when all is well)."""
    t_s = observation.t_s
    if action is None:
        return _maybe_reset(state, observation)
    step = action.step
    if step is Step.WARN:
        return replace(state, warned_at=t_s)
    if step is Step.UNLOAD:
        return replace(state, unload_started_at=t_s, warned_at=state.warned_at or t_s)
    if step is Step.TERMINATE:
        return replace(state, terminated_at=t_s)
    return replace(state, killed_at=t_s)


def unload_finished(state: GuardState) -> GuardState:
    """The unload the guard started has returned."""
    return replace(state, unload_done=True)


def _after_terminate(
    state: GuardState, observation: Observation, trigger: Trigger | None
) -> Action | None:
    if not observation.tree_alive or state.terminated_at is None:
        return None
    if observation.available_bytes <= state.thresholds.kill_bytes:
        return Action(Step.KILL, trigger)
    if observation.t_s - state.terminated_at >= state.thresholds.grace_s:
        return Action(Step.KILL, None)
    return None


def _on_abort(state: GuardState, observation: Observation, trigger: Trigger) -> Action | None:
    if state.can_unload and state.unload_started_at is None:
        return Action(Step.UNLOAD, trigger)
    if not observation.tree_alive:
        return None
    if state.can_unload and not state.unload_done and state.unload_started_at is not None:
        waited = observation.t_s - state.unload_started_at
        critical = observation.available_bytes <= state.thresholds.kill_bytes
        if waited < state.thresholds.grace_s and not critical:
            return None  # the unload is still under way; give it its grace period
    return Action(Step.TERMINATE, trigger)


def _on_caution(state: GuardState, observation: Observation, trigger: Trigger) -> Action | None:
    if state.warned_at is None:
        return Action(Step.WARN, trigger)
    patient = observation.t_s - state.warned_at < state.thresholds.grace_s
    if state.can_unload and state.unload_started_at is None and not patient:
        return Action(Step.UNLOAD, trigger)
    return None


def _maybe_reset(state: GuardState, observation: Observation) -> GuardState:
    """The next trouble starts a fresh ladder once the tree that was stopped has gone,
    or once all has been well for ``CALM_S`` with no unload under way."""
    fresh = GuardState(state.thresholds, can_unload=state.can_unload)
    if state.terminated_at is not None or state.killed_at is not None:
        return state if observation.tree_alive else fresh
    if state.warned_at is None and state.unload_started_at is None:
        return state
    if assess(state.thresholds, observation) is not None:
        return replace(state, calm_since=None)
    if state.calm_since is None:
        return replace(state, calm_since=observation.t_s)
    unloading = state.unload_started_at is not None and not state.unload_done
    if observation.t_s - state.calm_since < CALM_S or unloading:
        return state
    return fresh


# --- the floors -------------------------------------------------------------------


def _abort_floor(thresholds: Thresholds, observation: Observation) -> Trigger | None:
    floor = thresholds.abort_bytes
    seconds = seconds_to_floor(observation, floor)
    if seconds is None or seconds > thresholds.lead_time_s:
        return None
    predicted = observation.available_bytes > floor
    return Trigger(Level.ABORT, "abort", floor, observation.available_bytes, predicted, seconds)


def _caution_floor(thresholds: Thresholds, observation: Observation) -> Trigger | None:
    floor = thresholds.caution_bytes
    seconds = seconds_to_floor(observation, floor)
    if seconds is None or seconds > thresholds.lead_time_s:
        return None
    predicted = observation.available_bytes > floor
    return Trigger(Level.CAUTION, "caution", floor, observation.available_bytes, predicted, seconds)


def _psi_full(thresholds: Thresholds, observation: Observation) -> Trigger | None:
    limit, value = thresholds.psi_full, observation.psi_full
    if limit is None or value is None or value < limit:
        return None
    return Trigger(Level.ABORT, "psi_full", limit, value)


def _macos_abort(thresholds: Thresholds, observation: Observation) -> Trigger | None:
    return _macos(thresholds, observation, abort=True)


def _macos_caution(thresholds: Thresholds, observation: Observation) -> Trigger | None:
    return _macos(thresholds, observation, abort=False)


def _macos(thresholds: Thresholds, observation: Observation, *, abort: bool) -> Trigger | None:
    levels = ("normal", "warn", "critical")
    level = observation.macos_pressure
    if level not in levels[1:]:
        return None
    severity, limit = levels.index(level or "normal"), levels.index(thresholds.macos_abort_level)
    if abort and severity >= limit:
        return Trigger(Level.ABORT, "macos", limit, severity)
    if not abort and severity < limit:
        return Trigger(Level.CAUTION, "macos", limit, severity)
    return None


def _swap_growth(thresholds: Thresholds, observation: Observation) -> Trigger | None:
    limit = thresholds.swap_growth_bytes
    if limit is None or observation.swap_growth_bytes < limit:
        return None
    return Trigger(Level.CAUTION, "swap_growth", limit, observation.swap_growth_bytes)


def _gpu_free(thresholds: Thresholds, observation: Observation) -> Trigger | None:
    floor, free = thresholds.gpu_free_floor_bytes, observation.gpu_free_bytes
    if floor is None or free is None or free >= floor:
        return None
    return Trigger(Level.CAUTION, "gpu_free", floor, free)


def _psi_some(thresholds: Thresholds, observation: Observation) -> Trigger | None:
    limit, value = thresholds.psi_some, observation.psi_some
    if limit is None or value is None or value < limit:
        return None
    return Trigger(Level.CAUTION, "psi_some", limit, value)


_CAUTION_CHECKS = (_swap_growth, _gpu_free, _psi_some, _macos_caution)


def _describe(trigger: Trigger) -> str:
    """One line naming the floor and the figure that crossed it."""
    name = trigger.floor
    if name in ("abort", "caution"):
        figure, floor = format_bytes(int(trigger.figure)), format_bytes(int(trigger.threshold))
        if trigger.predicted:
            return (
                f"available memory {figure} is falling and will cross the {name} floor "
                f"{floor} in {trigger.seconds_to_floor or 0:.2f} s"
            )
        return f"available memory {figure} is below the {name} floor {floor}"
    if name == "swap_growth":
        return (
            f"swap use grew by {format_bytes(int(trigger.figure))}, more than the "
            f"swap_growth limit {format_bytes(int(trigger.threshold))}"
        )
    if name == "gpu_free":
        return (
            f"GPU free memory {format_bytes(int(trigger.figure))} is below the "
            f"gpu_free_floor {format_bytes(int(trigger.threshold))}"
        )
    if name in ("psi_some", "psi_full"):
        return (
            f"memory pressure {name.replace('_', ' ')} avg10 {trigger.figure:.1f}% is at or "
            f"above the {name} limit {trigger.threshold:.1f}%"
        )
    levels = ("normal", "warn", "critical")
    return f"macOS memory pressure is {levels[int(trigger.figure)]}"
