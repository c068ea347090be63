"""Phase profile on hand-made samples (exact values), stabilize with a fake clock,
and the phase order on a real child process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from monitor_children import MIB, MemoryChild

from yoyu.errors import SettingsError
from yoyu.monitor.phases import (
    GENERATION_END,
    GENERATION_START,
    LOAD_END,
    LOAD_START,
    STABILIZED,
    phase_profile,
    phase_spans,
    pool_in_use,
    settling_figures,
    stabilize,
)
from yoyu.monitor.sampler import Sampler
from yoyu.monitor.types import (
    EngineSample,
    Event,
    GpuSample,
    ProcessSample,
    Sample,
    SystemSample,
)


def sample(
    t_s: float, available_mib: int, anon_mib: int, file_mib: int, gpu_mib: int = 0
) -> Sample:
    system = SystemSample(
        t_s=t_s,
        wall_time=1_700_000_000 + t_s,
        total_bytes=16384 * MIB,
        available_bytes=available_mib * MIB,
        used_bytes=(16384 - available_mib) * MIB,
        swap_total_bytes=0,
        swap_used_bytes=0,
    )
    process = ProcessSample(
        pids=(7,) if anon_mib else (),
        rss_bytes=(anon_mib + file_mib) * MIB,
        anon_bytes=anon_mib * MIB,
        file_bytes=file_mib * MIB,
        shmem_bytes=0,
        swap_bytes=0,
    )
    return Sample(system, process, (GpuSample(0, gpu_mib * MIB, 1000 * MIB),))


# t   phase            available  anon  file  gpu
SAMPLES = [
    sample(0.0, 12000, 0, 0, 10),  # load_start
    sample(1.0, 11000, 50, 500, 300),
    sample(2.0, 10000, 100, 900, 600),  # load_end
    sample(3.0, 10100, 100, 800, 600),
    sample(4.0, 10050, 110, 850, 600),  # generation_start
    sample(4.5, 9000, 400, 600, 900),  # highest anon, not lowest available
    sample(5.0, 8500, 300, 900, 950),  # lowest available, highest file
    sample(6.0, 9500, 200, 900, 700),  # generation_end
    sample(7.0, 9900, 150, 900, 650),
    sample(8.0, 9950, 140, 900, 650),  # stabilized
]
EVENTS = [
    Event(0.0, LOAD_START),
    Event(2.0, LOAD_END),
    Event(4.0, GENERATION_START),
    Event(6.0, GENERATION_END),
    Event(8.0, STABILIZED),
]


def test_profile_reads_each_phase_at_its_mark() -> None:
    profile = phase_profile(SAMPLES, EVENTS)
    assert profile.baseline is not None and profile.baseline.process_rss_bytes == 0
    assert profile.baseline.system_available_bytes == 12000 * MIB
    assert profile.loaded is not None and profile.loaded.process_rss_bytes == 1000 * MIB
    assert profile.pre_generation is not None and profile.pre_generation.t_s == 4.0
    assert profile.post_generation is not None and profile.post_generation.t_s == 6.0
    assert profile.post_generation.process_anon_bytes == 200 * MIB
    assert profile.stabilized is not None and profile.stabilized.process_anon_bytes == 140 * MIB
    assert profile.stabilize_s == 2.0


def test_peak_takes_the_worst_of_each_figure_over_the_generation() -> None:
    peak = phase_profile(SAMPLES, EVENTS).peak
    assert peak is not None
    assert peak.system_available_bytes == 8500 * MIB  # from t=5.0
    assert peak.process_anon_bytes == 400 * MIB  # from t=4.5
    assert peak.process_file_bytes == 900 * MIB  # t=5.0 and t=6.0
    assert peak.process_rss_bytes == 1200 * MIB  # t=5.0: 300 + 900
    assert peak.gpu_used_bytes == 950 * MIB
    assert peak.t_s == 5.0  # when the footprint (RSS + swap) peaked


def with_pool(t_s: float, used: float, running: int) -> Sample:
    return replace(sample(t_s, 9000, 100, 900), engine=EngineSample(used, running, 0))


def test_the_pool_counts_only_readings_that_saw_it_in_use() -> None:
    """vLLM's frontend, starved of CPU, can update its gauge only after the answer is done:
    every reading then says 0 with nothing running, and the fill is unknown, not 0 %."""
    idle = [with_pool(4.0, 0.0, 0), with_pool(5.0, 0.0, 0)]
    assert pool_in_use(idle) is None
    assert pool_in_use([*idle, with_pool(4.5, 0.004, 1)]) == 0.004
    # still held after the request ended (the gauge waits for the next step): a true figure
    assert pool_in_use([*idle, with_pool(5.5, 0.008, 0)]) == 0.008
    assert pool_in_use([with_pool(4.2, 0.0, 1)]) == 0.0  # running in an empty pool: 0 %
    assert pool_in_use(SAMPLES) is None  # no engine gauge at all (llama.cpp)
    events = [Event(4.0, GENERATION_START), Event(6.0, GENERATION_END)]
    profile = phase_profile([*idle, with_pool(4.5, 0.004, 1), with_pool(6.5, 0.02, 1)], events)
    assert profile.peak is not None and profile.peak.engine_kv_used_fraction == 0.004


def test_chat_turns_pick_their_own_generation_and_share_the_load() -> None:
    second_turn = [
        *SAMPLES,
        sample(9.0, 9900, 140, 900),  # generation_start of turn 2
        sample(10.0, 9000, 500, 900),
        sample(11.0, 9800, 160, 900),  # generation_end
    ]
    events = [*EVENTS, Event(9.0, GENERATION_START), Event(11.0, GENERATION_END)]
    last, first = phase_profile(second_turn, events), phase_profile(second_turn, events, turn=0)
    assert last.peak is not None and last.peak.process_anon_bytes == 500 * MIB
    assert first.peak is not None and first.peak.process_anon_bytes == 400 * MIB
    assert last.loaded == first.loaded and last.loaded is not None
    assert last.stabilized is None and last.stabilize_s is None  # turn 2 was not stabilized
    assert first.stabilize_s == 2.0


def test_missing_marks_leave_phases_empty_instead_of_guessing() -> None:
    profile = phase_profile(SAMPLES, [Event(0.0, LOAD_START)])
    assert profile.baseline is not None
    assert profile.loaded is None and profile.peak is None and profile.stabilized is None
    assert profile.to_dict()["phases"]["peak"] is None
    assert set(profile.to_dict()["phases"]) == {
        "baseline", "loaded", "pre_generation", "peak", "post_generation", "stabilized"
    }  # fmt: skip


def test_phase_spans_pair_each_opening_mark_with_its_close() -> None:
    assert phase_spans(EVENTS) == [
        ("loading", 0.0, 2.0),
        ("idle", 2.0, 4.0),
        ("generation", 4.0, 6.0),
        ("settling", 6.0, 8.0),
    ]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def readings(values: list[int]) -> Callable[[], int]:
    remaining: Iterator[int] = iter(values)
    last = [values[-1]]

    def read() -> int:
        last[0] = next(remaining, last[0])
        return last[0]

    return read


def test_stabilize_waits_for_a_full_quiet_window() -> None:
    clock = FakeClock()
    # Falls by 100 MiB per 0.5 s for 2 s, then wobbles within 1 MiB.
    values = [1000 * MIB - i * 100 * MIB for i in range(5)] + [600 * MIB, 600 * MIB + MIB // 2] * 10
    result = stabilize(readings(values), MIB, 1.0, 30.0, clock, clock.sleep, interval_s=0.5)
    assert result.settled
    assert result.waited_s == 3.0  # last change at 2.0 s, then a full 1 s window
    assert result.values[0] in (600 * MIB, 600 * MIB + MIB // 2)


def test_stabilize_gives_up_at_the_cap() -> None:
    clock = FakeClock()
    ramp = [i * 10 * MIB for i in range(1000)]
    result = stabilize(readings(ramp), MIB, 1.0, 5.0, clock, clock.sleep, interval_s=0.25)
    assert not result.settled and result.waited_s == 5.0


def test_stabilize_settles_every_figure_of_a_tuple() -> None:
    clock = FakeClock()
    pairs = iter([(0, 0), (0, 5 * MIB), (0, 5 * MIB), (0, 5 * MIB), (0, 5 * MIB)])
    result = stabilize(lambda: next(pairs), MIB, 1.0, 10.0, clock, clock.sleep, interval_s=0.5)
    assert result.settled and result.waited_s == 1.5  # the second figure moved at 0.5 s


def test_stabilize_refuses_a_window_longer_than_the_cap() -> None:
    with pytest.raises(SettingsError, match="cap_s >= window_s"):
        stabilize(lambda: 0, MIB, 5.0, 1.0)


def test_real_child_phases_are_ordered(make_child: Callable[[int], MemoryChild]) -> None:
    pids: list[int] = []
    with Sampler(lambda: pids, gpus=False) as sampler:
        sampler.mark(LOAD_START)
        child = make_child(16)
        pids.append(child.pid)
        child.grow()  # "weights"
        sampler.mark(LOAD_END)
        sampler.mark(GENERATION_START)
        child.grow()  # "KV cache and compute buffers"
        child.grow()
        sampler.mark(GENERATION_END)
        settled = stabilize(
            lambda: settling_figures(sampler.sample_now()), MIB, 0.2, 5.0, interval_s=0.05
        )
        sampler.mark(STABILIZED)
    profile = phase_profile(sampler.samples(), sampler.events())
    assert settled.settled
    readings_ = [profile.baseline, profile.loaded, profile.peak, profile.stabilized]
    assert all(reading is not None for reading in readings_)
    baseline, loaded, peak, stable = (r.process_rss_bytes for r in readings_ if r is not None)
    assert peak >= loaded >= baseline
    assert loaded <= stable <= peak  # the child keeps what it allocated
    assert baseline == 0  # nothing was loaded yet
    assert peak - loaded >= 2 * 16 * MIB - MIB
    assert profile.stabilize_s is not None and profile.stabilize_s >= 0.2
