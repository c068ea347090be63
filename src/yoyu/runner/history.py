"""The run store's runs as ``MeasuredRun`` values, for a plan's history.

A run counts when it stored the settings it ran with (runs since this field
was added) and at least one turn's phase profile; its peak is the highest
resident size of the engine's processes in any phase of any turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from yoyu.paths import run_store_path
from yoyu.plan.history import MeasuredRun

if TYPE_CHECKING:
    from yoyu.monitor.store import RunRecord, RunStore

RECENT_RUNS = 500  # newest first; older runs describe an older yoyu or llama.cpp


def measured_runs(store: RunStore | None = None) -> list[MeasuredRun]:
    """Every usable run of ``store`` (the user's store by default; none if it has none)."""
    if store is None:
        if not run_store_path().exists():
            return []
        from yoyu.monitor.store import RunStore  # SQLite: only for a user who has runs

        with RunStore() as user_store:
            return measured_runs(user_store)
    return [run for record in store.list_runs(RECENT_RUNS) if (run := measured_run(record))]


def measured_run(record: RunRecord) -> MeasuredRun | None:
    """``record`` as a measurement, or None when it lacks what a comparison needs."""
    prediction, result = record.prediction or {}, record.result or {}
    settings = prediction.get("settings")
    peak = _peak_rss_bytes(result.get("turns") or [])
    total, gpu = prediction.get("total_bytes"), prediction.get("gpu_bytes") or 0
    if not isinstance(settings, dict) or not peak or not isinstance(total, int):
        return None
    return MeasuredRun(
        run_id=record.id,
        started=record.started,
        model=record.model,
        file_bytes=int(prediction.get("file_bytes") or 0),
        architecture=str(prediction.get("architecture") or ""),
        settings=settings,
        predicted_host_bytes=total - int(gpu),
        peak_rss_bytes=peak,
    )


def _peak_rss_bytes(turns: Iterable[Mapping[str, Any]]) -> int:
    peaks = [
        int(reading["process_rss_bytes"])
        for turn in turns
        for reading in (turn.get("phases") or {}).values()
        if isinstance(reading, Mapping) and reading.get("process_rss_bytes")
    ]
    return max(peaks, default=0)
