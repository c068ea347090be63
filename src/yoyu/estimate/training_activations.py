"""Activations a LoRA training step keeps for backward, and the logits' peak.

Why not Korthikanti et al.'s ``s*b*h*(34 + 5*a*s/h)`` bytes per layer
("Reducing Activation Recomputation in Large Transformer Models", 2022, eq. 1)?
It counts a GPT block trained in full: every linear layer's input is saved
because every weight needs a gradient, there is dropout, and the attention
scores are materialised. None of that holds for LoRA on a Hugging Face model:

- a frozen linear layer saves no input (autograd saves ``x`` only for the
  weight's gradient), so the base projections cost nothing here;
- each wrapped projection saves the fp32 copy of its input that PEFT casts for
  ``lora_A`` (``in * 4`` bytes a token) and ``lora_A``'s output (``r * 4``);
- SDPA (transformers' default attention) keeps q, k, v, its output and a
  per-head log-sum-exp, never the ``seq x seq`` scores;
- RMSNorm upcasts to fp32 and keeps that copy and its ``rsqrt`` (``4h + 4``), two
  a block; the first block's input norm keeps nothing (the embedding output
  needs no gradient) and the final norm adds one, so the count is ``2L``;
- SwiGLU keeps the gate output, its SiLU and the up output (``3 * ff`` 16-bit).

Each term was checked by counting the bytes autograd saves
(``torch.autograd.graph.saved_tensors_hooks``) on Llama-shaped models. With
gradient checkpointing (non-reentrant, per decoder layer, transformers'
``gradient_checkpointing_enable``) a block keeps only its 16-bit input, and one
block at a time is recomputed in full during backward.

The logits are the surprise: ``seq x batch x vocab`` values, three times in
fp32 at the start of backward: transformers' loss upcasts the 16-bit logits
(``ForCausalLMLoss``: ``logits.float()``), cross-entropy keeps its log-softmax
output, and backward makes the gradient flowing into it before the saved one
is freed. 12 bytes per token per vocabulary entry: 6.3 GB for Llama 3's 128k
vocabulary at 4096 tokens, more than an 8B model's 16-bit activations.
"""

from __future__ import annotations

from dataclasses import dataclass

from yoyu.estimate.lora import ADAPTER_DTYPE_BYTES, linear_dims, mlp_width
from yoyu.estimate.training_settings import TrainingSettings
from yoyu.models.shape import ModelShape

COMPUTE_DTYPE_BYTES = 2  # bf16/fp16 compute (QLoRA's compute dtype too)
FP32_BYTES = 4
LOGITS_FP32_COPIES = 3  # the loss's upcast, its log-softmax output, that output's gradient
# Architectures that normalise q and k per head (an RMSNorm each, fp32 copies kept)
QK_NORM_ARCHITECTURES = ("qwen3", "qwen3moe", "gemma3", "olmo2")
# Gemma 2 and 3 norm before and after both attention and FFN (transformers' modeling code;
# not measured here): four RMSNorms a block instead of two
NORMS_PER_BLOCK = {"gemma2": 4, "gemma3": 4}


@dataclass(frozen=True)
class ActivationFigures:
    """Bytes per token of one block, and the total kept over a micro-batch."""

    block_bytes_per_token: int  # one block, no checkpointing
    kept_bytes: int  # what the whole model keeps at the end of forward
    formula: str  # the formula used, in words, for the plan's output


def block_bytes_per_token(shape: ModelShape, architecture: str, settings: TrainingSettings) -> int:
    """What one decoder block keeps for backward per token, in bytes."""
    return (
        NORMS_PER_BLOCK.get(architecture, 2) * _rms_norm_bytes(shape.n_embd)
        + _attention_bytes(shape, architecture)
        + 3 * mlp_width(shape) * COMPUTE_DTYPE_BYTES
        + _adapter_input_bytes(shape, settings)
    )


def activation_figures(
    shape: ModelShape, architecture: str, settings: TrainingSettings
) -> ActivationFigures:
    """All blocks' activations, or with checkpointing each block's input plus one block."""
    per_block = block_bytes_per_token(shape, architecture, settings)
    if not settings.grad_checkpointing:
        kept = shape.n_layers * per_block
        formula = f"{shape.n_layers} blocks x {per_block} B/token (LoRA, SDPA) x {settings.tokens}"
        return ActivationFigures(per_block, kept * settings.tokens, formula)
    input_bytes = shape.n_embd * residual_dtype_bytes(settings)
    final_norm = _rms_norm_bytes(shape.n_embd)
    kept = shape.n_layers * input_bytes + final_norm + per_block
    formula = (
        f"checkpointing: {shape.n_layers} block inputs x {input_bytes} "
        f"B/token + one block recomputed ({per_block} B/token) x {settings.tokens}"
    )
    return ActivationFigures(per_block, kept * settings.tokens, formula)


def residual_dtype_bytes(settings: TrainingSettings) -> int:
    """The residual stream's dtype: 16-bit, but fp32 in the QLoRA recipe, whose
    ``prepare_model_for_kbit_training`` casts the embeddings (and so every block's
    input) to fp32. QLoRA's other terms are the 16-bit ones: not measured here."""
    return FP32_BYTES if settings.method == "qlora" else COMPUTE_DTYPE_BYTES


def logits_bytes(shape: ModelShape, settings: TrainingSettings) -> int:
    """The logits' peak: ``tokens x vocab`` fp32 values, three of them at once."""
    return LOGITS_FP32_COPIES * FP32_BYTES * shape.vocab_size * settings.tokens


def _rms_norm_bytes(width: int) -> int:
    """An RMSNorm keeps its fp32 input and one fp32 ``rsqrt`` per row."""
    return FP32_BYTES * width + FP32_BYTES


def _attention_bytes(shape: ModelShape, architecture: str) -> int:
    """SDPA keeps q, k, v and its output in 16 bits and an fp32 log-sum-exp per head."""
    q_out = shape.n_head * (shape.head_dim_k + shape.head_dim_v)
    kv = shape.n_head_kv * (shape.head_dim_k + shape.head_dim_v)
    kept = (q_out + kv) * COMPUTE_DTYPE_BYTES + shape.n_head * FP32_BYTES
    if architecture in QK_NORM_ARCHITECTURES:
        heads = shape.n_head + shape.n_head_kv
        kept += heads * _rms_norm_bytes(shape.head_dim_k)
    return kept


def _adapter_input_bytes(shape: ModelShape, settings: TrainingSettings) -> int:
    """Each wrapped projection: the fp32 copy of its input and ``lora_A``'s output."""
    dims = linear_dims(shape)
    return sum(
        ADAPTER_DTYPE_BYTES * (dims[target][0] + settings.rank) for target in settings.targets
    )
