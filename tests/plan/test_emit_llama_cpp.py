from __future__ import annotations

from yoyu.estimate.types import RunSettings
from yoyu.plan.emit.llama_cpp import llama_cpp_python_kwargs, llama_server_argv


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
    assert kwargs["swa_full"] is False  # stated: llama-cpp-python's own default is true
    assert "n_seq_max" not in kwargs


def test_parallel_sequences_are_passed_for_the_context_params() -> None:
    kwargs = llama_cpp_python_kwargs(RunSettings(n_parallel=4, kv_unified=True))
    assert kwargs["n_seq_max"] == 4 and kwargs["kv_unified"] is True


def test_llama_server_argv() -> None:
    argv = llama_server_argv(
        RunSettings(n_ctx=4096, n_gpu_layers=20, type_k="q8_0", n_parallel=2, use_mmap=False),
        "/m.gguf",
    )
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
    ):
        assert flag in joined
    assert "--no-mmap" in argv and "--kv-unified" not in argv
    all_layers = llama_server_argv(
        RunSettings(n_gpu_layers=-1, kv_unified=True, flash_attn=True), "/m"
    )
    assert "-ngl all" in " ".join(all_layers) and "--kv-unified" in all_layers
    assert "-fa on" in " ".join(all_layers)
