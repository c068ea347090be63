"""``yoyu profile --compare A.toml B.toml``: two settings, runs alternated, unloaded between.

Alternating (A B A B ...) spreads slow drifts of the machine (page cache,
other programs) over both sides instead of charging them to one. Every run
loads the model afresh and unloads it after its answer settles, so no run
inherits another's memory. The statistics are ``yoyu.runner.stats``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from yoyu.backends.protocol import ChatMessage
from yoyu.errors import SettingsError
from yoyu.estimate.types import RunSettings
from yoyu.monitor.phases import PhaseProfile
from yoyu.runner.options import RunConfig
from yoyu.runner.result import Speed
from yoyu.runner.session import ModelRun
from yoyu.runner.stats import (
    Difference,
    Spread,
    compare_stats,
    difference,
    profile_stats,
    spread_of,
)
from yoyu.units import MIB

NOISE_FLOOR_BYTES = MIB // 4  # allocator jitter between loads of the same settings


@dataclass(frozen=True)
class Side:
    """One of the settings being compared, with its name (the TOML file's stem)."""

    label: str
    settings: RunSettings


@dataclass(frozen=True)
class ABRun:
    """One run of one side."""

    label: str
    repeat: int
    run_id: int | None
    profile: PhaseProfile
    speed: Speed


@dataclass(frozen=True)
class ABResult:
    labels: tuple[str, str]
    runs: tuple[ABRun, ...]
    stats: dict[str, dict[str, dict[str, Spread]]]  # label -> phase -> metric
    differences: tuple[Difference, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "runs": [_run_dict(run) for run in self.runs],
            "stats": {
                label: {
                    phase: {metric: s.to_dict() for metric, s in metrics.items()}
                    for phase, metrics in phases.items()
                }
                for label, phases in self.stats.items()
            },
            "differences": [d.to_dict() for d in self.differences],
        }


def _run_dict(run: ABRun) -> dict[str, Any]:
    head = {"label": run.label, "repeat": run.repeat, "run_id": run.run_id}
    return {**head, "speed": run.speed.to_dict(), **run.profile.to_dict()}


def schedule(labels: Sequence[str], repeat: int) -> list[tuple[str, int]]:
    """(label, repeat) in alternated order: A B A B ..."""
    if repeat < 1:
        raise SettingsError(f"--repeat must be at least 1, not {repeat}")
    return [(label, index) for index in range(repeat) for label in labels]


def ab_result(labels: tuple[str, str], runs: Sequence[ABRun]) -> ABResult:
    """Statistics per side and the differences, from finished runs (pure)."""
    stats = {label: _side_stats([r for r in runs if r.label == label]) for label in labels}
    differences = compare_stats(stats[labels[0]], stats[labels[1]], floor=NOISE_FLOOR_BYTES)
    speed_a, speed_b = stats[labels[0]].get("speed", {}), stats[labels[1]].get("speed", {})
    differences = [d for d in differences if d.phase != "speed"] + [
        difference("speed", metric, speed_a[metric], speed_b[metric])
        for metric in speed_a
        if metric in speed_b
    ]
    return ABResult(labels, tuple(runs), stats, tuple(differences))


def _side_stats(runs: Sequence[ABRun]) -> dict[str, dict[str, Spread]]:
    table = profile_stats([run.profile for run in runs])
    speed = {
        "prefill_tps": spread_of([run.speed.prefill_tps for run in runs]),
        "decode_tps": spread_of([run.speed.decode_tps for run in runs]),
    }
    table["speed"] = {metric: s for metric, s in speed.items() if s is not None}
    return table


def run_ab(
    base: RunConfig,
    sides: tuple[Side, Side],
    repeat: int,
    messages: Sequence[ChatMessage],
    *,
    make_run: Callable[[RunConfig], ModelRun],
    on_run: Callable[[ABRun], None] | None = None,
    **request: Any,
) -> ABResult:
    """Run both sides ``repeat`` times, alternated; each run loads, answers, unloads."""
    by_label = {side.label: side for side in sides}
    if len(by_label) != 2:
        raise SettingsError("compare two settings files with different names")
    runs = []
    for label, index in schedule(list(by_label), repeat):
        config = dataclasses.replace(base, settings=by_label[label].settings, label=label)
        with make_run(config) as run:
            turn = run.ask(messages, **request)
        ab_run = ABRun(label, index, run.run_id, turn.profile, turn.speed)
        runs.append(ab_run)
        if on_run is not None:
            on_run(ab_run)
    return ab_result((sides[0].label, sides[1].label), runs)
