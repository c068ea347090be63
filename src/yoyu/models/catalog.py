"""Well-known models as ``ModelSpec`` estimates, for planning before a download.

``catalog.toml`` stores each model's architecture in ``config.json`` vocabulary
(parsed by ``hf_config``, the same code that reads a real folder) and the
quant of its Ollama tag. The bytes are derived, not copied:

1. Parameters per tensor group follow from the architecture: attention
   (``q/k/v/o``, or MLA's low-rank ``q_a/q_b/kv_a/kv_b/o``), the dense gated FFN
   (``3 * n_embd * n_ff``), routed experts (``n_experts * 3 * n_embd * expert_ff``),
   shared experts, the router, norms, token embedding and output (one tensor
   when tied). Biases and attention sinks are left out (<0.1% of any model here).
2. Each group's bytes are ``params * bits_per_weight / 8`` for the ggml types the
   quant gives that group (``QUANT_SCHEMES``). llama.cpp's Q4_K_M is Q4_K except
   ``attn_v`` and ``ffn_down`` in "use_more_bits" layers (first and last eighth,
   every third between; ``llama_tensor_get_type``), which are Q6_K: on
   Llama-3.1-8B that is 14.4% of block weights, 4.80 bits/weight overall, which
   reproduces the published 4.92 GB Q4_K_M file within 1%. Token embeddings are
   Q4_K, the output Q6_K (a tied embedding is quantized as the output).

Synthetic tensors (``blk.3.ffn_exps.q4_k``) carry these groups so that
``summarize_tensors`` computes totals, active parameters and per-layer bytes the
same way as for a real file. Format is ``"catalog"``; ``file_bytes`` is the
estimated download. The GGUF, once on disk, is the truth.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoyu.errors import ConfigError
from yoyu.models.hf_config import HfArchitecture, parse_hf_config
from yoyu.models.hf_model import architecture_spec
from yoyu.models.spec import ModelSpec, TensorInfo, summarize_tensors
from yoyu.toml import TOMLDecodeError, load_toml

CATALOG_PATH = Path(__file__).with_name("catalog.toml")

# ggml block sizes: bytes per block * 8 / weights per block (ggml.c type_traits).
BITS_PER_WEIGHT: dict[str, float] = {
    "F32": 32.0, "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5, "Q6_K": 6.5625,
    "Q5_K": 5.5, "Q4_0": 4.5, "Q4_K": 4.5, "MXFP4": 4.25,
}  # fmt: skip

TypeMix = tuple[tuple[str, float], ...]  # (ggml type, share of the group's parameters)


@dataclass(frozen=True)
class QuantScheme:
    """Which ggml types a file type gives each tensor group."""

    block_mix: TypeMix
    expert_mix: TypeMix
    token_embd_type: str
    output_type: str


_Q4_K_M_MIX: TypeMix = (("Q4_K", 0.856), ("Q6_K", 0.144))
QUANT_SCHEMES: dict[str, QuantScheme] = {
    "Q4_K_M": QuantScheme(_Q4_K_M_MIX, _Q4_K_M_MIX, "Q4_K", "Q6_K"),
    "Q4_0": QuantScheme((("Q4_0", 1.0),), (("Q4_0", 1.0),), "Q4_0", "Q6_K"),
    "Q8_0": QuantScheme((("Q8_0", 1.0),), (("Q8_0", 1.0),), "Q8_0", "Q8_0"),
    "F16": QuantScheme((("F16", 1.0),), (("F16", 1.0),), "F16", "F16"),
    "MXFP4": QuantScheme((("BF16", 1.0),), (("MXFP4", 1.0),), "BF16", "BF16"),
}


@dataclass(frozen=True)
class CatalogEntry:
    """One model of ``catalog.toml``; ``published_*`` and ``ollama_size_bytes`` are the
    figures its sources state, kept to check the derivation against."""

    name: str
    aliases: tuple[str, ...]
    quantization: str
    architecture: HfArchitecture
    published_params_total: int
    published_params_active: int | None
    published_active_excludes_token_embd: bool
    ollama_size_bytes: int | None
    sources: tuple[str, ...]


def catalog_entries() -> tuple[CatalogEntry, ...]:
    """Every entry of the bundled catalog, in file order."""
    return _load_catalog(CATALOG_PATH)


def find_catalog_entry(ref: str) -> CatalogEntry | None:
    """The entry whose name or alias is ``ref`` (case-insensitive, registry prefix ignored)."""
    key = _normalize(ref)
    for entry in catalog_entries():
        if key in {_normalize(name) for name in (entry.name, *entry.aliases)}:
            return entry
    return None


def catalog_names() -> list[str]:
    return [entry.name for entry in catalog_entries()]


def catalog_model(ref: str) -> ModelSpec | None:
    """The estimated ``ModelSpec`` of a catalog model, or None if ``ref`` is not in it."""
    entry = find_catalog_entry(ref)
    return None if entry is None else catalog_spec(entry)


def catalog_spec(entry: CatalogEntry) -> ModelSpec:
    arch = entry.architecture
    tensors = catalog_tensors(arch, QUANT_SCHEMES[entry.quantization])
    summary = summarize_tensors(tensors, arch.n_layers, arch.n_experts, arch.n_experts_used)
    return architecture_spec(
        arch,
        tensors,
        summary,
        name=entry.name,
        format="catalog",
        paths=(),
        file_bytes=summary.tensor_bytes,
        quantization=entry.quantization,
    )


def catalog_tensors(arch: HfArchitecture, scheme: QuantScheme) -> list[TensorInfo]:
    """One synthetic tensor per (group, ggml type) per block, plus the non-repeating ones."""
    tensors: list[TensorInfo] = []
    for layer in range(arch.n_layers):
        for group, n_params, mix in _block_groups(arch, scheme, layer):
            tensors.extend(_mixed(f"blk.{layer}.{group}", n_params, mix, layer))
    embd_type = scheme.output_type if arch.tie_word_embeddings else scheme.token_embd_type
    embedding_params = arch.vocab_size * arch.n_embd
    tensors.extend(_mixed("token_embd", embedding_params, ((embd_type, 1.0),), None))
    if not arch.tie_word_embeddings:
        tensors.extend(_mixed("output", embedding_params, ((scheme.output_type, 1.0),), None))
    tensors.extend(_mixed("output_norm", arch.n_embd, (("F32", 1.0),), None))
    return tensors


def attention_params(arch: HfArchitecture) -> int:
    """Weights of one block's attention projections (MLA counts its low-rank factors)."""
    if arch.mla is not None:
        return _mla_attention_params(arch)
    query = arch.n_embd * arch.n_head * arch.head_dim_k
    key_value = arch.n_embd * arch.n_head_kv * (arch.head_dim_k + arch.head_dim_v)
    output = arch.n_head * arch.head_dim_v * arch.n_embd
    return query + key_value + output


def _mla_attention_params(arch: HfArchitecture) -> int:
    assert arch.mla is not None
    mla, heads = arch.mla, arch.n_head
    if mla.q_lora_rank:
        query = arch.n_embd * mla.q_lora_rank + mla.q_lora_rank * heads * arch.head_dim_k
    else:
        query = arch.n_embd * heads * arch.head_dim_k
    kv_down = arch.n_embd * (mla.kv_lora_rank + mla.rope_dim)
    kv_up = mla.kv_lora_rank * heads * (arch.head_dim_k - mla.rope_dim + arch.head_dim_v)
    return query + kv_down + kv_up + heads * arch.head_dim_v * arch.n_embd


def _block_groups(
    arch: HfArchitecture, scheme: QuantScheme, layer: int
) -> list[tuple[str, int, TypeMix]]:
    norms = 2 * arch.n_embd + (arch.mla.q_lora_rank + arch.mla.kv_lora_rank if arch.mla else 0)
    groups: list[tuple[str, int, TypeMix]] = [
        ("attn", attention_params(arch), scheme.block_mix),
        ("norm", norms, (("F32", 1.0),)),
    ]
    if arch.n_experts == 0 or layer in arch.dense_layers:
        return [*groups, ("ffn", 3 * arch.n_embd * arch.n_ff, scheme.block_mix)]
    expert_ff = arch.expert_ff_length or arch.n_ff
    shared_ff = arch.shared_expert_ff_length or expert_ff * arch.n_experts_shared
    return [
        *groups,
        ("ffn_exps", arch.n_experts * 3 * arch.n_embd * expert_ff, scheme.expert_mix),
        ("ffn_shexp", 3 * arch.n_embd * shared_ff, scheme.block_mix),
        ("ffn_gate_inp", arch.n_embd * arch.n_experts, (("F32", 1.0),)),
    ]


def _mixed(prefix: str, n_params: int, mix: TypeMix, layer: int | None) -> list[TensorInfo]:
    """Split ``n_params`` across the mix's types; the last type takes the rounding rest."""
    tensors, remaining = [], n_params
    for index, (type_name, share) in enumerate(mix):
        part = remaining if index == len(mix) - 1 else int(n_params * share)
        remaining -= part
        if part:
            tensors.append(_tensor(f"{prefix}.{type_name.lower()}", type_name, part, layer))
    return tensors


def _tensor(name: str, type_name: str, n_params: int, layer: int | None) -> TensorInfo:
    n_bytes = round(n_params * BITS_PER_WEIGHT[type_name] / 8)
    return TensorInfo(name, type_name, (n_params,), n_params, n_bytes, layer)


def _normalize(ref: str) -> str:
    key = ref.strip().lower().removeprefix("registry.ollama.ai/").removeprefix("library/")
    return key.removesuffix(":latest") if key.count(":") == 1 else key


@functools.lru_cache(maxsize=4)
def _load_catalog(path: Path) -> tuple[CatalogEntry, ...]:
    try:
        document = load_toml(path)
    except (OSError, TOMLDecodeError) as error:
        raise ConfigError(f"{path}: the model catalog cannot be read ({error})") from None
    models = document.get("models", {})
    return tuple(_entry(name, body, path) for name, body in models.items())


def _entry(name: str, body: dict[str, Any], path: Path) -> CatalogEntry:
    quantization = str(body.get("quantization"))
    if quantization not in QUANT_SCHEMES:
        raise ConfigError(f"{path}: {name}: unknown quantization {quantization!r}")
    return CatalogEntry(
        name=name,
        aliases=tuple(body.get("aliases", ())),
        quantization=quantization,
        architecture=parse_hf_config(body.get("config", {}), f"{path} [{name}]"),
        published_params_total=int(body["published_params_total"]),
        published_params_active=body.get("published_params_active"),
        published_active_excludes_token_embd=bool(
            body.get("published_active_excludes_token_embd", False)
        ),
        ollama_size_bytes=body.get("ollama_size_bytes"),
        sources=tuple(body.get("sources", ())),
    )
