"""vLLM's bytes: the KV pool it takes at start (per token from the config, whole blocks),
the weights as stored, and its three processes (plain values; the real server is
compared in tests/real/test_real_vllm.py)."""

from __future__ import annotations

import dataclasses

import pytest

from yoyu.errors import SettingsError
from yoyu.estimate.estimator import estimate_memory
from yoyu.estimate.types import RunSettings
from yoyu.estimate.vllm import (
    CPU_BLOCK_TOKENS,
    CUDA_CONTEXT_BYTES,
    VLLM_PROCESS_BYTES,
    activation_bytes,
    kv_bytes_per_token,
    vllm_pool,
)
from yoyu.machine.presets import load_machine
from yoyu.models.hf_model import read_hf_model
from yoyu.models.spec import ModelSpec
from yoyu.plan.emit.vllm import vllm_command
from yoyu.plan.planner import make_plan
from yoyu.plan.types import PlanRequest
from yoyu.testing.hf_folders import write_llama_folder

GIB = 1024**3
# the shape of the model vLLM was measured with: 4 layers, 2 KV heads of 64, hidden 256
CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 256,
    "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 4096,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}  # fmt: skip


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> ModelSpec:
    return read_hf_model(write_llama_folder(tmp_path_factory.mktemp("hf") / "tiny", CONFIG))


def vllm(**fields: object) -> RunSettings:
    return RunSettings(n_ctx=2048, engine="vllm", **fields)  # type: ignore[arg-type]


def test_a_token_costs_k_and_v_of_every_layer_in_16_bits_or_fp8(spec: ModelSpec) -> None:
    assert (spec.n_layers, spec.n_head_kv, spec.head_dim_k) == (4, 2, 64)
    assert kv_bytes_per_token(spec) == 4 * 2 * 2 * 64 * 2 == 2048
    assert kv_bytes_per_token(spec, "fp8") == 1024


def test_the_cpu_pool_is_the_space_asked_in_whole_blocks_as_vllm_logs_it(
    spec: ModelSpec,
) -> None:
    """vLLM logged "CPU KV cache size: 524,288 tokens, Maximum concurrency for 2,048 tokens
    per request: 256.00x" for this shape with VLLM_CPU_KVCACHE_SPACE=1."""
    pool = vllm_pool(spec, vllm(kv_cache_bytes=GIB), None)
    assert (pool.tokens, pool.kv_bytes, pool.max_concurrency) == (524_288, GIB, 256.0)
    ragged = vllm_pool(spec, vllm(kv_cache_bytes=GIB + 2048 * 100), None)
    assert ragged.tokens == 524_288 and ragged.tokens % CPU_BLOCK_TOKENS == 0
    assert vllm_pool(spec, vllm(kv_cache_bytes=GIB, type_k="q8_0"), None).tokens == 1_048_576


def test_on_a_gpu_the_pool_is_what_utilization_leaves_after_weights_and_activations(
    spec: ModelSpec,
) -> None:
    total = 16 * GIB
    settings = vllm(gpu_memory_utilization=0.5)
    pool = vllm_pool(spec, settings, total)
    left = total // 2 - spec.tensor_bytes - activation_bytes(spec, settings) - CUDA_CONTEXT_BYTES
    assert pool.kv_bytes <= left < pool.kv_bytes + 16 * pool.per_token_bytes
    asked = vllm_pool(spec, vllm(kv_cache_bytes=GIB, gpu_memory_utilization=0.5), total)
    assert asked.kv_bytes == GIB  # --kv-cache-memory-bytes wins over the utilization


def test_the_estimate_holds_three_processes_weights_and_the_pool(spec: ModelSpec) -> None:
    cpu_box = load_machine("linux-cpu-32g")
    estimate = estimate_memory(spec, cpu_box, vllm(kv_cache_bytes=GIB))
    [cpu] = estimate.devices
    assert (cpu.weights_bytes, cpu.kv_bytes) == (spec.tensor_bytes, GIB)
    assert cpu.overhead_bytes == sum(VLLM_PROCESS_BYTES.values())
    assert any("524,288 tokens" in note and "256.00 sequences" in note for note in estimate.notes)
    card = load_machine("linux-rtx5060ti-16g")
    on_gpu = estimate_memory(spec, card, vllm(gpu_memory_utilization=0.5))
    host, device = on_gpu.devices
    assert device.name == "CUDA0" and device.weights_bytes == spec.tensor_bytes
    assert device.kv_bytes > 0 and host.weights_bytes == 0
    assert any("not measured here" in note for note in on_gpu.notes)


def test_a_vllm_plan_emits_the_pool_it_planned_and_listens_on_loopback(
    spec: ModelSpec,
) -> None:
    cpu_box = load_machine("linux-cpu-32g")
    settings = vllm(kv_cache_bytes=GIB)
    plan = make_plan(spec, cpu_box, PlanRequest(settings=settings))
    assert plan.predicted is None  # no speed model for vLLM
    argv = vllm_command(plan, spec, "/models/tiny", cpu_box, GIB).argv
    assert argv[argv.index("--kv-cache-memory-bytes") + 1] == str(GIB)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    slots = make_plan(
        spec, cpu_box, PlanRequest(settings=dataclasses.replace(settings, n_parallel=8))
    )
    slots_argv = vllm_command(slots, spec, "/m", cpu_box, GIB).argv
    assert slots_argv[slots_argv.index("--max-num-seqs") + 1] == "8"
    assert argv[argv.index("--max-num-seqs") + 1] == "1"  # not vLLM's default of 256


def test_vllm_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="share of the GPU"):
        vllm(gpu_memory_utilization=1.5)
    with pytest.raises(SettingsError, match="must be positive"):
        vllm(kv_cache_bytes=0)
