"""What the sampler records: one system reading, one process-tree reading, one per GPU.

Everything is a frozen dataclass of plain ints, floats and strings so a sample
can cross threads, go into SQLite and come back equal. Byte counts are ``int``;
rates are per second; ``t_s`` is ``time.monotonic()`` (for intervals and
slopes) and ``wall_time`` is ``time.time()`` (for people and logs).

Fields a platform cannot measure are ``None``, never 0: Linux PSI on a kernel
built without it, the anonymous/file split of RSS on macOS, NVML's per-process
VRAM inside a container. A 0 would read as "nothing used".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SystemSample:
    """The whole machine at one instant (Linux: /proc/meminfo, vmstat, pressure)."""

    t_s: float
    wall_time: float
    total_bytes: int
    available_bytes: int  # MemAvailable, capped by a container's cgroup limit
    used_bytes: int  # total - available: what the OS cannot hand out without swapping
    swap_total_bytes: int
    swap_used_bytes: int
    page_in_per_s: float | None = None  # pswpin: pages read back from swap
    page_out_per_s: float | None = None  # pswpout: pages written to swap
    major_faults_per_s: float | None = None  # pgmajfault: includes mmap'd weights read from disk
    psi_some_avg10: float | None = None  # % of the last 10 s some task stalled on memory
    psi_full_avg10: float | None = None  # % of the last 10 s all non-idle tasks stalled
    macos_pressure: str | None = None  # "normal" / "warn" / "critical" on a Mac


@dataclass(frozen=True)
class ProcessSample:
    """A process tree (an engine and its children), summed over its live processes.

    ``file_bytes`` is mostly mmap'd model weights: the kernel drops and re-reads
    them with the page cache, so growth that matters (KV cache, leaks) shows in
    ``anon_bytes + swap_bytes``. Summing RSS over processes counts pages they
    share more than once; ``pss_bytes`` splits shared pages fairly.
    """

    pids: tuple[int, ...]
    rss_bytes: int
    anon_bytes: int | None = None  # RssAnon
    file_bytes: int | None = None  # RssFile
    shmem_bytes: int | None = None  # RssShmem
    swap_bytes: int | None = None  # VmSwap
    uss_bytes: int | None = None  # private pages (smaps_rollup), only on samples that read it
    pss_bytes: int | None = None  # proportional set size, same cadence as uss_bytes

    @property
    def footprint_bytes(self) -> int:
        """Memory the tree would need back if it all came home: resident plus swapped."""
        return self.rss_bytes + (self.swap_bytes or 0)

    @property
    def growth_bytes(self) -> int:
        """Anonymous + swapped: what a leak grows (falls back to RSS where the split is unknown)."""
        if self.anon_bytes is None:
            return self.rss_bytes + (self.swap_bytes or 0)
        return self.anon_bytes + (self.swap_bytes or 0)


EMPTY_PROCESS = ProcessSample(pids=(), rss_bytes=0)


@dataclass(frozen=True)
class GpuSample:
    """One GPU's memory; ``process_used_bytes`` is the watched tree's share (NVML)."""

    index: int
    used_bytes: int
    free_bytes: int
    process_used_bytes: int | None = None


@dataclass(frozen=True)
class EngineSample:
    """What the engine itself says about its load (vLLM's ``/metrics``): how full its KV
    pool is, as a share of its blocks, and how many requests run and wait for room."""

    kv_used_fraction: float
    requests_running: int
    requests_waiting: int


@dataclass(frozen=True)
class Sample:
    system: SystemSample
    process: ProcessSample
    gpus: tuple[GpuSample, ...] = ()
    engine: EngineSample | None = None  # the latest reading, at most a second old

    @property
    def t_s(self) -> float:
        return self.system.t_s

    @property
    def gpu_used_bytes(self) -> int | None:
        """Used memory summed over GPUs, or None where no GPU was sampled."""
        return sum(gpu.used_bytes for gpu in self.gpus) if self.gpus else None


@dataclass(frozen=True)
class Event:
    """Something that happened during a run: a phase mark, a guard action, a note."""

    t_s: float
    kind: str
    detail: str = ""
