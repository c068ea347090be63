"""Hardware inventory: the machine yoyu runs on (probe) and machines it does not (presets).

probe_machine()                 this machine, via /proc, sysctl, NVML, ...
with_measured_bandwidth(m)      its RAM bandwidth, measured once and cached
load_machine("server-h100-80g") a preset by name, or a path to a TOML file
list_presets()                  built-in presets and the user's own
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoyu.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from yoyu.machine.bandwidth import with_measured_bandwidth
    from yoyu.machine.machine_file import parse_rate, parse_size
    from yoyu.machine.presets import PresetRef, list_presets, load_machine
    from yoyu.machine.probe import probe_machine
    from yoyu.machine.types import (
        AppleSiliconInfo,
        CpuInfo,
        GpuInfo,
        Machine,
        MemoryInfo,
        OsInfo,
        RuntimeInfo,
    )
else:  # each submodule is imported when one of its names is first used
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "yoyu.machine.bandwidth": ("with_measured_bandwidth",),
            "yoyu.machine.machine_file": ("parse_rate", "parse_size"),
            "yoyu.machine.presets": ("PresetRef", "list_presets", "load_machine"),
            "yoyu.machine.probe": ("probe_machine",),
            "yoyu.machine.types": (
                "AppleSiliconInfo",
                "CpuInfo",
                "GpuInfo",
                "Machine",
                "MemoryInfo",
                "OsInfo",
                "RuntimeInfo",
            ),
        },
    )

__all__ = [
    "AppleSiliconInfo",
    "CpuInfo",
    "GpuInfo",
    "Machine",
    "MemoryInfo",
    "OsInfo",
    "PresetRef",
    "RuntimeInfo",
    "list_presets",
    "load_machine",
    "parse_rate",
    "parse_size",
    "probe_machine",
    "with_measured_bandwidth",
]
