"""A/B statistics of phase profiles: median and spread per phase, difference against noise.

Pure functions of plain values, so the rule is tested without loading a model.
The rule: the difference of the medians (B minus A) is real when it is larger
than the noise, the wider of the two ranges (max - min) seen over the repeats
of either side, and larger than ``floor`` (the sampler's own resolution).
With fewer than two runs per side there is no noise estimate: ``None``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from yoyu.monitor.phases import PHASE_NAMES, PhaseProfile

METRICS = (
    "process_rss_bytes",
    "process_anon_bytes",
    "process_file_bytes",
    "process_swap_bytes",
    "system_available_bytes",
    "swap_used_bytes",
    "gpu_used_bytes",
)
SPEED_METRICS = ("prefill_tps", "decode_tps")


@dataclass(frozen=True)
class Spread:
    """Median and range of one figure over the repeats of one side."""

    median: float
    low: float
    high: float
    n: int

    @property
    def range(self) -> float:
        return self.high - self.low

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "low": self.low, "high": self.high, "n": self.n}


@dataclass(frozen=True)
class Difference:
    """B against A for one figure of one phase (``phase`` is "speed" for tokens/s)."""

    phase: str
    metric: str
    a: Spread
    b: Spread
    delta: float  # b.median - a.median
    noise: float  # max(a.range, b.range)
    exceeds_noise: bool | None  # None: fewer than two runs on a side

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "metric": self.metric,
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "delta": self.delta,
            "noise": self.noise,
            "exceeds_noise": self.exceeds_noise,
        }


def spread_of(values: Sequence[float | None]) -> Spread | None:
    """Median and range of the known values; None when none is known."""
    known = [float(value) for value in values if value is not None]
    if not known:
        return None
    return Spread(statistics.median(known), min(known), max(known), len(known))


def phase_values(profiles: Sequence[PhaseProfile], phase: str, metric: str) -> list[float | None]:
    """One figure of one phase across runs (None where the phase or figure is missing)."""
    values: list[float | None] = []
    for profile in profiles:
        reading = profile.readings()[phase]
        values.append(None if reading is None else getattr(reading, metric))
    return values


def profile_stats(profiles: Sequence[PhaseProfile]) -> dict[str, dict[str, Spread]]:
    """Per phase, per metric: the spread over runs (metrics never measured are left out)."""
    table: dict[str, dict[str, Spread]] = {}
    for phase in PHASE_NAMES:
        row = {m: spread_of(phase_values(profiles, phase, m)) for m in METRICS}
        table[phase] = {metric: spread for metric, spread in row.items() if spread is not None}
    return table


def difference(phase: str, metric: str, a: Spread, b: Spread, floor: float = 0.0) -> Difference:
    """B minus A, and whether it stands out of the noise (see the module docstring)."""
    delta = b.median - a.median
    noise = max(a.range, b.range)
    exceeds = None if min(a.n, b.n) < 2 else abs(delta) > max(noise, floor)
    return Difference(phase, metric, a, b, delta, noise, exceeds)


def compare_stats(
    a: Mapping[str, Mapping[str, Spread]],
    b: Mapping[str, Mapping[str, Spread]],
    floor: float = 0.0,
) -> list[Difference]:
    """Every (phase, metric) both sides measured, in phase order."""
    differences = []
    for phase, metrics in a.items():
        for metric, spread_a in metrics.items():
            spread_b = b.get(phase, {}).get(metric)
            if spread_b is not None:
                differences.append(difference(phase, metric, spread_a, spread_b, floor))
    return differences
