"""``config.json`` -> the architecture half of a ``ModelSpec``.

Hugging Face configs name the same quantity differently per family
(``num_local_experts`` in Mixtral and gpt-oss, ``n_routed_experts`` in DeepSeek,
``num_experts`` in Qwen-MoE) and leave out keys whose defaults live in the
transformers config classes (Gemma 3's ``text_config`` omits ``vocab_size``).
This module owns that translation and nothing else; the tensor table comes
from ``safetensors`` and the two meet in ``hf_model``. The catalog writes its
entries in this same vocabulary, so one parser serves both.

Rules that matter for memory, each from the transformers config classes:

- ``head_dim`` is read when given: Qwen3, Gemma and gpt-oss set it apart from
  ``hidden_size / num_attention_heads`` (gpt-oss-20b: 2880 / 64 heads, head_dim 64).
- Sliding-window layers: an explicit ``layer_types`` list wins (gpt-oss); Gemma 2
  slides on even layers; Gemma 3 on every layer but each ``sliding_window_pattern``-th
  (default 6). A ``sliding_window`` in Mistral, Mixtral, Phi-3 or Qwen configs is
  not reported: llama.cpp builds those models with full attention on every layer
  (``llama_model::load_hparams``; Qwen's window is off in every released config),
  and sizing their KV cache by the window would under-count what the engine
  allocates, the dangerous direction for a memory planner.
- DeepSeek V3 / Kimi K2 (MLA): the cache holds ``kv_lora_rank`` + ``qk_rope_head_dim``
  per token; per-head key dim is ``qk_nope_head_dim + qk_rope_head_dim``; the first
  ``first_k_dense_replace`` layers are dense.
- ``architecture`` uses llama.cpp's GGUF names (mistral and mixtral convert to
  ``llama``, deepseek_v3 to ``deepseek2``), so a safetensors folder and its GGUF
  reach the estimator as the same architecture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yoyu.errors import ModelFileError
from yoyu.models.json_file import read_json_object
from yoyu.models.shape import MlaDims, ModelShape

MAX_CONFIG_BYTES = 4 * 1024 * 1024

GGUF_ARCHITECTURES: dict[str, str] = {
    "llama": "llama",
    "mistral": "llama",
    "mixtral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "qwen2_moe": "qwen2moe",
    "qwen3_moe": "qwen3moe",
    "gemma2": "gemma2",
    "gemma3": "gemma3",
    "gemma3_text": "gemma3",
    "deepseek_v2": "deepseek2",
    "deepseek_v3": "deepseek2",
    "kimi_k2": "deepseek2",
    "gpt_oss": "gpt-oss",
    "phi3": "phi3",
    "gemma": "gemma",
    "starcoder2": "starcoder2",
    "cohere": "command-r",
    "cohere2": "cohere2",
    "granite": "granite",
    "granitemoe": "granitemoe",
    "olmo2": "olmo2",
    "bert": "bert",
    "xlm-roberta": "bert",  # llama.cpp converts XLM-RoBERTa (bge-m3) as BERT
    "nomic_bert": "nomic-bert",
    "llama4_text": "llama4",
    # Vision-language models: the language model's architecture (the vision tower is apart).
    "llava_llama": "llama",  # LLaVA 1.6 (liuhaotian/*): a Llama, Vicuna or Yi language model
    "llava_mistral": "llama",
    "minicpmv": "qwen2",  # MiniCPM-V 2.6: Qwen2-7B (llama.cpp converts its LLM as qwen2)
    "qwen2_5_vl": "qwen2vl",  # llama.cpp's LLM_ARCH_QWEN2VL (Ollama: qwen25vl)
    "mllama_text_model": "mllama",  # Llama 3.2 Vision: Llama 3.1 with cross-attention blocks
}

# Defaults of the transformers config classes for keys real configs leave out.
_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma2": {"tie_word_embeddings": True, "vocab_size": 256000, "max_position_embeddings": 8192},
    "gemma3_text": {
        "tie_word_embeddings": True,
        "vocab_size": 262208,
        "max_position_embeddings": 131072,
        "sliding_window_pattern": 6,
    },
}
# GPT-2-style keys some configs use (nomic-bert) -> the names the rest of this module reads.
_KEY_ALIASES = {
    "n_embd": "hidden_size",
    "n_layer": "num_hidden_layers",
    "n_head": "num_attention_heads",
    "n_inner": "intermediate_size",
    "n_positions": "max_position_embeddings",
}
_EXPERT_COUNT_KEYS = ("n_routed_experts", "num_local_experts", "num_experts")
_EXPERTS_USED_KEYS = ("num_experts_per_tok", "experts_per_token")
# Llama 4 sizes its dense blocks' FFN apart from its experts' (``intermediate_size``).
_DENSE_FF_KEYS = ("intermediate_size_mlp", "intermediate_size")
_SPARSE_STEP_KEYS = ("decoder_sparse_step", "interleave_moe_layer_step")


@dataclass(frozen=True)
class MlxQuantization:
    """mlx-lm's ``quantization`` block: affine groups of ``group_size`` weights at
    ``bits`` each, packed ``32 // bits`` to a U32; ``overrides`` maps a module path
    to its own bit width (mixed-precision conversions)."""

    bits: int
    group_size: int
    overrides: dict[str, int] = field(default_factory=dict)

    def bits_for(self, module: str) -> int:
        return self.overrides.get(module, self.bits)


@dataclass(frozen=True, kw_only=True)
class HfArchitecture(ModelShape):
    """What ``config.json`` says: the shape, and how the weights are laid out and stored
    (byte figures come from the tensors)."""

    model_type: str
    architecture: str
    tie_word_embeddings: bool = False
    shared_expert_ff_length: int | None = None
    dense_layers: tuple[int, ...] = ()  # MoE models: blocks with a plain FFN instead
    mlx_quantization: MlxQuantization | None = None
    quant_method: str | None = None  # quantization_config.quant_method: fp8, mxfp4, gptq, awq
    quant_bits: int | None = None  # quantization_config.bits (GPTQ/AWQ)


def read_config_json(folder: Path) -> dict[str, Any]:
    """Load ``folder/config.json`` with a size cap; missing or malformed is a ModelFileError."""
    path = folder / "config.json"
    if not path.is_file():
        raise ModelFileError(
            f"{folder}: no config.json; a Hugging Face model folder needs config.json "
            "beside its *.safetensors files"
        )
    return read_json_object(path, max_bytes=MAX_CONFIG_BYTES, what="a config")


def parse_hf_config(config: dict[str, Any], source: str) -> HfArchitecture:
    """Translate one config (``source`` names it in errors) into an ``HfArchitecture``."""
    text, model_type = _text_config(config)
    fields = _Fields(text, source)
    n_layers = fields.required("num_hidden_layers")
    n_embd = fields.required("hidden_size")
    n_head = fields.required("num_attention_heads")
    head_dim_k, head_dim_v, mla = _head_dims(fields, n_embd, n_head)
    n_experts = fields.first(_EXPERT_COUNT_KEYS) or 0
    window, swa_layers = _sliding_window(text, model_type, n_layers)
    mlx = _mlx_quantization(config, source)
    quant_method, quant_bits = _quantization_config(config)
    return HfArchitecture(
        model_type=model_type,
        architecture=GGUF_ARCHITECTURES.get(model_type, model_type),
        n_layers=n_layers,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=fields.optional("num_key_value_heads") or n_head,
        head_dim_k=head_dim_k,
        head_dim_v=head_dim_v,
        n_ff=fields.first(_DENSE_FF_KEYS) or 0,
        vocab_size=fields.required("vocab_size"),
        context_length=fields.required("max_position_embeddings"),
        tie_word_embeddings=_tied_embeddings(text, config),
        sliding_window=window,
        swa_layers=swa_layers,
        n_experts=n_experts,
        n_experts_used=(fields.first(_EXPERTS_USED_KEYS) or 0) if n_experts else 0,
        n_experts_shared=_shared_expert_count(fields, model_type) if n_experts else 0,
        expert_ff_length=_expert_ff_length(fields) if n_experts else None,
        shared_expert_ff_length=fields.optional("shared_expert_intermediate_size"),
        dense_layers=_dense_layers(fields, n_layers) if n_experts else (),
        mla=mla,
        mlx_quantization=mlx,
        quant_method=quant_method,
        quant_bits=quant_bits,
    )


class _Fields:
    """Typed access to config keys, with errors that name the file and the key."""

    def __init__(self, config: dict[str, Any], source: str) -> None:
        self.config = config
        self.source = source

    def optional(self, key: str) -> int | None:
        value = self.config.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ModelFileError(f"{self.source}: {key!r} must be a non-negative integer")
        return value

    def required(self, key: str) -> int:
        value = self.optional(key)
        if value is None:
            raise ModelFileError(f"{self.source}: {key!r} is missing; is this a text model config?")
        return value

    def first(self, keys: tuple[str, ...]) -> int | None:
        for key in keys:
            value = self.optional(key)
            if value is not None:
                return value
        return None


def _text_config(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Multimodal wrappers (Gemma 3, Llama 4, Mistral 3) nest the language model."""
    outer_type = str(config.get("model_type", "unknown"))
    nested = config.get("text_config")
    if not isinstance(nested, dict):
        return {**_FAMILY_DEFAULTS.get(outer_type, {}), **_aliased(config)}, outer_type
    model_type = str(nested.get("model_type") or f"{outer_type}_text")
    return {**_FAMILY_DEFAULTS.get(model_type, {}), **nested}, model_type


def _aliased(config: dict[str, Any]) -> dict[str, Any]:
    """The config with GPT-2-style keys also under their usual names (which win)."""
    renamed = {_KEY_ALIASES[key]: value for key, value in config.items() if key in _KEY_ALIASES}
    return {**renamed, **config}


def _tied_embeddings(text: dict[str, Any], config: dict[str, Any]) -> bool:
    return bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", False)))


def _head_dims(fields: _Fields, n_embd: int, n_head: int) -> tuple[int, int, MlaDims | None]:
    kv_lora_rank = fields.optional("kv_lora_rank")
    if kv_lora_rank is not None:
        rope_dim = fields.required("qk_rope_head_dim")
        key_dim = fields.required("qk_nope_head_dim") + rope_dim
        value_dim = fields.required("v_head_dim")
        mla = MlaDims(
            kv_lora_rank=kv_lora_rank,
            q_lora_rank=fields.optional("q_lora_rank") or 0,
            rope_dim=rope_dim,
            key_length_mla=key_dim,
            value_length_mla=value_dim,
        )
        return key_dim, value_dim, mla
    head_dim = fields.optional("head_dim") or n_embd // max(n_head, 1)
    return head_dim, head_dim, None


def _sliding_window(
    config: dict[str, Any], model_type: str, n_layers: int
) -> tuple[int | None, tuple[int, ...]]:
    window = config.get("sliding_window")
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return None, ()
    layers = _swa_layers(config, model_type, n_layers)
    return (window, layers) if layers else (None, ())


def _swa_layers(config: dict[str, Any], model_type: str, n_layers: int) -> tuple[int, ...]:
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list):
        return tuple(i for i, kind in enumerate(layer_types) if kind == "sliding_attention")
    if model_type == "gemma2":
        return tuple(i for i in range(n_layers) if (i + 1) % 2)
    if model_type in ("gemma3_text", "cohere2"):  # every pattern-th layer is global
        pattern = config.get("sliding_window_pattern")
        period = pattern if isinstance(pattern, int) and pattern > 0 else 6
        return tuple(i for i in range(n_layers) if (i + 1) % period)
    return ()


def _shared_expert_count(fields: _Fields, model_type: str) -> int:
    """DeepSeek states its count; Qwen-MoE has one when it sizes it; every Llama 4 MoE
    block has one of the experts' size (transformers' ``Llama4TextMoe.shared_expert``)."""
    shared = fields.optional("n_shared_experts")
    if shared is not None:
        return shared
    if model_type == "llama4_text":
        return 1
    return 1 if fields.optional("shared_expert_intermediate_size") else 0


def _expert_ff_length(fields: _Fields) -> int | None:
    moe_ff = fields.optional("moe_intermediate_size")
    if moe_ff is not None:
        return moe_ff
    return fields.optional("intermediate_size")  # Mixtral and gpt-oss size experts this way


def _dense_layers(fields: _Fields, n_layers: int) -> tuple[int, ...]:
    """Blocks of an MoE model with a plain FFN: DeepSeek's first ``first_k_dense_replace``,
    Qwen-MoE's ``mlp_only_layers`` and those off its ``decoder_sparse_step`` (Llama 4's
    ``interleave_moe_layer_step``: the same rule)."""
    first_dense = fields.optional("first_k_dense_replace") or 0
    step = fields.first(_SPARSE_STEP_KEYS) or 1
    only_mlp = fields.config.get("mlp_only_layers") or []
    mlp_only = {i for i in only_mlp if isinstance(i, int)} if isinstance(only_mlp, list) else set()
    return tuple(
        i for i in range(n_layers) if i < first_dense or i in mlp_only or (i + 1) % step != 0
    )


def _mlx_quantization(config: dict[str, Any], source: str) -> MlxQuantization | None:
    block = config.get("quantization")
    if not isinstance(block, dict):
        return None
    bits, group_size = block.get("bits"), block.get("group_size")
    if not isinstance(bits, int) or not isinstance(group_size, int) or not 1 <= bits <= 32:
        raise ModelFileError(f"{source}: quantization block needs integer bits and group_size")
    overrides = {
        module: value["bits"]
        for module, value in block.items()
        if isinstance(value, dict) and isinstance(value.get("bits"), int)
    }
    return MlxQuantization(bits=bits, group_size=group_size, overrides=overrides)


def _quantization_config(config: dict[str, Any]) -> tuple[str | None, int | None]:
    block = config.get("quantization_config")
    if not isinstance(block, dict) or not isinstance(block.get("quant_method"), str):
        return None, None
    bits = block.get("bits")
    return str(block["quant_method"]).lower(), bits if isinstance(bits, int) else None
