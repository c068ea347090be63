"""CPU_REPACK: the interleaved copy llama.cpp makes of some quantized weights.

On a CPU-only build, matrix weights of some types are repacked at load time
into an interleaved layout for faster kernels (``ggml/src/ggml-cpu/repack.cpp``,
``ggml_repack_get_optimal_repack_type``), into a separate ``CPU_REPACK``
buffer of the same byte size (``get_alloc_size`` is the default ``ggml_nbytes``,
alignment 32). With mmap the original bytes stay inside the ``CPU_Mapped``
span, so a Q4_0 model run on the CPU can nearly double its resident memory.

Which types, per instruction set (llama.cpp 2026, repack.cpp @00d3d1d8):

- x86 AVX2: Q4_0, Q4_K, IQ4_NL, MXFP4 (rows ``ne[1] % 8 == 0``); AVX-512 adds Q2_K;
- ARM NEON with dotprod or i8mm: Q4_0, Q4_K, IQ4_NL, MXFP4 (``% 4`` or ``% 8``),
  and Q5_K, Q6_K, Q8_0 which x86 never repacks.

Which tensors: weights used by a matrix multiplication, 2-D (``MUL_MAT``) or
3-D expert stacks (``MUL_MAT_ID``); never ``token_embd`` (a row lookup),
never norms or biases.

When: ``make_cpu_buft_list`` puts the first device's pinned host buffer type
before the extra buffer types (issue 12481), so CPU weights go there, not to
CPU_REPACK, when a device has one: CUDA and HIP (NVIDIA, AMD) and SYCL /
Vulkan (Intel) do, even at ``n_gpu_layers = 0``. Metal and RPC devices have
none (``get_host_buffer_type = NULL``), so the CPU layers of a Mac's or a
node-split model are repacked: measured with two rpc-servers, Gemma 3 270M at
``-ngl 10`` printed CPU_REPACK 6.68 MiB beside CPU_Mapped 202.39 MiB
(``benchmarks/estimate_accuracy.py``, found by llama-fit-params' figures).
``RunSettings.repack`` overrides the decision.
"""

from __future__ import annotations

from collections.abc import Iterable

from yoyu.estimate.types import RunSettings
from yoyu.estimate.weights import CPU_ALIGNMENT, padded
from yoyu.machine.types import Machine
from yoyu.models.spec import TensorInfo

# type -> rows multiple the kernel needs, per feature set
_X86_AVX2 = {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8}
_X86_AVX512 = {"Q2_K": 8}
_ARM_DOTPROD = {"Q4_0": 4, "Q4_K": 8, "IQ4_NL": 4, "MXFP4": 4, "Q5_K": 8, "Q6_K": 8, "Q8_0": 4}
_ARM_I8MM = {"Q4_0": 4, "Q4_K": 8, "IQ4_NL": 4, "MXFP4": 4, "Q5_K": 8, "Q6_K": 8, "Q8_0": 4}
_DOTPROD_NAMES = frozenset({"dotprod", "asimddp", "feat_dotprod"})
_I8MM_NAMES = frozenset({"i8mm", "feat_i8mm"})


def repack_row_multiples(simd: Iterable[str]) -> dict[str, int]:
    """Types this CPU repacks, with the row count multiple each needs."""
    flags = {flag.lower() for flag in simd}
    types: dict[str, int] = {}
    if "avx2" in flags:
        types.update(_X86_AVX2)
    if "avx2" in flags and "avx512f" in flags:
        types.update(_X86_AVX512)
    if flags & _DOTPROD_NAMES:
        types.update(_ARM_DOTPROD)
    if flags & _I8MM_NAMES:
        types.update(_ARM_I8MM)
    return types


# GPU vendors whose llama.cpp backend offers a pinned host buffer type (CUDA/HIP, SYCL/Vulkan)
PINNED_HOST_VENDORS = frozenset({"nvidia", "amd", "intel"})


def repack_enabled(machine: Machine, settings: RunSettings) -> bool:
    """llama.cpp repacks unless a device's pinned host buffer takes the CPU weights first;
    the setting overrides."""
    if settings.repack is not None:
        return settings.repack
    return not any(gpu.vendor in PINNED_HOST_VENDORS for gpu in machine.gpus)


def is_repackable(tensor: TensorInfo, row_multiples: dict[str, int]) -> bool:
    """A matrix weight of a repacked type with a row count the kernel accepts."""
    multiple = row_multiples.get(tensor.type_name.upper())
    if multiple is None or tensor.name.startswith("token_embd."):
        return False
    if not tensor.name.endswith(".weight") or "norm" in tensor.name:
        return False
    is_matrix = len(tensor.shape) == 2 or (len(tensor.shape) == 3 and "_exps." in tensor.name)
    return is_matrix and tensor.shape[1] % multiple == 0


def repacked_tensors(
    cpu_tensors: Iterable[TensorInfo], machine: Machine, settings: RunSettings
) -> tuple[TensorInfo, ...]:
    """The CPU-resident tensors llama.cpp will copy into CPU_REPACK."""
    if not repack_enabled(machine, settings):
        return ()
    row_multiples = repack_row_multiples(machine.cpu.simd)
    return tuple(tensor for tensor in cpu_tensors if is_repackable(tensor, row_multiples))


def repack_bytes(tensors: Iterable[TensorInfo]) -> int:
    """CPU_REPACK buffer: same bytes as the originals, each aligned to 32."""
    return sum(padded(tensor.n_bytes, CPU_ALIGNMENT) for tensor in tensors)
