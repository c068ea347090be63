"""The Guard log page: every decision the guards wrote (the gateway's and any ``yoyu run``
or ``yoyu guard`` on this machine share the audit file), newest first, each with the
samples that led to it, reduced to the figures the guard decided on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yoyu.guard.audit import AuditRecord, read_recent

MOST_RECORDS = 300


def guard_log(path: Path | None = None, limit: int = MOST_RECORDS) -> list[dict[str, Any]]:
    """The latest ``limit`` records of the audit log's tail, newest first."""
    records = read_recent(path)[-limit:]
    return [guard_entry(record) for record in reversed(records)]


def guard_mark(record: AuditRecord) -> dict[str, Any]:
    """A decision as the timeline marks it (its samples stay in the log)."""
    return {
        "t": record.wall_time,
        "kind": record.kind,
        "message": record.message,
        "target": record.target,
        "guard_pid": record.guard_pid,
    }


def guard_entry(record: AuditRecord) -> dict[str, Any]:
    """A decision as the log shows it: the mark, the pids, the figures, the samples."""
    return {
        **guard_mark(record),
        "pids": list(record.pids),
        "detail": record.detail,
        "samples": sample_rows(record.samples),
    }


def sample_rows(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each trigger sample as the figures ``decide`` reads: available memory, swap, PSI,
    and the guarded tree's resident, anonymous and swapped bytes."""
    rows = []
    for sample in samples:
        system, process = sample.get("system", {}), sample.get("process", {})
        rows.append(
            {
                "t": system.get("wall_time"),
                "available_bytes": system.get("available_bytes"),
                "swap_used_bytes": system.get("swap_used_bytes"),
                "psi_some": system.get("psi_some_avg10"),
                "psi_full": system.get("psi_full_avg10"),
                "rss_bytes": process.get("rss_bytes"),
                "anon_bytes": process.get("anon_bytes"),
                "swap_bytes": process.get("swap_bytes"),
            }
        )
    return rows
