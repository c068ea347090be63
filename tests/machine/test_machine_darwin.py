"""macOS probe: sysctl / vm_stat / ioreg parsers and the Metal working-set rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from yoyu.machine.commands import CommandError
from yoyu.machine.darwin import (
    apple_bandwidth_bytes_per_s,
    darwin_facts,
    default_working_set_bytes,
    gpu_working_set_bytes,
    parse_gpu_core_count,
    parse_swapusage,
    parse_sysctl,
    parse_vm_stat,
    probe_darwin,
    wired_limit_mb_from,
)

GIB = 1024**3
MIB = 1024**2
PAGE = 16384
ReadFixture = Callable[[str], str]


def m2_max(fixture_text: ReadFixture) -> dict[str, str]:
    return {
        "sysctl_text": fixture_text("darwin/sysctl_m2_max_32g.txt"),
        "vm_stat_text": fixture_text("darwin/vm_stat_m2_max_32g.txt"),
        "ioreg_text": fixture_text("darwin/ioreg_m2_max.txt"),
    }


def m3_ultra(fixture_text: ReadFixture) -> dict[str, str]:
    return {
        "sysctl_text": fixture_text("darwin/sysctl_m3_ultra_512g.txt"),
        "vm_stat_text": fixture_text("darwin/vm_stat_m3_ultra_512g.txt"),
        "ioreg_text": fixture_text("darwin/ioreg_m3_ultra.txt"),
    }


# --- the working-set rule against the figures llama.cpp logged ----------------------


@pytest.mark.parametrize(
    ("ram_gib", "logged", "unit"),
    [
        (16, "11453.25", 1e6),  # ggml_metal_init on 16 GB Macs, MB = 1e6 bytes
        (32, "22906.50", 1e6),  # 32 GB M-series, newer ggml logs
        (32, "21845.34", MIB),  # same machine class, older ggml logged MiB (ollama#434)
        (36, "28991.03", 1e6),  # M4 Max 36 GB
        (64, "49152.00", MIB),  # M1/M2 Max 64 GB
        (96, "73728.00", MIB),  # M2 Max 96 GB (llama.cpp#3213)
    ],
)
def test_default_working_set_matches_logged_recommended_max(
    ram_gib: int, logged: str, unit: float
) -> None:
    assert f"{default_working_set_bytes(ram_gib * GIB) / unit:.2f}" == logged


def test_wired_limit_replaces_the_default_and_zero_keeps_it() -> None:
    default = default_working_set_bytes(128 * GIB)
    assert gpu_working_set_bytes(default, 0) == default == 96 * GIB
    # antirez/ds4#893: iogpu.wired_limit_mb=114688 on a 128 GiB Mac -> Metal reports 112.00 GiB
    assert gpu_working_set_bytes(default, 114688) == 112 * GIB


def test_macos_13_spells_the_limit_in_bytes() -> None:
    assert wired_limit_mb_from({"debug.iogpu.wired_limit": str(24 * GIB)}) == 24 * 1024
    assert wired_limit_mb_from({"iogpu.wired_limit_mb": "0"}) == 0
    assert wired_limit_mb_from({}) == 0


# --- parsers -------------------------------------------------------------------------


def test_sysctl_lines_become_a_dict(fixture_text: ReadFixture) -> None:
    sysctl = parse_sysctl(fixture_text("darwin/sysctl_m2_max_32g.txt"))
    assert sysctl["hw.memsize"] == "34359738368"
    assert sysctl["machdep.cpu.brand_string"] == "Apple M2 Max"
    assert sysctl["kern.version"].startswith("Darwin Kernel Version 23.5.0: Wed May")
    assert sysctl["vm.loadavg"] == "{ 2.17 2.44 2.51 }"


@pytest.mark.parametrize(
    ("text", "total", "used"),
    [
        ("total = 2048.00M  used = 1024.50M  free = 1023.50M  (encrypted)", 2048 * MIB, 1074266112),
        ("total = 0.00M  used = 0.00M  free = 0.00M  (encrypted)", 0, 0),
        ("total = 8.00G  used = 2.00G  free = 6.00G", 8 * GIB, 2 * GIB),
        ("", 0, 0),
    ],
)
def test_swapusage(text: str, total: int, used: int) -> None:
    assert parse_swapusage(text) == (total, used)


def test_vm_stat_page_size_and_counts(fixture_text: ReadFixture) -> None:
    vm_stat = parse_vm_stat(fixture_text("darwin/vm_stat_m2_max_32g.txt"))
    assert vm_stat.page_size == PAGE
    assert vm_stat.pages["Pages wired down"] == 420000
    assert vm_stat.pages["Translation faults"] == 510307457
    assert vm_stat.bytes_of("Pages free", "Pages speculative") == 180000 * PAGE


def test_intel_mac_vm_stat_has_4k_pages() -> None:
    text = "Mach Virtual Memory Statistics: (page size of 4096 bytes)\nPages free:  10.\n"
    assert parse_vm_stat(text).bytes_of("Pages free") == 40960


def test_gpu_core_count_from_ioreg(fixture_text: ReadFixture) -> None:
    assert parse_gpu_core_count(fixture_text("darwin/ioreg_m2_max.txt")) == 30
    assert parse_gpu_core_count("") is None


def test_bandwidth_depends_on_gpu_cores_where_apple_sells_two_variants() -> None:
    assert apple_bandwidth_bytes_per_s("Apple M4 Max", 40) == 546 * 10**9
    assert apple_bandwidth_bytes_per_s("Apple M4 Max", 32) == 410 * 10**9
    assert apple_bandwidth_bytes_per_s("Apple M4 Max", None) == 410 * 10**9
    assert apple_bandwidth_bytes_per_s("Apple M2 Max", 30) == 400 * 10**9
    assert apple_bandwidth_bytes_per_s("Apple M9 Hyper", 99) is None


# --- whole machines ------------------------------------------------------------------


def test_m2_max_32g(fixture_text: ReadFixture) -> None:
    facts = darwin_facts(**m2_max(fixture_text))
    assert (facts.os.system, facts.os.release, facts.os.version) == ("Darwin", "23.5.0", "14.5")
    assert facts.os.distribution == "macOS 14.5"
    assert facts.cpu.model == "Apple M2 Max"
    assert (facts.cpu.cores, facts.cpu.threads, facts.cpu.performance_cores) == (12, 12, 8)
    assert facts.cpu.simd == ("neon", "fp16", "dotprod", "i8mm", "bf16")
    memory = facts.memory
    assert memory.total_bytes == 32 * GIB
    assert (
        memory.available_bytes == (150000 + 680000 + 30000) * PAGE
    )  # free + inactive + speculative
    assert memory.wired_bytes == 420000 * PAGE
    assert (memory.swap_total_bytes, memory.swap_used_bytes) == (2048 * MIB, 1074266112)
    assert memory.bandwidth_bytes_per_s == 400 * 10**9
    apple = facts.apple
    assert (apple.chip, apple.gpu_cores, apple.wired_limit_mb) == ("Apple M2 Max", 30, 0)
    assert apple.gpu_working_set_bytes == apple.default_working_set_bytes == 1398102 * PAGE
    assert apple.memory_pressure == "normal"


def test_m2_max_gpu_is_the_working_set_capped_by_available_memory(
    fixture_text: ReadFixture,
) -> None:
    facts = darwin_facts(**m2_max(fixture_text))
    gpu = facts.gpu
    assert (gpu.vendor, gpu.index, gpu.name) == ("apple", 0, "Apple M2 Max")
    assert gpu.total_bytes == 1398102 * PAGE
    assert gpu.free_bytes == 860000 * PAGE  # only 13.1 GiB is available right now
    assert gpu.used_bytes == gpu.total_bytes - gpu.free_bytes


def test_m3_ultra_512g_with_a_raised_wired_limit_under_pressure(fixture_text: ReadFixture) -> None:
    facts = darwin_facts(**m3_ultra(fixture_text))
    apple = facts.apple
    assert apple.default_working_set_bytes == 384 * GIB
    assert apple.wired_limit_mb == 491520
    assert apple.gpu_working_set_bytes == 480 * GIB
    assert apple.gpu_cores == 80
    assert apple.memory_pressure == "warn"
    assert facts.memory.wired_bytes == 20_000_000 * PAGE
    assert facts.memory.available_bytes == (6_000_000 + 3_500_000 + 200_000) * PAGE
    assert facts.memory.bandwidth_bytes_per_s == 819 * 10**9
    assert (facts.cpu.cores, facts.cpu.performance_cores) == (32, 24)


def test_probe_runs_the_three_tools(fixture_text: ReadFixture) -> None:
    outputs = {
        "sysctl": fixture_text("darwin/sysctl_m2_max_32g.txt"),
        "vm_stat": fixture_text("darwin/vm_stat_m2_max_32g.txt"),
        "ioreg": fixture_text("darwin/ioreg_m2_max.txt"),
    }
    commands: list[str] = []

    def run(command: Sequence[str]) -> str:
        commands.append(command[0])
        return outputs[command[0]]

    facts = probe_darwin(run)
    assert sorted(commands) == ["ioreg", "sysctl", "vm_stat"]
    assert facts.apple.gpu_cores == 30


def test_probe_without_ioreg_still_describes_the_mac(fixture_text: ReadFixture) -> None:
    def run(command: Sequence[str]) -> str:
        if command[0] == "ioreg":
            raise CommandError("ioreg: not found")
        name = "sysctl_m2_max_32g" if command[0] == "sysctl" else "vm_stat_m2_max_32g"
        return fixture_text(f"darwin/{name}.txt")

    facts = probe_darwin(run)
    assert facts.apple.gpu_cores is None
    assert facts.memory.bandwidth_bytes_per_s == 400 * 10**9  # M2 Max has one bandwidth
