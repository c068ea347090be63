"""Bytes of a LoRA / QLoRA training step, component by component, on one device.

The components and where each figure comes from:

- base weights: 16-bit (2 bytes a parameter) for LoRA; for QLoRA the block
  projections in NF4 with double quantization, 4 + 8/64 + 32/(64*256) = 4.127
  bits a parameter (Dettmers et al., "QLoRA", 2023, section 3: blocks of 64
  with an 8-bit absmax, itself in blocks of 256 with an fp32 constant), and the
  rest (embeddings, norms, lm_head: bitsandbytes leaves them alone) in fp32, as
  PEFT's ``prepare_model_for_kbit_training`` casts them (for Llama 3 8B that is
  1.05 B parameters, 4.2 GB: more than its 4-bit blocks' 3.5 GB);
- adapters, their gradients, the optimizer's states: ``yoyu.estimate.lora``
  (fp32) and ``OPTIMIZER_STATE_BYTES``;
- activations and logits: ``yoyu.estimate.training_activations``;
- the framework: the process (Python with torch, transformers and peft
  imported) on the host, PyTorch's CPU allocator keeping freed blocks, and the
  CUDA or Metal context on a GPU.

Pure: no torch import. The figures for the host process were measured with the
CPU wheel (``benchmarks/training_memory.py``); a CUDA build maps more libraries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yoyu.estimate.lora import ADAPTER_DTYPE_BYTES, adapter_params, block_linear_params
from yoyu.estimate.overhead import CUDA_CONTEXT_BYTES, METAL_CONTEXT_BYTES
from yoyu.estimate.training_activations import activation_figures, logits_bytes
from yoyu.estimate.training_settings import TrainingSettings
from yoyu.models.spec import ModelSpec
from yoyu.units import MIB

BASE_DTYPE_BYTES = 2
# PEFT's prepare_model_for_kbit_training (the QLoRA recipe's first call) casts every 16-bit
# parameter that is not 4-bit (embeddings, lm_head, norms) to fp32: peft/utils/other.py
QLORA_LEFTOVER_BYTES = 4
NF4_DOUBLE_QUANT_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # QLoRA paper, section 3
# Adam keeps two fp32 moments; bitsandbytes' 8-bit Adam two uint8 moments (plus an fp32
# absmax per 256-value block, 1/32 byte); plain SGD (torch's default, no momentum) none.
OPTIMIZER_STATE_BYTES = {"adamw": 8.0, "adamw8bit": 2.0 + 2 * 4 / 256, "sgd": 0.0}
# Python 3.11 with torch 2.13 (CPU wheel) imported, then transformers 5.25 and peft 0.21:
# peak RSS of ``import`` measured by benchmarks/training_memory.py on Linux x86-64.
TORCH_PROCESS_BYTES = 278 * MIB
TRAINING_LIBRARIES_BYTES = 134 * MIB
# bitsandbytes 0.50, which QLoRA and 8-bit AdamW import (peft imports it whenever installed)
BITSANDBYTES_IMPORT_BYTES = 46 * MIB
CPU_HEAP_FIXED_BYTES = 64 * MIB  # see ``cpu_allocator_slack``
CPU_HEAP_BLOCKS = 2
GLIBC_MMAP_THRESHOLD_MAX = 32 * MIB  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit glibc


@dataclass(frozen=True)
class TrainingMemory:
    """One training step's peak, by component, on the device that trains (bytes)."""

    device: str  # "CPU", "CUDA0", "Metal"
    base_weights_bytes: int
    adapter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    logits_bytes: int
    framework_bytes: int  # on this device: allocator, CUDA/Metal context (the process on CPU)
    host_bytes: int  # the process on the host when the device is a GPU, else 0
    adapter_params: int
    activation_formula: str

    @property
    def device_bytes(self) -> int:
        return (
            self.base_weights_bytes
            + self.adapter_bytes
            + self.gradient_bytes
            + self.optimizer_bytes
            + self.activation_bytes
            + self.logits_bytes
            + self.framework_bytes
        )

    @property
    def total_bytes(self) -> int:
        return self.device_bytes + self.host_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "base_weights_bytes": self.base_weights_bytes,
            "adapter_bytes": self.adapter_bytes,
            "gradient_bytes": self.gradient_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "activation_bytes": self.activation_bytes,
            "logits_bytes": self.logits_bytes,
            "framework_bytes": self.framework_bytes,
            "host_bytes": self.host_bytes,
            "device_bytes": self.device_bytes,
            "total_bytes": self.total_bytes,
            "adapter_params": self.adapter_params,
            "activation_formula": self.activation_formula,
        }


def estimate_training(spec: ModelSpec, settings: TrainingSettings, device: str) -> TrainingMemory:
    """The step's peak on ``device`` ("CPU", "CUDA0", "Metal", ...)."""
    params = adapter_params(spec, settings.targets, settings.rank)
    activations = activation_figures(spec, spec.architecture, settings)
    heap_block = activations.block_bytes_per_token * settings.tokens
    if settings.tokens * spec.n_embd * 4 >= GLIBC_MMAP_THRESHOLD_MAX:
        heap_block = 0  # a block's tensors are mmapped and go back to the OS when freed
    uses_bitsandbytes = settings.method == "qlora" or settings.optimizer == "adamw8bit"
    framework, host = framework_bytes(device, heap_block, uses_bitsandbytes)
    return TrainingMemory(
        device=device,
        base_weights_bytes=base_weights_bytes(spec, settings.method),
        adapter_bytes=params * ADAPTER_DTYPE_BYTES,
        gradient_bytes=params * ADAPTER_DTYPE_BYTES,
        optimizer_bytes=round(params * OPTIMIZER_STATE_BYTES[settings.optimizer]),
        activation_bytes=activations.kept_bytes,
        logits_bytes=logits_bytes(spec, settings),
        framework_bytes=framework,
        host_bytes=host,
        adapter_params=params,
        activation_formula=activations.formula,
    )


def base_weights_bytes(spec: ModelSpec, method: str) -> int:
    """16-bit weights, or QLoRA's NF4 block projections beside fp32 leftovers."""
    if method != "qlora":
        return spec.params_total * BASE_DTYPE_BYTES
    quantized = min(block_linear_params(spec), spec.params_total)
    leftover = spec.params_total - quantized
    return round(quantized * NF4_DOUBLE_QUANT_BITS / 8) + leftover * QLORA_LEFTOVER_BYTES


def framework_bytes(
    device: str, block_bytes: int, uses_bitsandbytes: bool = False
) -> tuple[int, int]:
    """(bytes on the training device, bytes on the host) the framework itself takes."""
    process = TORCH_PROCESS_BYTES + TRAINING_LIBRARIES_BYTES
    process += BITSANDBYTES_IMPORT_BYTES if uses_bitsandbytes else 0
    if device == "CPU":
        return process + cpu_allocator_slack(block_bytes), 0
    context = METAL_CONTEXT_BYTES if device.startswith("Metal") else CUDA_CONTEXT_BYTES
    return context, process


def cpu_allocator_slack(block_bytes: int) -> int:
    """Freed memory the process keeps: PyTorch's CPU allocator is plain malloc, and glibc
    keeps chunks below its mmap threshold (which rises to 32 MiB once a larger tensor is
    freed) instead of returning them. Block-sized tensors (a few MiB) are such chunks:
    ``mallinfo2`` showed 55-175 MiB free in the heap between steps. Fitted on the
    benchmark's eight runs: a fixed part and two blocks' activations of free chunks, none
    once a block's fp32 hidden states reach the threshold (``estimate_training``)."""
    return CPU_HEAP_FIXED_BYTES + CPU_HEAP_BLOCKS * block_bytes
