"""What ``yoyu watch`` shows: the machine, each engine's process tree, GPUs, and where
available memory stands against the guard's floors. Reading is here; drawing is the CLI's.

Engines are found by process name (llama-server, ollama, vLLM, the Python llama.cpp
server...) unless the caller names the pids to show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from yoyu.guard.decide import Observation, assess
from yoyu.guard.policy import GuardPolicy, Thresholds
from yoyu.monitor.process_tree import ProcessReader, process_reader
from yoyu.monitor.system import SystemReader, system_reader
from yoyu.monitor.types import GpuSample, SystemSample

ENGINE_NAMES = frozenset(
    {"llama-server", "llama-cli", "ollama", "ollama_llama_server", "koboldcpp", "lms", "vllm"}
)
ENGINE_MODULES = (
    "llama_cpp.server",
    "yoyu.backends.llamacpp_python_server",
    "vllm.entrypoints",
    "mlx_lm.server",
    "sglang.launch_server",
)


@dataclass(frozen=True)
class TreeView:
    """One engine's process tree, summed."""

    pid: int
    name: str
    processes: int
    rss_bytes: int
    swap_bytes: int | None
    gpu_bytes: int | None
    anon_bytes: int | None = None  # heap, KV cache, buffers: what grows
    file_bytes: int | None = None  # mostly mmap'd weights the page cache can drop


@dataclass(frozen=True)
class WatchView:
    system: SystemSample
    trees: tuple[TreeView, ...]
    gpus: tuple[GpuSample, ...]
    thresholds: Thresholds
    level: str  # "ok", "caution" or "abort" for the floors as they stand now
    reason: str  # the floor crossed, in words ("" when ok)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def engine_pids() -> list[int]:
    """Root processes of engines running now (children of another engine are left out)."""
    found: dict[int, int] = {}
    for process in psutil.process_iter(["pid", "ppid", "name", "cmdline"]):
        info = process.info
        cmdline = " ".join(info.get("cmdline") or [])
        if info.get("name") in ENGINE_NAMES or any(m in cmdline for m in ENGINE_MODULES):
            found[info["pid"]] = info.get("ppid") or 0
    return sorted(pid for pid, ppid in found.items() if ppid not in found)


class WatchReader:
    """Reads a ``WatchView``; keeps its readers so per-second rates work between reads."""

    def __init__(
        self,
        policy: GuardPolicy,
        pids: Sequence[int] | None = None,
        *,
        system: SystemReader | None = None,
        processes: ProcessReader | None = None,
        gpus: Any = None,
        engines: Callable[[], Sequence[tuple[int, str]]] | None = None,
    ) -> None:
        self.policy = policy
        self._pids = list(pids) if pids is not None else None
        self._engines = engines  # (root pid, name) of each tree, read at every reading
        self._system = system or system_reader()
        self._processes = processes or process_reader()
        self._gpus = gpus

    def read(self) -> WatchView:
        system = self._system.read()
        thresholds = self.policy.resolve(system.total_bytes)
        trees = tuple(
            tree for tree in (self._tree(pid, name) for pid, name in self._roots()) if tree
        )
        gpus = self._read_gpus(
            [pid for tree in trees for pid in self._processes.members([tree.pid])]
        )
        observation = Observation(
            t_s=system.t_s,
            available_bytes=system.available_bytes,
            gpu_free_bytes=min((g.free_bytes for g in gpus), default=None),
            psi_some=system.psi_some_avg10,
            psi_full=system.psi_full_avg10,
            macos_pressure=system.macos_pressure,
        )
        trigger = assess(thresholds, observation)
        level = trigger.level.name.lower() if trigger else "ok"
        reason = trigger.message if trigger else ""
        return WatchView(system, trees, gpus, thresholds, level, reason)

    def _roots(self) -> Sequence[tuple[int, str | None]]:
        if self._engines is not None:
            return self._engines()
        return [(pid, None) for pid in (self._pids if self._pids is not None else engine_pids())]

    def _tree(self, pid: int, name: str | None = None) -> TreeView | None:
        sample = self._processes.read([pid])
        if not sample.pids:
            return None
        if name is None:
            try:
                name = psutil.Process(pid).name()
            except psutil.Error:
                name = "?"
        return TreeView(
            pid, name, len(sample.pids), sample.rss_bytes, sample.swap_bytes, None,
            sample.anon_bytes, sample.file_bytes,
        )  # fmt: skip

    def _read_gpus(self, pids: Sequence[int]) -> tuple[GpuSample, ...]:
        if self._gpus is None:
            return ()
        result: tuple[GpuSample, ...] = self._gpus.read(pids)
        return result
