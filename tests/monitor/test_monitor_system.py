"""Machine-wide readings: recorded /proc with a fake clock, and psutil's fallback live."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from monitor_children import MIB, RECORDED_ROOT, MemoryChild

from yoyu.monitor.process_tree import ProcessTree, PsutilProcessTree
from yoyu.monitor.procfs import ProcFs
from yoyu.monitor.system import LinuxSystemReader, PsutilSystemReader, counter_rates

KIB = 1024


def test_counter_rates_are_per_second_and_need_two_readings() -> None:
    assert counter_rates(None, (1.0, {"pswpin": 5})) == {}
    rates = counter_rates((1.0, {"pswpin": 5, "gone": 1}), (3.0, {"pswpin": 25, "new": 7}))
    assert rates == {"pswpin": 10.0}


def test_recorded_machine_with_counters_moving_between_two_reads(tmp_path: Path) -> None:
    shutil.copytree(RECORDED_ROOT, tmp_path, dirs_exist_ok=True)
    times = iter([50.0, 52.0])
    reader = LinuxSystemReader(tmp_path, clock=lambda: next(times), wall_clock=lambda: 1e9)
    first = reader.read()
    vmstat = tmp_path / "proc" / "vmstat"
    text = vmstat.read_text().replace("\npgmajfault 2022\n", "\npgmajfault 2122\n")
    vmstat.write_text(text.replace("\npswpout 0\n", "\npswpout 40\n"))
    second = reader.read()
    assert first.major_faults_per_s is None
    assert (second.major_faults_per_s, second.page_out_per_s, second.page_in_per_s) == (
        50.0,
        20.0,
        0.0,
    )
    assert first.total_bytes == 24684084 * KIB
    assert first.available_bytes == 24178408 * KIB
    assert first.used_bytes == (24684084 - 24178408) * KIB
    assert (first.swap_total_bytes, first.psi_some_avg10, first.psi_full_avg10) == (0, 0.0, 0.0)


def test_missing_psi_reads_as_none(tmp_path: Path) -> None:
    shutil.copytree(RECORDED_ROOT, tmp_path, dirs_exist_ok=True)
    (tmp_path / "proc" / "pressure" / "memory").unlink()
    sample = LinuxSystemReader(tmp_path).read()
    assert sample.psi_some_avg10 is None and sample.psi_full_avg10 is None


def test_psutil_fallback_agrees_with_proc(make_child: Callable[[int], MemoryChild]) -> None:
    parent = make_child(16)
    grandchild = parent.spawn_child()
    from_proc = ProcessTree().read([parent.pid])
    from_psutil = PsutilProcessTree().read([parent.pid])
    assert set(from_psutil.pids) == set(from_proc.pids) == {parent.pid, grandchild}
    assert abs(from_psutil.rss_bytes - from_proc.rss_bytes) < 8 * MIB
    assert from_psutil.anon_bytes is None  # psutil cannot split RSS; None, not 0
    assert from_psutil.growth_bytes == from_psutil.rss_bytes
    assert PsutilSystemReader().read().total_bytes == ProcFs().meminfo()["MemTotal"]
