"""Which blocks land on which device, and the bytes of weights each holds.

Layer placement follows ``llama_model::load_tensors`` (``src/llama-model.cpp``)
since llama.cpp PR #18148 (Dec 2025, "offload output layer to GPU first"):
slots ``0..n_layer`` are the blocks plus the output layer (slot ``n_layer``);
``n_gpu_layers`` counts from the top, so any ``ngl >= 1`` puts the output
layer on the GPU, ``ngl == n_layer`` leaves block 0 on the CPU and a full
offload needs ``n_layer + 1``. Offloaded slots are shared between GPUs by
the cumulative ``tensor_split`` (``upper_bound`` on the normalised shares).
The token embeddings always stay on the CPU ("very little benefit to
offloading the input layer"); a model with tied embeddings (no
``output.weight``) gets a copy of ``token_embd`` on the output device. A
vision tower and its projector (``v.*``, ``mm.*``: Ollama's blob, or an
mmproj file) go where the output layer goes: to the GPU once anything is
offloaded (llama.cpp's mtmd offloads an mmproj unless told not to, and Ollama
puts the projector on its GPU), so a GPU plan counts their bytes in VRAM.

Bytes: a GPU buffer is the sum of its tensors, each padded to the buffer's
alignment (128 on CUDA) and, for quantized rows not a multiple of 512
elements, one extra padded row (``ggml_backend_cuda_buffer_type_get_alloc_size``,
``MATRIX_ROW_PADDING``). With mmap the CPU buffer is the file span from the
first to the last CPU-resident tensor (``get_mapping_range``): a mapping, of
which only the CPU tensors' pages become resident.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass

from yoyu.estimate.types import ALL_LAYERS, RunSettings
from yoyu.machine.types import Machine
from yoyu.models.ggml_types import ggml_type_named
from yoyu.models.spec import ModelSpec, TensorInfo, is_vision_tensor

CPU = "CPU"
# llama.cpp common.h LLM_FFN_EXPS_REGEX: what --n-cpu-moe / --cpu-moe keep on the CPU
_CPU_MOE_PATTERN = re.compile(r"\.ffn_(up|down|gate|gate_up)_(ch|)exps")
RPC_VENDOR = "rpc"  # a GpuInfo that is a llama.cpp rpc-server: its name is host:port
CPU_ALIGNMENT = 32  # TENSOR_ALIGNMENT in ggml-cpu
CUDA_ALIGNMENT = 128  # ggml_backend_cuda_buffer_type_get_alignment
CUDA_ROW_PADDING = 512  # MATRIX_ROW_PADDING in ggml-cuda
_OUTPUT_TENSORS = ("output.", "output_norm.", "cls.", "cls_out.")


@dataclass(frozen=True)
class LayerPlacement:
    """Device name per slot: ``blocks[il]`` for block il, ``output`` for the output layer."""

    blocks: tuple[str, ...]
    output: str
    gpu_names: tuple[str, ...]
    cpu_expert_blocks: int = 0  # blocks whose expert tensors stay on the CPU (--n-cpu-moe)

    def device_of(self, tensor: TensorInfo) -> str:
        if tensor.layer is not None and 0 <= tensor.layer < len(self.blocks):
            if tensor.layer < self.cpu_expert_blocks and moved_by_cpu_moe(tensor.name):
                return CPU
            return self.blocks[tensor.layer]
        if tensor.name.startswith(_OUTPUT_TENSORS) or is_vision_tensor(tensor.name):
            return self.output
        return CPU  # token_embd and other input-side tensors

    def layers_on(self, device: str) -> tuple[int, ...]:
        """Slots placed on ``device``; the output layer is slot ``len(blocks)``."""
        slots = [il for il, name in enumerate(self.blocks) if name == device]
        return tuple(slots + ([len(self.blocks)] if self.output == device else []))


def gpu_device_names(machine: Machine) -> tuple[str, ...]:
    """llama.cpp's device order and names: RPC servers first, in ``--rpc`` order
    (``RPC[host:port]``, as yoyu reads them from the log), then one ``Metal``
    device on Apple Silicon or ``CUDA<i>`` on NVIDIA."""
    rpc = tuple(rpc_device_name(gpu.name) for gpu in machine.gpus if gpu.vendor == RPC_VENDOR)
    local = tuple(gpu for gpu in machine.gpus if gpu.vendor != RPC_VENDOR)
    if not local:
        return rpc
    if machine.apple is not None or all(gpu.vendor == "apple" for gpu in local):
        return (*rpc, "Metal")
    return (*rpc, *(f"CUDA{gpu.index}" for gpu in local))


def rpc_device_name(endpoint: str) -> str:
    """An RPC server as a device: llama.cpp prints ``RPC0[host:port]`` (the number is
    not always the device's), so the endpoint is what names it."""
    return f"RPC[{endpoint}]"


def gpu_layer_count(spec: ModelSpec, settings: RunSettings, machine: Machine) -> int:
    """Slots offloaded: ``-1`` means all ``n_layer + 1``; 0 without a GPU."""
    if not gpu_device_names(machine):
        return 0
    requested = spec.n_layers + 1 if settings.n_gpu_layers == ALL_LAYERS else settings.n_gpu_layers
    return min(requested, spec.n_layers + 1)


def place_layers(spec: ModelSpec, settings: RunSettings, machine: Machine) -> LayerPlacement:
    """Assign every slot (blocks and the output layer) to a device."""
    gpu_names = gpu_device_names(machine)
    n_gpu = gpu_layer_count(spec, settings, machine)
    first_gpu_slot = spec.n_layers + 1 - n_gpu
    splits = _cumulative_splits(settings.tensor_split, machine, len(gpu_names))
    names = []
    for slot in range(spec.n_layers + 1):
        if slot < first_gpu_slot or n_gpu == 0:
            names.append(CPU)
        else:
            share = (slot - first_gpu_slot) / n_gpu
            index = min(bisect.bisect_right(splits, share), len(gpu_names) - 1)
            names.append(gpu_names[index])
    return LayerPlacement(
        blocks=tuple(names[:-1]), output=names[-1], gpu_names=gpu_names,
        cpu_expert_blocks=cpu_expert_blocks(spec, settings),
    )  # fmt: skip


def cpu_expert_blocks(spec: ModelSpec, settings: RunSettings) -> int:
    """Blocks whose MoE experts stay on the CPU (0 for a dense model)."""
    return min(settings.n_cpu_moe, spec.n_layers) if spec.is_moe else 0


def moved_by_cpu_moe(name: str) -> bool:
    """A MoE expert stack that ``--n-cpu-moe`` keeps on the CPU, matched as llama.cpp
    matches it (its biases too; the shared experts and the router stay with the block)."""
    return _CPU_MOE_PATTERN.search(name) is not None


def cpu_expert_layers(placement: LayerPlacement) -> tuple[int, ...]:
    """Blocks placed on a GPU whose expert FFN still runs on the CPU."""
    return tuple(
        il for il, device in enumerate(placement.blocks[: placement.cpu_expert_blocks])
        if device != CPU
    )  # fmt: skip


def _cumulative_splits(shares: tuple[float, ...], machine: Machine, n_gpus: int) -> list[float]:
    """Normalised cumulative shares; by default proportional to free GPU memory."""
    if n_gpus == 0:
        return []
    weights = list(shares[:n_gpus]) if any(shares) else [float(g.free_bytes) for g in machine.gpus]
    weights = (weights + [0.0] * n_gpus)[:n_gpus]
    total = sum(weights) or float(n_gpus)
    if not any(weights):
        weights = [1.0] * n_gpus
    running, cumulative = 0.0, []
    for weight in weights:
        running += weight
        cumulative.append(running / total)
    return cumulative


def padded(n_bytes: int, alignment: int) -> int:
    return (n_bytes + alignment - 1) // alignment * alignment


def cuda_alloc_bytes(tensor: TensorInfo) -> int:
    """One tensor's CUDA allocation: quantized rows get one padding row (MATRIX_ROW_PADDING)."""
    ggml_type = ggml_type_named(tensor.type_name)
    extra = 0
    if ggml_type is not None and ggml_type.block_size > 1 and tensor.shape:
        remainder = tensor.shape[0] % CUDA_ROW_PADDING
        if remainder:
            extra = (CUDA_ROW_PADDING - remainder) // ggml_type.block_size * ggml_type.block_bytes
    return padded(tensor.n_bytes + extra, CUDA_ALIGNMENT)


def device_tensor_bytes(device: str, tensors: Iterable[TensorInfo]) -> int:
    """Allocated bytes of ``tensors`` in one device buffer (alignment and row padding)."""
    if device.startswith("CUDA"):
        return sum(cuda_alloc_bytes(tensor) for tensor in tensors)
    return sum(padded(tensor.n_bytes, CPU_ALIGNMENT) for tensor in tensors)


def tied_output_copy(spec: ModelSpec, placement: LayerPlacement) -> TensorInfo | None:
    """``token_embd`` duplicated on the output GPU when the model has no ``output.weight``."""
    names = {tensor.name for tensor in spec.tensors}
    if "output.weight" in names or placement.output == CPU:
        return None
    return next((t for t in spec.tensors if t.name == "token_embd.weight"), None)


def mapped_span_bytes(cpu_tensors: Iterable[TensorInfo]) -> int:
    """CPU_Mapped buffer: per file, first CPU tensor's offset to the last one's end."""
    ranges: dict[int, tuple[int, int]] = {}
    for tensor in cpu_tensors:
        start, end = ranges.get(tensor.file_index, (tensor.offset, tensor.offset + tensor.n_bytes))
        ranges[tensor.file_index] = (
            min(start, tensor.offset),
            max(end, tensor.offset + tensor.n_bytes),
        )
    return sum(end - start for start, end in ranges.values())
