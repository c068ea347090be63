"""Describe the machine yoyu runs on: one entry point over the per-platform probes.

Everything the probe touches can be replaced for a test: the filesystem root
Linux reads /proc and /sys under, the command runner macOS's tools go through,
the NVML module, and the HTTP getter for Ollama. A platform yoyu has no probe
for (Windows, the BSDs) still gets RAM, swap and CPU counts from psutil.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yoyu.machine.commands import CommandError, CommandRunner, run_command
from yoyu.machine.linux import probe_linux
from yoyu.machine.nvidia import probe_nvidia_gpus
from yoyu.machine.types import (
    AppleSiliconInfo,
    CpuInfo,
    GpuInfo,
    Machine,
    MemoryInfo,
    OsInfo,
    RuntimeInfo,
)

if TYPE_CHECKING:
    from yoyu.machine.runtimes import HttpGet


@dataclass(frozen=True)
class _HostFacts:
    """What one platform probe found, before GPUs from NVML and runtimes are added."""

    os: OsInfo
    cpu: CpuInfo
    memory: MemoryInfo
    apple: AppleSiliconInfo | None = None
    apple_gpu: GpuInfo | None = None


def probe_machine(
    *,
    env: Mapping[str, str] | None = None,
    system: str | None = None,
    root: Path = Path("/"),
    run: CommandRunner | None = None,
    nvml: Any = None,
    http_get: HttpGet | None = None,
    hostname: str | None = None,
    find_runtimes: bool = True,
) -> Machine:
    """Probe this machine (or, in tests, the recorded one the arguments describe).

    ``system`` is ``platform.system()``'s answer; ``root`` is where Linux's /proc
    and /sys live; ``run`` runs sysctl/vm_stat/ioreg and llama-server; ``nvml``
    stands in for the pynvml module; ``http_get`` fetches Ollama's /api/version.
    ``find_runtimes=False`` leaves ``runtimes`` empty, without the HTTP request and
    the subprocess that find them: a plan reads only the memory and the devices.
    """
    system_name = system or platform.system()
    host = _host_facts(system_name, root, run or run_command)
    nvidia = () if system_name == "Darwin" else probe_nvidia_gpus(nvml)
    apple_gpus = (host.apple_gpu,) if host.apple_gpu else ()
    return Machine(
        name=hostname or platform.node() or "this machine",
        source="probe",
        os=host.os,
        cpu=host.cpu,
        memory=host.memory,
        gpus=apple_gpus + nvidia,
        unified_memory=host.apple is not None,
        apple=host.apple,
        runtimes=_runtimes(env, http_get, run) if find_runtimes else (),
    )


def _runtimes(
    env: Mapping[str, str] | None, http_get: HttpGet | None, run: CommandRunner | None
) -> tuple[RuntimeInfo, ...]:
    from yoyu.machine.runtimes import probe_runtimes  # HTTP and subprocesses: only when asked

    return probe_runtimes(os.environ if env is None else env, http_get=http_get, run=run)


def _host_facts(system_name: str, root: Path, run: CommandRunner) -> _HostFacts:
    if system_name == "Linux":
        linux = probe_linux(root)
        return _HostFacts(os=linux.os, cpu=linux.cpu, memory=linux.memory)
    if system_name == "Darwin":
        from yoyu.machine.darwin import probe_darwin  # macOS's tools, on macOS only

        try:
            mac = probe_darwin(run)
        except CommandError:
            return _psutil_facts(system_name)  # sysctl missing: not a normal macOS
        return _HostFacts(mac.os, mac.cpu, mac.memory, apple=mac.apple, apple_gpu=mac.gpu)
    return _psutil_facts(system_name)


def _psutil_facts(system_name: str) -> _HostFacts:
    """The portable minimum: no SIMD flags, no limits, just sizes and counts (psutil,
    imported here: Linux and macOS read their own sources)."""
    import psutil

    virtual, swap = psutil.virtual_memory(), psutil.swap_memory()
    threads = psutil.cpu_count(logical=True) or 1
    return _HostFacts(
        os=OsInfo(system_name, platform.release(), platform.version(), platform.machine()),
        cpu=CpuInfo(
            model=platform.processor() or "unknown",
            cores=psutil.cpu_count(logical=False) or threads,
            threads=threads,
        ),
        memory=MemoryInfo(
            total_bytes=int(virtual.total),
            available_bytes=int(virtual.available),
            swap_total_bytes=int(swap.total),
            swap_used_bytes=int(swap.used),
        ),
    )
