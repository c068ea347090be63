"""The phase profile: the same six readings for every run, whatever the mode.

A single ``psutil.virtual_memory()`` at a random moment says nothing (the same
model reads 39.7 % in one mode and 88.5 % in another). yoyu reads memory at
fixed points of a run, found from the events the runner marks::

    load_start ─ load_end ──── generation_start ═══ generation_end ── stabilized
    baseline     loaded        pre_generation    peak    post_generation  stabilized

* baseline: the last sample at or before ``load_start``.
* loaded: the first sample at or after ``load_end`` (idle, model in memory).
* pre_generation: the last sample at or before ``generation_start``.
* peak: the worst of each figure over [generation_start, generation_end]
  (most used, least available), each taken on its own: the lowest available
  memory and the highest RSS need not fall on the same sample, and a guard or
  a user wants both. Its ``t_s`` is when the tree's footprint peaked.
* post_generation: the first sample at or after ``generation_end``.
* stabilized: the last sample at or before ``stabilized``, which the runner
  marks once :func:`stabilize` returns; ``stabilize_s`` is how long that took.

``Sampler.mark`` takes a sample at each mark, so every boundary has a reading
taken at that instant. In a chat, ``turn`` picks which generation (the last by
default); baseline and loaded come from the load before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from yoyu.errors import SettingsError
from yoyu.monitor.types import Event, Sample

LOAD_START = "load_start"
LOAD_END = "load_end"
GENERATION_START = "generation_start"
# The answer's first chunk: prefill is done and the engine holds the prompt's cache. A reading
# taken here is one every turn has between its start and end, even when the sampler thread's
# own readings come late (a slow engine's /metrics blocked it for 1.2 s here).
FIRST_TOKEN = "first_token"
GENERATION_END = "generation_end"
STABILIZED = "stabilized"
N = TypeVar("N", int, float)
PHASE_NAMES = ("baseline", "loaded", "pre_generation", "peak", "post_generation", "stabilized")


@dataclass(frozen=True)
class PhaseReading:
    t_s: float
    system_available_bytes: int
    swap_used_bytes: int
    process_rss_bytes: int
    process_anon_bytes: int | None
    process_file_bytes: int | None
    process_swap_bytes: int | None
    gpu_used_bytes: int | None
    engine_kv_used_fraction: float | None = None  # vLLM's pool fill; None for other engines


@dataclass(frozen=True)
class PhaseProfile:
    """One reading per phase; a phase whose marks are missing (load failed...) is None."""

    baseline: PhaseReading | None
    loaded: PhaseReading | None
    pre_generation: PhaseReading | None
    peak: PhaseReading | None
    post_generation: PhaseReading | None
    stabilized: PhaseReading | None
    stabilize_s: float | None

    def readings(self) -> dict[str, PhaseReading | None]:
        return {name: getattr(self, name) for name in PHASE_NAMES}

    def to_dict(self) -> dict[str, Any]:
        phases = {name: asdict(r) if r else None for name, r in self.readings().items()}
        return {"phases": phases, "stabilize_s": self.stabilize_s}


@dataclass(frozen=True)
class Stabilization:
    settled: bool  # False: the cap was reached first
    waited_s: float
    values: tuple[int, ...]  # the last readings taken


def reading_of(sample: Sample) -> PhaseReading:
    process = sample.process
    return PhaseReading(
        t_s=sample.t_s,
        system_available_bytes=sample.system.available_bytes,
        swap_used_bytes=sample.system.swap_used_bytes,
        process_rss_bytes=process.rss_bytes,
        process_anon_bytes=process.anon_bytes,
        process_file_bytes=process.file_bytes,
        process_swap_bytes=process.swap_bytes,
        gpu_used_bytes=sample.gpu_used_bytes,
        engine_kv_used_fraction=sample.engine.kv_used_fraction if sample.engine else None,
    )


def peak_reading(samples: Sequence[Sample]) -> PhaseReading:
    """The worst value of each figure over ``samples`` (must not be empty)."""
    readings = [reading_of(sample) for sample in samples]
    top = max(readings, key=lambda r: r.process_rss_bytes + (r.process_swap_bytes or 0))
    return PhaseReading(
        t_s=top.t_s,
        system_available_bytes=min(r.system_available_bytes for r in readings),
        swap_used_bytes=max(r.swap_used_bytes for r in readings),
        process_rss_bytes=max(r.process_rss_bytes for r in readings),
        process_anon_bytes=_max_known([r.process_anon_bytes for r in readings]),
        process_file_bytes=_max_known([r.process_file_bytes for r in readings]),
        process_swap_bytes=_max_known([r.process_swap_bytes for r in readings]),
        gpu_used_bytes=_max_known([r.gpu_used_bytes for r in readings]),
        engine_kv_used_fraction=pool_in_use(samples),
    )


def pool_in_use(samples: Sequence[Sample]) -> float | None:
    """The engine's KV pool at its fullest over ``samples``, or None when no reading saw it
    in use.

    A reading of an empty pool with no request running says nothing about the answer
    written meanwhile: vLLM's frontend can fall seconds behind its engine on a busy CPU
    and then updates the gauge only once the answer is done (seen here with both cores
    busy: the whole answer arrived in 0.2 s after 3.6 s of silence, every reading 0.0).
    Reporting 0 % there would be a wrong figure; "not observed" is the true one.
    """
    in_use = [
        sample.engine.kv_used_fraction
        for sample in samples
        if sample.engine is not None
        and (sample.engine.requests_running > 0 or sample.engine.kv_used_fraction > 0)
    ]
    return max(in_use, default=None)


def phase_profile(
    samples: Sequence[Sample], events: Sequence[Event], turn: int = -1
) -> PhaseProfile:
    """The profile of generation number ``turn`` (Python indexing) from a run's marks."""
    ordered = sorted(samples, key=lambda sample: sample.t_s)
    starts = [e for e in events if e.kind == GENERATION_START]
    start = _pick_turn(starts, turn)
    end = _first_after(events, GENERATION_END, start)
    settled = _first_after(events, STABILIZED, end, before=_next_start(starts, start))
    load_start = _last_before(events, LOAD_START, start)
    load_end = _last_before(events, LOAD_END, start)
    window = _between(ordered, start, end)
    return PhaseProfile(
        baseline=_at_or_before(ordered, load_start),
        loaded=_at_or_after(ordered, load_end),
        pre_generation=_at_or_before(ordered, start),
        peak=peak_reading(window) if window else None,
        post_generation=_at_or_after(ordered, end),
        stabilized=_at_or_before(ordered, settled),
        stabilize_s=settled.t_s - end.t_s if settled and end else None,
    )


def stabilize(
    read_fn: Callable[[], int | Sequence[int]],
    tolerance_bytes: int,
    window_s: float,
    cap_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval_s: float = 0.1,
) -> Stabilization:
    """Read until every figure has stayed within ``tolerance_bytes`` for ``window_s``.

    After a generation, freed buffers go back to the allocator and the KV cache
    settles over a second or two; reading too early reports a transient. Gives
    up after ``cap_s`` (``settled=False``) because some engines never settle.
    """
    if window_s <= 0 or cap_s < window_s or tolerance_bytes < 0:
        raise SettingsError(
            f"stabilize needs window_s > 0, cap_s >= window_s and a tolerance >= 0 "
            f"(got {window_s}, {cap_s}, {tolerance_bytes})"
        )
    started = clock()
    history: list[tuple[float, tuple[int, ...]]] = []
    while True:
        now, values = clock(), _as_tuple(read_fn())
        history = [(t, v) for t, v in history if t >= now - window_s] + [(now, values)]
        if now - started >= window_s and _spread(history) <= tolerance_bytes:
            return Stabilization(True, now - started, values)
        if now - started >= cap_s:
            return Stabilization(False, now - started, values)
        sleep(interval_s)


def settling_figures(sample: Sample) -> tuple[int, int]:
    """What must stop moving before a run counts as settled: the tree's footprint and growth.

    System-wide available memory is left out: other programs move it, and a
    busy machine would never look settled.
    """
    return sample.process.footprint_bytes, sample.process.growth_bytes


def _spread(history: Sequence[tuple[float, tuple[int, ...]]]) -> int:
    columns = zip(*(values for _, values in history), strict=True)
    return max((max(column) - min(column) for column in columns), default=0)


def _as_tuple(value: int | Sequence[int]) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


def _max_known(values: Sequence[N | None]) -> N | None:
    known = [value for value in values if value is not None]
    return max(known) if known else None


def _pick_turn(starts: Sequence[Event], turn: int) -> Event | None:
    try:
        return starts[turn]
    except IndexError:
        return None


def _next_start(starts: Sequence[Event], start: Event | None) -> Event | None:
    if start is None:
        return None
    return next((e for e in starts if e.t_s > start.t_s), None)


def _first_after(
    events: Sequence[Event], kind: str, after: Event | None, before: Event | None = None
) -> Event | None:
    if after is None:
        return None
    limit = before.t_s if before else float("inf")
    return next((e for e in events if e.kind == kind and after.t_s <= e.t_s < limit), None)


def _last_before(events: Sequence[Event], kind: str, before: Event | None) -> Event | None:
    limit = before.t_s if before else float("inf")
    matching = [e for e in events if e.kind == kind and e.t_s <= limit]
    return matching[-1] if matching else None


def _at_or_before(samples: Sequence[Sample], event: Event | None) -> PhaseReading | None:
    if event is None:
        return None
    earlier = [s for s in samples if s.t_s <= event.t_s]
    return reading_of(earlier[-1]) if earlier else None


def _at_or_after(samples: Sequence[Sample], event: Event | None) -> PhaseReading | None:
    if event is None:
        return None
    later = next((s for s in samples if s.t_s >= event.t_s), None)
    return reading_of(later) if later else None


def _between(samples: Sequence[Sample], start: Event | None, end: Event | None) -> list[Sample]:
    """Samples of the generation window; an unfinished generation runs to the last sample."""
    if start is None:
        return []
    limit = end.t_s if end else float("inf")
    return [s for s in samples if start.t_s <= s.t_s <= limit]


PhaseSpan = tuple[str, float, float]
_SPAN_MARKS = (
    ("loading", LOAD_START, LOAD_END),
    ("idle", LOAD_END, GENERATION_START),
    ("generation", GENERATION_START, GENERATION_END),
    ("settling", GENERATION_END, STABILIZED),
)


def phase_spans(events: Sequence[Event]) -> list[PhaseSpan]:
    """(name, start, end) of each stretch between marks, in time order, for plots."""
    spans: list[PhaseSpan] = []
    for name, opening, closing in _SPAN_MARKS:
        for event in events:
            if event.kind == opening:
                close = _first_after(events, closing, event)
                if close is not None:
                    spans.append((name, event.t_s, close.t_s))
    return sorted(spans, key=lambda span: span[1])
