"""A migration's state: one JSON file per migration, rewritten atomically after every step.

Why a JSON file and not a run-store table: the state must survive a crash at
any instant and be readable by a person (``cat state.json``) when something
went wrong; the run store keeps the measurements (each smoke and soak run is
a run there, and the state names their ids).

Layout under ``yoyu.paths.data_dir()``::

    migrations/
      current                       # the folder name of the latest migration
      20261123-125300-coder/
        state.json                  # this module
        report.md, smoke.png, soak.png

``phase`` is the next phase to run: a run interrupted in the smoke test has
``phase = "smoke"`` and ``--resume`` runs the smoke test again from the start.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yoyu.errors import MigrationError
from yoyu.paths import data_dir

PREFLIGHT, FETCH, SMOKE, SOAK, VERDICT = "preflight", "fetch", "smoke", "soak", "verdict"
PHASES = (PREFLIGHT, FETCH, SMOKE, SOAK, VERDICT)

RUNNING = "running"
INTERRUPTED = "interrupted"
PROMOTED = "promoted"
ROLLED_BACK = "rolled_back"
FINISHED = (PROMOTED, ROLLED_BACK)

STATE_FILE = "state.json"
CURRENT_FILE = "current"


@dataclass
class PhaseRecord:
    """What one phase found: passed or not, its figures and the reasons in words."""

    name: str
    passed: bool | None = None  # None: started, not finished
    started: float = 0.0
    finished: float | None = None
    measurements: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    run_id: int | None = None  # the run in the run store (smoke, soak)


@dataclass
class MigrationState:
    """Everything ``--resume``, ``--status`` and ``--rollback`` need, in one file."""

    folder: str
    target: str
    alias: str
    source: str | None  # --from, or None: the alias's current target
    settings: dict[str, Any]  # RunSettings fields for the target
    thresholds: dict[str, Any]
    config_path: str
    phase: str = PREFLIGHT
    status: str = RUNNING
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    phases: dict[str, PhaseRecord] = field(default_factory=dict)
    engine: dict[str, Any] | None = None  # {"pid", "create_time"} while a test has it loaded
    config_change: dict[str, Any] | None = None  # what promote wrote, to undo it
    verdict: str | None = None
    reasons: list[str] = field(default_factory=list)
    interruptions: list[str] = field(default_factory=list)
    report: str | None = None
    pid: int | None = None  # the process running it (``--status`` tells a killed one apart)

    @property
    def display_status(self) -> str:
        """The status, with "running" in a process that is gone shown as interrupted."""
        if self.status == RUNNING and self.pid is not None and not _alive(self.pid):
            return f"{INTERRUPTED} (process {self.pid} is gone)"
        return self.status

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MigrationState:
        phases = {name: PhaseRecord(**record) for name, record in data.get("phases", {}).items()}
        return cls(**{**data, "phases": phases})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def migrations_dir() -> Path:
    return data_dir() / "migrations"


def new_folder(alias: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in alias)
    folder = migrations_dir() / f"{stamp}-{safe}"
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = migrations_dir() / f"{stamp}-{safe}-{suffix}"
    folder.mkdir(parents=True)
    return folder


def save_state(state: MigrationState) -> None:
    """Write the state atomically and make it the current migration."""
    state.updated = time.time()
    folder = Path(state.folder)
    write_atomic(folder / STATE_FILE, json.dumps(state.to_dict(), indent=2) + "\n")
    write_atomic(migrations_dir() / CURRENT_FILE, folder.name + "\n")


def load_current() -> MigrationState:
    """The latest migration's state; MigrationError when there is none."""
    pointer = migrations_dir() / CURRENT_FILE
    if not pointer.is_file():
        raise MigrationError(
            "no migration has been started here; run yoyu migrate TARGET --alias NAME"
        )
    path = migrations_dir() / pointer.read_text(encoding="utf-8").strip() / STATE_FILE
    try:
        return MigrationState.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as error:
        raise MigrationError(
            f"{path}: the migration state cannot be read ({error}); remove {pointer} to start over"
        ) from None


def current_or_none() -> MigrationState | None:
    try:
        return load_current()
    except MigrationError:
        return None


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader sees the old file or the new, never half.

    A temporary file in the same folder, flushed to disk, then ``os.replace``;
    the old file's permission bits are kept.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
