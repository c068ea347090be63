"""Engines busy for nobody: found by their CPU time, stopped, loaded again on demand.

A request the gateway stopped (its client left, its deadline passed) has
its connection cut, and llama.cpp's servers stop generating when they see
that. This is the net under that: a managed engine that keeps a core busy
with no request of the gateway in flight (an engine that missed the cut, a
wedged prompt) is stopped once that has lasted ``BUSY_TICKS`` maintenance
ticks, and the next request loads it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil

BUSY_SHARE = 0.5  # of one core
BUSY_TICKS = 3


@dataclass(frozen=True)
class EngineLoad:
    """One managed model's engine at one maintenance tick."""

    model_id: str
    pid: int | None
    in_flight: int


class RunawayWatch:
    """Counts consecutive busy ticks of idle engines; says which to stop (pure but for CPU)."""

    def __init__(self, cpu_seconds: Callable[[int], float | None] | None = None) -> None:
        self._cpu_seconds = cpu_seconds or process_tree_cpu_seconds
        # model -> (pid, tick time, cpu seconds): a new pid (a reload) starts afresh
        self._last: dict[str, tuple[int, float, float]] = {}
        self._busy_ticks: dict[str, int] = {}

    def tick(self, engines: Iterable[EngineLoad], now_s: float) -> list[tuple[str, float]]:
        """Models to stop now, each with the share of a core it used in the last tick."""
        runaway: list[tuple[str, float]] = []
        seen = set()
        for engine in engines:
            seen.add(engine.model_id)
            share = self._share(engine, now_s)
            busy = share is not None and share >= BUSY_SHARE and engine.in_flight == 0
            ticks = self._busy_ticks.get(engine.model_id, 0) + 1 if busy else 0
            self._busy_ticks[engine.model_id] = ticks
            if ticks >= BUSY_TICKS and share is not None:
                runaway.append((engine.model_id, share))
                self._busy_ticks[engine.model_id] = 0
        for gone in set(self._last) - seen:
            self._last.pop(gone, None)
            self._busy_ticks.pop(gone, None)
        return runaway

    def _share(self, engine: EngineLoad, now_s: float) -> float | None:
        cpu = self._cpu_seconds(engine.pid) if engine.pid is not None else None
        previous = self._last.pop(engine.model_id, None)
        if cpu is None or engine.pid is None:
            return None
        self._last[engine.model_id] = (engine.pid, now_s, cpu)
        if previous is None or previous[0] != engine.pid or now_s <= previous[1]:
            return None
        return (cpu - previous[2]) / (now_s - previous[1])


def process_tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` and its children, or None when it is gone."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
        return sum(sum(process.cpu_times()[:2]) for process in processes)
    except psutil.Error:
        return None
