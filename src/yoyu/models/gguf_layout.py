"""The tensor table ``convert_hf_to_gguf.py`` writes for a ``config.json``, without the weights.

A catalog entry knows a model by its config; to size its quants the way
llama.cpp does, yoyu needs what the quantizer sees: every tensor's GGUF name
and ggml shape (``ne[0]`` first, the row length that decides whether a
k-quant fits). The tensors per architecture follow ``llama-arch.cpp``'s
``LLM_TENSOR_NAMES`` and the shapes ``llama_model::load_tensors`` expects:

- attention: ``attn_q/k/v`` ``[n_embd, heads * head_dim]`` and ``attn_output``,
  or one fused ``attn_qkv`` (phi3, nomic-bert); MLA's ``attn_q_a/q_b``,
  ``attn_kv_a_mqa`` and ``attn_kv_b`` (DeepSeek V2/V3, Kimi K2);
- FFN: gated ``ffn_gate/up/down`` (phi3 fuses gate and up into one
  ``ffn_up`` of ``2 * n_ff``), plain ``ffn_up/down`` (starcoder2, BERT);
- MoE blocks: ``ffn_gate_inp`` and 3-D ``ffn_{gate,up,down}_exps``, shared
  experts ``*_shexp``; the first ``first_k_dense_replace`` blocks are dense;
- 1-D tensors (norms, biases, sinks) stay F32, as the converter writes them.

Biases and norms are listed because a small model's file holds them too; a
vision tower is not (Ollama ships it in the same blob for Gemma 3, Llama 3.2
Vision and Qwen2.5-VL, or as a second mmproj blob for LLaVA and MiniCPM-V: the
catalog adds its parameter count as F16 separately). A Llama 3.2 Vision
cross-attention block is listed as a self-attention block: the same q/k/v/o and
FFN matrices.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from yoyu.models.hf_config import HfArchitecture


class LayoutTensor(NamedTuple):
    """One tensor of the converted file: GGUF name, ggml shape, block index, parameters.

    A named tuple, built with ``of``: a catalog ranking lays out some 100,000 of them,
    and a frozen dataclass costs several times as much to make."""

    name: str
    shape: tuple[int, ...]
    layer: int | None
    n_params: int

    @classmethod
    def of(cls, name: str, shape: tuple[int, ...], layer: int | None = None) -> LayoutTensor:
        return cls(name, shape, layer, math.prod(shape))


_QKV_BIAS = frozenset({"qwen2", "qwen2vl", "qwen2moe", "starcoder2", "bert", "gpt-oss"})
_QK_NORM = frozenset({"qwen3", "qwen3moe", "gemma3", "olmo2"})
_POST_NORMS = frozenset({"gemma2", "gemma3", "olmo2"})
_FUSED_QKV = frozenset({"phi3", "nomic-bert"})
_PLAIN_FFN = frozenset({"starcoder2", "bert"})
_FFN_BIAS = frozenset({"starcoder2", "bert"})
_ENCODERS = frozenset({"bert", "nomic-bert"})
_ONE_NORM = frozenset({"command-r", "cohere2"})  # parallel attention + FFN share one norm


BlockTemplate = tuple[tuple[str, tuple[int, ...], int], ...]  # (name after blk.N., shape, params)


class LayoutParts(NamedTuple):
    """The converted file's tensors as three parts: the input side, the blocks, the output
    side. A block is the index of its template (its tensors without the ``blk.N.``
    prefix): a model's dense blocks share one template and its MoE blocks another, so
    what follows from a block's tensors (their types, their sums) is worked out per
    template instead of per tensor."""

    head: tuple[LayoutTensor, ...]
    templates: tuple[BlockTemplate, ...]
    blocks: tuple[int, ...]  # the template of each block, in block order
    tail: tuple[LayoutTensor, ...]

    def block_tensors(self, layer: int) -> list[LayoutTensor]:
        prefix = f"blk.{layer}."
        return [
            LayoutTensor(prefix + name, shape, layer, n_params)
            for name, shape, n_params in self.templates[self.blocks[layer]]
        ]

    def tensors(self) -> list[LayoutTensor]:
        """Every tensor in file order."""
        tensors = list(self.head)
        for layer in range(len(self.blocks)):
            tensors.extend(self.block_tensors(layer))
        return tensors + list(self.tail)

    def n_tensors(self) -> int:
        return (
            len(self.head) + sum(len(self.templates[kind]) for kind in self.blocks) + len(self.tail)
        )


def gguf_layout(arch: HfArchitecture, *, output_head: bool = True) -> list[LayoutTensor]:
    """Every tensor of the converted GGUF, in file order (input side, blocks, output).

    ``output_head`` False: an embedding model converted without its LM head
    (Qwen3-Embedding); encoders (BERT) never have one."""
    return gguf_layout_parts(arch, output_head=output_head).tensors()


def gguf_layout_parts(arch: HfArchitecture, *, output_head: bool = True) -> LayoutParts:
    """``gguf_layout`` in its three parts, each block by its template."""
    head = [
        LayoutTensor.of("token_embd.weight", (arch.n_embd, arch.vocab_size)),
        *_encoder_inputs(arch),
    ]
    kinds: dict[bool, int] = {}  # dense (False) and MoE (True) blocks: each laid out once
    templates: list[BlockTemplate] = []
    blocks = []
    for layer in range(arch.n_layers):
        moe = arch.n_experts > 0 and layer not in arch.dense_layers
        if moe not in kinds:
            kinds[moe] = len(templates)
            templates.append(_block_template(arch, moe))
        blocks.append(kinds[moe])
    tail = [LayoutTensor.of("output_norm.weight", (arch.n_embd,))]
    untied = not arch.tie_word_embeddings and arch.architecture not in _ENCODERS
    if untied and output_head:
        tail.append(LayoutTensor.of("output.weight", (arch.n_embd, arch.vocab_size)))
    return LayoutParts(tuple(head), tuple(templates), tuple(blocks), tuple(tail))


def _encoder_inputs(arch: HfArchitecture) -> list[LayoutTensor]:
    if arch.architecture not in _ENCODERS:
        return []
    inputs = [
        LayoutTensor.of("token_types.weight", (arch.n_embd, 2)),
        LayoutTensor.of("token_embd_norm.weight", (arch.n_embd,)),
    ]
    if arch.architecture == "bert":  # learned absolute positions; nomic-bert uses RoPE
        inputs.append(LayoutTensor.of("position_embd.weight", (arch.n_embd, arch.context_length)))
        inputs.append(LayoutTensor.of("token_embd_norm.bias", (arch.n_embd,)))
    return inputs


Named = list[tuple[str, tuple[int, ...]]]


def _block_template(arch: HfArchitecture, moe: bool) -> BlockTemplate:
    """A block's tensors without the ``blk.N.`` prefix, with their parameter counts: every
    dense (or every MoE) block of a model has the same ones."""
    ffn = _moe_ffn(arch) if moe else _dense_ffn(arch, arch.n_ff)
    named = [*_norms(arch), *_attention(arch), *ffn]
    return tuple((name, shape, math.prod(shape)) for name, shape in named)


def _norms(arch: HfArchitecture) -> Named:
    names = ["attn_norm"] if arch.architecture in _ONE_NORM else ["attn_norm", "ffn_norm"]
    if arch.architecture in _POST_NORMS:
        names += ["post_attention_norm", "post_ffw_norm"]
    norms: Named = [(f"{name}.weight", (arch.n_embd,)) for name in names]
    if arch.architecture in _QK_NORM:
        norms += [
            ("attn_q_norm.weight", (arch.head_dim_k,)),
            ("attn_k_norm.weight", (arch.head_dim_k,)),
        ]
    return norms


def _attention(arch: HfArchitecture) -> Named:
    if arch.mla is not None:
        return _mla_attention(arch)
    q_width = arch.n_head * arch.head_dim_k
    k_width = arch.n_head_kv * arch.head_dim_k
    v_width = arch.n_head_kv * arch.head_dim_v
    output: Named = [("attn_output.weight", (arch.n_head * arch.head_dim_v, arch.n_embd))]
    if arch.architecture in _FUSED_QKV:
        fused = q_width + k_width + v_width
        return [("attn_qkv.weight", (arch.n_embd, fused)), *output]
    attention: Named = [
        ("attn_q.weight", (arch.n_embd, q_width)),
        ("attn_k.weight", (arch.n_embd, k_width)),
        ("attn_v.weight", (arch.n_embd, v_width)),
        *output,
    ]
    if arch.architecture in _QKV_BIAS:
        attention += [
            ("attn_q.bias", (q_width,)), ("attn_k.bias", (k_width,)), ("attn_v.bias", (v_width,)),
        ]  # fmt: skip
    if arch.architecture == "gpt-oss":
        attention += [("attn_output.bias", (arch.n_embd,)), ("attn_sinks.weight", (arch.n_head,))]
    return attention


def _mla_attention(arch: HfArchitecture) -> Named:
    """DeepSeek's latent attention as llama.cpp stores it (``attn_kv_b`` unsplit)."""
    assert arch.mla is not None
    mla, heads = arch.mla, arch.n_head
    nope = arch.head_dim_k - mla.rope_dim
    if mla.q_lora_rank:
        query: Named = [
            ("attn_q_a.weight", (arch.n_embd, mla.q_lora_rank)),
            ("attn_q_a_norm.weight", (mla.q_lora_rank,)),
            ("attn_q_b.weight", (mla.q_lora_rank, heads * arch.head_dim_k)),
        ]
    else:
        query = [("attn_q.weight", (arch.n_embd, heads * arch.head_dim_k))]
    return [
        *query,
        ("attn_kv_a_mqa.weight", (arch.n_embd, mla.kv_lora_rank + mla.rope_dim)),
        ("attn_kv_a_norm.weight", (mla.kv_lora_rank,)),
        ("attn_kv_b.weight", (mla.kv_lora_rank, heads * (nope + arch.head_dim_v))),
        ("attn_output.weight", (heads * arch.head_dim_v, arch.n_embd)),
    ]


def _dense_ffn(arch: HfArchitecture, n_ff: int) -> Named:
    down: Named = [("ffn_down.weight", (n_ff, arch.n_embd))]
    if arch.architecture in _PLAIN_FFN:
        ffn: Named = [("ffn_up.weight", (arch.n_embd, n_ff)), *down]
    elif arch.architecture == "phi3":
        ffn = [("ffn_up.weight", (arch.n_embd, 2 * n_ff)), *down]
    else:
        ffn = [
            ("ffn_gate.weight", (arch.n_embd, n_ff)),
            ("ffn_up.weight", (arch.n_embd, n_ff)),
            *down,
        ]
    if arch.architecture in _FFN_BIAS:
        ffn += [("ffn_up.bias", (n_ff,)), ("ffn_down.bias", (arch.n_embd,))]
    return ffn


def _moe_ffn(arch: HfArchitecture) -> Named:
    experts, embd = arch.n_experts, arch.n_embd
    expert_ff = arch.expert_ff_length or arch.n_ff
    ffn: Named = [
        ("ffn_gate_inp.weight", (embd, experts)),
        ("ffn_gate_exps.weight", (embd, expert_ff, experts)),
        ("ffn_up_exps.weight", (embd, expert_ff, experts)),
        ("ffn_down_exps.weight", (expert_ff, embd, experts)),
    ]
    shared_ff = arch.shared_expert_ff_length or expert_ff * arch.n_experts_shared
    if shared_ff:
        ffn += [
            ("ffn_gate_shexp.weight", (embd, shared_ff)),
            ("ffn_up_shexp.weight", (embd, shared_ff)),
            ("ffn_down_shexp.weight", (shared_ff, embd)),
        ]
    if arch.architecture == "qwen2moe":
        ffn.append(("ffn_gate_inp_shexp.weight", (embd,)))
    if arch.architecture == "gpt-oss":
        ffn += [
            ("ffn_gate_inp.bias", (experts,)),
            ("ffn_gate_exps.bias", (expert_ff, experts)),
            ("ffn_up_exps.bias", (expert_ff, experts)),
            ("ffn_down_exps.bias", (embd, experts)),
        ]
    return ffn
