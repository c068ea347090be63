"""This machine's memory bandwidth: measured once, then read from a cache.

Decode speed on a CPU is bound by how fast weights stream from RAM, and no
probe reports that figure (DMI tables give the DIMM speed, not what a core
gets through a VM's memory controller). A plain copy of a 256 MiB buffer
does: best of a few runs, counted as read + write bytes per second, the same
figure ``benchmarks/estimate_accuracy.py`` measures with numpy (37.1 GB/s
here vs numpy's 35.3). It takes about a quarter of a second, so it is done
the first time a plan needs it and kept in ``<data>/bandwidth.json``, keyed by
the CPU model, core count and RAM size (a different machine, a new figure).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

from yoyu.machine.types import Machine
from yoyu.paths import data_dir

_BUFFER_BYTES = 256 * 1024 * 1024
_REPEATS = 6
CACHE_FILE = "bandwidth.json"


def measure_copy_bandwidth(size_bytes: int = _BUFFER_BYTES, repeats: int = _REPEATS) -> int:
    """Read + write bytes per second of a memory copy, best of ``repeats``."""
    source, target = bytearray(size_bytes), bytearray(size_bytes)
    source_view, target_view = memoryview(source), memoryview(target)
    target_view[:] = source_view  # touch every page once: faults are not bandwidth
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        target_view[:] = source_view
        best = min(best, time.perf_counter() - started)
    return int(2 * size_bytes / best)


def machine_key(machine: Machine) -> str:
    return f"{machine.cpu.model}|{machine.cpu.cores} cores|{machine.memory.total_bytes} B"


def with_measured_bandwidth(
    machine: Machine,
    *,
    cache_path: Path | None = None,
    measure: Callable[[], int] = measure_copy_bandwidth,
) -> Machine:
    """``machine`` with its RAM bandwidth filled in: stated, cached, or measured now.

    Only for the machine yoyu runs on (``source == "probe"``): a preset states
    its own figure or keeps the documented default.
    """
    if machine.source != "probe" or machine.memory.bandwidth_bytes_per_s:
        return machine
    path = cache_path or data_dir() / CACHE_FILE
    cache = _read_cache(path)
    key = machine_key(machine)
    bandwidth = cache.get(key)
    if not isinstance(bandwidth, int) or bandwidth <= 0:
        bandwidth = measure()
        _write_cache(path, {**cache, key: bandwidth})
    memory = dataclasses.replace(machine.memory, bandwidth_bytes_per_s=bandwidth)
    return dataclasses.replace(machine, memory=memory)


def _read_cache(path: Path) -> dict[str, object]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent or unreadable: measure again
    return loaded if isinstance(loaded, dict) else {}


def _write_cache(path: Path, cache: dict[str, object]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(cache, indent=2) + "\n", encoding="utf-8")
        partial.replace(path)
    except OSError:
        pass  # a read-only data folder costs a measurement next time, nothing more
