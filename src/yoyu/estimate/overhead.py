"""Memory a runtime holds beyond the buffers llama.cpp reports.

No llama.cpp log line counts these, yet a process that loads a model pays them:

- CPU: the process itself. Measured on this project's reference machine
  (x86-64 Linux, CPython 3, llama-cpp-python 0.3.36): ``import llama_cpp``
  brings a fresh interpreter to 39.9 MiB RSS; loading a tiny model adds
  about 7 MiB of vocabulary, graph metadata and Python objects beyond the
  reported buffers (``benchmarks/estimate_accuracy.py`` prints the residual
  per configuration). A ``llama-server`` binary is smaller; the figure is
  kept as the conservative one. The CPU matmul scratch buffer, also absent
  from the logs, is added by the estimator (``cpu_matmul_work_bytes``).
- CUDA: the context and cuBLAS/kernel images on each GPU. Ollama reserves
  457 MiB per CUDA or ROCm GPU for it (``cudaMinimumMemory``,
  ``ollama/ollama discover/gpu.go``).
- Metal: Ollama reserves 512 MiB (``metalMinimumMemory``,
  ``discover/gpu_darwin.go``).
"""

from __future__ import annotations

from yoyu.units import MIB

CPU_PROCESS_BASELINE_BYTES = 40 * MIB  # measured RSS of python + llama_cpp import
CPU_LOAD_METADATA_BYTES = 7 * MIB  # measured residual of a load beyond its buffers
CUDA_CONTEXT_BYTES = 457 * MIB  # ollama discover/gpu.go cudaMinimumMemory
METAL_CONTEXT_BYTES = 512 * MIB  # ollama discover/gpu_darwin.go metalMinimumMemory


def runtime_overhead_bytes(device_name: str) -> int:
    """Fixed bytes a device pays for hosting a llama.cpp model, by backend."""
    if device_name == "CPU":
        return CPU_PROCESS_BASELINE_BYTES + CPU_LOAD_METADATA_BYTES
    if device_name.startswith("Metal"):
        return METAL_CONTEXT_BYTES
    return CUDA_CONTEXT_BYTES
