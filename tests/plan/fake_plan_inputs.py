"""Plain-value inputs for planner tests: small machines, a uniform model and a
linear fake estimator whose figures a reader can check by hand.

The fake follows the shape of llama.cpp's placement (the last ``k`` of the
``n_layers + 1`` layers on the GPU, the output layer counted as one) with
round numbers: every block weighs ``LAYER`` bytes and holds ``KV_PER_TOKEN``
bytes of KV cache per context token; each GPU pays ``GPU_OVERHEAD``.
"""

from __future__ import annotations

from yoyu.estimate.types import DeviceMemory, MemoryEstimate, RunSettings
from yoyu.machine.types import (
    AppleSiliconInfo,
    CpuInfo,
    GpuInfo,
    Machine,
    MemoryInfo,
    OsInfo,
)
from yoyu.models.spec import ModelSpec, TensorInfo, summarize_tensors
from yoyu.units import GIB, MIB

LAYER = 1 * GIB
KV_PER_TOKEN = 16 * 1024  # bytes per context token per block
GPU_OVERHEAD = 512 * MIB
# KV bytes relative to f16, as ggml's block sizes give them (q8_0: 34 B per 32, q4_0: 18 B per 32)
KV_SCALE = {"f16": 1.0, "q8_0": 34 / 64, "q4_0": 18 / 64}


def uniform_model(
    n_layers: int = 10,
    name: str = "uniform:10b",
    params_per_layer: int = 10**9,
    architecture: str = "llama",
    quantization: str = "Q4_K_M",
) -> ModelSpec:
    """A model whose every block holds one LAYER-byte tensor (plus tiny norms)."""
    tensors = [
        TensorInfo(f"blk.{i}.ffn.q4_k", "Q4_K", (params_per_layer,), params_per_layer, LAYER, i)
        for i in range(n_layers)
    ]
    tensors += [
        TensorInfo("token_embd.weight", "Q4_K", (1000,), 1000, 1000, None),
        TensorInfo("output.weight", "Q6_K", (1000,), 1000, 1000, None),
    ]
    summary = summarize_tensors(tensors, n_layers, 0, 0)
    return ModelSpec(
        name=name,
        architecture=architecture,
        format="catalog",
        paths=(),
        file_bytes=summary.tensor_bytes,
        quantization=quantization,
        n_layers=n_layers,
        n_embd=4096,
        n_head=32,
        n_head_kv=8,
        head_dim_k=128,
        head_dim_v=128,
        n_ff=14336,
        vocab_size=32000,
        context_length=32768,
        params_total=summary.params_total,
        params_active=summary.params_active,
        tensor_bytes=summary.tensor_bytes,
        layer_bytes=summary.layer_bytes,
        nonrepeating_bytes=summary.nonrepeating_bytes,
        type_bytes=summary.type_bytes,
        tensors=tuple(tensors),
    )


def fake_estimate(spec: ModelSpec, machine: Machine, settings: RunSettings) -> MemoryEstimate:
    """Linear memory: blocks by LAYER bytes and n_ctx * KV_PER_TOKEN each, split CPU/GPU."""
    n_ctx = settings.n_ctx or spec.context_length
    total = spec.n_layers + 1
    on_gpu = min(total, settings.n_gpu_layers) if machine.gpus else 0
    gpu_layers = tuple(range(total - on_gpu, total))
    cpu_layers = tuple(range(total - on_gpu))

    def block_bytes(layers: tuple[int, ...]) -> int:
        blocks = [layer for layer in layers if layer < spec.n_layers]
        return sum(spec.layer_bytes[layer] for layer in blocks)

    def kv_bytes(layers: tuple[int, ...]) -> int:
        blocks = sum(1 for layer in layers if layer < spec.n_layers)
        return int(blocks * n_ctx * KV_PER_TOKEN * KV_SCALE[settings.type_k])

    cpu = DeviceMemory("CPU", "cpu", cpu_layers, block_bytes(cpu_layers), 0, kv_bytes(cpu_layers))
    devices = [cpu]
    if on_gpu:
        name = "Metal" if machine.unified_memory else "CUDA0"
        devices.append(
            DeviceMemory(
                name, "gpu", gpu_layers, block_bytes(gpu_layers), 0, kv_bytes(gpu_layers),
                overhead_bytes=GPU_OVERHEAD,
            )
        )  # fmt: skip
    return MemoryEstimate(settings, n_ctx, None, tuple(devices))


def linux_box(ram_gib: float, gpu_gib: float | None = None, swap_used: int = 0) -> Machine:
    gpus = ()
    if gpu_gib is not None:
        size = int(gpu_gib * GIB)
        gpus = (GpuInfo("nvidia", 0, "Test GPU", size, size, 0),)
    return Machine(
        name=f"linux-{ram_gib:g}g",
        source="test",
        os=OsInfo("Linux", "6.8", "", "x86_64"),
        cpu=CpuInfo("Test CPU", 8, 16, ("avx2",)),
        memory=MemoryInfo(int(ram_gib * GIB), int(ram_gib * GIB), 8 * GIB, swap_used),
        gpus=gpus,
    )


def mac(ram_gib: int, working_set_gib: float) -> Machine:
    total = ram_gib * GIB
    working_set = int(working_set_gib * GIB)
    apple = AppleSiliconInfo("Apple M2 Max", 30, working_set, working_set, 0)
    return Machine(
        name=f"mac-{ram_gib}g",
        source="test",
        os=OsInfo("Darwin", "23.5.0", "14.5", "arm64"),
        cpu=CpuInfo("Apple M2 Max", 12, 12, ("neon",), performance_cores=8),
        memory=MemoryInfo(total, total, 0, 0),
        gpus=(GpuInfo("apple", 0, "Apple M2 Max", working_set, working_set, 0),),
        unified_memory=True,
        apple=apple,
    )
