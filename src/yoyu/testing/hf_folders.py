"""Hugging Face model folders with a real config and real-size weights left as a hole.

A safetensors file is an 8-byte little-endian header length, a JSON header of
every tensor's dtype, shape and byte range, then the data. yoyu reads only
the header (``yoyu.models.safetensors``), so the data region is made with
``truncate``: a folder of a 70B model takes a few kilobytes of disk, and the
file sizes are the real ones. vLLM itself cannot load such a folder; the
tests that start vLLM write real weights (``write_hf_llama.py``).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path

# Llama 3.2 1B's config.json (meta-llama/Llama-3.2-1B on Hugging Face), the fields yoyu reads
LLAMA_3_2_1B = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 2048,
    "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
    "max_position_embeddings": 131072, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}  # fmt: skip
_DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1, "I8": 1, "I32": 4, "U8": 1}


def write_sparse_safetensors(path: Path, tensors: Mapping[str, tuple[str, tuple[int, ...]]]) -> int:
    """Write ``{name: (dtype, shape)}`` as a safetensors file with no data; its size."""
    header: dict[str, object] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * _DTYPE_BYTES[dtype]
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format pads the header to 8 bytes
    with path.open("wb") as sink:
        sink.write(struct.pack("<Q", len(encoded)) + encoded)
        sink.truncate(8 + len(encoded) + offset)
    return 8 + len(encoded) + offset


def write_llama_folder(folder: Path, config: Mapping[str, object], dtype: str = "BF16") -> Path:
    """A Llama-architecture folder for ``config`` (hidden, layers, heads, vocab, ff)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(dict(config)), encoding="utf-8")
    embd, ff = _number(config, "hidden_size"), _number(config, "intermediate_size")
    vocab, heads = _number(config, "vocab_size"), _number(config, "num_attention_heads")
    kv_heads = _number(config, "num_key_value_heads", heads)
    head_dim = _number(config, "head_dim", embd // heads)
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {
        "model.embed_tokens.weight": (dtype, (vocab, embd)),
        "model.norm.weight": (dtype, (embd,)),
    }
    if not config.get("tie_word_embeddings", False):
        tensors["lm_head.weight"] = (dtype, (vocab, embd))
    for layer in range(_number(config, "num_hidden_layers")):
        prefix = f"model.layers.{layer}."
        tensors |= {
            prefix + "input_layernorm.weight": (dtype, (embd,)),
            prefix + "post_attention_layernorm.weight": (dtype, (embd,)),
            prefix + "self_attn.q_proj.weight": (dtype, (heads * head_dim, embd)),
            prefix + "self_attn.k_proj.weight": (dtype, (kv_heads * head_dim, embd)),
            prefix + "self_attn.v_proj.weight": (dtype, (kv_heads * head_dim, embd)),
            prefix + "self_attn.o_proj.weight": (dtype, (embd, heads * head_dim)),
            prefix + "mlp.gate_proj.weight": (dtype, (ff, embd)),
            prefix + "mlp.up_proj.weight": (dtype, (ff, embd)),
            prefix + "mlp.down_proj.weight": (dtype, (embd, ff)),
        }
    write_sparse_safetensors(folder / "model.safetensors", tensors)
    return folder


def _number(config: Mapping[str, object], key: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if not isinstance(value, int):
        raise ValueError(f"config.json needs an integer {key}, got {value!r}")
    return value
