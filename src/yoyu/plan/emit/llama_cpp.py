"""``RunSettings`` as llama-cpp-python ``Llama(**kwargs)`` and ``llama-server`` flags.

Names and defaults: llama-cpp-python ``llama_cpp/llama.py`` (``Llama.__init__``:
``type_k``/``type_v`` take ggml type ids, ``flash_attn`` is a bool that maps to
enabled/disabled, never auto) and llama.cpp ``common/arg.cpp`` (``-c``, ``-b``,
``-ub``, ``-ngl``, ``-ctk``, ``-ctv``, ``-fa on|off``, ``-np``, ``--kv-unified``,
``--no-mmap``, ``-ts``, ``--n-cpu-moe``, ``--swa-full``, ``--no-repack``, ``-nkvo``).

Every setting that changes memory is written out explicitly, even at its
default, because the two front ends disagree on defaults: llama-cpp-python
keeps llama.cpp's library default ``swa_full = true`` while llama-server
turns it off, llama-server's ``-fa`` defaults to auto, its ``--fit`` (on by
default) changes unset settings to the free memory it finds, and
llama-cpp-python's server turns ``logits_all`` on. ``n_seq_max`` and
``kv_unified`` and ``n_outputs_max`` are not ``Llama`` arguments; they are
returned for callers that set them on the context parameters (yoyu's
llama-cpp-python server and its measuring child do).

``engine_load_settings`` is what yoyu's managed backend loads a model with:
the ``Llama`` names plus the engine-side settings of the planned engine
(``logits_all`` and the RAM prompt cache for llama-cpp-python's server,
``ctx_checkpoints`` and ``cache_ram_mib`` for llama-server), so the engine
yoyu starts allocates what the plan counted.
"""

from __future__ import annotations

from typing import Any

from yoyu.estimate.compute_buffer import n_outputs_max
from yoyu.estimate.engine import LLAMA_SERVER_NAME, VLLM_NAME
from yoyu.estimate.types import ALL_LAYERS, RunSettings
from yoyu.estimate.weights import RPC_VENDOR
from yoyu.machine.types import Machine
from yoyu.units import MIB

# ggml.h enum ggml_type ids of the KV cache types
GGML_TYPE_IDS: dict[str, int] = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "q8_0": 8,
    "iq4_nl": 20,
    "bf16": 30,
}
_LLAMA_CPP_PYTHON_ALL_LAYERS = -1  # Llama() maps -1 to 0x7FFFFFFF


def llama_cpp_python_kwargs(settings: RunSettings) -> dict[str, Any]:
    """Keyword arguments for ``llama_cpp.Llama`` that reproduce ``settings``."""
    kwargs: dict[str, Any] = {
        "n_ctx": settings.n_ctx,
        "n_batch": settings.n_batch,
        "n_ubatch": settings.n_ubatch,
        "n_gpu_layers": settings.n_gpu_layers
        if settings.n_gpu_layers != ALL_LAYERS
        else _LLAMA_CPP_PYTHON_ALL_LAYERS,
        "type_k": GGML_TYPE_IDS[settings.type_k],
        "type_v": GGML_TYPE_IDS[settings.type_v],
        "flash_attn": settings.flash_attn,
        "use_mmap": settings.use_mmap,
        "offload_kqv": settings.offload_kqv,
        "swa_full": settings.swa_cache_full,
        "embedding": settings.embeddings,
        "logits_all": settings.logits_all,
        "n_outputs_max": n_outputs_max(settings),
    }
    if settings.tensor_split:
        kwargs["tensor_split"] = list(settings.tensor_split)
    if settings.n_parallel != 1 or settings.kv_unified:
        kwargs["n_seq_max"] = settings.n_parallel
        kwargs["kv_unified"] = settings.kv_unified
    return kwargs


def rpc_endpoints(machine: Machine) -> list[str]:
    """llama-server's ``--rpc`` list for ``machine``: its RPC devices (``yoyu node``
    workers) in the order the plan placed layers on them."""
    return [gpu.name for gpu in machine.gpus if gpu.vendor == RPC_VENDOR]


def engine_load_settings(settings: RunSettings) -> dict[str, Any]:
    """The managed backend's load settings for the engine ``settings`` are planned for."""
    if settings.engine == VLLM_NAME:
        return vllm_load_settings(settings)
    kwargs = llama_cpp_python_kwargs(settings)
    if settings.repack is False:  # llama-cpp-python's server refuses it: it always repacks
        kwargs["repack"] = False
    if settings.engine == LLAMA_SERVER_NAME:
        del kwargs["logits_all"]  # llama-server keeps no such array; the settings refuse True
        del kwargs["n_outputs_max"]  # llama-server derives the same from -np and --embeddings
        # Always: without -np llama-server picks 4 slots and a unified cache by itself.
        kwargs |= {"n_seq_max": settings.n_parallel, "kv_unified": settings.kv_unified}
        kwargs["ctx_checkpoints"] = settings.ctx_checkpoints
        kwargs["cache_ram_mib"] = settings.prompt_cache_mib
        if settings.n_cpu_moe:
            kwargs["n_cpu_moe"] = settings.n_cpu_moe
    elif settings.prompt_cache_mib:
        kwargs |= {
            "cache": True,
            "cache_type": "ram",
            "cache_size": settings.prompt_cache_mib * MIB,
        }
    return kwargs


def vllm_load_settings(settings: RunSettings) -> dict[str, Any]:
    """vLLM's: the context, the slots, the KV pool in bytes as planned, eager mode (its
    torch.compile warm-up adds a minute or more to every start on a CPU)."""
    load: dict[str, Any] = {
        "max_model_len": settings.n_ctx, "max_num_seqs": settings.n_parallel,
        "enforce_eager": True,
    }  # fmt: skip
    if settings.kv_cache_bytes is not None:
        load["kv_cache_memory_bytes"] = settings.kv_cache_bytes
    if settings.type_k not in ("f16", "bf16", "f32"):
        load["kv_cache_dtype"] = "fp8"  # the nearest vLLM has
    return load


def llama_server_argv(
    settings: RunSettings, model_path: str, binary: str = "llama-server"
) -> list[str]:
    """A ``llama-server`` command line that reproduces ``settings``."""
    argv = [binary, "-m", model_path, "-c", str(settings.n_ctx), "-b", str(settings.n_batch)]
    argv += ["-ub", str(settings.n_ubatch), "-ngl", _server_gpu_layers(settings.n_gpu_layers)]
    argv += ["-ctk", settings.type_k, "-ctv", settings.type_v]
    argv += ["-fa", "on" if settings.flash_attn else "off", "-np", str(settings.n_parallel)]
    argv += ["--fit", "off", "--cache-ram", str(settings.prompt_cache_mib)]
    argv += ["--ctx-checkpoints", str(settings.ctx_checkpoints)]
    if settings.kv_unified:
        argv.append("--kv-unified")
    if not settings.use_mmap:
        argv.append("--no-mmap")
    if settings.tensor_split:
        argv += ["-ts", ",".join(f"{share:g}" for share in settings.tensor_split)]
    if settings.n_cpu_moe:
        argv += ["--n-cpu-moe", str(settings.n_cpu_moe)]
    if settings.swa_cache_full:
        argv.append("--swa-full")
    if settings.repack is False:
        argv.append("--no-repack")
    if not settings.offload_kqv:
        argv.append("-nkvo")
    if settings.embeddings:
        argv.append("--embeddings")
    return argv


def _server_gpu_layers(n_gpu_layers: int) -> str:
    return "all" if n_gpu_layers == ALL_LAYERS else str(n_gpu_layers)
