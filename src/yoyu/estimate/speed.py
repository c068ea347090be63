"""Predicted decode and prefill speed of a placed model.

Decode reads every weight it uses once per token (only the routed experts a
token selects, for a MoE) plus the KV cache up to the current position, so
it is bound by memory bandwidth: the time per token is the sum, over the
devices that run consecutive layers, of bytes read there / that device's
bandwidth (the layers run one after the other, not in parallel). Prefill
does ``2 * active parameters`` FLOPs per token and is bound by compute.

Defaults when the machine does not state a figure (said in ``bound``):
CPU RAM 50 GB/s (dual-channel DDR5), GPU 500 GB/s. Achieved fractions:
``DECODE_BANDWIDTH_EFFICIENCY`` of a *measured* copy bandwidth (on the
reference x86 machine llama.cpp's Q8_0/F16 matrix-vector kernels streamed
weights at 0.55-0.7 of a single-threaded numpy copy's read+write rate, the
spread being other load on a shared 2-core machine;
``benchmarks/estimate_accuracy.py`` re-measures it), and
``PREFILL_FLOP_EFFICIENCY`` of the int8/F16 SIMD peak of all cores at an
assumed 2.5 GHz (dense Q8_0/F16 prefill reached 0.3-0.45 of it on the
reference machine; MoE prefill far less: a rough figure).
"""

from __future__ import annotations

from dataclasses import dataclass

from yoyu.estimate.types import MemoryEstimate
from yoyu.estimate.weights import place_layers
from yoyu.machine.types import GpuInfo, Machine
from yoyu.models.spec import ModelSpec, is_expert_tensor

DEFAULT_CPU_BANDWIDTH = 50 * 10**9
DEFAULT_GPU_BANDWIDTH = 500 * 10**9
DEFAULT_GPU_FLOPS = 50 * 10**12
DECODE_BANDWIDTH_EFFICIENCY = 0.6
PREFILL_FLOP_EFFICIENCY = 0.4
CPU_HZ_ASSUMED = 2.5e9
# per core per cycle; llama.cpp's int8 (VNNI) and F16 paths run at about twice the FP32 FMA rate
_FLOPS_PER_CYCLE = (("avx512f", 128), ("avx2", 64), ("avx", 32), ("neon", 32), ("asimd", 32))


@dataclass(frozen=True)
class SpeedPrediction:
    decode_tps: float
    prefill_tps: float
    bound: str  # "memory bandwidth of CUDA0", "compute of CPU", "(assumed 50 GB/s)"...


def predict_speed(
    spec: ModelSpec,
    estimate: MemoryEstimate,
    machine: Machine,
    *,
    context_tokens: int | None = None,
) -> SpeedPrediction:
    """Decode and prefill tokens/s; ``context_tokens`` (default: half the context) sets KV reads."""
    filled = estimate.n_ctx // 2 if context_tokens is None else context_tokens
    decode_s, decode_device, assumed = _decode_seconds(spec, estimate, machine, filled)
    prefill_s, prefill_device = _prefill_seconds(spec, estimate, machine)
    bound = f"memory bandwidth of {decode_device}" + (" (assumed bandwidth)" if assumed else "")
    return SpeedPrediction(
        decode_tps=1.0 / decode_s if decode_s > 0 else 0.0,
        prefill_tps=1.0 / prefill_s if prefill_s > 0 else 0.0,
        bound=f"decode: {bound}; prefill: compute of {prefill_device}",
    )


def bytes_read_per_token(
    spec: ModelSpec, estimate: MemoryEstimate, machine: Machine
) -> dict[str, int]:
    """Weight bytes one decoded token reads on each device (active experts only)."""
    placement = place_layers(spec, estimate.settings, machine)
    expert_share = spec.n_experts_used / spec.n_experts if spec.is_moe else 1.0
    per_device: dict[str, int] = {}
    for tensor in spec.tensors:
        if tensor.name.startswith("token_embd.") and "output.weight" in _names(spec):
            continue  # a row lookup, not a full read
        share = expert_share if is_expert_tensor(tensor.name) else 1.0
        device = placement.device_of(tensor)
        per_device[device] = per_device.get(device, 0) + int(tensor.n_bytes * share)
    return per_device


def _names(spec: ModelSpec) -> set[str]:
    return {tensor.name for tensor in spec.tensors}


def _decode_seconds(
    spec: ModelSpec, estimate: MemoryEstimate, machine: Machine, filled: int
) -> tuple[float, str, bool]:
    weights = bytes_read_per_token(spec, estimate, machine)
    kv_fraction = min(filled, estimate.n_ctx) / estimate.n_ctx if estimate.n_ctx else 0.0
    total, slowest, slowest_s, assumed_any = 0.0, "CPU", -1.0, False
    for device in estimate.devices:
        read = weights.get(device.name, 0) + device.kv_bytes * kv_fraction
        bandwidth, assumed = _bandwidth(machine, device.name)
        seconds = read / (bandwidth * DECODE_BANDWIDTH_EFFICIENCY)
        total += seconds
        assumed_any |= assumed and read > 0
        if seconds > slowest_s:
            slowest, slowest_s = device.name, seconds
    return total, slowest, assumed_any


def _bandwidth(machine: Machine, device: str) -> tuple[float, bool]:
    if device == "CPU":
        measured = machine.memory.bandwidth_bytes_per_s
        return (float(measured), False) if measured else (float(DEFAULT_CPU_BANDWIDTH), True)
    gpu = _gpu_for(machine, device)
    if gpu is not None and gpu.bandwidth_bytes_per_s:
        return float(gpu.bandwidth_bytes_per_s), False
    if machine.unified_memory and machine.memory.bandwidth_bytes_per_s:
        return float(machine.memory.bandwidth_bytes_per_s), False
    return float(DEFAULT_GPU_BANDWIDTH), True


def _gpu_for(machine: Machine, device: str) -> GpuInfo | None:
    for gpu in machine.gpus:
        if device in (f"CUDA{gpu.index}", "Metal"):
            return gpu
    return None


def cpu_peak_flops(machine: Machine) -> float:
    """FP32 peak of the CPU from its cores and widest SIMD (assumed clock)."""
    flags = set(machine.cpu.simd)
    per_cycle = next((flops for flag, flops in _FLOPS_PER_CYCLE if flag in flags), 8)
    return machine.cpu.cores * CPU_HZ_ASSUMED * per_cycle


def _prefill_seconds(
    spec: ModelSpec, estimate: MemoryEstimate, machine: Machine
) -> tuple[float, str]:
    """2 FLOPs per active parameter per token, run by the slowest device's share."""
    weights = bytes_read_per_token(spec, estimate, machine)
    total_bytes = sum(weights.values()) or 1
    seconds, slowest, slowest_s = 0.0, "CPU", -1.0
    for device, n_bytes in weights.items():
        flops = 2.0 * spec.params_active * n_bytes / total_bytes
        peak = cpu_peak_flops(machine) if device == "CPU" else float(DEFAULT_GPU_FLOPS)
        device_s = flops / (peak * PREFILL_FLOP_EFFICIENCY)
        seconds += device_s
        if device_s > slowest_s:
            slowest, slowest_s = device, device_s
    return seconds, slowest
