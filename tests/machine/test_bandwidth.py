"""The RAM bandwidth a speed prediction rests on: measured once per machine, then cached."""

from __future__ import annotations

import json
from pathlib import Path

from yoyu.machine.bandwidth import machine_key, measure_copy_bandwidth, with_measured_bandwidth
from yoyu.machine.presets import load_machine
from yoyu.machine.probe import probe_machine


def test_a_copy_moves_bytes_at_a_plausible_rate() -> None:
    rate = measure_copy_bandwidth(size_bytes=8 << 20, repeats=2)
    assert 10**8 < rate < 10**13  # 0.1 GB/s to 10 TB/s: a number, not a unit slip


def test_measured_once_then_read_from_the_cache(tmp_path: Path) -> None:
    machine = probe_machine()
    cache = tmp_path / "bandwidth.json"
    calls: list[int] = []

    def measure() -> int:
        calls.append(1)
        return 42 * 10**9

    first = with_measured_bandwidth(machine, cache_path=cache, measure=measure)
    again = with_measured_bandwidth(machine, cache_path=cache, measure=measure)
    assert first.memory.bandwidth_bytes_per_s == again.memory.bandwidth_bytes_per_s == 42 * 10**9
    assert len(calls) == 1
    assert json.loads(cache.read_text())[machine_key(machine)] == 42 * 10**9
    cache.write_text("not json")  # a damaged cache costs one measurement, not an error
    assert with_measured_bandwidth(machine, cache_path=cache, measure=measure).memory
    assert len(calls) == 2


def test_a_preset_keeps_its_own_figure(tmp_path: Path) -> None:
    preset = load_machine("mac-studio-m2-max-32g")
    kept = with_measured_bandwidth(preset, cache_path=tmp_path / "b.json", measure=lambda: 1)
    assert kept.memory.bandwidth_bytes_per_s == 400 * 10**9
    assert not (tmp_path / "b.json").exists()
