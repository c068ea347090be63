"""Watching what a model really uses: sampler, phase profile, leak check, run store, plots.

Sampler(pids)            background thread: system, process tree, GPUs (types.Sample)
phase_profile(...)       baseline -> loaded -> pre_generation -> peak -> post -> stabilized
stabilize(...)           wait until readings settle (injectable clock)
check_leak(points)       slope of anonymous + swapped memory with a verdict
RunStore(path)           runs, samples and events in SQLite
plot_run(...)            timeline PNG (yoyu.monitor.plot; imports matplotlib when called)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoyu.errors import RunStoreError
from yoyu.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from yoyu.monitor.leak import LeakCheck, check_leak, fit_slope, leak_points
    from yoyu.monitor.phases import (
        FIRST_TOKEN,
        GENERATION_END,
        GENERATION_START,
        LOAD_END,
        LOAD_START,
        STABILIZED,
        PhaseProfile,
        PhaseReading,
        Stabilization,
        phase_profile,
        settling_figures,
        stabilize,
    )
    from yoyu.monitor.sampler import Sampler
    from yoyu.monitor.store import RunRecord, RunStore
    from yoyu.monitor.types import Event, GpuSample, ProcessSample, Sample, SystemSample
else:  # each submodule is imported when one of its names is first used
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "yoyu.monitor.leak": ("LeakCheck", "check_leak", "fit_slope", "leak_points"),
            "yoyu.monitor.phases": (
                "FIRST_TOKEN",
                "GENERATION_END",
                "GENERATION_START",
                "LOAD_END",
                "LOAD_START",
                "STABILIZED",
                "PhaseProfile",
                "PhaseReading",
                "Stabilization",
                "phase_profile",
                "settling_figures",
                "stabilize",
            ),
            "yoyu.monitor.sampler": ("Sampler",),
            "yoyu.monitor.store": ("RunRecord", "RunStore"),
            "yoyu.monitor.types": ("Event", "GpuSample", "ProcessSample", "Sample", "SystemSample"),
        },
    )

__all__ = [
    "FIRST_TOKEN",
    "GENERATION_END",
    "GENERATION_START",
    "LOAD_END",
    "LOAD_START",
    "STABILIZED",
    "Event",
    "GpuSample",
    "LeakCheck",
    "PhaseProfile",
    "PhaseReading",
    "ProcessSample",
    "RunRecord",
    "RunStore",
    "RunStoreError",
    "Sample",
    "Sampler",
    "Stabilization",
    "SystemSample",
    "check_leak",
    "fit_slope",
    "leak_points",
    "phase_profile",
    "settling_figures",
    "stabilize",
]
