"""Every run, its settings, samples and events, in one SQLite file.

Default location: ``yoyu.paths.run_store_path()`` (``runs.sqlite`` in the data
folder). WAL journaling lets one thread (or process) write samples while another
lists or reads runs; each ``RunStore`` holds one connection, guarded by a lock so
a sampler thread and its owner may share it. Samples are written in batches
(``executemany`` in one transaction), never one commit per sample.

The schema version lives in SQLite's ``user_version``. ``MIGRATIONS[n]`` takes a
store from version n to n + 1; opening an older file applies the missing steps,
and a file from a newer yoyu is refused rather than misread.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from yoyu.errors import RunStoreError
from yoyu.paths import run_store_path

if TYPE_CHECKING:  # read back only by `yoyu runs`: a plan reading its history needs none
    from yoyu.monitor.types import Event, Sample


@dataclass(frozen=True)
class RunRecord:
    id: int
    started: float  # wall-clock seconds since the epoch
    finished: float | None
    model: str
    mode: str
    settings: dict[str, Any]
    prediction: dict[str, Any] | None
    result: dict[str, Any] | None
    owner_pid: int | None = None  # the yoyu process that wrote the run
    owner_started: float | None = None  # its start time, so a reused pid is not mistaken


RunState = Literal["finished", "running", "interrupted"]


def run_state(record: RunRecord) -> RunState:
    """Finished; still being written by a live yoyu; or interrupted: its writer is gone
    (killed, crashed, the machine lost power) before it finished the run."""
    if record.finished is not None:
        return "finished"
    if record.owner_pid is None or record.owner_started is None:
        return "interrupted"  # a run of a yoyu that did not record its writer
    import psutil  # here: reading a store (a plan's history) needs no process table

    try:
        started = psutil.Process(record.owner_pid).create_time()
    except psutil.Error:
        return "interrupted"
    return "running" if abs(started - record.owner_started) < 1.0 else "interrupted"


_SCHEMA_V1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    model TEXT NOT NULL,
    mode TEXT NOT NULL,
    settings TEXT NOT NULL,
    prediction TEXT,
    result TEXT
);
CREATE TABLE samples (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    t_s REAL NOT NULL,
    wall_time REAL NOT NULL,
    total_bytes INTEGER NOT NULL,
    available_bytes INTEGER NOT NULL,
    used_bytes INTEGER NOT NULL,
    swap_total_bytes INTEGER NOT NULL,
    swap_used_bytes INTEGER NOT NULL,
    page_in_per_s REAL,
    page_out_per_s REAL,
    major_faults_per_s REAL,
    psi_some_avg10 REAL,
    psi_full_avg10 REAL,
    macos_pressure TEXT,
    pids TEXT NOT NULL,
    rss_bytes INTEGER NOT NULL,
    anon_bytes INTEGER,
    file_bytes INTEGER,
    shmem_bytes INTEGER,
    swap_bytes INTEGER,
    uss_bytes INTEGER,
    pss_bytes INTEGER,
    gpu_used_bytes INTEGER,
    gpus TEXT NOT NULL
);
CREATE INDEX samples_by_run ON samples(run_id, t_s);
CREATE TABLE events (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    t_s REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX events_by_run ON events(run_id, t_s);
"""


def _create_v1(connection: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            connection.execute(statement)


def _add_engine_columns_v2(connection: sqlite3.Connection) -> None:
    """The engine's own gauge (vLLM's KV pool fill, requests running and waiting)."""
    for column in ("engine_kv_used_fraction REAL", "engine_requests_running INTEGER",
                   "engine_requests_waiting INTEGER"):  # fmt: skip
        connection.execute(f"ALTER TABLE samples ADD COLUMN {column}")


def _add_owner_columns_v3(connection: sqlite3.Connection) -> None:
    """Which process writes a run, so a run whose writer died reads as interrupted."""
    connection.execute("ALTER TABLE runs ADD COLUMN owner_pid INTEGER")
    connection.execute("ALTER TABLE runs ADD COLUMN owner_started REAL")


# MIGRATIONS[n] upgrades a store at user_version n to n + 1, inside one transaction.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _create_v1, _add_engine_columns_v2, _add_owner_columns_v3,
)  # fmt: skip
SCHEMA_VERSION = len(MIGRATIONS)

_SYSTEM_COLUMNS = (
    "t_s", "wall_time", "total_bytes", "available_bytes", "used_bytes", "swap_total_bytes",
    "swap_used_bytes", "page_in_per_s", "page_out_per_s", "major_faults_per_s",
    "psi_some_avg10", "psi_full_avg10", "macos_pressure",
)  # fmt: skip
_PROCESS_COLUMNS = (
    "rss_bytes", "anon_bytes", "file_bytes", "shmem_bytes", "swap_bytes", "uss_bytes", "pss_bytes",
)  # fmt: skip
_ENGINE_COLUMNS = ("kv_used_fraction", "requests_running", "requests_waiting")
_SAMPLE_COLUMNS = (
    "run_id", *_SYSTEM_COLUMNS, "pids", *_PROCESS_COLUMNS, "gpu_used_bytes", "gpus",
    *(f"engine_{name}" for name in _ENGINE_COLUMNS),
)  # fmt: skip


def default_store_path() -> Path:
    return run_store_path()


class RunStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_store_path()
        self._lock = threading.Lock()
        self._connection = _connect(self.path)
        try:
            migrate(self._connection, self.path)
        except BaseException:
            self._connection.close()
            raise

    def create_run(
        self,
        model: str,
        mode: str,
        settings: Mapping[str, Any],
        prediction: Mapping[str, Any] | None = None,
        started: float | None = None,
    ) -> int:
        import psutil  # only a writer records who it is

        row = (started or time.time(), model, mode, json.dumps(settings), _json_or_none(prediction))
        owner = (os.getpid(), psutil.Process().create_time())
        with self._lock, self._connection:
            cursor = self._connection.execute(
                "INSERT INTO runs (started, model, mode, settings, prediction, owner_pid, "
                "owner_started) VALUES (?,?,?,?,?,?,?)",
                (*row, *owner),
            )
        return int(cursor.lastrowid or 0)

    def add_samples(self, run_id: int, samples: Iterable[Sample]) -> None:
        """Write a batch in one transaction (readers see all of it or none of it)."""
        self.add_batch(run_id, samples, ())

    def add_event(self, run_id: int, event: Event) -> None:
        self.add_batch(run_id, (), (event,))

    def add_batch(self, run_id: int, samples: Iterable[Sample], events: Iterable[Event]) -> None:
        """Samples and events in one transaction: a crash keeps all of it or none of it."""
        rows = [_sample_row(run_id, sample) for sample in samples]
        marks = [(run_id, event.t_s, event.kind, event.detail) for event in events]
        placeholders = ",".join("?" * len(_SAMPLE_COLUMNS))
        sql = f"INSERT INTO samples ({','.join(_SAMPLE_COLUMNS)}) VALUES ({placeholders})"
        with self._lock, self._connection:
            self._connection.executemany(sql, rows)
            self._connection.executemany(
                "INSERT INTO events (run_id, t_s, kind, detail) VALUES (?,?,?,?)", marks
            )

    def finish_run(
        self, run_id: int, result: Mapping[str, Any], finished: float | None = None
    ) -> None:
        with self._lock, self._connection:
            cursor = self._connection.execute(
                "UPDATE runs SET result = ?, finished = ? WHERE id = ?",
                (json.dumps(result), finished or time.time(), run_id),
            )
        if cursor.rowcount == 0:
            raise RunStoreError(f"no run {run_id} in {self.path}; list runs with `yoyu runs`")

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """Newest first."""
        rows = self._query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        return [_run_record(row) for row in rows]

    def get_run(self, run_id: int) -> RunRecord:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise RunStoreError(f"no run {run_id} in {self.path}; list runs with `yoyu runs`")
        return _run_record(rows[0])

    def samples(self, run_id: int) -> list[Sample]:
        columns = ",".join(_SAMPLE_COLUMNS)
        sql = f"SELECT {columns} FROM samples WHERE run_id = ? ORDER BY t_s, rowid"
        return [_sample_of(row) for row in self._query(sql, (run_id,))]

    def events(self, run_id: int) -> list[Event]:
        from yoyu.monitor.types import Event

        sql = "SELECT t_s, kind, detail FROM events WHERE run_id = ? ORDER BY t_s, rowid"
        return [
            Event(row["t_s"], row["kind"], row["detail"]) for row in self._query(sql, (run_id,))
        ]

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _query(self, sql: str, parameters: Sequence[Any]) -> list[sqlite3.Row]:
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()


def migrate(connection: sqlite3.Connection, path: Path) -> None:
    """Bring the file up to SCHEMA_VERSION, one step per transaction.

    The version is read again inside each write transaction, so two processes
    opening a new store at once do not both create it.
    """
    while True:
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(connection)
            if version >= SCHEMA_VERSION:
                connection.commit()
                break
            MIGRATIONS[version](connection)
            connection.execute(f"PRAGMA user_version = {version + 1}")
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
    if version > SCHEMA_VERSION:
        raise RunStoreError(
            f"run store {path} has schema v{version}, newer than this yoyu's v{SCHEMA_VERSION}; "
            "upgrade yoyu or set YOYU_HOME to use another store"
        )


def schema_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
    except (OSError, sqlite3.DatabaseError) as error:
        raise _unopenable(path, error) from error
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as error:
        connection.close()
        raise _unopenable(path, error) from error
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def _unopenable(path: Path, error: Exception) -> RunStoreError:
    return RunStoreError(f"cannot open run store {path} ({error}); check the path or set YOYU_HOME")


def _json_or_none(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


def _run_record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=row["id"],
        started=row["started"],
        finished=row["finished"],
        model=row["model"],
        mode=row["mode"],
        settings=json.loads(row["settings"]),
        prediction=json.loads(row["prediction"]) if row["prediction"] else None,
        result=json.loads(row["result"]) if row["result"] else None,
        owner_pid=row["owner_pid"],
        owner_started=row["owner_started"],
    )


def _sample_row(run_id: int, sample: Sample) -> tuple[Any, ...]:
    system = tuple(getattr(sample.system, name) for name in _SYSTEM_COLUMNS)
    process = tuple(getattr(sample.process, name) for name in _PROCESS_COLUMNS)
    gpus = json.dumps(
        [[g.index, g.used_bytes, g.free_bytes, g.process_used_bytes] for g in sample.gpus]
    )
    pids = json.dumps(list(sample.process.pids))
    engine = tuple(
        getattr(sample.engine, name) if sample.engine else None for name in _ENGINE_COLUMNS
    )
    return (run_id, *system, pids, *process, sample.gpu_used_bytes, gpus, *engine)


def _sample_of(row: sqlite3.Row) -> Sample:
    from yoyu.monitor.types import EngineSample, GpuSample, ProcessSample, Sample, SystemSample

    system = SystemSample(**{name: row[name] for name in _SYSTEM_COLUMNS})
    process = ProcessSample(
        pids=tuple(json.loads(row["pids"])), **{name: row[name] for name in _PROCESS_COLUMNS}
    )
    gpus = tuple(GpuSample(*fields) for fields in json.loads(row["gpus"]))
    engine = None
    if row["engine_kv_used_fraction"] is not None:
        engine = EngineSample(**{name: row[f"engine_{name}"] for name in _ENGINE_COLUMNS})
    return Sample(system=system, process=process, gpus=gpus, engine=engine)
