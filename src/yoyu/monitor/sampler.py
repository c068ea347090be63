"""A background thread that samples the machine, a process tree and the GPUs.

The sampler must stay cheap (under 1 % of a core at 10 Hz; see
``benchmarks/sampler_cost.py``), so on Linux it reads the few /proc files it
needs directly, finds the tree's members at most once a second, and reads the
costly ``smaps_rollup`` (USS/PSS) only every ``smaps_interval_s``, or less
often when one read costs more than 0.2 % of a core over that interval.

An engine that reports its own load (vLLM's KV pool fill on ``/metrics``) is
read through ``engine`` once a second, and with every sample while the runner
says an answer is being written; each sample carries the latest reading.

``mark()`` records an event *and* takes a sample on the spot, in the caller's
thread: a phase boundary (load finished, generation started) then has a reading
taken at that instant rather than up to one interval later, and a generation
shorter than the interval still has readings at both of its ends.

The thread measures its own CPU time (``cpu_seconds``), so the cost of
watching is reported beside what was watched.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any

from yoyu.errors import SettingsError
from yoyu.monitor.gpu import NvmlGpus
from yoyu.monitor.process_tree import ProcessReader, process_reader
from yoyu.monitor.system import SystemReader, system_reader
from yoyu.monitor.types import EngineSample, Event, GpuSample, Sample

DEFAULT_RATE_HZ = 10.0
DEFAULT_SMAPS_INTERVAL_S = 5.0
DEFAULT_ENGINE_INTERVAL_S = 1.0  # an engine's /metrics is an HTTP call: read it at 1 Hz
DEFAULT_MAX_SAMPLES = 36_000  # one hour at 10 Hz; older samples drop off the front
# smaps_rollup walks every resident page (about 45 ns each here: 3 ms for 256 MiB, 0.2 s
# for 20 GiB), so its interval stretches until it costs at most this share of a core.
SMAPS_CORE_SHARE = 0.002


class Sampler:
    """Samples while started; ``pids`` names the roots of the tree to watch (may change)."""

    def __init__(
        self,
        pids: Callable[[], Sequence[int]],
        rate_hz: float = DEFAULT_RATE_HZ,
        gpus: bool = True,
        *,
        smaps_interval_s: float | None = DEFAULT_SMAPS_INTERVAL_S,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        on_sample: Callable[[Sample], None] | None = None,
        system: SystemReader | None = None,
        processes: ProcessReader | None = None,
        nvml: Any = None,
        engine: Callable[[], EngineSample | None] | None = None,
        engine_interval_s: float = DEFAULT_ENGINE_INTERVAL_S,
    ) -> None:
        if not 0 < rate_hz <= 1000:
            raise SettingsError(f"sampler rate {rate_hz} Hz is out of range; use 0 < rate <= 1000")
        self.rate_hz = rate_hz
        self._pids = pids
        self._system = system or system_reader()
        self._processes = processes or process_reader()
        self._gpus = NvmlGpus(nvml) if gpus else None
        self._gpus_opened = False
        self._smaps_interval_s = smaps_interval_s
        self._smaps_due_at = float("-inf")
        self._engine = engine
        self._engine_interval_s = engine_interval_s
        self._engine_due_at = float("-inf")
        self._engine_latest: EngineSample | None = None
        self._engine_full_rate = False
        self._on_sample = on_sample
        self._samples: deque[Sample] = deque(maxlen=max_samples)
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.cpu_seconds = 0.0  # CPU time the background thread has used so far

    def start(self) -> Sampler:
        if self._thread is not None:
            return self
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="yoyu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread; a failure inside it is raised here rather than lost."""
        if self._thread is not None:
            self._stopping.set()
            self._thread.join()
            self._thread = None
        if self._gpus is not None:
            self._gpus.close()
            self._gpus_opened = False
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def mark(self, kind: str, detail: str = "") -> Event:
        """Record an event and a sample taken now, so the event has an exact reading."""
        with self._lock:
            sample = self._read()
            event = Event(t_s=sample.t_s, kind=kind, detail=detail)
            self._samples.append(sample)
            self._events.append(event)
        if self._on_sample is not None:
            self._on_sample(sample)
        return event

    def sample_now(self) -> Sample:
        """Take one sample in this thread (also stored with the others)."""
        with self._lock:
            sample = self._read()
            self._samples.append(sample)
        if self._on_sample is not None:
            self._on_sample(sample)
        return sample

    def snapshot(self) -> Sample:
        """The latest sample, or a new one if none was taken yet."""
        with self._lock:
            latest = self._samples[-1] if self._samples else None
        return latest if latest is not None else self.sample_now()

    def engine_at_full_rate(self, on: bool) -> None:
        """While an answer is written the engine's pool fills and empties within a second
        (vLLM wrote 1,010 tokens in 2 s here): read its gauge with every sample then."""
        self._engine_full_rate = on

    def samples(self, since_t_s: float | None = None) -> list[Sample]:
        with self._lock:
            kept = list(self._samples)
        return kept if since_t_s is None else [s for s in kept if s.t_s > since_t_s]

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        interval_s = 1.0 / self.rate_hz
        cpu_at_start = time.thread_time()
        due_at = time.monotonic()
        try:
            while not self._stopping.is_set():
                self.sample_now()
                due_at = max(due_at + interval_s, time.monotonic())  # skip missed ticks, no burst
                self.cpu_seconds = time.thread_time() - cpu_at_start
                self._stopping.wait(due_at - time.monotonic())
        except BaseException as error:  # kept for stop() to raise in the owner's thread
            self._error = error
        self.cpu_seconds = time.thread_time() - cpu_at_start

    def _read(self) -> Sample:
        roots = self._pids()
        system = self._system.read()
        process = self._processes.read(roots)
        if self._smaps_interval_s is not None and system.t_s >= self._smaps_due_at:
            cpu_before = time.thread_time()
            smaps = self._processes.read_smaps(process.pids)
            cost_s = time.thread_time() - cpu_before
            self._smaps_due_at = system.t_s + max(self._smaps_interval_s, cost_s / SMAPS_CORE_SHARE)
            if smaps is not None:
                process = replace(process, uss_bytes=smaps[0], pss_bytes=smaps[1])
        gpus = self._read_gpus(process.pids)
        engine = self._read_engine(system.t_s)
        return Sample(system=system, process=process, gpus=gpus, engine=engine)

    def _read_engine(self, now_s: float) -> EngineSample | None:
        """The engine's own gauge, read at most once per interval and carried in between."""
        if self._engine is None:
            return None
        if self._engine_full_rate or now_s >= self._engine_due_at:
            self._engine_due_at = now_s + self._engine_interval_s
            self._engine_latest = self._engine()
        return self._engine_latest

    def _read_gpus(self, pids: Sequence[int]) -> tuple[GpuSample, ...]:
        """NVML opens on the first reading (it can take a while) and stays open until stop()."""
        if self._gpus is None:
            return ()
        if not self._gpus_opened:
            self._gpus_opened = True
            if not self._gpus.open():
                self._gpus = None
                return ()
        return self._gpus.read(pids)
