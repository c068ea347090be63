"""Write a run's samples and events to the store while it runs, not when it ends.

A run that ends in an OOM kill, a crash or a power loss is the run whose
evidence matters most. The recorder commits what the sampler gathered once a
``flush_interval_s`` (one transaction per batch, WAL with SQLite's default
``synchronous=FULL``, so a committed batch survives a power loss), and once
more when the run closes. What a crash can lose is bounded: the samples and
marks of the last interval (1 s by default: ten samples at 10 Hz), never a
half-written batch. ``yoyu runs`` then shows the run as interrupted, with
everything up to the last commit.
"""

from __future__ import annotations

import threading

from yoyu.monitor.sampler import Sampler
from yoyu.monitor.store import RunStore

DEFAULT_FLUSH_INTERVAL_S = 1.0


class RunRecorder:
    """Copies ``sampler``'s new samples and events into run ``run_id`` of ``store``."""

    def __init__(
        self,
        store: RunStore,
        run_id: int,
        sampler: Sampler,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.sampler = sampler
        self.flush_interval_s = flush_interval_s
        self._written_until_t_s: float | None = None
        self._events_written = 0
        self._flush_lock = threading.Lock()  # the thread's flush and the owner's final one
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> RunRecorder:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="yoyu-recorder", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and write what is left; a failure in the thread is raised here."""
        if self._thread is not None:
            self._stopping.set()
            self._thread.join()
            self._thread = None
        self.flush()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def flush(self) -> int:
        """Commit the samples and events gathered since the last flush; how many rows."""
        with self._flush_lock:
            samples = self.sampler.samples(since_t_s=self._written_until_t_s)
            events = self.sampler.events()[self._events_written :]
            if not samples and not events:
                return 0
            self.store.add_batch(self.run_id, samples, events)
            if samples:
                self._written_until_t_s = samples[-1].t_s
            self._events_written += len(events)
            return len(samples) + len(events)

    def _run(self) -> None:
        try:
            while not self._stopping.wait(self.flush_interval_s):
                self.flush()
        except BaseException as error:  # kept for stop() to raise in the owner's thread
            self._error = error
