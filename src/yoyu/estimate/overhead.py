"""Memory a process holds beyond the buffers llama.cpp reports.

No llama.cpp log line counts these, yet a process that loads a model pays them:

- CPU: the engine program itself and its copy of the vocabulary, per engine
  profile (``yoyu.estimate.engine``, measured figures there). The CPU matmul
  scratch buffer, also absent from the logs, is added by the estimator
  (``cpu_matmul_work_bytes``).
- Engine-side arrays the engine allocates around llama.cpp
  (``engine_side_bytes``): llama-cpp-python's every-token logits array with
  ``logits_all``, llama-server's sliding-window checkpoints, a host prompt
  cache.
- CUDA: the context and cuBLAS/kernel images on each GPU. Ollama reserves
  457 MiB per CUDA or ROCm GPU for it (``cudaMinimumMemory``,
  ``ollama/ollama discover/gpu.go``).
- Metal: Ollama reserves 512 MiB (``metalMinimumMemory``,
  ``discover/gpu_darwin.go``).
"""

from __future__ import annotations

from yoyu.estimate.context import ContextCells
from yoyu.estimate.engine import engine_profile
from yoyu.estimate.kv_cache import swa_window_bytes
from yoyu.estimate.types import RunSettings
from yoyu.models.spec import ModelSpec
from yoyu.units import MIB

CUDA_CONTEXT_BYTES = 457 * MIB  # ollama discover/gpu.go cudaMinimumMemory
METAL_CONTEXT_BYTES = 512 * MIB  # ollama discover/gpu_darwin.go metalMinimumMemory
_FLOAT_BYTES = 4


def process_overhead_bytes(spec: ModelSpec, settings: RunSettings) -> int:
    """The engine program with this model's vocabulary loaded, before any buffer."""
    profile = engine_profile(settings.engine)
    return profile.process_bytes + profile.vocab_entry_bytes * spec.vocab_size


def runtime_overhead_bytes(device_name: str) -> int:
    """Fixed bytes a GPU pays for hosting a llama.cpp model, by backend."""
    if device_name.startswith("Metal"):
        return METAL_CONTEXT_BYTES
    if device_name.startswith("RPC["):
        return 0  # held by the worker's rpc-server process, counted on its node
    return CUDA_CONTEXT_BYTES


def engine_side_bytes(spec: ModelSpec, settings: RunSettings, cells: ContextCells) -> int:
    """Host bytes the engine program allocates around llama.cpp, at their largest."""
    profile = engine_profile(settings.engine)
    logits = 0
    if profile.has_logits_array and settings.logits_all:
        logits = cells.n_ctx * spec.vocab_size * _FLOAT_BYTES  # llama-cpp-python ``scores``
    checkpoints = 0
    if profile.has_ctx_checkpoints and not settings.swa_cache_full:
        per_slot = settings.ctx_checkpoints * swa_window_bytes(spec, settings, cells)
        checkpoints = per_slot * cells.n_seq
    prompt_cache = settings.prompt_cache_mib * MIB if profile.prompt_cache else 0
    return logits + checkpoints + prompt_cache
