"""The Markdown report a migration ends with: phases, figures, plots, verdict and reasons.

Written next to the state (``report.md``) with one memory timeline per test
that loaded the model (``smoke.png``, ``soak.png``, drawn by
``yoyu.monitor.plot`` from the run store), the smoke floors drawn as lines.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yoyu.errors import RunStoreError
from yoyu.monitor.plot import plot_run
from yoyu.monitor.store import RunStore
from yoyu.rollout.state import PHASES, MigrationState, PhaseRecord
from yoyu.units import format_bytes

REPORT_FILE = "report.md"
_BYTES_KEYS = (
    "available_bytes", "least_available_bytes", "disk_free_bytes", "download_bytes",
    "file_bytes", "tensor_bytes", "continue_bytes", "stop_bytes", "budget_bytes",
)  # fmt: skip


def write_report(state: MigrationState) -> Path:
    """Write ``report.md`` (and the plots) into the migration's folder; its path."""
    folder = Path(state.folder)
    plots = draw_plots(state, folder)
    path = folder / REPORT_FILE
    path.write_text(render(state, plots), encoding="utf-8")
    return path


def draw_plots(state: MigrationState, folder: Path) -> dict[str, str]:
    """One timeline per phase with a stored run; phase -> file name. A missing run is skipped."""
    plots: dict[str, str] = {}
    with RunStore() as store:
        for name, record in state.phases.items():
            if record.run_id is None:
                continue
            try:
                run = store.get_run(record.run_id)
                samples = store.samples(record.run_id)
            except RunStoreError:
                continue
            if samples:
                target = folder / f"{name}.png"
                plot_run(run, samples, store.events(record.run_id), target, _floors(record))
                plots[name] = target.name
    return plots


def _floors(record: PhaseRecord) -> dict[str, int]:
    figures = record.measurements
    return {
        label: int(figures[key])
        for label, key in (("continue", "continue_bytes"), ("stop", "stop_bytes"))
        if isinstance(figures.get(key), int)
    }


def render(state: MigrationState, plots: Mapping[str, str]) -> str:
    """The report's text (pure)."""
    lines = [
        f"# Migration of `{state.alias}` to `{state.target}`",
        "",
        f"- started: {_when(state.created)}, last change: {_when(state.updated)}",
        f"- status: **{state.status}**, verdict: **{state.verdict or 'none yet'}**",
        f"- rollback target: `{_fallback(state)}`",
        f"- config: `{state.config_path}`",
        "",
        "## Phases",
        "",
        "| phase | result | seconds | figures | reasons |",
        "|---|---|---|---|---|",
        *(_phase_row(name, state.phases.get(name)) for name in PHASES[:-1]),
        "",
        "## Verdict",
        "",
        f"**{state.verdict or 'none yet'}**",
        "",
        *(f"- {reason}" for reason in state.reasons),
    ]
    if state.interruptions:
        lines += ["", "## Interruptions", "", *(f"- {item}" for item in state.interruptions)]
    consumers = state.phases.get("preflight")
    if consumers and consumers.measurements.get("top_consumers"):
        lines += [
            "",
            "## Largest memory consumers at preflight",
            "",
            "| pid | name | RSS |",
            "|---|---|---|",
        ]
        lines += [
            f"| {row['pid']} | {row['name']} | {format_bytes(row['rss_bytes'])} |"
            for row in consumers.measurements["top_consumers"]
        ]
    if plots:
        lines += ["", "## Memory timeline", ""]
        lines += [f"### {name}\n\n![{name}]({file})\n" for name, file in plots.items()]
    return "\n".join(lines) + "\n"


def _phase_row(name: str, record: PhaseRecord | None) -> str:
    if record is None:
        return f"| {name} | not run | | | |"
    result = {True: "passed", False: "failed", None: "interrupted"}[record.passed]
    seconds = f"{record.finished - record.started:.1f}" if record.finished else ""
    figures = ", ".join(
        _figure(key, value) for key, value in record.measurements.items() if _shown(key, value)
    )
    reasons = "; ".join(record.reasons).replace("|", "\\|")
    return f"| {name} | {result} | {seconds} | {figures} | {reasons} |"


def _shown(key: str, value: Any) -> bool:
    return value is not None and not isinstance(value, (list, dict)) and key != "reply"


def _figure(key: str, value: Any) -> str:
    if key in _BYTES_KEYS and isinstance(value, int):
        return f"{key.removesuffix('_bytes')} {format_bytes(value)}"
    if isinstance(value, float):
        return f"{key} {value:.2f}"
    return f"{key} {value}"


def _fallback(state: MigrationState) -> str:
    preflight = state.phases.get("preflight")
    found = preflight.measurements.get("rollback_target") if preflight else None
    return str(found or state.source or "none")


def _when(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")
