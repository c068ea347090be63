from __future__ import annotations

from yoyu.backends.llamacpp_log import parse_buffer_sizes
from yoyu.units import MIB

# Lines as llama-cpp-python 0.3.36 (llama.cpp, 2026) printed them loading a
# 4-layer test model, plus CUDA/REPACK/SWA lines in the same format.
RECORDED_LOG = """\
load_tensors: layer   4 assigned to device CPU, is_swa = 0
load_tensors:   CPU_Mapped model buffer size =     9.01 MiB
load_tensors:   CPU_REPACK model buffer size =     4.50 MiB
load_tensors:        CUDA0 model buffer size =  4403.49 MiB
llama_context:        CPU  output buffer size =     0.49 MiB
llama_kv_cache:        CPU KV buffer size =     1.00 MiB
llama_kv_cache: size =    1.00 MiB (  1024 cells,   4 layers,  1/1 seqs), K (f16):    0.50 MiB
llama_kv_cache:        CPU KV buffer size =     0.25 MiB
sched_reserve:        CPU compute buffer size =    20.76 MiB
sched_reserve:      CUDA0 compute buffer size =   258.50 MiB
~llama_context:        CPU compute buffer size is  20.7598 MiB, matches expectation of  20.7598 MiB
"""


def test_buffers_are_summed_by_kind_and_device() -> None:
    buffers = parse_buffer_sizes(RECORDED_LOG)
    assert buffers.device("model", "CPU_Mapped") == round(9.01 * MIB)
    assert buffers.device("model", "CPU_REPACK") == round(4.50 * MIB)
    assert buffers.device("model", "CUDA0") == round(4403.49 * MIB)
    assert buffers.total("kv") == round(1.25 * MIB)  # two caches (full + sliding window)
    assert buffers.device("compute", "CPU") == round(20.76 * MIB)  # not doubled by '~llama_context'
    assert buffers.total("compute") == round((20.76 + 258.50) * MIB)
    assert buffers.device("output", "CPU") == round(0.49 * MIB)


def test_unrelated_text_yields_nothing() -> None:
    buffers = parse_buffer_sizes("llama_kv_cache: size = 1.00 MiB (1024 cells)\nhello\n")
    assert buffers.by_kind == {}
    assert buffers.total("kv") == 0
