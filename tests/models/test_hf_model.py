"""Hugging Face folders: config.json per family (values copied from each model's own
config.json on huggingface.co, URL beside it), tiny real checkpoints written with the
``safetensors`` package, an MLX 4-bit folder and the broken cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from yoyu.errors import ModelFileError
from yoyu.models.hf_config import parse_hf_config
from yoyu.models.hf_model import read_hf_model

# https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/blob/main/config.json
LLAMA_3_1_8B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
# https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json
MISTRAL_7B_V01 = {
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "max_position_embeddings": 32768,
    "sliding_window": 4096,
}
# https://huggingface.co/Qwen/Qwen2.5-32B-Instruct/blob/main/config.json
QWEN2_5_32B = {
    "model_type": "qwen2",
    "hidden_size": 5120,
    "intermediate_size": 27648,
    "num_hidden_layers": 64,
    "num_attention_heads": 40,
    "num_key_value_heads": 8,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "sliding_window": 131072,
    "use_sliding_window": False,
    "max_window_layers": 70,
}
# https://huggingface.co/Qwen/Qwen3-32B/blob/main/config.json
QWEN3_32B = {
    "model_type": "qwen3",
    "hidden_size": 5120,
    "intermediate_size": 25600,
    "num_hidden_layers": 64,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "sliding_window": None,
    "use_sliding_window": False,
}
# https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json
QWEN3_30B_A3B = {
    "model_type": "qwen3_moe",
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_hidden_layers": 48,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
}
# https://huggingface.co/Qwen/Qwen1.5-MoE-A2.7B/blob/main/config.json
QWEN1_5_MOE = {
    "model_type": "qwen2_moe",
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "moe_intermediate_size": 1408,
    "shared_expert_intermediate_size": 5632,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "num_experts": 60,
    "num_experts_per_tok": 4,
    "vocab_size": 151936,
    "max_position_embeddings": 8192,
}
# https://huggingface.co/mistralai/Mixtral-8x7B-Instruct-v0.1/blob/main/config.json
MIXTRAL_8X7B = {
    "model_type": "mixtral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "vocab_size": 32000,
    "max_position_embeddings": 32768,
    "sliding_window": None,
}
# https://huggingface.co/google/gemma-2-27b-it/blob/main/config.json
GEMMA_2_27B = {
    "model_type": "gemma2",
    "hidden_size": 4608,
    "intermediate_size": 36864,
    "num_hidden_layers": 46,
    "num_attention_heads": 32,
    "num_key_value_heads": 16,
    "head_dim": 128,
    "vocab_size": 256000,
    "max_position_embeddings": 8192,
    "sliding_window": 4096,
    "query_pre_attn_scalar": 144,
}
# https://huggingface.co/google/gemma-3-27b-it/blob/main/config.json (text_config omits
# vocab_size, context and the layer pattern: Gemma3TextConfig's defaults apply)
GEMMA_3_27B = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "model_type": "gemma3",
    "text_config": {
        "model_type": "gemma3_text",
        "hidden_size": 5376,
        "intermediate_size": 21504,
        "num_hidden_layers": 62,
        "num_attention_heads": 32,
        "num_key_value_heads": 16,
        "head_dim": 128,
        "sliding_window": 1024,
        "query_pre_attn_scalar": 168,
    },
    "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152},
}
# https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json
DEEPSEEK_V3 = {
    "model_type": "deepseek_v3",
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "first_k_dense_replace": 3,
    "moe_layer_freq": 1,
    "kv_lora_rank": 512,
    "q_lora_rank": 1536,
    "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 128,
    "v_head_dim": 128,
    "vocab_size": 129280,
    "max_position_embeddings": 163840,
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8"},
}
# https://huggingface.co/moonshotai/Kimi-K2-Instruct/blob/main/config.json
KIMI_K2 = {
    **DEEPSEEK_V3,
    "model_type": "kimi_k2",
    "num_attention_heads": 64,
    "num_key_value_heads": 64,
    "n_routed_experts": 384,
    "first_k_dense_replace": 1,
    "vocab_size": 163840,
    "max_position_embeddings": 131072,
}
# https://huggingface.co/openai/gpt-oss-20b/blob/main/config.json
GPT_OSS_20B = {
    "model_type": "gpt_oss",
    "hidden_size": 2880,
    "intermediate_size": 2880,
    "num_hidden_layers": 24,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "num_local_experts": 32,
    "num_experts_per_tok": 4,
    "experts_per_token": 4,
    "vocab_size": 201088,
    "max_position_embeddings": 131072,
    "sliding_window": 128,
    "layer_types": ["sliding_attention", "full_attention"] * 12,
    "quantization_config": {"quant_method": "mxfp4"},
}
# https://huggingface.co/microsoft/Phi-3-mini-4k-instruct/blob/main/config.json
PHI_3_MINI = {
    "model_type": "phi3",
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32064,
    "max_position_embeddings": 4096,
    "sliding_window": 2047,
}


def test_llama_defaults_head_dim_to_hidden_over_heads() -> None:
    arch = parse_hf_config(LLAMA_3_1_8B, "llama")
    assert arch.architecture == "llama"
    assert (arch.n_layers, arch.n_embd, arch.n_head, arch.n_head_kv) == (32, 4096, 32, 8)
    assert (arch.head_dim_k, arch.head_dim_v) == (128, 128)
    assert (arch.n_ff, arch.vocab_size, arch.context_length) == (14336, 128256, 131072)
    assert arch.n_experts == 0
    assert arch.mla is None
    assert arch.sliding_window is None


def test_qwen3_head_dim_comes_from_the_config_not_hidden_over_heads() -> None:
    arch = parse_hf_config(QWEN3_32B, "qwen3")
    assert 5120 // 64 == 80  # what a reader that ignores head_dim would report
    assert (arch.head_dim_k, arch.head_dim_v) == (128, 128)
    assert arch.architecture == "qwen3"


@pytest.mark.parametrize(
    "config",
    [MISTRAL_7B_V01, QWEN2_5_32B, PHI_3_MINI],
    ids=["mistral-window-4096", "qwen2-window-switched-off", "phi3-window-2047"],
)
def test_windows_llama_cpp_does_not_build_are_not_reported(config: dict[str, Any]) -> None:
    arch = parse_hf_config(config, "config.json")
    assert arch.sliding_window is None
    assert arch.swa_layers == ()


def test_mistral_and_mixtral_map_to_llamas_gguf_architecture() -> None:
    assert parse_hf_config(MISTRAL_7B_V01, "m").architecture == "llama"
    mixtral = parse_hf_config(MIXTRAL_8X7B, "mixtral")
    assert mixtral.architecture == "llama"
    assert (mixtral.n_experts, mixtral.n_experts_used) == (8, 2)
    assert mixtral.expert_ff_length == 14336
    assert mixtral.n_experts_shared == 0


def test_qwen3_moe_experts() -> None:
    arch = parse_hf_config(QWEN3_30B_A3B, "qwen3_moe")
    assert arch.architecture == "qwen3moe"
    assert (arch.n_experts, arch.n_experts_used, arch.expert_ff_length) == (128, 8, 768)
    assert arch.head_dim_k == 128 != 2048 // 32
    assert arch.dense_layers == ()


def test_qwen2_moe_shared_expert() -> None:
    arch = parse_hf_config(QWEN1_5_MOE, "qwen2_moe")
    assert arch.architecture == "qwen2moe"
    assert (arch.n_experts, arch.n_experts_used, arch.n_experts_shared) == (60, 4, 1)
    assert arch.shared_expert_ff_length == 5632
    assert arch.expert_ff_length == 1408


def test_gemma2_slides_on_even_layers() -> None:
    arch = parse_hf_config(GEMMA_2_27B, "gemma2")
    assert arch.sliding_window == 4096
    assert arch.swa_layers == tuple(range(0, 46, 2))
    assert arch.tie_word_embeddings is True
    assert arch.head_dim_k == 128 != 4608 // 32


def test_gemma3_reads_text_config_and_its_defaults() -> None:
    arch = parse_hf_config(GEMMA_3_27B, "gemma3")
    assert arch.architecture == "gemma3"
    assert (arch.n_layers, arch.n_embd, arch.head_dim_k) == (62, 5376, 128)
    assert arch.vocab_size == 262208
    assert arch.context_length == 131072
    assert arch.sliding_window == 1024
    full_layers = [i for i in range(62) if i not in arch.swa_layers]
    assert full_layers == [5, 11, 17, 23, 29, 35, 41, 47, 53, 59]


def test_gemma3_explicit_pattern_and_layer_types_win() -> None:
    text_config: dict[str, Any] = GEMMA_3_27B["text_config"]  # type: ignore[assignment]
    text = {**text_config, "num_hidden_layers": 8, "sliding_window_pattern": 4}
    assert parse_hf_config({**GEMMA_3_27B, "text_config": text}, "g").swa_layers == (
        0,
        1,
        2,
        4,
        5,
        6,
    )
    typed = {**text, "layer_types": ["full_attention"] * 7 + ["sliding_attention"]}
    assert parse_hf_config({**GEMMA_3_27B, "text_config": typed}, "g").swa_layers == (7,)


def test_deepseek_v3_mla_and_dense_prefix() -> None:
    arch = parse_hf_config(DEEPSEEK_V3, "deepseek_v3")
    assert arch.architecture == "deepseek2"
    assert arch.mla is not None
    assert (arch.mla.kv_lora_rank, arch.mla.q_lora_rank, arch.mla.rope_dim) == (512, 1536, 64)
    assert (arch.mla.key_length_mla, arch.mla.value_length_mla) == (192, 128)
    assert (arch.head_dim_k, arch.head_dim_v) == (192, 128)
    assert (arch.n_experts, arch.n_experts_used, arch.n_experts_shared) == (256, 8, 1)
    assert arch.expert_ff_length == 2048
    assert arch.dense_layers == (0, 1, 2)
    assert arch.quant_method == "fp8"


def test_kimi_k2_is_deepseek_shaped() -> None:
    arch = parse_hf_config(KIMI_K2, "kimi_k2")
    assert arch.architecture == "deepseek2"
    assert (arch.n_head, arch.n_experts, arch.dense_layers) == (64, 384, (0,))
    assert arch.vocab_size == 163840


def test_gpt_oss_layer_types_and_head_dim() -> None:
    arch = parse_hf_config(GPT_OSS_20B, "gpt_oss")
    assert arch.architecture == "gpt-oss"
    assert (arch.head_dim_k, arch.n_head * arch.head_dim_k, arch.n_embd) == (64, 4096, 2880)
    assert arch.sliding_window == 128
    assert arch.swa_layers == tuple(range(0, 24, 2))
    assert (arch.n_experts, arch.n_experts_used, arch.expert_ff_length) == (32, 4, 2880)
    assert arch.quant_method == "mxfp4"


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({**LLAMA_3_1_8B, "hidden_size": None}, "'hidden_size' is missing"),
        ({**LLAMA_3_1_8B, "num_hidden_layers": "32"}, "'num_hidden_layers' must be"),
        ({**LLAMA_3_1_8B, "quantization": {"bits": "4"}}, "quantization block"),
    ],
)
def test_bad_configs_name_the_key(config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ModelFileError, match=fragment):
        parse_hf_config(config, "some/config.json")


# --- whole folders --------------------------------------------------------------------

TINY_CONFIG = {
    "model_type": "llama",
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 50,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
}


def tiny_llama_arrays(dtype: type[np.floating[Any]] = np.float16) -> dict[str, np.ndarray]:
    embd, ff, kv = 16, 32, 8
    arrays = {
        "model.embed_tokens.weight": np.ones((50, embd), dtype),
        "lm_head.weight": np.ones((50, embd), dtype),
        "model.norm.weight": np.ones((embd,), np.float32),
    }
    for layer in range(2):
        prefix = f"model.layers.{layer}."
        arrays |= {
            prefix + "self_attn.q_proj.weight": np.ones((embd, embd), dtype),
            prefix + "self_attn.k_proj.weight": np.ones((kv, embd), dtype),
            prefix + "self_attn.v_proj.weight": np.ones((kv, embd), dtype),
            prefix + "self_attn.o_proj.weight": np.ones((embd, embd), dtype),
            prefix + "mlp.gate_proj.weight": np.ones((ff, embd), dtype),
            prefix + "mlp.up_proj.weight": np.ones((ff, embd), dtype),
            prefix + "mlp.down_proj.weight": np.ones((embd, ff), dtype),
            prefix + "input_layernorm.weight": np.ones((embd,), np.float32),
        }
    return arrays


def write_folder(folder: Path, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    save_file(arrays, str(folder / "model.safetensors"))
    return folder


def test_tiny_folder_figures_match_what_was_written(tmp_path: Path) -> None:
    arrays = tiny_llama_arrays()
    folder = write_folder(tmp_path / "tiny-llama", TINY_CONFIG, arrays)

    spec = read_hf_model(folder)

    def layer_bytes(layer: int) -> int:
        prefix = f"model.layers.{layer}."
        return sum(a.nbytes for name, a in arrays.items() if name.startswith(prefix))

    assert (spec.name, spec.format, spec.architecture) == ("tiny-llama", "safetensors", "llama")
    assert spec.params_total == spec.params_active == sum(a.size for a in arrays.values())
    assert spec.layer_bytes == (layer_bytes(0), layer_bytes(1))
    non_repeating = ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight")
    assert spec.nonrepeating_bytes == sum(arrays[name].nbytes for name in non_repeating)
    assert spec.tensor_bytes == sum(a.nbytes for a in arrays.values())
    assert spec.file_bytes == (folder / "model.safetensors").stat().st_size
    assert spec.quantization == "F16"
    assert spec.paths == (str(folder / "model.safetensors"),)
    assert (spec.n_head, spec.n_head_kv, spec.head_dim_k) == (4, 2, 4)


def test_sharded_folder_through_the_index(tmp_path: Path) -> None:
    arrays = tiny_llama_arrays()
    names = sorted(arrays)
    first, second = names[: len(names) // 2], names[len(names) // 2 :]
    tmp_path.joinpath("config.json").write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    save_file({n: arrays[n] for n in first}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({n: arrays[n] for n in second}, str(tmp_path / "model-00002-of-00002.safetensors"))
    weight_map = dict.fromkeys(first, "model-00001-of-00002.safetensors")
    weight_map |= dict.fromkeys(second, "model-00002-of-00002.safetensors")
    index = json.dumps({"weight_map": weight_map})
    (tmp_path / "model.safetensors.index.json").write_text(index, encoding="utf-8")

    spec = read_hf_model(tmp_path)

    assert len(spec.paths) == 2
    assert spec.tensor_bytes == sum(a.nbytes for a in arrays.values())
    assert {t.file_index for t in spec.tensors if t.name in second} == {1}


def test_hf_cache_snapshot_is_named_org_slash_repo(tmp_path: Path) -> None:
    snapshot = tmp_path / "models--Qwen--Qwen3-8B" / "snapshots" / "0123abcd"
    write_folder(snapshot, TINY_CONFIG, tiny_llama_arrays())
    assert read_hf_model(snapshot).name == "Qwen/Qwen3-8B"


def test_mlx_4bit_folder_counts_packed_weights(tmp_path: Path) -> None:
    """mlx-lm layout: a quantized Linear stores weight (U32, 32/bits values each), scales
    and biases (one per group of 64); down_proj is overridden to 8 bits."""
    embd, ff, group = 64, 128, 64

    def quantized(prefix: str, rows: int, cols: int, bits: int) -> dict[str, np.ndarray]:
        return {
            f"{prefix}.weight": np.zeros((rows, cols * bits // 32), np.uint32),
            f"{prefix}.scales": np.ones((rows, cols // group), np.float16),
            f"{prefix}.biases": np.zeros((rows, cols // group), np.float16),
        }

    arrays = quantized("model.embed_tokens", 50, embd, 4)
    arrays |= quantized("model.layers.0.mlp.gate_proj", ff, embd, 4)
    arrays |= quantized("model.layers.0.mlp.down_proj", embd, ff, 8)
    arrays["model.layers.0.input_layernorm.weight"] = np.ones((embd,), np.float16)
    config = {
        **TINY_CONFIG,
        "hidden_size": embd,
        "intermediate_size": ff,
        "num_hidden_layers": 1,
        "tie_word_embeddings": True,
        "quantization": {
            "group_size": group,
            "bits": 4,
            "model.layers.0.mlp.down_proj": {"group_size": group, "bits": 8},
        },
    }
    spec = read_hf_model(write_folder(tmp_path / "mlx-4bit", config, arrays))

    logical = 50 * embd + ff * embd + embd * ff + embd
    assert spec.params_total == logical
    assert spec.quantization == "4-bit (MLX)"
    assert spec.format == "mlx"
    assert spec.tensor_bytes == sum(a.nbytes for a in arrays.values())
    assert spec.type_bytes["U32"] == sum(a.nbytes for a in arrays.values() if a.dtype == np.uint32)


def test_gpt_oss_mxfp4_blocks_count_two_weights_per_byte(tmp_path: Path) -> None:
    """openai/gpt-oss safetensors: experts as U8 ``*_blocks`` [E, rows, cols/32, 16] with
    U8 ``*_scales`` [E, rows, cols/32]; attention stays BF16 (here F16)."""
    embd, experts = 64, 4
    arrays: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": np.ones((50, embd), np.float16),
        "model.layers.0.self_attn.q_proj.weight": np.ones((embd, embd), np.float16),
        "model.layers.0.mlp.router.weight": np.ones((experts, embd), np.float16),
        "model.layers.0.mlp.experts.gate_up_proj_blocks": np.zeros(
            (experts, 2 * embd, embd // 32, 16), np.uint8
        ),
        "model.layers.0.mlp.experts.gate_up_proj_scales": np.zeros(
            (experts, 2 * embd, embd // 32), np.uint8
        ),
    }
    config = {
        **GPT_OSS_20B,
        "hidden_size": embd,
        "intermediate_size": embd,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "num_local_experts": experts,
        "num_experts_per_tok": 1,
        "layer_types": ["sliding_attention"],
    }
    spec = read_hf_model(write_folder(tmp_path / "gpt-oss-tiny", config, arrays))

    expert_params = experts * 2 * embd * embd
    dense_params = 50 * embd + embd * embd + experts * embd
    assert spec.params_total == dense_params + expert_params
    assert spec.params_active == dense_params + expert_params // experts
    assert spec.quantization == "MXFP4"


def test_folder_without_config_json(tmp_path: Path) -> None:
    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelFileError, match=r"no config\.json"):
        read_hf_model(tmp_path)


def test_config_json_that_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{model_type: llama", encoding="utf-8")
    with pytest.raises(ModelFileError, match=r"config\.json: not valid JSON"):
        read_hf_model(tmp_path)


def test_config_without_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    with pytest.raises(ModelFileError, match=r"no \*\.safetensors"):
        read_hf_model(tmp_path)
