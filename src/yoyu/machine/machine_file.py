"""The machine TOML format: one parsed document in, one ``Machine`` out.

Sizes may be written the way people write them (``total = "32 GiB"``, ``"16GB"``)
or as byte counts. Memory is sold in binary units, so GB means GiB here (the
JEDEC convention: a "32 GB" Mac has 34359738368 bytes). Bandwidth is decimal,
as vendors quote it: ``"400 GB/s"`` is 400e9 bytes per second.

A file describes the hardware: ``available`` defaults to all of RAM less
``in_use`` (what the OS and the user's apps typically hold on that machine: a
desktop preset states it, and plans say they assumed it), and GPU ``free`` to
all of VRAM; planners keep their own headroom.
Unknown keys are errors, since a misspelt key that silently does nothing would
make a plan for a different machine than the user described. Every error names
the file, the table and the key.

    description = "..."
    [os]      system, release, version, arch, distribution      (all optional)
    [cpu]     model, cores, threads, simd = [...], performance_cores
    [memory]  total, available, in_use, swap_total, swap_used, limit, wired, bandwidth
    [[gpus]]  vendor, name, total, free, used, uuid, driver_version, cuda_version,
              compute_capability, memory_bus_width_bits, memory_clock_mhz, bandwidth,
              fp32_tflops (shader FP32 throughput, the vendor's figure)
    [apple]   chip, gpu_cores, wired_limit_mb, default_working_set, memory_pressure
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from yoyu.errors import MachineError
from yoyu.machine.nvidia import memory_bandwidth_bytes_per_s
from yoyu.machine.types import AppleSiliconInfo, CpuInfo, GpuInfo, Machine, MemoryInfo, OsInfo

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_RATE_UNITS = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt])(i?)b/s\s*$", re.IGNORECASE)
SIZE_HINT = 'write a byte count or a number and unit, e.g. "32 GiB", "16GB", "24564 MiB"'
RATE_HINT = 'write bytes per second or e.g. "400 GB/s", "3.35 TB/s"'
TOP_LEVEL_KEYS = {"name", "description", "os", "cpu", "memory", "gpus", "apple"}
GPU_VENDORS = ("nvidia", "amd", "intel")  # Apple's GPU comes from the [apple] table
MIB = 1024**2


# --- units -------------------------------------------------------------------


def parse_size(value: object) -> int:
    """Bytes from an int or a string like "32 GiB" / "16GB" / "512 MiB"; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a size; {SIZE_HINT}")
    number, unit = match.groups()
    return round(float(number) * _SIZE_UNITS[unit.lower()])


def parse_rate(value: object) -> int:
    """Bytes per second from an int or "400 GB/s" (decimal) / "64 GiB/s" (binary)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a bandwidth; {RATE_HINT}")
    number, unit, binary = match.groups()
    scale = _SIZE_UNITS[unit.lower()] if binary else _RATE_UNITS[unit.lower()]
    return round(float(number) * scale)


# --- reading one table -----------------------------------------------------------


class _Table:
    """One TOML table, read key by key so unknown keys and bad values name themselves."""

    def __init__(self, table: object, origin: str, label: str) -> None:
        if table is None:
            raise MachineError(f"{origin}: the {label} table is missing")
        if not isinstance(table, dict):
            raise MachineError(f"{origin}: {label} must be a table")
        self._table: dict[str, Any] = table
        self._origin = origin
        self._label = label
        self._read: set[str] = set()

    def fail(self, key: str, problem: str) -> MachineError:
        return MachineError(f"{self._origin}: {self._label} {key}: {problem}")

    def raw(self, key: str) -> Any:
        self._read.add(key)
        return self._table.get(key)

    def text(self, key: str) -> str | None:
        value = self.raw(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {value!r}")
        return value

    def text_or(self, key: str, default: str) -> str:
        value = self.text(key)
        return default if value is None else value

    def required_text(self, key: str) -> str:
        value = self.text(key)
        if not value:
            raise self.fail(key, "is required")
        return value

    def choice(self, key: str, allowed: tuple[str, ...]) -> str | None:
        value = self.text(key)
        if value is not None and value not in allowed:
            raise self.fail(key, f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    def integer(self, key: str, *, minimum: int = 0) -> int | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"expected a whole number >= {minimum}, got {value!r}")
        return value

    def required_integer(self, key: str, *, minimum: int = 0) -> int:
        value = self.integer(key, minimum=minimum)
        if value is None:
            raise self.fail(key, "is required")
        return value

    def size(self, key: str) -> int | None:
        return self._converted(key, parse_size)

    def size_or(self, key: str, default: int) -> int:
        value = self.size(key)
        return default if value is None else value

    def required_size(self, key: str) -> int:
        value = self.size(key)
        if value is None:
            raise self.fail(key, "is required")
        return value

    def rate(self, key: str) -> int | None:
        return self._converted(key, parse_rate)

    def positive_number(self, key: str) -> float | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self.fail(key, f"expected a positive number, got {value!r}")
        return float(value)

    def text_list(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(key, f"expected a list of strings, got {value!r}")
        return tuple(value)

    def done(self) -> None:
        unknown = sorted(set(self._table) - self._read)
        if unknown:
            raise self.fail(unknown[0], "unknown key (check its spelling)")

    def _converted(self, key: str, parse: Callable[[object], int]) -> int | None:
        value = self.raw(key)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as error:
            raise self.fail(key, str(error)) from None


# --- the document ---------------------------------------------------------------


def machine_from_document(document: Mapping[str, Any], *, name: str, origin: str) -> Machine:
    """A ``Machine`` from a parsed machine TOML document (``origin`` names it in errors)."""
    _reject_unknown_tables(document, origin)
    cpu = _cpu(_Table(document.get("cpu"), origin, "[cpu]"))
    memory = _memory(_Table(document.get("memory"), origin, "[memory]"))
    apple = (
        _apple(_Table(document["apple"], origin, "[apple]"), cpu, memory)
        if "apple" in document
        else None
    )
    gpus: tuple[GpuInfo, ...]
    if apple is not None:
        from yoyu.machine.darwin import apple_bandwidth_bytes_per_s, apple_gpu  # a Mac's file

        if memory.bandwidth_bytes_per_s is None:
            bandwidth = apple_bandwidth_bytes_per_s(apple.chip, apple.gpu_cores)
            memory = replace(memory, bandwidth_bytes_per_s=bandwidth)
        gpus = (apple_gpu(apple, memory),)
    else:
        gpus = _gpus(document.get("gpus", []), origin)
    return Machine(
        name=name,
        source=f"preset:{name}",
        os=_os(_Table(document.get("os", {}), origin, "[os]"), is_apple=apple is not None),
        cpu=cpu,
        memory=memory,
        gpus=gpus,
        unified_memory=apple is not None,
        apple=apple,
    )


def _reject_unknown_tables(document: Mapping[str, Any], origin: str) -> None:
    unknown = sorted(set(document) - TOP_LEVEL_KEYS)
    if unknown:
        raise MachineError(f"{origin}: unknown key or table '{unknown[0]}' (check its spelling)")
    if "apple" in document and "gpus" in document:
        raise MachineError(f"{origin}: [apple] describes the GPU; remove the [[gpus]] tables")


def _os(table: _Table, *, is_apple: bool) -> OsInfo:
    os_info = OsInfo(
        system=table.text_or("system", "Darwin" if is_apple else "Linux"),
        release=table.text_or("release", ""),
        version=table.text_or("version", ""),
        arch=table.text_or("arch", "arm64" if is_apple else "x86_64"),
        distribution=table.text("distribution"),
    )
    table.done()
    return os_info


def _cpu(table: _Table) -> CpuInfo:
    cores = table.required_integer("cores", minimum=1)
    cpu = CpuInfo(
        model=table.required_text("model"),
        cores=cores,
        threads=table.integer("threads", minimum=1) or cores,
        simd=table.text_list("simd"),
        performance_cores=table.integer("performance_cores", minimum=1),
    )
    table.done()
    return cpu


def _memory(table: _Table) -> MemoryInfo:
    total = table.required_size("total")
    in_use = table.size("in_use")
    available = table.size("available")
    if in_use is not None and available is not None:
        raise table.fail("in_use", "give available or in_use, not both")
    if in_use is not None and in_use >= total:
        raise table.fail("in_use", f"{in_use} B is not below total {total} B")
    memory = MemoryInfo(
        total_bytes=total,
        available_bytes=available if available is not None else total - (in_use or 0),
        swap_total_bytes=table.size_or("swap_total", 0),
        swap_used_bytes=table.size_or("swap_used", 0),
        limit_bytes=table.size("limit"),
        wired_bytes=table.size("wired"),
        bandwidth_bytes_per_s=table.rate("bandwidth"),
        assumed_in_use_bytes=in_use,
    )
    table.done()
    return memory


def _apple(table: _Table, cpu: CpuInfo, memory: MemoryInfo) -> AppleSiliconInfo:
    """Apple GPU limits; the default working set follows macOS's rule unless measured."""
    from yoyu.machine.darwin import (  # macOS's rules: read for a Mac's file only
        PRESSURE_LEVELS,
        default_working_set_bytes,
        gpu_working_set_bytes,
    )

    wired_limit_mb = table.integer("wired_limit_mb") or 0
    default_bytes = table.size_or(
        "default_working_set", default_working_set_bytes(memory.total_bytes)
    )
    apple = AppleSiliconInfo(
        chip=table.text_or("chip", cpu.model),
        gpu_cores=table.integer("gpu_cores", minimum=1),
        gpu_working_set_bytes=gpu_working_set_bytes(default_bytes, wired_limit_mb),
        default_working_set_bytes=default_bytes,
        wired_limit_mb=wired_limit_mb,
        memory_pressure=table.choice("memory_pressure", tuple(PRESSURE_LEVELS.values())),
    )
    table.done()
    return apple


def _gpus(tables: object, origin: str) -> tuple[GpuInfo, ...]:
    if not isinstance(tables, list):
        raise MachineError(f"{origin}: gpus must be an array of tables ([[gpus]])")
    return tuple(
        _gpu(_Table(table, origin, f"[[gpus]] #{index + 1}"), index)
        for index, table in enumerate(tables)
    )


def _gpu(table: _Table, index: int) -> GpuInfo:
    total = table.required_size("total")
    free = table.size_or("free", total)
    bus_width = table.integer("memory_bus_width_bits", minimum=1)
    clock = table.integer("memory_clock_mhz", minimum=1)
    bandwidth = table.rate("bandwidth") or memory_bandwidth_bytes_per_s(bus_width, clock)
    tflops = table.positive_number("fp32_tflops")
    gpu = GpuInfo(
        vendor=table.choice("vendor", GPU_VENDORS) or "nvidia",
        index=index,
        name=table.required_text("name"),
        total_bytes=total,
        free_bytes=free,
        used_bytes=table.size_or("used", total - free),
        uuid=table.text("uuid"),
        driver_version=table.text("driver_version"),
        cuda_version=table.text("cuda_version"),
        compute_capability=table.text("compute_capability"),
        memory_bus_width_bits=bus_width,
        memory_clock_mhz=clock,
        bandwidth_bytes_per_s=bandwidth,
        fp32_flops=round(tflops * 1e12) if tflops else None,
    )
    table.done()
    return gpu
