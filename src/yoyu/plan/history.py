"""What earlier runs measured, beside a new plan: the figure for the same settings, and
a correction when the estimator has been short for this engine and architecture.

Every ``yoyu run``/``chat``/``soak`` stores its prediction and the engine's
measured memory (``yoyu.monitor.store``). A plan for the same model file,
engine and memory settings shows the newest of them ("measured 2026-12-03:
peak 478.20 MiB, predicted 471.32"). Over every stored run of one engine and
architecture, the measured peak divided by the predicted host bytes is that
pair's residual: its median over at least ``MIN_RUNS`` runs is shown, and
when it is above 1 (the estimator was short) the plan adds the difference to
the CPU's figure, so risk and free memory count it. A residual below 1 is
shown but not applied: the estimator's surplus is on purpose (a file's pages
counted as resident, a compute ceiling), and a plan never promises less than
the estimator says. ``yoyu plan --no-history`` leaves all of it out.

Pure: the runs come in as values, read from the store at the edge
(``yoyu.runner.history``).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from yoyu.estimate.types import MemoryEstimate, RunSettings
from yoyu.machine.types import Machine
from yoyu.models.spec import ModelSpec
from yoyu.plan.placement import EstimateFn
from yoyu.units import format_bytes

MIN_RUNS = 3  # below this a median says more about one run than about the estimator
APPLIED_ABOVE = 1.01  # a residual within 1 % is noise, not a correction


@dataclass(frozen=True)
class MeasuredRun:
    """One stored run: what it was planned as and the most its engine held."""

    run_id: int
    started: float  # seconds since the epoch
    model: str
    file_bytes: int
    architecture: str
    settings: dict[str, Any]  # RunSettings.to_dict() of what ran (engine included)
    predicted_host_bytes: int  # the plan's total less what it put on GPUs and nodes
    peak_rss_bytes: int  # the engine's processes, the highest phase of any turn

    @property
    def engine(self) -> str:
        return str(self.settings.get("engine", ""))

    @property
    def ratio(self) -> float:
        return self.peak_rss_bytes / self.predicted_host_bytes


@dataclass(frozen=True)
class Residual:
    """measured / predicted host bytes over the runs of one engine and architecture."""

    engine: str
    architecture: str
    runs: int
    median: float
    low: float
    high: float

    @property
    def applied(self) -> bool:
        return self.runs >= MIN_RUNS and self.median > APPLIED_ABOVE

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "applied": self.applied}


@dataclass(frozen=True)
class History:
    """The newest run with these very settings, and the residual of their engine."""

    same_settings: MeasuredRun | None
    residual: Residual | None

    def to_dict(self) -> dict[str, Any]:
        same = self.same_settings
        return {
            "same_settings": None if same is None else {
                "run_id": same.run_id, "started": same.started,
                "peak_rss_bytes": same.peak_rss_bytes,
                "predicted_host_bytes": same.predicted_host_bytes,
            },
            "residual": None if self.residual is None else self.residual.to_dict(),
        }  # fmt: skip


def residual_of(spec: ModelSpec, engine: str, runs: Sequence[MeasuredRun]) -> Residual | None:
    """The residual of ``engine`` on ``spec``'s architecture, from every matching run."""
    ratios = sorted(
        run.ratio for run in runs
        if run.engine == engine and run.architecture == spec.architecture
        and run.predicted_host_bytes > 0
    )  # fmt: skip
    if not ratios:
        return None
    return Residual(
        engine, spec.architecture, len(ratios), statistics.median(ratios), ratios[0], ratios[-1]
    )


def same_settings_run(
    spec: ModelSpec, settings: RunSettings, runs: Sequence[MeasuredRun]
) -> MeasuredRun | None:
    """The newest run of this model file with exactly these settings."""
    wanted = json.loads(json.dumps(settings.to_dict()))  # as stored: tuples become lists
    matching = [
        run for run in runs
        if run.model == spec.name and run.file_bytes == spec.file_bytes
        and run.settings == wanted
    ]  # fmt: skip
    return max(matching, key=lambda run: run.started, default=None)


def with_residual(estimate: EstimateFn, residual: Residual | None) -> EstimateFn:
    """``estimate`` with an applied residual added to the CPU's overhead (and said in a
    note); ``estimate`` itself when there is none to apply."""
    if residual is None or not residual.applied:
        return estimate

    def corrected(spec: ModelSpec, machine: Machine, settings: RunSettings) -> MemoryEstimate:
        plain = estimate(spec, machine, settings)
        cpu = plain.devices[0]
        extra = int(cpu.total_bytes * (residual.median - 1))
        devices = (dataclasses.replace(cpu, overhead_bytes=cpu.overhead_bytes + extra),)
        note = (
            f"{format_bytes(extra)} added to the CPU: {residual.engine} on "
            f"{residual.architecture} measured {residual.median:.3f}x the predicted host "
            f"memory over {residual.runs} runs (--no-history leaves it out)"
        )
        return dataclasses.replace(
            plain, devices=devices + plain.devices[1:], notes=(*plain.notes, note)
        )

    return corrected


def history_notes(history: History) -> tuple[str, ...]:
    """The history in words, for the plan's notes."""
    notes = []
    same = history.same_settings
    if same is not None:
        day = time.strftime("%Y-%m-%d", time.localtime(same.started))
        notes.append(
            f"measured {day} (run {same.run_id}) with these settings: peak "
            f"{format_bytes(same.peak_rss_bytes)} held by the engine, predicted "
            f"{format_bytes(same.predicted_host_bytes)} on this machine's memory"
        )
    residual = history.residual
    if residual is not None and not residual.applied:
        why = (
            f"not applied below {MIN_RUNS} runs" if residual.runs < MIN_RUNS
            else f"applied only above {APPLIED_ABOVE:g} (the estimator's surplus is kept)"
        )  # fmt: skip
        notes.append(
            f"{residual.engine} on {residual.architecture}: measured/predicted "
            f"{residual.median:.3f} over {residual.runs} run(s) "
            f"({residual.low:.3f}-{residual.high:.3f}); {why}"
        )
    return tuple(notes)
