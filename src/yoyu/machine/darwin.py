"""macOS on Apple Silicon: chip, unified memory, and how much of it Metal may use.

The probe runs three tools and parses their text: ``sysctl -a`` (chip, cores,
RAM, swap, SIMD, ``iogpu.wired_limit_mb``, memory-pressure level), ``vm_stat``
(page counts) and ``ioreg`` (GPU core count). Parsing is pure, so recorded
output from a Mac drives the tests on any machine.

Available memory comes from ``vm_stat`` as free + inactive + speculative pages.
Model weights on Metal are *wired* (they cannot be paged out or compressed), so
a Mac with a 20 GB model loaded can look roomy to tools that count cached or
compressible memory; yoyu reports wired memory beside available memory.

The GPU working-set limit (Metal's ``recommendedMaxWorkingSetSize``) is what
llama.cpp and Ollama treat as the Mac's "VRAM". Python cannot ask Metal for it
without PyObjC, so yoyu applies the rule seen in llama.cpp's
``ggml_metal_init: recommendedMaxWorkingSetSize`` log lines:

* RAM <= 32 GiB: two thirds, rounded up to a 16 KiB page. 16 GiB -> 11453.25 MB
  (10.67 GiB); 32 GiB -> 21845.34 MiB, logged by newer builds as 22906.50 MB
  (ollama#434 is an M2 Max 32 GB). The often-quoted "2/3 up to 36 GB" is off by
  one size: a 36 GB M4 Max logs 28991.03 MB, exactly 3/4 (27 GiB).
* RAM > 32 GiB: three quarters. 64 GiB -> 49152 MiB; 96 GiB -> 73728 MiB
  (llama.cpp#3213).
* Recent macOS releases report more on some machines (a 512 GB M3 Ultra logs
  498216.21 MB = 464 GiB; a 128 GB M5 Max on macOS 26 reports 107.52 GiB,
  antirez/ds4#893; a 48 GB M4 Pro 37.44 GiB). The rule gives the lower, safer
  figure; a preset can state the measured value instead.

``iogpu.wired_limit_mb`` (MiB; 0 = macOS default) replaces the default when set:
on a 128 GiB Mac, ``iogpu.wired_limit_mb=114688`` makes Metal report 112.00 GiB
(antirez/ds4#893). macOS 13 spelled it ``debug.iogpu.wired_limit`` in bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from yoyu.machine.commands import CommandError, CommandRunner
from yoyu.machine.types import AppleSiliconInfo, CpuInfo, GpuInfo, MemoryInfo, OsInfo

MIB = 1024**2
GIB = 1024**3
GB_PER_S = 1_000_000_000
SMALL_MAC_LIMIT_BYTES = 32 * GIB
APPLE_PAGE_BYTES = 16384

PRESSURE_LEVELS = {1: "normal", 2: "warn", 4: "critical"}  # kern.memorystatus_vm_pressure_level
SIMD_SYSCTLS = {
    "hw.optional.neon": "neon",
    "hw.optional.arm.FEAT_FP16": "fp16",
    "hw.optional.arm.FEAT_DotProd": "dotprod",
    "hw.optional.arm.FEAT_I8MM": "i8mm",
    "hw.optional.arm.FEAT_BF16": "bf16",
    "hw.optional.arm.FEAT_SME": "sme",
    "hw.optional.arm.FEAT_SME2": "sme2",
    "hw.optional.avx1_0": "avx",
    "hw.optional.avx2_0": "avx2",
    "hw.optional.fma": "fma",
    "hw.optional.avx512f": "avx512f",
}
# Unified-memory bandwidth in GB/s from Apple's tech-spec pages (M1's 68.25 is its
# LPDDR4X-4266 x 128-bit, which Apple did not print). Two chips come in two
# bandwidths told apart by GPU cores: M3 Max 30-core 300 / 40-core 400, M4 Max
# 32-core 410 / 40-core 546; an unknown core count gets the lower figure.
APPLE_BANDWIDTH_GB_PER_S: dict[str, float] = {
    "Apple M1": 68.25, "Apple M1 Pro": 200, "Apple M1 Max": 400, "Apple M1 Ultra": 800,
    "Apple M2": 100, "Apple M2 Pro": 200, "Apple M2 Max": 400, "Apple M2 Ultra": 800,
    "Apple M3": 100, "Apple M3 Pro": 150, "Apple M3 Max": 300, "Apple M3 Ultra": 819,
    "Apple M4": 120, "Apple M4 Pro": 273, "Apple M4 Max": 410, "Apple M5": 153,
}  # fmt: skip
FULL_GPU_BANDWIDTH_GB_PER_S = {("Apple M3 Max", 40): 400.0, ("Apple M4 Max", 40): 546.0}
# FP32 per GPU core: 128 ALUs x 2 (FMA) x 1.398 GHz, Apple's M2 figures (M2 Max 38-core
# "13.6 teraflops", M2 Ultra 76-core "27.2"). Apple published no clock for M3/M4; their
# cores run faster, and llama.cpp's Apple Silicon scoreboard shows it (prompt processing
# per core: M2 family ~18 tok/s on Llama 2 7B Q4_0, M4 Pro/Max ~22), so they come out
# about 20 % low.
APPLE_GPU_CORE_FLOPS = 128 * 2 * 1.398e9

_SWAP_FIELD = re.compile(r"(total|used)\s*=\s*([\d.]+)([KMGT]?)")
_PAGE_SIZE = re.compile(r"page size of (\d+) bytes")
_VM_STAT_LINE = re.compile(r'^"?([^":]+)"?:\s+(\d+)\.?$')
_GPU_CORES = re.compile(r'"gpu-core-count"\s*=\s*(\d+)')


@dataclass(frozen=True)
class DarwinFacts:
    os: OsInfo
    cpu: CpuInfo
    memory: MemoryInfo
    apple: AppleSiliconInfo
    gpu: GpuInfo


@dataclass(frozen=True)
class VmStat:
    page_size: int
    pages: Mapping[str, int]  # "Pages free" -> 12345

    def bytes_of(self, *names: str) -> int:
        return sum(self.pages.get(name, 0) for name in names) * self.page_size


def probe_darwin(run: CommandRunner) -> DarwinFacts:
    """Run sysctl, vm_stat and ioreg through ``run`` and describe this Mac."""
    return darwin_facts(
        sysctl_text=run(["sysctl", "-a"]),
        vm_stat_text=run(["vm_stat"]),
        ioreg_text=_optional_output(run, ["ioreg", "-r", "-d", "1", "-c", "AGXAccelerator"]),
    )


def darwin_facts(*, sysctl_text: str, vm_stat_text: str, ioreg_text: str = "") -> DarwinFacts:
    """Everything yoyu knows about a Mac, from the three tools' recorded text."""
    sysctl = parse_sysctl(sysctl_text)
    vm_stat = parse_vm_stat(vm_stat_text)
    cpu = cpu_from_sysctl(sysctl)
    gpu_cores = parse_gpu_core_count(ioreg_text)
    memory = memory_from(sysctl, vm_stat, apple_bandwidth_bytes_per_s(cpu.model, gpu_cores))
    apple = apple_info(sysctl, cpu.model, gpu_cores, memory.total_bytes)
    return DarwinFacts(
        os=os_from_sysctl(sysctl),
        cpu=cpu,
        memory=memory,
        apple=apple,
        gpu=apple_gpu(apple, memory),
    )


# --- parsers -----------------------------------------------------------------


def parse_sysctl(text: str) -> dict[str, str]:
    """``sysctl -a`` output ("hw.memsize: 34359738368") as a dict of strings."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key and not any(char.isspace() for char in key):
            values[key] = value.strip()
    return values


def parse_swapusage(value: str) -> tuple[int, int]:
    """``vm.swapusage`` ("total = 2048.00M  used = 1024.50M  free = ...") -> (total, used) bytes."""
    scale = {"": 1, "K": 1024, "M": MIB, "G": GIB, "T": 1024 * GIB}
    found = {
        name: round(float(number) * scale[unit])
        for name, number, unit in _SWAP_FIELD.findall(value)
    }
    return found.get("total", 0), found.get("used", 0)


def parse_vm_stat(text: str) -> VmStat:
    """``vm_stat`` page counts and the page size from its header line."""
    page_size_match = _PAGE_SIZE.search(text)
    pages: dict[str, int] = {}
    for line in text.splitlines():
        match = _VM_STAT_LINE.match(line.strip())
        if match:
            pages[match.group(1).strip()] = int(match.group(2))
    return VmStat(
        page_size=int(page_size_match.group(1)) if page_size_match else 16384, pages=pages
    )


def parse_gpu_core_count(ioreg_text: str) -> int | None:
    """``"gpu-core-count" = 30`` from ``ioreg -c AGXAccelerator``."""
    match = _GPU_CORES.search(ioreg_text)
    return int(match.group(1)) if match else None


# --- conversions -------------------------------------------------------------


def default_working_set_bytes(total_bytes: int) -> int:
    """Metal's default GPU working set for a Mac with ``total_bytes`` of RAM (module doc).

    Two thirds is rounded up to a whole 16 KiB page, which is what reproduces
    the logged figures to the last digit (22906.50 MB, not 22906.49, on 32 GiB).
    """
    numerator, denominator = (2, 3) if total_bytes <= SMALL_MAC_LIMIT_BYTES else (3, 4)
    pages = -(-total_bytes * numerator // (denominator * APPLE_PAGE_BYTES))
    return pages * APPLE_PAGE_BYTES


def gpu_working_set_bytes(default_bytes: int, wired_limit_mb: int) -> int:
    """``iogpu.wired_limit_mb`` above zero replaces the default; zero keeps it."""
    return wired_limit_mb * MIB if wired_limit_mb > 0 else default_bytes


def apple_bandwidth_bytes_per_s(chip: str, gpu_cores: int | None) -> int | None:
    """Apple's published memory bandwidth for ``chip`` ("Apple M2 Max"), or None if unknown."""
    gb_per_s = FULL_GPU_BANDWIDTH_GB_PER_S.get((chip, gpu_cores or 0))
    gb_per_s = gb_per_s or APPLE_BANDWIDTH_GB_PER_S.get(chip)
    return round(gb_per_s * GB_PER_S) if gb_per_s else None


def cpu_from_sysctl(sysctl: Mapping[str, str]) -> CpuInfo:
    threads = _int(sysctl, "hw.logicalcpu") or _int(sysctl, "hw.ncpu") or 1
    return CpuInfo(
        model=sysctl.get("machdep.cpu.brand_string", "unknown"),
        cores=_int(sysctl, "hw.physicalcpu") or threads,
        threads=threads,
        simd=tuple(name for key, name in SIMD_SYSCTLS.items() if _int(sysctl, key) == 1),
        performance_cores=_int(sysctl, "hw.perflevel0.physicalcpu"),
    )


def memory_from(sysctl: Mapping[str, str], vm_stat: VmStat, bandwidth: int | None) -> MemoryInfo:
    swap_total, swap_used = parse_swapusage(sysctl.get("vm.swapusage", ""))
    return MemoryInfo(
        total_bytes=_int(sysctl, "hw.memsize") or 0,
        available_bytes=vm_stat.bytes_of("Pages free", "Pages inactive", "Pages speculative"),
        swap_total_bytes=swap_total,
        swap_used_bytes=swap_used,
        wired_bytes=vm_stat.bytes_of("Pages wired down"),
        bandwidth_bytes_per_s=bandwidth,
    )


def apple_info(
    sysctl: Mapping[str, str], chip: str, gpu_cores: int | None, total_bytes: int
) -> AppleSiliconInfo:
    wired_limit_mb = wired_limit_mb_from(sysctl)
    default_bytes = default_working_set_bytes(total_bytes)
    pressure = _int(sysctl, "kern.memorystatus_vm_pressure_level")
    return AppleSiliconInfo(
        chip=chip,
        gpu_cores=gpu_cores,
        gpu_working_set_bytes=gpu_working_set_bytes(default_bytes, wired_limit_mb),
        default_working_set_bytes=default_bytes,
        wired_limit_mb=wired_limit_mb,
        memory_pressure=PRESSURE_LEVELS.get(pressure) if pressure is not None else None,
    )


def wired_limit_mb_from(sysctl: Mapping[str, str]) -> int:
    """``iogpu.wired_limit_mb`` (macOS 14+) or ``debug.iogpu.wired_limit`` bytes (macOS 13)."""
    limit_mb = _int(sysctl, "iogpu.wired_limit_mb")
    if limit_mb is not None:
        return limit_mb
    return (_int(sysctl, "debug.iogpu.wired_limit") or 0) // MIB


def apple_gpu(apple: AppleSiliconInfo, memory: MemoryInfo) -> GpuInfo:
    """The Apple GPU as one device whose memory is the working set.

    Free is what the GPU could still take right now: the working set, capped by
    the memory available to anyone; the rest of the working set counts as used.
    """
    free_bytes = min(apple.gpu_working_set_bytes, memory.available_bytes)
    return GpuInfo(
        vendor="apple",
        index=0,
        name=apple.chip,
        total_bytes=apple.gpu_working_set_bytes,
        free_bytes=free_bytes,
        used_bytes=apple.gpu_working_set_bytes - free_bytes,
        bandwidth_bytes_per_s=memory.bandwidth_bytes_per_s,
        fp32_flops=round(apple.gpu_cores * APPLE_GPU_CORE_FLOPS) if apple.gpu_cores else None,
    )


def os_from_sysctl(sysctl: Mapping[str, str]) -> OsInfo:
    product_version = sysctl.get("kern.osproductversion", "")
    return OsInfo(
        system="Darwin",
        release=sysctl.get("kern.osrelease", ""),
        version=product_version,
        arch=sysctl.get("hw.machine", "arm64"),
        distribution=f"macOS {product_version}" if product_version else None,
    )


def _int(sysctl: Mapping[str, str], key: str) -> int | None:
    value = sysctl.get(key, "").strip()
    return int(value) if value.lstrip("-").isdigit() else None


def _optional_output(run: CommandRunner, command: list[str]) -> str:
    try:
        return run(command)
    except CommandError:
        return ""
