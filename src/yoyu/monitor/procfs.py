"""Linux /proc, read directly: pure parsers of each file's text, and one reader.

psutil would do, but its ``memory_full_info`` walks every mapping and its
``children`` scans every process; at 10 samples a second that costs more
than the 1 % of a core the sampler may spend. Reading the few files we need
with ``os.read`` keeps one sample in the tens of microseconds per file.

Sizes in /proc are KiB ("kB" there means 1024 bytes); the parsers return bytes.
Every reader takes ``root`` so tests can point it at recorded files, and every
read of a process's file answers ``None`` when the process has gone: processes
exit between listing and reading, and that is normal, not an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from yoyu.machine.linux import parse_meminfo

__all__ = [
    "VMSTAT_KEYS",
    "Pressure",
    "ProcFs",
    "SmapsRollup",
    "StatusMemory",
    "parse_meminfo",
    "parse_pressure",
    "parse_smaps_rollup",
    "parse_stat_ppid",
    "parse_status",
    "parse_vmstat",
]

KIB = 1024
VMSTAT_KEYS = ("pswpin", "pswpout", "pgmajfault")
_READ_CHUNK = 65536


@dataclass(frozen=True)
class StatusMemory:
    """Memory lines of /proc/PID/status; a zombie or kernel thread has none (all 0)."""

    rss_bytes: int
    anon_bytes: int
    file_bytes: int
    shmem_bytes: int
    swap_bytes: int
    hwm_bytes: int = 0  # VmHWM: the kernel's high-water mark of rss_bytes, between samples too


@dataclass(frozen=True)
class SmapsRollup:
    pss_bytes: int
    uss_bytes: int  # Private_Clean + Private_Dirty (+ Private_Hugetlb): freed if the process exits


@dataclass(frozen=True)
class Pressure:
    """Linux PSI for memory: share of the last 10 s that tasks stalled waiting for memory."""

    some_avg10: float | None
    full_avg10: float | None


def parse_status(text: str) -> StatusMemory:
    """/proc/PID/status -> resident (anonymous, file, shmem) and swapped bytes."""
    fields = _kib_fields(text, ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmSwap", "VmHWM"))
    return StatusMemory(
        rss_bytes=fields.get("VmRSS", 0),
        anon_bytes=fields.get("RssAnon", 0),
        file_bytes=fields.get("RssFile", 0),
        shmem_bytes=fields.get("RssShmem", 0),
        swap_bytes=fields.get("VmSwap", 0),
        hwm_bytes=fields.get("VmHWM", 0),
    )


def parse_smaps_rollup(text: str) -> SmapsRollup:
    """/proc/PID/smaps_rollup (Linux 4.14+) -> PSS and USS in bytes."""
    private = ("Private_Clean", "Private_Dirty", "Private_Hugetlb")
    fields = _kib_fields(text, ("Pss", *private))
    return SmapsRollup(
        pss_bytes=fields.get("Pss", 0),
        uss_bytes=sum(fields.get(name, 0) for name in private),
    )


def parse_vmstat(text: str, keys: Iterable[str] = VMSTAT_KEYS) -> dict[str, int]:
    """/proc/vmstat counters ("pswpin 12") for ``keys`` only; absent keys are left out."""
    wanted = set(keys)
    counters: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted and value.strip().isdigit():
            counters[name] = int(value)
    return counters


def parse_pressure(text: str) -> Pressure:
    """/proc/pressure/memory ("some avg10=0.12 avg60=... total=...") -> avg10 of each line."""
    averages: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        for item in rest.split():
            key, _, value = item.partition("=")
            if key == "avg10":
                averages[kind] = float(value)
    return Pressure(some_avg10=averages.get("some"), full_avg10=averages.get("full"))


def parse_stat_ppid(text: str) -> int | None:
    """Parent pid from /proc/PID/stat; the command name may hold spaces and ')'."""
    _, paren, rest = text.rpartition(")")
    fields = rest.split()
    if not paren or len(fields) < 2 or not fields[1].lstrip("-").isdigit():
        return None
    return int(fields[1])


def _kib_fields(text: str, names: Iterable[str]) -> dict[str, int]:
    wanted = set(names)
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and key in wanted and parts and parts[0].isdigit():
            fields[key] = int(parts[0]) * (KIB if parts[1:2] == ["kB"] else 1)
    return fields


class ProcFs:
    """Reads /proc under ``root`` ("/" on a live system, a fixture folder in tests)."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.proc = root / "proc"

    def meminfo(self) -> Mapping[str, int]:
        return parse_meminfo(self._read("meminfo") or "")

    def vmstat(self) -> dict[str, int]:
        return parse_vmstat(self._read("vmstat") or "")

    def pressure(self) -> Pressure | None:
        """None where the kernel has no PSI (no file, or ``psi=0`` making reads fail)."""
        text = self._read("pressure/memory")
        return parse_pressure(text) if text else None

    def status(self, pid: int) -> StatusMemory | None:
        text = self._read(f"{pid}/status")
        return parse_status(text) if text else None

    def smaps_rollup(self, pid: int) -> SmapsRollup | None:
        text = self._read(f"{pid}/smaps_rollup")
        return parse_smaps_rollup(text) if text else None

    def ppid(self, pid: int) -> int | None:
        text = self._read(f"{pid}/stat")
        return parse_stat_ppid(text) if text else None

    def has_children_files(self) -> bool:
        """Whether /proc/PID/task/TID/children exists (kernels with CONFIG_PROC_CHILDREN).

        Many distribution and VM kernels leave it out; then the process tree is
        found by reading every process's parent instead.
        """
        return (self.proc / "thread-self" / "children").exists()

    def children(self, pid: int) -> list[int]:
        """Direct children from /proc/PID/task/*/children ([] once the process has gone)."""
        try:
            tasks = [task.name for task in (self.proc / str(pid) / "task").iterdir()]
        except OSError:
            return []
        found: list[int] = []
        for task in tasks:
            found.extend(
                int(child) for child in (self._read(f"{pid}/task/{task}/children") or "").split()
            )
        return found

    def pids(self) -> list[int]:
        names = os.listdir(self.proc)  # noqa: PTH208 (hundreds of entries; no Path objects needed)
        return [int(name) for name in names if name.isdigit()]

    def _read(self, relative: str) -> str | None:
        """The file's text, or None when it (or its process) does not exist or refuses reads."""
        try:
            fd = os.open(self.proc / relative, os.O_RDONLY)
        except OSError:
            return None
        try:
            return _read_all(fd).decode("utf-8", errors="replace")
        except OSError:
            return None  # ESRCH: the process exited after open; EOPNOTSUPP: PSI disabled
        finally:
            os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, _READ_CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)
