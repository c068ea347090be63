"""Every guard decision, kept twice: a JSON-lines file a person can read or ``grep``,
and the run store's events (with the triggering samples in its samples table).

One record per decision (warn, unload, terminate, kill) and one per guard start
and end, each with the samples that led to it: the trend window, oldest first.
Default file: ``yoyu.paths.data_dir() / "guard.jsonl"``; ``yoyu guard log`` reads it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yoyu.monitor.store import RunStore
from yoyu.monitor.types import Event, Sample
from yoyu.paths import data_dir

AUDIT_FILE_NAME = "guard.jsonl"
RECENT_BYTES = 4 * 1024 * 1024  # a long-lived gateway's log grows without end: read its tail


def default_audit_path() -> Path:
    return data_dir() / AUDIT_FILE_NAME


@dataclass(frozen=True)
class AuditRecord:
    """One line of the audit log."""

    wall_time: float
    t_s: float
    kind: str  # "start", "warn", "unload", "terminate", "kill", "spared", "end"
    message: str
    target: str = ""
    guard_pid: int = 0
    pids: tuple[int, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    samples: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditRecord:
        return cls(
            wall_time=float(data["wall_time"]),
            t_s=float(data["t_s"]),
            kind=str(data["kind"]),
            message=str(data.get("message", "")),
            target=str(data.get("target", "")),
            guard_pid=int(data.get("guard_pid", 0)),
            pids=tuple(data.get("pids", ())),
            detail=dict(data.get("detail", {})),
            samples=tuple(data.get("samples", ())),
        )


def sample_json(sample: Sample) -> dict[str, Any]:
    """A sample as plain JSON (what the audit keeps of each trigger sample)."""
    return asdict(sample)


class AuditLog:
    """Appends records to the JSON-lines file and, when given, to a run in the store."""

    def __init__(
        self, path: Path | None = None, store: RunStore | None = None, run_id: int | None = None
    ) -> None:
        self.path = path or default_audit_path()
        self.store = store
        self.run_id = run_id
        self._lock = threading.Lock()

    def write(self, record: AuditRecord, samples: Sequence[Sample] = ()) -> None:
        line = json.dumps(record.to_json(), ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as file:
                file.write(line + "\n")
            if self.store is not None and self.run_id is not None:
                if samples:
                    self.store.add_samples(self.run_id, samples)
                event = Event(t_s=record.t_s, kind=f"guard.{record.kind}", detail=line)
                self.store.add_event(self.run_id, event)


def read_audit(path: Path | None = None) -> list[AuditRecord]:
    """Every record of the file, oldest first ([] when there is none); bad lines are skipped."""
    return list(_records(path or default_audit_path()))


def read_recent(path: Path | None = None, max_bytes: int = RECENT_BYTES) -> list[AuditRecord]:
    """The records in the file's last ``max_bytes``, oldest first (the dashboard's guard log:
    a file of months of decisions is not read whole for a page)."""
    tail = AuditTail(path or default_audit_path(), max_bytes)
    return tail.read_new()


class AuditTail:
    """Reads what was appended to the file since the last read (from its last
    ``max_bytes`` at first), so a live view follows it without reading it again."""

    def __init__(self, path: Path, max_bytes: int = RECENT_BYTES) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._offset: int | None = None

    def read_new(self) -> list[AuditRecord]:
        try:
            with self.path.open("rb") as file:
                size = file.seek(0, os.SEEK_END)
                fresh = self._offset is None or self._offset > size  # first read, or replaced
                start = max(0, size - self._max_bytes) if fresh else int(self._offset or 0)
                file.seek(start)
                data = file.read(size - start)
        except FileNotFoundError:
            return []
        whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits its turn
        self._offset = start + len(whole)
        lines = whole.split(b"\n")
        return list(_parse(lines[1:] if fresh and start > 0 else lines))  # began mid-line


def _records(path: Path) -> Iterator[AuditRecord]:
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as file:
        yield from _parse(file)


def _parse(lines: Iterable[str | bytes]) -> Iterator[AuditRecord]:
    for line in lines:
        if not line.strip():
            continue
        try:
            yield AuditRecord.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash mid-write
