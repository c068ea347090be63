"""Machine-wide memory readings: Linux from /proc, other systems through psutil.

Available memory follows ``yoyu.machine``: MemAvailable, capped by the room
left under a container's cgroup limit when one is tighter than the host's RAM
(a plan or guard that trusted the host's figure would be killed by the
container first). The cgroup is looked up once; only a machine that has a limit
pays for re-reading it on every sample.

Swap traffic and major faults come as counters; the reader turns consecutive
readings into per-second rates, so the first reading has none.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import psutil

from yoyu.machine.darwin import PRESSURE_LEVELS
from yoyu.machine.linux import memory_from_meminfo, read_cgroup_memory
from yoyu.monitor.procfs import ProcFs
from yoyu.monitor.types import SystemSample

Clock = Callable[[], float]


class SystemReader(Protocol):
    def read(self) -> SystemSample: ...


def counter_rates(
    previous: tuple[float, Mapping[str, int]] | None, current: tuple[float, Mapping[str, int]]
) -> dict[str, float]:
    """Per-second increase of each counter present in both readings ({} for the first)."""
    if previous is None or current[0] <= previous[0]:
        return {}
    elapsed = current[0] - previous[0]
    before, after = previous[1], current[1]
    return {name: (after[name] - before[name]) / elapsed for name in after if name in before}


class LinuxSystemReader:
    def __init__(
        self,
        root: Path = Path("/"),
        *,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.procfs = ProcFs(root)
        self._root = root
        self._clock = clock
        self._wall_clock = wall_clock
        self._has_cgroup_limit = read_cgroup_memory(root) is not None
        self._has_psi = True
        self._previous: tuple[float, Mapping[str, int]] | None = None

    def read(self) -> SystemSample:
        t_s, wall_time = self._clock(), self._wall_clock()
        cgroup = read_cgroup_memory(self._root) if self._has_cgroup_limit else None
        memory = memory_from_meminfo(self.procfs.meminfo(), cgroup)
        counters = (t_s, self.procfs.vmstat())
        rates = counter_rates(self._previous, counters)
        self._previous = counters
        pressure = self.procfs.pressure() if self._has_psi else None
        self._has_psi = pressure is not None
        total = memory.limit_bytes or memory.total_bytes
        return SystemSample(
            t_s=t_s,
            wall_time=wall_time,
            total_bytes=total,
            available_bytes=memory.available_bytes,
            used_bytes=max(0, total - memory.available_bytes),
            swap_total_bytes=memory.swap_total_bytes,
            swap_used_bytes=memory.swap_used_bytes,
            page_in_per_s=rates.get("pswpin"),
            page_out_per_s=rates.get("pswpout"),
            major_faults_per_s=rates.get("pgmajfault"),
            psi_some_avg10=pressure.some_avg10 if pressure else None,
            psi_full_avg10=pressure.full_avg10 if pressure else None,
        )


class PsutilSystemReader:
    """macOS, Windows, BSD: psutil's figures, plus the memory-pressure level on a Mac."""

    def __init__(self, *, clock: Clock = time.monotonic, wall_clock: Clock = time.time) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._page_bytes = mmap.PAGESIZE  # psutil counts swap traffic in bytes; vmstat in pages
        self._previous: tuple[float, Mapping[str, int]] | None = None

    def read(self) -> SystemSample:
        t_s, wall_time = self._clock(), self._wall_clock()
        memory, swap = psutil.virtual_memory(), psutil.swap_memory()
        counters = (t_s, {"in": swap.sin // self._page_bytes, "out": swap.sout // self._page_bytes})
        rates = counter_rates(self._previous, counters)
        self._previous = counters
        return SystemSample(
            t_s=t_s,
            wall_time=wall_time,
            total_bytes=memory.total,
            available_bytes=memory.available,
            used_bytes=max(0, memory.total - memory.available),
            swap_total_bytes=swap.total,
            swap_used_bytes=swap.used,
            page_in_per_s=rates.get("in"),
            page_out_per_s=rates.get("out"),
            macos_pressure=macos_pressure_level(),
        )


def system_reader() -> SystemReader:
    """The reader for the platform we run on."""
    return LinuxSystemReader() if sys.platform.startswith("linux") else PsutilSystemReader()


def macos_pressure_level() -> str | None:
    """``kern.memorystatus_vm_pressure_level`` through sysctlbyname (no subprocess per sample)."""
    libc = _libc() if sys.platform == "darwin" else None
    if libc is None:
        return None
    value, size = ctypes.c_int(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_int))
    name = b"kern.memorystatus_vm_pressure_level"
    if libc.sysctlbyname(name, ctypes.byref(value), ctypes.byref(size), None, 0) != 0:
        return None
    return PRESSURE_LEVELS.get(value.value)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    library = ctypes.util.find_library("c")
    return ctypes.CDLL(library, use_errno=True) if library else None
