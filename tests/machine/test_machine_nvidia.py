"""NVIDIA probe: NVML answers (recorded boards, replayed by FakeNvml) become GpuInfo."""

from __future__ import annotations

import sys
from dataclasses import replace

import pynvml
import pytest

from yoyu.machine import nvidia
from yoyu.machine.nvidia import (
    cuda_version_string,
    memory_bandwidth_bytes_per_s,
    nvml_library_loads,
    probe_nvidia_gpus,
)
from yoyu.testing.fake_nvml import (
    DRIVER_545_CUDA_12_3,
    DRIVER_580_CUDA_13_0,
    H100_80G_HBM3,
    RTX_4090_24G,
    RTX_5060_TI_16G,
    FakeNvml,
    RecordedGpu,
)

MIB = 1024**2


def test_rtx_4090_workstation() -> None:
    nvml = FakeNvml(gpus=(RTX_4090_24G,))
    (gpu,) = probe_nvidia_gpus(nvml)
    assert (gpu.vendor, gpu.index, gpu.name) == ("nvidia", 0, "NVIDIA GeForce RTX 4090")
    assert gpu.total_bytes == 24564 * MIB
    assert gpu.used_bytes == 33 * MIB
    assert gpu.free_bytes == (24564 - 33) * MIB
    assert gpu.uuid == "GPU-1790118a-a6d7-4eaf-fcac-dcacac5f4351"
    assert (gpu.driver_version, gpu.cuda_version) == ("535.129.03", "12.2")
    assert gpu.compute_capability == "8.9"
    assert (gpu.memory_bus_width_bits, gpu.memory_clock_mhz) == (384, 10501)
    assert nvml.open_sessions == 0  # nvmlShutdown matched nvmlInit


def test_two_gpus_keep_their_order_and_share_the_driver() -> None:
    nvml = FakeNvml(gpus=(RTX_4090_24G, RTX_5060_TI_16G), driver=DRIVER_580_CUDA_13_0)
    first, second = probe_nvidia_gpus(nvml)
    assert (first.index, first.name) == (0, "NVIDIA GeForce RTX 4090")
    assert (second.index, second.name) == (1, "NVIDIA GeForce RTX 5060 Ti")
    assert second.total_bytes == 16311 * MIB
    assert second.compute_capability == "12.0"
    assert {first.cuda_version, second.cuda_version} == {"13.0"}
    assert {first.driver_version, second.driver_version} == {"580.178.04"}


def test_h100_counts_the_driver_reservation_as_used() -> None:
    (gpu,) = probe_nvidia_gpus(FakeNvml(gpus=(H100_80G_HBM3,), driver=DRIVER_545_CUDA_12_3))
    assert gpu.total_bytes == 81559 * MIB
    assert gpu.free_bytes == 81227 * MIB
    assert gpu.used_bytes == 332 * MIB  # nvidia-smi: 2 MiB used + 328 MiB reserved
    assert gpu.cuda_version == "12.3"
    assert gpu.compute_capability == "9.0"


@pytest.mark.parametrize(
    ("board", "vendor_spec_gb_per_s"),
    [(RTX_4090_24G, 1008), (RTX_5060_TI_16G, 448), (H100_80G_HBM3, 3350)],
)
def test_bandwidth_matches_nvidia_published_figures_within_half_a_percent(
    board: RecordedGpu, vendor_spec_gb_per_s: int
) -> None:
    (gpu,) = probe_nvidia_gpus(FakeNvml(gpus=(board,)))
    assert gpu.bandwidth_bytes_per_s is not None
    assert gpu.bandwidth_bytes_per_s / 1e9 == pytest.approx(vendor_spec_gb_per_s, rel=0.005)


def test_bandwidth_formula_and_its_missing_inputs() -> None:
    assert memory_bandwidth_bytes_per_s(512, 14001) == 1_792_128_000_000  # RTX 5090: 1792 GB/s
    assert memory_bandwidth_bytes_per_s(None, 14001) is None
    assert memory_bandwidth_bytes_per_s(128, None) is None


def test_unsupported_bus_width_leaves_bandwidth_unknown_not_the_probe_failed() -> None:
    vgpu = replace(RTX_4090_24G, memory_bus_width_bits=None)
    (gpu,) = probe_nvidia_gpus(FakeNvml(gpus=(vgpu,)))
    assert gpu.memory_bus_width_bits is None
    assert gpu.bandwidth_bytes_per_s is None
    assert gpu.total_bytes == 24564 * MIB


@pytest.mark.parametrize(
    "error_code",
    [
        pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
        pynvml.NVML_ERROR_NO_PERMISSION,
    ],
)
def test_nvml_that_cannot_start_means_no_gpus(error_code: int) -> None:
    nvml = FakeNvml(gpus=(RTX_4090_24G,), init_error=error_code)
    assert probe_nvidia_gpus(nvml) == ()


def test_zero_gpus_is_an_empty_answer() -> None:
    nvml = FakeNvml(gpus=())
    assert probe_nvidia_gpus(nvml) == ()
    assert nvml.open_sessions == 0


def test_the_real_pynvml_without_a_driver_gives_no_gpus() -> None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        assert probe_nvidia_gpus(pynvml) == ()
        return
    pynvml.nvmlShutdown()
    pytest.skip("this machine has a working NVIDIA driver")


@pytest.mark.parametrize(("encoded", "text"), [(12040, "12.4"), (12020, "12.2"), (13000, "13.0")])
def test_cuda_version_string(encoded: int, text: str) -> None:
    assert cuda_version_string(encoded) == text


def test_the_library_check_agrees_with_pynvml() -> None:
    """``nvml_library_loads`` says what pynvml's own ``nvmlInit`` finds: the library there
    (whatever the driver then answers), or LibraryNotFound."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        loads = error.value != pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    else:
        pynvml.nvmlShutdown()
        loads = True
    assert nvml_library_loads() == loads


@pytest.mark.skipif(sys.platform.startswith("win"), reason="pynvml searches its own paths")
def test_without_the_library_pynvml_is_not_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvidia, "NVML_LIBRARY", "libyoyu-no-such-library.so.1")

    def refuse(name: str) -> object:
        raise AssertionError(f"imported {name}")

    monkeypatch.setattr(nvidia.importlib, "import_module", refuse)
    assert probe_nvidia_gpus() == ()
