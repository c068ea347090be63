"""Signalling a process tree, sparing the processes that must never be signalled.

Spared, whatever the tree holds: the guard's own process and its ancestors (a
``yoyu guard --pid $$`` must not kill the shell that runs it), pid 1, and any
process whose name is in the policy's protected set (editors, terminals,
agents). The check is made per process at the moment of signalling, by name
as the kernel reports it (``/proc/PID/comm``, 15 characters on Linux).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class SignalReport:
    """Which pids received the signal, and which were spared (pid, name)."""

    signalled: tuple[int, ...]
    spared: tuple[tuple[int, str], ...]


def own_lineage() -> frozenset[int]:
    """This process and every ancestor up to pid 1."""
    lineage = {os.getpid()}
    try:
        lineage.update(parent.pid for parent in psutil.Process().parents())
    except psutil.Error:
        lineage.add(os.getppid())
    return frozenset(lineage | {1})


def process_name(pid: int) -> str | None:
    """The process name, or None when it has exited (a zombie has exited)."""
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process.name()
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:
        return ""  # not ours to read: still a process, name unknown


def is_spared(pid: int, name: str, protected: Collection[str], lineage: Collection[int]) -> bool:
    return pid in lineage or name in protected or name[:15] in protected


def signal_tree(pids: Sequence[int], signum: int, protected: Collection[str]) -> SignalReport:
    """Send ``signum`` to each of ``pids`` except the spared ones; gone pids are skipped."""
    lineage = own_lineage()
    signalled: list[int] = []
    spared: list[tuple[int, str]] = []
    for pid in pids:
        name = process_name(pid)
        if name is None:
            continue
        if is_spared(pid, name, protected, lineage):
            spared.append((pid, name))
            continue
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            continue
        except PermissionError:
            spared.append((pid, name))
            continue
        signalled.append(pid)
    return SignalReport(tuple(signalled), tuple(spared))


def terminate_tree(pids: Sequence[int], protected: Collection[str]) -> SignalReport:
    return signal_tree(pids, signal.SIGTERM, protected)


def kill_tree(pids: Sequence[int], protected: Collection[str]) -> SignalReport:
    return signal_tree(pids, signal.SIGKILL, protected)
