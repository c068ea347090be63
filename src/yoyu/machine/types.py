"""The machine description every plan is computed against.

The same dataclasses describe the machine yoyu runs on (from the probe) and
machines it does not (presets), so a plan for a Mac Studio can be made on a
Linux laptop. All sizes are bytes as ``int``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OsInfo:
    system: str  # "Linux", "Darwin", "Windows"
    release: str  # "6.8.0-45-generic", "24.1.0"
    version: str  # kernel build string / macOS product version
    arch: str  # "x86_64", "arm64"
    distribution: str | None = None  # "Ubuntu 24.04.1 LTS", "macOS 14.5": what a user calls the OS


@dataclass(frozen=True)
class CpuInfo:
    model: str
    cores: int  # physical
    threads: int  # logical
    simd: tuple[str, ...] = ()  # "avx2", "avx512f", "neon", "sve", ... as the kernel names them
    performance_cores: int | None = None  # Apple P-cores (hw.perflevel0): llama.cpp's thread count


@dataclass(frozen=True)
class MemoryInfo:
    total_bytes: int
    available_bytes: int
    swap_total_bytes: int
    swap_used_bytes: int
    limit_bytes: int | None = None  # cgroup memory.max when it is below total (containers)
    wired_bytes: int | None = None  # macOS: pages the kernel cannot evict (model weights on Metal)
    bandwidth_bytes_per_s: int | None = None  # system RAM bandwidth, for CPU decode speed
    # A preset's assumption of what the OS and the user's apps hold (available = total - it);
    # None when available memory was measured or given.
    assumed_in_use_bytes: int | None = None


@dataclass(frozen=True)
class GpuInfo:
    vendor: str  # "nvidia", "apple"
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    used_bytes: int
    uuid: str | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    compute_capability: str | None = None  # "8.9"
    memory_bus_width_bits: int | None = None
    memory_clock_mhz: int | None = None
    bandwidth_bytes_per_s: int | None = None
    # FP32 shader throughput (cores x 2 x boost clock), what prefill's speed scales with
    fp32_flops: int | None = None


@dataclass(frozen=True)
class AppleSiliconInfo:
    """What decides how much of a Mac's unified memory Metal may use.

    ``gpu_working_set_bytes`` is the effective limit: macOS's default
    (``default_working_set_bytes``, Metal's recommendedMaxWorkingSetSize)
    unless ``iogpu.wired_limit_mb`` is set above zero, which replaces it.
    """

    chip: str
    gpu_cores: int | None
    gpu_working_set_bytes: int
    default_working_set_bytes: int
    wired_limit_mb: int  # iogpu.wired_limit_mb; 0 means "macOS default"
    memory_pressure: str | None = None  # "normal", "warn", "critical"


@dataclass(frozen=True)
class RuntimeInfo:
    name: str  # "ollama", "llama-server", "llama-cpp-python"
    found: bool
    version: str | None = None
    location: str | None = None  # URL for servers, path for binaries, module path for libraries


@dataclass(frozen=True)
class Machine:
    name: str
    source: str  # "probe" or "preset:<name>"
    os: OsInfo
    cpu: CpuInfo
    memory: MemoryInfo
    gpus: tuple[GpuInfo, ...] = ()
    unified_memory: bool = False
    apple: AppleSiliconInfo | None = None
    runtimes: tuple[RuntimeInfo, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
