"""Per-GPU memory through one NVML session held open while the sampler runs.

``yoyu.machine.nvidia`` opens and closes NVML for each inventory, which is
right for a one-off probe and too slow for ten readings a second; the sampler
opens it once here and asks only for memory. The watched tree's own VRAM comes
from NVML's list of compute processes; inside a container NVML reports host
pids (or no memory figure at all), and then the share is ``None``, not 0.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Collection
from typing import Any

from yoyu.monitor.types import GpuSample


class NvmlGpus:
    """``nvml`` is the ``pynvml`` module; tests pass ``yoyu.testing.fake_nvml.FakeNvml``."""

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml
        self._handles: list[Any] = []
        self._open = False

    def open(self) -> bool:
        """Start an NVML session; False (and no GPUs) where there is no NVIDIA driver."""
        nvml = self._nvml if self._nvml is not None else _import_pynvml()
        if nvml is None:
            return False
        self._nvml = nvml
        try:
            nvml.nvmlInit()
            self._open = True
            count = nvml.nvmlDeviceGetCount()
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(index) for index in range(count)]
        except nvml.NVMLError:
            self.close()
            return False
        return True

    def read(self, pids: Collection[int]) -> tuple[GpuSample, ...]:
        samples = []
        for index, handle in enumerate(self._handles):
            try:
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            except self._nvml.NVMLError:
                continue  # a GPU fallen off the bus is left out of this sample
            used, free = int(memory.used), int(memory.free)
            samples.append(GpuSample(index, used, free, self._process_used(handle, pids)))
        return tuple(samples)

    def close(self) -> None:
        if self._open:
            with contextlib.suppress(self._nvml.NVMLError):  # nothing left to release
                self._nvml.nvmlShutdown()
        self._open = False
        self._handles = []

    def _process_used(self, handle: Any, pids: Collection[int]) -> int | None:
        try:
            processes = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except (self._nvml.NVMLError, AttributeError):
            return None  # AttributeError: an NVML binding without per-process queries
        ours = [process for process in processes if process.pid in pids]
        if any(process.usedGpuMemory is None for process in ours):
            return None
        return sum(int(process.usedGpuMemory) for process in ours)


def _import_pynvml() -> Any:
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None
