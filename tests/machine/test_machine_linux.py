"""Linux probe: /proc and /sys parsers on recorded files, cgroup limits on built trees."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from yoyu.machine.linux import (
    CgroupMemory,
    memory_from_meminfo,
    parse_cgroup_limit,
    parse_cgroup_membership,
    parse_cpuinfo,
    parse_meminfo,
    parse_os_release,
    probe_linux,
    read_cgroup_memory,
    simd_flags,
)

KIB = 1024
GIB = 1024**3
ReadFixture = Callable[[str], str]


# --- /proc/cpuinfo -------------------------------------------------------------


def test_amd_epyc_vm_cpuinfo(fixture_text: ReadFixture) -> None:
    cpu = parse_cpuinfo(fixture_text("linux/cpuinfo_amd_epyc_2vcpu.txt"))
    assert cpu.model == "AMD EPYC"
    assert (cpu.cores, cpu.threads) == (2, 2)
    assert {"avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16"} <= set(cpu.simd)
    assert "amx_tile" not in cpu.simd  # AMD has no AMX
    assert "neon" not in cpu.simd


def test_hyperthreaded_xeon_counts_two_cores_four_threads(fixture_text: ReadFixture) -> None:
    cpu = parse_cpuinfo(fixture_text("linux/cpuinfo_xeon_8575c_2c4t.txt"))
    assert cpu.model == "Intel(R) Xeon(R) Platinum 8575C"
    assert (cpu.cores, cpu.threads) == (2, 4)
    assert {"avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"} <= set(cpu.simd)
    # This KVM guest's flags line lists no AMX and no AVX512-FP16 even though the chip has them.
    assert "amx_tile" not in cpu.simd
    assert "avx512_fp16" not in cpu.simd


def test_graviton3_cpuinfo_names_the_core_and_maps_features(fixture_text: ReadFixture) -> None:
    cpu = parse_cpuinfo(fixture_text("linux/cpuinfo_graviton3_2vcpu.txt"), sibling_lists=["0", "1"])
    assert cpu.model == "ARM Neoverse-V1"
    assert (cpu.cores, cpu.threads) == (2, 2)
    assert cpu.simd == ("neon", "fp16", "dotprod", "i8mm", "bf16", "sve")


def test_arm_cores_fall_back_to_threads_without_topology(fixture_text: ReadFixture) -> None:
    cpu = parse_cpuinfo(fixture_text("linux/cpuinfo_graviton3_2vcpu.txt"))
    assert cpu.cores == 2


def test_sibling_lists_collapse_smt_pairs_into_cores() -> None:
    cpuinfo = "\n\n".join(f"processor\t: {index}\nFeatures\t: fp asimd" for index in range(4))
    cpu = parse_cpuinfo(cpuinfo, sibling_lists=["0-1\n", "0-1\n", "2-3\n", "2-3\n"])
    assert (cpu.cores, cpu.threads) == (2, 4)


def test_unknown_arm_part_is_named_by_its_ids() -> None:
    cpuinfo = "processor\t: 0\nCPU implementer\t: 0x51\nCPU part\t: 0x001\n"
    assert parse_cpuinfo(cpuinfo).model == "ARM (implementer 0x51, part 0x001)"


def test_empty_cpuinfo_gives_one_unknown_cpu() -> None:
    cpu = parse_cpuinfo("")
    assert (cpu.model, cpu.cores, cpu.threads) == ("unknown", 1, 1)


def test_simd_flags_keep_a_fixed_order_and_ignore_the_rest() -> None:
    assert simd_flags("sse2 avx512f amx_int8 avx amx_tile pni") == (
        "avx",
        "avx512f",
        "amx_tile",
        "amx_int8",
    )
    assert simd_flags("fp asimd asimddp sve2 sve") == ("neon", "dotprod", "sve", "sve2")


# --- /proc/meminfo ---------------------------------------------------------------


def test_meminfo_of_the_build_vm(fixture_text: ReadFixture) -> None:
    memory = memory_from_meminfo(
        parse_meminfo(fixture_text("linux/meminfo_vm_24g_no_swap.txt")), None
    )
    assert memory.total_bytes == 24684084 * KIB
    assert memory.available_bytes == 24313736 * KIB
    assert (memory.swap_total_bytes, memory.swap_used_bytes) == (0, 0)
    assert memory.limit_bytes is None


def test_meminfo_with_swap_in_use(fixture_text: ReadFixture) -> None:
    memory = memory_from_meminfo(
        parse_meminfo(fixture_text("linux/meminfo_8g_swap_in_use.txt")), None
    )
    assert memory.total_bytes == 7957324 * KIB
    assert memory.available_bytes == 4854520 * KIB
    assert memory.swap_total_bytes == 8388604 * KIB
    assert memory.swap_used_bytes == (8388604 - 7214696) * KIB


def test_kernels_before_memavailable_estimate_from_free_buffers_cached() -> None:
    meminfo = parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 300 kB\n")
    assert memory_from_meminfo(meminfo, None).available_bytes == 420 * KIB


def test_cgroup_limit_below_ram_caps_available_by_what_the_group_uses() -> None:
    meminfo = {"MemTotal": 32 * GIB, "MemAvailable": 30 * GIB, "SwapTotal": 0, "SwapFree": 0}
    memory = memory_from_meminfo(meminfo, CgroupMemory(limit_bytes=8 * GIB, in_use_bytes=3 * GIB))
    assert memory.limit_bytes == 8 * GIB
    assert memory.available_bytes == 5 * GIB


def test_cgroup_limit_above_ram_is_not_a_limit() -> None:
    meminfo = {"MemTotal": 16 * GIB, "MemAvailable": 12 * GIB}
    memory = memory_from_meminfo(meminfo, CgroupMemory(limit_bytes=64 * GIB, in_use_bytes=1))
    assert memory.limit_bytes is None
    assert memory.available_bytes == 12 * GIB


# --- cgroups -----------------------------------------------------------------------


def test_membership_of_a_hybrid_v1_host(fixture_text: ReadFixture) -> None:
    membership = parse_cgroup_membership(fixture_text("linux/self_cgroup_v1_hybrid.txt"))
    assert membership.memory_v1_path == "/process_api/bc4bde462098a72710ed8b431fdc668f"
    assert membership.unified_path == "/"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("max\n", None), ("9223372036854771712\n", None), ("8589934592\n", 8 * GIB), ("", None)],
)
def test_limit_values(text: str, expected: int | None) -> None:
    assert parse_cgroup_limit(text) == expected


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_v2_limit_of_an_ancestor_applies_and_inactive_cache_is_not_in_use(tmp_path: Path) -> None:
    # cgroup v2 file formats from the kernel's Documentation/admin-guide/cgroup-v2.rst.
    root = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/app.slice/worker.scope\n",
            "sys/fs/cgroup/app.slice/memory.max": f"{6 * GIB}\n",
            "sys/fs/cgroup/app.slice/memory.current": f"{4 * GIB}\n",
            "sys/fs/cgroup/app.slice/memory.stat": f"anon 1\ninactive_file {GIB}\nactive_file 5\n",
            "sys/fs/cgroup/app.slice/worker.scope/memory.max": "max\n",
        },
    )
    assert read_cgroup_memory(root) == CgroupMemory(limit_bytes=6 * GIB, in_use_bytes=3 * GIB)


def test_the_tightest_of_nested_limits_wins(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/outer/inner\n",
            "sys/fs/cgroup/outer/memory.max": f"{2 * GIB}\n",
            "sys/fs/cgroup/outer/inner/memory.max": f"{4 * GIB}\n",
        },
    )
    memory = read_cgroup_memory(root)
    assert memory is not None
    assert memory.limit_bytes == 2 * GIB
    assert memory.in_use_bytes is None


def test_v1_container_sees_its_own_group_at_the_mount_root(tmp_path: Path) -> None:
    # Docker without a cgroup namespace: /proc/self/cgroup names the host path,
    # but the memory controller is mounted at the container's own group.
    root = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:memory:/docker/0123abcd\n0::/\n",
            "sys/fs/cgroup/memory/memory.limit_in_bytes": f"{2 * GIB}\n",
            "sys/fs/cgroup/memory/memory.usage_in_bytes": f"{GIB}\n",
            "sys/fs/cgroup/memory/memory.stat": "cache 10\ntotal_inactive_file 1024\n",
        },
    )
    assert read_cgroup_memory(root) == CgroupMemory(limit_bytes=2 * GIB, in_use_bytes=GIB - 1024)


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert read_cgroup_memory(tmp_path) is None


# --- OS and the whole probe on a recorded root ----------------------------------------


def test_os_release_pretty_name(fixture_text: ReadFixture) -> None:
    assert (
        parse_os_release(fixture_text("linux/os_release_ubuntu_22_04.txt")) == "Ubuntu 22.04.4 LTS"
    )
    assert parse_os_release("NAME=x\n") is None


def test_probe_linux_reads_a_recorded_root(tmp_path: Path, fixture_text: ReadFixture) -> None:
    root = write_tree(
        tmp_path,
        {
            "proc/cpuinfo": fixture_text("linux/cpuinfo_xeon_8575c_2c4t.txt"),
            "proc/meminfo": fixture_text("linux/meminfo_8g_swap_in_use.txt"),
            "proc/self/cgroup": "0::/\n",
            "sys/fs/cgroup/memory.max": f"{4 * GIB}\n",
            "proc/sys/kernel/osrelease": "5.15.0-105-generic\n",
            "proc/sys/kernel/version": "#115-Ubuntu SMP Mon Apr 15 09:52:04 UTC 2024\n",
            "etc/os-release": fixture_text("linux/os_release_ubuntu_22_04.txt"),
        },
    )
    facts = probe_linux(root, arch="x86_64")
    assert facts.os.release == "5.15.0-105-generic"
    assert facts.os.distribution == "Ubuntu 22.04.4 LTS"
    assert (facts.cpu.cores, facts.cpu.threads) == (2, 4)
    assert facts.memory.total_bytes == 7957324 * KIB
    assert facts.memory.limit_bytes == 4 * GIB
    assert facts.memory.available_bytes == 4 * GIB  # MemAvailable (4.6 GiB) capped by the limit


def test_probe_of_this_linux_machine_is_sane() -> None:
    if not Path("/proc/meminfo").exists():
        pytest.skip("not a Linux machine")
    facts = probe_linux()
    assert facts.memory.total_bytes > facts.memory.available_bytes > 0
    assert facts.memory.swap_total_bytes >= facts.memory.swap_used_bytes >= 0
    assert facts.cpu.threads >= facts.cpu.cores >= 1
    assert facts.os.system == "Linux" and facts.os.release
