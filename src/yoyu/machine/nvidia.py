"""NVIDIA GPUs through NVML (the ``pynvml`` module of the nvidia-ml-py package).

No NVIDIA library, no driver loaded, or zero GPUs is the normal state of most
machines, so every such case returns ``()``; only a GPU we can see yields a
``GpuInfo``. Fields a driver does not support on a given board (bus width on
some virtual GPUs, for one) become ``None`` instead of failing the whole probe.

Memory bandwidth. NVML gives the memory bus width in bits
(``nvmlDeviceGetMemoryBusWidth``) and the maximum memory clock in MHz
(``nvmlDeviceGetMaxClockInfo(NVML_CLOCK_MEM)``). NVIDIA's published bandwidth is
reproduced by ``bus_width / 8 * clock * 2`` for every memory type we checked,
because NVML reports the memory clock at half the per-pin data rate:

    RTX 4090   GDDR6X  384 bit  10501 MHz -> 1008.1 GB/s  (spec 1008 GB/s)
    RTX 5060Ti GDDR7   128 bit  14001 MHz ->  448.0 GB/s  (spec  448 GB/s)
    RTX 5090   GDDR7   512 bit  14001 MHz -> 1792.1 GB/s  (spec 1792 GB/s)
    H100 SXM   HBM3   5120 bit   2619 MHz -> 3352.3 GB/s  (spec 3.35 TB/s)

(clocks from ``nvidia-smi -q`` "Max Clocks" and ``deviceQuery`` printouts of
those boards; see ``yoyu.testing.fake_nvml`` for the recorded values). GDDR6X's
PAM4 and GDDR7's PAM3 signalling are already folded into the clock NVML reports,
so no per-type factor is needed; the figure is a theoretical peak, and decode
speed models should apply their own efficiency.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

from yoyu.machine.types import GpuInfo

NVML_CLOCK_MEM = 2  # pynvml.NVML_CLOCK_MEM
NVML_LIBRARY = "libnvidia-ml.so.1"


def probe_nvidia_gpus(nvml: Any = None) -> tuple[GpuInfo, ...]:
    """Every NVIDIA GPU NVML can see, or ``()`` when there is no NVML or no GPU.

    ``nvml`` is the ``pynvml`` module; tests pass ``yoyu.testing.fake_nvml``.
    """
    module = nvml if nvml is not None else _import_pynvml()
    if module is None:
        return ()
    try:
        module.nvmlInit()
    except module.NVMLError:
        return ()  # library missing, driver not loaded, no permission: no NVIDIA GPU for us
    try:
        return _read_all_devices(module)
    except module.NVMLError:
        return ()
    finally:
        _optional(module, module.nvmlShutdown)


def memory_bandwidth_bytes_per_s(
    bus_width_bits: int | None, max_clock_mhz: int | None
) -> int | None:
    """Theoretical peak: bytes per transfer x clock x 2 transfers per clock (see module doc)."""
    if not bus_width_bits or not max_clock_mhz:
        return None
    return bus_width_bits // 8 * max_clock_mhz * 1_000_000 * 2


def cuda_version_string(encoded: int) -> str:
    """NVML's CUDA driver version integer as users write it: 12040 -> "12.4"."""
    return f"{encoded // 1000}.{encoded % 1000 // 10}"


def _import_pynvml() -> ModuleType | None:
    if not nvml_library_loads():
        return None  # nvmlInit would fail the same way; importing pynvml alone takes ~5 ms
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


def nvml_library_loads() -> bool:
    """Whether the library pynvml loads on Linux (``_LoadNvmlLibrary``:
    ``CDLL("libnvidia-ml.so.1")``) is there; Windows, where it searches its own paths,
    is left to it."""
    if sys.platform.startswith("win"):
        return True
    import ctypes

    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        return False
    return True


def _read_all_devices(nvml: Any) -> tuple[GpuInfo, ...]:
    driver_version = _text(_optional(nvml, nvml.nvmlSystemGetDriverVersion))
    cuda_encoded = _optional(nvml, nvml.nvmlSystemGetCudaDriverVersion)
    cuda_version = cuda_version_string(cuda_encoded) if cuda_encoded else None
    return tuple(
        _read_device(nvml, index, driver_version, cuda_version)
        for index in range(nvml.nvmlDeviceGetCount())
    )


def _read_device(nvml: Any, index: int, driver: str | None, cuda: str | None) -> GpuInfo:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    bus_width = _optional(nvml, nvml.nvmlDeviceGetMemoryBusWidth, handle)
    max_clock = _optional(nvml, nvml.nvmlDeviceGetMaxClockInfo, handle, NVML_CLOCK_MEM)
    return GpuInfo(
        vendor="nvidia",
        index=index,
        name=_text(nvml.nvmlDeviceGetName(handle)) or f"NVIDIA GPU {index}",
        total_bytes=int(memory.total),
        free_bytes=int(memory.free),
        used_bytes=int(memory.used),
        uuid=_text(_optional(nvml, nvml.nvmlDeviceGetUUID, handle)),
        driver_version=driver,
        cuda_version=cuda,
        compute_capability=_compute_capability(nvml, handle),
        memory_bus_width_bits=bus_width,
        memory_clock_mhz=max_clock,
        bandwidth_bytes_per_s=memory_bandwidth_bytes_per_s(bus_width, max_clock),
    )


def _compute_capability(nvml: Any, handle: Any) -> str | None:
    capability = _optional(nvml, nvml.nvmlDeviceGetCudaComputeCapability, handle)
    if capability is None:
        return None
    major, minor = capability
    return f"{major}.{minor}"


def _optional(nvml: Any, function: Any, *args: Any) -> Any:
    """Call an NVML query whose answer some boards or drivers do not support."""
    try:
        return function(*args)
    except nvml.NVMLError:
        return None


def _text(value: str | bytes | None) -> str | None:
    """pynvml returns ``str`` today and returned ``bytes`` before 11.5; accept both."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value
