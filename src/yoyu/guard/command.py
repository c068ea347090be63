"""Running a command, or watching a running process tree, under a guard.

``run_guarded(argv, policy)`` starts the command after the guard has taken its
baseline, waits for it, and says how it ended: by itself (its own exit status;
``128 + N`` when a signal N from elsewhere ended it, as shells report it) or
stopped by the guard (``GUARD_STOPPED_EXIT``, with the trigger).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil

from yoyu.errors import GuardCommandError, SettingsError
from yoyu.guard.audit import AuditLog, AuditRecord
from yoyu.guard.decide import Trigger
from yoyu.guard.guard import Guard
from yoyu.guard.policy import GuardPolicy
from yoyu.guard.targets import ProcessTarget

# EX_TEMPFAIL from sysexits.h, as mlx-guard uses for "stopped by policy": the command
# did not fail by itself; running it again with more memory free may well succeed.
GUARD_STOPPED_EXIT = 75
_WATCH_POLL_S = 0.05


@dataclass(frozen=True)
class GuardedRun:
    """How a guarded command or process tree ended."""

    exit_code: int
    stopped_by_guard: bool
    returncode: int | None  # the command's own status (None for --pid: not our child)
    trigger: Trigger | None
    pid: int

    @property
    def message(self) -> str:
        """One line: what the guard did and the figure that made it (empty when it did nothing)."""
        if not self.stopped_by_guard or self.trigger is None:
            return ""
        floor = self.trigger.floor.replace("_", " ")
        return f"stopped pid {self.pid} at the {floor} floor: {self.trigger.message}"


def run_guarded(
    argv: Sequence[str],
    policy: GuardPolicy | None = None,
    *,
    audit: AuditLog | None = None,
    on_record: Callable[[AuditRecord], None] | None = None,
) -> GuardedRun:
    """Run ``argv`` under a guard until it ends; the result carries the exit status to use."""
    if not argv:
        raise SettingsError("give the command to run after --, e.g. yoyu guard -- ollama serve")
    target = ProcessTarget()
    with Guard(target, policy, audit=audit, on_record=on_record) as guard:
        process = _spawn(argv)
        target.set_pids(process.pid)
        returncode = _wait(process)
    if guard.stopped_target:
        return GuardedRun(GUARD_STOPPED_EXIT, True, returncode, guard.first_stop, process.pid)
    exit_code = returncode if returncode >= 0 else 128 - returncode
    return GuardedRun(exit_code, False, returncode, None, process.pid)


def watch_pid(
    pid: int,
    policy: GuardPolicy | None = None,
    *,
    audit: AuditLog | None = None,
    on_record: Callable[[AuditRecord], None] | None = None,
) -> GuardedRun:
    """Guard the running tree under ``pid`` until it has gone."""
    if not psutil.pid_exists(pid):
        raise SettingsError(f"no process {pid}; give the pid of a running process")
    with Guard(ProcessTarget(pid), policy, audit=audit, on_record=on_record) as guard:
        while _running(pid):
            time.sleep(_WATCH_POLL_S)
    exit_code = GUARD_STOPPED_EXIT if guard.stopped_target else 0
    return GuardedRun(exit_code, guard.stopped_target, None, guard.first_stop, pid)


def _spawn(argv: Sequence[str]) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(list(argv))
    except FileNotFoundError:
        raise GuardCommandError(f"command not found: {argv[0]}; check the name or PATH") from None
    except PermissionError:
        raise GuardCommandError(f"cannot run {argv[0]}: permission denied") from None


def _wait(process: subprocess.Popen[bytes]) -> int:
    """Wait for the command; Ctrl-C reaches it too (same process group), so keep waiting."""
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            continue


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
