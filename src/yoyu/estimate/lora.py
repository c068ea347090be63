"""LoRA adapters: which matrices they wrap and how many parameters they add.

A LoRA adapter on a ``in x out`` linear layer is two matrices, ``A`` (in x r)
and ``B`` (r x out): ``r * (in + out)`` parameters per wrapped module per
block. PEFT keeps them in fp32 whatever the base dtype
(``get_peft_model(autocast_adapter_dtype=True)``, its default), so each
adapter parameter is 4 bytes, its gradient 4 more.

The linear layers' sizes come from the shape alone, so a GGUF (architecture
only), a Hugging Face folder and a catalog entry give the same answer.
"""

from __future__ import annotations

from yoyu.models.shape import ModelShape

ADAPTER_DTYPE_BYTES = 4  # fp32: PEFT's autocast_adapter_dtype


def linear_dims(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """``(in_features, out_features)`` of each projection of one block, by PEFT target name."""
    h, ff = shape.n_embd, mlp_width(shape)
    return {
        "q": (h, shape.n_head * shape.head_dim_k),
        "k": (h, shape.n_head_kv * shape.head_dim_k),
        "v": (h, shape.n_head_kv * shape.head_dim_v),
        "o": (shape.n_head * shape.head_dim_v, h),
        "gate": (h, ff),
        "up": (h, ff),
        "down": (ff, h),
    }


def mlp_width(shape: ModelShape) -> int:
    """The FFN width a token goes through: the dense one, or an MoE's experts per token
    (the routed experts used plus the shared ones) side by side."""
    if not shape.is_moe:
        return shape.n_ff
    expert = shape.expert_ff_length or shape.n_ff
    return expert * (shape.n_experts_used + shape.n_experts_shared)


def adapter_params(shape: ModelShape, targets: tuple[str, ...], rank: int) -> int:
    """Parameters of the adapters on ``targets`` in every block."""
    dims = linear_dims(shape)
    per_block = sum(rank * (dims[target][0] + dims[target][1]) for target in targets)
    return shape.n_layers * per_block


def block_linear_params(shape: ModelShape) -> int:
    """Parameters of every projection matrix in the blocks: what QLoRA stores in 4 bits.

    An MoE block holds all its experts (each ``3 x n_embd x expert_ff``), not
    only those a token uses.
    """
    dims = linear_dims(shape)
    attention = sum(dims[name][0] * dims[name][1] for name in ("q", "k", "v", "o"))
    if not shape.is_moe:
        return shape.n_layers * (attention + 3 * shape.n_embd * shape.n_ff)
    expert = shape.expert_ff_length or shape.n_ff
    experts = (shape.n_experts + shape.n_experts_shared) * 3 * shape.n_embd * expert
    return shape.n_layers * (attention + experts)
