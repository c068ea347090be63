"""A run's memory timeline as a PNG: phases shaded, the guard's floors as lines.

matplotlib is imported only when a plot is drawn (it costs about half a second
and most commands never plot), with the Agg backend so it works without a
display. Memory is drawn in GiB against seconds since the first sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from yoyu.monitor.phases import phase_spans
from yoyu.monitor.store import RunRecord
from yoyu.monitor.types import Event, Sample

GIB = 1024**3
PHASE_COLOURS = {
    "loading": "#f4d03f",
    "idle": "#aed6f1",
    "generation": "#f5b7b1",
    "settling": "#d5f5e3",
}
FIGURE_SIZE_IN = (10.0, 5.0)
DPI = 100


def plot_run(
    run: RunRecord,
    samples: Sequence[Sample],
    events: Sequence[Event],
    path: Path,
    thresholds: Mapping[str, int] | None = None,
) -> Path:
    """Draw the timeline to ``path``; ``thresholds`` maps a label to an available-bytes floor."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=FIGURE_SIZE_IN, dpi=DPI)
    try:
        origin = samples[0].t_s if samples else 0.0
        _shade_phases(axes, events, origin)
        _draw_lines(axes, samples, origin)
        _draw_thresholds(axes, thresholds or {})
        axes.set(xlabel="seconds", ylabel="GiB", title=f"run {run.id}: {run.model} ({run.mode})")
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="upper left", fontsize="small")
        figure.tight_layout()
        figure.savefig(path)
    finally:
        pyplot.close(figure)
    return path


def _shade_phases(axes: Any, events: Sequence[Event], origin: float) -> None:
    labelled: set[str] = set()
    for name, start, end in phase_spans(events):
        label = None if name in labelled else name
        labelled.add(name)
        axes.axvspan(
            start - origin, end - origin, color=PHASE_COLOURS[name], alpha=0.5, label=label
        )


def _draw_lines(axes: Any, samples: Sequence[Sample], origin: float) -> None:
    times = [sample.t_s - origin for sample in samples]
    lines: dict[str, list[int | None]] = {
        "available (system)": [s.system.available_bytes for s in samples],
        "process anon": [s.process.anon_bytes for s in samples],
        "process file": [s.process.file_bytes for s in samples],
        "process RSS": [s.process.rss_bytes for s in samples],
        "swap used": [s.system.swap_used_bytes for s in samples],
        "GPU used": [s.gpu_used_bytes for s in samples],
    }
    for label, values in lines.items():
        if any(value for value in values):
            gib = [float("nan") if value is None else value / GIB for value in values]
            axes.plot(times, gib, label=label, linewidth=1.2)


def _draw_thresholds(axes: Any, thresholds: Mapping[str, int]) -> None:
    for label, floor_bytes in thresholds.items():
        axes.axhline(floor_bytes / GIB, linestyle="--", color="#c0392b", linewidth=1.0)
        position = (0.0, floor_bytes / GIB)
        axes.annotate(
            label, position, xycoords=("axes fraction", "data"), color="#c0392b", va="bottom"
        )
