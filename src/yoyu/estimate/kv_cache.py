"""KV cache bytes per layer, the way ``llama_kv_cache`` allocates them.

Per layer that has a cache (``src/llama-kv-cache.cpp``, constructor):
K is ``row_size(type_k, head_dim_k * n_head_kv(il)) * cells * n_stream`` and V
the same with ``head_dim_v`` -- except that without flash attention V is
stored transposed and every layer's V is as wide as the widest one.

What peers get wrong, and this module does not:

- GQA: only ``n_head_kv`` heads are cached, not ``n_head``;
- the head size comes from ``attention.key_length`` (Qwen3, Gemma), not
  ``n_embd / n_head``;
- sliding-window layers (Gemma 2/3, gpt-oss) hold only the SWA cells;
- MLA models (DeepSeek V2/V3, Kimi K2) cache one 576-wide latent per token
  and, since llama.cpp PR #19067 (Jan 2026), no V at all;
- a quantized V cache requires flash attention: llama.cpp refuses to build
  the context otherwise ("quantized V cache was requested, but this requires
  Flash Attention"), so the estimator refuses too.
"""

from __future__ import annotations

from yoyu.errors import SettingsError
from yoyu.estimate.context import ContextCells
from yoyu.estimate.types import RunSettings
from yoyu.models.ggml_types import ggml_type_named
from yoyu.models.spec import ModelSpec

_UNQUANTIZED = frozenset({"f32", "f16", "bf16"})


def row_bytes(type_name: str, n_elements: int) -> int:
    """ggml_row_size: bytes of ``n_elements`` values of a (block-quantized) type."""
    ggml_type = ggml_type_named(type_name)
    if ggml_type is None:
        raise SettingsError(f"{type_name!r} is not a ggml type")
    return n_elements // ggml_type.block_size * ggml_type.block_bytes


def check_kv_types(settings: RunSettings) -> None:
    """Refuse what llama.cpp refuses: a quantized V cache without flash attention."""
    if settings.type_v not in _UNQUANTIZED and not settings.flash_attn:
        raise SettingsError.from_message(
            "a {type_v} V cache needs flash attention in llama.cpp; "
            "turn flash attention on or use an f16 V cache",
            type_v=settings.type_v,
        )


def kv_heads(spec: ModelSpec, layer: int) -> int:
    """KV heads of one block; 0 for blocks without an attention cache."""
    if spec.n_head_kv_layers:
        return spec.n_head_kv_layers[layer]
    return spec.n_head_kv


def is_mla_vless(spec: ModelSpec) -> bool:
    """MLA GGUFs with the split ``*_mla`` keys: llama.cpp caches K only (PR #19067)."""
    mla = spec.mla
    return mla is not None and bool(mla.key_length_mla) and bool(mla.value_length_mla)


def layer_cells(spec: ModelSpec, cells: ContextCells, layer: int) -> int:
    """Cells of one stream for a block: the SWA cache's for sliding-window blocks."""
    if cells.swa_cells is not None and layer in spec.swa_layers:
        return cells.swa_cells
    return cells.n_ctx_seq


def kv_layer_bytes(spec: ModelSpec, settings: RunSettings, cells: ContextCells) -> tuple[int, ...]:
    """K + V bytes of every block (0 for blocks without a cache)."""
    check_kv_types(settings)
    v_width_max = max(
        (spec.head_dim_v * kv_heads(spec, il) for il in range(spec.n_layers)), default=0
    )
    sizes = []
    for layer in range(spec.n_layers):
        heads = kv_heads(spec, layer)
        if heads == 0:
            sizes.append(0)
            continue
        rows = layer_cells(spec, cells, layer) * cells.n_stream
        k_bytes = row_bytes(settings.type_k, spec.head_dim_k * heads) * rows
        v_width = spec.head_dim_v * heads if settings.flash_attn else v_width_max
        v_bytes = 0 if is_mla_vless(spec) else row_bytes(settings.type_v, v_width) * rows
        sizes.append(k_bytes + v_bytes)
    return tuple(sizes)


def swa_window_bytes(spec: ModelSpec, settings: RunSettings, cells: ContextCells) -> int:
    """Bytes of one sequence's sliding-window cells: what a llama-server checkpoint copies.

    A checkpoint is taken after a prompt's last batch, when the cache holds
    the window's cells (Gemma 3 270M: 512 cells, 7.51 MiB, as llama-server
    logs it), at most the whole sliding-window cache.
    """
    if cells.swa_cells is None:
        return 0
    window_cells = min(cells.swa_cells, spec.sliding_window or cells.swa_cells)
    per_cell = 0
    for layer in spec.swa_layers:
        heads = kv_heads(spec, layer)
        if layer >= spec.n_layers or heads == 0:
            continue
        per_cell += row_bytes(settings.type_k, spec.head_dim_k * heads)
        if not is_mla_vless(spec):
            per_cell += row_bytes(settings.type_v, spec.head_dim_v * heads)
    return per_cell * window_cells
