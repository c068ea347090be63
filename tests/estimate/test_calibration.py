"""The estimate against llama.cpp's own printed buffer sizes, on real loads.

Each case writes a tiny model, loads it in llama-cpp-python (child process)
with the settings yoyu emits, and compares component by component: weights
and KV to the printed precision (0.01 MiB), the compute buffer within 5 %;
with flash attention the estimate is a ceiling (ggml-alloc's fragmentation
around the FFN is not modelled), never below llama.cpp's figure and at most
15 % above it on these shapes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from yoyu.backends.llamacpp_measure import measure_load
from yoyu.errors import BackendError
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.types import RunSettings
from yoyu.machine.types import CpuInfo, Machine, MemoryInfo, OsInfo
from yoyu.models.gguf_spec import read_gguf_model
from yoyu.plan.emit.llama_cpp import llama_cpp_python_kwargs
from yoyu.testing.tiny_models import write_tiny_model

MIB = 1024**2
PRINTED_PRECISION = 0.0051 * MIB  # llama.cpp prints MiB with two decimals
SHAPE = {"n_layers": 4, "n_embd": 256, "n_head": 8, "n_head_kv": 2, "n_ff": 512, "vocab_size": 259}
CPU_ONLY = Machine(
    name="cpu", source="test", os=OsInfo("Linux", "", "", "x86_64"),
    cpu=CpuInfo("x86", 2, 2, ("avx2", "avx512f")),
    memory=MemoryInfo(16 * 1024**3, 8 * 1024**3, 0, 0),
)  # fmt: skip

CASES = [
    ("llama", "F32", {}, RunSettings(n_ctx=1000)),
    ("qwen3", "F16", {}, RunSettings(n_ctx=2048, n_ubatch=256)),
    ("gemma2", "F16", {"sliding_window": 128}, RunSettings(n_ctx=2048, flash_attn=True)),
    ("moe", "Q4_0", {"n_experts": 4, "n_experts_used": 2}, RunSettings(n_ctx=1024, type_k="q8_0")),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "weight_type", "shape", "settings"), CASES, ids=[c[0] for c in CASES]
)
def test_estimate_matches_llama_cpp(
    tmp_path: Path, arch: str, weight_type: str, shape: dict[str, int], settings: RunSettings
) -> None:
    path = tmp_path / f"{arch}.gguf"
    write_tiny_model(path, arch, weight_type=weight_type, **{**SHAPE, **shape})
    estimate = estimate_memory(read_gguf_model(path), CPU_ONLY, settings)
    buffers = measure_load(path, llama_cpp_python_kwargs(settings)).buffers
    cpu = estimate.device("CPU")
    assert abs(estimate.mapped_bytes - buffers.device("model", "CPU_Mapped")) <= PRINTED_PRECISION
    assert abs(cpu.repack_bytes - buffers.device("model", "CPU_REPACK")) <= PRINTED_PRECISION
    assert abs(cpu.kv_bytes - buffers.total("kv")) <= PRINTED_PRECISION
    assert abs(cpu.output_bytes - buffers.total("output")) <= PRINTED_PRECISION
    measured_compute = buffers.total("compute")
    if settings.flash_attn:
        assert measured_compute <= cpu.compute_bytes <= 1.15 * measured_compute
    else:
        assert abs(cpu.compute_bytes - measured_compute) <= 0.05 * measured_compute


def test_a_file_llama_cpp_cannot_load_is_a_backend_error_with_its_log(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(BackendError, match="could not load") as raised:
        measure_load(bogus, {"n_ctx": 256})
    assert "\n" not in str(raised.value)  # one line, as every YoyuError message
