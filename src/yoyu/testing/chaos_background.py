"""What runs beside a chaos run's clients: the watch that measures, and the faults.

``Watch`` samples available memory against the floor and the engines the
gateway starts at 20 Hz, and the gateway's own memory at 2 Hz. ``Faults``
SIGKILLs a random engine of the gateway every ``kill_every_s`` (jittered,
seeded) and starts a memory hog (``memory_hog.py``, another process) that
eats into the guard's caution zone every ``hog_every_s``. Both run as
threads for as long as their ``running()`` block lasts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from yoyu.monitor.procfs import ProcFs
from yoyu.testing import memory_hog
from yoyu.testing.gateway_process import GatewayProcess
from yoyu.units import GIB, MIB

if TYPE_CHECKING:
    from yoyu.testing.chaos import ChaosSettings

HOG = Path(memory_hog.__file__)
HOG_RATE_MIB_S = 2048  # another application's fast start: a 50 Hz guard sees it in steps
CAUTION_GAP_BYTES = 1 * GIB  # the caution floor above the abort floor
WATCH_INTERVAL_S = 0.05  # memory and engine pids at 20 Hz
MEMORY_EVERY_TICKS = 10  # the gateway's own memory at 2 Hz
Engine = tuple[int, float]  # (pid, create time): pids are reused


class _Background:
    """Threads that loop until ``running()`` ends: the watcher and the faults."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def loops(self) -> list[Callable[[], None]]:
        raise NotImplementedError

    @contextmanager
    def running(self) -> Iterator[None]:
        self._threads = [threading.Thread(target=loop, daemon=True) for loop in self.loops()]
        for thread in self._threads:
            thread.start()
        try:
            yield
        finally:
            self.stop.set()
            for thread in self._threads:
                thread.join()


class Watch(_Background):
    """Available memory against the floor and the engines the gateway starts, at 20 Hz;
    the gateway's own memory at 2 Hz: anonymous + swapped (what a leak grows, as
    ``yoyu.monitor.leak`` fits it: RSS also moves with code and file pages) and RSS.

    The leak verdict is fitted to the second half of the run. The first half is
    the C allocator settling, which is growth with an end: measured here, 400
    engine load/unload cycles in one gateway process grew its anonymous memory
    3.3 MiB over the first 100 cycles and 0.04 MiB over the next 300 (glibc's
    per-thread arenas fill and fragment, then are reused). A leak keeps growing
    with the work; it shows in the second half as much as in the first.
    """

    def __init__(self, gateway: GatewayProcess, floor: int) -> None:
        super().__init__()
        self.gateway = gateway
        self.floor = floor
        self.crossings = 0
        self.least_headroom = psutil.virtual_memory().available - floor
        self.engines: set[Engine] = set()
        self.growth_points: list[tuple[float, int]] = []
        self.rss_mib: list[float] = []

    def loops(self) -> list[Callable[[], None]]:
        return [self._loop]

    def rss_ends_mib(self) -> tuple[float, float]:
        return (self.rss_mib[0], self.rss_mib[-1]) if self.rss_mib else (0.0, 0.0)

    def _loop(self) -> None:
        assert self.gateway.process is not None
        procfs, pid = ProcFs(), self.gateway.process.pid
        started, tick = time.monotonic(), 0
        while not self.stop.wait(WATCH_INTERVAL_S):
            headroom = psutil.virtual_memory().available - self.floor
            self.least_headroom = min(self.least_headroom, headroom)
            self.crossings += headroom < 0
            self.engines.update(identities(self.gateway.engine_pids()))
            status = procfs.status(pid) if tick % MEMORY_EVERY_TICKS == 0 else None
            if status is not None:
                growth = status.anon_bytes + status.swap_bytes
                self.growth_points.append((time.monotonic() - started, growth))
                self.rss_mib.append(status.rss_bytes / MIB)
            tick += 1


class Faults(_Background):
    """The engine killer and the memory hog, seeded, each on its own thread."""

    def __init__(self, gateway: GatewayProcess, settings: ChaosSettings, floor: int) -> None:
        super().__init__()
        self.gateway = gateway
        self.settings = settings
        self.floor = floor
        self.kills = 0
        self.hogs = 0
        self._dice = random.Random(settings.seed + 1)

    def loops(self) -> list[Callable[[], None]]:
        loops = []
        if self.settings.kill_every_s > 0:
            loops.append(self._kill_loop)
        if self.settings.hog_every_s > 0:
            loops.append(self._hog_loop)
        return loops

    def _kill_loop(self) -> None:
        while not self.stop.wait(self.settings.kill_every_s * self._dice.uniform(0.5, 1.5)):
            engines = self.gateway.engine_pids()
            if engines:
                self.kills += kill_engine(self._dice.choice(engines))

    def _hog_loop(self) -> None:
        while not self.stop.wait(self.settings.hog_every_s):
            leave = self.floor + CAUTION_GAP_BYTES // 2  # inside the caution zone
            command = [
                sys.executable, str(HOG), str(HOG_RATE_MIB_S), "--chunk", "64",
                "--leave", str(leave // MIB), "--limit", str(self.settings.room_bytes // MIB),
                "--hold", str(self.settings.hog_hold_s),
            ]  # fmt: skip
            hog = subprocess.run(command, capture_output=True, check=False)
            self.hogs += hog.returncode == 0


def kill_engine(pid: int) -> int:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # it stopped on its own meanwhile
        return 0
    return 1


def identities(pids: Sequence[int]) -> set[Engine]:
    found = set()
    for pid in pids:
        try:
            found.add((pid, psutil.Process(pid).create_time()))
        except psutil.NoSuchProcess:
            continue
    return found
