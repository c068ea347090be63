"""KV cache and context rules, with expectations computed by hand from llama.cpp's rules."""

from __future__ import annotations

import dataclasses

import pytest

from yoyu.errors import SettingsError
from yoyu.estimate.context import resolve_context
from yoyu.estimate.kv_cache import kv_layer_bytes
from yoyu.estimate.types import RunSettings
from yoyu.models.spec import MlaDims, ModelSpec

MIB = 1024**2


def spec_of(**fields: object) -> ModelSpec:
    base = ModelSpec(
        name="t", architecture="llama", format="gguf", paths=(), file_bytes=0, quantization=None,
        n_layers=32, n_embd=4096, n_head=32, n_head_kv=8, head_dim_k=128, head_dim_v=128,
        n_ff=14336, vocab_size=128256, context_length=131072, params_total=0, params_active=0,
        tensor_bytes=0, layer_bytes=(), nonrepeating_bytes=0, type_bytes={},
    )  # fmt: skip
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def kv_total(spec: ModelSpec, settings: RunSettings) -> int:
    return sum(kv_layer_bytes(spec, settings, resolve_context(spec, settings)))


def test_llama3_8b_gqa_at_8192_is_1_gib_not_the_full_attention_4_gib() -> None:
    spec = spec_of()
    # 2 (K,V) x 32 layers x 8192 cells x 8 kv heads x 128 x 2 bytes = 1 GiB
    assert kv_total(spec, RunSettings(n_ctx=8192)) == 1024 * MIB
    naive = 2 * 32 * 8192 * 4096 * 2  # peers' n_embd-wide formula: 4x too much
    assert kv_total(spec, RunSettings(n_ctx=8192)) * 4 == naive


def test_context_is_padded_to_256_and_zero_means_trained_context() -> None:
    spec = spec_of(context_length=131072)
    assert resolve_context(spec, RunSettings(n_ctx=1000)).n_ctx == 1024
    assert resolve_context(spec, RunSettings(n_ctx=0)).n_ctx == 131072
    # sized at the requested context, not the model's maximum (a peer mistake)
    assert kv_total(spec, RunSettings(n_ctx=4096)) * 32 == kv_total(spec, RunSettings(n_ctx=0))


def test_qwen3_head_dim_comes_from_key_length_not_embd_over_heads() -> None:
    # Qwen3-0.6B: n_embd 1024 / 16 heads = 64, but its head_dim is 128
    spec = spec_of(n_layers=28, n_embd=1024, n_head=16, n_head_kv=8, head_dim_k=128, head_dim_v=128)
    assert kv_total(spec, RunSettings(n_ctx=4096)) == 2 * 28 * 4096 * 8 * 128 * 2
    assert kv_total(spec, RunSettings(n_ctx=4096)) == 2 * kv_total(
        dataclasses.replace(spec, head_dim_k=64, head_dim_v=64), RunSettings(n_ctx=4096)
    )


def test_gemma2_sliding_layers_are_capped_at_the_window() -> None:
    spec = spec_of(
        architecture="gemma2", n_layers=4, n_head=8, n_head_kv=4, head_dim_k=256, head_dim_v=256,
        sliding_window=4096, swa_layers=(0, 2),
    )  # fmt: skip
    settings = RunSettings(n_ctx=32768, engine="llama-server")  # its default: a capped cache
    cells = resolve_context(spec, settings)
    assert cells.swa_cells == 4096 + 512  # pad(4096 + n_ubatch, 256)
    per_cell = 2 * 4 * 256 * 2  # K+V, 4 kv heads x 256, f16
    expected = 2 * 32768 * per_cell + 2 * 4608 * per_cell
    assert kv_total(spec, settings) == expected
    assert kv_total(spec, dataclasses.replace(settings, swa_full=True)) == 4 * 32768 * per_cell
    # llama-cpp-python's server has no switch: it always asks for the full-size cache
    python_server = dataclasses.replace(settings, engine="llama-cpp-python")
    assert kv_total(spec, python_server) == 4 * 32768 * per_cell
    with pytest.raises(SettingsError, match="no switch"):
        dataclasses.replace(python_server, swa_full=False)


def test_mla_caches_the_latent_only_without_v() -> None:
    # DeepSeek-V3: 61 layers, cache width 576 (512 latent + 64 rope), one "kv head"
    mla = MlaDims(
        kv_lora_rank=512, q_lora_rank=1536, rope_dim=64, key_length_mla=192, value_length_mla=128
    )
    spec = spec_of(n_layers=61, n_head=128, n_head_kv=1, head_dim_k=576, head_dim_v=512, mla=mla)
    assert kv_total(spec, RunSettings(n_ctx=4096)) == 61 * 4096 * 576 * 2


def test_quantized_kv_types_use_block_sizes() -> None:
    spec = spec_of()
    q8 = RunSettings(n_ctx=8192, type_k="q8_0", type_v="q8_0", flash_attn=True)
    q4 = RunSettings(n_ctx=8192, type_k="q4_0", type_v="q4_0", flash_attn=True)
    assert kv_total(spec, q8) == 1024 * MIB * 34 // 64  # 34 bytes per 32 values vs 64 for f16
    assert kv_total(spec, q4) == 1024 * MIB * 18 // 64


def test_quantized_v_without_flash_attention_is_refused_like_llama_cpp() -> None:
    with pytest.raises(SettingsError, match="flash attention"):
        kv_total(spec_of(), RunSettings(n_ctx=4096, type_v="q8_0"))
    # a quantized K alone is fine without it
    assert kv_total(spec_of(), RunSettings(n_ctx=4096, type_k="q8_0")) > 0


def test_parallel_sequences_split_the_context_unless_unified() -> None:
    spec = spec_of(context_length=8192)
    slots = RunSettings(n_ctx=5000, n_parallel=4, engine="llama-server")
    split = resolve_context(spec, slots)
    assert (split.n_ctx_seq, split.n_stream, split.n_ctx) == (1280, 4, 5120)  # pad(5120/4, 256)
    unified = resolve_context(spec, dataclasses.replace(slots, kv_unified=True))
    assert (unified.n_ctx_seq, unified.n_stream, unified.n_ctx) == (5120, 1, 5120)


def test_one_sequence_engines_refuse_parallel_slots() -> None:
    with pytest.raises(SettingsError, match="1 sequence at a time, not 4; use the llama-server"):
        RunSettings(n_parallel=4, engine="llama-cpp-python")
    with pytest.raises(SettingsError, match="unknown engine 'sglang'"):
        RunSettings(engine="sglang")


def test_layers_without_kv_heads_have_no_cache() -> None:
    spec = spec_of(n_layers=4, n_head_kv_layers=(8, 0, 8, 0))
    sizes = kv_layer_bytes(
        spec, RunSettings(n_ctx=256), resolve_context(spec, RunSettings(n_ctx=256))
    )
    assert sizes[1] == sizes[3] == 0
    assert sizes[0] == 2 * 256 * 8 * 128 * 2
