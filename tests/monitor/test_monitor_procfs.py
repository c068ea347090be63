"""Parsers on /proc text recorded from a real Linux VM (see fixtures/README.md)."""

from __future__ import annotations

import os
import subprocess
import sys

from monitor_children import MIB, RECORDED_ROOT

from yoyu.monitor.process_tree import ProcessTree
from yoyu.monitor.procfs import (
    ProcFs,
    parse_pressure,
    parse_smaps_rollup,
    parse_stat_ppid,
    parse_status,
    parse_vmstat,
)

KIB = 1024
PROC = RECORDED_ROOT / "proc"
PARENT, CHILD = 21351, 21352


def recorded(relative: str) -> str:
    return (PROC / relative).read_text(encoding="utf-8")


def test_status_splits_resident_memory_into_anonymous_file_and_shmem() -> None:
    status = parse_status(recorded(f"{PARENT}/status"))
    assert status.rss_bytes == 76676 * KIB
    assert (status.anon_bytes, status.file_bytes, status.shmem_bytes) == (
        70468 * KIB,
        6208 * KIB,
        0,
    )
    assert status.anon_bytes + status.file_bytes + status.shmem_bytes == status.rss_bytes
    assert status.anon_bytes >= 64 * MIB  # the recorded process held a touched 64 MiB bytearray
    assert status.swap_bytes == 0


def test_status_of_a_process_without_memory_lines_reads_as_zero() -> None:
    zombie = "Name:\tdefunct\nState:\tZ (zombie)\nPid:\t42\nPPid:\t1\n"
    assert parse_status(zombie).rss_bytes == 0


def test_smaps_rollup_gives_pss_and_private_pages_as_uss() -> None:
    rollup = parse_smaps_rollup(recorded(f"{PARENT}/smaps_rollup"))
    assert rollup.pss_bytes == 73081 * KIB
    assert rollup.uss_bytes == (124 + 70468 + 0) * KIB


def test_vmstat_keeps_only_the_swap_and_fault_counters() -> None:
    counters = parse_vmstat(recorded("vmstat"))
    assert counters == {"pswpin": 0, "pswpout": 0, "pgmajfault": 2022}


def test_pressure_reads_avg10_of_some_and_full() -> None:
    assert parse_pressure(recorded("pressure/memory")).some_avg10 == 0.0
    busy = (
        "some avg10=12.34 avg60=3.00 avg300=1.00 total=99\n"
        "full avg10=5.67 avg60=1.00 avg300=0.00 total=9\n"
    )
    pressure = parse_pressure(busy)
    assert (pressure.some_avg10, pressure.full_avg10) == (12.34, 5.67)
    assert parse_pressure("some avg10=1.00 avg60=0 avg300=0 total=1\n").full_avg10 is None


def test_stat_parent_survives_a_command_name_with_spaces_and_parentheses() -> None:
    assert parse_stat_ppid(recorded(f"{CHILD}/stat")) == PARENT
    assert parse_stat_ppid("77 (evil) name) S 12 77 77 0 -1") == 12
    assert parse_stat_ppid("garbage") is None


def test_reader_on_a_recorded_root() -> None:
    procfs = ProcFs(RECORDED_ROOT)
    assert procfs.meminfo()["MemTotal"] == 24684084 * KIB
    assert procfs.meminfo()["MemAvailable"] == 24178408 * KIB
    assert sorted(procfs.pids()) == [1, PARENT, CHILD]
    assert procfs.status(999_999) is None
    assert procfs.smaps_rollup(1) is None  # not recorded: unreadable for the recording user
    assert not procfs.has_children_files()


def test_tree_on_a_recorded_root_is_found_by_parent_pids() -> None:
    sample = ProcessTree(ProcFs(RECORDED_ROOT)).read([PARENT])
    assert sample.pids == (PARENT, CHILD)  # pid 1 is not part of the tree
    assert sample.rss_bytes == (76676 + 1816) * KIB
    assert sample.anon_bytes == (70468 + 108) * KIB


def test_live_reader_sees_this_process_and_not_an_exited_one() -> None:
    procfs = ProcFs()
    assert (procfs.status(os.getpid()) or parse_status("")).rss_bytes > 0
    finished = subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert finished.returncode == 0
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    assert procfs.status(exited.pid) is None
    assert procfs.smaps_rollup(exited.pid) is None
