"""The guard thread: sample, ``decide``, act, log; around any target with ``pids()``.

Each tick takes one sample of the
machine and the guarded tree, turns it into an ``Observation`` (the budget
applied, the trend of the last ``TREND_WINDOW_S``), asks the pure ``decide``
for the next step and carries it out. Signals are sent at once; an unload runs
in its own thread so sampling goes on while an engine shuts down, and a hung
unload is overtaken by SIGTERM after the grace period.

Ticks come every ``policy.interval_s`` (20 ms by default) while memory needs
watching: a load under way (``loading()``), an episode, memory falling, or
memory near the caution floor; otherwise every ``policy.idle_interval_s``
(250 ms). The pure ``yoyu.guard.pace`` says which; the thread only applies it.

The budget is measured from a baseline taken in ``start()``, in the caller's
thread, so a command started after ``start()`` is counted from nothing.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

import psutil

from yoyu.guard.audit import AuditLog, AuditRecord, sample_json
from yoyu.guard.decide import (
    Action,
    GuardState,
    Level,
    Observation,
    Step,
    Trigger,
    advance,
    decide,
    unload_finished,
)
from yoyu.guard.pace import needs_watching, next_interval
from yoyu.guard.policy import GuardPolicy, Thresholds
from yoyu.guard.signals import SignalReport, kill_tree, terminate_tree
from yoyu.guard.targets import GuardTarget, can_unload
from yoyu.monitor.sampler import Sampler
from yoyu.monitor.types import Sample

TREND_WINDOW_S = 0.3  # long enough for a few samples, short enough to see a ramp start
AUDIT_SAMPLES = 20  # trigger samples kept per decision
RECENT_ACTIONS = 64  # decisions kept in memory (guard.actions)


@dataclass(frozen=True)
class Baseline:
    """The machine when the guard started: what the budget is measured from."""

    t_s: float
    available_bytes: int
    swap_used_bytes: int
    total_bytes: int
    tree_bytes: int = 0  # the guarded tree's anonymous + swapped memory


def observe(
    sample: Sample,
    baseline: Baseline,
    budget_bytes: int | None,
    trend: Sequence[Sample],
    planned_low_bytes: int | None = None,
    budget_of_tree: bool = False,
) -> Observation:
    """An observation of ``sample``: the budget applied, the trend over ``trend``."""
    available = effective_available(sample, baseline, budget_bytes, budget_of_tree)
    points = tuple(
        (s.t_s, effective_available(s, baseline, budget_bytes, budget_of_tree)) for s in trend
    )
    gpus = [gpu.free_bytes for gpu in sample.gpus]
    system = sample.system
    return Observation(
        t_s=sample.t_s,
        available_bytes=available,
        trend=points,
        swap_growth_bytes=max(0, system.swap_used_bytes - baseline.swap_used_bytes),
        gpu_free_bytes=min(gpus) if gpus else None,
        psi_some=system.psi_some_avg10,
        psi_full=system.psi_full_avg10,
        macos_pressure=system.macos_pressure,
        tree_alive=sample.process.rss_bytes > 0,  # a zombie has no memory left to free
        planned_low_bytes=planned_low_bytes,
    )


def effective_available(
    sample: Sample, baseline: Baseline, budget_bytes: int | None, budget_of_tree: bool = False
) -> int:
    """Available memory; under a budget, what is left of it: the budget minus what went since
    the start, which is the machine's drop in available memory, and at least what the guarded
    tree itself took (anonymous + swapped), so memory freed elsewhere cannot hide its growth.
    ``budget_of_tree``: the budget is the guarded tree's alone (a ``yoyu node``'s
    rpc-server), so what other programs take does not count against it. The real figure
    still wins when it is lower."""
    real = sample.system.available_bytes
    if budget_bytes is None:
        return real
    machine_drop = 0 if budget_of_tree else baseline.available_bytes - real
    tree_growth = sample.process.growth_bytes - baseline.tree_bytes
    return min(real, budget_bytes - max(machine_drop, tree_growth))


class Guard:
    """Watches ``target`` (``pids()``, optionally ``unload()``) under ``policy``.

    ``with Guard(target): ...`` or ``start()``/``stop()``. ``audit`` defaults to
    the JSON-lines file in the data folder; ``on_record`` sees every audit
    record as it is written (the CLI prints them). ``planned_bytes`` is what the
    plan says the target will hold at its peak: a load is not mistaken for a
    runaway while it stays within it (``Observation.planned_low_bytes``).
    ``with guard.loading(): ...`` around a load keeps sampling fast while it runs.
    """

    def __init__(
        self,
        target: GuardTarget,
        policy: GuardPolicy | None = None,
        *,
        audit: AuditLog | None = None,
        on_record: Callable[[AuditRecord], None] | None = None,
        planned_bytes: int | None = None,
    ) -> None:
        self.target = target
        self.planned_bytes = planned_bytes
        self.planned_low_bytes: int | None = None
        self.policy = policy or GuardPolicy()
        self.audit = audit or AuditLog()
        self._on_record = on_record
        self._sampler = Sampler(
            lambda: list(target.pids()),
            rate_hz=1.0 / self.policy.interval_s,
            smaps_interval_s=None,
            max_samples=max(64, int(TREND_WINDOW_S / self.policy.interval_s) * 4),
        )
        self._stopping = threading.Event()
        self._wake = threading.Event()  # cuts an idle wait short: a load began, or stop()
        self._loads = 0
        self._loads_lock = threading.Lock()
        self._watched_at = 0.0  # when memory last needed fast sampling
        self.interval_s = self.policy.interval_s  # the wait before the next tick
        self._thread: threading.Thread | None = None
        self._unload_done = threading.Event()
        self._error: BaseException | None = None
        self.baseline: Baseline | None = None
        self.thresholds: Thresholds | None = None
        self.state: GuardState | None = None
        # The latest decisions, for the caller to read; the audit log keeps every one. A
        # gateway's guard lives for weeks and each record holds its trigger samples
        # (~25 KiB): kept unbounded, they were a chaos run's gateway growing 1.5 MiB a minute.
        self.actions: collections.deque[AuditRecord] = collections.deque(maxlen=RECENT_ACTIONS)
        self.first_stop: Trigger | None = None  # what made the guard stop the target

    @property
    def stopped_target(self) -> bool:
        """True once the guard unloaded at abort, or sent SIGTERM or SIGKILL."""
        return self.first_stop is not None

    def start(self) -> Guard:
        if self._thread is not None:
            return self
        first = self._sampler.sample_now()
        system = first.system
        self.baseline = Baseline(
            first.t_s,
            system.available_bytes,
            system.swap_used_bytes,
            system.total_bytes,
            first.process.growth_bytes,
        )
        self.thresholds = self.policy.resolve(system.total_bytes)
        if self.planned_bytes is not None:
            start = observe(
                first, self.baseline, self.policy.budget_bytes, [first],
                budget_of_tree=self.policy.budget_of_tree,
            )  # fmt: skip
            self.planned_low_bytes = start.available_bytes - self.planned_bytes
        self.state = GuardState(self.thresholds, can_unload=can_unload(self.target))
        self._watched_at = first.t_s  # fast while the first trend fills
        self._record("start", first.t_s, "guard started", detail=self._settings(), samples=[first])
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="yoyu-guard", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (the target is left as it is); an error in the thread is raised here."""
        if self._thread is not None:
            self._stopping.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
            self._record("end", time.monotonic(), "guard stopped")
        self._sampler.stop()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> Guard:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """Sample fast while the body runs (a model loading), from its first instant."""
        with self._loads_lock:
            self._loads += 1
        self._wake.set()
        try:
            yield
        finally:
            with self._loads_lock:
                self._loads -= 1

    @property
    def is_loading(self) -> bool:
        return self._loads > 0

    def samples(self) -> list[Sample]:
        """The latest samples, oldest first: the last 64 at least (1.3 s at 50 Hz)."""
        return self._sampler.samples()

    # -- the loop ----------------------------------------------------------------

    def _run(self) -> None:
        due_at = time.monotonic()
        try:
            while not self._stopping.is_set():
                self.tick()
                due_at = max(due_at + self.interval_s, time.monotonic())
                if self._wake.wait(due_at - time.monotonic()):
                    self._wake.clear()
                    due_at = time.monotonic()
        except BaseException as error:  # raised by stop() in the owner's thread
            self._error = error

    def tick(self) -> Action | None:
        """One round: sample, decide, act. Public so a caller can drive it without the thread."""
        assert self.state is not None and self.baseline is not None
        if self._unload_done.is_set():
            self._unload_done.clear()
            self.state = unload_finished(self.state)
        sample = self._sampler.sample_now()
        kept = self._sampler.samples()
        trend = [s for s in kept if s.t_s > sample.t_s - TREND_WINDOW_S]
        observation = observe(
            sample,
            self.baseline,
            self.policy.budget_bytes,
            trend,
            self.planned_low_bytes,
            self.policy.budget_of_tree,
        )
        action = decide(self.state, observation)
        self.state = advance(self.state, observation, action)
        if action is not None:
            self._act(action, observation, trend)
        self._pace(observation, kept)
        return action

    def _pace(self, observation: Observation, kept: Sequence[Sample]) -> None:
        """Set the wait before the next tick from what this one saw (``yoyu.guard.pace``)."""
        assert self.state is not None
        idle_s = self.policy.idle_interval_s
        span = [s for s in kept if s.t_s >= observation.t_s - 2 * idle_s]  # an idle gap or more
        recent = [(s.t_s, self._available(s)) for s in (span if len(span) >= 2 else kept[-2:])]
        if needs_watching(
            self.state, observation, recent, loading=self.is_loading, idle_interval_s=idle_s
        ):
            self._watched_at = observation.t_s
        quiet_s = observation.t_s - self._watched_at
        self.interval_s = next_interval(self.policy.interval_s, idle_s, quiet_s)

    def _available(self, sample: Sample) -> int:
        assert self.baseline is not None
        budget, of_tree = self.policy.budget_bytes, self.policy.budget_of_tree
        return effective_available(sample, self.baseline, budget, of_tree)

    def _act(self, action: Action, observation: Observation, trend: Sequence[Sample]) -> None:
        if self.first_stop is None and _stops(action):
            self.first_stop = action.trigger
        detail = _action_detail(action, observation)
        pids = self._tree()
        if action.step is Step.UNLOAD:
            self._start_unload()
        elif action.step in (Step.TERMINATE, Step.KILL):
            send = terminate_tree if action.step is Step.TERMINATE else kill_tree
            report = send(pids, self.policy.protected)
            detail.update(_report_detail(report))
            pids = list(report.signalled)
        record = self._record(
            action.step.value, observation.t_s, action.message, pids, detail, trend[-AUDIT_SAMPLES:]
        )
        self.actions.append(record)

    def _start_unload(self) -> None:
        unload = getattr(self.target, "unload", None)

        def run() -> None:
            with contextlib.suppress(Exception):  # a failed unload is overtaken by SIGTERM
                if unload is not None:
                    unload()
            self._unload_done.set()

        threading.Thread(target=run, name="yoyu-guard-unload", daemon=True).start()

    def _tree(self) -> list[int]:
        """The target's roots and every descendant, read now (not the sampler's cached list)."""
        found: dict[int, None] = {}
        for root in self.target.pids():
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(root)
                found.update(dict.fromkeys([root, *(c.pid for c in process.children(True))]))
        return list(found)

    def _record(
        self,
        kind: str,
        t_s: float,
        message: str,
        pids: Sequence[int] = (),
        detail: dict[str, object] | None = None,
        samples: Sequence[Sample] = (),
    ) -> AuditRecord:
        record = AuditRecord(
            wall_time=time.time(),
            t_s=t_s,
            kind=kind,
            message=message,
            target=str(self.target),
            guard_pid=os.getpid(),
            pids=tuple(pids),
            detail=dict(detail or {}),
            samples=tuple(sample_json(sample) for sample in samples),
        )
        self.audit.write(record, samples)
        if self._on_record is not None:
            self._on_record(record)
        return record

    def _settings(self) -> dict[str, object]:
        assert self.thresholds is not None and self.baseline is not None
        return {
            "capacity_bytes": self.thresholds.capacity_bytes,
            "caution_bytes": self.thresholds.caution_bytes,
            "abort_bytes": self.thresholds.abort_bytes,
            "kill_bytes": self.thresholds.kill_bytes,
            "budget_bytes": self.policy.budget_bytes,
            "baseline_available_bytes": self.baseline.available_bytes,
            "planned_bytes": self.planned_bytes,
            "planned_low_bytes": self.planned_low_bytes,
            "grace_s": self.thresholds.grace_s,
            "lead_time_s": self.thresholds.lead_time_s,
            "interval_s": self.policy.interval_s,
            "idle_interval_s": self.policy.idle_interval_s,
        }


def _stops(action: Action) -> bool:
    if action.step in (Step.TERMINATE, Step.KILL):
        return True
    return (
        action.step is Step.UNLOAD
        and action.trigger is not None
        and action.trigger.level is Level.ABORT
    )


def _action_detail(action: Action, observation: Observation) -> dict[str, object]:
    trigger = action.trigger
    detail: dict[str, object] = {"available_bytes": observation.available_bytes}
    if trigger is not None:
        detail.update(
            level=trigger.level.name.lower(),
            floor=trigger.floor,
            threshold=trigger.threshold,
            figure=trigger.figure,
            predicted=trigger.predicted,
            seconds_to_floor=trigger.seconds_to_floor,
        )
    return detail


def _report_detail(report: SignalReport) -> dict[str, object]:
    return {
        "signalled": list(report.signalled),
        "spared": [{"pid": pid, "name": name} for pid, name in report.spared],
    }
