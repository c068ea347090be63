"""A first-glance fit check from file size alone, for ``yoyu doctor``.

It ignores the KV cache and compute buffers on purpose: it answers "is this
file even in the right league for this machine" without reading the model.
The planner gives the real answer with every component counted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from yoyu.machine.types import Machine

# Weights filling more than this share of a device leave no room for the KV cache.
_WEIGHTS_SHARE_LIMIT = 0.9


class RoughFit(str, enum.Enum):
    FITS_GPU = "fits on GPU"
    PARTIAL = "partial offload"
    CPU_ONLY = "fits on CPU"
    WONT_FIT = "won't fit"


@dataclass(frozen=True)
class RoughFitResult:
    fit: RoughFit
    model_bytes: int
    gpu_bytes: int  # what the GPUs (or Metal's working set) can hold in total
    ram_available_bytes: int


def rough_fit(model_bytes: int, machine: Machine) -> RoughFitResult:
    """Compare a model's file size with GPU memory and available RAM."""
    gpu_bytes = sum(gpu.total_bytes for gpu in machine.gpus)
    ram_bytes = machine.memory.available_bytes
    if machine.memory.limit_bytes is not None:
        ram_bytes = min(ram_bytes, machine.memory.limit_bytes)
    if gpu_bytes and model_bytes <= gpu_bytes * _WEIGHTS_SHARE_LIMIT:
        fit = RoughFit.FITS_GPU
    elif gpu_bytes and not machine.unified_memory and model_bytes <= (gpu_bytes + ram_bytes) * _WEIGHTS_SHARE_LIMIT:
        fit = RoughFit.PARTIAL
    elif model_bytes <= ram_bytes * _WEIGHTS_SHARE_LIMIT:
        fit = RoughFit.CPU_ONLY
    else:
        fit = RoughFit.WONT_FIT
    return RoughFitResult(fit, model_bytes, gpu_bytes, ram_bytes)
