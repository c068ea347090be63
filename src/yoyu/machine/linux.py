"""Linux: CPU, memory, swap and the container's memory limit, from /proc and /sys.

Every reader takes ``root`` so tests point it at a folder of recorded files;
every parser is a pure function of the file's text. Sizes in /proc/meminfo are
KiB ("kB" there means 1024 bytes).

The cgroup limit matters because yoyu often runs in a container: /proc/meminfo
shows the host's RAM, and a plan made against it would be killed by the
container's ``memory.max`` long before the host runs short.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from yoyu.machine.types import CpuInfo, MemoryInfo, OsInfo

# Flags that decide which llama.cpp CPU kernels run, in the order we report them.
# x86 keeps the kernel's names; arm64 names are mapped to the common vocabulary
# llama.cpp's system_info uses (NEON, DOTPROD, MATMUL_INT8, SVE, ...), so the same
# word means the same thing on Linux/arm64 and on macOS.
X86_SIMD_FLAGS = (
    "avx", "avx2", "fma", "f16c", "avx_vnni",
    "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
)  # fmt: skip
ARM64_FEATURE_NAMES = {
    "asimd": "neon",
    "asimdhp": "fp16",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "bf16": "bf16",
    "sve": "sve",
    "sve2": "sve2",
    "sme": "sme",
    "sme2": "sme2",
}
# (implementer, part) -> name, from Linux arch/arm64/include/asm/cputype.h; arm64
# /proc/cpuinfo has no "model name", so without this a Graviton is "0x41/0xd40".
ARM64_PARTS = {
    ("0x41", "0xd03"): "ARM Cortex-A53",
    ("0x41", "0xd07"): "ARM Cortex-A57",
    ("0x41", "0xd08"): "ARM Cortex-A72",
    ("0x41", "0xd0b"): "ARM Cortex-A76",
    ("0x41", "0xd0c"): "ARM Neoverse-N1",
    ("0x41", "0xd40"): "ARM Neoverse-V1",
    ("0x41", "0xd49"): "ARM Neoverse-N2",
    ("0x41", "0xd4f"): "ARM Neoverse-V2",
    ("0xc0", "0xac3"): "AmpereOne",
}
KIB = 1024
# cgroup v1 writes "no limit" as LONG_MAX rounded down to a page: 9223372036854771712.
CGROUP_V1_UNLIMITED = 2**62


@dataclass(frozen=True)
class LinuxFacts:
    os: OsInfo
    cpu: CpuInfo
    memory: MemoryInfo


@dataclass(frozen=True)
class CgroupMembership:
    """Where this process sits in each cgroup hierarchy (from /proc/self/cgroup)."""

    unified_path: str | None  # cgroup v2: "0::/user.slice/..."
    memory_v1_path: str | None  # cgroup v1 memory controller: "4:memory:/docker/..."


@dataclass(frozen=True)
class CgroupMemory:
    limit_bytes: int
    in_use_bytes: int | None  # usage minus inactive file cache, as `docker stats` counts it


def probe_linux(root: Path = Path("/"), *, arch: str | None = None) -> LinuxFacts:
    """Read OS, CPU and memory facts from ``root`` (``/`` on a real machine)."""
    cpu = parse_cpuinfo(_read(root / "proc/cpuinfo"), sibling_lists=_sibling_lists(root))
    meminfo = parse_meminfo(_read(root / "proc/meminfo"))
    cgroup = read_cgroup_memory(root)
    return LinuxFacts(
        os=_os_info(root, arch or platform.machine()),
        cpu=cpu,
        memory=memory_from_meminfo(meminfo, cgroup),
    )


# --- CPU ---------------------------------------------------------------------


def parse_cpuinfo(text: str, *, sibling_lists: Sequence[str] = ()) -> CpuInfo:
    """CPU model, physical cores, logical CPUs and SIMD flags from /proc/cpuinfo.

    Physical cores come from distinct (physical id, core id) pairs on x86; arm64
    prints neither, so the caller passes the sysfs ``thread_siblings_list`` of
    each CPU (one distinct list per physical core).
    """
    blocks = _cpuinfo_blocks(text)
    if not blocks:
        return CpuInfo(model="unknown", cores=1, threads=1)
    first = blocks[0]
    threads = len(blocks)
    return CpuInfo(
        model=_cpu_model(first),
        cores=_physical_cores(blocks, sibling_lists) or threads,
        threads=threads,
        simd=simd_flags(first.get("flags", "") or first.get("features", "")),
    )


def simd_flags(flag_text: str) -> tuple[str, ...]:
    """The SIMD flags yoyu cares about, named in one vocabulary for x86 and arm64."""
    present = set(flag_text.split())
    x86 = [flag for flag in X86_SIMD_FLAGS if flag in present]
    arm = [name for feature, name in ARM64_FEATURE_NAMES.items() if feature in present]
    return tuple(x86 + arm)


def _cpuinfo_blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    for chunk in text.split("\n\n"):
        fields = _colon_fields(chunk.splitlines())
        if "processor" in fields:
            blocks.append(fields)
    return blocks


def _colon_fields(lines: Iterable[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _cpu_model(block: Mapping[str, str]) -> str:
    if block.get("model name"):
        return block["model name"]
    implementer, part = block.get("cpu implementer", ""), block.get("cpu part", "")
    if (implementer, part) in ARM64_PARTS:
        return ARM64_PARTS[(implementer, part)]
    if implementer:
        return f"ARM (implementer {implementer}, part {part})"
    return block.get("hardware", "unknown")


def _physical_cores(blocks: Sequence[Mapping[str, str]], sibling_lists: Sequence[str]) -> int:
    pairs = {
        (block["physical id"], block["core id"])
        for block in blocks
        if "physical id" in block and "core id" in block
    }
    if pairs:
        return len(pairs)
    return len({siblings.strip() for siblings in sibling_lists if siblings.strip()})


def _sibling_lists(root: Path) -> list[str]:
    cpu_root = root / "sys/devices/system/cpu"
    paths = sorted(cpu_root.glob("cpu[0-9]*/topology/thread_siblings_list"))
    return [_read(path) for path in paths]


# --- memory ------------------------------------------------------------------


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as ``{field: bytes}`` ("MemTotal: 24684084 kB" -> 25276502016)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            continue
        scale = KIB if parts[1:2] == ["kB"] else 1
        fields[key.strip()] = int(parts[0]) * scale
    return fields


def memory_from_meminfo(meminfo: Mapping[str, int], cgroup: CgroupMemory | None) -> MemoryInfo:
    """RAM and swap; a cgroup limit below RAM caps what counts as available."""
    total = meminfo.get("MemTotal", 0)
    available = meminfo.get("MemAvailable", _available_before_linux_3_14(meminfo))
    swap_total = meminfo.get("SwapTotal", 0)
    limit = cgroup.limit_bytes if cgroup and cgroup.limit_bytes < total else None
    if limit is not None and cgroup is not None:
        available = min(available, _room_under_limit(cgroup))
    return MemoryInfo(
        total_bytes=total,
        available_bytes=available,
        swap_total_bytes=swap_total,
        swap_used_bytes=swap_total - meminfo.get("SwapFree", swap_total),
        limit_bytes=limit,
    )


def _available_before_linux_3_14(meminfo: Mapping[str, int]) -> int:
    return sum(meminfo.get(name, 0) for name in ("MemFree", "Buffers", "Cached"))


def _room_under_limit(cgroup: CgroupMemory) -> int:
    if cgroup.in_use_bytes is None:
        return cgroup.limit_bytes
    return max(0, cgroup.limit_bytes - cgroup.in_use_bytes)


# --- cgroups -----------------------------------------------------------------


def parse_cgroup_membership(text: str) -> CgroupMembership:
    """Split /proc/self/cgroup ("hierarchy-id:controllers:path") into v2 and v1 memory paths."""
    unified_path: str | None = None
    memory_v1_path: str | None = None
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            unified_path = path
        elif "memory" in controllers.split(","):
            memory_v1_path = path
    return CgroupMembership(unified_path=unified_path, memory_v1_path=memory_v1_path)


def parse_cgroup_limit(text: str) -> int | None:
    """``memory.max`` / ``memory.limit_in_bytes`` in bytes; None for "max" or v1's huge value."""
    value = text.strip()
    if not value.isdigit():
        return None
    limit = int(value)
    return None if limit >= CGROUP_V1_UNLIMITED else limit


def parse_inactive_file(memory_stat: str) -> int:
    """Page cache the kernel drops first (v2 ``inactive_file``, v1 ``total_inactive_file``)."""
    for line in memory_stat.splitlines():
        key, _, value = line.partition(" ")
        if key in ("inactive_file", "total_inactive_file") and value.strip().isdigit():
            return int(value)
    return 0


def read_cgroup_memory(root: Path) -> CgroupMemory | None:
    """The tightest memory limit on this process's cgroup or any of its ancestors."""
    membership = parse_cgroup_membership(_read(root / "proc/self/cgroup"))
    candidates: list[CgroupMemory] = []
    if membership.unified_path is not None:
        names = ("memory.max", "memory.current")
        candidates += _limits_along(root / "sys/fs/cgroup", membership.unified_path, names)
    if membership.memory_v1_path is not None:
        names = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        mount = root / "sys/fs/cgroup/memory"
        candidates += _limits_along(mount, membership.memory_v1_path, names)
    return min(candidates, key=lambda cgroup: cgroup.limit_bytes, default=None)


def _limits_along(mount: Path, cgroup_path: str, names: tuple[str, str]) -> list[CgroupMemory]:
    """Limits in the cgroup's folder and its ancestors under ``mount``.

    Without a cgroup namespace the path is the host's, and the container sees its
    own cgroup at the mount's root; walking up to the root covers both cases.
    """
    limit_name, usage_name = names
    found: list[CgroupMemory] = []
    for folder in _self_and_ancestors(mount, cgroup_path):
        limit = parse_cgroup_limit(_read(folder / limit_name))
        if limit is not None:
            found.append(CgroupMemory(limit, _in_use(folder, usage_name)))
    return found


def _self_and_ancestors(mount: Path, cgroup_path: str) -> list[Path]:
    relative = PurePosixPath(cgroup_path.lstrip("/"))
    chain = [relative, *relative.parents] if relative.parts else [relative]
    return [mount / str(part) if str(part) != "." else mount for part in chain]


def _in_use(folder: Path, usage_name: str) -> int | None:
    usage_text = _read(folder / usage_name).strip()
    if not usage_text.isdigit():
        return None
    return max(0, int(usage_text) - parse_inactive_file(_read(folder / "memory.stat")))


# --- OS ----------------------------------------------------------------------


def parse_os_release(text: str) -> str | None:
    """PRETTY_NAME from /etc/os-release ("Ubuntu 24.04.1 LTS"), unquoted."""
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "PRETTY_NAME":
            return value.strip().strip("\"'") or None
    return None


def _os_info(root: Path, arch: str) -> OsInfo:
    os_release = _read(root / "etc/os-release") or _read(root / "usr/lib/os-release")
    return OsInfo(
        system="Linux",
        release=_read(root / "proc/sys/kernel/osrelease").strip() or platform.release(),
        version=_read(root / "proc/sys/kernel/version").strip() or platform.version(),
        arch=arch,
        distribution=parse_os_release(os_release),
    )


def _read(path: Path) -> str:
    """A /proc or /sys file's text, or "" when it does not exist here (not an error)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
