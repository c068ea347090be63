from __future__ import annotations

import pytest

from yoyu.errors import SettingsError
from yoyu.estimate.types import RunSettings
from yoyu.plan.emit.llama_cpp import (
    engine_load_settings,
    llama_cpp_python_kwargs,
    llama_server_argv,
)


def test_llama_cpp_python_kwargs_carry_every_memory_setting() -> None:
    settings = RunSettings(
        n_ctx=8192, n_batch=1024, n_ubatch=256, n_gpu_layers=-1, type_k="q8_0", type_v="q4_0",
        flash_attn=True, use_mmap=False, tensor_split=(3.0, 1.0),
    )  # fmt: skip
    kwargs = llama_cpp_python_kwargs(settings)
    assert kwargs["n_ctx"] == 8192 and kwargs["n_batch"] == 1024 and kwargs["n_ubatch"] == 256
    assert kwargs["n_gpu_layers"] == -1
    assert (kwargs["type_k"], kwargs["type_v"]) == (8, 2)  # GGML_TYPE_Q8_0, GGML_TYPE_Q4_0
    assert kwargs["flash_attn"] is True and kwargs["use_mmap"] is False
    assert kwargs["tensor_split"] == [3.0, 1.0]
    assert kwargs["swa_full"] is True  # llama-cpp-python's server: always the full SWA cache
    assert kwargs["logits_all"] is False  # stated: its server's own default is true
    assert kwargs["n_outputs_max"] == 1  # one row of logits per ubatch, not 1024
    assert "n_seq_max" not in kwargs
    on_server = llama_cpp_python_kwargs(RunSettings(engine="llama-server"))
    assert on_server["swa_full"] is False  # stated: the library's own default is true


def test_every_token_outputs_reserve_the_whole_batch() -> None:
    assert llama_cpp_python_kwargs(RunSettings(logits_all=True))["n_outputs_max"] == 512
    assert llama_cpp_python_kwargs(RunSettings(embeddings=True))["n_outputs_max"] == 512


def test_parallel_sequences_are_passed_for_the_context_params() -> None:
    slots = RunSettings(n_parallel=4, kv_unified=True, engine="llama-server")
    kwargs = llama_cpp_python_kwargs(slots)
    assert kwargs["n_seq_max"] == 4 and kwargs["kv_unified"] is True
    assert kwargs["n_outputs_max"] == 4


def test_load_settings_carry_each_engines_own_memory_settings() -> None:
    python = engine_load_settings(RunSettings(prompt_cache_mib=64))
    assert python["logits_all"] is False and python["n_outputs_max"] == 1
    assert (python["cache"], python["cache_type"], python["cache_size"]) == (True, "ram", 64 << 20)
    assert "ctx_checkpoints" not in python
    server = engine_load_settings(RunSettings(engine="llama-server", ctx_checkpoints=3))
    assert (server["ctx_checkpoints"], server["cache_ram_mib"]) == (3, 0)
    assert (server["n_seq_max"], server["kv_unified"]) == (1, False)  # -np, always
    assert "logits_all" not in server and "n_outputs_max" not in server
    assert "n_cpu_moe" not in server  # only when asked: the flag turns off pipelining
    experts = engine_load_settings(RunSettings(engine="llama-server", n_cpu_moe=6))
    assert experts["n_cpu_moe"] == 6
    assert "repack" not in server  # llama.cpp's own choice, as planned
    assert engine_load_settings(RunSettings(engine="llama-server", repack=False))["repack"] is False
    with pytest.raises(SettingsError, match="llama-cpp-python setting"):
        RunSettings(engine="llama-server", logits_all=True)


def test_llama_server_argv() -> None:
    argv = llama_server_argv(
        RunSettings(
            n_ctx=4096, n_gpu_layers=20, type_k="q8_0", n_parallel=2, use_mmap=False,
            engine="llama-server",
        ),
        "/m.gguf",
    )  # fmt: skip
    joined = " ".join(argv)
    assert argv[:3] == ["llama-server", "-m", "/m.gguf"]
    for flag in (
        "-c 4096",
        "-b 512",
        "-ub 512",
        "-ngl 20",
        "-ctk q8_0",
        "-ctv f16",
        "-fa off",
        "-np 2",
        "--fit off",
        "--cache-ram 0",
        "--ctx-checkpoints 2",
    ):
        assert flag in joined
    assert "--no-mmap" in argv and "--kv-unified" not in argv and "--swa-full" not in argv
    assert "--n-cpu-moe" not in argv
    experts = llama_server_argv(RunSettings(engine="llama-server", n_cpu_moe=6), "/m")
    assert "--n-cpu-moe 6" in " ".join(experts)
    all_layers = llama_server_argv(
        RunSettings(n_gpu_layers=-1, kv_unified=True, flash_attn=True), "/m"
    )
    assert "-ngl all" in " ".join(all_layers) and "--kv-unified" in all_layers
    assert "-fa on" in " ".join(all_layers)
    assert "--swa-full" in all_layers  # planned for llama-cpp-python: launch what was planned
