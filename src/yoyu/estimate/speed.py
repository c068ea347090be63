"""Predicted decode and prefill speed of a placed model.

Decode reads every weight it uses once per token (only the routed experts a
token selects, for a MoE) plus the KV cache up to the current position, and
multiplies each weight once (2 FLOPs per parameter). On a GPU the reads bound
it, at the share of the vendor's peak bandwidth its llama.cpp backend reaches,
plus a fixed cost per layer (kernel launches and synchronisation: what makes a
1B model far slower than its bytes say); on a CPU whichever is slower bounds
it, bandwidth or the matrix-vector kernels' arithmetic, and each layer adds a
fixed cost (graph dispatch and thread barriers per op, which dominate small
models). The devices that run consecutive layers add up (they run one after
the other, not in parallel).

GPU figures per backend (``GPU_BACKENDS``, keyed by the GPU's vendor) are fitted
on public measurements, the facts marked "fit" in ``speed_facts.toml`` (least
squares of the log ratio: ``python benchmarks/speed_accuracy.py --fit``), and
checked on the others (the same script without ``--fit``; the README has the
table):

- CUDA: 83.5 % of peak bandwidth, 34 us per layer (fitted on an RTX 5070's llmfit
  runs of Llama 3.2 1B, Llama 3.1 8B and Qwen3 14B and its CUDA scoreboard row;
  checked on its other runs, an RTX 2080, the 5070 Ti, 5080, 4070 Ti SUPER and
  3060 of llama.cpp's CUDA scoreboard, and a GB10).
- Metal: 94.5 % of Apple's quoted bandwidth, 78 us per layer with 2026 builds
  (fitted on an M4 Pro's llmfit runs of the same three models, checked on its
  other runs and an M3 Pro); build 8e672ef of 2023, which llama.cpp's Apple
  Silicon scoreboard pins (``LLAMA_CPP_2023_BACKENDS``), paid 198 us per layer
  (fitted on the M2 and M2 Max rows, checked on five other chips).
- AMD (ROCm or Vulkan): 85.5 % and 52 us per layer (fitted on an RX 7900 XT's
  Llama 3.1 8B and Qwen2.5 32B runs, checked on its other runs and an RX 6800).
- An MoE block costs 1.65 times a dense block's fixed time (its router, top-k and
  expert-weighted sum; fitted on the M4 Pro's Qwen3-30B-A3B run, checked on the
  other MoE runs).
- Sampling costs the host 1.3 ns per vocabulary entry per token (0.17 ms for a
  128k vocabulary), fitted with the figures above: llama-bench does not sample,
  llama-server and Ollama do.

Prefill on a GPU runs at a share of its FP32 shader peak (``GpuInfo.fp32_flops``):
2.2 times it on CUDA, whose quantized matrix products run on int8 tensor cores
(fitted on the RTX 5070's pp512, checked on the 5070 Ti, 5080 and 4070 Ti
SUPER), 0.69 on Metal (fitted on the M2 and M2 Max rows of the 2023 scoreboard,
checked on five chips; no newer Apple prefill figure is in the facts). AMD's
0.5 is a guess that no fact checks.

Prefill multiplies every weight except the output layer's for every prompt
token (only the last token's logits are computed), plus attention over the
tokens before it; it is bound by compute.

CPU figures, measured on the reference machine (x86-64, 2 cores with AVX-512,
llama.cpp from llama-cpp-python 0.3.36, ``benchmarks/estimate_accuracy.py``):

- decode streams weights at ``DECODE_BANDWIDTH_EFFICIENCY`` of a measured
  copy bandwidth (``yoyu.machine.bandwidth``; the defaults below are used
  only when a machine states none, and the bound says so);
- CPU rates per core in GFLOPS, by weight kind: repacked 4-bit weights
  (CPU_REPACK's Q4_0/Q4_K/IQ4_NL kernels) are the fastest, other quantized
  types take the int8 dot-product path, F16/BF16/F32 the float path.
  Matrix-vector (decode) rates and matrix-matrix (prefill) rates at
  ``n_embd`` 4096; prefill on narrower models is slower (``n_embd``^0.3,
  fitted between 512 and 4096). Another CPU scales them by its cores and its
  SIMD width relative to AVX-512 (its clock is assumed the same).
- ``CPU_LAYER_OVERHEAD_S`` per layer per decoded token.

Measured against these on the reference machine, the real Gemma 3 270M
through llama-cpp-python's server: decode 66 tok/s (predicted 66, 64.5 since the
sampling term: 0.34 ms for its 262k vocabulary), prefill 741 tok/s for a
253-token prompt (predicted 870); a generated 1 GB F16 model: decode 28.5
(25), prefill 311 (330).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from yoyu.estimate.repack import repacked_tensors
from yoyu.estimate.types import MemoryEstimate
from yoyu.estimate.weights import CPU, LayerPlacement, place_layers
from yoyu.i18n import message_of
from yoyu.machine.types import GpuInfo, Machine
from yoyu.models.spec import ModelSpec, TensorInfo, is_expert_tensor, is_vision_tensor

DEFAULT_CPU_BANDWIDTH = 50 * 10**9
DEFAULT_GPU_BANDWIDTH = 500 * 10**9
DEFAULT_GPU_FLOPS = 20 * 10**12  # prefill FLOP/s on a GPU whose FP32 peak is not stated
DECODE_BANDWIDTH_EFFICIENCY = 0.7
GPU_PREFILL_FLOP_EFFICIENCY = 1.0  # of FP32 shader peak, on a backend yoyu has no figure for
CPU_LAYER_OVERHEAD_S = 0.1e-3
# An MoE block adds graph nodes to a dense one (router, top-k, expert weights, indirect
# matmuls, the weighted sum): fitted, 1.65 times a dense block's fixed time on a GPU.
MOE_LAYER_OVERHEAD_FACTOR = 1.65
# Host CPU time per decoded token and vocabulary entry: the sampler chain (top-k, top-p,
# min-p, temperature over every logit) of an engine that samples; llama-bench does not,
# which is what tells the two costs apart in the fit.
SAMPLING_S_PER_VOCAB_ENTRY = 1.3e-9
REFERENCE_FLOPS_PER_CYCLE = 128  # AVX-512 in the table below
REFERENCE_N_EMBD = 4096
PREFILL_WIDTH_EXPONENT = 0.3
# GFLOPS per core on the reference machine: (decode matrix-vector, prefill matrix-matrix)
CPU_RATES_PER_CORE = {
    "repacked": (40e9, 235e9),
    "quantized": (20e9, 168e9),
    "float": (15e9, 200e9),
}
_FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})
_FLOPS_PER_CYCLE = (("avx512f", 128), ("avx2", 64), ("avx", 32), ("neon", 32), ("asimd", 32))


@dataclass(frozen=True)
class GpuBackendSpeed:
    """What one llama.cpp GPU backend makes of a GPU during decode: the share of the
    vendor's peak memory bandwidth its matrix-vector kernels stream weights at, and
    the fixed time each layer costs per token whatever its size (kernel launches,
    synchronisation), which bounds small models."""

    name: str
    bandwidth_efficiency: float
    layer_overhead_s: float
    prefill_efficiency: float  # prefill FLOP/s over the GPU's FP32 shader peak


UNKNOWN_GPU_BACKEND = GpuBackendSpeed(
    "GPU", DECODE_BANDWIDTH_EFFICIENCY, 0.0, GPU_PREFILL_FLOP_EFFICIENCY
)
GPU_BACKENDS: Mapping[str, GpuBackendSpeed] = {
    "nvidia": GpuBackendSpeed("CUDA", 0.835, 34e-6, 2.2),
    "apple": GpuBackendSpeed("Metal", 0.945, 78e-6, 0.69),
    "amd": GpuBackendSpeed("ROCm/Vulkan", 0.855, 52e-6, 0.5),
}
# llama.cpp build 8e672ef (2023-11-21), the one its Apple Silicon scoreboard pins
LLAMA_CPP_2023_BACKENDS: Mapping[str, GpuBackendSpeed] = {
    **GPU_BACKENDS,
    "apple": GpuBackendSpeed("Metal (2023 build)", 0.945, 198e-6, 0.69),
}


@dataclass(frozen=True)
class SpeedPrediction:
    decode_tps: float
    prefill_tps: float
    bound: str  # "memory bandwidth of CUDA0", "compute of CPU", "(assumed 50 GB/s)"...


@dataclass
class _DeviceWork:
    """What one decoded token costs on one device: bytes read and FLOPs by weight kind."""

    bytes_read: float = 0.0
    flops: dict[str, float] | None = None
    layers: int = 0
    moe_layers: int = 0

    def add(self, kind: str, n_bytes: float, flops: float) -> None:
        self.bytes_read += n_bytes
        self.flops = self.flops or {}
        self.flops[kind] = self.flops.get(kind, 0.0) + flops


def predict_speed(
    spec: ModelSpec,
    estimate: MemoryEstimate,
    machine: Machine,
    *,
    context_tokens: int | None = None,
    backends: Mapping[str, GpuBackendSpeed] = GPU_BACKENDS,
    sampling: bool = True,
) -> SpeedPrediction:
    """Decode and prefill tokens/s; ``context_tokens`` (default: half the context) sets the
    KV reads of decode and the attention span of prefill; ``backends`` (by GPU vendor) the
    GPU figures, the current llama.cpp's unless a measurement of an older build is
    being reproduced; ``sampling`` False leaves out the sampler's time (llama-bench)."""
    filled = estimate.n_ctx // 2 if context_tokens is None else context_tokens
    placed = _placed(spec, estimate, machine)
    work = _decode_work(spec, placed)
    decode_s, decode_device, decode_limit, assumed = _decode_seconds(
        estimate, machine, work, filled, backends
    )
    if sampling:
        decode_s += spec.vocab_size * SAMPLING_S_PER_VOCAB_ENTRY
    prefill_s, prefill_device = _prefill_seconds(spec, placed, machine, filled, backends)
    limit = (
        message_of("compute of {device}", device=decode_device)
        if decode_limit == "compute"
        else message_of("memory bandwidth of {device}", device=decode_device)
    )
    if assumed:
        limit = message_of("{limit} (assumed bandwidth)", limit=limit)
    return SpeedPrediction(
        decode_tps=1.0 / decode_s if decode_s > 0 else 0.0,
        prefill_tps=1.0 / prefill_s if prefill_s > 0 else 0.0,
        bound=message_of(
            "decode: {decode}; prefill: {prefill}",
            decode=limit,
            prefill=message_of("compute of {device}", device=prefill_device),
        ),  # a Message: its English text in JSON, the user's language at the CLI
    )


class _Placed(NamedTuple):
    """Where the estimate put each tensor, and which ones the CPU repacks: what decode and
    prefill both read, worked out once per prediction."""

    placement: LayerPlacement
    repacked: frozenset[str]


def _placed(spec: ModelSpec, estimate: MemoryEstimate, machine: Machine) -> _Placed:
    placement = place_layers(spec, estimate.settings, machine)
    repacked = repacked_tensors(spec.tensors, machine, estimate.settings)
    return _Placed(placement, frozenset(tensor.name for tensor in repacked))


def decode_work(
    spec: ModelSpec, estimate: MemoryEstimate, machine: Machine
) -> dict[str, _DeviceWork]:
    """Weight bytes and FLOPs one decoded token costs on each device (active experts only)."""
    return _decode_work(spec, _placed(spec, estimate, machine))


def _decode_work(spec: ModelSpec, placed: _Placed) -> dict[str, _DeviceWork]:
    placement, repacked = placed.placement, placed.repacked
    expert_share = spec.n_experts_used / spec.n_experts if spec.is_moe else 1.0
    tied_output = not any(_is_output(tensor.name) for tensor in spec.tensors)
    work: dict[str, _DeviceWork] = {}
    for tensor in spec.tensors:
        if tensor.name.startswith("token_embd.") and not tied_output:
            continue  # a row lookup, not a full read
        if is_vision_tensor(tensor.name):
            continue  # runs on images only, never per generated token
        share = expert_share if is_expert_tensor(tensor.name) else 1.0
        device = (
            placement.output
            if tensor.name.startswith("token_embd.")
            else placement.device_of(tensor)
        )
        kind = _weight_kind(tensor, tensor.name in repacked)
        device_work = work.get(device)
        if device_work is None:
            device_work = work[device] = _DeviceWork()
        device_work.add(kind, tensor.n_bytes * share, 2.0 * tensor.n_params * share)
    moe_layers = {tensor.layer for tensor in spec.tensors if is_expert_tensor(tensor.name)}
    for layer, device in enumerate(placement.blocks):
        device_work = work.setdefault(device, _DeviceWork())
        device_work.layers += 1
        device_work.moe_layers += layer in moe_layers
    return work


def _is_output(tensor_name: str) -> bool:
    """The output projection: ``output.weight`` in a file, ``output.q6_k`` in the catalog."""
    return tensor_name.startswith("output.")


def _weight_kind(tensor: TensorInfo, repacked: bool) -> str:
    if repacked:
        return "repacked"
    return "float" if tensor.type_name.upper() in _FLOAT_TYPES else "quantized"


def _decode_seconds(
    estimate: MemoryEstimate,
    machine: Machine,
    work: dict[str, _DeviceWork],
    filled: int,
    backends: Mapping[str, GpuBackendSpeed],
) -> tuple[float, str, str, bool]:
    """Seconds per token, and the device, limit and assumption that set it."""
    kv_fraction = min(filled, estimate.n_ctx) / estimate.n_ctx if estimate.n_ctx else 0.0
    total, slowest, slowest_s, limit, assumed_any = 0.0, CPU, -1.0, "memory bandwidth", False
    for device in estimate.devices:
        device_work = work.get(device.name, _DeviceWork())
        read = device_work.bytes_read + device.kv_bytes * kv_fraction
        bandwidth, assumed = _bandwidth(machine, device.name)
        compute_s = 0.0
        if device.name == CPU:
            read_s = read / (bandwidth * DECODE_BANDWIDTH_EFFICIENCY)
            compute_s = sum(
                flops / _cpu_rate(machine, kind, decode=True)
                for kind, flops in (device_work.flops or {}).items()
            )
            overhead_s = device_work.layers * CPU_LAYER_OVERHEAD_S
        else:
            backend = gpu_backend(machine, device.name, backends)
            read_s = read / (bandwidth * backend.bandwidth_efficiency)
            overhead_s = backend.layer_overhead_s * (
                device_work.layers + (MOE_LAYER_OVERHEAD_FACTOR - 1) * device_work.moe_layers
            )
        seconds = max(read_s, compute_s) + overhead_s
        total += seconds
        assumed_any |= assumed and read > 0
        if seconds > slowest_s:
            slowest, slowest_s = device.name, seconds
            limit = "compute" if compute_s > read_s else "memory bandwidth"
    return total, slowest, limit, assumed_any


def _bandwidth(machine: Machine, device: str) -> tuple[float, bool]:
    if device == CPU:
        measured = machine.memory.bandwidth_bytes_per_s
        return (float(measured), False) if measured else (float(DEFAULT_CPU_BANDWIDTH), True)
    gpu = _gpu_for(machine, device)
    if gpu is not None and gpu.bandwidth_bytes_per_s:
        return float(gpu.bandwidth_bytes_per_s), False
    if machine.unified_memory and machine.memory.bandwidth_bytes_per_s:
        return float(machine.memory.bandwidth_bytes_per_s), False
    return float(DEFAULT_GPU_BANDWIDTH), True


def gpu_backend(
    machine: Machine, device: str, backends: Mapping[str, GpuBackendSpeed] = GPU_BACKENDS
) -> GpuBackendSpeed:
    """The decode figures of the llama.cpp backend that drives ``device`` (by its vendor)."""
    gpu = _gpu_for(machine, device)
    vendor = gpu.vendor if gpu is not None else ("apple" if device == "Metal" else "")
    return backends.get(vendor, UNKNOWN_GPU_BACKEND)


def _gpu_for(machine: Machine, device: str) -> GpuInfo | None:
    for gpu in machine.gpus:
        if device in (f"CUDA{gpu.index}", "Metal"):
            return gpu
    return None


def simd_flops_per_cycle(machine: Machine) -> int:
    """FP32 FLOPs per cycle per core of the CPU's widest SIMD (an FMA counted as two)."""
    flags = set(machine.cpu.simd)
    return next((flops for flag, flops in _FLOPS_PER_CYCLE if flag in flags), 8)


def _cpu_rate(
    machine: Machine, kind: str, *, decode: bool, n_embd: int = REFERENCE_N_EMBD
) -> float:
    """FLOPs per second the whole CPU reaches on weights of ``kind``."""
    per_core = CPU_RATES_PER_CORE[kind][0 if decode else 1]
    width = simd_flops_per_cycle(machine) / REFERENCE_FLOPS_PER_CYCLE
    narrow = 1.0 if decode else min(1.0, n_embd / REFERENCE_N_EMBD) ** PREFILL_WIDTH_EXPONENT
    return per_core * machine.cpu.cores * width * narrow


def _prefill_seconds(
    spec: ModelSpec,
    placed: _Placed,
    machine: Machine,
    filled: int,
    backends: Mapping[str, GpuBackendSpeed],
) -> tuple[float, str]:
    """Seconds per prompt token: every block's weights and attention over ``filled / 2``
    earlier tokens on average, each device's share at its own rate."""
    placement, repacked = placed.placement, placed.repacked
    expert_share = spec.n_experts_used / spec.n_experts if spec.is_moe else 1.0
    seconds_by_device: dict[str, float] = {}
    rates: dict[tuple[str, str], float] = {}  # one device's rate for one kind of weight
    for tensor in spec.tensors:
        if tensor.layer is None:
            continue  # embeddings and the output layer: one token's worth, not every token's
        device = placement.device_of(tensor)
        share = expert_share if is_expert_tensor(tensor.name) else 1.0
        flops = 2.0 * tensor.n_params * share
        kind = _weight_kind(tensor, tensor.name in repacked)
        rate = rates.get((device, kind))
        if rate is None:
            rate = rates[device, kind] = _prefill_rate(machine, device, kind, spec.n_embd, backends)
        seconds_by_device[device] = seconds_by_device.get(device, 0.0) + flops / rate
    attention_flops = 2.0 * spec.n_head * (spec.head_dim_k + spec.head_dim_v) * filled / 2
    for device in placement.blocks:
        seconds_by_device[device] = seconds_by_device.get(device, 0.0) + attention_flops / (
            _prefill_rate(machine, device, "float", spec.n_embd, backends)
        )
    if not seconds_by_device:
        return 0.0, CPU
    slowest = max(seconds_by_device, key=lambda name: seconds_by_device[name])
    return sum(seconds_by_device.values()), slowest


def _prefill_rate(
    machine: Machine,
    device: str,
    kind: str,
    n_embd: int,
    backends: Mapping[str, GpuBackendSpeed],
) -> float:
    """FLOP/s of prefill's matrix-matrix products on ``device``."""
    if device == CPU:
        return _cpu_rate(machine, kind, decode=False, n_embd=n_embd)
    gpu = _gpu_for(machine, device)
    if gpu is None or not gpu.fp32_flops:  # a probed GPU: NVML states no shader count
        return DEFAULT_GPU_FLOPS * GPU_PREFILL_FLOP_EFFICIENCY
    return gpu.fp32_flops * gpu_backend(machine, device, backends).prefill_efficiency
