"""probe_machine: the real probe on this machine, and whole recorded machines end to end."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from yoyu.machine import probe_machine
from yoyu.machine.commands import CommandError
from yoyu.testing.fake_nvml import DRIVER_545_CUDA_12_3, H100_80G_HBM3, FakeNvml

GIB = 1024**3
ReadFixture = Callable[[str], str]
Validate = Callable[[Any], None]


def no_ollama(url: str, timeout_s: float) -> bytes:
    raise ConnectionRefusedError(url)


def test_this_machine(validate_machine: Validate) -> None:
    machine = probe_machine(http_get=no_ollama)
    memory = machine.memory
    assert machine.source == "probe"
    assert memory.total_bytes > memory.available_bytes > 0
    assert memory.swap_total_bytes >= memory.swap_used_bytes >= 0
    assert machine.cpu.threads >= machine.cpu.cores >= 1
    assert machine.os.system == platform.system()
    assert all(gpu.total_bytes >= gpu.free_bytes >= 0 for gpu in machine.gpus)
    assert [runtime.name for runtime in machine.runtimes] == [
        "ollama",
        "llama-server",
        "llama-cpp-python",
    ]
    validate_machine(machine.to_dict())


def test_without_runtimes_nothing_is_asked_of_engines() -> None:
    asked: list[str] = []

    def http_get(url: str, timeout_s: float) -> bytes:
        asked.append(url)
        raise ConnectionRefusedError(url)

    machine = probe_machine(http_get=http_get, find_runtimes=False)
    assert machine.runtimes == () and asked == []
    assert machine.memory.total_bytes > 0
    assert len(probe_machine(http_get=http_get).runtimes) == 3 and len(asked) == 1


def test_this_machine_serialises_to_json() -> None:
    data = json.loads(json.dumps(probe_machine(http_get=no_ollama).to_dict()))
    assert set(data) >= {"os", "cpu", "memory", "gpus", "unified_memory"}
    assert isinstance(data["gpus"], list)


def recorded_linux_root(tmp_path: Path, fixture_text: ReadFixture) -> Path:
    files = {
        "proc/cpuinfo": fixture_text("linux/cpuinfo_xeon_8575c_2c4t.txt"),
        "proc/meminfo": fixture_text("linux/meminfo_8g_swap_in_use.txt"),
        "proc/self/cgroup": "0::/\n",
        "etc/os-release": fixture_text("linux/os_release_ubuntu_22_04.txt"),
    }
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text, encoding="utf-8")
    return tmp_path


def test_linux_server_with_two_h100s(
    tmp_path: Path, fixture_text: ReadFixture, validate_machine: Validate
) -> None:
    nvml = FakeNvml(gpus=(H100_80G_HBM3, H100_80G_HBM3), driver=DRIVER_545_CUDA_12_3)
    machine = probe_machine(
        system="Linux",
        root=recorded_linux_root(tmp_path, fixture_text),
        nvml=nvml,
        http_get=no_ollama,
        hostname="della-k17g3",
        env={"PATH": str(tmp_path)},
    )
    assert machine.name == "della-k17g3"
    assert [gpu.index for gpu in machine.gpus] == [0, 1]
    assert {gpu.name for gpu in machine.gpus} == {"NVIDIA H100 80GB HBM3"}
    assert not machine.unified_memory and machine.apple is None
    assert machine.os.distribution == "Ubuntu 22.04.4 LTS"
    assert machine.runtimes[0].found is False
    validate_machine(machine.to_dict())


def test_mac_probe_has_one_apple_gpu_and_skips_nvml(
    fixture_text: ReadFixture, validate_machine: Validate
) -> None:
    outputs = {
        "sysctl": fixture_text("darwin/sysctl_m3_ultra_512g.txt"),
        "vm_stat": fixture_text("darwin/vm_stat_m3_ultra_512g.txt"),
        "ioreg": fixture_text("darwin/ioreg_m3_ultra.txt"),
    }

    def run(command: Sequence[str]) -> str:
        if command[0] not in outputs:
            raise CommandError(f"{command[0]}: not on this test Mac")
        return outputs[command[0]]

    nvml = FakeNvml(gpus=(H100_80G_HBM3,))  # would show up if NVML were asked
    machine = probe_machine(system="Darwin", run=run, nvml=nvml, http_get=no_ollama, env={})
    assert machine.unified_memory
    (gpu,) = machine.gpus
    assert (gpu.vendor, gpu.name, gpu.total_bytes) == ("apple", "Apple M3 Ultra", 480 * GIB)
    assert machine.apple is not None and machine.apple.memory_pressure == "warn"
    assert machine.memory.total_bytes == 512 * GIB
    validate_machine(machine.to_dict())


def test_mac_without_sysctl_falls_back_to_psutil(validate_machine: Validate) -> None:
    def run(command: Sequence[str]) -> str:
        raise CommandError(f"{command[0]}: not found")

    machine = probe_machine(system="Darwin", run=run, http_get=no_ollama, env={})
    assert machine.apple is None and machine.gpus == ()
    assert machine.memory.total_bytes > 0
    validate_machine(machine.to_dict())


@pytest.mark.parametrize("system", ["Windows", "FreeBSD"])
def test_other_systems_get_the_portable_minimum(system: str, validate_machine: Validate) -> None:
    machine = probe_machine(system=system, nvml=FakeNvml(), http_get=no_ollama, env={})
    assert machine.os.system == system
    assert machine.memory.total_bytes >= machine.memory.available_bytes > 0
    assert machine.cpu.simd == ()
    validate_machine(machine.to_dict())
