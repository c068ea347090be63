"""An engine yoyu starts itself: one child process, its log, its readiness, its end.

The child runs in its own session and process group, so a stop reaches
everything it spawned and a Ctrl-C meant for yoyu does not reach it. Its
stdout and stderr go to a log file, never to yoyu's own output. Stopping is
llama-swap's rule: SIGTERM to the group, a grace period, then SIGKILL; the
child is always reaped, so no zombie stays behind.

States::

    running --exits on its own--> exited (poll() returns the code)
    running --stop()-----------> exited (TERM, then KILL after the grace period)
    exited  --stop()-----------> exited (no-op)

POSIX only (process groups and signals), like the engines it manages.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

_FIRST_POLL_S = 0.02
_MAX_POLL_S = 0.25
_TAIL_BYTES = 64 * 1024
# How long stop() waits for SIGKILLed group members to leave: death by SIGKILL
# needs only a scheduling slot, so this bound is met at once unless a process
# is stuck in uninterruptible sleep (a hung NFS or GPU driver read).
_KILLED_MEMBERS_WAIT_S = 5.0


class EngineExitedError(Exception):
    """The child exited while yoyu waited for it to become ready."""

    def __init__(self, returncode: int) -> None:
        super().__init__(f"exited with {describe_returncode(returncode)}")
        self.returncode = returncode


class EngineNotReadyError(Exception):
    """The child stayed alive but did not become ready within the timeout."""


class EngineProcess:
    """One running engine child and the file its output goes to."""

    def __init__(self, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str]) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.argv = tuple(argv)
        self.log_path = log_path
        with log_path.open("ab") as log_file:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        """The exit code once the child has exited (and is reaped), else ``None``."""
        return self._popen.poll()

    def is_alive(self) -> bool:
        return self.poll() is None

    def wait_until_ready(self, is_ready: Callable[[], bool], timeout_s: float) -> float:
        """Block until ``is_ready()`` is true; return the seconds since start.

        Raises EngineExitedError as soon as the child dies, and EngineNotReadyError at
        the timeout (the child is left running: the caller decides).
        """
        deadline = self.started_at + timeout_s
        interval = _FIRST_POLL_S
        while True:
            returncode = self.poll()
            if returncode is not None:
                raise EngineExitedError(returncode)
            if is_ready():
                return time.monotonic() - self.started_at
            if time.monotonic() >= deadline:
                raise EngineNotReadyError(f"not ready after {timeout_s:g} s")
            time.sleep(interval)
            interval = min(interval * 2, _MAX_POLL_S)

    def wait_exited(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for the child to exit on its own; its code or ``None``."""
        try:
            return self._popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float) -> int:
        """SIGTERM the group, SIGKILL it after ``grace_s``, reap; return the exit code.

        Returns only once every process of the group has gone (or the bound on
        that wait passed): a caller that stops one model to load a bigger one
        needs the memory free when this returns, not a moment later.
        """
        members = self._group_members()
        if self.poll() is not None:
            self._signal_group(signal.SIGKILL)  # leftovers of a group whose leader died
            _wait_gone(members, _KILLED_MEMBERS_WAIT_S)
            return self._popen.returncode
        self._signal_group(signal.SIGTERM)
        self._signal_group(signal.SIGCONT)  # a stopped engine (SIGSTOP, ^Z) acts on it only now
        returncode = self.wait_exited(grace_s)
        if returncode is None:
            self._signal_group(signal.SIGKILL)
            returncode = self._popen.wait()
        else:
            self._signal_group(signal.SIGKILL)
        _wait_gone(members, _KILLED_MEMBERS_WAIT_S)
        return returncode

    def log_text(self, start: int = 0) -> str:
        """The log from byte ``start`` on."""
        with self.log_path.open("rb") as log_file:
            log_file.seek(start)
            return log_file.read().decode("utf-8", errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_tail(self) -> str:
        """The last 64 KiB of the log, from a line start."""
        start = max(0, self.log_size() - _TAIL_BYTES)
        text = self.log_text(start)
        return text.split("\n", 1)[-1] if start else text

    def _group_members(self) -> list[psutil.Process]:
        """The processes the group signal reaches, besides the child itself.

        Found by process group, not by parentage: a member whose parent died was
        re-parented to init but still gets the group's signals.
        """
        group = self._popen.pid
        return [
            process
            for process in psutil.process_iter()
            if process.pid != group and _process_group(process.pid) == group
        ]

    def _signal_group(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            os.killpg(self._popen.pid, signum)


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:  # gone, or another session's process on a strict kernel
        return None


def _wait_gone(processes: Sequence[psutil.Process], timeout_s: float) -> None:
    """Wait until each process has exited; a zombie counts, as its memory is freed."""
    deadline = time.monotonic() + timeout_s
    interval = _FIRST_POLL_S
    while any(_still_running(process) for process in processes):
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)
        interval = min(interval * 2, _MAX_POLL_S)


def _still_running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def describe_returncode(returncode: int) -> str:
    """``code 1`` or ``signal SIGKILL``, as Popen reports a death by signal negative."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"
