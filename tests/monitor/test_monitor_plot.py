"""The timeline PNG: written, readable by matplotlib, of the promised size."""

from __future__ import annotations

from pathlib import Path

from matplotlib import image
from test_monitor_phases import EVENTS, SAMPLES

from yoyu.monitor.plot import DPI, FIGURE_SIZE_IN, plot_run
from yoyu.monitor.store import RunRecord

GIB = 1024**3
RUN = RunRecord(7, 1_750_000_000.0, None, "tiny-llama", "one-shot", {}, None, None)


def test_plot_writes_a_png_matplotlib_can_read_back(tmp_path: Path) -> None:
    path = plot_run(
        RUN, SAMPLES, EVENTS, tmp_path / "run.png", {"caution": 4 * GIB, "abort": 2 * GIB}
    )
    assert path.stat().st_size > 0
    pixels = image.imread(path)
    width, height = (int(inches * DPI) for inches in FIGURE_SIZE_IN)
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0  # not a blank canvas


def test_plot_of_a_run_without_samples_or_marks_still_draws(tmp_path: Path) -> None:
    path = plot_run(RUN, [], [], tmp_path / "empty.png")
    assert image.imread(path).shape[0] > 0
