"""The Runs page: the run store's runs, one run's phase profile and timeline, two runs
side by side, and a soak's slope with its uncertainty band.

Pure functions of what the store holds (a record, its samples and events): the
profile is ``phase_profile``'s, the slope ``check_leak``'s, as ``yoyu runs
show`` and ``yoyu soak`` compute them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from yoyu.monitor.leak import DEFAULT_SIGMAS, MIN_POINTS, check_leak, fit_slope
from yoyu.monitor.phases import LOAD_START, STABILIZED, phase_profile
from yoyu.monitor.store import RunRecord, run_state
from yoyu.monitor.types import Event, Sample

TIMELINE_POINTS = 600  # enough for a chart's width; a long soak is thinned to this


def run_summary(record: RunRecord) -> dict[str, Any]:
    """A run as the list shows it."""
    result = record.result or {}
    peak = ((result.get("phases") or {}).get("peak")) or {}
    return {
        "id": record.id,
        "started": record.started,
        "finished": record.finished,
        "state": run_state(record),
        "model": record.model,
        "mode": record.mode,
        "label": record.settings.get("label"),
        "n_ctx": record.settings.get("n_ctx"),
        "peak_rss_bytes": peak.get("process_rss_bytes"),
        "error": result.get("error"),
    }


def run_detail(
    record: RunRecord, samples: Sequence[Sample], events: Sequence[Event]
) -> dict[str, Any]:
    """One run: its settings, the six phase readings, the timeline, its marks, a soak's fit."""
    profile = phase_profile(samples, events)
    origin = _origin(samples, events)
    phases = {
        name: None if reading is None else {**asdict(reading), "t_s": reading.t_s - origin}
        for name, reading in profile.readings().items()
    }
    return {
        **run_summary(record),
        "settings": record.settings,
        "prediction": record.prediction,
        "phases": phases,
        "stabilize_s": profile.stabilize_s,
        "samples": len(samples),
        "timeline": timeline(samples, origin),
        "events": [
            {"t_s": e.t_s - origin, "kind": e.kind, "detail": e.detail[:200]} for e in events
        ],
        "soak": soak_fit(samples, events, origin),
    }


def _origin(samples: Sequence[Sample], events: Sequence[Event]) -> float:
    """Time zero of a run: its load's start, else its first sample."""
    load = next((event.t_s for event in events if event.kind == LOAD_START), None)
    if load is not None:
        return load
    return samples[0].t_s if samples else 0.0


def timeline(samples: Sequence[Sample], origin: float) -> dict[str, list[Any]]:
    """Columns for the chart, thinned to ``TIMELINE_POINTS``: each kept sample is the one
    with the largest footprint of its stretch, so a peak is never thinned away."""
    kept = _thin(samples, TIMELINE_POINTS)
    return {
        "t_s": [s.t_s - origin for s in kept],
        "available_bytes": [s.system.available_bytes for s in kept],
        "rss_bytes": [s.process.rss_bytes for s in kept],
        "anon_bytes": [s.process.anon_bytes for s in kept],
        "file_bytes": [s.process.file_bytes for s in kept],
        "swap_bytes": [s.process.swap_bytes for s in kept],
        "gpu_used_bytes": [s.gpu_used_bytes for s in kept],
    }


def _thin(samples: Sequence[Sample], most: int) -> list[Sample]:
    if len(samples) <= most:
        return list(samples)
    size = math.ceil(len(samples) / most)
    stretches = [samples[i : i + size] for i in range(0, len(samples), size)]
    return [max(stretch, key=lambda s: s.process.footprint_bytes) for stretch in stretches]


def soak_points(samples: Sequence[Sample], events: Sequence[Event]) -> list[tuple[float, int]]:
    """A soak's points: anonymous + swapped memory at each turn's ``stabilized`` mark."""
    ordered = sorted(samples, key=lambda s: s.t_s)
    points = []
    for event in events:
        if event.kind != STABILIZED:
            continue
        before = [s for s in ordered if s.t_s <= event.t_s]
        if before:
            points.append((before[-1].t_s, before[-1].process.growth_bytes))
    return points


def soak_fit(
    samples: Sequence[Sample], events: Sequence[Event], origin: float
) -> dict[str, Any] | None:
    """The soak's slope and verdict (``check_leak``), and the band the slope's uncertainty
    draws around the fitted line: slope ± ``DEFAULT_SIGMAS`` standard errors, pivoting on
    the points' mean. None for a run with too few turns to fit."""
    points = soak_points(samples, events)
    if len(points) < MIN_POINTS or points[-1][0] <= points[0][0]:
        return None
    leak = check_leak(points)
    times, values = [t for t, _ in points], [float(b) for _, b in points]
    fit = fit_slope(times, values)
    mean_t, mean_b = sum(times) / len(times), sum(values) / len(values)
    spread = DEFAULT_SIGMAS * (fit.stderr if math.isfinite(fit.stderr) else 0.0)

    def line(t: float, slope: float) -> float:
        return mean_b + slope * (t - mean_t)

    bounds = [sorted((line(t, fit.slope - spread), line(t, fit.slope + spread))) for t in times]

    return {
        "verdict": leak.verdict,
        "reason": leak.reason,
        "slope_mib_per_min": leak.slope_mib_per_min,
        "stderr_mib_per_min": leak.stderr_mib_per_min if math.isfinite(fit.stderr) else None,
        "sigmas": DEFAULT_SIGMAS,
        "t_s": [t - origin for t in times],
        "growth_bytes": [int(b) for b in values],
        "fit_bytes": [line(t, fit.slope) for t in times],
        "low_bytes": [low for low, _ in bounds],
        "high_bytes": [high for _, high in bounds],
    }
