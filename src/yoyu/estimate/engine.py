"""Engine profiles: what the program that runs llama.cpp adds around it.

llama.cpp's buffers (weights, KV, compute, output) are the same whichever
program calls it; the program is not. Measured on this project's reference
machine (x86-64 Linux, 2 cores, CPython 3.11, llama-cpp-python 0.3.36 and
``llama-server`` built from the llama.cpp tree vendored in its sdist), with
the real Gemma 3 270M Q4_K_M (vocabulary 262,144) and generated models of
288 to 262,144 tokens, peak RSS (``VmHWM``) of the engine process:

- Every engine: llama.cpp's vocabulary tables cost about 176 bytes per
  entry once loaded (44 MiB for Gemma 3; 173-174 B measured with both
  servers on a generated 262,144-token model, against a 288-token one).
- ``llama-cpp-python`` (``python -m llama_cpp.server`` under yoyu's
  ``llamacpp_python_server``): the interpreter, FastAPI/uvicorn and the
  shared libraries hold 79.2 MiB with a tiny model after its first
  requests. Its settings have no flag for ``swa_full``, so it always asks
  for the full-size sliding-window cache (2.7x the KV of Gemma 3 at ctx
  4096), and it serves one sequence. With ``logits_all`` (its server's
  default) it keeps an ``n_ctx x n_vocab`` float32 array of every token's
  logits: 1 MiB per token for Gemma 3, 32 GiB at its trained context. yoyu
  starts it with ``logits_all`` off, which only completion ``logprobs`` need.
- ``llama-server`` (under yoyu's ``engine_main`` watcher): 21.7 MiB for the
  server and 11.0 MiB for the watcher with a tiny model. By default it
  keeps up to 8 GiB of prompt cache in host memory (``--cache-ram``) and
  32 context checkpoints per slot for sliding-window models, each a copy
  of the window's cells (7.51 MiB for Gemma 3 270M: 512 cells); yoyu
  starts it with the prompt cache off and ``ctx_checkpoints`` checkpoints
  (default 2), and plans them.

Each profile is plain data. ``backends/`` names the profile of the engine it
starts, and the estimator plans for that name, so ``yoyu plan`` and
``yoyu run`` cannot answer the same question twice with two figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from yoyu.errors import SettingsError
from yoyu.units import MIB

LLAMA_CPP_PYTHON = "llama-cpp-python"
LLAMA_SERVER_NAME = "llama-server"
OLLAMA_NAME = "ollama"
VLLM_NAME = "vllm"
VOCAB_ENTRY_BYTES = 176  # llama.cpp's token tables, per vocabulary entry, measured


@dataclass(frozen=True)
class EngineProfile:
    """What one engine program holds beyond llama.cpp's own buffers, and what it allows."""

    name: str
    program: str  # what runs, in words
    swa_full: bool  # the sliding-window cache it asks for when the settings do not say
    swa_full_settable: bool  # False: it has no switch, ``swa_full`` must equal the above
    max_parallel: int | None  # sequences it can serve at once; None = any
    serving_slots: int  # sequences a served model gets when its settings name none
    process_bytes: int  # resident bytes of the program with no model: runtime, libraries
    vocab_entry_bytes: int  # resident bytes per vocabulary entry: token tables, copies
    has_logits_array: bool  # can keep every token's logits (``logits_all``)
    has_ctx_checkpoints: bool  # keeps sliding-window checkpoints per slot
    prompt_cache: bool  # can keep a host-memory prompt cache
    tensor_overrides: bool  # can keep chosen tensors on the CPU (``--n-cpu-moe``, ``-ot``)


LLAMA_CPP_PYTHON_SERVER = EngineProfile(
    name=LLAMA_CPP_PYTHON,
    program="llama-cpp-python's server (python -m llama_cpp.server)",
    swa_full=True,
    swa_full_settable=False,
    max_parallel=1,
    serving_slots=1,
    process_bytes=82 * MIB,  # 79.2 measured, +2 MiB for what requests allocate
    vocab_entry_bytes=VOCAB_ENTRY_BYTES,
    has_logits_array=True,
    has_ctx_checkpoints=False,
    prompt_cache=True,
    tensor_overrides=False,  # ``Llama`` takes no tensor_buft_overrides
)

LLAMA_SERVER = EngineProfile(
    name=LLAMA_SERVER_NAME,
    program="llama.cpp's llama-server",
    swa_full=False,
    swa_full_settable=True,
    max_parallel=None,
    serving_slots=4,  # llama-server's own default (-np auto): 4 slots, one shared cache
    process_bytes=35 * MIB,  # 32.7 measured, +2 MiB for what requests allocate
    vocab_entry_bytes=VOCAB_ENTRY_BYTES,
    has_logits_array=False,
    has_ctx_checkpoints=True,
    prompt_cache=True,
    tensor_overrides=True,
)

# Ollama's runner is llama.cpp (or its Go port of the same graphs) in a Go process: no
# logits array, a capped sliding-window cache it has no switch for, parallel slots
# (OLLAMA_NUM_PARALLEL). No Ollama binary runs here, so its process size is taken as
# llama-server's measured one: an assumption, stated in every plan made for it.
OLLAMA = EngineProfile(
    name=OLLAMA_NAME,
    program="Ollama's runner (figures of llama-server; not measured here)",
    swa_full=False,
    swa_full_settable=False,
    max_parallel=None,
    serving_slots=1,  # OLLAMA_NUM_PARALLEL as documented now (older releases chose 1 or 4)
    process_bytes=LLAMA_SERVER.process_bytes,
    vocab_entry_bytes=VOCAB_ENTRY_BYTES,
    has_logits_array=False,
    has_ctx_checkpoints=False,
    prompt_cache=False,
    tensor_overrides=False,  # no Modelfile parameter or variable places tensors
)

# vLLM is not llama.cpp: its bytes come from ``yoyu.estimate.vllm`` (a pool it takes at
# start, three processes); this profile only says what the settings may ask of it.
VLLM = EngineProfile(
    name=VLLM_NAME,
    program="vLLM (API server, EngineCore and Worker processes)",
    swa_full=False,
    swa_full_settable=False,
    max_parallel=None,
    serving_slots=1,
    process_bytes=0,  # in yoyu.estimate.vllm.VLLM_PROCESS_BYTES
    vocab_entry_bytes=0,
    has_logits_array=False,
    has_ctx_checkpoints=False,
    prompt_cache=False,  # its prefix cache lives in the KV pool
    tensor_overrides=False,
)

ENGINES: dict[str, EngineProfile] = {
    profile.name: profile for profile in (LLAMA_CPP_PYTHON_SERVER, LLAMA_SERVER, OLLAMA, VLLM)
}


def engine_profile(name: str) -> EngineProfile:
    """The profile called ``name``; a SettingsError naming the known ones otherwise."""
    profile = ENGINES.get(name)
    if profile is None:
        raise SettingsError.from_message(
            "unknown engine {name!r}; yoyu plans for {known}",
            name=name, known=", ".join(sorted(ENGINES)),
        )  # fmt: skip
    return profile
