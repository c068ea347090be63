"""The arithmetic of ``benchmarks/gpu_memory.py``, which runs only where an NVIDIA GPU is:
nvidia-smi's CSV beside yoyu's NVML figures, and llama.cpp's CUDA buffer lines sorted
into GPU and host rows beside the prediction and NVML's process figure."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType

import pytest

from yoyu.backends.llamacpp_log import parse_buffer_sizes
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.overhead import CUDA_CONTEXT_BYTES
from yoyu.estimate.types import ALL_LAYERS, RunSettings
from yoyu.machine import load_machine
from yoyu.machine.nvidia import probe_nvidia_gpus
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.testing.benchmark_modules import load_benchmark
from yoyu.testing.fake_nvml import DRIVER_545_CUDA_12_3, H100_80G_HBM3, FakeNvml
from yoyu.testing.tiny_models import write_tiny_model
from yoyu.units import MIB


@pytest.fixture(scope="module")
def benchmark() -> ModuleType:
    return load_benchmark("gpu_memory")


# nvidia-smi --query-gpu=name,memory.total,memory.reserved,memory.used,memory.free,
# driver_version,clocks.max.memory,compute_cap --format=csv,noheader,nounits, in the
# figures of the recorded H100 (fake_nvml: total 81559, reserved 328, used 2, free 81227).
H100_SMI = "NVIDIA H100 80GB HBM3, 81559, 328, 2, 81227, 545.23.08, 2619, 9.0\n"


def test_smi_csv_and_the_probe_are_compared_figure_by_figure(benchmark: ModuleType) -> None:
    rows = benchmark.parse_smi_csv(H100_SMI, benchmark.SMI_FIELDS)
    assert rows == [
        {"name": "NVIDIA H100 80GB HBM3", "memory.total": "81559", "memory.reserved": "328",
         "memory.used": "2", "memory.free": "81227", "driver_version": "545.23.08",
         "clocks.max.memory": "2619", "compute_cap": "9.0"}
    ]  # fmt: skip
    gpus = probe_nvidia_gpus(FakeNvml((H100_80G_HBM3,), DRIVER_545_CUDA_12_3))
    machine = dataclasses.replace(load_machine("linux-cpu-32g"), gpus=gpus)
    lines = benchmark.compare_probe(machine, rows)
    assert "GPU 0 total MiB: yoyu 81559, nvidia-smi 81559" in lines
    # NVML's v1 query counts the reservation as used; nvidia-smi prints it apart
    assert "GPU 0 used MiB: yoyu 332, nvidia-smi used 2 + reserved 328 = 330" in lines
    assert any(line.startswith("GPU 0 memory clock MHz: yoyu 2619") for line in lines)


def test_a_gpu_count_mismatch_is_said(benchmark: ModuleType) -> None:
    machine = load_machine("server-h200-141g")
    assert benchmark.compare_probe(machine, []) == ["GPU count: yoyu 1, nvidia-smi 0"]


# The lines llama.cpp prints with a CUDA device (the format of llama.cpp's logs; the
# figures are chosen for the test, not measured).
CUDA_LOG = """\
load_tensors:        CUDA0 model buffer size =    20.00 MiB
load_tensors:   CPU_Mapped model buffer size =     3.00 MiB
llama_context:  CUDA_Host  output buffer size =     0.12 MiB
llama_kv_cache:      CUDA0 KV buffer size =     8.00 MiB
sched_reserve:      CUDA0 compute buffer size =    70.00 MiB
sched_reserve:  CUDA_Host compute buffer size =     9.00 MiB
"""


def test_cuda_buffers_are_sorted_into_gpu_and_host_rows(
    benchmark: ModuleType, tmp_path: Path
) -> None:
    model = tmp_path / "m.gguf"
    write_tiny_model(model, "llama", weight_type="Q4_0", vocab_size=1024, n_embd=256)
    settings = RunSettings(engine="llama-server", n_ctx=1024, n_gpu_layers=ALL_LAYERS)
    estimate = estimate_memory(read_gguf_model(model), load_machine("server-h200-141g"), settings)
    nvml = {"process_loaded": 600 * MIB, "process_peak": 650 * MIB,
            "device_before": 1000 * MIB, "device_loaded": 1610 * MIB}  # fmt: skip
    rows = {row["component"]: row for row in benchmark.component_rows(
        estimate, parse_buffer_sizes(CUDA_LOG), nvml)}  # fmt: skip
    gpu, cpu = estimate.device("CUDA0"), estimate.device("CPU")
    assert rows["weights CUDA0"]["printed"] == 20 * MIB
    assert rows["weights CUDA0"]["predicted"] == gpu.weights_bytes
    assert rows["weights host"]["printed"] == 3 * MIB
    assert rows["compute host"]["printed"] == 9 * MIB  # CUDA_Host is the host's
    assert rows["compute host"]["predicted"] == cpu.compute_bytes
    assert rows["output host"]["printed"] == round(0.12 * MIB)
    assert rows["buffers CUDA0"]["printed"] == 98 * MIB
    beyond = rows["beyond buffers (NVML loaded - printed)"]
    assert (beyond["predicted"], beyond["nvml"]) == (CUDA_CONTEXT_BYTES, 502 * MIB)
    assert beyond["ratio"] == pytest.approx(457 / 502, abs=1e-4)
    assert rows["beyond buffers (NVML peak - printed)"]["nvml"] == 552 * MIB
    assert rows["device used after - before (NVML)"]["nvml"] == 610 * MIB
    assert rows["process on CUDA0 (NVML, loaded)"]["predicted"] == gpu.total_bytes


def test_without_nvml_the_rows_say_nothing_rather_than_zero(
    benchmark: ModuleType, tmp_path: Path
) -> None:
    model = tmp_path / "m.gguf"
    write_tiny_model(model, "llama", weight_type="Q4_0", vocab_size=1024, n_embd=256)
    settings = RunSettings(engine="llama-server", n_ctx=1024)
    estimate = estimate_memory(read_gguf_model(model), load_machine("linux-cpu-32g"), settings)
    rows = benchmark.component_rows(estimate, parse_buffer_sizes(CUDA_LOG), {})
    nvml_rows = [row for row in rows if "NVML" in row["component"]]
    assert nvml_rows and all(row["nvml"] is None and row["ratio"] is None for row in nvml_rows)
