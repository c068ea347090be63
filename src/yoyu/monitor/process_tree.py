"""The memory of a backend's whole process tree: its root processes and every descendant.

An engine is often more than one process (Ollama's server and its runners,
a shell wrapper and llama-server), and the memory that matters is the sum.
Finding descendants means reading every process's parent when the kernel has
no children files, which is the costly part, so membership is refreshed at
most every ``refresh_s`` seconds (or at once when the roots change or a member
vanishes) while the members' memory is read on every sample.

Processes exit between listing and reading; such a process simply drops out
of the sum, and the next read refreshes the membership.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import psutil

from yoyu.monitor.procfs import ProcFs, SmapsRollup, StatusMemory
from yoyu.monitor.types import ProcessSample

DEFAULT_REFRESH_S = 1.0


class ProcessReader(Protocol):
    def members(self, roots: Sequence[int]) -> tuple[int, ...]: ...
    def read(self, roots: Sequence[int]) -> ProcessSample: ...
    def read_smaps(self, pids: Sequence[int]) -> tuple[int, int] | None: ...


def descendants(
    roots: Iterable[int], children_of: Callable[[int], Sequence[int]]
) -> tuple[int, ...]:
    """``roots`` and everything below them, each once, in breadth-first order."""
    seen: dict[int, None] = {}
    frontier = list(roots)
    while frontier:
        pid = frontier.pop(0)
        if pid not in seen:
            seen[pid] = None
            frontier.extend(children_of(pid))
    return tuple(seen)


def children_map(parent_of: Mapping[int, int | None]) -> dict[int, list[int]]:
    """Invert ``{pid: ppid}`` into ``{ppid: [pids]}``."""
    children: dict[int, list[int]] = defaultdict(list)
    for pid, ppid in parent_of.items():
        if ppid is not None:
            children[ppid].append(pid)
    return children


def process_reader() -> ProcessReader:
    """The reader for the platform we run on."""
    return ProcessTree() if sys.platform.startswith("linux") else PsutilProcessTree()


def sum_status(pids: Sequence[int], readings: Sequence[StatusMemory | None]) -> ProcessSample:
    """Sum the readings of processes still alive; a ``None`` reading (exited) is left out."""
    alive = [
        (pid, reading) for pid, reading in zip(pids, readings, strict=True) if reading is not None
    ]
    return ProcessSample(
        pids=tuple(pid for pid, _ in alive),
        rss_bytes=sum(reading.rss_bytes for _, reading in alive),
        anon_bytes=sum(reading.anon_bytes for _, reading in alive),
        file_bytes=sum(reading.file_bytes for _, reading in alive),
        shmem_bytes=sum(reading.shmem_bytes for _, reading in alive),
        swap_bytes=sum(reading.swap_bytes for _, reading in alive),
    )


class ProcessTree:
    """Reads the summed memory of ``roots`` and their descendants from /proc."""

    def __init__(
        self,
        procfs: ProcFs | None = None,
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
        use_children_files: bool | None = None,
    ) -> None:
        """``use_children_files=False`` forces the scan of every parent (None: detect)."""
        self.procfs = procfs or ProcFs()
        self.refresh_s = refresh_s
        self._clock = clock
        if use_children_files is None:
            use_children_files = self.procfs.has_children_files()
        self._use_children_files = use_children_files
        self._roots: tuple[int, ...] = ()
        self._members: tuple[int, ...] = ()
        self._refreshed_at = float("-inf")

    def members(self, roots: Sequence[int]) -> tuple[int, ...]:
        """The tree's pids, re-discovered when stale or when the roots changed."""
        now = self._clock()
        if tuple(roots) != self._roots or now - self._refreshed_at >= self.refresh_s:
            self._roots = tuple(roots)
            self._members = self._discover(self._roots)
            self._refreshed_at = now
        return self._members

    def read(self, roots: Sequence[int]) -> ProcessSample:
        """Summed memory of the tree; a member gone since the last discovery forces a new one."""
        pids = self.members(roots)
        readings = [self.procfs.status(pid) for pid in pids]
        if any(reading is None for reading in readings):
            self._refreshed_at = float("-inf")
        return sum_status(pids, readings)

    def read_smaps(self, pids: Sequence[int]) -> tuple[int, int] | None:
        """(USS, PSS) summed over ``pids``; costly for big processes, so callers rate-limit it."""
        rollups = [self.procfs.smaps_rollup(pid) for pid in pids]
        alive = [rollup for rollup in rollups if rollup is not None]
        return _sum_rollups(alive) if alive else None

    def _discover(self, roots: Sequence[int]) -> tuple[int, ...]:
        if self._use_children_files:
            return descendants(roots, self.procfs.children)
        parent_of = {pid: self.procfs.ppid(pid) for pid in self.procfs.pids()}
        children = children_map(parent_of)
        living_roots = [root for root in roots if root in parent_of]
        return descendants(living_roots, lambda pid: children.get(pid, ()))


def _sum_rollups(rollups: Sequence[SmapsRollup]) -> tuple[int, int]:
    return sum(r.uss_bytes for r in rollups), sum(r.pss_bytes for r in rollups)


class PsutilProcessTree:
    """Where there is no /proc (macOS, Windows): RSS only, through psutil.

    psutil cannot split RSS into anonymous and file-backed pages there, so
    those fields stay ``None`` and leak checks fall back to RSS.
    """

    def members(self, roots: Sequence[int]) -> tuple[int, ...]:
        found: dict[int, None] = {}
        for root in roots:
            try:
                process = psutil.Process(root)
                found.update(dict.fromkeys([root, *(c.pid for c in process.children(True))]))
            except psutil.Error:
                continue  # gone, or not ours to see
        return tuple(found)

    def read(self, roots: Sequence[int]) -> ProcessSample:
        alive: list[tuple[int, int]] = []
        for pid in self.members(roots):
            try:
                alive.append((pid, psutil.Process(pid).memory_info().rss))
            except psutil.Error:
                continue
        return ProcessSample(pids=tuple(p for p, _ in alive), rss_bytes=sum(r for _, r in alive))

    def read_smaps(self, pids: Sequence[int]) -> tuple[int, int] | None:
        return None  # psutil's USS walks every mapping: too costly to sample
