"""The sampler watching real processes; GPUs through the recorded NVML fake."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest
from monitor_children import MIB, MemoryChild

from yoyu.errors import SettingsError
from yoyu.monitor.sampler import Sampler
from yoyu.monitor.types import EngineSample, Sample
from yoyu.testing.fake_nvml import H100_80G_HBM3, RTX_4090_24G, FakeNvml


def test_sampler_sees_a_child_touch_200_mib(make_child: Callable[[int], MemoryChild]) -> None:
    child = make_child(50)
    with Sampler(lambda: [child.pid], gpus=False) as sampler:
        sampler.mark("before")
        for _ in range(4):
            child.grow()
        sampler.mark("after")
    before, after = (sample_at(sampler, event.t_s) for event in sampler.events())
    assert before.process.anon_bytes is not None and after.process.anon_bytes is not None
    grown = after.process.anon_bytes - before.process.anon_bytes
    assert 195 * MIB <= grown <= 215 * MIB
    assert after.process.pids == (child.pid,)
    assert after.system.total_bytes > after.system.available_bytes > 0


def test_background_thread_keeps_sampling_and_counts_its_own_cpu() -> None:
    three_taken = threading.Event()
    taken: list[Sample] = []

    def collect(sample: Sample) -> None:
        taken.append(sample)
        if len(taken) >= 3:
            three_taken.set()

    sampler = Sampler(lambda: [os.getpid()], rate_hz=50.0, gpus=False, on_sample=collect)
    with sampler:
        assert three_taken.wait(timeout=10)
    times = [sample.t_s for sample in sampler.samples()]
    assert times == sorted(times) and len(times) >= 3
    assert sampler.cpu_seconds > 0
    later = sampler.samples()[1:]
    assert all(s.system.page_in_per_s is not None for s in later)  # rates need two readings


def test_smaps_is_read_on_the_first_sample_then_rate_limited() -> None:
    sampler = Sampler(lambda: [os.getpid()], gpus=False, smaps_interval_s=3600.0)
    first, second = sampler.sample_now(), sampler.sample_now()
    assert first.process.uss_bytes is not None and first.process.pss_bytes is not None
    assert 0 < first.process.uss_bytes <= first.process.rss_bytes
    assert second.process.uss_bytes is None


def test_a_failure_inside_the_thread_is_raised_by_stop() -> None:
    def broken() -> list[int]:
        raise RuntimeError("backend lost its pids")

    sampler = Sampler(broken, gpus=False).start()
    with pytest.raises(RuntimeError, match="lost its pids"):
        sampler.stop()


def test_gpu_memory_comes_from_nvml() -> None:
    nvml = FakeNvml(gpus=(RTX_4090_24G, H100_80G_HBM3))
    with Sampler(lambda: [os.getpid()], nvml=nvml) as sampler:
        sample = sampler.sample_now()
    assert [(g.index, g.used_bytes, g.free_bytes) for g in sample.gpus] == [
        (0, 33 * MIB, (24564 - 33) * MIB),
        (1, (81559 - 81227) * MIB, 81227 * MIB),
    ]
    assert sample.gpu_used_bytes == 33 * MIB + 332 * MIB
    assert nvml.open_sessions == 0  # stop() shut NVML down


def test_no_nvidia_driver_means_no_gpu_readings() -> None:
    nvml = FakeNvml(gpus=(RTX_4090_24G,), init_error=9)  # NVML_ERROR_DRIVER_NOT_LOADED
    with Sampler(lambda: [], nvml=nvml) as sampler:
        sample = sampler.sample_now()
    assert sample.gpus == () and sample.gpu_used_bytes is None
    assert sample.process.pids == () and sample.process.rss_bytes == 0


def test_rate_out_of_range_is_a_one_line_error() -> None:
    with pytest.raises(SettingsError, match="out of range"):
        Sampler(lambda: [], rate_hz=0)


def sample_at(sampler: Sampler, t_s: float) -> Sample:
    return next(sample for sample in sampler.samples() if sample.t_s == t_s)


def test_the_engine_gauge_is_read_once_an_interval_and_carried_between_reads() -> None:
    readings = iter([EngineSample(0.25, 2, 1), EngineSample(0.5, 4, 0)])
    calls: list[int] = []

    def engine() -> EngineSample | None:
        calls.append(1)
        return next(readings)

    sampler = Sampler(lambda: [os.getpid()], gpus=False, engine=engine, engine_interval_s=3600)
    first, second = sampler.sample_now(), sampler.mark("generation_start")
    assert len(calls) == 1
    assert first.engine == EngineSample(0.25, 2, 1)
    assert sampler.samples()[-1].t_s == second.t_s
    assert sampler.samples()[-1].engine == first.engine
    sampler.engine_at_full_rate(True)
    assert sampler.sample_now().engine == EngineSample(0.5, 4, 0)
    assert len(calls) == 2
    assert Sampler(lambda: [os.getpid()], gpus=False).sample_now().engine is None
