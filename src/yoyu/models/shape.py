"""``ModelShape``: the architecture numbers every source of a model agrees on.

A GGUF's metadata, a Hugging Face ``config.json`` and a sparse test recipe all
say the same thing in their own words: layers, widths, heads, vocabulary,
context, sliding window, experts, MLA ranks. The fields are declared here
once; ``ModelSpec`` (what the planner reads), ``HfArchitecture`` (a parsed
``config.json``) and ``SparseRecipe`` (a real model's table, for tests) are
each a shape plus what only they know, and ``shape_fields()`` hands one shape
to the next without copying sixteen names by hand.

They extend the shape rather than hold it in a field so that the five
hundred places that read ``spec.n_layers`` keep reading it that way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MlaDims:
    """Multi-head latent attention (DeepSeek V2/V3/R1, Kimi K2): the KV cache stores a
    compressed latent of ``kv_lora_rank`` plus a shared RoPE key of ``rope_dim`` per token."""

    kv_lora_rank: int
    q_lora_rank: int
    rope_dim: int
    key_length_mla: int | None = None  # per-head key dim once decompressed (nope + rope)
    value_length_mla: int | None = None


@dataclass(frozen=True, kw_only=True)
class ModelShape:
    """Sizes of one transformer: what the KV cache, compute buffers and speed depend on.

    ``n_head_kv`` is the largest per-layer KV head count; ``swa_layers`` lists
    the blocks that use sliding-window attention of ``sliding_window`` tokens.
    """

    n_layers: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_ff: int
    vocab_size: int
    context_length: int
    sliding_window: int | None = None
    swa_layers: tuple[int, ...] = ()
    n_experts: int = 0
    n_experts_used: int = 0
    n_experts_shared: int = 0
    expert_ff_length: int | None = None
    mla: MlaDims | None = None

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 1

    def shape_fields(self) -> dict[str, Any]:
        """The shape alone, as keywords for another type built on it."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(ModelShape)}
