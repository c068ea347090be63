"""Is a process leaking? A least-squares slope of its anonymous + swapped memory.

RSS alone hides leaks: model weights are mmap'd files, and the kernel drops and
re-reads their pages with the page cache, so RSS moves by hundreds of MiB for
reasons that are not growth (a known Ollama leak of 5-12 MiB per request was
invisible in RSS). Anonymous memory (heap, KV cache, buffers) plus what was
swapped out of it is what a leak grows, so that is what is fitted.

The rule, in MiB per minute, with ``se`` the slope's standard error:

* ``leak``          slope > threshold and slope >= sigmas * se (growth, and not noise)
* ``no_leak``       slope + sigmas * se <= threshold (even the pessimistic slope is small)
* ``inconclusive``  anything else: too few points, too short, or too noisy to say

``sigmas`` defaults to 3 (about a 0.1 % chance that noise alone looks like a leak).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from yoyu.errors import SettingsError
from yoyu.monitor.types import Sample

MIB = 1024**2
DEFAULT_THRESHOLD_MIB_PER_MIN = 1.0
DEFAULT_SIGMAS = 3.0
MIN_POINTS = 4

Verdict = Literal["leak", "no_leak", "inconclusive"]


@dataclass(frozen=True)
class SlopeFit:
    slope: float  # units of y per unit of x
    stderr: float  # standard error of the slope; 0 for points exactly on a line
    n_points: int


@dataclass(frozen=True)
class LeakCheck:
    verdict: Verdict
    slope_mib_per_min: float
    stderr_mib_per_min: float
    threshold_mib_per_min: float
    n_points: int
    duration_s: float
    reason: str


def fit_slope(xs: Sequence[float], ys: Sequence[float]) -> SlopeFit:
    """Ordinary least squares y = a + b x; the slope b and its standard error."""
    n = len(xs)
    if n != len(ys) or n < 2:
        raise SettingsError(f"a slope needs at least 2 paired points (got {n} and {len(ys)})")
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        raise SettingsError("a slope needs points at two different times at least")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    if n == 2:
        return SlopeFit(slope, math.inf, n)
    residuals = sum((y - mean_y - slope * (x - mean_x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return SlopeFit(slope, math.sqrt(residuals / (n - 2) / sxx), n)


def leak_points(samples: Sequence[Sample]) -> list[tuple[float, int]]:
    """(t_s, anonymous + swapped bytes) of the watched tree, per sample."""
    return [(sample.t_s, sample.process.growth_bytes) for sample in samples]


def check_leak(
    points: Sequence[tuple[float, int]],
    threshold_mib_per_min: float = DEFAULT_THRESHOLD_MIB_PER_MIN,
    sigmas: float = DEFAULT_SIGMAS,
) -> LeakCheck:
    """Apply the module's rule to (seconds, bytes) points, e.g. stabilized memory per turn."""
    duration_s = points[-1][0] - points[0][0] if points else 0.0
    if len(points) < MIN_POINTS or duration_s <= 0:
        reason = f"{len(points)} points over {duration_s:.1f} s; need {MIN_POINTS} over time"
        return LeakCheck(
            "inconclusive", 0.0, math.inf, threshold_mib_per_min, len(points), duration_s, reason
        )
    fit = fit_slope([t for t, _ in points], [b for _, b in points])
    slope, stderr = fit.slope * 60 / MIB, fit.stderr * 60 / MIB
    verdict, reason = _verdict(slope, stderr, threshold_mib_per_min, sigmas)
    return LeakCheck(
        verdict, slope, stderr, threshold_mib_per_min, fit.n_points, duration_s, reason
    )


def _verdict(slope: float, stderr: float, threshold: float, sigmas: float) -> tuple[Verdict, str]:
    figures = f"{slope:.2f} ± {stderr:.2f} MiB/min against {threshold:.2f} MiB/min"
    if slope > threshold and slope >= sigmas * stderr:
        return "leak", f"grows {figures}, {sigmas:g} sigma clear of noise"
    if slope + sigmas * stderr <= threshold:
        return "no_leak", f"{figures}: even +{sigmas:g} sigma stays under the threshold"
    return "inconclusive", f"{figures}: too noisy or too short to tell"
